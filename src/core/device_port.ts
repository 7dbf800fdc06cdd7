/**
 * The device port: the one face the core shows a protocol adapter. An adapter registers its
 * protocol (`core.port({ name: "mqtt" })`) and gets a port bound to that label; through it, and
 * nothing else, it logs devices in, publishes what they send, attaches their sessions (presence,
 * takeover, supervision, revocation), hands out their commands, subscribes for what they should
 * receive, and counts what it does. The adapter keeps its codec, its session state machine and
 * one function that maps the port's typed refusals to its wire codes.
 *
 * Publishing decides everything an adapter used to assemble by hand: shutting down, the device's
 * rate, the ACL, and whether the message is accepted at once (room in the pipeline, nothing to make
 * durable first: no promise at all), after a wait for room (`wait: true`, the backpressure of
 * stream protocols), or refused as `overloaded` (UDP and HTTP, which must refuse rather than
 * buffer); with a durable stage behind the port (the spool), acceptance waits for it.
 *
 * A service of the gateway that republishes what it derives from accepted messages (the rule
 * engine) is an adapter too: it asks its port for a service identity ({@link DevicePort.service})
 * and publishes with it; such derived messages are judged by the service's own publish filters and
 * admitted at once, even into a full pipeline.
 *
 * @module
 */

import { canPublish, canSubscribe } from "./acl.ts";
import type { Attachment } from "./attachments.ts";
import type { Clock } from "./clock.ts";
import type { CommandListener, CommandStore, PendingCommand } from "./command_store.ts";
import type { DeadlineEntry, DeadlineQueue } from "./deadline_queue.ts";
import { errorMessage } from "./error_message.ts";
import type { FlowGate } from "./flow_gate.ts";
import type { Logger } from "./logger.ts";
import { LogThrottle } from "./log_throttle.ts";
import { Identity, type LoginGate, type LoginRequest } from "./login.ts";
import type { Message, MessageProperties, Protocol, QoS } from "./message.ts";
import type { PayloadBudget } from "./payload_budget.ts";
import { PipelineClosedError } from "./pipeline.ts";
import type { Pipeline } from "./pipeline.ts";
import type { ProtocolStats } from "./protocol_stats.ts";
import { PublishLane } from "./publish_lane.ts";
import type { RateLimiter } from "./rate_limiter.ts";
import {
  type LoginRefusalReason,
  type PublishRefusalReason,
  type Refusal,
  refusal,
  RefusedError,
} from "./refusal.ts";
import type { DeviceRegistry, SessionHandle } from "./registry.ts";
import type { RetainedStore } from "./retained_store.ts";
import type { SessionDirectory, SessionProvider } from "./session_directory.ts";
import type { Supervisor } from "./supervisor.ts";

/** What an adapter says of its protocol when it asks for a port. */
export interface ProtocolSpec {
  /** The label of the protocol in messages, presence, metrics and logs (`fbp`, `mqtt`, …). */
  readonly name: Protocol;
  /**
   * Its devices subscribe to their own command topics (MQTT): the command store keeps no commands
   * for a device last seen on it. @default false
   */
  readonly deliversOwnCommands?: boolean;
}

/** A message as an adapter hands it over; the port fills in time, protocol and device. */
export interface Draft {
  /** Topic in the gateway's namespace. */
  topic: string;
  /** Payload bytes (may be a view into a socket read: whatever keeps the message copies it). */
  payload: Uint8Array;
  /** Delivery guarantee asked for. */
  qos: QoS;
  /** Keep as the topic's last known value. */
  retain: boolean;
  /** Identifier of the publishing session (MQTT no-local). */
  origin?: string;
  /** Optional metadata. */
  properties?: MessageProperties;
}

/** An accepted message: acknowledge it (acknowledged means accepted, and durable with a spool). */
export interface Accepted {
  /** Always true. */
  readonly ok: true;
}

/** The one acceptance value (no object per message). */
export const ACCEPTED: Accepted = Object.freeze({ ok: true as const });

