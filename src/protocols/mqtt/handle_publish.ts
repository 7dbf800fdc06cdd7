/**
 * Incoming PUBLISH (MQTT 3.1.1 §3.3, MQTT 5 §3.3), end to end: DUP/QoS/packet id rules, topic
 * aliases, topic validation and payload format ({@link evaluatePublish}, a pure decision, giving
 * the draft), then the core's port decides (rate, ACL, acceptance, durability) and the answer goes
 * out as PUBACK/PUBREC ({@link handlePublish}): only once accepted ([MQTT-4.3.2-2],
 * [MQTT-4.3.3-2]), and with persistent sessions only once the state it caused is committed.
 *
 * @module
 */

import type { IPublishPacket } from "mqtt-packet";
import { type Draft, type PublishResult, validateTopic } from "../../core/mod.ts";
import { isServerTopic, topicNameProblem } from "./topic_rules.ts";
import type { MqttConnection } from "./connection.ts";
import type { Client } from "./handle_connect.ts";
import type { ProtocolVersion } from "./codec.ts";
import { MqttMalformedError, MqttProtocolError } from "./errors.ts";
import { toMessageProperties } from "./properties.ts";
import { ReasonCode, refusalReasonCode } from "./reason_codes.ts";
import { isWellFormedUtf8 } from "./utf8.ts";

/** What the decision needs of the connection. */
export interface PublishContext {
  /** Protocol level. */
  version: ProtocolVersion;
  /** Session id (message origin, for no-local). */
  origin: string;
  /** Incoming topic aliases of this connection (MQTT 5 §3.3.2.3.4), made on first use. */
  aliases?: Map<number, string>;
  /** Topic Alias Maximum we announced. */
  maxTopicAlias: number;
  /** Clock ms. */
  now: number;
  /** The last topic that passed validation (devices repeat their topics). */
  lastValid?: string;
}

/** Hand to the port, or refuse with a reason code (PUBACK/PUBREC in v5) and a drop reason. */
export type PublishDecision =
  | { accept: true; draft: Draft }
  | { accept: false; reasonCode: number; message: string; drop: string };

/**
 * Decides on an incoming PUBLISH. Throws {@link MqttProtocolError} / {@link MqttMalformedError}
 * when the connection must be closed.
 *
 * @example
 * ```ts
 * import { evaluatePublish } from "./handle_publish.ts";
 * const ctx = { version: 5, origin: "o", aliases: new Map(), maxTopicAlias: 8, now: 0 } as const;
 * const pkt = { cmd: "publish", topic: "devices/s1/telemetry", payload: new Uint8Array([1]), qos: 0, dup: false, retain: false } as const;
 * const d = evaluatePublish(pkt as never, { ...ctx, aliases: new Map() });
 * if (!d.accept || d.draft.topic !== "devices/s1/telemetry") throw new Error();
 * const bad = evaluatePublish({ ...pkt, payload: new Uint8Array([0xff]), properties: { payloadFormatIndicator: true } } as never, { ...ctx });
 * if (bad.accept || bad.reasonCode !== 0x99) throw new Error();
 * ```
 */
