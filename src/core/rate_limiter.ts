/**
 * Token buckets per key (device id): `ratePerSec` tokens refill continuously up to `burst`.
 * Refill is computed lazily on use: no timer per device.
 *
 * @module
 */

/** Tunables of {@link RateLimiter}. */
export interface RateLimiterOptions {
  /** Sustained messages per second per key (0 = unlimited). @default 0 */
  ratePerSec?: number;
  /** Bucket size. @default 2 × ratePerSec */
  burst?: number;
  /** Time source (ms). @default Date.now */
  now?: () => number;
  /** Buckets kept at most; idle full buckets are dropped first. @default 200000 */
  maxKeys?: number;
}

/**
 * Per-key token buckets.
 *
 * @example
 * ```ts
 * import { RateLimiter } from "./rate_limiter.ts";
 * let t = 0;
 * const r = new RateLimiter({ ratePerSec: 1, burst: 2, now: () => t });
 * if (!r.allow("d") || !r.allow("d") || r.allow("d")) throw new Error("burst");
 * t += 1000;
 * if (!r.allow("d")) throw new Error("refill");
 * ```
 */
export class RateLimiter {
  #rate: number;
  #burst: number;
  #now: () => number;
  #max: number;
  #buckets = new Map<string, { tokens: number; at: number }>();

  /** Creates the limiter. */
  constructor(options: RateLimiterOptions = {}) {
    this.#rate = options.ratePerSec ?? 0;
    this.#burst = options.burst ?? Math.max(1, this.#rate * 2);
    this.#now = options.now ?? Date.now;
    this.#max = options.maxKeys ?? 200_000;
  }

  /** True when limiting is on. */
  get enabled(): boolean {
    return this.#rate > 0;
  }

  /** Sustained rate, messages per second (0 = unlimited). */
  get ratePerSec(): number {
    return this.#rate;
  }

  /** Buckets held (full ones are dropped first when `maxKeys` is reached). */
  get size(): number {
    return this.#buckets.size;
  }

  /** Seconds until one token is available for `key` (for Retry-After / Max-Age). */
  retryAfterSec(key: string): number {
    const b = this.#buckets.get(key);
    if (!this.enabled || !b) return 0;
    return Math.max(0, Math.ceil((1 - b.tokens) / this.#rate));
  }

  /** Takes `n` tokens for `key`; false (taking none) when the bucket is short. */
  allow(key: string, n = 1): boolean {
    if (this.#rate <= 0) return true;
    const b = this.#refill(key);
    if (b.tokens < n) return false;
    b.tokens -= n;
    return true;
  }

  /** True when `key` has at least one token (a cheap check before reading a request body). */
  hasToken(key: string): boolean {
    if (this.#rate <= 0) return true;
    const b = this.#buckets.get(key);
    if (!b) return true;
    return Math.min(this.#burst, b.tokens + ((this.#now() - b.at) / 1000) * this.#rate) >= 1;
  }

  /**
   * Charges a batch of `n` messages, at most a full bucket (a batch larger than the burst passes
   * from a full bucket and empties it); otherwise says how long (s) until it would pass.
   */
  take(key: string, n: number): { ok: true } | { ok: false; retryAfterSec: number } {
    if (this.#rate <= 0) return { ok: true };
    const b = this.#refill(key);
    const cost = Math.min(n, this.#burst);
    if (b.tokens < cost) {
      return { ok: false, retryAfterSec: Math.max(1, Math.ceil((cost - b.tokens) / this.#rate)) };
    }
    b.tokens -= cost;
    return { ok: true };
  }

  #refill(key: string): { tokens: number; at: number } {
    const now = this.#now();
    let b = this.#buckets.get(key);
    if (!b) {
      if (this.#buckets.size >= this.#max) this.#evict(now);
      this.#buckets.set(key, b = { tokens: this.#burst, at: now });
    } else {
      b.tokens = Math.min(this.#burst, b.tokens + ((now - b.at) / 1000) * this.#rate);
      b.at = now;
    }
    return b;
  }

  #evict(now: number): void {
    for (const [k, b] of this.#buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.#rate >= this.#burst) this.#buckets.delete(k);
    }
    if (this.#buckets.size >= this.#max) this.#buckets.delete(this.#buckets.keys().next().value!);
  }
}
