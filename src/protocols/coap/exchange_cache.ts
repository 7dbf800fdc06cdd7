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

interface Slot extends ExchangeEntry {
  endpoint: string;
  mid: number;
}

/**
 * Remembers recent message IDs per endpoint: a map per endpoint keyed by the numeric ID (no key
 * string per datagram), and one queue in arrival order for expiry and eviction (no iteration over
 * a Map's deleted entries).
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
  #byEndpoint = new Map<string, Map<number, Slot>>();
  #queue: Slot[] = [];
  #head = 0;
  #size = 0;
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
    return this.#size;
  }

  /** Entries evicted early because the cache was full. */
  get evicted(): number {
    return this.#evicted;
  }

  /** The live entry of a message, if it was seen within its lifetime. */
  get(endpoint: string, messageId: number): ExchangeEntry | undefined {
    const e = this.#byEndpoint.get(endpoint)?.get(messageId);
    if (e && e.expiresAt <= this.#clock.now()) return undefined;
    return e;
  }

  /** Records a newly received message, remembered for `lifetimeMs`. */
  add(endpoint: string, messageId: number, lifetimeMs: number): ExchangeEntry {
    const now = this.#clock.now();
    this.#sweep(now);
    let ids = this.#byEndpoint.get(endpoint);
    if (!ids) this.#byEndpoint.set(endpoint, ids = new Map());
    else if (ids.delete(messageId)) this.#size--; // an expired ID being reused
    if (this.#size >= this.#max && this.#evictOldest()) this.#evicted++;
    const slot: Slot = { expiresAt: now + lifetimeMs, processing: true, endpoint, mid: messageId };
    ids.set(messageId, slot);
    this.#size++;
    this.#queue.push(slot);
    return slot;
  }

  /** Forgets every entry. */
  clear(): void {
    this.#byEndpoint.clear();
    this.#queue = [];
    this.#head = 0;
    this.#size = 0;
  }

  /** Removes the oldest live entry; false when there is none. */
  #evictOldest(): boolean {
    const q = this.#queue;
    while (this.#head < q.length) {
      const slot = q[this.#head++];
      if (this.#remove(slot)) {
        this.#compact();
        return true;
      }
    }
    this.#compact();
    return false;
  }

  /** Forgets `slot` if it is still the entry of its ID. */
  #remove(slot: Slot): boolean {
    const ids = this.#byEndpoint.get(slot.endpoint);
    if (ids?.get(slot.mid) !== slot) return false;
    ids.delete(slot.mid);
    if (ids.size === 0) this.#byEndpoint.delete(slot.endpoint);
    this.#size--;
    return true;
  }

  // Entries are queued in time order, so expired ones gather at the front (NON entries, which
  // live shorter, may linger behind a CON entry until it expires; get() checks expiry anyway).
  #sweep(now: number): void {
    const q = this.#queue;
    while (this.#head < q.length && q[this.#head].expiresAt <= now) {
      this.#remove(q[this.#head++]);
    }
    this.#compact();
  }

  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }
}
