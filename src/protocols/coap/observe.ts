/**
 * The list of observers of RFC 7641 §4.1: one entry per (endpoint, token), indexed by resource,
 * bounded in number, each with its own 24-bit notification sequence (§4.4) and the state of its
 * outstanding Confirmable notification (§4.5.1).
 *
 * @module
 */

import type { CoapRequest, CoapResource, CoapResponse } from "./resource.ts";

/** One registered observer. */
export interface Observation {
  /** `host:port` of the client. */
  readonly endpoint: string;
  /** Address notifications go to. */
  readonly addr: Deno.NetAddr;
  /** Token of the registration; every notification echoes it (RFC 7641 §3.2). */
  readonly token: Uint8Array;
  /** Key of the observed target (path and query). */
  readonly target: string;
  /** The resource. */
  readonly resource: CoapResource;
  /** The registration request, re-played to render notifications (RFC 7641 §4.2). */
  readonly request: CoapRequest;
  /** Registered with a Confirmable request: notifications are sent Confirmable. */
  confirmable: boolean;
  /** Last Observe sequence number sent (24 bits, RFC 7641 §4.4). */
  seq: number;
  /** Clock ms of the last Confirmable notification (RFC 7641 §4.5: at least every 24 h). */
  lastConfirmableAt: number;
  /** Message ID of the Confirmable notification in flight, if any (§4.5.1: one at a time). */
  inFlight?: number;
  /** The state changed while a notification was in flight: send again once it is settled. */
  dirty: boolean;
  /**
   * The Content-Format every 2.xx notification must keep (RFC 7641 §4.2): the registration
   * response's, {@link NO_FORMAT} when it had a body without one, `undefined` while no
   * representation was sent yet (an empty 2.05: the first body binds it).
   */
  format?: number;
  /** Called once when the observation ends (removed from the registry for any reason). */
  ended?: () => void;
}

/** {@link Observation.format} of a representation sent without a Content-Format option. */
export const NO_FORMAT = -1;

/**
 * The format a response binds an observation to (RFC 7641 §4.2): its Content-Format, or
 * {@link NO_FORMAT} for a body without one; `undefined` for a response without a body (no
 * representation, so nothing to bind).
 *
 * @example
 * ```ts
 * import { boundFormat, NO_FORMAT } from "./observe.ts";
 * const body = new Uint8Array([1]);
 * if (boundFormat({ code: 69, payload: body, contentFormat: 50 }) !== 50) throw new Error();
 * if (boundFormat({ code: 69, payload: body }) !== NO_FORMAT) throw new Error();
 * if (boundFormat({ code: 69 }) !== undefined) throw new Error();
 * ```
 */
export function boundFormat(res: CoapResponse): number | undefined {
  if (!res.payload?.length) return undefined;
  return res.contentFormat ?? NO_FORMAT;
}

/** Hex of a token, for map keys. */
export function tokenKey(token: Uint8Array): string {
  let s = "";
  for (const b of token) s += b.toString(16).padStart(2, "0");
  return s;
}

/**
 * Registered observers.
 *
 * @example
 * ```ts
 * import { ObserverRegistry } from "./observe.ts";
 * const reg = new ObserverRegistry(1);
 * const obs = { endpoint: "e", token: new Uint8Array([1]), target: "/obs" } as never;
 * if (!reg.add(obs) || reg.of("/obs").length !== 1) throw new Error();
 * if (!reg.remove(obs) || reg.all().length !== 0) throw new Error();
 * ```
 */
export class ObserverRegistry {
  #max: number;
  #byKey = new Map<string, Observation>();
  #byTarget = new Map<string, Set<Observation>>();

  /** Creates a registry holding at most `max` observers. */
  constructor(max: number) {
    this.#max = max;
  }

  /** Observers registered now. */
  get size(): number {
    return this.#byKey.size;
  }

  /**
   * Adds an observer, replacing the entry with the same endpoint and token (RFC 7641 §4.1).
   * False when the registry is full.
   */
  add(obs: Observation): boolean {
    const key = `${obs.endpoint}|${tokenKey(obs.token)}`;
    const prev = this.#byKey.get(key);
    if (prev) this.remove(prev);
    else if (this.#byKey.size >= this.#max) return false;
    this.#byKey.set(key, obs);
    let set = this.#byTarget.get(obs.target);
    if (!set) this.#byTarget.set(obs.target, set = new Set());
    set.add(obs);
    return true;
  }

  /** The observer with this endpoint and token. */
  get(endpoint: string, token: Uint8Array): Observation | undefined {
    return this.#byKey.get(`${endpoint}|${tokenKey(token)}`);
  }

  /** Removes an observer; true if it was registered. */
  remove(obs: Observation): boolean {
    const key = `${obs.endpoint}|${tokenKey(obs.token)}`;
    if (this.#byKey.get(key) !== obs) return false;
    this.#byKey.delete(key);
    const set = this.#byTarget.get(obs.target);
    set?.delete(obs);
    if (set?.size === 0) this.#byTarget.delete(obs.target);
    obs.ended?.();
    return true;
  }

  /** Observers of a target (a snapshot, safe to modify the registry while iterating). */
  of(target: string): Observation[] {
    return [...this.#byTarget.get(target) ?? []];
  }

  /** Observers whose target starts with `prefix`. */
  matching(prefix: string): Observation[] {
    const out: Observation[] = [];
    for (const [t, set] of this.#byTarget) if (t.startsWith(prefix)) out.push(...set);
    return out;
  }

  /** Every observer. */
  all(): Observation[] {
    return [...this.#byKey.values()];
  }

  /** Removes every observer. */
  clear(): void {
    const all = [...this.#byKey.values()];
    this.#byKey.clear();
    this.#byTarget.clear();
    for (const obs of all) obs.ended?.();
  }
}
