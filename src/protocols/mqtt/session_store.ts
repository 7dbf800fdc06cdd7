/**
 * The server's table of sessions by client id: opening (clean start, resume, takeover of a live
 * connection, [MQTT-3.1.4-2] .. [MQTT-3.1.4-4]), releasing when a connection ends (session expiry,
 * MQTT 5 §3.1.2.11.2), and will messages, published at once or after the Will Delay Interval unless
 * the session is resumed first (MQTT 5 §3.1.3.2.2).
 *
 * @module
 */

import type { Core, Logger, SessionHandle, TimerHandle } from "../../core/mod.ts";
import type { AcceptedConnect, Will } from "./handle_connect.ts";
import type { MqttServerOptions } from "./options.ts";
import { MqttSession, type MqttSessionOptions } from "./session.ts";
import { parseSharedFilter, type SharedSubscriptions } from "./shared_subscriptions.ts";

const MAX_TIMER_MS = 2 ** 31 - 1;

interface Entry {
  session: MqttSession;
  owner?: SessionHandle;
  expiry?: TimerHandle;
  will?: { will: Will; timer?: TimerHandle };
}

/** Result of {@link SessionStore.open}. */
export type OpenResult =
  | { ok: true; session: MqttSession; present: boolean }
  | { ok: false; message: string };

/**
 * Sessions by client id.
 *
 * @example
 * ```ts
 * import { Core } from "../../core/mod.ts";
 * import { resolveMqttServerOptions } from "./options.ts";
 * import { SessionStore } from "./session_store.ts";
 * import { SharedSubscriptions } from "./shared_subscriptions.ts";
 * const core = new Core({ anonymous: true });
 * const store = new SessionStore(core, new SharedSubscriptions(core), resolveMqttServerOptions(), core.log);
 * const owner = { sessionId: "1", protocol: "mqtt", close() {} } as const;
 * const r = store.open({ clientId: "c", cleanStart: false, sessionExpirySec: 60 } as never, owner);
 * if (!r.ok || r.present) throw new Error();
 * store.release(owner, "c", undefined);
 * const again = store.open({ clientId: "c", cleanStart: false, sessionExpirySec: 60 } as never, owner);
 * if (!again.ok || !again.present) throw new Error("session not kept");
 * store.close();
 * await core.close();
 * ```
 */
export class SessionStore {
  #core: Core;
  #shared: SharedSubscriptions;
  #opts: Required<MqttServerOptions>;
  #log: Logger;
  #entries = new Map<string, Entry>();
  #takenOver = new WeakMap<SessionHandle, boolean>(); // closed by a takeover → session resumed?
  #sessionOptions: MqttSessionOptions; // one object shared by every session

  /** Creates an empty store. */
  constructor(
    core: Core,
    shared: SharedSubscriptions,
    options: Required<MqttServerOptions>,
    log: Logger,
  ) {
    this.#core = core;
    this.#shared = shared;
    this.#opts = options;
    this.#log = log;
    const labels = new Map<string, { protocol: "mqtt"; reason: string }>();
    this.#sessionOptions = {
      maxQueued: options.maxQueuedMessages,
      dropPolicy: options.queueDropPolicy,
      maxInflight: options.maxInflight,
      onDrop: (reason) => {
        let l = labels.get(reason);
        if (!l) labels.set(reason, l = { protocol: "mqtt", reason });
        core.stats.drops.inc(l);
      },
      onError: (error) => log.error("delivery failed", { error }),
    };
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
   * Opens the session of an accepted CONNECT for `owner`. A live connection with the same client id
   * is closed with `taken_over`; clean start discards the previous session.
   */
  open(c: AcceptedConnect, owner: SessionHandle): OpenResult {
    let e = this.#entries.get(c.clientId);
    if (e?.owner && e.owner !== owner) {
      // [MQTT-3.1.4-3] takeover: the existing connection is closed (v5: DISCONNECT 0x8E).
      e.owner.close({ code: "taken_over", message: "another connection used the client id" });
      // Whether its session lives on decides when its will goes out (see release).
      this.#takenOver.set(e.owner, !c.cleanStart && e.session.expirySec !== 0);
    }
    if (e) {
      if (e.expiry !== undefined) this.#core.clock.clearTimeout(e.expiry);
      e.expiry = undefined;
      if (e.will?.timer !== undefined) {
        // MQTT 5 §3.1.3.2.2: a new connection before the delay cancels the will…
        this.#core.clock.clearTimeout(e.will.timer);
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
        return { ok: false, message: `session limit ${this.#opts.maxSessions} reached` };
      }
      e = {
        session: new MqttSession(c.clientId, this.#core, this.#sessionOptions),
      };
      this.#entries.set(c.clientId, e);
    }
    e.owner = owner;
    e.session.expirySec = c.sessionExpirySec;
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
      // Taken over. Resumed by the new connection: only an immediate will goes out. Ended (clean
      // start, or expiry 0): the will goes out now, whatever its delay (MQTT 5 §3.1.3.2.2).
      const resumed = this.#takenOver.get(owner) ?? true;
      this.#takenOver.delete(owner);
      if (will && (will.delaySec === 0 || !resumed)) this.#publishWill(will);
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
    if (s.expirySec !== 0xffffffff) {
      e.expiry = this.#timer(s.expirySec, () => {
        e.expiry = undefined;
        this.#log.debug("session expired", { clientId: id });
        this.#discard(id, e);
      });
    }
  }

  /** Drops every session and timer (server shutdown). */
  close(): void {
    for (const [id, e] of this.#entries) {
      if (e.will?.timer !== undefined) this.#core.clock.clearTimeout(e.will.timer);
      e.will = undefined;
      this.#discard(id, e);
    }
  }

  #timer(sec: number, fn: () => void): TimerHandle {
    const h = this.#core.clock.setTimeout(fn, Math.min(sec * 1000, MAX_TIMER_MS));
    this.#core.clock.unref?.(h);
    return h;
  }

  #discard(id: string, e: Entry): void {
    if (e.expiry !== undefined) this.#core.clock.clearTimeout(e.expiry);
    if (e.will) {
      if (e.will.timer !== undefined) this.#core.clock.clearTimeout(e.will.timer);
      this.#publishWill(e.will.will); // the session ends: a pending will goes out
      e.will = undefined;
    }
    for (const f of e.session.sharedFilters()) {
      const p = parseSharedFilter(f);
      if (p && typeof p === "object") this.#shared.leave(p, e.session);
    }
    e.session.destroy();
    if (this.#entries.get(id) === e) this.#entries.delete(id);
  }

  #publishWill(will: Will): void {
    if (this.#core.closing) return;
    const now = this.#core.clock.now();
    const props = will.msg.properties;
    // The will's expiry is kept relative until it is published.
    const msg = {
      ...will.msg,
      ts: now,
      properties: props?.expiresAt !== undefined
        ? { ...props, expiresAt: props.expiresAt + now }
        : props,
    };
    this.#core.publish(msg).catch((err) =>
      this.#log.warn("will not published", { topic: msg.topic, error: err })
    );
  }
}