/** The port's answer to a publish. */
export type PublishResult = Accepted | Refusal<PublishRefusalReason>;

/** How to publish. */
export interface PublishOptions {
  /**
   * Wait for room while the pipeline is full (stream protocols: while they wait they stop reading,
   * which is their backpressure); otherwise a full pipeline refuses `overloaded` at once (UDP,
   * HTTP). @default false
   */
  wait?: boolean;
  /** Ends a wait (the connection closed): the result is then `shutting_down`. */
  signal?: AbortSignal;
  /**
   * The connection's lane (with `wait`): a message that has to wait does not hold up the next
   * ones' durable stage, while entering the pipeline and settling stay in arrival order.
   */
  lane?: PublishLane;
}

/** The result of publishing a batch: all accepted, or a refusal saying how many got in first. */
export type BatchResult =
  | Accepted
  | (Refusal<PublishRefusalReason> & { readonly accepted: number });

/** Receives messages whose topic matches a subscription. Must not throw or block. */
export interface Subscriber {
  /** Identifier of the subscribing session (compared with `Message.origin` for no-local). */
  readonly id: string;
  /** Takes one message; the subscriber queues it and applies its own slow-consumer policy. */
  deliver(msg: Message): void;
}

/** A service of the gateway itself, as it asks its port for an identity ({@link DevicePort.service}). */
export interface ServiceSpec {
  /** Its name, unique on the port (the principal is named `{port}/{name}`). */
  readonly name: string;
  /** Topic filters it may publish to: its ACL. */
  readonly publish: readonly string[];
}

/** One protocol's hand on the core's pending commands (claims are made for that protocol). */
export interface DeviceCommands {
  /** Keeps commands while the adapter runs; returns the function that gives the use back. */
  open(): () => void;
  /** Calls `fn` for each command of any device that becomes available; returns the remover. */
  watch(fn: CommandListener): () => void;
  /** Calls `fn` for each command of `deviceId` that becomes available; returns the remover. */
  listen(deviceId: string, fn: CommandListener): () => void;
  /** Commands of `deviceId` this protocol may deliver (after `after`), oldest first. */
  pending(deviceId: string, after?: number): PendingCommand[];
  /** The oldest command of `deviceId` this protocol may deliver. */
  next(deviceId: string): PendingCommand | undefined;
  /** Commands of `deviceId`, claimed or not. */
  count(deviceId: string): number;
  /** Claims `cmd` for this protocol: true when it is still pending and nobody else holds it. */
  claim(cmd: PendingCommand): boolean;
  /** Gives a claim back: the command was not delivered. */
  release(cmd: PendingCommand): void;
  /** The command was delivered (it leaves the store); counts the delivery. */
  delivered(cmd: PendingCommand): boolean;
  /** The command can never be delivered on this protocol (too large, say): it leaves the store. */
  discard(cmd: PendingCommand): void;
  /** The device acknowledged command `name` (`seq` when known); it leaves the store. */
  ack(deviceId: string, name: string, seq?: number): PendingCommand | undefined;
  /** The store's limits. */
  readonly limits: Readonly<{ maxPerDevice: number; ttlMs: number; maxDevices: number }>;
}

/** What a protocol adapter may call on the core. */
export interface DevicePort {
  /** The protocol label this port is bound to. */
  readonly protocol: Protocol;
  /** Time source. */
  readonly clock: Clock;
  /** The protocol's logger. */
  readonly log: Logger;
  /** The protocol's rate-limited log, for what peers can repeat at will (bad input, refusals). */
  readonly throttled: LogThrottle;
  /** The protocol's counters. */
  readonly stats: ProtocolStats;
  /** The shared timer heap, for the protocol's own deadlines (handshake, retransmission). */
  readonly deadlines: DeadlineQueue;
  /** True once the gateway is shutting down. */
  readonly closing: boolean;
  /**
   * The gateway's budget of payload bytes in flight: a large packet takes its size before it is
   * buffered (and gives it back once handled); when it does not fit, stop reading or refuse.
   */
  readonly budget: PayloadBudget;

