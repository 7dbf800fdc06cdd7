/**
 * Every tunable of the MQTT listener in one flat, JSON-friendly object, so the config layer can map
 * a `mqtt` section onto it key by key.
 *
 * @module
 */

/** Tunables of {@link MqttServer}. Every key is optional; see {@link defaultMqttServerOptions}. */
export interface MqttServerOptions {
  /** Address to bind. @default "0.0.0.0" */
  hostname?: string;
  /** TCP port to bind; 0 picks a free one. @default 1883 */
  port?: number;
  /** Time a new connection has to send CONNECT before it is closed. @default 10000 */
  connectTimeoutMs?: number;
  /**
   * Largest packet accepted (whole packet, bytes); larger ones close the connection (v5: 0x95).
   * Sized for a Raspberry Pi: raise it for firmware images and the like. @default 1048576
   */
  maxPacketSize?: number;
  /** Largest first packet (CONNECT) from a client not yet authenticated, bytes. @default 262144 */
  maxConnectPacketSize?: number;
  /** Largest keepalive granted, seconds; v5 clients asking more get Server Keep Alive. @default 65535 */
  maxKeepAlive?: number;
  /** QoS 1/2 PUBLISHes a client may have unacknowledged towards us (v5 Receive Maximum). @default 64 */
  receiveMaximum?: number;
  /** Messages queued per session (offline or over the inflight window) before the drop policy. @default 1000 */
  maxQueuedMessages?: number;
  /** Which message goes when a session queue is full. @default "oldest" */
  queueDropPolicy?: "oldest" | "newest";
  /** QoS 1/2 PUBLISHes we send before waiting for acknowledgements. @default 32 */
  maxInflight?: number;
  /** Topic aliases a v5 client may use towards us (Topic Alias Maximum). @default 64 */
  maxTopicAlias?: number;
  /** Upper bound of a session's expiry, seconds (also used for 3.1.1 persistent sessions). @default 604800 */
  sessionExpiryMaxSec?: number;
  /** Open connections at most; past it new TCP connections are closed at once. @default 50000 */
  maxConnections?: number;
  /** Persistent sessions kept at most; past it a new persistent session is refused. @default 100000 */
  maxSessions?: number;
  /** Bytes queued on a socket before the subscriber counts as a slow consumer. @default 1048576 */
  maxPendingBytes?: number;
  /** Longest a write may wait on a slow socket before the connection is closed. @default 10000 */
  drainTimeoutMs?: number;
  /** Socket read buffer of an idle connection, bytes (grows while data streams in). @default 64 */
  readBufferMin?: number;
  /** Largest socket read buffer while data streams in, bytes. @default 16384 */
  readBufferMax?: number;
  /**
   * Track presence (`devices/{id}/status`, registry) for anonymous clients whose client id is a
   * valid device id. Turn off when generic MQTT test suites subscribe to `#` and expect only their
   * own messages. @default true
   */
  anonymousPresence?: boolean;
  /** Accept MQTT 3.1 (`MQIsdp`, level 3) as well as 3.1.1 and 5.0. @default true */
  allowMqtt31?: boolean;
  /** Longest client id accepted, characters. @default 256 */
  maxClientIdLength?: number;
  /** Subscriptions one session may hold; more are refused (SUBACK 0x97 / 0x80). @default 1000 */
  maxSubscriptions?: number;
  /** Prefix of the ids assigned to clients that connect with an empty one. @default "ferry-" */
  assignedIdPrefix?: string;
}

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
  port: 1883,
  connectTimeoutMs: 10_000,
  maxPacketSize: 1_048_576,
  maxConnectPacketSize: 262_144,
  maxKeepAlive: 65_535,
  receiveMaximum: 64,
  maxQueuedMessages: 1000,
  queueDropPolicy: "oldest" as const,
  maxInflight: 32,
  maxTopicAlias: 64,
  sessionExpiryMaxSec: 604_800,
  maxConnections: 50_000,
  maxSessions: 100_000,
  maxPendingBytes: 1 << 20,
  drainTimeoutMs: 10_000,
  readBufferMin: 64,
  readBufferMax: 16_384,
  anonymousPresence: true,
  allowMqtt31: true,
  maxClientIdLength: 256,
  maxSubscriptions: 1000,
  assignedIdPrefix: "ferry-",
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
