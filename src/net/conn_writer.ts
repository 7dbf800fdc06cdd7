/**
 * Ordered writes to a connection with bounded memory: frames are queued and flushed by one write
 * loop that coalesces small frames into one syscall. If the peer stops reading, pending bytes pile
 * up; past `maxPendingBytes`, or when one flush cannot finish within `drainTimeoutMs`, the writer
 * fails and calls `onStall` so the session closes the connection instead of growing memory.
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
  /** Longest a flush may wait on the socket. @default 10000 */
  drainTimeoutMs?: number;
  /** Called once when the peer is too slow or the socket fails. */
  onStall?: (reason: string) => void;
  /** Called with the byte count of each completed write. */
  onBytes?: (n: number) => void;
  /** Time source for the drain timeout. @default systemClock */
  clock?: Clock;
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
  #writing = false;
  #failed = false;
  #max: number;
  #drainMs: number;
  #onStall?: (reason: string) => void;
  #onBytes?: (n: number) => void;
  #clock: Clock;
  #idle: Array<() => void> = [];

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
    if (!this.#writing) this.#loop();
    return true;
  }

  /** Resolves when everything queued so far is written (or the writer failed). */
  flushed(): Promise<void> {
    if (!this.#writing || this.#failed) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  #fail(reason: string): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#queue = [];
    this.#pending = 0;
    for (const r of this.#idle.splice(0)) r();
    this.#onStall?.(reason);
  }

  async #loop(): Promise<void> {
    this.#writing = true;
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
      let timer: number | undefined;
      try {
        let off = 0;
        const stall = new Promise<never>((_, reject) => {
          timer = this.#clock.setTimeout(
            () => reject(new Error(`write did not drain within ${this.#drainMs} ms`)),
            this.#drainMs,
          );
        });
        stall.catch(() => {});
        while (off < buf.length) {
          off += await Promise.race([this.#conn.write(buf.subarray(off)), stall]);
        }
        this.#pending -= buf.length;
        this.#onBytes?.(buf.length);
      } catch (err) {
        this.#fail(err instanceof Error ? err.message : String(err));
      } finally {
        if (timer !== undefined) this.#clock.clearTimeout(timer);
      }
    }
    this.#writing = false;
    for (const r of this.#idle.splice(0)) r();
  }
}
