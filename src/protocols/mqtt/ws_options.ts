/**
 * Every tunable of MQTT over WebSocket: the `mqtt.websocket` config-schema fragment, and
 * {@link MqttWsOptions} with their defaults derived from it (written once, here).
 *
 * @module
 */

import { bool, defaults, type Infer, int, list, obj, str } from "../../config/schema.ts";
import { portField, tlsField } from "../../net/options.ts";

/** A request path: `/`, then visible ASCII but `?`. */
const PATH = /^\/[\x21-\x3e\x40-\x7e]*$/;
/** `*`, or an origin as browsers send it: `scheme://host[:port]`. */
const ORIGIN = /^(\*|[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/\s]+)$/;

/**
 * The `mqtt.websocket` section of the config file.
 *
 * @example
 * ```ts
 * import { mqttWsConfigSchema } from "./ws_options.ts";
 * if (mqttWsConfigSchema.fields.port.default !== 8083) throw new Error();
 * ```
 */
export const mqttWsConfigSchema = obj("MQTT over WebSocket (docs/mqtt.md#mqtt-over-websocket)", {
  enabled: bool("Serve MQTT over WebSocket on its own port (needs mqtt.enabled)", {
    default: true,
  }),
  port: portField(8083, "WebSocket"),
  path: str("Request path of the MQTT endpoint", { default: "/mqtt", pattern: PATH }),
  allowedOrigins: list(
    str("origin", { pattern: ORIGIN }),
    "Origins whose pages may connect, `*` for any (a request without Origin always passes)",
    { default: ["*"] },
  ),
  httpListener: bool(
    "Also serve at `path` on the HTTP listener (Deno's WebSocket, fewer checks: docs/mqtt.md)",
    { default: false },
  ),
  tls: tlsField("Serve wss:// (PEM files, reloaded when they change)"),
  handshakeTimeoutMs: int("Time allowed for the upgrade request", {
    min: 1,
    max: 3_600_000,
    default: 10_000,
  }),
  maxHandshakeBytes: int("Largest upgrade request head, bytes (431 past it)", {
    min: 1024,
    max: 1 << 20,
    default: 16_384,
  }),
  maxFrameSize: int(
    "Longest WebSocket frame, bytes (1009 past it; frames are streamed, not buffered)",
    { min: 2, max: 268_435_460, default: 268_435_460 },
  ),
  closeTimeoutMs: int("Wait for the client's Close after ours before closing the socket", {
    min: 1,
    max: 600_000,
    default: 3000,
  }),
});

/** The validated `mqtt.websocket` config section. */
export type MqttWsConfig = Infer<typeof mqttWsConfigSchema>;

/**
 * Tunables of {@link MqttWsListener}: the listener's keys of {@link mqttWsConfigSchema} (its docs
 * say what each does) and the address to bind.
 */
export type MqttWsOptions = Omit<MqttWsConfig, "enabled" | "httpListener"> & {
  /** Address to bind (the gateway passes its `host`). @default "127.0.0.1" */
  hostname: string;
};

/**
 * Defaults of every option.
 *
 * @example
 * ```ts
 * import { defaultMqttWsOptions } from "./ws_options.ts";
 * if (defaultMqttWsOptions.port !== 8083 || defaultMqttWsOptions.path !== "/mqtt") throw new Error();
 * ```
 */
export const defaultMqttWsOptions: Readonly<MqttWsOptions> = (() => {
  const { enabled: _e, httpListener: _h, ...o } = defaults(mqttWsConfigSchema) as MqttWsConfig;
  return Object.freeze({ hostname: "127.0.0.1", ...o });
})();

/**
 * Fills unset keys with defaults and checks them (RangeError on a bad value).
 *
 * @example
 * ```ts
 * import { resolveMqttWsOptions } from "./ws_options.ts";
 * const o = resolveMqttWsOptions({ port: 0 });
 * if (o.port !== 0 || o.path !== "/mqtt") throw new Error();
 * let threw = false;
 * try { resolveMqttWsOptions({ path: "mqtt" }); } catch (e) { threw = e instanceof RangeError; }
 * if (!threw) throw new Error("a path without / accepted");
 * ```
 */
export function resolveMqttWsOptions(options: Partial<MqttWsOptions> = {}): MqttWsOptions {
  const o: MqttWsOptions = { ...defaultMqttWsOptions };
  for (const [k, v] of Object.entries(options)) {
    if (v !== undefined) (o as unknown as Record<string, unknown>)[k] = v;
  }
  const fields = mqttWsConfigSchema.fields;
  const ints = [
    "port",
    "handshakeTimeoutMs",
    "maxHandshakeBytes",
    "maxFrameSize",
    "closeTimeoutMs",
  ] as const;
  for (const name of ints) {
    const v = o[name];
    const { min = 0, max = Infinity } = fields[name];
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new RangeError(
        `Cannot use MQTT WebSocket option ${name}: ${v} is not an integer in ${min}..${max}`,
      );
    }
  }
  if (!PATH.test(o.path)) {
    throw new RangeError(
      `Cannot use MQTT WebSocket option path: "${o.path}" must start with / (no query)`,
    );
  }
  for (const origin of o.allowedOrigins) {
    if (!ORIGIN.test(origin)) {
      throw new RangeError(
        `Cannot use MQTT WebSocket option allowedOrigins: "${origin}" is not * or scheme://host[:port]`,
      );
    }
  }
  return o;
}
