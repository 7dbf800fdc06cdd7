/**
 * The state of one MQTT session, which outlives its connections when the client asked for a
 * persistent session (MQTT 5 §4.1): subscriptions, the queue of messages waiting to be sent, QoS 1
 * and 2 messages in flight towards the client, and the packet ids of QoS 2 messages received and
 * not yet released. Delivery keeps order per session ([MQTT-4.6.0-6]); the queue is bounded and
 * applies a drop policy. A session that outlives its connection may have a {@link SessionJournal}
 * (the state file, `session_persistence.ts`) told of every change; a clean session has none and
 * pays nothing for it.
 *
 * @module
 */

import {
  type DevicePort,
  type Message,
  ownPayload,
  type QoS,
  type Subscriber,
  type SubscriptionInfo,
} from "../../core/mod.ts";

/** MQTT filter matching on pre-split levels ([MQTT-4.7.2-1]: `$` topics skip first-level wildcards). */
function levelsMatch(f: string[], t: string[], dollar: boolean): boolean {
  if (dollar && (f[0] === "+" || f[0] === "#")) return false;
  for (let i = 0; i < f.length; i++) {
    const l = f[i];
    if (l === "#") return true;
    if (i >= t.length) return false;
    if (l !== "+" && l !== t[i]) return false;
  }
  return f.length === t.length;
}

/** Subscription options (MQTT 5 §3.8.3.1; 3.1.1 uses only `qos`). */
export interface SubscriptionOptions {
  /** Maximum QoS granted. */
  qos: QoS;
  /** Do not deliver the session's own publications. */
  noLocal: boolean;
  /** Keep the RETAIN flag of forwarded messages. */
  retainAsPublished: boolean;
  /** 0 send retained on subscribe, 1 only for a new subscription, 2 never. */
  retainHandling: 0 | 1 | 2;
  /** Subscription identifier, if the client gave one. */
  identifier?: number;
}

/** A message on its way to the client. */
export interface Outgoing {
  /** The message. */
  msg: Message;
  /** QoS of this delivery. */
  qos: QoS;
  /** RETAIN flag of this delivery. */
  retain: boolean;
  /** Subscription identifiers of the matching subscriptions. */
  subIds?: number[];
  /** Journal order of a QoS 1/2 delivery of a journaled session. */
  seq?: number;
  /** The journal's pending write for this delivery, if any. */
  op?: unknown;
}

/** A QoS 1/2 delivery waiting for the client's acknowledgement. */
export interface InflightEntry extends Outgoing {
  /** Packet identifier. */
  packetId: number;
  /** `publish` until PUBACK/PUBREC, `pubrel` until PUBCOMP. */
  state: "publish" | "pubrel";
  /** Not resent yet on this connection: its Receive Maximum had no room ([MQTT-3.3.4-9]). */
  held?: boolean;
}

/** What a session needs of the connection that currently carries it. */
export interface SessionLink {
  /** Sends a PUBLISH; returns false when it was dropped (too large for the client). */
  sendPublish(out: Outgoing, packetId: number | undefined, dup: boolean): boolean;
  /** Sends a PUBREL. */
  sendPubrel(packetId: number): void;
  /** Most QoS 1/2 deliveries the client accepts unacknowledged (v5 Receive Maximum). */
  readonly receiveMaximum: number;
}

/**
 * Where a persistent session records its changes, so that it can be restored after a restart.
 * Only QoS 1/2 deliveries are recorded.
 */
export interface SessionJournal {
  /** A delivery joined the queue, or went straight in flight (then `out` is an {@link InflightEntry}). */
  added(s: MqttSession, out: Outgoing): void;
  /** A queued delivery was sent: it is in flight as `e`. */
  sent(s: MqttSession, e: InflightEntry): void;
  /** PUBREC received: `e` waits for PUBCOMP. */
  released(s: MqttSession, e: InflightEntry): void;
  /** A delivery was completed or dropped. */
  removed(s: MqttSession, out: Outgoing): void;
  /** Subscriptions or received QoS 2 packet ids changed. */
  changed(s: MqttSession): void;
}

/**
 * What an acknowledgement from the client did: completed a step (`ok`), named no message in
 * flight (`unknown`), or named one in flight at the other QoS or in the other state (`wrong`).
 */
export type AckResult = "ok" | "unknown" | "wrong";

