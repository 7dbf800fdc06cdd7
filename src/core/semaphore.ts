/**
 * A counting semaphore whose permits are `Disposable`, so a permit is released by `using`.
 *
 * @module
 */

/** One held permit; disposing it (or calling `release`) gives it back exactly once. */
export interface Permit extends Disposable {
  /** Gives the permit back. Idempotent. */
  release(): void;
}

/**
 * Bounds concurrency: at most `permits` holders at once, waiters served in FIFO order.
 *
 * @example
 * ```ts
 * import { Semaphore } from "./semaphore.ts";
 * const pool = new Semaphore(1);
 * const free = () => pool.available;
 * {
 *   using _permit = await pool.acquire();
 *   if (free() !== 0) throw new Error("permit not taken");
 * }
 * if (free() !== 1) throw new Error("permit not returned");
 * ```
 */
export class Semaphore {
  #available: number;
  #capacity: number;
  #waiters: Array<(p: Permit) => void> = [];

  /** Creates a semaphore with `permits` (a positive integer) permits. */
  constructor(permits: number) {
    if (!Number.isInteger(permits) || permits < 1) {
      throw new RangeError(
        `Cannot create semaphore: permits must be a positive integer, got ${permits}`,
      );
    }
    this.#available = permits;
    this.#capacity = permits;
  }

  /** Permits free right now. */
  get available(): number {
    return this.#available;
  }

  /** Permits held right now. */
  get inUse(): number {
    return this.#capacity - this.#available;
  }

  /** Total permits. */
  get capacity(): number {
    return this.#capacity;
  }

  /** Callers waiting for a permit. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** Takes a permit without waiting, or returns `undefined` if none is free. */
  tryAcquire(): Permit | undefined {
    if (this.#available === 0) return undefined;
    this.#available--;
    return this.#permit();
  }

  /**
   * Takes a slot without a {@link Permit} object, for a caller that gives it back within the same
   * call ({@link give}) or turns it into a permit ({@link adopt}) when its work goes async. The
   * pipeline's run-now path takes one per message: no allocation when the handler is synchronous.
   */
  tryTake(): boolean {
    if (this.#available === 0) return false;
    this.#available--;
    return true;
  }

  /** Gives back a slot taken with {@link tryTake} (and not adopted). */
  give(): void {
    const next = this.#waiters.shift();
    if (next) next(this.#permit());
    else this.#available++;
  }

  /** A permit for a slot taken with {@link tryTake}; releasing it gives the slot back. */
  adopt(): Permit {
    return this.#permit();
  }

  /** Waits for a permit (FIFO). Rejects with the signal's reason if `signal` aborts first. */
  acquire(signal?: AbortSignal): Promise<Permit> {
    signal?.throwIfAborted();
    const now = this.tryAcquire();
    if (now) return Promise.resolve(now);
    return new Promise<Permit>((resolve, reject) => {
      const grant = (p: Permit) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(p);
      };
      const onAbort = () => {
        const i = this.#waiters.indexOf(grant);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(grant);
    });
  }

  #permit(): Permit {
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      const next = this.#waiters.shift();
      if (next) next(this.#permit());
      else this.#available++;
    };
    return { release, [Symbol.dispose]: release };
  }
}
