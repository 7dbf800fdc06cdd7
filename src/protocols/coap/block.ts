/**
 * Block-wise transfers, RFC 7959: the Block1/Block2 option value (§2.2) and a bounded reassembly
 * buffer for Block1 uploads (§2.5), whose entries expire after a time limit.
 *
 * @module
 */

import { type Clock, ownBytes, type TimerHandle } from "../../core/mod.ts";

/** A decoded Block1/Block2 value, RFC 7959 §2.2. */
export interface BlockValue {
  /** Block number. */
  num: number;
  /** More blocks follow. */
  more: boolean;
  /** Size exponent: the block size is 2^(szx+4). */
  szx: number;
}

/** Block size in bytes for an exponent, RFC 7959 §2.2. */
export function blockSize(szx: number): number {
  return 1 << (szx + 4);
}

/** Largest exponent whose block size is at most `bytes` (16..1024). */
export function szxFor(bytes: number): number {
  let szx = 0;
  while (szx < 6 && blockSize(szx + 1) <= bytes) szx++;
  return szx;
}

/**
 * Decodes a Block option value. Returns undefined for SZX 7, which is reserved (RFC 7959 §2.2:
 * "MUST NOT be sent and MUST lead to a 4.00 Bad Request response").
 *
 * @example
 * ```ts
 * import { decodeBlock, encodeBlock } from "./block.ts";
 * const v = decodeBlock(encodeBlock({ num: 3, more: true, szx: 2 }));
 * if (!v || v.num !== 3 || !v.more || v.szx !== 2) throw new Error();
 * ```
 */
export function decodeBlock(value: Uint8Array): BlockValue | undefined {
  let n = 0;
  for (const b of value) n = n * 256 + b;
  const szx = n & 7;
  if (szx === 7) return undefined;
  return { num: Math.floor(n / 16), more: (n & 8) !== 0, szx };
}

/** Encodes a Block option value as a minimal uint (RFC 7959 §2.2). */
export function encodeBlock(v: BlockValue): Uint8Array {
  const n = v.num * 16 + (v.more ? 8 : 0) + v.szx;
  const bytes: number[] = [];
  for (let x = n; x > 0; x = Math.floor(x / 256)) bytes.unshift(x % 256);
  return new Uint8Array(bytes);
}

/** Result of offering one Block1 block. */
export type Block1Result =
  | { kind: "continue" } // store it, answer 2.31 Continue
  | { kind: "complete"; body: Uint8Array } // last block: process the whole body
  | { kind: "incomplete" } // out of order or unknown transfer: 4.08
  | { kind: "too_large" } // over the size cap: 4.13 with Size1
  | { kind: "busy" }; // too many transfers at once: 5.03

/** Tunables of {@link Block1Assembler}. */
export interface Block1AssemblerOptions {
  /** Time source. */
  clock: Clock;
  /** Largest reassembled body. */
  maxBodySize: number;
  /** A transfer idle this long is dropped. */
  timeoutMs: number;
  /** Transfers in progress at once. */
  maxTransfers: number;
}

interface Transfer {
  parts: Uint8Array[];
  size: number;
  next: number;
  szx: number;
  timer: TimerHandle;
}

/**
 * Reassembles Block1 uploads keyed by (endpoint, request target), RFC 7959 §2.5, within bounds of
 * size, time and number of transfers.
 *
 * @example
 * ```ts
 * import { FakeClock } from "../../core/clock.ts";
 * import { Block1Assembler } from "./block.ts";
 * const a = new Block1Assembler({
 *   clock: new FakeClock(), maxBodySize: 100, timeoutMs: 1000, maxTransfers: 4,
 * });
 * a.offer("k", { num: 0, more: true, szx: 0 }, new Uint8Array(16));
 * const r = a.offer("k", { num: 1, more: false, szx: 0 }, new Uint8Array(5));
 * if (r.kind !== "complete" || r.body.length !== 21) throw new Error();
 * a.close();
 * ```
 */
export class Block1Assembler {
  #opts: Block1AssemblerOptions;
  #transfers = new Map<string, Transfer>();

  /** Creates an assembler. */
  constructor(options: Block1AssemblerOptions) {
    this.#opts = options;
  }

  /** Transfers in progress. */
  get size(): number {
    return this.#transfers.size;
  }

  /** Takes one block of the transfer `key`. */
  offer(key: string, block: BlockValue, data: Uint8Array): Block1Result {
    const { clock } = this.#opts;
    let t = this.#transfers.get(key);
    if (block.num === 0) {
      if (t) this.#drop(key);
      t = undefined;
    }
    if (!t) {
      // RFC 7959 §2.9.2: a block that does not start or continue a known transfer → 4.08.
      if (block.num !== 0) return { kind: "incomplete" };
      if (!block.more) return { kind: "complete", body: data };
      if (this.#transfers.size >= this.#opts.maxTransfers) return { kind: "busy" };
      t = { parts: [], size: 0, next: 0, szx: block.szx, timer: 0 };
      this.#transfers.set(key, t);
    } else {
      clock.clearTimeout(t.timer);
    }
    // RFC 7959 §2.5: blocks carry size 2^(szx+4) except the last; a client may lower szx midway,
    // so the byte offset is num × size and must match what was received.
    const offset = block.num * blockSize(block.szx);
    if (offset !== t.size || (block.more && data.length !== blockSize(block.szx))) {
      this.#drop(key);
      return { kind: "incomplete" };
    }
    if (t.size + data.length > this.#opts.maxBodySize) {
      this.#drop(key);
      return { kind: "too_large" };
    }
    t.parts.push(ownBytes(data)); // not a view pinning a received datagram's slab
    t.size += data.length;
    t.next = block.num + 1;
    if (!block.more) {
      this.#drop(key);
      const body = new Uint8Array(t.size);
      let o = 0;
      for (const p of t.parts) {
        body.set(p, o);
        o += p.length;
      }
      return { kind: "complete", body };
    }
    const tr = t;
    tr.timer = clock.setTimeout(() => {
      if (this.#transfers.get(key) === tr) this.#transfers.delete(key);
    }, this.#opts.timeoutMs);
    return { kind: "continue" };
  }

  #drop(key: string): void {
    const t = this.#transfers.get(key);
    if (!t) return;
    this.#opts.clock.clearTimeout(t.timer);
    this.#transfers.delete(key);
  }

  /** Drops every transfer and its timer. */
  close(): void {
    for (const k of [...this.#transfers.keys()]) this.#drop(k);
  }
}
