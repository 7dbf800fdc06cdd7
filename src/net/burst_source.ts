/**
 * How every stream protocol reads its socket: one small `conn.read` pending while a connection is
 * idle, a buffer that grows while reads fill it and shrinks when they come back small, and the
 * bytes handed on in one of two ways.
 *
 * - {@link serveBursts}: web-streams reading. Between bursts of
 * traffic only one small `conn.read` is pending. When bytes arrive, a pull-based
 * `ReadableStream` (high-water mark 0: nothing is read until the consumer asks, which is the
 * backpressure) is built and handed to the consumer, which pipes it through its codec
 * `TransformStream`. After `idleMs` without data, and when the codec holds no partial frame
 * (`canIdle()`), the stream ends and its objects are dropped; the next byte starts a new burst.
 *
 * Measured on Deno 2.9.6 (see the benchmark): an idle FBP/1 connection served this way costs
 * about 6 KB of RSS (3.7 KB of V8 heap, most of it Deno's socket and pending read); a live
 * ReadableStream + TransformStream pair costs ~12 KB more, which only connections with traffic
 * pay. The consumer is an object with methods (usually the session), not closures, so an idle
 * connection holds one small async frame and one pending read. FBP/1 reads this way.
 * - {@link serveChunks}: each read's bytes go straight to the consumer's synchronous parser, and
 *   the whole read is decoded and handled in one step. MQTT reads this way: measured at 100
 *   publishers and ~175 packets per read, a stream step between reading and handling costs
 *   0.4–1 µs more per packet, because Deno completes many reads in one event-loop turn and the
 *   stream's microtask hops then keep every connection's decoded batch alive at once, which each
 *   young-generation GC has to copy (with one connection the two cost the same; see
 *   `docs/architecture.md`).
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

/**
 * The consuming side of a connection (typically the session object itself: methods, not closures,
 * so an idle connection holds nothing but its one pending read).
 */
export interface BurstConsumer<T> {
  /** A fresh codec for a burst (its state may live in the consumer, across bursts). */
  codec(): TransformStream<Uint8Array, T>;
  /** Consumes one burst's decoded values to the end. */
  consume(values: ReadableStream<T>): Promise<void>;
  /** Whether the burst may end now (no partial frame buffered). */
  canIdle(): boolean;
  /** Called with the byte count of each read. */
  onBytes?(n: number): void;
  /**
   * Runs once before the first burst, reading `conn` itself (a handshake without streams);
   * resolving false ends the connection.
   */
  start?(): Promise<boolean>;
  /** Called once when reading has ended, with the error that ended it, if any. */
  end?(error?: unknown): void | Promise<void>;
}

/** Tunables of {@link serveBursts} (one object may serve every connection). */
export interface BurstOptions {
  /** A burst ends after this long without data. @default 2000 */
  idleMs?: number;
  /** Read buffer while idle, bytes. @default 64 */
  minBuffer?: number;
  /** Largest read buffer during a burst, bytes. @default 16384 */
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
  if (n === size && size < max) return Math.min(max, size * 4);
  if (n < size / 8 && size > min) return Math.max(min, size / 4);
  return size;
}

/**
 * Reads `conn` until it ends (or `consumer.closing`), handing each read's bytes to
 * `consumer.chunk` and waiting only when it returns a promise. `consumer.end` runs last; resolves
 * once it has. Without an `end`, an unexpected error rejects.
 *
 * @example
 * ```ts
 * import { serveChunks } from "./burst_source.ts";
 * const data = [new Uint8Array([1, 2]), new Uint8Array([3])];
 * const conn = { read: (p: Uint8Array) => {
 *   const d = data.shift(); if (!d) return Promise.resolve(null);
 *   p.set(d); return Promise.resolve(d.length);
 * } };
 * const seen: number[] = [];
 * await serveChunks(conn, { chunk: (b) => void seen.push(...b) });
 * if (seen.join() !== "1,2,3") throw new Error(seen.join());
 * ```
 */
export async function serveChunks(
  conn: ByteReader,
  consumer: ChunkConsumer,
  options: BurstOptions = {},
): Promise<void> {
  let error: unknown;
  try {
    const min = options.minBuffer ?? 64;
    const max = options.maxBuffer ?? 16384;
    let size = min;
    // A buffer whose bytes nobody holds any more: the next read of its size goes into it. (A
    // fresh 16 KB buffer per read was most of the garbage of a busy connection: every read's
    // buffer lives across the wait for data, so the young generation promoted them all.)
    let spare: Uint8Array | undefined;
    while (!consumer.closing) {
      const buf = spare !== undefined && spare.length === size ? spare : new Uint8Array(size);
      spare = undefined;
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch (err) {
        if (isClosedError(err)) return;
        throw err;
      }
      if (n === null || consumer.closing) return;
      consumer.onBytes?.(n);
      size = nextSize(size, conn.lastReadSize ?? n, min, max);
      const pending = consumer.chunk(n === buf.length ? buf : buf.subarray(0, n));
      if (pending) await pending; // (held back: the same question once it has been handled)
      if (consumer.keepsChunk?.() === false) spare = buf;
    }
  } catch (err) {
    if (!consumer.end) throw err;
    error = err;
  } finally {
    await consumer.end?.(error);
  }
}

