/**
 * Message-ID deduplication, RFC 7252 §4.5: remembers each (endpoint, message ID) seen for
 * EXCHANGE_LIFETIME (Confirmable) or NON_LIFETIME (Non-confirmable), with the bytes of the reply
 * that was sent, so a duplicate Confirmable gets the same reply and is never processed twice.
 * Bounded: past `maxEntries` the oldest entry is evicted.
 *
 * @module
 */

import type { Clock } from "../../core/mod.ts";

/** Tunables of {@link ExchangeCache}. */
export interface ExchangeCacheOptions {
  /** Time source. */
  clock: Clock;
  /** Most entries kept. @default 100000 */
  maxEntries?: number;
}

/** Slots per chunk of the ring (chunks are allocated as the ring first reaches them). */
const CHUNK_BITS = 12;
const CHUNK = 1 << CHUNK_BITS;

/** One chunk of the ring: columns, not an object per entry. */
interface Chunk {
  endpoint: (string | undefined)[];
  mid: Uint16Array;
  expiresAt: Float64Array;
  /** The reply: the buffer it lives in (an encoder slab, shared), its offset and length. */
  replyBuffer: (ArrayBuffer | undefined)[];
  replyOffset: Uint32Array;
  replyLength: Uint32Array;
}

function newChunk(): Chunk {
  return {
    endpoint: new Array(CHUNK).fill(undefined),
    mid: new Uint16Array(CHUNK),
    expiresAt: new Float64Array(CHUNK),
    replyBuffer: new Array(CHUNK).fill(undefined),
    replyOffset: new Uint32Array(CHUNK),
    replyLength: new Uint32Array(CHUNK),
  };
}

/**
 * Remembers recent message IDs per endpoint, in a ring of columns in arrival order (expiry and
 * eviction from its front) indexed by a map per endpoint from message ID to ring slot.
 *
 * Under load the table holds its bound of entries for seconds each, so every entry outlives V8's
 * young generation: as one object per entry (and a view per reply) they were promoted and
 * collected in the old generation, about 5 µs per request at 40k requests/s. Here an entry
 * allocates nothing (the maps hold small integers, the reply is kept as its slab, offset and
 * length), and the ring's chunks are allocated once, as the table first grows.
 *
 * @example
 * ```ts
 * import { FakeClock } from "../../core/clock.ts";
 * import { ExchangeCache } from "./exchange_cache.ts";
 * const clock = new FakeClock();
 * const cache = new ExchangeCache({ clock });
 * const slot = cache.add("127.0.0.1:5000", 7, 1000);
 * cache.setReply(slot, "127.0.0.1:5000", 7, new Uint8Array([0x60, 0x44, 0, 7]));
 * const seen = cache.get("127.0.0.1:5000", 7);
 * if (seen < 0 || cache.reply(seen)?.[3] !== 7) throw new Error("not remembered");
 * clock.tick(1000);
 * if (cache.get("127.0.0.1:5000", 7) >= 0) throw new Error("not forgotten");
 * ```
 */
export class ExchangeCache {
  #byEndpoint = new Map<string, Map<number, number>>();
  #chunks: (Chunk | undefined)[];
  /** Ring capacity (slots). */
  #cap: number;
  /** Ring slots in use: [#head, #head + #used) modulo #cap. */
  #head = 0;
  #used = 0;
  #size = 0;
  #clock: Clock;
  #evicted = 0;

  /** Creates an empty cache. */
  constructor(options: ExchangeCacheOptions) {
    this.#clock = options.clock;
    const max = options.maxEntries ?? 100_000;
    if (!(max >= 1)) throw new RangeError(`Cannot create ExchangeCache: maxEntries ${max} < 1`);
    this.#cap = max;
    this.#chunks = new Array(Math.ceil(max / CHUNK)).fill(undefined);
  }

  /** Entries held now. */
  get size(): number {
    return this.#size;
  }

  /** Entries evicted early because the cache was full. */
  get evicted(): number {
    return this.#evicted;
  }

