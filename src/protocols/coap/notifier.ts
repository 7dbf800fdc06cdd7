/**
 * Observe, RFC 7641: registering and deregistering observers (§3.1, §3.6, §4.1), and sending
 * notifications (§4.2–§4.5): re-render the observed resource, number the
 * notification (§4.4), pick NON or CON (like the registration, a CON at least every
 * `observeConfirmableIntervalMs`, §4.5), keep one CON in flight per observer and send the newest
 * state after it (§4.5.1), end the observation on a non-2.xx state (§3.2), on a Reset (§3.6) or
 * when a CON is never acknowledged (§4.5), and probe silent observers so gone clients are
 * forgotten.
 *
 * @module
 */

import { type Clock, type Logger, ownBytes, type TimerHandle } from "../../core/mod.ts";
import { type CoapMessage, type CoapOption, CoapType, Code, codeClass } from "./message.ts";
import { encodeMessage } from "./codec.ts";
import { boundFormat, NO_FORMAT, type Observation, type ObserverRegistry } from "./observe.ts";
import { encodeUint, Opt } from "./option_codec.ts";
import type { CoapRequest, CoapResource, CoapResponse } from "./resource.ts";
import type { Retransmitter } from "./retransmitter.ts";

const text = new TextEncoder();
const EMPTY = new Uint8Array(0);

function formatName(f: number): string {
  return f === NO_FORMAT ? "none" : String(f);
}

/** What the notifier needs of the server. */
export interface NotifierHost {
  /** Time source. */
  readonly clock: Clock;
  /** Logger. */
  readonly log: Logger;
  /** The observers. */
  readonly observers: ObserverRegistry;
  /** Retransmission of CON notifications. */
  readonly retransmitter: Retransmitter;
  /** Longest run without a confirmed CON notification (RFC 7641 §4.5: 24 h). */
  readonly confirmableIntervalMs: number;
  /** NON notifications remembered to match a Reset to its observer. */
  readonly maxTrackedNon: number;
  /** True once the server is closing. */
  closed(): boolean;
  /** A fresh message ID towards an endpoint. */
  nextMid(endpoint: string): number;
  /** Builds the notification message (Block2 slicing of large bodies included). */
  build(
    type: CoapType,
    mid: number,
    token: Uint8Array,
    res: CoapResponse,
    options: CoapOption[],
    cacheKey: () => string,
  ): CoapMessage;
  /** Sends a datagram. */
  send(bytes: Uint8Array, addr: Deno.NetAddr): void;
  /** Counts a notification sent. */
  counted(): void;
  /** Counts a registration that was refused (`max_observers`). */
  dropped(reason: string): void;
}

/**
 * Notifies observers.
 *
 * @example
 * ```ts
 * import { Core } from "../../core/core.ts";
 * import { silentLogger } from "../../core/logger.ts";
 * import { CoapServer } from "./server.ts";
 * // The server owns one; resources reach it through `host.notify(path)`:
 * const core = new Core({ anonymous: true, log: silentLogger });
 * const server = new CoapServer(core, { port: 0, mode: "plugtest" });
 * server.notify("/obs"); // no observers: nothing is sent
 * await server.close();
 * await core.close();
 * ```
 */
export class Notifier {
  #host: NotifierHost;
  #nonSent = new Map<string, Observation>();
  #sweepTimer: TimerHandle | undefined;

  /** Creates a notifier. */
  constructor(host: NotifierHost) {
    this.#host = host;
  }