  /**
   * A new lane for one stream connection (`limits.publishWindow` waiting publishes): pass it in
   * `PublishOptions.lane` and stop reading while it is `full`.
   */
  lane(): PublishLane;

  /**
   * Takes a connection slot for `address` before a listener keeps an accepted connection: false
   * when the process's descriptor budget (shared by every listener) is spent or the address is at
   * its cap.
   */
  admit(address: string): boolean;
  /** Gives a connection slot back. */
  release(address: string): void;

  /** True when `id` is a device with credentials (its id is reserved for it, e.g. as a client id). */
  knownDevice(id: string): boolean;
  /** Logs a client in: its identity, or a typed refusal. */
  login(request: LoginRequest, address: string): Identity | Refusal<LoginRefusalReason>;
  /** Publishes what `who` sent: accepted, or a typed refusal (a promise only when it must wait). */
  publish(
    who: Identity,
    draft: Draft,
    options?: PublishOptions,
  ): PublishResult | Promise<PublishResult>;
  /** Publishes a batch accepted or refused as a whole (waits only for the durable stage). */
  publishAll(who: Identity, drafts: Draft[]): Promise<BatchResult>;
  /**
   * An identity for a service of the gateway that republishes what it derives from messages the
   * core accepted (a rule): a service principal named `{protocol}/{spec.name}` that may publish to
   * `spec.publish` only and subscribe to nothing, speaking for `deviceId` (the device whose message
   * an output derives from: its order and attribution are that device's). Published with it, a
   * message is *derived*: it is not rate-limited (its source was), counts for the port's protocol
   * and not as the device's own, and is admitted at once even into a full pipeline (its source
   * already held a place there: waiting behind new input would stall the service, refusing would
   * lose it; the queue runs over by as many, producers wait until it is back under). With a
   * durable stage, derived messages are appended at once and admitted in the order published.
   * The service bounds how many it has outstanding.
   */
  service(spec: ServiceSpec, deviceId?: string): Identity;
  /**
   * Messages the gateway kept past the `publish` call that gave them (queued, waiting for room or
   * for the durable stage, handled asynchronously), so far. An adapter that saw this count
   * unchanged across its calls may reuse the buffer its payloads were views of: whatever keeps a
   * message later (retained store, session queues, command store, dashboard) copied it.
   */
  readonly held: number;
  /** True when `who` may publish to `topic` (the ACL alone). */
  mayPublish(who: Identity, topic: string): boolean;
  /** True when `who` may subscribe to `filter` (the ACL alone). */
  maySubscribe(who: Identity, filter: string): boolean;
  /**
   * Would `n` messages of `who` on `topic` be accepted now? A refusal, or `undefined`; consumes
   * nothing. For cheap refusals before a request body is read.
   */
  check(who: Identity, topic: string, n?: number): Refusal<PublishRefusalReason> | undefined;

  /**
   * Attaches a session or stream of `who`: closed when `who`'s credentials are revoked; with
   * `presence`, it becomes the device's live session (online, and a previous session of the
   * device on any protocol is taken over); with `"on_publish"`, once `who` first publishes under
   * `devices/{its id}/` (a client that only subscribes, a monitoring tool, is no device and
   * leaves no status).
   */
  attach(who: Identity, handle: SessionHandle, presence?: boolean | "on_publish"): Attachment;
  /**
   * Marks a device that has no session seen, from `address` (its request's `host:port` or host,
   * for the management API) when given; it goes offline after `idleMs` without another.
   */
  seen(deviceId: string, idleMs: number, address?: string): void;
  /** Notes activity of a device (its last-seen time). */
  touch(deviceId: string): void;
  /** Closes `handle` with `keepalive_timeout` unless its entry is touched within `timeoutMs`. */
  supervise(handle: SessionHandle, timeoutMs: number): DeadlineEntry;
  /** Counts `n` messages delivered to `deviceId` (and to the protocol). */
  delivered(deviceId: string | undefined, n?: number): void;

