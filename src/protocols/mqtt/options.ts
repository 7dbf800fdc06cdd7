/**
 * Every tunable of the MQTT listener: the `mqtt` config-schema fragment, {@link MqttServerOptions}
 * derived from it (one flat, JSON-friendly object, so the config layer maps the `mqtt` section onto
 * it key by key), and the defaults (written once, in the fragment).
 *
 * @module
 */

import { bool, defaults, type Infer, int, obj, oneOf, str } from "../../config/schema.ts";
import { portField } from "../../net/options.ts";

/** The MQTT listener's part of the `mqtt` config section (the gateway adds `enabled` and `tls`). */
export const mqttOptionsSchema = obj("MQTT 3.1.1/5 listener", {
  port: portField(1883, "MQTT"),
  maxConnections: int("Most concurrent MQTT connections", {
    min: 1,
    max: 10_000_000,
    default: 50_000,
  }),
  maxConnectPacketSize: int("Largest packet before CONNECT is accepted, bytes", {
    min: 64,
    max: 268_435_455,
    default: 262_144,
  }),
  anonymousPresence: bool(
    "Presence (retained devices/{id}/status) also for anonymous clients whose client id is a device id, from their first publish under devices/{id}/",
    { default: false },
  ),
  assignedIdPrefix: str("Prefix of client ids assigned to clients that send an empty one", {
    default: "ferry-",
  }),
  maxSubscriptions: int("Subscriptions one session may hold (more get SUBACK 0x97)", {
    min: 1,
    max: 10_000_000,
    default: 1000,
  }),
  connectTimeoutMs: int("Time allowed for CONNECT", { min: 1, max: 3_600_000, default: 10_000 }),
  maxPacketSize: int(
    "Largest packet accepted, bytes (sized for a Raspberry Pi: raise it for firmware images)",
    { min: 64, max: 268_435_455, default: 1_048_576 },
  ),
  maxKeepAlive: int("Largest keepalive granted, seconds", { min: 1, max: 65_535, default: 65_535 }),
  receiveMaximum: int("QoS 1/2 publishes a client may have unacknowledged (v5 Receive Maximum)", {
    min: 1,
    max: 65_535,
    default: 64,
  }),
  maxQueuedMessages: int("Messages queued per session before the drop policy", {
    min: 1,
    max: 10_000_000,
    default: 1000,
  }),
  queueDropPolicy: oneOf(["oldest", "newest"], "Which message goes when a session queue is full", {
    default: "oldest",
  }),
  maxInflight: int("QoS 1/2 publishes sent before waiting for acknowledgements", {
    min: 1,
    max: 65_535,
    default: 32,
  }),
  maxTopicAlias: int("Topic aliases a v5 client may use", { min: 0, max: 65_535, default: 64 }),
  sessionExpiryMaxSec: int("Upper bound of a session's expiry, seconds", {
    min: 0,
    max: 4_294_967_295,
    default: 604_800,
  }),
  maxSessions: int("Persistent sessions kept at most", {
    min: 1,
    max: 10_000_000,
    default: 100_000,
  }),
  maxPendingBytes: int("Outbound bytes queued per connection before closing it", {
    min: 1024,
    max: 1 << 30,
    default: 1 << 20,
  }),
  drainTimeoutMs: int("Longest wait for a slow reader before closing it", {
    min: 100,
    max: 600_000,
    default: 10_000,
  }),
  allowMqtt31: bool("Accept MQTT 3.1 as well as 3.1.1 and 5.0", { default: true }),
  maxClientIdLength: int("Longest client id accepted", { min: 23, max: 65_535, default: 256 }),
});

/** The `mqtt.persistence` config section: the state file of sessions and retained messages. */
export const mqttPersistenceSchema = obj(
  "Durable persistent sessions and retained messages (docs/mqtt.md)",
  {
    enabled: bool("Keep persistent sessions and retained messages across restarts", {
      default: true,
    }),
    file: str("State file, relative to dataDir", { default: "mqtt-state.db" }),
    synchronous: oneOf(
      ["full", "normal"],
      "SQLite synchronous: full survives power loss, normal only crashes",
      { default: "full" },
    ),
  },
);

/**
 * Tunables of {@link MqttServer}: the keys of {@link mqttOptionsSchema} (its docs say what each
 * means) plus those a config file does not set. Every key is optional; see
 * {@link defaultMqttServerOptions}.
 */
export type MqttServerOptions = Partial<
  Infer<typeof mqttOptionsSchema> & {
    /** Address to bind. @default "0.0.0.0" */
    hostname: string;
    /** Socket read buffer of an idle connection, bytes (grows while data streams in). @default 64 */
    readBufferMin: number;
    /** Largest socket read buffer while data streams in, bytes. @default 16384 */
    readBufferMax: number;
  }
>;

/**
 * The defaults of every {@link MqttServerOptions} key.
 *
 * @example
 * ```ts
 * import { defaultMqttServerOptions } from "./options.ts";
 * if (defaultMqttServerOptions.port !== 1883) throw new Error();
 * ```
 */
export const defaultMqttServerOptions: Readonly<Required<MqttServerOptions>> = Object.freeze({
  hostname: "0.0.0.0",
  readBufferMin: 64,
  readBufferMax: 16_384,
  ...defaults(mqttOptionsSchema),
});

/**
 * Fills unset keys with defaults and checks ranges (RangeError on a bad value).
 *
 * @example
 * ```ts
 * import { resolveMqttServerOptions } from "./options.ts";
 * const o = resolveMqttServerOptions({ port: 0, maxInflight: 8 });
 * if (o.port !== 0 || o.maxInflight !== 8 || o.receiveMaximum !== 64) throw new Error();
 * let threw = false;
 * try { resolveMqttServerOptions({ receiveMaximum: 0 }); } catch (e) { threw = e instanceof RangeError; }
 * if (!threw) throw new Error("0 accepted");
 * ```
 */
export function resolveMqttServerOptions(
  options: MqttServerOptions = {},
): Required<MqttServerOptions> {
  const o: Required<MqttServerOptions> = { ...defaultMqttServerOptions };
  for (const [k, v] of Object.entries(options)) {
    if (v !== undefined) (o as unknown as Record<string, unknown>)[k] = v;
  }
  const int = (name: keyof MqttServerOptions, min: number, max: number) => {
    const v = o[name] as number;
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new RangeError(
        `Cannot use MQTT option ${name}: ${v} is not an integer in ${min}..${max}`,
      );
    }
  };
  int("port", 0, 65535);
  int("connectTimeoutMs", 1, 3_600_000);
  int("maxPacketSize", 64, 268_435_455);
  int("maxConnectPacketSize", 64, 268_435_455);
  int("maxKeepAlive", 0, 65535);
  int("receiveMaximum", 1, 65535);
  int("maxQueuedMessages", 0, 10_000_000);
  int("maxInflight", 1, 65535);
  int("maxTopicAlias", 0, 65535);
  int("sessionExpiryMaxSec", 0, 0xffffffff);
  int("maxConnections", 1, 10_000_000);
  int("maxSessions", 1, 100_000_000);
  int("maxPendingBytes", 1024, 1 << 30);
  int("drainTimeoutMs", 1, 3_600_000);
  int("readBufferMin", 16, 1 << 20);
  int("readBufferMax", 16, 1 << 24);
  int("maxClientIdLength", 23, 65535);
  int("maxSubscriptions", 1, 10_000_000);
  if (o.queueDropPolicy !== "oldest" && o.queueDropPolicy !== "newest") {
    throw new RangeError(`Cannot use MQTT option queueDropPolicy: ${o.queueDropPolicy}`);
  }
  return o;
}
