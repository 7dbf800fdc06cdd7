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
import { defaultNorthboundOptions as nb } from "../northbound/options.ts";
import { portField, tlsField } from "../net/options.ts";
import { binaryOptionsSchema } from "../protocols/binary/options.ts";
import { coapOptionsSchema } from "../protocols/coap/options.ts";
import { mqttOptionsSchema, mqttPersistenceSchema } from "../protocols/mqtt/options.ts";
import { isLoopback } from "../core/address.ts";
import { parseJsonc } from "./jsonc.ts";
import {
  bool,
  ConfigError,
  type Infer,
  int,
  list,
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

const filters = (doc: string, def: readonly string[]) =>
  list(str("filter"), doc, { default: [...def] });

/** The `northbound` section (options and defaults in `src/northbound/options.ts`). */
const northboundSchema = optional(obj(
  "MQTT bridge to an upstream broker with a durable spool (docs/northbound.md); absent = no bridge",
  {
    url: str("Upstream broker: mqtt://host[:1883] or mqtts://host[:8883], optionally user:pass@", {
      pattern: /^mqtts?:\/\/.+/,
    }),
    gatewayId: str("This gateway's id (default: the host name)", {
      default: "",
      pattern: /^([A-Za-z0-9._-]{1,64})?$/,
    }),
    prefix: str("Upstream topic prefix; {gatewayId} is substituted", { default: nb.prefix }),
    forward: filters("Local filters forwarded upstream", nb.forward),
    exclude: filters("Local filters never forwarded", nb.exclude),
    clientId: optional(str("Upstream client id (default ferry-{gatewayId})")),
    username: optional(str("Upstream user name")),
    password: optional(str("Upstream password")),
    caFile: optional(str("PEM CA bundle to trust for mqtts://")),
    certFile: optional(str("PEM client certificate (mutual TLS)")),
    keyFile: optional(str("PEM client key (mutual TLS)")),
    keepAliveSec: int("Upstream keepalive, seconds", {
      min: 1,
      max: 65_535,
      default: nb.keepAliveSec,
    }),
    protocolVersion: oneOf([4, 5], "MQTT 3.1.1 (4) or 5", { default: nb.protocolVersion }),
    cleanSession: bool("Start a clean upstream session", { default: nb.cleanSession }),
    sessionExpirySec: int("Upstream session expiry (MQTT 5), seconds", {
      min: 0,
      max: 4_294_967_295,
      default: nb.sessionExpirySec,
    }),
    inflight: int("QoS 1 messages in flight upstream", {
      min: 1,
      max: 65_535,
      default: nb.inflight,
    }),
    replayRatePerSec: int("Replay pace after an outage, messages/s (0 = unpaced)", {
      min: 0,
      max: 10_000_000,
      default: nb.replayRatePerSec,
    }),
    backoffBaseMs: int("First reconnect backoff ceiling", {
      min: 1,
      max: 3_600_000,
      default: nb.backoffBaseMs,
    }),
    backoffCapMs: int("Largest reconnect backoff ceiling", {
      min: 1,
      max: 3_600_000,
      default: nb.backoffCapMs,
    }),
    stableAfterMs: int("A connection up this long resets the backoff", {
      min: 0,
      max: 3_600_000,
      default: nb.stableAfterMs,
    }),
    connectTimeoutMs: int("Time allowed to connect upstream", {
      min: 100,
      max: 600_000,
      default: nb.connectTimeoutMs,
    }),
    housekeepingMs: int("Spool TTL sweep and compaction interval", {
      min: 100,
      max: 3_600_000,
      default: nb.housekeepingMs,
    }),
    compactAboveBytes: int("Compact the spool file after a drain when it exceeds this", {
      min: 0,
      max: 1 << 30,
      default: nb.compactAboveBytes,
    }),
    presence: bool("Publish the gateway's own online/offline (will) upstream", {
      default: nb.presence,
    }),
    spool: obj("Durable store-and-forward", {
      file: str("Spool file, relative to dataDir", { default: nb.spool.file }),
      maxBytes: int("Spool bound, bytes", {
        min: 1024 * 1024,
        max: Number.MAX_SAFE_INTEGER,
        default: nb.spool.maxBytes,
      }),
      ttlSec: int("Messages older than this are dropped", {
        min: 1,
        max: 10 * 365 * 86_400,
        default: nb.spool.ttlSec,
      }),
      fullPolicy: oneOf(["drop-oldest", "refuse-new"], "What happens when the spool is full", {
        default: nb.spool.fullPolicy,
      }),
      synchronous: oneOf(["full", "normal"], "SQLite synchronous: full survives power loss", {
        default: nb.spool.synchronous,
      }),
      onCorrupt: oneOf(
        ["fail", "set-aside"],
        "A corrupt spool: refuse to start, or set it aside and start empty",
        { default: nb.spool.onCorrupt },
      ),
    }),
  },
));

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
  northbound: northboundSchema,
  pipeline: pipelineOptionsSchema,
  commands: commandsOptionsSchema,
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
export type FerryConfig = Infer<typeof configSchema>;

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
  const c: FerryConfig = validate(configSchema, raw, "");
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
