/**
 * Per-device rate limiting: one token bucket per device (`ratePerSec` tokens a second up to
 * `burst`), a message costs one token, a batch of n costs `min(n, burst)` so a batch larger than
 * the bucket is possible only from a full bucket. The map of buckets is bounded: full buckets
 * carry no state and are swept when it grows past `maxDevices`.
 *
 * @module
 */

/** Tunables of {@link TokenBuckets}. */
export interface TokenBucketsOptions {
  /** Tokens added per second. */
  ratePerSec: number;
  /** Bucket size. */
  burst: number;
  /** Time source (ms). */
  now: () => number;
  /** Buckets kept before full ones are swept. @default 100000 */
  maxDevices?: number;
}

/** Outcome of {@link TokenBuckets.take}. */
export type TakeResult = { ok: true } | { ok: false; retryAfterSec: number };

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Token buckets keyed by device id.
 *
 * @example
 * ```ts
 * import { TokenBuckets } from "./token_bucket.ts";
 * let t = 0;
 * const b = new TokenBuckets({ ratePerSec: 2, burst: 2, now: () => t });
 * if (!b.take("d", 2).ok) throw new Error();
 * const r = b.take("d", 1);
 * if (r.ok || r.retryAfterSec !== 1) throw new Error();
 * t += 500;
 * if (!b.take("d", 1).ok) throw new Error("not refilled");
 * ```
 */
export class TokenBuckets {
  #rate: number;
  #burst: number;
  #now: () => number;
  #max: number;
  #buckets = new Map<string, Bucket>();

  /** Creates empty (that is, full) buckets. */
  constructor(options: TokenBucketsOptions) {
    if (!(options.ratePerSec > 0) || !(options.burst >= 1)) {
      throw new RangeError(
        `Cannot create token buckets: rate ${options.ratePerSec}/s and burst ${options.burst} must be positive`,
      );
    }
    this.#rate = options.ratePerSec;
    this.#burst = options.burst;
    this.#now = options.now;
    this.#max = options.maxDevices ?? 100_000;
  }

  /** Devices with a bucket that is not full. */
  get size(): number {
    return this.#buckets.size;
  }

  #level(id: string, now: number): number {
    const b = this.#buckets.get(id);
    if (!b) return this.#burst;
    return Math.min(this.#burst, b.tokens + ((now - b.at) / 1000) * this.#rate);
  }

  /** True when device `id` has at least one token (a cheap check before reading a body). */
  hasToken(id: string): boolean {
    return this.#level(id, this.#now()) >= 1;
  }

  /** Takes the cost of `n` messages, or says how long (s) until they would pass. */
  take(id: string, n: number): TakeResult {
    const now = this.#now();
    const cost = Math.min(n, this.#burst);
    const level = this.#level(id, now);
    if (level < cost) {
      return { ok: false, retryAfterSec: Math.max(1, Math.ceil((cost - level) / this.#rate)) };
    }
    this.#buckets.set(id, { tokens: level - cost, at: now });
    if (this.#buckets.size > this.#max) this.#sweep(now);
    return { ok: true };
  }

  #sweep(now: number): void {
    for (const [id] of this.#buckets) {
      if (this.#level(id, now) >= this.#burst) this.#buckets.delete(id);
    }
  }
}
