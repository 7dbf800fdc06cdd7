/**
 * Ferry's configuration: one JSON/JSONC file plus CLI flags (flags win), validated against one
 * schema at start-up. With no file, the embedded defaults apply: every listener on loopback only,
 * anonymous devices allowed only there (like mosquitto 2's local-only mode).
 *
 * The schema is composed of each component's fragment (its `options.ts`: keys, types, bounds,
 * defaults and docs, written once); {@link FerryConfig} is inferred from it.
 *
 * @module
 */

import { deviceApiOptionsSchema } from "../http/device_api/options.ts";
import { httpServerOptionsSchema } from "../http/options.ts";
import {
  authOptionsSchema,
  commandsOptionsSchema,
  limitsOptionsSchema,
  pipelineOptionsSchema,
} from "../core/options.ts";
import {
  northboundBridgeSchema,
  type NorthboundConfig,
  type NorthboundOptions,
  resolveNorthboundList,
} from "../northbound/options.ts";
import { portField, tlsField } from "../net/options.ts";
import { binaryOptionsSchema } from "../protocols/binary/options.ts";
import { coapOptionsSchema } from "../protocols/coap/options.ts";
import { mqttOptionsSchema, mqttPersistenceSchema } from "../protocols/mqtt/options.ts";
import { mqttWsConfigSchema } from "../protocols/mqtt/ws_options.ts";
import { resolveRules, rulesOptionsSchema } from "../rules/options.ts";
import { isLoopback } from "../core/address.ts";
import { sysOptionsSchema } from "../ops/options.ts";
import { parseJsonc } from "./jsonc.ts";
import {
  bool,
  ConfigError,
  type Infer,
  int,
  obj,
  oneOf,
  optional,
  str,
  validate,
} from "./schema.ts";

/** The `commands` section: limits of the core's pending-command store. */
export type CommandsConfig = Infer<typeof commandsOptionsSchema>;

/** A key of the old per-protocol command queues, kept so existing files still load. */
function legacy(key: keyof CommandsConfig, min: number, max: number, was: string) {
  return optional(int(
    `Deprecated (${was}): sets commands.${key} when that is absent (the largest given wins)`,
    { min, max },
  ));
}

/** The store keys and the old per-protocol keys that map onto them. */
const COMMAND_KEYS = [
  ["maxPerDevice", "maxPendingCommands"],
  ["ttlMs", "commandTtlMs"],
  ["maxDevices", "maxCommandDevices"],
] as const;

const enabled = (what: string) => bool(`Start the ${what} listener`, { default: true });
const { port: binaryPort, tls: binaryTls, ...binaryFields } = binaryOptionsSchema.fields;
const { port: mqttPort, ...mqttFields } = mqttOptionsSchema.fields;
const { port: coapPort, ...coapFields } = coapOptionsSchema.fields;

/** The schema of the whole configuration file. */
export const configSchema = obj("Ferry configuration", {
  $schema: optional(str("JSON Schema reference for editors (ignored)")),
  host: str("Address every listener binds (loopback by default; see auth.anonymous)", {
    default: "127.0.0.1",
  }),
  dataDir: str("Directory for durable state (spool, MQTT state)", { default: "./data" }),
  log: obj("Logging", {
    level: oneOf(["debug", "info", "warn", "error"], "Lowest level written", { default: "info" }),
    format: oneOf(["json", "pretty"], "JSON lines or a human format", { default: "json" }),
  }),
  auth: authOptionsSchema,
  limits: limitsOptionsSchema,
  // One bridge, or a list of them (each element validated on its own in resolveConfig).
  northbound: optional(northboundBridgeSchema),
  rules: rulesOptionsSchema,
  pipeline: pipelineOptionsSchema,
  commands: commandsOptionsSchema,
  sys: sysOptionsSchema,
  binary: obj(binaryOptionsSchema.doc, {
    enabled: enabled("FBP/1"),
    port: binaryPort,
    ...binaryFields,
    tls: binaryTls,
  }),
  mqtt: obj(mqttOptionsSchema.doc, {
    enabled: enabled("MQTT"),
    port: mqttPort,
    tls: tlsField(),
    ...mqttFields,
    persistence: mqttPersistenceSchema,
    websocket: mqttWsConfigSchema,
  }),
  coap: obj(coapOptionsSchema.doc, {
    enabled: enabled("CoAP"),
    port: coapPort,
    ...coapFields,
    maxPendingCommands: legacy("maxPerDevice", 1, 10_000, "was 16 per CoAP device"),
    commandTtlMs: legacy("ttlMs", 1000, 30 * 86_400_000, "was 86400000 for CoAP"),
    maxCommandDevices: legacy("maxDevices", 1, 10_000_000, "was 10000 for CoAP"),
  }),
  http: obj("HTTP listener: /healthz, /readyz, /metrics, the dashboard and the device API", {
    enabled: enabled("HTTP"),
    port: portField(8080, "HTTP"),
    tls: tlsField("Serve HTTPS (PEM files, reloaded when they change)"),
    ...httpServerOptionsSchema.fields,
    deviceApi: obj(deviceApiOptionsSchema.doc, {
      enabled: bool("Serve the device API", { default: true }),
      ...deviceApiOptionsSchema.fields,
      maxPendingCommands: legacy("maxPerDevice", 1, 100_000, "was 32 per HTTP device"),
      commandTtlMs: legacy("ttlMs", 1000, 30 * 86_400_000, "was 300000 for HTTP"),
      maxCommandDevices: legacy("maxDevices", 1, 1_000_000, "was 10000 for HTTP"),
    }),
  }),
});