export function evaluatePublish(packet: IPublishPacket, ctx: PublishContext): PublishDecision {
  const qos = packet.qos;
  if (qos === 0 && packet.dup) {
    throw new MqttMalformedError("Cannot accept PUBLISH: DUP set on QoS 0 [MQTT-3.3.1-2]");
  }
  if (qos > 0 && !packet.messageId) {
    throw new MqttProtocolError("Cannot accept PUBLISH: packet id 0 [MQTT-2.2.1-3]");
  }
  const props = packet.properties;
  let topic = packet.topic;
  if (props?.topicAlias !== undefined) {
    const alias = props.topicAlias;
    // [MQTT-3.3.2-8], [MQTT-3.3.2-9]: 0 and values above our maximum are invalid.
    if (alias === 0 || alias > ctx.maxTopicAlias) {
      throw new MqttProtocolError(`Cannot accept PUBLISH: topic alias ${alias} is out of range`, {
        reasonCode: ReasonCode.TopicAliasInvalid,
      });
    }
    if (topic === "") {
      const known = ctx.aliases?.get(alias);
      if (known === undefined) {
        throw new MqttProtocolError(`Cannot accept PUBLISH: topic alias ${alias} is not set`);
      }
      topic = known;
    } else (ctx.aliases ??= new Map()).set(alias, topic);
  }
  if (topic === "") {
    // [MQTT-4.7.3-1]; v5 §3.3.2.1: an empty topic without a topic alias is a Protocol Error.
    throw new MqttProtocolError("Cannot accept PUBLISH: empty topic without a topic alias");
  }
  if (topic !== ctx.lastValid) {
    const err = topicNameProblem(topic);
    if (err) {
      // [MQTT-3.3.2-2], [MQTT-4.7.3-1]; more levels than the listener takes (topic_rules.ts)
      throw new MqttProtocolError(`Cannot accept PUBLISH: ${err}`, {
        reasonCode: ReasonCode.TopicNameInvalid,
      });
    }
    if (isServerTopic(topic)) {
      // §4.7.2: the Server SHOULD prevent Clients from exchanging messages on `$` topics.
      return {
        accept: false,
        reasonCode: ReasonCode.NotAuthorized,
        message: `topic ${topic} starts with $, which is kept for the server (MQTT §4.7.2)`,
        drop: "not_authorized",
      };
    }
  }
  if (props?.subscriptionIdentifier !== undefined) {
    throw new MqttProtocolError(
      "Cannot accept PUBLISH: subscription identifier from a client [MQTT-3.3.4-6]",
    );
  }
  if (props?.responseTopic !== undefined && validateTopic(props.responseTopic)) {
    throw new MqttProtocolError("Cannot accept PUBLISH: bad response topic [MQTT-3.3.2-14]");
  }
  const payload = typeof packet.payload === "string"
    ? new TextEncoder().encode(packet.payload)
    : packet.payload as Uint8Array;
  // The payload stays a view into the socket read: whatever keeps a message beyond its delivery
  // (retained store, session queues, command queues) copies it then (`ownPayload`).
  if (props?.payloadFormatIndicator && !isWellFormedUtf8(payload)) {
    return {
      accept: false,
      reasonCode: ReasonCode.PayloadFormatInvalid,
      message: "payload is not UTF-8 although the payload format indicator says so",
      drop: "bad_payload",
    };
  }
  ctx.lastValid = topic;
  const draft: Draft = { topic, payload, qos, retain: packet.retain, origin: ctx.origin };
  if (props) {
    const mp = toMessageProperties(props, ctx.now);
    if (mp) draft.properties = mp;
  }
  return { accept: true, draft };
}

/** Handles PUBLISH: a promise only when the connection must stop reading until one is answered. */
export function handlePublish(
  conn: MqttConnection,
  c: Client,
  p: IPublishPacket,
): Promise<void> | undefined {
  const { port, options } = conn.ctx;
  const session = c.session;
  const id = p.messageId;
  if (p.qos === 2 && session.hasInbound(id!)) {
    // [MQTT-4.3.3-10] a resent QoS 2 PUBLISH is acknowledged again but not delivered again.
    return conn.answers.answer(id, (messageId) => conn.send({ cmd: "pubrec", messageId }));
  }
  if (p.qos === 2 && session.inboundCount >= options.receiveMaximum) {
    // [MQTT-3.3.4-9] more unacknowledged QoS 2 than our Receive Maximum.
    throw new MqttProtocolError("Cannot accept PUBLISH: Receive Maximum exceeded", {
      reasonCode: ReasonCode.ReceiveMaximumExceeded,
    });
  }
  const ctx = conn.publishContext ??= {
    version: conn.version,
    origin: session.id,
    maxTopicAlias: options.maxTopicAlias,
    now: 0,
  };
  ctx.now = port.clock.now();
  const d = evaluatePublish(p, ctx);
  if (!d.accept) {
    port.throttled.info(d.drop, "publish refused", {
      clientId: c.clientId,
      topic: p.topic,
      why: d.message,
    });
    port.stats.drop(d.drop);
    return conn.answers.answer(d.reasonCode, (rc) => refusePublish(conn, c, p, rc));
  }
  // Accepted at once when the core has room (no promise per message); otherwise it waits: for
  // the spool's commit while the connection reads on, up to its lane's window; for room in the
  // pipeline with the connection's reading stopped (backpressure).
  const publishing = conn.publishOptions;
  return conn.answers.answer(
    port.publish(c.who, d.draft, publishing),
    (r) => published(conn, c, p, r),
  ) ?? publishing.lane!.roomWait;
}

