/**
 * The server's table of sessions by client id: opening (clean start, resume, takeover of a live
 * connection, [MQTT-3.1.4-2] .. [MQTT-3.1.4-4]), releasing when a connection ends (session expiry,
 * MQTT 5 §3.1.2.11.2), and will messages, published at once or after the Will Delay Interval unless
 * the session is resumed first (MQTT 5 §3.1.3.2.2). With a {@link SessionPersistence}
 * ({@link SessionStore.persist}) sessions that outlive their connection are journaled to the state
 * file and restored, offline, at start.
 *
 * @module
 */

import type {
  DevicePort,
  Draft,
  DropResult,
  Logger,
  SessionDetail,
  SessionHandle,
  SessionInfo,
  SessionProvider,
  SubscriptionInfo,
  TimerHandle,
} from "../../core/mod.ts";
import type { AcceptedConnect, Will } from "./handle_connect.ts";
import { ReasonCode } from "./reason_codes.ts";
import type { MqttServerOptions } from "./options.ts";
import { MqttSession, type MqttSessionOptions } from "./session.ts";
import { parseSharedFilter, type SharedSubscriptions } from "./shared_subscriptions.ts";
import type { SessionPersistence } from "./session_persistence.ts";

const MAX_TIMER_MS = 2 ** 31 - 1;

interface Entry {
  session: MqttSession;
  owner?: SessionHandle;
  expiry?: TimerHandle;
  will?: { will: Will; timer?: TimerHandle };
  version?: number;
  /** Clean start of the CONNECT that opened or last resumed it (unknown when restored). */
  cleanStart?: boolean;
  /** When an offline session expires (clock ms). */
  expiresAt?: number;
}

/** Result of {@link SessionStore.persist}. */
export interface RestoreResult {
  /** Sessions restored (offline). */
  restored: number;
  /** Sessions found whose expiry passed while the gateway was down (forgotten). */
  expired: number;
  /** Queued and in-flight messages restored. */
  messages: number;
}

/** Result of {@link SessionStore.open}: the session, or a refusal with its MQTT 5 reason code. */
export type OpenResult =
  | { ok: true; session: MqttSession; present: boolean }
  | { ok: false; reasonCode: number; message: string };

/**
 * Sessions by client id.
 *
 * @example
 * ```ts
 * import { Core, Identity } from "../../core/mod.ts";
 * import { resolveMqttServerOptions } from "./options.ts";
 * import { SessionStore } from "./session_store.ts";
 * import { SharedSubscriptions } from "./shared_subscriptions.ts";
 * import { MQTT } from "./server.ts";
 * const core = new Core({ anonymous: true });
 * const port = core.port(MQTT);
 * const store = new SessionStore(port, new SharedSubscriptions(port), resolveMqttServerOptions(), core.log);
 * const owner = { sessionId: "1", protocol: "mqtt", close() {} } as const;
 * const who = new Identity({ kind: "anonymous" });
 * const r = store.open({ clientId: "c", cleanStart: false, sessionExpirySec: 60, who } as never, owner);
 * if (!r.ok || r.present) throw new Error();
 * store.release(owner, "c", undefined);
 * const again = store.open({ clientId: "c", cleanStart: false, sessionExpirySec: 60, who } as never, owner);
 * if (!again.ok || !again.present) throw new Error("session not kept");
 * store.close();
 * await core.close();
 * ```
 */
export class SessionStore {
  #port: DevicePort;
  #shared: SharedSubscriptions;
  #opts: Required<MqttServerOptions>;
  #log: Logger;
  #entries = new Map<string, Entry>();
  // Closed by a takeover → does its will go out (see open)?
  #takenOver = new WeakMap<SessionHandle, boolean>();
  #sessionOptions: MqttSessionOptions; // one object shared by every session
  #persist: SessionPersistence | undefined;

