/**
 * Admission control shared by every listener: a cap on connections per source address, and
 * throttling of failed authentication per source address (after `authFailuresPerMinute` failures
 * an address is refused without a credential check until its minute is over). Loopback addresses
 * can be exempted from the per-address cap (local tools, benchmarks).
 *
 * @module
 */

import { defaultLimits } from "./options.ts";

/** Tunables of {@link Admission}. */
export interface AdmissionOptions {
  /** Concurrent connections per source address (0 = no limit). @default 1024 */
  maxConnectionsPerAddress?: number;
  /** Exempt loopback addresses from the per-address cap. @default true */
  exemptLoopback?: boolean;
  /** Failed authentications per address per minute before it is throttled (0 = off). @default 20 */
  authFailuresPerMinute?: number;
  /** Time source. @default Date.now */
  now?: () => number;
}

function isLoopbackAddress(a: string): boolean {
  return a.startsWith("127.") || a === "::1" || a === "::ffff:127.0.0.1";
}

/**
 * Counts connections and failed logins per source address.
 *
 * @example
 * ```ts
 * import { Admission } from "./admission.ts";
 * const a = new Admission({ maxConnectionsPerAddress: 1, exemptLoopback: false });
 * if (!a.admit("10.0.0.1") || a.admit("10.0.0.1")) throw new Error();
 * a.release("10.0.0.1");
 * if (!a.admit("10.0.0.1")) throw new Error();
 * ```
 */
export class Admission {
  #perAddress = new Map<string, number>();
  #failures = new Map<string, { count: number; since: number }>();
  #max: number;
  #exempt: boolean;
  #authMax: number;
  #now: () => number;

  /** Creates the controller. */
  constructor(options: AdmissionOptions = {}) {
    this.#max = options.maxConnectionsPerAddress ?? defaultLimits.maxConnectionsPerAddress;
    this.#exempt = options.exemptLoopback ?? defaultLimits.exemptLoopback;
    this.#authMax = options.authFailuresPerMinute ?? defaultLimits.authFailuresPerMinute;
    this.#now = options.now ?? Date.now;
  }

  /** Takes a connection slot for `address`; false when its cap is reached. */
  admit(address: string): boolean {
    const n = this.#perAddress.get(address) ?? 0;
    if (this.#max > 0 && n >= this.#max && !(this.#exempt && isLoopbackAddress(address))) {
      return false;
    }
    this.#perAddress.set(address, n + 1);
    return true;
  }

  /** Gives a slot back. */
  release(address: string): void {
    const n = (this.#perAddress.get(address) ?? 1) - 1;
    if (n <= 0) this.#perAddress.delete(address);
    else this.#perAddress.set(address, n);
  }

  /** Connections open from `address`. */
  connections(address: string): number {
    return this.#perAddress.get(address) ?? 0;
  }

  /** True while `address` is throttled for failed authentication. */
  authBlocked(address: string): boolean {
    if (this.#authMax <= 0) return false;
    const f = this.#failures.get(address);
    if (!f) return false;
    if (this.#now() - f.since >= 60_000) {
      this.#failures.delete(address);
      return false;
    }
    return f.count >= this.#authMax;
  }

  /** Records a failed authentication from `address`. */
  authFailed(address: string): void {
    const f = this.#failures.get(address);
    if (!f || this.#now() - f.since >= 60_000) {
      this.#failures.set(address, { count: 1, since: this.#now() });
    } else f.count++;
    if (this.#failures.size > 100_000) { // bound memory under a spray of addresses
      const now = this.#now();
      for (const [k, v] of this.#failures) if (now - v.since >= 60_000) this.#failures.delete(k);
    }
  }
}
