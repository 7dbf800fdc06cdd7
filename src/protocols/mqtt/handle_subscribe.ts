/**
 * SUBSCRIBE and UNSUBSCRIBE (MQTT 3.1.1 §3.8/§3.10, MQTT 5 §3.8/§3.10), end to end: filter
 * validation, the subscribe ACL, granted QoS, subscription options and identifiers, shared
 * subscriptions ({@link applySubscribe}, {@link applyUnsubscribe}), then SUBACK and the retained
 * messages after it ({@link handleSubscribe}), or UNSUBACK ({@link handleUnsubscribe}).
 *
 * @module
 */

import type { ISubscribePacket, IUnsubscribePacket, Packet } from "mqtt-packet";
import type { MqttConnection } from "./connection.ts";
import type { Client } from "./handle_connect.ts";
import { type DevicePort, type Identity, type QoS, validateFilter } from "../../core/mod.ts";
import type { ProtocolVersion } from "./codec.ts";
import { MqttProtocolError } from "./errors.ts";
import { ReasonCode } from "./reason_codes.ts";
import type { MqttSession, Outgoing, SubscriptionOptions } from "./session.ts";
import { parseSharedFilter, type SharedSubscriptions } from "./shared_subscriptions.ts";

/** What SUBSCRIBE/UNSUBSCRIBE need of the connection. */
export interface SubscribeContext {
  /** Protocol level. */
  version: ProtocolVersion;
  /** Who subscribes. */
  who: Identity;
  /** The session subscriptions go to. */
  session: MqttSession;
  /** Shared subscription groups. */
  shared: SharedSubscriptions;
  /** The port (retained messages). */
  port: DevicePort;
  /** Non-shared subscriptions a session may hold; more are refused (v5 0x97). @default unlimited */
  maxSubscriptions?: number;
}

/** Result of a SUBSCRIBE. */
export interface SubscribeResult {
  /** SUBACK return/reason codes, one per filter in order ([MQTT-3.8.4-6]). */
  granted: number[];
  /** Retained messages to send after SUBACK ([MQTT-3.3.1-6]). */
  retained: Outgoing[];
  /** Why filters were refused (logged). */
  refused: string[];
}

/**
 * Applies a SUBSCRIBE to the session.
 *
 * @example
 * ```ts
 * import { Core, Identity } from "../../core/mod.ts";
 * import { MqttSession } from "./session.ts";
 * import { SharedSubscriptions } from "./shared_subscriptions.ts";
 * import { applySubscribe } from "./handle_subscribe.ts";
 * import { MQTT } from "./server.ts";
 * const core = new Core({ anonymous: true });
 * const port = core.port(MQTT);
 * const session = new MqttSession("c", port, { maxQueued: 9, dropPolicy: "oldest", maxInflight: 9 });
 * const ctx = { version: 4, who: new Identity({ kind: "device", id: "s1" }, "s1"), session, shared: new SharedSubscriptions(port), port } as const;
 * const r = applySubscribe({ cmd: "subscribe", messageId: 1, subscriptions: [
 *   { topic: "devices/s1/commands/+", qos: 2 }, { topic: "devices/#", qos: 1 }] } as never, ctx);
 * await core.close();
 * if (r.granted.join() !== "2,128") throw new Error(r.granted.join());
 * ```
 */
export function applySubscribe(packet: ISubscribePacket, ctx: SubscribeContext): SubscribeResult {
  const v5 = ctx.version === 5;
  const identifier = packet.properties?.subscriptionIdentifier;
  if (identifier !== undefined && (identifier === 0 || Array.isArray(identifier))) {
    // MQTT 5 §3.8.2.1.2: 0 or a repeated identifier is a Protocol Error.
    throw new MqttProtocolError("Cannot accept SUBSCRIBE: bad subscription identifier");
  }
  if (!packet.messageId) {
    throw new MqttProtocolError("Cannot accept SUBSCRIBE: packet id 0 [MQTT-2.2.1-3]");
  }
  if (packet.subscriptions.length === 0) {
    // [MQTT-3.8.3-3] (3.1.1), [MQTT-3.8.3-2] (5.0): at least one topic filter.
    throw new MqttProtocolError("Cannot accept SUBSCRIBE: no topic filter");
  }
  const out: SubscribeResult = { granted: [], retained: [], refused: [] };
  const fail = (code: number, why: string) => {
    out.granted.push(v5 ? code : 0x80); // [MQTT-3.9.3-2] 3.1.1 has one failure code
    out.refused.push(why);
  };
  for (const s of packet.subscriptions) {
    const shared = parseSharedFilter(s.topic);
    if (typeof shared === "string") {
      fail(ReasonCode.TopicFilterInvalid, `${s.topic}: ${shared}`);
      continue;
    }
    const filter = shared ? shared.filter : s.topic;
    const err = validateFilter(filter);
    if (err) {
      fail(ReasonCode.TopicFilterInvalid, `${s.topic}: ${err}`);
      continue;
    }
    if (shared && v5 && s.nl) {
      throw new MqttProtocolError("Cannot accept SUBSCRIBE: no local on a shared subscription");
    }
    if (!ctx.port.maySubscribe(ctx.who, filter)) {
      fail(ReasonCode.NotAuthorized, `${s.topic}: not allowed`);
      continue;
    }
    const max = ctx.maxSubscriptions;
    if (
      !shared && max !== undefined && ctx.session.subscriptionCount >= max &&
      !ctx.session.hasSubscription(filter)
    ) {
      fail(ReasonCode.QuotaExceeded, `${s.topic}: the session already holds ${max} subscriptions`);
      continue;
    }
    const qos = Math.min(s.qos, 2) as QoS;
    const opts: SubscriptionOptions = {
      qos,
      noLocal: v5 && !!s.nl,
      retainAsPublished: v5 && !!s.rap,
      retainHandling: v5 ? (s.rh ?? 0) as 0 | 1 | 2 : 0,
      identifier,
    };
    out.granted.push(qos);
    if (shared) {
      ctx.shared.join(shared, ctx.session, opts);
      ctx.session.addShared(s.topic, opts);
      continue; // MQTT 5 §4.8.2: no retained messages for shared subscriptions
    }
    // [MQTT-3.8.4-3] an identical filter replaces the subscription.
    const existed = ctx.session.subscribe(filter, opts);
    if (opts.retainHandling === 2 || (opts.retainHandling === 1 && existed)) continue;
    for (const m of ctx.port.retained(filter)) {
      out.retained.push({
        msg: m,
        qos: Math.min(qos, m.qos) as QoS,
        retain: true,
        subIds: identifier !== undefined ? [identifier] : undefined,
      });
    }
  }
  return out;
}