  /** The core's pending commands, through this protocol. */
  readonly commands: DeviceCommands;
  /**
   * Shows the protocol's client sessions to the gateway's management (list, describe, drop);
   * returns the function that withdraws them (at close).
   */
  provideSessions(provider: SessionProvider): () => void;
  /** Subscribes; returns the function that unsubscribes. */
  subscribe(filter: string, sub: Subscriber): () => void;
  /** The retained messages matching `filter`, for a new subscription. */
  retained(filter: string): Message[];
  /** A subscriber is behind: hold delivery (and so the publishers) until it drains (bounded). */
  hold(sub: object): void;
  /** The subscriber caught up (or left). */
  unhold(sub: object): void;
  /**
   * False while a subscriber holds delivery back (see {@link hold}). A stream connection checks it
   * before publishing and, when false, stops reading until {@link flowing} resolves: one promise
   * per connection per held spell, where publishing into the held pipeline would queue each message
   * and then make the producer wait with a promise of its own.
   */
  readonly flowOpen: boolean;
  /** Resolves once no subscriber holds delivery back (at once when none does). */
  flowing(): Promise<void>;
}

/** The core's parts a port works with (what `Core` hands each port). */
export interface PortHost {
  readonly clock: Clock;
  readonly log: Logger;
  readonly registry: DeviceRegistry;
  readonly logins: LoginGate;
  readonly rates: RateLimiter;
  readonly pipeline: Pipeline;
  readonly supervisor: Supervisor;
  readonly deadlines: DeadlineQueue;
  readonly flow: FlowGate;
  readonly retained: RetainedStore;
  readonly store: CommandStore;
  readonly sessions: SessionDirectory;
  readonly budget: PayloadBudget;
  readonly publishWindow: number;
  readonly closing: boolean;
  /** The descriptor budget and per-address connection caps. */
  admit(address: string): boolean;
  /** Gives a connection slot back. */
  release(address: string): void;
  /** The durable stage every message passes before acceptance, if any. */
  readonly acceptHook: ((msg: Message) => void | Promise<void>) | undefined;
  /** Subscribes a subscriber. */
  subscribe(filter: string, sub: Subscriber): () => void;
  /** Counts an accepted message (a derived one only for its protocol, not as its device's). */
  accepted(msg: Message, derived?: boolean): void;
}

const SHUTTING_DOWN = refusal(
  "shutting_down",
  "Cannot accept message: the gateway is shutting down",
  5000,
);

/** An identity the core gave a service of the gateway: its messages are derived. */
class ServiceIdentity extends Identity {
  override get derived(): boolean {
    return true;
  }
}

/**
 * A {@link DevicePort} bound to one protocol. Made by `Core.port`.
 */
export class BoundPort implements DevicePort {
  readonly protocol: Protocol;
  readonly stats: ProtocolStats;
  readonly log: Logger;
  readonly throttled: LogThrottle;
  readonly commands: DeviceCommands;
  #host: PortHost;
  #overloaded: Refusal<PublishRefusalReason>;
  /** The last derived message waiting for the durable stage: the next is admitted after it. */
  #derivedTail: Promise<PublishResult> | undefined;
  #held = 0;

