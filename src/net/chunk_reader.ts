/**
 * How every stream protocol (FBP/1, MQTT over TCP and over WebSocket) reads its socket: one small
 * `conn.read` pending while a connection is idle, a buffer that grows while reads fill it and
 * shrinks when they come back small (reused when the consumer kept no view of it), and each read's
 * bytes handed straight to the consumer's synchronous parser, which decodes and handles the whole
 * read in one step ({@link serveChunks}).
 *
 * Not a `ReadableStream` piped through the codec's `TransformStream`, which the brief asks for:
 * measured on Deno 2.9.6, a stream step per read cost MQTT 0.4–1 µs more per packet at 100
 * publishers, and FBP/1 (1,000 devices, one frame per read) about three times the CPU per frame
 * with the garbage collector at 36% of the profile; an idle connection holding a stream pair costs
 * ~12 KB more RSS. The codecs still are `TransformStream`s (`ParserStream`), used where one
 * connection does not pay for thousands: the FBP/1 device client reads through `FrameDecoder`.
 * `docs/architecture.md` has the measurements.
 *
 * @module
 */

import { isClosedError } from "./closed_error.ts";

/** Anything with a `read(buf)` like `Deno.Conn`. */
export interface ByteReader {
  /** Reads into `p`; resolves to the count read or `null` at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
  /**
   * Bytes the last read took from the socket into `p`, when the reader unframes them and returns
   * fewer (a WebSocket): what sizes the next read buffer. Absent: the count `read` returned.
   */
  readonly lastReadSize?: number;
}

/** Tunables of {@link serveChunks} (one object may serve every connection). */
export interface ReadOptions {
  /** Read buffer while idle, bytes. @default 64 */
  minBuffer?: number;
  /** Largest read buffer while reads keep filling it, bytes. @default 16384 */
  maxBuffer?: number;
}

/**
 * The side of a connection that takes each read's bytes as they come (typically the connection
 * itself: methods, not closures).
 */
export interface ChunkConsumer {
  /**
   * Decodes and handles one read's bytes, in order. A promise only when it must wait (the core is
   * full): reading stops until it settles. Throwing (or rejecting) ends the connection.
   */
  chunk(bytes: Uint8Array): Promise<void> | void;
  /** True once no more bytes are wanted (the connection is closing). */
  readonly closing?: boolean;
  /** Called with the byte count of each read. */
  onBytes?(n: number): void;
  /**
   * After `chunk` returned (and its promise, if any, settled): whether anything may still hold a view of the bytes
   * it was given. When it says no, the next read of the same size reuses the buffer (a consumer
   * without this method gets a fresh buffer per read).
   */
  keepsChunk?(): boolean;
  /** Called once when reading has ended, with the error that ended it, if any. */
  end?(error?: unknown): void | Promise<void>;
}

/** The next read buffer size: grow while reads fill it, shrink when they come back small. */
function nextSize(size: number, n: number, min: number, max: number): number {
  if (n >= size && size < max) return Math.min(max, size * 4);
  if (n < size / 8 && size > min) return Math.max(min, size / 4);
  return size;
}

/**
 * Idle-size read buffers, cut from shared slabs. An idle connection's pending read holds one: a
 * view into a slab rather than an `ArrayBuffer` of its own, which the runtime must move off the V8
 * heap (a backing store and a small allocation per connection) when the read starts. A slot goes
 * back as soon as its read completed: its bytes are copied out first (at most `minBuffer` of them),
 * so no view of a slot outlives the read and a slab is never pinned by a kept message.
 */
const SLAB_SLOTS = 256;
const freeSlots = new Map<number, Uint8Array[]>();

function takeSlot(size: number): Uint8Array {
  let free = freeSlots.get(size);
  if (free === undefined) freeSlots.set(size, free = []);
  if (free.length === 0) {
    const slab = new ArrayBuffer(size * SLAB_SLOTS);
    for (let i = SLAB_SLOTS - 1; i >= 0; i--) free.push(new Uint8Array(slab, i * size, size));
  }
  return free.pop()!;
}

function giveSlot(slot: Uint8Array): void {
  freeSlots.get(slot.length)!.push(slot);
}

/**
 * Reads `conn` until it ends (or `consumer.closing`), handing each read's bytes to
 * `consumer.chunk` and waiting only when it returns a promise; `consumer.end` runs last (it is
 * how the caller learns that reading is over). Without an `end`, an unexpected error is thrown
 * out of a promise callback (an unhandled rejection).
 *
 * Written with promise callbacks rather than as an `async` loop: a suspended async function keeps
 * its generator object and every register of its frame for as long as the connection is idle,
 * which measured ~0.5 KB of heap per idle connection (see docs/architecture.md); this keeps one
 * small object and the callbacks of the one pending read.
 *
 * @example
 * ```ts
 * import { serveChunks } from "./chunk_reader.ts";
 * const data = [new Uint8Array([1, 2]), new Uint8Array([3])];
 * const conn = { read: (p: Uint8Array) => {
 *   const d = data.shift(); if (!d) return Promise.resolve(null);
 *   p.set(d); return Promise.resolve(d.length);
 * } };
 * const seen: number[] = [];
 * const { promise, resolve } = Promise.withResolvers<void>();
 * serveChunks(conn, { chunk: (b) => void seen.push(...b), end: resolve });
 * await promise;
 * if (seen.join() !== "1,2,3") throw new Error(seen.join());
 * ```
 */
