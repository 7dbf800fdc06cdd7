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
import { MqttMalformedError, MqttProtocolError } from "./errors.ts";
import { topicFilterProblem } from "./topic_rules.ts";
import { ReasonCode } from "./reason_codes.ts";
import type { MqttSession, Outgoing, SubscriptionOptions } from "./session.ts";
import {
  parseSharedFilter,
  type SharedFilter,
  type SharedSubscriptions,
} from "./shared_subscriptions.ts";

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
  // Every filter is checked for its form before any is applied: a malformed SUBSCRIBE changes
  // nothing. [MQTT-4.7.3-1] (a zero-length filter), [MQTT-4.7.1-2], [MQTT-4.7.1-3] (wildcards),
  // §4.8.2 (`$share/{name}/{filter}`): a violation closes the connection ([MQTT-4.8.0-1]; v5 0x81,
  // since 0x8F is for a filter "correctly formed" but not allowed), as mosquitto 2.0 does and as
  // UNSUBSCRIBE does. (MQTT leaves the choice: a 3.1.1 SUBACK 0x80 "Failure" was Ferry's before.)
  const parsed = packet.subscriptions.map((s) => {
    const shared = parseSharedFilter(s.topic);
    const err = typeof shared === "string"
      ? shared
      : validateFilter(shared ? shared.filter : s.topic);
    if (err) {
      throw new MqttMalformedError(`Cannot accept SUBSCRIBE: ${JSON.stringify(s.topic)}: ${err}`);
    }
    return shared as SharedFilter | undefined;
  });
  const out: SubscribeResult = { granted: [], retained: [], refused: [] };
  const fail = (code: number, why: string) => {
    out.granted.push(v5 ? code : 0x80); // [MQTT-3.9.3-2] 3.1.1 has one failure code
    out.refused.push(why);
  };
  for (const [i, s] of packet.subscriptions.entries()) {
    const shared = parsed[i];
    const filter = shared ? shared.filter : s.topic;
    // Well formed, but more levels than Ferry takes (topic_rules.ts): 0x8F "correctly formed but
    // not allowed" for that filter only (mosquitto closes with 0x81: docs/mqtt.md).
    const err = topicFilterProblem(filter);
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
  // Every filter is checked before any is removed: a malformed UNSUBSCRIBE changes nothing.
  const parsed = packet.unsubscriptions.map((f) => {
    const shared = parseSharedFilter(f);
    const err = typeof shared === "string"
      ? shared
      : topicFilterProblem(shared ? shared.filter : f);
    if (err) {
      // [MQTT-4.7.3-1] (a zero-length filter), [MQTT-4.7.1-2], [MQTT-4.7.1-3]: 3.1.1 UNSUBACK has
      // no failure code, so the violation closes the connection ([MQTT-4.8.0-1]); v5 0x8F is for
      // a filter "correctly formed" but not allowed, so this one is malformed (0x81, as mosquitto).
      throw new MqttMalformedError(`Cannot accept UNSUBSCRIBE: ${JSON.stringify(f)}: ${err}`);
    }
    return shared as SharedFilter | undefined;
  });
  return packet.unsubscriptions.map((f, i) => {
    const shared = parsed[i];
    if (shared) {
      ctx.session.removeShared(f);
      return ctx.shared.leave(shared, ctx.session)
        ? ReasonCode.Success
        : ReasonCode.NoSubscriptionExisted;
    }
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
