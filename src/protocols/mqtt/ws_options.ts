/**
 * Every tunable of MQTT over WebSocket: {@link MqttWsOptions} with their defaults, and the
 * `mqtt.websocket` config-schema fragment built on them (defaults written once, here).
 *
 * @module
 */

import type { Field } from "../../config/schema.ts";
import type { TlsFiles } from "../../net/tcp_listener.ts";

/** A request path: `/`, then visible ASCII but `?`. */
const PATH = /^\/[\x21-\x3e\x40-\x7e]*$/;
/** `*`, or an origin as browsers send it: `scheme://host[:port]`. */
const ORIGIN = /^(\*|[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/\s]+)$/;

/** Tunables of {@link MqttWsListener} (and of the route on the HTTP listener). */
export interface MqttWsOptions {
  /** Address to bind (the gateway passes its `host`). @default "127.0.0.1" */
  hostname: string;
  /** TCP port of the WebSocket listener; 0 picks a free one. @default 8083 */
  port: number;
  /** Request path of the MQTT endpoint. @default "/mqtt" */
  path: string;
  /**
   * Origins whose pages may connect (`https://dash.example.com`), or `*` for any. A request with
   * no `Origin` (not a browser) is always let through: the check protects browser users from
   * other sites' pages. @default ["*"]
   */
  allowedOrigins: string[];
  /** Time a new connection has to complete its upgrade request. @default 10000 */
  handshakeTimeoutMs: number;
  /** Largest upgrade request head (request line and headers), bytes; past it 431. @default 16384 */
  maxHandshakeBytes: number;
  /**
   * Longest WebSocket frame accepted, bytes; a longer one is refused with close code 1009.
   * Frames are streamed, never buffered whole: MQTT's own caps (`maxConnectPacketSize`,
   * `maxPacketSize`) bound what is kept. @default 268435460
   */
  maxFrameSize: number;
  /** How long to wait for the client's Close after ours before closing the socket. @default 3000 */
  closeTimeoutMs: number;
  /** Serve `wss://` with these PEM files (reloaded when they change). */
  tls?: TlsFiles;
}

/**
 * Defaults of every option.
 *
 * @example
 * ```ts
 * import { defaultMqttWsOptions } from "./ws_options.ts";
 * if (defaultMqttWsOptions.port !== 8083 || defaultMqttWsOptions.path !== "/mqtt") throw new Error();
 * ```
 */
export const defaultMqttWsOptions: Readonly<MqttWsOptions> = Object.freeze({
  hostname: "127.0.0.1",
  port: 8083,
  path: "/mqtt",
  allowedOrigins: ["*"],
  handshakeTimeoutMs: 10_000,
  maxHandshakeBytes: 16_384,
  maxFrameSize: 268_435_460,
  closeTimeoutMs: 3000,
});

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
  const int = (name: keyof MqttWsOptions, min: number, max: number) => {
    const v = o[name] as number;
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new RangeError(
        `Cannot use MQTT WebSocket option ${name}: ${v} is not an integer in ${min}..${max}`,
      );
    }
  };
  int("port", 0, 65535);
  int("handshakeTimeoutMs", 1, 3_600_000);
  int("maxHandshakeBytes", 1024, 1 << 20);
  int("maxFrameSize", 2, 268_435_460);
  int("closeTimeoutMs", 1, 600_000);
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

function int(def: number, min: number, max: number, doc: string): Field {
  return { type: "integer", min, max, default: def, doc };
}

const d = defaultMqttWsOptions;

/**
 * The `mqtt.websocket` section of the config file.
 *
 * @example
 * ```ts
 * import { mqttWsConfigSchema } from "./ws_options.ts";
 * if (mqttWsConfigSchema.fields.port.type !== "integer") throw new Error();
 * ```
 */
export const mqttWsConfigSchema: Extract<Field, { type: "object" }> = {
  type: "object",
  doc: "MQTT over WebSocket (docs/mqtt.md#mqtt-over-websocket)",
  fields: {
    enabled: {
      type: "boolean",
      default: true,
      doc: "Serve MQTT over WebSocket on its own port (needs mqtt.enabled)",
    },
    port: {
      type: "integer",
      min: 0,
      max: 65535,
      default: d.port,
      doc: "WebSocket port (0 picks a free port; the log says which)",
    },
    path: {
      type: "string",
      pattern: PATH,
      default: d.path,
      doc: "Request path of the MQTT endpoint",
    },
    allowedOrigins: {
      type: "array",
      items: {
        type: "string",
        pattern: ORIGIN,
        doc: "origin",
      },
      default: [...d.allowedOrigins],
      doc: "Origins whose pages may connect, `*` for any (a request without Origin always passes)",
    },
    httpListener: {
      type: "boolean",
      default: false,
      doc:
        "Also serve at `path` on the HTTP listener (Deno's WebSocket, fewer checks: docs/mqtt.md)",
    },
    tls: {
      type: "object",
      optional: true,
      doc: "Serve wss:// (PEM files, reloaded when they change)",
      fields: {
        certFile: { type: "string", doc: "PEM certificate chain" },
        keyFile: { type: "string", doc: "PEM private key" },
      },
    },
    handshakeTimeoutMs: int(
      d.handshakeTimeoutMs,
      1,
      3_600_000,
      "Time allowed for the upgrade request",
    ),
    maxHandshakeBytes: int(
      d.maxHandshakeBytes,
      1024,
      1 << 20,
      "Largest upgrade request head, bytes (431 past it)",
    ),
    maxFrameSize: int(
      d.maxFrameSize,
      2,
      268_435_460,
      "Longest WebSocket frame, bytes (1009 past it; frames are streamed, not buffered)",
    ),
    closeTimeoutMs: int(
      d.closeTimeoutMs,
      1,
      600_000,
      "Wait for the client's Close after ours before closing the socket",
    ),
  },
};

/** The validated `mqtt.websocket` config section. */
export interface MqttWsConfig extends Omit<MqttWsOptions, "hostname"> {
  /** Serve on its own port. */
  enabled: boolean;
  /** Also serve on the HTTP listener. */
  httpListener: boolean;
}
