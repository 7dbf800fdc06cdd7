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

import { type Clock, systemClock } from "../core/clock.ts";

/** Anything with a `write(buf)` like `Deno.Conn`. */
export interface ByteWriter {
  /** Writes some of `p`; resolves to the count written. */
  write(p: Uint8Array): Promise<number>;
}

/** Tunables of {@link ConnWriter}. */
export interface ConnWriterOptions {
  /** Bytes queued before the peer counts as a slow reader. @default 1048576 */
  maxPendingBytes?: number;
  /** Longest one write may wait on the socket. @default 10000 */
  drainTimeoutMs?: number;
  /** Called once when the peer is too slow or the socket fails. */
  onStall?: (reason: string) => void;
  /** Called with the byte count of each completed write. */
  onBytes?: (n: number) => void;
  /** Time source for the drain timeout. @default systemClock */
  clock?: Clock;
}

/** Writers with a write in flight, checked by one watchdog timer. */
const busy = new Set<ConnWriter>();
let watchdog: ReturnType<typeof setInterval> | undefined;
/** How often the watchdog looks at writes in flight, ms. */
const WATCHDOG_MS = 250;

function watch(w: ConnWriter): void {
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

function unwatch(w: ConnWriter): void {
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
export class ConnWriter {
  #conn: ByteWriter;
  #queue: Uint8Array[] = [];
  #pending = 0;
  #active = false; // a flush is scheduled or running
  #failed = false;
  #max: number;
  #drainMs: number;
  #onStall?: (reason: string) => void;
  #onBytes?: (n: number) => void;
  #clock: Clock;
  #writeStarted = 0;
  #idle: Array<() => void> | undefined;

  /** Creates a writer for `conn`. */
  constructor(conn: ByteWriter, options: ConnWriterOptions = {}) {
    this.#conn = conn;
    this.#max = options.maxPendingBytes ?? 1 << 20;
    this.#drainMs = options.drainTimeoutMs ?? 10_000;
    this.#onStall = options.onStall;
    this.#onBytes = options.onBytes;
    this.#clock = options.clock ?? systemClock;
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
    this.#queue.push(bytes);
    this.#pending += bytes.length;
    if (this.#pending > this.#max) {
      this.#fail(`peer is not reading: ${this.#pending} bytes pending exceed ${this.#max}`);
      return false;
    }
    if (!this.#active) {
      this.#active = true;
      setImmediate(() => this.#loop());
    }
    return true;
  }

  /** Resolves when everything queued so far is written (or the writer failed). */
  flushed(): Promise<void> {
    if (!this.#active || this.#failed) return Promise.resolve();
    return new Promise((r) => (this.#idle ??= []).push(r));
  }

  /** Fails the writer if its current write has waited longer than the drain timeout (watchdog). */
  checkStall(): void {
    if (this.#clock.now() - this.#writeStarted > this.#drainMs) {
      this.#fail(`write did not drain within ${this.#drainMs} ms`);
    }
  }

  #fail(reason: string): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#queue = [];
    this.#pending = 0;
    unwatch(this);
    this.#wakeIdle();
    this.#onStall?.(reason);
  }

  #wakeIdle(): void {
    const idle = this.#idle;
    this.#idle = undefined;
    if (idle) { for (const r of idle) r(); }
  }

  async #loop(): Promise<void> {
    while (this.#queue.length && !this.#failed) {
      const chunks = this.#queue;
      this.#queue = [];
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
        this.#onBytes?.(buf.length);
      } catch (err) {
        this.#fail(err instanceof Error ? err.message : String(err));
      }
    }
    unwatch(this);
    this.#active = false;
    this.#wakeIdle();
  }
}