/**
 * Applies an UNSUBSCRIBE; returns the v5 UNSUBACK reason codes.
 *
 * @example
 * ```ts
 * import { Core, Identity } from "../../core/mod.ts";
 * import { MqttSession } from "./session.ts";
 * import { SharedSubscriptions } from "./shared_subscriptions.ts";
 * import { applyUnsubscribe } from "./handle_subscribe.ts";
 * import { MQTT } from "./server.ts";
 * const core = new Core({ anonymous: true });
 * const port = core.port(MQTT);
 * const session = new MqttSession("c", port, { maxQueued: 9, dropPolicy: "oldest", maxInflight: 9 });
 * const ctx = { version: 5, who: new Identity({ kind: "anonymous" }), session, shared: new SharedSubscriptions(port), port } as const;
 * const codes = applyUnsubscribe({ cmd: "unsubscribe", messageId: 1, unsubscriptions: ["a"] } as never, ctx);
 * await core.close();
 * if (codes[0] !== 0x11) throw new Error();
 * ```
 */
export function applyUnsubscribe(packet: IUnsubscribePacket, ctx: SubscribeContext): number[] {
  if (!packet.messageId) {
    throw new MqttProtocolError("Cannot accept UNSUBSCRIBE: packet id 0 [MQTT-2.2.1-3]");
  }
  if (packet.unsubscriptions.length === 0) {
    // [MQTT-3.10.3-2]: at least one topic filter.
    throw new MqttProtocolError("Cannot accept UNSUBSCRIBE: no topic filter");
  }
  return packet.unsubscriptions.map((f) => {
    const shared = parseSharedFilter(f);
    if (typeof shared === "string") return ReasonCode.TopicFilterInvalid;
    if (shared) {
      ctx.session.removeShared(f);
      return ctx.shared.leave(shared, ctx.session)
        ? ReasonCode.Success
        : ReasonCode.NoSubscriptionExisted;
    }
    if (validateFilter(f)) return ReasonCode.TopicFilterInvalid;
    return ctx.session.unsubscribe(f) ? ReasonCode.Success : ReasonCode.NoSubscriptionExisted;
  });
}

/** The context of a connection's SUBSCRIBE/UNSUBSCRIBE. */
function contextOf(conn: MqttConnection, c: Client): SubscribeContext {
  return {
    version: conn.version,
    who: c.who,
    session: c.session,
    shared: conn.ctx.shared,
    port: conn.ctx.port,
    maxSubscriptions: conn.ctx.options.maxSubscriptions,
  };
}

/** Handles SUBSCRIBE: SUBACK, then the retained messages of the new subscriptions. */
export function handleSubscribe(conn: MqttConnection, c: Client, p: ISubscribePacket): void {
  const r = applySubscribe(p, contextOf(conn, c));
  if (r.refused.length) {
    conn.ctx.port.stats.drop("subscription_refused", r.refused.length);
    conn.ctx.log.info("subscription refused", { clientId: conn.clientId, refused: r.refused });
  }
  conn.send({ cmd: "suback", messageId: p.messageId, granted: r.granted });
  for (const out of r.retained) c.session.enqueue(out);
}

/** Handles UNSUBSCRIBE: UNSUBACK even when nothing matched [MQTT-3.10.4-4]. */
export function handleUnsubscribe(conn: MqttConnection, c: Client, p: IUnsubscribePacket): void {
  const codes = applyUnsubscribe(p, contextOf(conn, c));
  conn.send(
    conn.version === 5
      ? { cmd: "unsuback", messageId: p.messageId, granted: codes }
      : { cmd: "unsuback", messageId: p.messageId } as Packet,
  );
}
