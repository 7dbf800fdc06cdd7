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

import { FailureWindow } from "../../core/mod.ts";

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
  #accounts: FailureWindow;
  #addresses: FailureWindow;
  #now: () => number;

  /** Creates the throttle. */
  constructor(options: LoginThrottleOptions = {}) {
    const max = options.maxTracked ?? 10_000;
    this.#accounts = new FailureWindow(options.perAccount ?? 10, max);
    this.#addresses = new FailureWindow(options.perAddress ?? 100, max);
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
      this.#accounts.waitMs(`${account}@${address}`, now),
      this.#addresses.waitMs(address, now),
    );
  }

  /** Counts a failed login. */
  failed(account: string, address: string): void {
    const now = this.#now();
    this.#accounts.fail(`${account}@${address}`, now);
    this.#addresses.fail(address, now);
  }
}
