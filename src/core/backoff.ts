/**
 * Exponential backoff with full jitter (AWS architecture blog's "full jitter"): the n-th delay is
 * uniform in `[0, min(cap, base * 2^n)]`. Reset after a stable connection.
 *
 * @module
 */

/** Tunables of {@link Backoff}. */
export interface BackoffOptions {
  /** First ceiling in milliseconds. @default 500 */
  baseMs?: number;
  /** Largest ceiling in milliseconds. @default 30000 */
  capMs?: number;
  /** Random source in [0, 1). @default Math.random */
  random?: () => number;
}

/**
 * Produces successive jittered delays.
 *
 * @example
 * ```ts
 * import { Backoff } from "./backoff.ts";
 * const b = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0.999 });
 * const d = [b.next(), b.next(), b.next(), b.next(), b.next()];
 * if (d[0] > 100 || d[4] > 1000 || d[3] < d[0]) throw new Error(`bad delays ${d}`);
 * b.reset();
 * if (b.attempt !== 0) throw new Error("not reset");
 * ```
 */
export class Backoff {
  #base: number;
  #cap: number;
  #random: () => number;
  #attempt = 0;

  /** Creates a backoff sequence. */
  constructor(options: BackoffOptions = {}) {
    this.#base = options.baseMs ?? 500;
    this.#cap = options.capMs ?? 30_000;
    this.#random = options.random ?? Math.random;
    if (!(this.#base > 0) || !(this.#cap >= this.#base)) {
      throw new RangeError(`Cannot create backoff: need 0 < baseMs <= capMs`);
    }
  }

  /** Attempts made since the last reset. */
  get attempt(): number {
    return this.#attempt;
  }

  /** The ceiling for the current attempt, before jitter. */
  get ceiling(): number {
    return Math.min(this.#cap, this.#base * 2 ** Math.min(this.#attempt, 30));
  }

  /** Next delay in milliseconds; advances the attempt counter. */
  next(): number {
    const delay = Math.floor(this.#random() * this.ceiling);
    this.#attempt++;
    return delay;
  }

  /** Starts over from the base delay. */
  reset(): void {
    this.#attempt = 0;
  }
}
