/**
 * The failed-login throttle of the dashboard and the management API. Failures are counted per
 * account and client address (so a flood of wrong tokens for one account from one address does not
 * lock the right token out from another address, nor another account out from this one), and per
 * client address over all accounts (so one address cannot spray guesses across account names).
 * Both tables are bounded: past `maxTracked` entries the oldest is forgotten, so a flood of
 * distinct values costs a fixed amount of memory.
 *
 * @module
 */

/** Tunables of {@link LoginThrottle}. */
export interface LoginThrottleOptions {
  /** Failed logins per account and address per minute before that pair waits. @default 10 */
  perAccount?: number;
  /** Failed logins per address per minute, whatever the account, before it waits. @default 100 */
  perAddress?: number;
  /** Entries kept per table at most. @default 10000 */
  maxTracked?: number;
  /** Time source. @default Date.now */
  now?: () => number;
}

const WINDOW_MS = 60_000;

interface Failures {
  count: number;
  since: number;
}

/** A bounded table of failure counts per key, oldest forgotten first. */
class FailureTable {
  #map = new Map<string, Failures>();
  constructor(readonly max: number, readonly limit: number) {}

  get size(): number {
    return this.#map.size;
  }

  /** Ms until `key` may try again (0: it may now). */
  wait(key: string, now: number): number {
    const f = this.#map.get(key);
    if (!f) return 0;
    const left = f.since + WINDOW_MS - now;
    if (left <= 0) {
      this.#map.delete(key);
      return 0;
    }
    return f.count >= this.limit ? left : 0;
  }

  fail(key: string, now: number): void {
    const f = this.#map.get(key);
    if (f && now - f.since < WINDOW_MS) {
      f.count++;
      return;
    }
    this.#map.delete(key); // re-inserted last: the Map's order is the age order
    this.#map.set(key, { count: 1, since: now });
    while (this.#map.size > this.max) this.#map.delete(this.#map.keys().next().value!);
  }
}

/**
 * Counts failed logins.
 *
 * @example
 * ```ts
 * import { LoginThrottle } from "./login_throttle.ts";
 * let t = 0;
 * const th = new LoginThrottle({ perAccount: 2, now: () => t });
 * th.failed("ops", "10.0.0.9");
 * th.failed("ops", "10.0.0.9");
 * if (th.waitMs("ops", "10.0.0.9") === 0) throw new Error("not throttled");
 * if (th.waitMs("ops", "10.0.0.1") !== 0) throw new Error("another address is throttled too");
 * t = 60_001;
 * if (th.waitMs("ops", "10.0.0.9") !== 0) throw new Error("still throttled after a minute");
 * ```
 */
export class LoginThrottle {
  #accounts: FailureTable;
  #addresses: FailureTable;
  #now: () => number;

  /** Creates the throttle. */
  constructor(options: LoginThrottleOptions = {}) {
    const max = options.maxTracked ?? 10_000;
    this.#accounts = new FailureTable(max, options.perAccount ?? 10);
    this.#addresses = new FailureTable(max, options.perAddress ?? 100);
    this.#now = options.now ?? Date.now;
  }

  /** Entries held in both tables (bounded by `2 × maxTracked`). */
  get tracked(): number {
    return this.#accounts.size + this.#addresses.size;
  }

  /** Ms until `account` may try again from `address` (0: now). */
  waitMs(account: string, address: string): number {
    const now = this.#now();
    return Math.max(
      this.#accounts.wait(`${account}@${address}`, now),
      this.#addresses.wait(address, now),
    );
  }

  /** Counts a failed login. */
  failed(account: string, address: string): void {
    const now = this.#now();
    this.#accounts.fail(`${account}@${address}`, now);
    this.#addresses.fail(address, now);
  }
}
