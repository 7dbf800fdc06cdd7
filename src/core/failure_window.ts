/**
 * Failed attempts per key in a one-minute window, in a bounded table: the login throttles of the
 * device port and of the dashboard count with it. Past `maxTracked` keys the expired entries and
 * then the oldest are forgotten, so a flood of distinct keys costs a fixed amount of memory.
 *
 * @module
 */

/** The window failures are counted in, ms. */
export const FAILURE_WINDOW_MS = 60_000;

interface Failures {
  count: number;
  since: number;
}

/**
 * Counts failures per key; a key with `limit` failures in its window waits until it ends.
 *
 * @example
 * ```ts
 * import { FailureWindow } from "./failure_window.ts";
 * const w = new FailureWindow(2, 100);
 * w.fail("a@10.0.0.1", 0);
 * w.fail("a@10.0.0.1", 10);
 * if (w.waitMs("a@10.0.0.1", 20) !== 59_980) throw new Error("not throttled");
 * if (w.waitMs("a@10.0.0.1", 60_001) !== 0) throw new Error("still throttled");
 * ```
 */
export class FailureWindow {
  #map = new Map<string, Failures>();

  /** `limit` failures per window make a key wait (0 = never); at most `maxTracked` keys. */
  constructor(readonly limit: number, readonly maxTracked: number) {}

  /** Keys with failures on record. */
  get size(): number {
    return this.#map.size;
  }

  /** Ms until `key` may try again (0: now). */
  waitMs(key: string, now: number): number {
    if (this.limit <= 0) return 0;
    const f = this.#map.get(key);
    if (!f) return 0;
    const left = f.since + FAILURE_WINDOW_MS - now;
    if (left <= 0) {
      this.#map.delete(key);
      return 0;
    }
    return f.count >= this.limit ? left : 0;
  }

  /** Counts a failure of `key` at `now`. */
  fail(key: string, now: number): void {
    if (this.limit <= 0) return;
    const f = this.#map.get(key);
    if (f && now - f.since < FAILURE_WINDOW_MS) {
      f.count++;
      return;
    }
    this.#map.delete(key); // re-inserted last: the Map's order is the age order
    this.#map.set(key, { count: 1, since: now });
    if (this.#map.size > this.maxTracked) this.#shrink(now);
  }

  /** Forgets expired entries, then the oldest, until the table is within its bound. */
  #shrink(now: number): void {
    for (const [k, v] of this.#map) {
      if (this.#map.size <= this.maxTracked) return;
      if (now - v.since >= FAILURE_WINDOW_MS) this.#map.delete(k);
    }
    for (const k of this.#map.keys()) {
      if (this.#map.size <= this.maxTracked) return;
      this.#map.delete(k);
    }
  }
}
