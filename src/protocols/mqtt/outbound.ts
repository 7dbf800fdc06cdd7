/**
 * PUBLISH from the server to a client (MQTT 3.1.1 §3.3, MQTT 5 §3.3): the hot path encodes the
 * fixed fields straight into a chunk of the connection's writer; otherwise the packet is built with
 * the message's v5 properties, subscription identifiers and an outgoing topic alias (MQTT 5
 * §3.3.2.3.4, per connection, assigned while there is room). Nothing larger than the client's
 * Maximum Packet Size is ever sent ([MQTT-3.1.2-24], [MQTT-3.1.2-25]), and a subscriber that stays
 * behind after the core stopped waiting for it loses QoS 0 messages (MQTT 5 §4.3.1) rather than
 * memory.
 *
 * @module
 */

import type { IPublishPacket } from "mqtt-packet";
import { Buffer } from "node:buffer";
import { encodePacket } from "./codec.ts";
import type { MqttConnection } from "./connection.ts";
import { encodePublish } from "./_fast_codec.ts";
import { toPublishProperties } from "./properties.ts";
import type { Outgoing } from "./session.ts";

const NO_BYTES: Uint8Array = new Uint8Array(0);

/** Fields of the PUBLISH being encoded on the hot path (one object, reused: encoding is sync). */
const PUBLISH_FIELDS = {
  topic: "",
  payload: NO_BYTES,
  qos: 0,
  retain: false,
  dup: false,
  messageId: undefined as number | undefined,
};

/** A Buffer view (no copy) of bytes, as mqtt-packet's encoder requires. */
function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * The outgoing PUBLISH side of one connection (made on its first PUBLISH out).
 *
 * @example
 * ```ts ignore
 * const sent = new Outbound(conn).send({ msg, qos: 0, retain: false }, undefined, false);
 * ```
 */
export class Outbound {
  #conn: MqttConnection;
  #aliases: Map<string, number> | undefined;
  #tooLarge = false;
  /** The sender whose PUBLISH is being encoded (encoding is synchronous). */
  static #encoding: Outbound | undefined;
  /** Reserves the encoded PUBLISH's bytes in the writer of {@link Outbound.#encoding}. */
  static #reserve = (n: number): Uint8Array | undefined => Outbound.#encoding!.#reserveOut(n);

  /** The outbound side of `conn`. */
  constructor(conn: MqttConnection) {
    this.#conn = conn;
  }

  #reserveOut(n: number): Uint8Array | undefined {
    // [MQTT-3.1.2-24], [MQTT-3.1.2-25]: never send more than the client accepts.
    if (n > (this.#conn.client?.maximumPacketSize ?? Infinity)) {
      this.#tooLarge = true;
      return undefined;
    }
    return this.#conn.reserve(n);
  }

  /** Sends a PUBLISH; false when dropped for the client's Maximum Packet Size. */
  send(out: Outgoing, packetId: number | undefined, dup: boolean): boolean {
    const conn = this.#conn;
    const stats = conn.ctx.port.stats;
    if (
      out.qos === 0 && conn.behind && conn.pendingBytes > conn.ctx.options.maxPendingBytes / 2
    ) {
      // Still behind after the core stopped waiting for us: QoS 0 may be dropped (MQTT 5 §4.3.1),
      // which keeps a slow subscriber connected with bounded memory.
      stats.drop("slow_subscriber");
      return true;
    }
    const msg = out.msg;
    const v5 = conn.version === 5;
    if (
      msg.properties === undefined && out.subIds === undefined &&
      (!v5 || !conn.client?.topicAliasMaximum)
    ) {
      // Hot path, nothing but the fixed fields: encoded straight into the writer's chunk.
      const f = PUBLISH_FIELDS;
      f.topic = msg.topic;
      f.payload = msg.payload;
      f.qos = out.qos;
      f.retain = out.retain;
      f.dup = dup;
      f.messageId = packetId;
      this.#tooLarge = false;
      Outbound.#encoding = this;
      const done = encodePublish(f, v5, Outbound.#reserve);
      Outbound.#encoding = undefined;
      f.payload = NO_BYTES;
      if (done) {
        stats.frameOut();
        stats.delivered();
        return true;
      }
      if (!this.#tooLarge) return true; // the writer failed: the connection is closing
      stats.drop("too_large_for_client");
      return false;
    }
    const packet: IPublishPacket = {
      cmd: "publish",
      topic: msg.topic,
      payload: asBuffer(msg.payload),
      qos: out.qos,
      retain: out.retain,
      dup,
      messageId: packetId,
    };
    let newAlias: string | undefined;
    if (v5) {
      const props = toPublishProperties(msg.properties, conn.ctx.port.clock.now()) ?? {};
      if (out.subIds?.length) {
        props.subscriptionIdentifier = out.subIds.length === 1 ? out.subIds[0] : out.subIds;
      }
      const max = conn.client?.topicAliasMaximum ?? 0;
      if (max > 0) {
        // MQTT 5 §3.3.2.3.4: aliases are per connection, assigned while there is room.
        const aliases = this.#aliases ??= new Map();
        const known = aliases.get(msg.topic);
        if (known !== undefined) {
          props.topicAlias = known;
          packet.topic = "";
        } else if (aliases.size < max) {
          props.topicAlias = aliases.size + 1;
          aliases.set(msg.topic, props.topicAlias);
          newAlias = msg.topic;
        }
      }
      if (Object.keys(props).length) packet.properties = props;
    }
    const bytes = packet.properties === undefined
      ? encodePublish(packet as Parameters<typeof encodePublish>[0], v5)
      : encodePacket(packet, conn.version);
    if (bytes.length > (conn.client?.maximumPacketSize ?? Infinity)) {
      // [MQTT-3.1.2-24], [MQTT-3.1.2-25]: never send more than the client accepts.
      if (newAlias !== undefined) this.#aliases!.delete(newAlias);
      stats.drop("too_large_for_client");
      return false;
    }
    conn.write(bytes);
    stats.delivered();
    return true;
  }
}
