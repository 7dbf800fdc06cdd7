/**
 * Maps MQTT 5 PUBLISH properties (MQTT 5 §3.3.2.3) to the core's message properties and back, so
 * user properties, content type, response topic, correlation data, payload format and message
 * expiry travel end to end.
 *
 * @module
 */

import type { IPublishPacket, UserProperties } from "mqtt-packet";
import type { MessageProperties } from "../../core/mod.ts";
import { Buffer } from "node:buffer";

/** The PUBLISH (or will) properties that carry message metadata. */
export type PublishProperties = NonNullable<IPublishPacket["properties"]>;

/**
 * Core properties of an incoming PUBLISH or will; `now` makes Message Expiry Interval absolute.
 *
 * @example
 * ```ts
 * import { toMessageProperties } from "./properties.ts";
 * const p = toMessageProperties({ messageExpiryInterval: 2, userProperties: { a: ["1", "2"] } }, 1000);
 * if (p?.expiresAt !== 3000 || p.userProperties?.length !== 2) throw new Error();
 * ```
 */
export function toMessageProperties(
  props: PublishProperties | undefined,
  now: number,
): MessageProperties | undefined {
  if (!props) return undefined;
  const out: MessageProperties = {};
  if (props.contentType !== undefined) out.contentType = props.contentType;
  if (props.payloadFormatIndicator !== undefined) {
    out.payloadFormat = props.payloadFormatIndicator ? 1 : 0;
  }
  if (props.responseTopic !== undefined) out.responseTopic = props.responseTopic;
  if (props.correlationData !== undefined) {
    out.correlationData = new Uint8Array(props.correlationData);
  }
  if (props.messageExpiryInterval !== undefined) {
    out.expiresAt = now + props.messageExpiryInterval * 1000;
  }
  if (props.userProperties) {
    const pairs: Array<[string, string]> = [];
    for (const [k, v] of Object.entries(props.userProperties)) {
      for (const x of Array.isArray(v) ? v : [v]) pairs.push([k, String(x)]);
    }
    out.userProperties = pairs;
  }
  return Object.keys(out).length ? out : undefined;
}

/**
 * PUBLISH properties for an outgoing message; the expiry becomes the remaining lifetime in whole
 * seconds ([MQTT-3.3.2-6]).
 *
 * @example
 * ```ts
 * import { toPublishProperties } from "./properties.ts";
 * const p = toPublishProperties({ expiresAt: 5500, contentType: "text/plain" }, 1000);
 * if (p?.messageExpiryInterval !== 5 || p.contentType !== "text/plain") throw new Error();
 * ```
 */
export function toPublishProperties(
  props: MessageProperties | undefined,
  now: number,
): PublishProperties | undefined {
  if (!props) return undefined;
  const out: PublishProperties = {};
  if (props.contentType !== undefined) out.contentType = props.contentType;
  if (props.payloadFormat !== undefined) out.payloadFormatIndicator = props.payloadFormat === 1;
  if (props.responseTopic !== undefined) out.responseTopic = props.responseTopic;
  if (props.correlationData !== undefined) {
    const c = props.correlationData;
    out.correlationData = Buffer.isBuffer(c)
      ? c
      : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
  }
  if (props.expiresAt !== undefined) {
    // Rounded up: a message that has not expired never says 0 seconds left.
    out.messageExpiryInterval = Math.max(1, Math.ceil((props.expiresAt - now) / 1000));
  }
  if (props.userProperties?.length) {
    const up: UserProperties = {};
    for (const [k, v] of props.userProperties) {
      const cur = up[k];
      if (cur === undefined) up[k] = v;
      else if (Array.isArray(cur)) cur.push(v);
      else up[k] = [cur, v];
    }
    out.userProperties = up;
  }
  return out;
}