  /** Binds `host` to `protocol`. */
  constructor(host: PortHost, protocol: Protocol, stats: ProtocolStats, retryAfterMs = 1000) {
    this.#host = host;
    this.protocol = protocol;
    this.stats = stats;
    this.log = host.log.child(protocol);
    this.throttled = new LogThrottle(this.log, { clock: host.clock });
    this.commands = new BoundCommands(host.store, protocol, this);
    this.#overloaded = refusal(
      "overloaded",
      "Cannot accept message: the gateway pipeline is full",
      retryAfterMs,
    );
  }

  get clock(): Clock {
    return this.#host.clock;
  }

  get deadlines(): DeadlineQueue {
    return this.#host.deadlines;
  }

  get budget(): PayloadBudget {
    return this.#host.budget;
  }

  lane(): PublishLane {
    return new PublishLane(this.#host.publishWindow);
  }

  get closing(): boolean {
    return this.#host.closing;
  }

  admit(address: string): boolean {
    return this.#host.admit(address);
  }

  release(address: string): void {
    this.#host.release(address);
  }

  knownDevice(id: string): boolean {
    return this.#host.registry.hasCredentials(id);
  }

  login(request: LoginRequest, address: string): Identity | Refusal<LoginRefusalReason> {
    const h = this.#host;
    if (h.closing) {
      return refusal("unavailable", "Cannot log in: the gateway is shutting down", 5000);
    }
    const r = h.logins.login(request, address);
    if ("ok" in r) {
      this.stats.error(r.reason === "throttled" ? "login_throttled" : "login_refused");
      // Every protocol's failed logins, one line per address per interval (with a count after).
      this.throttled.warn(`login_refused:${address}:${r.reason}`, "login refused", {
        address,
        user: request.user,
        reason: r.reason,
        why: r.message,
      });
    }
    return r;
  }

  get held(): number {
    return this.#held + this.#host.pipeline.held;
  }

  publish(
    who: Identity,
    draft: Draft,
    options?: PublishOptions,
  ): PublishResult | Promise<PublishResult> {
    if (who.derived) return this.#derived(who, draft);
    const h = this.#host;
    const refused = this.#admissible(who, draft.topic, 1, true);
    if (refused) return refused;
    if (who.presenceOnPublish !== undefined) this.#presenceIfOwn(who, draft.topic);
    const msg = draft as Message;
    msg.ts = h.clock.now();
    msg.protocol = this.protocol;
    msg.deviceId = who.deviceId;
    const p = h.pipeline;
    const lane = options?.lane;
    const behind = lane !== undefined && lane.pending !== 0; // must not overtake its lane
    const hook = h.acceptHook;
    if (hook === undefined && !behind) {
      // The hot path: room now and nothing to make durable first, accepted in this call.
      if (p.offer(msg)) {
        h.accepted(msg);
        return ACCEPTED;
      }
      if (!options?.wait) return this.#refuse(this.#overloaded);
      this.#held++;
      return this.#waitForRoom(msg, lane, options.signal);
    }
    if (!options?.wait && !p.hasRoom) return this.#refuse(this.#overloaded);
    this.#held++; // the durable stage may keep it (a group commit), or it waits its lane
    // The durable stage starts now, in arrival order (one group commit takes many messages).
    let durable: void | Promise<void> = undefined;
    try {
      if (hook) durable = hook(msg);
    } catch (err) {
      return this.#refusedBy(err);
    }
    if (durable === undefined && !behind) {
      if (p.offer(msg)) {
        h.accepted(msg);
        return ACCEPTED;
      }
      return this.#waitForRoom(msg, lane, options?.signal);
    }
    const entered = this.#enter(msg, durable, lane?.tail, options?.signal);
    return lane ? lane.add(entered) : entered;
  }

  async publishAll(who: Identity, drafts: Draft[]): Promise<BatchResult> {
    const h = this.#host;
    if (drafts.length === 0) return ACCEPTED;
    this.#held++;
    if (who.derived) {
      let accepted = 0;
      for (const d of drafts) {
        const r = await this.#derived(who, d);
        if (!r.ok) return { ...r, accepted };
        accepted++;
      }
      return ACCEPTED;
    }
    const first = this.#admissible(who, drafts[0].topic, drafts.length, false);
    if (first) return { ...first, accepted: 0 };
    for (const d of drafts) {
      const r = this.#allowedTopic(who, d.topic);
      if (r) return { ...r, accepted: 0 };
    }
    const id = who.deviceId;
    if (id !== undefined && h.rates.enabled) {
      const t = h.rates.take(id, drafts.length);
      if (!t.ok) return { ...this.#rateLimited(t.retryAfterSec, drafts.length), accepted: 0 };
    }
    if (who.presenceOnPublish !== undefined) this.#presenceIfOwn(who, drafts[0].topic);
    let accepted = 0;
    const now = h.clock.now();
    for (const d of drafts) {
      const msg = d as Message;
      msg.ts = now;
      msg.protocol = this.protocol;
      msg.deviceId = id;
      // Room for all was checked: a wait here is only for producers that raced in meanwhile.
      const r = h.acceptHook === undefined && h.pipeline.offer(msg)
        ? (h.accepted(msg), ACCEPTED)
        : await this.#durable(msg, undefined);
      if (!r.ok) return { ...r, accepted };
      accepted++;
    }
    return ACCEPTED;
  }

  service(spec: ServiceSpec, deviceId?: string): Identity {
    return new ServiceIdentity({
      kind: "service",
      name: `${this.protocol}/${spec.name}`,
      publish: [...spec.publish],
      subscribe: [],
    }, deviceId);
  }

  /**
   * A derived message (see {@link DevicePort.service}): shutting down and the ACL, then admitted
   * at once; with a durable stage, appended at once and admitted after the previous derived one.
   */
  #derived(who: Identity, draft: Draft): PublishResult | Promise<PublishResult> {
    const h = this.#host;
    if (h.closing) return this.#refuse(SHUTTING_DOWN);
    const denied = this.#allowedTopic(who, draft.topic);
    if (denied) return denied;
    const msg = draft as Message;
    msg.ts = h.clock.now();
    msg.protocol = this.protocol;
    msg.deviceId = who.deviceId;
    const prev = this.#derivedTail;
    let durable: void | Promise<void>;
    try {
      durable = h.acceptHook?.(msg);
    } catch (err) {
      return this.#refusedBy(err);
    }
    if (!(durable instanceof Promise) && prev === undefined) return this.#admit(msg);
    this.#held++; // kept until the durable stage and the derived message before it are done
    const admitted: Promise<PublishResult> = Promise.all([durable, prev]).then(
      () => this.#admit(msg),
      (err) => this.#refusedBy(err),
    ).finally(() => {
      if (this.#derivedTail === admitted) this.#derivedTail = undefined;
    });
    this.#derivedTail = admitted;
    return admitted;
  }

  /**
   * Into the pipeline ahead of waiting producers; while it is full, the result is a promise (the
   * pipeline keeps the waiting derived messages in order).
   */
  #admit(msg: Message): PublishResult | Promise<PublishResult> {
    let entered: void | Promise<void>;
    try {
      entered = this.#host.pipeline.admit(msg);
    } catch (err) {
      return this.#refusedBy(err);
    }
    if (entered === undefined) {
      this.#host.accepted(msg, true);
      return ACCEPTED;
    }
    // The pipeline keeps waiting derived messages in order: the next one needs no chaining.
    this.#held++;
    return entered.then(() => {
      this.#host.accepted(msg, true);
      return ACCEPTED;
    }, (err) => this.#refusedBy(err));
  }

  mayPublish(who: Identity, topic: string): boolean {
    return topic === who.lastAllowed || canPublish(who.principal, topic);
  }

  maySubscribe(who: Identity, filter: string): boolean {
    return canSubscribe(who.principal, filter);
  }

  check(who: Identity, topic: string, n = 1): Refusal<PublishRefusalReason> | undefined {
    return this.#admissible(who, topic, n, false);
  }

  /**
   * Shutting down, the device's rate (taken only when `take`), the ACL, and room for `n`: a
   * refusal, or `undefined` when the message may go on.
   */
  #admissible(
    who: Identity,
    topic: string,
    n: number,
    take: boolean,
  ): Refusal<PublishRefusalReason> | undefined {
    const h = this.#host;
    if (h.closing) return this.#refuse(SHUTTING_DOWN, n);
    const id = who.deviceId;
    if (id !== undefined && h.rates.enabled) {
      if (take ? !h.rates.allow(id) : !h.rates.hasToken(id)) {
        return this.#rateLimited(h.rates.retryAfterSec(id), n);
      }
    }
    const denied = this.#allowedTopic(who, topic);
    if (denied) return denied;
    if (!take) {
      const p = h.pipeline;
      if (!p.hasRoom || p.capacity - p.depth < n) return this.#refuse(this.#overloaded, n);
    }
    return undefined;
  }

  /**
   * `who` publishes: the first time it does in its device's namespace (`devices/{id}/…`), it goes
   * online (before its message); a tool publishing elsewhere (commands to others) stays no device.
   */
  #presenceIfOwn(who: Identity, topic: string): void {
    if (!topic.startsWith(`devices/${who.deviceId}/`)) return;
    const online = who.presenceOnPublish!;
    who.presenceOnPublish = undefined;
    online();
  }

  #allowedTopic(who: Identity, topic: string): Refusal<PublishRefusalReason> | undefined {
    if (topic === who.lastAllowed) return undefined; // devices repeat their topics
    if (!canPublish(who.principal, topic)) {
      this.stats.drop("not_authorized");
      return refusal("not_authorized", `Cannot publish to ${topic}: not allowed`);
    }
    who.lastAllowed = topic;
    return undefined;
  }

  #rateLimited(retryAfterSec: number, n: number): Refusal<PublishRefusalReason> {
    this.stats.drop("rate_limited", n);
    return refusal(
      "rate_limited",
      `Cannot accept message: the device exceeds ${this.#host.rates.ratePerSec} messages/s`,
      Math.max(1, retryAfterSec) * 1000,
    );
  }

  #refuse<R extends Refusal<PublishRefusalReason>>(r: R, n = 1): R {
    this.stats.drop(r.reason, n);
    return r;
  }

  /** Waits for room in the pipeline, in `lane` (which then says the connection should wait). */
  #waitForRoom(
    msg: Message,
    lane: PublishLane | undefined,
    signal: AbortSignal | undefined,
  ): Promise<PublishResult> {
    const submitted = this.#submit(msg, signal);
    if (lane === undefined) return submitted;
    lane.add(submitted);
    lane.waitsForRoom(submitted);
    return submitted;
  }

  async #submit(msg: Message, signal: AbortSignal | undefined): Promise<PublishResult> {
    try {
      await this.#host.pipeline.submit(msg, signal);
    } catch (err) {
      return this.#refusedBy(err);
    }
    this.#host.accepted(msg);
    return ACCEPTED;
  }

  /** The durable stage (if any), then the pipeline, waiting for room. */
  #durable(msg: Message, signal: AbortSignal | undefined): Promise<PublishResult> {
    let durable: void | Promise<void> = undefined;
    try {
      durable = this.#host.acceptHook?.(msg);
    } catch (err) {
      return Promise.resolve(this.#refusedBy(err));
    }
    return this.#enter(msg, durable, undefined, signal);
  }

  /**
   * Once the durable stage is done and the message before it (`before`, a lane's tail) entered,
   * the pipeline, waiting for room.
   */
  async #enter(
    msg: Message,
    durable: void | Promise<void>,
    before: Promise<unknown> | undefined,
    signal: AbortSignal | undefined,
  ): Promise<PublishResult> {
    const h = this.#host;
    try {
      if (durable) await durable;
    } catch (err) {
      if (before) await before; // settle in order even when refused
      return this.#refusedBy(err);
    }
    if (before) await before;
    try {
      // The hook ran: the message is durable. Wait for room rather than lose it.
      await h.pipeline.submit(msg, signal);
    } catch (err) {
      return this.#refusedBy(err);
    }
    h.accepted(msg);
    return ACCEPTED;
  }

  #refusedBy(err: unknown): Refusal<PublishRefusalReason> {
    if (err instanceof RefusedError) {
      return this.#refuse(refusal(err.reason, err.message, err.retryAfterMs));
    }
    if (err instanceof PipelineClosedError || this.#host.closing) {
      return this.#refuse(SHUTTING_DOWN);
    }
    this.log.warn("message not accepted", { error: err });
    return this.#refuse(
      refusal("failed", `Cannot accept message: ${errorMessage(err)}`, 1000),
    );
  }

  attach(
    who: Identity,
    handle: SessionHandle,
    presence: boolean | "on_publish" = true,
  ): Attachment {
    const reg = this.#host.registry;
    const tracked = reg.track(who, handle);
    const id = who.deviceId;
    if (!presence || id === undefined) return tracked;
    const a = new PresenceAttachment(reg, tracked, who, id, handle);
    if (presence === true) a.arrive();
    else who.presenceOnPublish = () => a.arrive();
    return a;
  }

  seen(deviceId: string, idleMs: number, address?: string): void {
    this.#host.supervisor.seen(deviceId, this.protocol, idleMs, address);
  }

  touch(deviceId: string): void {
    this.#host.registry.touch(deviceId);
  }

  supervise(handle: SessionHandle, timeoutMs: number): DeadlineEntry {
    return this.#host.supervisor.supervise(handle, timeoutMs);
  }

  delivered(deviceId: string | undefined, n = 1): void {
    this.stats.delivered(n);
    const rec = deviceId === undefined ? undefined : this.#host.registry.get(deviceId);
    if (rec) rec.messagesOut += n;
  }

  subscribe(filter: string, sub: Subscriber): () => void {
    return this.#host.subscribe(filter, sub);
  }

  provideSessions(provider: SessionProvider): () => void {
    return this.#host.sessions.register(this.protocol, provider);
  }

  retained(filter: string): Message[] {
    return this.#host.retained.match(filter, this.#host.clock.now());
  }

  hold(sub: object): void {
    this.#host.flow.hold(sub);
  }

  unhold(sub: object): void {
    this.#host.flow.release(sub);
  }

  get flowOpen(): boolean {
    return this.#host.flow.open;
  }

  flowing(): Promise<void> {
    return this.#host.flow.wait();
  }
}

