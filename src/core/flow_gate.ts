/**
 * Backpressure from subscribers to publishers. A subscriber whose outgoing buffer passes its high
 * water mark holds the gate; while any holds it, the core delays delivery, its pipeline fills, and
 * the producers stop reading their sockets, so a slower subscriber paces the publishers instead of
 * losing messages or growing memory. A hold is bounded: a holder that has not drained within
 * `maxHoldMs` is let go (and reported), so one stuck subscriber delays ingest by at most that long
 * per episode and then applies its own slow-consumer policy (drop QoS 0, bounded queue, close).
 *
 * @module
 */

import type { Clock, TimerHandle } from "./clock.ts";

/** Tunables of {@link FlowGate}. */
export interface FlowGateOptions {
  /** Time source. */
  clock: Clock;
  /** Longest one holder may keep the gate closed, ms. */
  maxHoldMs: number;
  /** Called when a holder is let go for holding too long. */
  onEvict?: (holder: object) => void;
}

/**
 * Closed while any holder holds it.
 *
 * @example
 * ```ts
 * import { FakeClock } from "./clock.ts";
 * import { FlowGate } from "./flow_gate.ts";
 * const clock = new FakeClock();
 * const gate = new FlowGate({ clock, maxHoldMs: 100 });
 * const slow = {};
 * gate.hold(slow);
 * let passed = false;
 * gate.wait().then(() => passed = true);
 * gate.release(slow);
 * await Promise.resolve();
 * if (!passed || !gate.open) throw new Error("gate did not open");
 * ```
 */
export class FlowGate {
  #opts: FlowGateOptions;
  #holders = new Map<object, number>(); // holder → since
  #waiters: Array<() => void> = [];
  #timer: TimerHandle | undefined;
  #evicted = 0;
  #closed = false;

  /** Creates an open gate. */
  constructor(options: FlowGateOptions) {
    this.#opts = options;
  }

  /** True when no holder holds the gate. */
  get open(): boolean {
    return this.#holders.size === 0;
  }

  /** Holders now. */
  get holders(): number {
    return this.#holders.size;
  }

  /** Holders let go for holding too long, since start. */
  get evicted(): number {
    return this.#evicted;
  }

  /** Closes the gate for `holder` (idempotent). */
  hold(holder: object): void {
    if (this.#closed || this.#holders.has(holder)) return;
    this.#holders.set(holder, this.#opts.clock.now());
    this.#arm();
  }

  /** Lets go of `holder`'s hold (idempotent); opens the gate when it was the last. */
  release(holder: object): void {
    if (!this.#holders.delete(holder)) return;
    if (this.#holders.size === 0) this.#openNow();
  }

  /** Resolves when the gate is open (at once if it is). */
  wait(): Promise<void> {
    if (this.#holders.size === 0) return Promise.resolve();
    return new Promise((r) => this.#waiters.push(r));
  }

  #openNow(): void {
    if (this.#timer !== undefined) {
      this.#opts.clock.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const w = this.#waiters;
    this.#waiters = [];
    for (const r of w) r();
  }

  #arm(): void {
    if (this.#timer !== undefined || this.#holders.size === 0) return;
    let oldest = Infinity;
    for (const since of this.#holders.values()) oldest = Math.min(oldest, since);
    const due = Math.max(0, oldest + this.#opts.maxHoldMs - this.#opts.clock.now());
    this.#timer = this.#opts.clock.setTimeout(() => {
      this.#timer = undefined;
      const now = this.#opts.clock.now();
      for (const [holder, since] of [...this.#holders]) {
        if (now - since < this.#opts.maxHoldMs) continue;
        this.#holders.delete(holder);
        this.#evicted++;
        this.#opts.onEvict?.(holder);
      }
      if (this.#holders.size === 0) this.#openNow();
      else this.#arm();
    }, due);
  }

  /** Opens the gate for good and cancels the timer (shutdown). */
  close(): void {
    this.#closed = true;
    this.#holders.clear();
    this.#openNow();
  }
}