/** A read in flight: its buffer and the promise of its byte count. */
interface Read {
  buf: Uint8Array;
  n: Promise<number | null>;
}

/**
 * Reads `conn` until it ends. Each burst of traffic gets a fresh codec from `consumer.codec()`;
 * the bytes read are written into its writable side (waiting on the writer's ready signal: a
 * consumer that does not read stops socket reads), and `consumer.consume` takes its readable side
 * to the end. A burst ends after `idleMs` without data when `consumer.canIdle()`. Between bursts
 * this function's small frame and one read are all a connection holds. `consumer.start` runs
 * first and `consumer.end` last; resolves once `end` has. Without an `end`, an unexpected read
 * error rejects.
 *
 * @example
 * ```ts
 * import { serveBursts } from "./burst_source.ts";
 * const data = [new Uint8Array([1, 2]), new Uint8Array([3])];
 * const conn = { read: (p: Uint8Array) => {
 *   const d = data.shift(); if (!d) return Promise.resolve(null);
 *   p.set(d); return Promise.resolve(d.length);
 * } };
 * const seen: number[] = [];
 * await serveBursts(conn, {
 *   codec: () => new TransformStream<Uint8Array, Uint8Array>(),
 *   consume: async (s) => { for await (const c of s) seen.push(...c); },
 *   canIdle: () => true,
 * });
 * if (seen.join() !== "1,2,3") throw new Error(seen.join());
 * ```
 */
export async function serveBursts<T>(
  conn: ByteReader,
  consumer: BurstConsumer<T>,
  options: BurstOptions = {},
): Promise<void> {
  let error: unknown;
  try {
    if (consumer.start && !await consumer.start()) return;
    let read: Read | null = null; // a read that outlived its burst: its bytes start the next one
    for (;;) {
      const buf: Uint8Array = read ? read.buf : new Uint8Array(options.minBuffer ?? 64);
      let n: number | null;
      try {
        n = await (read ? read.n : conn.read(buf));
      } catch (err) {
        if (isClosedError(err)) return;
        throw err;
      }
      if (n === null) return;
      consumer.onBytes?.(n);
      read = await burst(conn, consumer, options, n === buf.length ? buf : buf.subarray(0, n));
      if (read === null) return;
    }
  } catch (err) {
    if (!consumer.end) throw err;
    error = err;
  } finally {
    await consumer.end?.(error);
  }
}

/**
 * Serves one burst starting with `first`; returns the read still in flight when the burst went
 * idle, or null when the connection ended or the consumer stopped.
 */
async function burst<T>(
  conn: ByteReader,
  consumer: BurstConsumer<T>,
  options: BurstOptions,
  first: Uint8Array,
): Promise<Read | null> {
  const idleMs = options.idleMs ?? 2000;
  const min = options.minBuffer ?? 64;
  const max = options.maxBuffer ?? 16384;
  let size = first.length < min ? min : Math.min(max, first.length * 4); // data is coming: grow
  const { readable, writable } = consumer.codec();
  const writer = writable.getWriter();
  const consumed = consumer.consume(readable);
  let cancelled = false;
  writer.closed.catch(() => cancelled = true); // the consumer cancelled: stop reading
  // One idle timer per burst, re-armed from the time of the last data (not a timer per read).
  let lastData = Date.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let idleFired: (() => void) | undefined;
  const arm = (ms: number) => {
    timer = setTimeout(() => {
      const quiet = Date.now() - lastData;
      if (quiet < idleMs) arm(idleMs - quiet);
      else if (idleFired) idleFired();
      else arm(idleMs); // busy (e.g. waiting on backpressure): look again later
    }, ms);
  };
  arm(idleMs);
  let rest: Read | null = null;
  try {
    let chunk: Uint8Array | null = first;
    while (chunk) {
      await writer.ready;
      if (cancelled) break;
      writer.write(chunk).catch(() => cancelled = true);
      const buf = new Uint8Array(size);
      const next: Read = { buf, n: conn.read(buf) };
      chunk = null;
      for (;;) {
        const idle = new Promise<"idle">((r) => idleFired = () => r("idle"));
        let got: number | null | "idle";
        try {
          got = await Promise.race([next.n, idle]);
        } catch (err) {
          if (!isClosedError(err)) throw err;
          got = null;
        }
        idleFired = undefined;
        if (got !== "idle") {
          lastData = Date.now();
          if (got === null) break; // ended
          consumer.onBytes?.(got);
          size = nextSize(size, got, min, max);
          chunk = got === buf.length ? buf : buf.subarray(0, got); // a view: no copy per read
          break;
        }
        if (cancelled) break;
        if (consumer.canIdle()) { // nothing buffered: end the burst, keep the read for the next
          rest = next;
          break;
        }
        lastData = Date.now();
        arm(idleMs); // a partial frame is buffered: keep waiting in this burst
      }
    }
  } finally {
    clearTimeout(timer);
    if (!cancelled) await writer.close().catch(() => {});
    await consumed;
  }
  return cancelled ? null : rest;
}