  /** The slot of a message seen within its lifetime, or -1. */
  get(endpoint: string, messageId: number): number {
    const slot = this.#byEndpoint.get(endpoint)?.get(messageId);
    if (slot === undefined) return -1;
    const c = this.#chunks[slot >> CHUNK_BITS]!;
    return c.expiresAt[slot & (CHUNK - 1)] <= this.#clock.now() ? -1 : slot;
  }

  /** The reply kept in `slot` (from {@link get}), if one was sent. */
  reply(slot: number): Uint8Array | undefined {
    const c = this.#chunks[slot >> CHUNK_BITS];
    const i = slot & (CHUNK - 1);
    const buf = c?.replyBuffer[i];
    return buf && new Uint8Array(buf, c.replyOffset[i], c.replyLength[i]);
  }

  /**
   * Keeps `reply` as the answer to duplicates of the message in `slot` (from {@link add}), unless
   * the slot has since been given to another message (evicted meanwhile).
   */
  setReply(slot: number, endpoint: string, messageId: number, reply: Uint8Array): void {
    const c = this.#chunks[slot >> CHUNK_BITS];
    const i = slot & (CHUNK - 1);
    if (!c || c.endpoint[i] !== endpoint || c.mid[i] !== messageId) return;
    c.replyBuffer[i] = reply.buffer as ArrayBuffer;
    c.replyOffset[i] = reply.byteOffset;
    c.replyLength[i] = reply.byteLength;
  }

  /** Records a newly received message, remembered for `lifetimeMs`; returns its slot. */
  add(endpoint: string, messageId: number, lifetimeMs: number): number {
    const now = this.#clock.now();
    this.#sweep(now);
    let ids = this.#byEndpoint.get(endpoint);
    if (!ids) this.#byEndpoint.set(endpoint, ids = new Map());
    else if (ids.delete(messageId)) this.#size--; // an expired ID being reused
    // The ring is full: its oldest slot goes (a live entry, or one already replaced). The ring
    // holds every live entry, so there is then room for one more.
    if (this.#used === this.#cap && this.#pop()) this.#evicted++;
    const slot = (this.#head + this.#used) % this.#cap;
    this.#used++;
    const k = slot >> CHUNK_BITS;
    const c = this.#chunks[k] ??= newChunk();
    const i = slot & (CHUNK - 1);
    c.endpoint[i] = endpoint;
    c.mid[i] = messageId;
    c.expiresAt[i] = now + lifetimeMs;
    c.replyBuffer[i] = undefined;
    ids.set(messageId, slot);
    this.#size++;
    return slot;
  }

  /** Forgets every entry. */
  clear(): void {
    this.#byEndpoint.clear();
    this.#chunks.fill(undefined);
    this.#head = 0;
    this.#used = 0;
    this.#size = 0;
  }

  /** Frees the oldest slot of the ring; true when it held a live entry. */
  #pop(): boolean {
    const slot = this.#head;
    this.#head = slot + 1 === this.#cap ? 0 : slot + 1;
    this.#used--;
    const c = this.#chunks[slot >> CHUNK_BITS]!;
    const i = slot & (CHUNK - 1);
    const endpoint = c.endpoint[i]!;
    c.endpoint[i] = undefined;
    c.replyBuffer[i] = undefined;
    const ids = this.#byEndpoint.get(endpoint);
    if (ids?.get(c.mid[i]) !== slot) return false; // replaced by a later message with its ID
    ids.delete(c.mid[i]);
    if (ids.size === 0) this.#byEndpoint.delete(endpoint);
    this.#size--;
    return true;
  }

  // Entries are in time order, so expired ones gather at the front (NON entries, which live
  // shorter, may linger behind a CON entry until it expires; get() checks expiry anyway).
  #sweep(now: number): void {
    while (this.#used > 0) {
      const slot = this.#head;
      if (this.#chunks[slot >> CHUNK_BITS]!.expiresAt[slot & (CHUNK - 1)] > now) return;
      this.#pop();
    }
  }
}