/** Everything of a session that is kept across restarts (see {@link MqttSession.snapshot}). */
export interface SessionState {
  /** Non-shared subscriptions. */
  subscriptions: Array<[string, SubscriptionOptions]>;
  /** Shared subscriptions (full `$share/…` filters). */
  shared: Array<[string, SubscriptionOptions]>;
  /** QoS 2 packet ids received, not yet released. */
  inbound: number[];
  /** Next packet id to try. */
  nextId: number;
  /** Queued deliveries, in order. */
  queue: Outgoing[];
  /** In-flight deliveries, in the order they were sent. */
  inflight: InflightEntry[];
}

/** Tunables of {@link MqttSession}. */
export interface MqttSessionOptions {
  /** Messages queued before the drop policy applies. */
  maxQueued: number;
  /** Which message goes when the queue is full. */
  dropPolicy: "oldest" | "newest";
  /** Most QoS 1/2 deliveries in flight. */
  maxInflight: number;
  /** Called for every message dropped, with the reason (metric label). */
  onDrop?: (reason: string) => void;
  /** Called when a delivery throws (logged by the server). */
  onError?: (err: unknown) => void;
}

let nextSessionNumber = 0;

interface Subscription {
  opts: SubscriptionOptions;
  levels: string[];
  off: () => void;
}

/**
 * One client's session.
 *
 * @example
 * ```ts
 * import { Core, createMessage } from "../../core/mod.ts";
 * import { MQTT } from "./server.ts";
 * import { MqttSession } from "./session.ts";
 * const core = new Core({ anonymous: true });
 * const s = new MqttSession("c1", core.port(MQTT), { maxQueued: 10, dropPolicy: "oldest", maxInflight: 4 });
 * s.subscribe("a/+", { qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 });
 * await core.publish(createMessage({ topic: "a/b", payload: new Uint8Array([1]), qos: 1 }));
 * await core.close();
 * if (s.queued !== 1) throw new Error("offline message not queued");
 * s.destroy();
 * ```
 */
export class MqttSession implements Subscriber {
  /** Identifier used as subscriber id and message origin (no-local). */
  readonly id: string;
  /** The client identifier. */
  readonly clientId: string;
  /** Session Expiry Interval, seconds (0: the session ends with its connection). */
  expirySec = 0;
  /**
   * The identity that owns the session (`Identity.key` of the principal that created it): another
   * principal presenting its client id is refused. `undefined` for a session restored from a file
   * that did not record it (the next principal to use it becomes its owner).
   */
  owner: string | undefined = undefined;
  #port: DevicePort;
  #opts: MqttSessionOptions;
  // Collections are created on first use: an idle session costs a few hundred bytes.
  #subs: Map<string, Subscription> | undefined;
  #shared: Map<string, SubscriptionOptions> | undefined;
  #inbound: Set<number> | undefined; // QoS 2 ids received, not yet released (method B, §4.3.3)
  #queue: Outgoing[] | undefined;
  #inflight: Map<number, InflightEntry> | undefined;
  #nextId = 1;
  #held = 0; // in-flight entries waiting for room to be resent on the current connection
  #link: SessionLink | undefined;
  #last: Message | undefined;
  #destroyed = false;
  #journal: SessionJournal | undefined;
  /** Last journal sequence number used (journaled sessions only). */
  seq = 0;

  /** Creates an empty session. */
  constructor(clientId: string, port: DevicePort, options: MqttSessionOptions) {
    this.clientId = clientId;
    this.id = `mqtt-${++nextSessionNumber}`;
    this.#port = port;
    this.#opts = options;
  }

  /** The journal told of every change (persistent sessions with a state file only). */
  get journal(): SessionJournal | undefined {
    return this.#journal;
  }

  set journal(j: SessionJournal | undefined) {
    this.#journal = j;
  }

  /** The state kept across restarts (without the queue and in-flight window unless `messages`). */
  snapshot(messages = true): SessionState {
    return {
      subscriptions: this.#subs ? [...this.#subs].map(([f, s]) => [f, s.opts]) : [],
      shared: this.#shared ? [...this.#shared] : [],
      inbound: this.#inbound ? [...this.#inbound] : [],
      nextId: this.#nextId,
      queue: messages && this.#queue ? this.#queue.filter((o) => o.qos > 0) : [],
      inflight: messages && this.#inflight ? [...this.#inflight.values()] : [],
    };
  }

