/**
 * One budget of payload bytes in flight for the whole gateway: bytes a protocol has read from a
 * client and not yet finished with (a request body being received, a message on its way into the
 * pipeline). A protocol reserves before it buffers and releases when done; past the budget it
 * pauses reading or answers "overloaded" (HTTP 503 + Retry-After), so a few huge uploads cannot
 * take the memory of a small device.
 *
 * @module
 */

/**
 * Counts reserved bytes against a limit.
 *
 * @example
 * ```ts
 * import { ByteBudget } from "./byte_budget.ts";
 * const b = new ByteBudget(100);
 * if (!b.reserve(60) || b.reserve(50) || b.inUse !== 60) throw new Error();
 * b.release(60);
 * if (!b.reserve(100)) throw new Error();
 * ```
 */
export class ByteBudget {
  readonly limit: number;
  #inUse = 0;
  #refused = 0;

  /** A budget of `limit` bytes (Infinity: unlimited). */
  constructor(limit: number) {
    if (!(limit > 0)) throw new RangeError(`Cannot make a byte budget of ${limit}`);
    this.limit = limit;
  }

  /** Bytes reserved now. */
  get inUse(): number {
    return this.#inUse;
  }

  /** Reservations refused so far. */
  get refused(): number {
    return this.#refused;
  }

  /** Reserves `n` bytes; false (nothing reserved) when that would pass the limit. */
  reserve(n: number): boolean {
    if (this.#inUse + n > this.limit) {
      this.#refused++;
      return false;
    }
    this.#inUse += n;
    return true;
  }

  /** Gives `n` reserved bytes back. */
  release(n: number): void {
    this.#inUse = Math.max(0, this.#inUse - n);
  }
}
