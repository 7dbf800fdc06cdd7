/**
 * Message-ID deduplication, RFC 7252 §4.5: remembers each (endpoint, message ID) seen for
 * EXCHANGE_LIFETIME (Confirmable) or NON_LIFETIME (Non-confirmable), with the bytes of the reply
 * that was sent, so a duplicate Confirmable gets the same reply and is never processed twice.
 * Bounded: past `maxEntries` the oldest entry is evicted.
 *
 * @module
 */

import type { Clock } from "../../core/mod.ts";

/** What is remembered of one received message. */
export interface ExchangeEntry {
  /** Absolute expiry (clock ms). */
  expiresAt: number;
  /** The reply sent (ACK with piggybacked response, empty ACK, ...), once there is one. */
  reply?: Uint8Array;
  /** True while the request is being processed and no reply was sent yet. */
  processing: boolean;
}

/** Tunables of {@link ExchangeCache}. */
export interface ExchangeCacheOptions {
  /** Time source. */
  clock: Clock;
  /** Most entries kept. @default 100000 */
  maxEntries?: number;
}

/**
 * Remembers recent message IDs per endpoint.
 *
 * @example
 * ```ts
 * import { FakeClock } from "../../core/clock.ts";
 * import { ExchangeCache } from "./exchange_cache.ts";
 * const clock = new FakeClock();
 * const cache = new ExchangeCache({ clock });
 * cache.add("127.0.0.1:5000", 7, 1000);
 * if (!cache.get("127.0.0.1:5000", 7)) throw new Error("not remembered");
 * clock.tick(1000);
 * if (cache.get("127.0.0.1:5000", 7)) throw new Error("not forgotten");
 * ```
 */
export class ExchangeCache {
  #entries = new Map<string, ExchangeEntry>();
  #clock: Clock;
  #max: number;
  #evicted = 0;

  /** Creates an empty cache. */
  constructor(options: ExchangeCacheOptions) {
    this.#clock = options.clock;
    this.#max = options.maxEntries ?? 100_000;
  }

  /** Entries held now. */
  get size(): number {
    return this.#entries.size;
  }

  /** Entries evicted early because the cache was full. */
  get evicted(): number {
    return this.#evicted;
  }

  /** The live entry of a message, if it was seen within its lifetime. */
  get(endpoint: string, messageId: number): ExchangeEntry | undefined {
    const e = this.#entries.get(`${endpoint}#${messageId}`);
    if (e && e.expiresAt <= this.#clock.now()) return undefined;
    return e;
  }

  /** Records a newly received message, remembered for `lifetimeMs`. */
  add(endpoint: string, messageId: number, lifetimeMs: number): ExchangeEntry {
    const now = this.#clock.now();
    this.#sweep(now);
    const key = `${endpoint}#${messageId}`;
    this.#entries.delete(key); // re-insert at the back (an expired MID being reused)
    if (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) {
        this.#entries.delete(oldest);
        this.#evicted++;
      }
    }
    const entry: ExchangeEntry = { expiresAt: now + lifetimeMs, processing: true };
    this.#entries.set(key, entry);
    return entry;
  }

  /** Forgets every entry. */
  clear(): void {
    this.#entries.clear();
  }

  // Entries are inserted in time order, so expired ones gather at the front (NON entries, which
  // live shorter, may linger behind a CON entry until it expires; get() checks expiry anyway).
  #sweep(now: number): void {
    for (const [k, e] of this.#entries) {
      if (e.expiresAt > now) break;
      this.#entries.delete(k);
    }
  }
}