  /**
   * Handles the Observe option of a GET answered with `res`: registers (0) or deregisters (1) the
   * client `req` came from, on `target` (a path like `/obs`); returns the sequence number to put
   * in the response, `undefined` when it is not (or no longer) registered.
   */
  register(
    req: CoapRequest,
    addr: Deno.NetAddr,
    resource: CoapResource,
    res: CoapResponse,
    target: string,
  ): number | undefined {
    const host = this.#host;
    // A view of the received datagram's slab (codec.ts): copied before it is kept for long.
    const token = ownBytes(req.message.token);
    const existing = host.observers.get(req.endpoint, token);
    if (req.observe === 1) { // RFC 7641 §3.6: deregistration
      if (existing) host.observers.remove(existing);
      return undefined;
    }
    if (req.observe !== 0) return undefined;
    // RFC 7641 §4.1: only a 2.xx response registers (or keeps) the observer.
    if (codeClass(res.code) !== 2) {
      if (existing) host.observers.remove(existing);
      return undefined;
    }
    const obs: Observation = {
      endpoint: req.endpoint,
      addr,
      token,
      target,
      resource,
      // Kept lean (RFC 7641 §4.2 re-renders from path, query and Accept): no body, no options.
      request: {
        ...req,
        observe: undefined,
        payload: EMPTY,
        options: [],
        message: { ...req.message, token, options: [], payload: EMPTY },
      },
      confirmable: req.confirmable,
      seq: existing ? existing.seq : 1,
      lastConfirmableAt: host.clock.now(),
      dirty: false,
      // RFC 7641 §4.2: notifications keep this response's Content-Format.
      format: boundFormat(res),
    };
    if (existing?.inFlight !== undefined) {
      host.retransmitter.cancel(existing.endpoint, existing.inFlight);
    }
    // RFC 7641 §4.1: same endpoint and token replaces; a full list means no registration.
    if (!host.observers.add(obs)) {
      host.dropped("max_observers");
      return undefined;
    }
    obs.seq = (obs.seq + 1) & 0xffffff;
    obs.ended = res.onObserved?.((final) => this.endOne(obs, final));
    return obs.seq;
  }