/** The validated configuration (inferred from {@link configSchema}). */
export type FerryConfig = Omit<Infer<typeof configSchema>, "northbound"> & {
  northbound?: NorthboundConfig;
};

/** A credential entry. */
export type CredentialConfig = FerryConfig["auth"]["devices"][number];

/**
 * Validates a parsed config object (defaults filled, cross-field rules checked).
 *
 * @example
 * ```ts
 * import { resolveConfig } from "./config.ts";
 * const c = resolveConfig({});
 * if (c.host !== "127.0.0.1" || c.binary.port !== 7883) throw new Error();
 * ```
 */
export function resolveConfig(raw: unknown): FerryConfig {
  // `northbound` may be one bridge or a list of them: each element is validated on its own.
  const nbRaw = (raw as { northbound?: unknown } | null)?.northbound;
  const c: FerryConfig = validate(
    configSchema,
    Array.isArray(nbRaw) ? { ...(raw as object), northbound: undefined } : raw,
    "",
  );
  if (Array.isArray(nbRaw)) {
    c.northbound = nbRaw.map((b, i) =>
      validate(northboundBridgeSchema, b, `northbound[${i}]`) as NorthboundOptions
    );
  }
  if (c.northbound) {
    try {
      const list = Array.isArray(c.northbound) ? c.northbound : [c.northbound];
      resolveNorthboundList(list.map((b) => ({ ...b, gatewayId: b.gatewayId || "gateway" })));
    } catch (err) {
      throw new ConfigError("northbound", (err as Error).message);
    }
  }
  c.auth.devices.forEach((d, i) => {
    if ((d.token === undefined) === (d.tokenHash === undefined)) {
      throw new ConfigError(`auth.devices[${i}]`, "needs exactly one of token or tokenHash");
    }
  });
  c.auth.services.forEach((s, i) => {
    if ((s.token === undefined) === (s.tokenHash === undefined)) {
      throw new ConfigError(`auth.services[${i}]`, "needs exactly one of token or tokenHash");
    }
  });
  const ids = new Set<string>();
  c.auth.devices.forEach((d, i) => {
    if (ids.has(d.id)) throw new ConfigError(`auth.devices[${i}].id`, `duplicate id "${d.id}"`);
    ids.add(d.id);
  });
  // The old per-protocol queue keys still apply when the store's own key is absent.
  const given = (raw as { commands?: Record<string, unknown> } | null)?.commands ?? {};
  for (const [key, old] of COMMAND_KEYS) {
    if (given[key] !== undefined) continue;
    const values = [c.coap[old], c.http.deviceApi[old]].filter((v) => v !== undefined);
    if (values.length > 0) c.commands[key] = Math.max(...values);
  }
  c.rules = resolveRules(c.rules);
  if (c.binary.defaultKeepAliveSec > c.binary.maxKeepAliveSec) {
    throw new ConfigError(
      "binary.defaultKeepAliveSec",
      `${c.binary.defaultKeepAliveSec} exceeds binary.maxKeepAliveSec ${c.binary.maxKeepAliveSec}`,
    );
  }
  return c;
}

export { isLoopback };

/**
 * Whether anonymous devices are let in under this config (resolves `auto`): only on loopback and
 * only while no device is known, from the config or from the registry file (`fileDevices`).
 */
export function anonymousAllowed(c: FerryConfig, fileDevices = 0): boolean {
  if (c.auth.anonymous !== "auto") return c.auth.anonymous;
  return isLoopback(c.host) && c.auth.devices.length === 0 && fileDevices === 0;
}

/** Path of the device registry file. */
export function deviceFilePath(c: FerryConfig): string {
  return c.auth.deviceFile || `${c.dataDir.replace(/\/+$/, "")}/devices.json`;
}

/** Reads and validates a config file (JSON or JSONC). */
export async function loadConfigFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new ConfigError("--config", `cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    return parseJsonc(text);
  } catch (err) {
    throw new ConfigError("--config", `${path}: ${(err as Error).message}`);
  }
}
