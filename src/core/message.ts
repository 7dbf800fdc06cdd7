/**
 * The one message model every protocol adapter produces and consumes.
 *
 * @module
 */

import { systemClock } from "./clock.ts";

/**
 * Where a message came from: the label an adapter registered its port under (`core.port({ name })`),
 * or `system` for what the core itself publishes (presence). The core names no adapter.
 */
export type Protocol = string;

/** Quality of service, MQTT-style: 0 at most once, 1 at least once, 2 exactly once. */
export type QoS = 0 | 1 | 2;

/** Optional metadata carried end to end (MQTT 5 properties map onto these). */
export interface MessageProperties {
  /** MIME type of the payload. */
  contentType?: string;
  /** 0 unspecified bytes, 1 UTF-8 text. */
  payloadFormat?: 0 | 1;
  /** Topic a responder should answer on. */
  responseTopic?: string;
  /** Opaque bytes correlating a request and its response. */
  correlationData?: Uint8Array;
  /** Absolute expiry time (clock ms); the message is not delivered after it. */
  expiresAt?: number;
  /** Application key/value pairs, order kept, keys may repeat. */
  userProperties?: Array<[string, string]>;
}

/** A message flowing through the gateway. */
export interface Message {
  /** Topic in the gateway's namespace (see `topics.ts`). */
  topic: string;
  /** Opaque payload bytes. */
  payload: Uint8Array;
  /** Delivery guarantee asked for by the publisher. */
  qos: QoS;
  /** Keep as the topic's last known value (and clear it when the payload is empty). */
  retain: boolean;
  /** Accepted at (clock ms). */
  ts: number;
  /** Protocol the message arrived on. */
  protocol: Protocol;
  /** The device that published it, when a device did. */
  deviceId?: string;
  /** Identifier of the session that published it (used for MQTT no-local). */
  origin?: string;
  /** Optional metadata. */
  properties?: MessageProperties;
}

/**
 * Builds a message with defaults filled in.
 *
 * @example
 * ```ts
 * import { createMessage } from "./message.ts";
 * const m = createMessage({ topic: "devices/a/telemetry", payload: new Uint8Array([1]) });
 * if (m.qos !== 0 || m.retain || m.protocol !== "system") throw new Error("bad defaults");
 * ```
 */
export function createMessage(
  init: Pick<Message, "topic" | "payload"> & Partial<Message>,
): Message {
  return {
    qos: 0,
    retain: false,
    ts: systemClock.now(),
    protocol: "system",
    ...init,
  };
}

/**
 * `bytes` as a buffer of its own: a view into a larger buffer (adapters decode payloads as views
 * into their socket reads, without copying, and may reuse a read buffer once the port kept none
 * of its messages: `DevicePort.held`) is copied, so that keeping it neither pins the whole read
 * nor sees its bytes change.
 *
 * @example
 * ```ts
 * import { ownBytes } from "./message.ts";
 * const read = new Uint8Array(16384);
 * const payload = read.subarray(10, 74);
 * if (ownBytes(payload).buffer.byteLength !== 64) throw new Error("still pins the read");
 * ```
 */
export function ownBytes(bytes: Uint8Array): Uint8Array {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes;
  const copy = new Uint8Array(bytes.byteLength); // (`new Uint8Array(view)` is far slower)
  copy.set(bytes);
  return copy;
}

/**
 * Makes `msg` own its payload ({@link ownBytes}), in place, before it is kept beyond its
 * delivery: retained, queued for an offline or slow device, in flight awaiting an ack.
 */
export function ownPayload(msg: Message): Message {
  const p = msg.payload;
  if (p.byteOffset !== 0 || p.byteLength !== p.buffer.byteLength) msg.payload = ownBytes(p);
  return msg;
}
