/**
 * The one message model every protocol adapter produces and consumes.
 *
 * @module
 */

/** Where a message came from. */
export type Protocol = "binary" | "mqtt" | "coap" | "http" | "upstream" | "system";

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
    ts: Date.now(),
    protocol: "system",
    ...init,
  };
}
