/**
 * A token bucket on the injected clock, pacing the northbound replay: tokens accrue at
 * `ratePerSec` up to `burst`; sending a message spends one.
 *
 * @module
 */

import { type Clock, systemClock } from "../core/clock.ts";

/** Tunables of {@link TokenBucket}. */
export interface TokenBucketOptions {
  /** Tokens per second; 0 means unlimited. */
  ratePerSec: number;
  /** Largest number of tokens held. @default ratePerSec / 10, at least 1 */
  burst?: number;
  /** Time source. @default systemClock */
  clock?: Clock;
}

/**
 * Paces work to a rate.
 *
 * @example
 * ```ts
 * import { TokenBucket } from "./token_bucket.ts";
 * import { FakeClock } from "../core/clock.ts";
 * const clock = new FakeClock();
 * const b = new TokenBucket({ ratePerSec: 100, burst: 10, clock });
 * if (b.available() !== 10) throw new Error("starts full");
 * b.spend(10);
 * if (b.available() !== 0 || b.msUntil(1) !== 10) throw new Error("empty");
 * clock.tick(50);
 * if (b.available() !== 5) throw new Error("refills at the rate");
 * ```
 */
export class TokenBucket {
  #rate: number;
  #burst: number;
  #clock: Clock;
  #tokens: number;
  #at: number;

  /** Creates a full bucket. */
  constructor(options: TokenBucketOptions) {
    if (!(options.ratePerSec >= 0)) {
      throw new RangeError(`Cannot create token bucket: ratePerSec must be >= 0`);
    }
    this.#rate = options.ratePerSec;
    this.#burst = Math.max(1, options.burst ?? Math.ceil(options.ratePerSec / 10));
    this.#clock = options.clock ?? systemClock;
    this.#tokens = this.#burst;
    this.#at = this.#clock.now();
  }

  /** True when the bucket does not limit. */
  get unlimited(): boolean {
    return this.#rate === 0;
  }

  #refill(): void {
    const now = this.#clock.now();
    if (now > this.#at) {
      this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#at) * this.#rate / 1000);
    }
    this.#at = now;
  }

  /** Whole tokens available now (`Infinity` when unlimited). */
  available(): number {
    if (this.#rate === 0) return Infinity;
    this.#refill();
    return Math.max(0, Math.floor(this.#tokens));
  }

  /** Spends `n` tokens (may go negative: the debt is paid before more are available). */
  spend(n: number): void {
    if (this.#rate === 0) return;
    this.#refill();
    this.#tokens -= n;
  }

  /** Milliseconds until `n` tokens are available (0 if they are). */
  msUntil(n = 1): number {
    if (this.#rate === 0) return 0;
    this.#refill();
    const missing = n - this.#tokens;
    return missing <= 0 ? 0 : Math.ceil(missing * 1000 / this.#rate);
  }
}
