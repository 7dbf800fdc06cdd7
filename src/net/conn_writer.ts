/**
 * Ordered writes to a connection with bounded memory. Frames queued in one turn of the event loop
 * (say, the ACKs for every frame of one read) go out in one write: the flush runs in a
 * macrotask (`setImmediate`) after the turn, so small frames coalesce into one syscall. If the
 * peer stops reading, pending bytes pile up; past `maxPendingBytes`, or when one write cannot
 * finish within `drainTimeoutMs`, the writer fails and calls `onStall`, so the session closes the
 * connection instead of growing memory. One shared watchdog (not a timer per write) checks
 * writes in flight.
 *
 * @module
 */

import { type Clock, errorMessage, systemClock } from "../core/mod.ts";

/** Anything with a `write(buf)` like `Deno.Conn`. */
export interface ByteWriter {
  /** Writes some of `p`; resolves to the count written. */
  write(p: Uint8Array): Promise<number>;
}

/** Tunables of {@link ConnWriter}. */
export interface ConnWriterOptions<O = undefined> {
  /** Bytes queued before the peer counts as a slow reader. @default 1048576 */
  maxPendingBytes?: number;
  /** Longest one write may wait on the socket. @default 10000 */
  drainTimeoutMs?: number;
  /** Called once when the peer is too slow or the socket fails. */
  onStall?: (reason: string, owner: O) => void;
  /**
   * Pending bytes above which the peer counts as behind: `onHigh` is called once, then `onLow`
   * once it has drained to `lowWaterBytes` (backpressure to whatever feeds this writer).
   * @default Infinity
   */
  highWaterBytes?: number;
  /** See `highWaterBytes`. @default highWaterBytes / 4 */
  lowWaterBytes?: number;
  /** Called when pending bytes pass `highWaterBytes`. */
  onHigh?: (owner: O) => void;
  /** Called when pending bytes are back to `lowWaterBytes`, or the writer failed, after `onHigh`. */
  onLow?: (owner: O) => void;
  /** Called with the byte count of each completed write. */
  onBytes?: (n: number) => void;
  /** Time source for the drain timeout. @default systemClock */
  clock?: Clock;
}

/** Size of the chunks small frames are reserved in. */
const CHUNK = 16_384;
/** Size of the first chunk after the writer was idle. */
const CHUNK_FIRST = 256;
/** First-size chunks no writer holds: reused by the next writer that starts a flush. */
const freeTails: Uint8Array[] = [];
/** At most this many pooled chunks (64 KiB). */
const FREE_TAILS_MAX = 256;
/** Larger frames get their own buffer. */
const RESERVE_MAX = 1024;

const FLUSH = Symbol("flush");

/** Writers with frames queued this turn: flushed together by one macrotask, not one each. */
let toFlush: Array<{ [FLUSH](): void }> = [];

function scheduleFlush(w: { [FLUSH](): void }): void {
  if (toFlush.length === 0) setImmediate(flushAll);
  toFlush.push(w);
}

function flushAll(): void {
  const list = toFlush;
  toFlush = [];
  for (const w of list) w[FLUSH]();
}

/** Writers with a write in flight, checked by one watchdog timer. */
const busy = new Set<{ checkStall(): void }>();
let watchdog: ReturnType<typeof setInterval> | undefined;
/** How often the watchdog looks at writes in flight, ms. */
const WATCHDOG_MS = 250;

function watch(w: { checkStall(): void }): void {
  busy.add(w);
  if (watchdog === undefined) {
    watchdog = setInterval(() => {
      for (const x of busy) x.checkStall();
      if (busy.size === 0) {
        clearInterval(watchdog);
        watchdog = undefined;
      }
    }, WATCHDOG_MS);
    Deno.unrefTimer(watchdog as unknown as number);
  }
}

function unwatch(w: { checkStall(): void }): void {
  busy.delete(w);
  if (busy.size === 0 && watchdog !== undefined) {
    clearInterval(watchdog);
    watchdog = undefined;
  }
}

/**
 * Queues and flushes frames in order.
 *
 * @example
 * ```ts
 * import { ConnWriter } from "./conn_writer.ts";
 * const out: number[] = [];
 * const w = new ConnWriter({ write: (p) => { out.push(...p); return Promise.resolve(p.length); } });
 * w.write(new Uint8Array([1])); w.write(new Uint8Array([2]));
 * await w.flushed();
 * if (out.join() !== "1,2") throw new Error();
 * ```
 */
export class ConnWriter<O = undefined> {
  // Per-connection state only: the options object is kept by reference, so a server can give
  // every connection the same one (callbacks then tell connections apart by `owner`).
  #conn: ByteWriter;
  #opts: ConnWriterOptions<O>;
  #owner: O;
  #queue: Uint8Array[] | undefined;
  #pending = 0;
  #active = false; // a flush is scheduled or running
  #failed = false;
  #high = false;
  #writeStarted = 0;
  #idle: Array<() => void> | undefined;
  // Small frames are encoded straight into a shared chunk (see `reserve`): bytes [#tailSent,
  // #tailUsed) are queued and not yet taken by a flush.
  #tail: Uint8Array | undefined;
  #tailUsed = 0;
  #tailSent = 0;

  /**
   * Creates a writer for `conn`. `owner` is passed to the callbacks of `options`, so one options
   * object can serve every connection of a server.
   */
  constructor(conn: ByteWriter, options: ConnWriterOptions<O> = {}, owner?: O) {
    this.#conn = conn;
    this.#opts = options;
    this.#owner = owner as O;
  }