export function serveChunks(
  conn: ByteReader,
  consumer: ChunkConsumer,
  options: ReadOptions = {},
): void {
  new ChunkReader(conn, consumer, options.minBuffer ?? 64, options.maxBuffer ?? 16384).next();
}

/** The state of one connection's reading (see {@link serveChunks}). */
class ChunkReader {
  #conn: ByteReader;
  #consumer: ChunkConsumer;
  #min: number;
  #max: number;
  #size: number;
  // A buffer whose bytes nobody holds any more: the next read of its size goes into it. (A fresh
  // 16 KB buffer per read was most of the garbage of a busy connection: every read's buffer lives
  // across the wait for data, so the young generation promoted them all.)
  #spare: Uint8Array | undefined;

  constructor(conn: ByteReader, consumer: ChunkConsumer, min: number, max: number) {
    this.#conn = conn;
    this.#consumer = consumer;
    this.#min = min;
    this.#max = max;
    this.#size = min;
  }

  /** Starts the next read (or ends, once the consumer is closing). */
  next(): void {
    if (this.#consumer.closing) return this.#end();
    const size = this.#size;
    if (size === this.#min && this.#consumer.keepsChunk) return this.#read(takeSlot(size), true);
    const spare = this.#spare;
    // The spare serves a read of its size, or of a somewhat smaller one while reads are busy
    // (sizes swing between neighbours as reads fill the buffer or not; a fresh buffer at each
    // swing was a fifth of a busy FBP/1 connection's garbage). A read back at the minimum size
    // gets a minimum buffer: that is what an idle connection holds.
    const buf = spare !== undefined &&
        (spare.length === size ||
          (size > this.#min && spare.length > size && spare.length <= size * 4))
      ? spare
      : new Uint8Array(size);
    this.#spare = undefined;
    this.#read(buf, false);
  }

  #read(buf: Uint8Array, slot: boolean): void {
    let read: Promise<number | null>;
    try {
      read = this.#conn.read(buf);
    } catch (err) {
      if (slot) giveSlot(buf);
      return this.#failed(err);
    }
    if (!slot) read.then((n) => this.#got(buf, n), (err) => this.#failed(err));
    else {
      read.then((n) => {
        // Copied out, the slot free again: no view of it outlives this read.
        const bytes = n === null ? buf : buf.slice(0, n);
        giveSlot(buf);
        this.#got(bytes, n, true);
      }, (err) => {
        giveSlot(buf);
        this.#failed(err);
      });
    }
  }

  /** A read completed with `n` bytes (null: the stream ended); `copied`: `buf` is the bytes alone. */
  #got(buf: Uint8Array, n: number | null, copied = false): void {
    const consumer = this.#consumer;
    if (n === null || consumer.closing) return this.#end();
    let pending: Promise<void> | void;
    try {
      consumer.onBytes?.(n);
      this.#size = nextSize(this.#size, this.#conn.lastReadSize ?? n, this.#min, this.#max);
      pending = consumer.chunk(n === buf.length ? buf : buf.subarray(0, n));
    } catch (err) {
      return this.#end(err);
    }
    if (pending) {
      pending.then(() => copied ? this.next() : this.#handled(buf), (err) => this.#end(err));
      return;
    }
    if (copied) this.next();
    else this.#handled(buf);
  }

  /** The read in `buf` was handled: its buffer takes the next read unless a view of it is kept. */
  #handled(buf: Uint8Array): void {
    if (this.#consumer.keepsChunk?.() === false) this.#spare = buf;
    this.next();
  }

  /** A read failed: a closed socket ends quietly, anything else ends with the error. */
  #failed(err: unknown): void {
    if (isClosedError(err)) this.#end();
    else this.#end(err);
  }

  #end(error?: unknown): void {
    const end = this.#consumer.end;
    if (!end) {
      if (error !== undefined) throw error;
      return;
    }
    try {
      const done = end.call(this.#consumer, error);
      if (done) done.catch(rethrow);
    } catch (err) {
      rethrow(err);
    }
  }
}

/** Lets an error escape as an unhandled rejection (a bug: the process reports it). */
function rethrow(err: unknown): void {
  queueMicrotask(() => {
    throw err;
  });
}