/** The command store seen by one protocol. */
class BoundCommands implements DeviceCommands {
  #store: CommandStore;
  #via: Protocol;
  #port: BoundPort;

  constructor(store: CommandStore, via: Protocol, port: BoundPort) {
    this.#store = store;
    this.#via = via;
    this.#port = port;
  }

  get limits(): Readonly<{ maxPerDevice: number; ttlMs: number; maxDevices: number }> {
    return this.#store.limits;
  }

  open(): () => void {
    return this.#store.open();
  }

  watch(fn: CommandListener): () => void {
    return this.#store.watch(fn);
  }

  listen(deviceId: string, fn: CommandListener): () => void {
    return this.#store.listen(deviceId, fn);
  }

  pending(deviceId: string, after = 0): PendingCommand[] {
    return this.#store.pending(deviceId, { after, via: this.#via });
  }

  next(deviceId: string): PendingCommand | undefined {
    return this.#store.next(deviceId, this.#via);
  }

  count(deviceId: string): number {
    return this.#store.count(deviceId);
  }

  claim(cmd: PendingCommand): boolean {
    return this.#store.claim(cmd, this.#via);
  }

  release(cmd: PendingCommand): void {
    this.#store.release(cmd, this.#via);
  }

  delivered(cmd: PendingCommand): boolean {
    if (!this.#store.remove(cmd.deviceId, cmd.seq)) return false;
    this.#port.delivered(cmd.deviceId);
    return true;
  }

  discard(cmd: PendingCommand): void {
    this.#store.remove(cmd.deviceId, cmd.seq);
  }

  ack(deviceId: string, name: string, seq?: number): PendingCommand | undefined {
    return this.#store.ack(deviceId, name, seq);
  }
}

/**
 * A device's session that counts for presence (an object, not a closure: an idle connection
 * holds one per device).
 */
class PresenceAttachment implements Attachment {
  #attached = false;
  constructor(
    readonly reg: DeviceRegistry,
    readonly tracked: Attachment,
    readonly who: Identity,
    readonly id: string,
    readonly handle: SessionHandle,
  ) {}

  /** The device is present (at once, or at its first publish). */
  arrive(): void {
    if (this.#attached) return;
    this.#attached = true;
    this.reg.attach(this.id, this.handle);
  }

  detach(reason?: string): void {
    this.tracked.detach();
    this.who.presenceOnPublish = undefined;
    if (this.#attached) this.reg.detach(this.id, this.handle, reason);
  }
}