  /** Notifies every observer of `target` (a path like `/obs`). */
  notify(target: string): void {
    if (this.#host.closed()) return;
    for (const obs of this.#host.observers.of(target)) this.notifyOne(obs);
  }

  /** Notifies one observer; `probe` sends the current state even when it did not change. */
  notifyOne(obs: Observation, probe = false): void {
    const host = this.#host;
    if (host.closed()) return;
    // RFC 7641 §4.5.1: at most one Confirmable notification in flight per observer; the newest
    // state goes out once it is settled.
    if (obs.inFlight !== undefined) {
      obs.dirty = true;
      return;
    }
    obs.dirty = false;
    let result: ReturnType<CoapResource["handle"]>;
    // RFC 7641 §4.2: the resource is asked for the registration's Content-Format (its Accept, or
    // the format the observation is bound to), so resources with several formats keep to it.
    const f = obs.format;
    const accept = obs.request.accept ?? (f !== undefined && f !== NO_FORMAT ? f : undefined);
    try {
      result = obs.resource.handle({ ...obs.request, accept, notification: true });
    } catch (err) {
      host.log.error("notification render failed", { target: obs.target, error: err });
      return;
    }
    const send = (res: CoapResponse | null) => {
      // A liveness probe of an unchanged resource re-sends its current (empty) state.
      if (!res && probe) res = { code: Code.CONTENT };
      if (!res || host.closed() || !host.observers.get(obs.endpoint, obs.token)) return;
      this.#send(obs, this.#keepFormat(obs, res));
    };
    if (result instanceof Promise) result.then(send, () => {});
    else send(result);
  }

  /**
   * RFC 7641 §4.2: "The Content-Format specified in a 2.xx notification MUST be the same as the one
   * used in the initial response"; when the resource can no longer provide it the observer gets a
   * final 4.06 and is removed. A registration answered without a body binds the first body's.
   */
  #keepFormat(obs: Observation, res: CoapResponse): CoapResponse {
    if (codeClass(res.code) !== 2) return res;
    const f = boundFormat(res);
    if (f === undefined || f === obs.format) return res;
    if (obs.format === undefined) {
      obs.format = f;
      return res;
    }
    const was = formatName(obs.format);
    const now = formatName(f);
    this.#host.log.info("observation ended: content format changed", {
      endpoint: obs.endpoint,
      target: obs.target,
      registered: was,
      now,
    });
    // Removed first: giving back what the representation claimed may make the resource notify.
    this.#host.observers.remove(obs);
    res.onLost?.(); // the representation was not sent: whatever it claimed is given back
    return {
      code: Code.NOT_ACCEPTABLE,
      payload: text.encode(`Content-Format changed from ${was} to ${now}`),
    };
  }

  #send(obs: Observation, res: CoapResponse): void {
    const host = this.#host;
    const now = host.clock.now();
    const final = codeClass(res.code) !== 2;
    // RFC 7641 §4.5: Confirmable if the client registered with CON, and at least every 24 h.
    const kind = obs.resource.notifications ?? "like-request";
    const con = kind === "confirmable" || final ||
      (kind === "like-request" && obs.confirmable) ||
      now - obs.lastConfirmableAt >= host.confirmableIntervalMs;
    const mid = host.nextMid(obs.endpoint);
    const options: CoapOption[] = [];
    if (!final) {
      obs.seq = (obs.seq + 1) & 0xffffff; // RFC 7641 §4.4: increasing sequence numbers
      options.push({ number: Opt.OBSERVE, value: encodeUint(obs.seq) });
    } else {
      // RFC 7641 §3.2: a non-2.xx notification ends the observation.
      host.observers.remove(obs);
    }
    const msg = host.build(
      con ? CoapType.CON : CoapType.NON,
      mid,
      obs.token,
      res,
      options,
      () => `${obs.endpoint}|${obs.target.slice(1)}?${obs.request.query.join("&")}`,
    );
    const bytes = encodeMessage(msg);
    host.counted();
    if (!con) {
      host.send(bytes, obs.addr);
      this.#nonSent.set(`${obs.endpoint}#${mid}`, obs);
      if (this.#nonSent.size > host.maxTrackedNon) {
        const oldest = this.#nonSent.keys().next().value;
        if (oldest !== undefined) this.#nonSent.delete(oldest);
      }
      res.onDelivered?.(false);
      return;
    }
    obs.lastConfirmableAt = now;
    obs.inFlight = mid;
    host.retransmitter.send(obs.endpoint, mid, bytes, obs.addr).then((outcome) => {
      obs.inFlight = undefined;
      if (outcome === "ack") {
        res.onDelivered?.(true);
        if (obs.dirty) this.notifyOne(obs);
        return;
      }
      res.onLost?.();
      // RFC 7641 §4.5: a notification not acknowledged, or answered with Reset, ends the
      // observation (the client is gone or no longer interested).
      if (outcome === "rst" || outcome === "timeout") this.cancel(obs, outcome);
    });
  }

  /**
   * Ends the observations of `target` (every observation when `undefined`): with the final
   * notification `final`, a non-2.xx response (RFC 7641 §3.2), or silently without one. A CON
   * notification still in flight is no longer retransmitted. Returns how many ended.
   */
  end(target: string | undefined, final?: CoapResponse): number {
    const host = this.#host;
    const list = target === undefined ? host.observers.all() : host.observers.of(target);
    for (const obs of list) this.endOne(obs, final);
    return list.length;
  }

  /** Ends one observation, like {@link end}. */
  endOne(obs: Observation, final?: CoapResponse): void {
    const host = this.#host;
    if (host.observers.get(obs.endpoint, obs.token) !== obs) return;
    if (obs.inFlight !== undefined) host.retransmitter.cancel(obs.endpoint, obs.inFlight);
    if (final && codeClass(final.code) !== 2 && !host.closed()) this.#send(obs, final);
    else this.cancel(obs, "ended");
  }

  /** A Reset that matches no CON: true when it answered a NON notification (§3.6: deregister). */
  reset(endpoint: string, mid: number): boolean {
    const key = `${endpoint}#${mid}`;
    const obs = this.#nonSent.get(key);
    if (!obs) return false;
    this.#nonSent.delete(key);
    this.cancel(obs, "reset");
    return true;
  }

  /** Removes an observer. */
  cancel(obs: Observation, why: string): void {
    if (this.#host.observers.remove(obs)) {
      this.#host.log.debug("observer removed", { endpoint: obs.endpoint, target: obs.target, why });
    }
  }

  /**
   * RFC 7641 §4.5: a server must learn when an observer is gone. Observers that have not confirmed
   * a CON notification for the interval get one now (the current state, or an empty 2.05 for a
   * resource with nothing new); if it is never acknowledged they are removed.
   */
  startSweep(): void {
    const { clock, confirmableIntervalMs: interval } = this.#host;
    const period = Math.max(1000, Math.min(interval / 4, 3_600_000));
    this.#sweepTimer = clock.setTimeout(() => {
      this.#sweepTimer = undefined;
      if (this.#host.closed()) return;
      const now = clock.now();
      for (const obs of this.#host.observers.all()) {
        if (obs.inFlight === undefined && now - obs.lastConfirmableAt >= interval) {
          this.notifyOne(obs, true);
        }
      }
      this.startSweep();
    }, period);
    clock.unref?.(this.#sweepTimer);
  }

  /** Stops the sweep and forgets NON notifications. */
  close(): void {
    if (this.#sweepTimer !== undefined) this.#host.clock.clearTimeout(this.#sweepTimer);
    this.#sweepTimer = undefined;
    this.#nonSent.clear();
  }
}