  get #max(): number {
    return this.#opts.maxPendingBytes ?? 1 << 20;
  }

  get #clock(): Clock {
    return this.#opts.clock ?? systemClock;
  }

  /** True between `onHigh` and `onLow`. */
  get behind(): boolean {
    return this.#high;
  }

  /** Bytes queued and not yet written. */
  get pendingBytes(): number {
    return this.#pending;
  }

  /** True after a stall or socket error; further writes are ignored. */
  get failed(): boolean {
    return this.#failed;
  }

  /** Queues `bytes`; returns false when the writer has failed (peer gone or too slow). */
  write(bytes: Uint8Array): boolean {
    if (this.#failed) return false;
    const queue = this.#queue ??= [];
    if (this.#tailUsed > this.#tailSent) { // keep order with reserved bytes
      queue.push(this.#tail!.subarray(this.#tailSent, this.#tailUsed));
      this.#tailSent = this.#tailUsed;
    }
    queue.push(bytes);
    this.#added(bytes.length);
    return !this.#failed;
  }

  #added(n: number): void {
    this.#pending += n;
    if (this.#pending > this.#max) {
      this.#fail(`peer is not reading: ${this.#pending} bytes pending exceed ${this.#max}`);
      return;
    }
    if (!this.#high && this.#pending > (this.#opts.highWaterBytes ?? Infinity)) {
      this.#high = true;
      this.#opts.onHigh?.(this.#owner);
    }
    if (!this.#active) {
      this.#active = true;
      scheduleFlush(this);
    }
  }

  /** Starts the flush loop (called once per scheduled flush, after the turn). */
  [FLUSH](): void {
    this.#loop();
  }

  /**
   * Queues `n` bytes for the caller to fill at once (before any `await`), in a chunk shared with
   * the frames around it: no allocation and no copy per small frame. Returns `undefined` when the
   * writer has failed.
   */
  reserve(n: number): Uint8Array | undefined {
    if (n > RESERVE_MAX) {
      const b = new Uint8Array(n);
      return this.write(b) ? b : undefined;
    }
    if (this.#failed) return undefined;
    let tail = this.#tail;
    if (!tail || tail.length - this.#tailUsed < n) {
      if (tail && this.#tailUsed > this.#tailSent) {
        (this.#queue ??= []).push(tail.subarray(this.#tailSent, this.#tailUsed));
      }
      // Chunks start small (an ack or two) and grow while frames keep coming.
      const size = tail ? Math.min(CHUNK, tail.length * 4) : CHUNK_FIRST;
      this.#tail = tail = size === CHUNK_FIRST && freeTails.length > 0
        ? freeTails.pop()!
        : new Uint8Array(Math.max(size, n));
      this.#tailUsed = this.#tailSent = 0;
    }
    const view = tail.subarray(this.#tailUsed, this.#tailUsed + n);
    this.#tailUsed += n;
    this.#added(n);
    return this.#failed ? undefined : view;
  }

  /** Resolves when everything queued so far is written (or the writer failed). */
  flushed(): Promise<void> {
    if (!this.#active || this.#failed) return Promise.resolve();
    return new Promise((r) => (this.#idle ??= []).push(r));
  }

  /** Fails the writer if its current write has waited longer than the drain timeout (watchdog). */
  checkStall(): void {
    const drainMs = this.#opts.drainTimeoutMs ?? 10_000;
    if (this.#clock.now() - this.#writeStarted > drainMs) {
      this.#fail(`write did not drain within ${drainMs} ms`);
    }
  }

  #fail(reason: string): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#queue = undefined;
    this.#tail = undefined;
    this.#tailUsed = this.#tailSent = 0;
    this.#pending = 0;
    unwatch(this);
    this.#wakeIdle();
    this.#lowAgain();
    this.#opts.onStall?.(reason, this.#owner);
  }

  get #lowWater(): number {
    return this.#opts.lowWaterBytes ?? (this.#opts.highWaterBytes ?? Infinity) / 4;
  }

  #lowAgain(): void {
    if (!this.#high) return;
    this.#high = false;
    this.#opts.onLow?.(this.#owner);
  }

  #wakeIdle(): void {
    const idle = this.#idle;
    this.#idle = undefined;
    if (idle) { for (const r of idle) r(); }
  }

  async #loop(): Promise<void> {
    for (;;) {
      if (this.#tailUsed > this.#tailSent) {
        (this.#queue ??= []).push(this.#tail!.subarray(this.#tailSent, this.#tailUsed));
        this.#tailSent = this.#tailUsed;
      }
      const chunks = this.#queue;
      if (!chunks?.length || this.#failed) break;
      this.#queue = undefined;
      let buf: Uint8Array;
      if (chunks.length === 1) buf = chunks[0];
      else {
        let n = 0;
        for (const c of chunks) n += c.length;
        buf = new Uint8Array(n);
        let o = 0;
        for (const c of chunks) {
          buf.set(c, o);
          o += c.length;
        }
      }
      this.#writeStarted = this.#clock.now();
      watch(this);
      try {
        let off = 0;
        while (off < buf.length && !this.#failed) off += await this.#conn.write(buf.subarray(off));
        if (this.#failed) break;
        this.#pending -= buf.length;
        this.#opts.onBytes?.(buf.length);
        if (this.#high && this.#pending <= this.#lowWater) this.#lowAgain();
      } catch (err) {
        this.#fail(errorMessage(err));
      }
    }
    unwatch(this);
    this.#active = false;
    // Everything is written: an idle connection keeps no chunk. A first-size chunk goes back to
    // the shared pool (nothing views it any more): a busy connection that answers each read with
    // an ACK or two takes it again at the next read instead of allocating one per flush.
    const tail = this.#tail;
    if (tail?.length === CHUNK_FIRST && !this.#failed && freeTails.length < FREE_TAILS_MAX) {
      freeTails.push(tail);
    }
    this.#tail = undefined;
    this.#tailUsed = this.#tailSent = 0;
    this.#wakeIdle();
  }
}