/** Answers a PUBLISH with the core's answer. */
function published(
  conn: MqttConnection,
  c: Client,
  p: IPublishPacket,
  r: PublishResult,
): Promise<void> | undefined {
  if (conn.closing) return;
  if (r.ok) {
    const durable = conn.ctx.durable;
    if (p.qos !== 0 && durable?.pending) {
      // Acknowledged means durable: wait for the commit of what this message caused, and never
      // acknowledge what it could not write (the client sends it again).
      return durable.flushed().then((committed) =>
        committed ? acknowledge(conn, c, p) : notDurable(conn, c, p)
      );
    }
    acknowledge(conn, c, p);
    return;
  }
  conn.ctx.log.debug("publish refused", {
    clientId: conn.clientId,
    topic: p.topic,
    reason: r.reason,
  });
  if (p.qos === 0) return;
  if (conn.version !== 5 && r.reason !== "not_authorized") {
    // 3.1.1 cannot refuse a PUBLISH: close without acknowledging; the client sends it again.
    throw new MqttProtocolError(`Cannot accept PUBLISH: ${r.message}`);
  }
  refusePublish(conn, c, p, refusalReasonCode(r));
  return undefined;
}

/**
 * A QoS 1/2 PUBLISH whose state could not be committed (disk full, I/O error): v5 refuses it
 * (0x80); 3.1.1 cannot, so the connection closes without acknowledging it and the client resends.
 */
function notDurable(conn: MqttConnection, c: Client, p: IPublishPacket): void {
  conn.ctx.port.stats.drop("state_not_written");
  conn.ctx.port.throttled.error(
    "state_not_written",
    "publish not acknowledged: state not written",
    {
      clientId: c.clientId,
    },
  );
  if (conn.closing) return;
  if (conn.version === 5) {
    refusePublish(conn, c, p, ReasonCode.UnspecifiedError);
  } else conn.shutdown();
}

/** Answers a refused QoS 1/2 PUBLISH: v5 with `reasonCode`; 3.1.1 acknowledges and drops it. */
function refusePublish(
  conn: MqttConnection,
  c: Client,
  p: IPublishPacket,
  reasonCode: number,
): void {
  // 3.1.1 cannot refuse a PUBLISH: acknowledge and drop, as mosquitto does.
  const rc = conn.version === 5 ? reasonCode : undefined;
  if (p.qos === 1) conn.send({ cmd: "puback", messageId: p.messageId, reasonCode: rc });
  if (p.qos === 2) {
    if (conn.version !== 5) c.session.addInbound(p.messageId!);
    conn.send({ cmd: "pubrec", messageId: p.messageId, reasonCode: rc });
  }
}

/** Acknowledges an accepted PUBLISH ([MQTT-4.3.2-2], [MQTT-4.3.3-2]: only once accepted). */
function acknowledge(conn: MqttConnection, c: Client, p: IPublishPacket): void {
  if (conn.closing) return;
  if (p.qos === 1) conn.send({ cmd: "puback", messageId: p.messageId });
  else if (p.qos === 2) {
    c.session.addInbound(p.messageId!);
    conn.send({ cmd: "pubrec", messageId: p.messageId });
  }
}