  /** Creates an empty store. */
  constructor(
    port: DevicePort,
    shared: SharedSubscriptions,
    options: Required<MqttServerOptions>,
    log: Logger,
  ) {
    this.#port = port;
    this.#shared = shared;
    this.#opts = options;
    this.#log = log;
    this.#sessionOptions = {
      maxQueued: options.maxQueuedMessages,
      dropPolicy: options.queueDropPolicy,
      maxInflight: options.maxInflight,
      onDrop: (reason) => port.stats.drop(reason),
      onError: (error) => log.error("delivery failed", { error }),
    };
  }

  /**
   * Journals persistent sessions to `persistence` from now on, and restores the sessions it holds:
   * offline, subscribed in the core (so messages arriving before the client reconnects are
   * queued), with their expiry counted from the time of disconnect (a session that was connected
   * when the process died counts from now). Call before the listener accepts.
   */
  persist(persistence: SessionPersistence): RestoreResult {
    this.#persist = persistence;
    const now = this.#port.clock.now();
    const result: RestoreResult = { restored: 0, expired: 0, messages: 0 };
    for (const st of persistence.load()) {
      const left = st.expirySec === 0xffffffff
        ? Infinity
        : st.expirySec * 1000 - (now - (st.disconnectedAt ?? now));
      if (left <= 0 || st.expirySec === 0 || this.#entries.has(st.clientId)) {
        persistence.forgetId(st.clientId);
        result.expired++;
        continue;
      }
      if (this.#entries.size >= this.#opts.maxSessions) {
        this.#log.warn("session not restored: session limit reached", { clientId: st.clientId });
        persistence.forgetId(st.clientId);
        continue;
      }
      const session = new MqttSession(st.clientId, this.#port, this.#sessionOptions);
      session.expirySec = st.expirySec;
      session.owner = st.owner;
      for (const [filter, opts] of st.state.subscriptions) session.subscribe(filter, opts);
      for (const [filter, opts] of st.state.shared) {
        const p = parseSharedFilter(filter);
        if (!p || typeof p !== "object") continue;
        this.#shared.join(p, session, opts);
        session.addShared(filter, opts);
      }
      const max = this.#opts.maxQueuedMessages;
      const queue = st.state.queue;
      const keep = queue.length <= max
        ? queue
        : this.#opts.queueDropPolicy === "oldest"
        ? queue.slice(queue.length - max)
        : queue.slice(0, max);
      const dropped = queue.filter((o) => !keep.includes(o));
      session.restore({ ...st.state, queue: keep });
      session.seq = st.lastSeq;
      session.journal = persistence;
      for (const o of dropped) persistence.removed(session, o);
      if (st.disconnectedAt === undefined) persistence.save(session, st.version, now);
      const e: Entry = { session, version: st.version };
      if (left !== Infinity) this.#expireIn(st.clientId, e, left);
      this.#entries.set(st.clientId, e);
      result.restored++;
      result.messages += keep.length + st.state.inflight.length;
    }
    return result;
  }

  /** Sessions held (connected or not). */
  get size(): number {
    return this.#entries.size;
  }

  /** The session of a client id, if any. */
  get(clientId: string): MqttSession | undefined {
    return this.#entries.get(clientId)?.session;
  }

  /**
   * Opens the session of an accepted CONNECT for `owner`. A session belongs to the identity that
   * created it: another identity presenting its client id is refused (0x87), whatever its clean
   * start says (a clean start would discard another principal's session). A live connection of
   * the same identity with the same client id is closed with `taken_over`; clean start discards
   * the previous session.
   */
  open(c: AcceptedConnect, owner: SessionHandle): OpenResult {
    let e = this.#entries.get(c.clientId);
    const key = c.who.key;
    if (e && e.session.owner !== undefined && e.session.owner !== key) {
      return {
        ok: false,
        reasonCode: ReasonCode.NotAuthorized,
        message: `client id "${c.clientId}" belongs to another principal's session`,
      };
    }
    if (e?.owner && e.owner !== owner) {
      // [MQTT-3.1.4-3] takeover: the existing connection is closed (v5: DISCONNECT 0x8E).
      e.owner.close({ code: "taken_over", message: "another connection used the client id" });
      // Its will: MQTT 5 [MQTT-3.1.2-8], [MQTT-3.1.3-9]: not sent when a new connection to the
      // session comes before the Will Delay Interval has passed (the takeover is that connection,
      // whatever the delay, 0 included); sent at once when the session ends instead (Clean Start
      // 1, or expiry 0). MQTT 3.1.1 [MQTT-3.1.2-8]: the will MUST be published when the
      // connection closes other than by DISCONNECT, and 3.1.1 has no exception for a takeover.
      const resumed = !c.cleanStart && e.session.expirySec !== 0;
      this.#takenOver.set(e.owner, e.version !== 5 || !resumed);
    }
    if (e) {
      if (e.expiry !== undefined) this.#port.clock.clearTimeout(e.expiry);
      e.expiry = undefined;
      if (e.will?.timer !== undefined) {
        // MQTT 5 §3.1.3.2.2: a new connection before the delay cancels the will…
        this.#port.clock.clearTimeout(e.will.timer);
        const w = e.will.will;
        e.will = undefined;
        // …unless the session ends now (clean start), which publishes it.
        if (c.cleanStart) this.#publishWill(w);
      }
    }
    let present = false;
    // [MQTT-3.1.2-6] / MQTT 5 §3.1.2.11.2: a live session with expiry 0 ends with its connection,
    // so a takeover cannot resume it (session present 0, nothing kept).
    const ending = e?.owner !== undefined && e.owner !== owner && e.session.expirySec === 0;
    if (e && !c.cleanStart && !ending) present = true;
    else {
      if (e) this.#discard(c.clientId, e);
      if (this.#entries.size >= this.#opts.maxSessions) {
        return {
          ok: false,
          reasonCode: ReasonCode.QuotaExceeded,
          message: `session limit ${this.#opts.maxSessions} reached`,
        };
      }
      e = {
        session: new MqttSession(c.clientId, this.#port, this.#sessionOptions),
      };
      this.#entries.set(c.clientId, e);
    }
    e.owner = owner;
    e.session.owner = key;
    e.session.expirySec = c.sessionExpirySec;
    e.version = c.version;
    e.cleanStart = c.cleanStart;
    e.expiresAt = undefined;
    const p = this.#persist;
    if (p) {
      // Only a session that outlives its connection is written; one that no longer does is gone.
      if (c.sessionExpirySec === 0) {
        if (e.session.journal) p.forget(e.session);
      } else if (e.session.journal) p.save(e.session, c.version, undefined);
      else p.track(e.session, c.version);
    }
    return { ok: true, session: e.session, present };
  }

  /**
   * Ends `owner`'s use of its session: the session is discarded (expiry 0) or kept until its
   * expiry; `will` is published at once, or after its delay while the session lives.
   */
  release(owner: SessionHandle, clientId: string, will: Will | undefined): void {
    const id = clientId;
    const e = this.#entries.get(id);
    if (!e || e.owner !== owner) {
      // Taken over (open() decided about the will), or the session went some other way.
      const publish = this.#takenOver.get(owner) ?? will?.delaySec === 0;
      this.#takenOver.delete(owner);
      if (will && publish) this.#publishWill(will);
      return;
    }
    e.owner = undefined;
    const s = e.session;
    if (s.expirySec === 0) {
      this.#discard(id, e);
      if (will) this.#publishWill(will);
      return;
    }
    if (will) {
      if (will.delaySec === 0) this.#publishWill(will);
      else if (will.delaySec < s.expirySec) {
        e.will = { will };
        e.will.timer = this.#timer(will.delaySec, () => {
          e.will = undefined;
          this.#publishWill(will);
        });
      } else e.will = { will }; // published when the session expires, which comes first
    }
    if (s.journal) this.#persist?.save(s, e.version ?? 4, this.#port.clock.now());
    if (s.expirySec !== 0xffffffff) this.#expireIn(id, e, s.expirySec * 1000);
  }

  #expireIn(id: string, e: Entry, ms: number): void {
    e.expiresAt = this.#port.clock.now() + ms;
    e.expiry = this.#timerMs(ms, () => {
      e.expiry = undefined;
      this.#log.debug("session expired", { clientId: id });
      this.#discard(id, e);
    });
  }

  /**
   * The sessions as the gateway's management sees them (`core.sessions`): listed, described,
   * dropped. A dropped session is discarded whole (subscriptions, queue, journal); its connection,
   * if any, is closed with `administrative` (v5: DISCONNECT 0x98) and its will goes out, as when a
   * session ends ([MQTT-3.1.2-8]). The next CONNECT with the id gets Session Present 0.
   */
  provider(): SessionProvider {
    return {
      clientIds: () => this.#entries.keys(),
      connected: (id) => this.#entries.get(id)?.owner !== undefined,
      describe: (id, detail) => this.#describe(id, detail ?? false),
      subscriptions: (id, accept) => this.#entries.get(id)?.session.subscriptionList(accept) ?? [],
      subscriptionCount: (id) => this.#entries.get(id)?.session.allSubscriptionCount ?? 0,
      drop: (id, why) => this.#drop(id, why),
      flushed: () => this.#persist?.db.flushed() ?? Promise.resolve(true),
    };
  }

  #describe(id: string, detail: boolean): SessionInfo | SessionDetail | undefined {
    const e = this.#entries.get(id);
    if (!e) return undefined;
    const s = e.session;
    const owner = s.owner ?? null;
    const info: SessionInfo = {
      clientId: id,
      protocol: this.#port.protocol,
      connected: e.owner !== undefined,
      deviceId: owner?.startsWith("device:") ? owner.slice(7) : null,
      owner,
      cleanStart: e.cleanStart ?? null,
      expirySec: s.expirySec,
      expiresAt: e.owner === undefined && e.expiresAt !== undefined ? e.expiresAt : null,
      queued: s.queued,
      inflight: s.inflight,
      subscriptionCount: s.allSubscriptionCount,
      connection: e.owner?.describe?.() ?? null,
    };
    if (!detail) return info;
    const subscriptions: SubscriptionInfo[] = s.subscriptionList();
    return { ...info, subscriptions };
  }

  #drop(id: string, why: string): DropResult | undefined {
    const e = this.#entries.get(id);
    if (!e) return undefined;
    const owner = e.owner;
    e.owner = undefined;
    this.#discard(id, e);
    if (!owner) return "dropped";
    // Its release finds no session of its own: its will goes out (the session ended).
    this.#takenOver.set(owner, true);
    owner.close({ code: "administrative", message: why });
    return "kicked";
  }

  /**
   * Drops every session and timer (server shutdown). Journaled sessions stay in the state file,
   * and stay subscribed so that what the core still drains after the listeners closed is queued
   * (and journaled) for them; the owner of the state file closes it after the core.
   */
  close(): void {
    for (const [id, e] of this.#entries) {
      if (e.will?.timer !== undefined) this.#port.clock.clearTimeout(e.will.timer);
      e.will = undefined;
      if (e.session.journal) {
        if (e.expiry !== undefined) this.#port.clock.clearTimeout(e.expiry);
        e.expiry = undefined;
        this.#entries.delete(id);
      } else this.#discard(id, e);
    }
  }

  #timer(sec: number, fn: () => void): TimerHandle {
    return this.#timerMs(sec * 1000, fn);
  }

  #timerMs(ms: number, fn: () => void): TimerHandle {
    const h = this.#port.clock.setTimeout(fn, Math.min(ms, MAX_TIMER_MS));
    this.#port.clock.unref?.(h);
    return h;
  }

  #discard(id: string, e: Entry): void {
    if (e.expiry !== undefined) this.#port.clock.clearTimeout(e.expiry);
    if (e.will) {
      if (e.will.timer !== undefined) this.#port.clock.clearTimeout(e.will.timer);
      this.#publishWill(e.will.will); // the session ends: a pending will goes out
      e.will = undefined;
    }
    if (e.session.journal) this.#persist?.forget(e.session);
    for (const f of e.session.sharedFilters()) {
      const p = parseSharedFilter(f);
      if (p && typeof p === "object") this.#shared.leave(p, e.session);
    }
    e.session.destroy();
    if (this.#entries.get(id) === e) this.#entries.delete(id);
  }

  #publishWill(will: Will): void {
    const port = this.#port;
    if (port.closing) return;
    const now = port.clock.now();
    const props = will.draft.properties;
    // The will's expiry is kept relative until it is published.
    const draft: Draft = {
      ...will.draft,
      properties: props?.expiresAt !== undefined
        ? { ...props, expiresAt: props.expiresAt + now }
        : props,
    };
    const logged = (r: { ok: boolean; message?: string }) => {
      if (!r.ok) this.#log.warn("will not published", { topic: draft.topic, why: r.message });
    };
    const r = port.publish(will.who, draft, { wait: true });
    if (r instanceof Promise) r.then(logged);
    else logged(r);
  }
}