  /**
   * Puts back the queue, in-flight window, QoS 2 ids and packet id counter of a restored session
   * (subscriptions are restored with {@link subscribe} and shared groups). The session is offline.
   */
  restore(state: Pick<SessionState, "inbound" | "nextId" | "queue" | "inflight">): void {
    if (state.inbound.length) this.#inbound = new Set(state.inbound);
    if (state.queue.length) this.#queue = [...state.queue];
    if (state.inflight.length) {
      this.#inflight = new Map(state.inflight.map((e) => [e.packetId, e]));
    }
    this.#nextId = state.nextId >= 1 && state.nextId <= 65535 ? state.nextId : 1;
  }

  /** The subscriber registered with the core for this session: the session itself. */
  get subscriber(): Subscriber {
    return this;
  }

  /** True while a connection carries the session. */
  get online(): boolean {
    return this.#link !== undefined;
  }

  /** Messages waiting to be sent. */
  get queued(): number {
    return this.#queue?.length ?? 0;
  }

  /** QoS 1/2 deliveries waiting for an acknowledgement. */
  get inflight(): number {
    return this.#inflight?.size ?? 0;
  }

  /** Adds or replaces a non-shared subscription; returns whether it already existed. */
  subscribe(filter: string, opts: SubscriptionOptions): boolean {
    if (this.#destroyed) return false;
    const subs = this.#subs ??= new Map();
    const sub = subs.get(filter);
    if (sub) {
      sub.opts = opts;
      this.#journal?.changed(this);
      return true;
    }
    const off = this.#port.subscribe(filter, this.subscriber);
    subs.set(filter, { opts, levels: filter.split("/"), off });
    this.#journal?.changed(this);
    return false;
  }

  /** True when the session has a non-shared subscription to `filter`. */
  hasSubscription(filter: string): boolean {
    return this.#subs?.has(filter) ?? false;
  }

  /** Number of non-shared subscriptions. */
  get subscriptionCount(): number {
    return this.#subs?.size ?? 0;
  }

  /** Records a shared subscription (the group membership lives in `SharedSubscriptions`). */
  addShared(filter: string, opts: SubscriptionOptions): void {
    (this.#shared ??= new Map()).set(filter, opts);
    this.#journal?.changed(this);
  }

  /** Forgets a shared subscription; returns whether it was recorded. */
  removeShared(filter: string): boolean {
    const had = this.#shared?.delete(filter) ?? false;
    if (had) this.#journal?.changed(this);
    return had;
  }

  /**
   * Every subscription (shared ones with their `$share/{group}/` prefix), in filter order; with
   * `accept`, only those whose filter it accepts.
   */
  subscriptionList(accept?: (filter: string) => boolean): SubscriptionInfo[] {
    const out: SubscriptionInfo[] = [];
    if (this.#subs) {
      for (const [filter, s] of this.#subs) {
        if (!accept || accept(filter)) out.push({ filter, qos: s.opts.qos });
      }
    }
    if (this.#shared) {
      for (const [filter, o] of this.#shared) {
        if (!accept || accept(filter)) out.push({ filter, qos: o.qos });
      }
    }
    return out.length < 2
      ? out
      : out.sort((a, b) => a.filter < b.filter ? -1 : a.filter > b.filter ? 1 : 0);
  }

  /** Number of subscriptions, shared ones included. */
  get allSubscriptionCount(): number {
    return (this.#subs?.size ?? 0) + (this.#shared?.size ?? 0);
  }

  /** Full `$share/…` filters of the session. */
  sharedFilters(): string[] {
    return this.#shared ? [...this.#shared.keys()] : [];
  }

  /** True when a QoS 2 PUBLISH with this id was received and not yet released. */
  hasInbound(packetId: number): boolean {
    return this.#inbound?.has(packetId) ?? false;
  }

  /** Records a received QoS 2 packet id (until PUBREL). */
  addInbound(packetId: number): void {
    (this.#inbound ??= new Set()).add(packetId);
    this.#journal?.changed(this);
  }

  /** Releases a QoS 2 packet id (PUBREL); returns whether it was known. */
  releaseInbound(packetId: number): boolean {
    const had = this.#inbound?.delete(packetId) ?? false;
    if (had) this.#journal?.changed(this);
    return had;
  }

  /** QoS 2 packet ids received and not yet released. */
  get inboundCount(): number {
    return this.#inbound?.size ?? 0;
  }

  /** Removes a non-shared subscription; returns whether it existed. */
  unsubscribe(filter: string): boolean {
    const sub = this.#subs?.get(filter);
    if (!sub) return false;
    sub.off();
    this.#subs!.delete(filter);
    this.#journal?.changed(this);
    return true;
  }

  /**
   * Takes a message from the core. Overlapping subscriptions give one delivery at the highest
   * granted QoS, carrying every matching subscription identifier ([MQTT-3.3.4-2], [MQTT-3.3.4-3]).
   */
  deliver(msg: Message): void {
    try {
      this.#deliver(msg);
    } catch (err) {
      // Never let one session's failure stop the core's fan-out to the others.
      this.#opts.onDrop?.("delivery_failed");
      this.#opts.onError?.(err);
    }
  }

  #deliver(msg: Message): void {
    if (msg === this.#last || this.#destroyed) return; // one core call per matching filter
    this.#last = msg;
    let qos = -1;
    let retain = false;
    let subIds: number[] | undefined;
    const subs = this.#subs;
    if (!subs) return;
    const single = subs.size === 1;
    const topic = single ? undefined : msg.topic.split("/");
    const dollar = msg.topic.startsWith("$");
    for (const { opts: o, levels } of subs.values()) {
      // The core only calls us for a matching filter: with one subscription, it is that one.
      if (!single && !levelsMatch(levels, topic!, dollar)) continue;
      // [MQTT-3.8.3-3] no local: not to the session that published it.
      if (o.noLocal && msg.origin === this.id) continue;
      qos = Math.max(qos, Math.min(o.qos, msg.qos));
      // [MQTT-3.3.1-12], [MQTT-3.3.1-13]: RETAIN kept only with retain-as-published.
      if (o.retainAsPublished && msg.retain) retain = true;
      if (o.identifier !== undefined) (subIds ??= []).push(o.identifier);
    }
    if (qos < 0) return;
    this.enqueue({ msg, qos: qos as QoS, retain, subIds });
  }

  /** Queues a delivery (bounded) and sends what the inflight window allows. */
  enqueue(out: Outgoing): void {
    if (this.#destroyed) return;
    if (!this.#link && out.qos === 0) {
      this.#opts.onDrop?.("offline_qos0"); // QoS 0 is not queued for offline clients
      return;
    }
    if (this.#link && !this.#queue?.length && this.#sendable(out)) {
      this.#send(out);
      return;
    }
    const queue = this.#queue ??= [];
    if (queue.length >= this.#opts.maxQueued) {
      this.#opts.onDrop?.("queue_full");
      if (this.#opts.dropPolicy === "newest" || this.#opts.maxQueued === 0) return;
      const dropped = queue.shift()!;
      if (dropped.seq !== undefined) this.#journal?.removed(this, dropped);
    }
    ownPayload(out.msg); // kept until sent: not a view pinning a socket read
    queue.push(out);
    if (out.qos !== 0) this.#journal?.added(this, out);
    this.#pump();
  }

  /**
   * Binds the session to a connection: in-flight messages are sent again in their original order,
   * PUBLISH with DUP set and PUBREL as PUBREL ([MQTT-4.4.0-1], [MQTT-3.3.1-1]), then the queue.
   * At most the new connection's Receive Maximum of them are unacknowledged at once
   * ([MQTT-3.3.4-9], MQTT 5 §4.9: the send quota starts afresh); the rest follow as acks come in.
   */
  attach(link: SessionLink): void {
    this.#link = link;
    this.#held = 0;
    const limit = this.#limit();
    let unacked = 0;
    for (const e of this.#inflight ? [...this.#inflight.values()] : []) {
      e.held = false;
      if (e.state === "pubrel") {
        link.sendPubrel(e.packetId);
        unacked++; // still unacknowledged until PUBCOMP
      } else if (unacked >= limit) {
        e.held = true;
        this.#held++;
      } else if (link.sendPublish(e, e.packetId, true)) {
        // Sent once already, so resent even if it has expired since ([MQTT-3.3.2-5] drops only
        // messages whose onward delivery has not started).
        unacked++;
      } else this.#forget(e);
    }
    this.#pump();
  }

  /** Unbinds the session from `link` (if it is the current one). */
  detach(link: SessionLink): void {
    if (this.#link === link) this.#link = undefined;
  }

  /**
   * Handles PUBACK: `"unknown"` for a packet id not in flight (ignored), `"wrong"` when the id is
   * in flight at QoS 2 (a protocol violation, [MQTT-4.8.0-1]).
   */
  puback(packetId: number): AckResult {
    const e = this.#inflight?.get(packetId);
    if (!e) return "unknown";
    if (e.qos !== 1) return "wrong";
    this.#unhold(e);
    this.#forget(e);
    this.#pump();
    return "ok";
  }

  /**
   * Handles PUBREC: with a success code the message moves to `pubrel` and PUBREL is sent
   * ([MQTT-4.3.3-4]; a repeated PUBREC sends it again); an error code (≥ 0x80) ends the flow
   * without PUBREL (MQTT 5 §4.3.3). `"wrong"` when the id is in flight at QoS 1.
   */
  pubrec(packetId: number, reasonCode = 0): AckResult {
    const e = this.#inflight?.get(packetId);
    if (!e) return "unknown";
    if (e.qos !== 2) return "wrong";
    this.#unhold(e);
    if (reasonCode >= 0x80) {
      this.#forget(e);
      this.#pump();
      return "ok";
    }
    e.state = "pubrel";
    this.#journal?.released(this, e);
    this.#link?.sendPubrel(packetId);
    return "ok";
  }

  /**
   * Handles PUBCOMP: `"wrong"` when the id is in flight at QoS 1, or at QoS 2 still waiting for
   * its PUBREC.
   */
  pubcomp(packetId: number): AckResult {
    const e = this.#inflight?.get(packetId);
    if (!e) return "unknown";
    if (e.state !== "pubrel") return "wrong";
    this.#forget(e);
    this.#pump();
    return "ok";
  }

  /** Removes every subscription and drops queued and in-flight messages. Idempotent. */
  destroy(): void {
    this.#destroyed = true;
    if (this.#subs) { for (const sub of this.#subs.values()) sub.off(); }
    this.#subs = undefined;
    this.#shared = undefined;
    this.#queue = undefined;
    this.#inflight = undefined;
    this.#held = 0;
    this.#inbound = undefined;
    this.#link = undefined;
    this.#last = undefined;
    this.#journal = undefined;
  }

  /** Removes an in-flight entry (done or dropped). */
  #forget(e: InflightEntry): void {
    this.#inflight!.delete(e.packetId);
    if (e.seq !== undefined) this.#journal?.removed(this, e);
  }

  #expired(out: Outgoing): boolean {
    const exp = out.msg.properties?.expiresAt;
    return exp !== undefined && exp <= this.#port.clock.now();
  }

  #limit(): number {
    return Math.min(this.#opts.maxInflight, this.#link!.receiveMaximum);
  }

  /** True while fewer than the limit are unacknowledged on the current connection. */
  #room(): boolean {
    return (this.#inflight?.size ?? 0) - this.#held < this.#limit();
  }

  #unhold(e: InflightEntry): void {
    if (e.held) {
      e.held = false;
      this.#held--;
    }
  }

  #sendable(out: Outgoing): boolean {
    if (out.qos === 0) return true;
    return this.#held === 0 && this.#room(); // held resends go first (order, [MQTT-4.6.0-6])
  }

  #pump(): void {
    if (this.#held > 0 && this.#link) {
      for (const e of this.#inflight!.values()) {
        if (this.#held === 0 || !this.#room()) break;
        if (!e.held) continue;
        this.#unhold(e);
        if (!this.#link.sendPublish(e, e.packetId, true)) this.#forget(e);
      }
    }
    const queue = this.#queue;
    if (!queue) return;
    while (this.#link && queue.length && this.#sendable(queue[0])) {
      this.#send(queue.shift()!);
    }
    if (queue.length === 0 && this.#queue === queue) this.#queue = undefined;
  }

  #send(out: Outgoing): void {
    // MQTT 5 §3.3.2.3.3: an expired message is not delivered.
    if (this.#expired(out)) {
      this.#opts.onDrop?.("expired");
      if (out.seq !== undefined) this.#journal?.removed(this, out);
      return;
    }
    if (out.qos === 0) {
      this.#link!.sendPublish(out, undefined, false);
      return;
    }
    const packetId = this.#allocateId();
    ownPayload(out.msg); // kept until acknowledged
    const entry: InflightEntry = { ...out, packetId, state: "publish" };
    (this.#inflight ??= new Map()).set(packetId, entry);
    const j = this.#journal;
    if (j) {
      if (entry.seq === undefined) j.added(this, entry);
      else j.sent(this, entry);
    }
    // [MQTT-3.1.2-25] a packet too large for the client is dropped as if delivered.
    if (!this.#link!.sendPublish(entry, packetId, false)) this.#forget(entry);
  }

  #allocateId(): number {
    // [MQTT-2.2.1-3] a packet id is not reused while its flow is incomplete.
    for (;;) {
      const id = this.#nextId;
      this.#nextId = id === 65535 ? 1 : id + 1;
      if (!this.#inflight?.has(id)) return id;
    }
  }
}
