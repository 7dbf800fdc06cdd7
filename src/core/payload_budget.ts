/**
 * One budget for the payload bytes the gateway holds in flight, across every protocol: messages
 * waiting in the pipeline, and large packets being received (reserved when their header announces
 * them, before a byte of them is buffered). Past it, producers wait (stream protocols stop reading:
 * backpressure) or are refused with their protocol's "overloaded" answer; nothing buffers without
 * bound, whatever many clients announce at once. Sized for a Raspberry Pi by default.
 *
 * @module
 */

/**
 * Counts bytes taken and given back against a total.
 *
 * @example
 * ```ts
 * import { PayloadBudget } from "./payload_budget.ts";
 * const b = new PayloadBudget(100);
 * if (!b.tryTake(60) || b.tryTake(60)) throw new Error("over budget");
 * b.give(60);
 * if (!b.tryTake(100) || b.used !== 100) throw new Error();
 * ```
 */
export class PayloadBudget {
  #total: number;
  #used = 0;
  #refused = 0;

  /** A budget of `total` bytes (Infinity: unbounded). */
  constructor(total: number) {
    if (!(total > 0)) {
      throw new RangeError(`Cannot create payload budget: ${total} is not a positive byte count`);
    }
    this.#total = total;
  }

  /** The total, bytes. */
  get total(): number {
    return this.#total;
  }

  /** Bytes taken now. */
  get used(): number {
    return this.#used;
  }

  /** Times a take was refused. */
  get refused(): number {
    return this.#refused;
  }

  /** True when `n` more bytes fit now. */
  fits(n: number): boolean {
    return this.#used + n <= this.#total;
  }

  /** Takes `n` bytes if they fit now; false (taking nothing) otherwise. */
  tryTake(n: number): boolean {
    if (this.#used + n > this.#total) {
      this.#refused++;
      return false;
    }
    this.#used += n;
    return true;
  }

  /** Takes `n` bytes whether or not they fit (room was decided by the caller). */
  take(n: number): void {
    this.#used += n;
  }

  /** Gives `n` bytes back. */
  give(n: number): void {
    this.#used = Math.max(0, this.#used - n);
  }
}
