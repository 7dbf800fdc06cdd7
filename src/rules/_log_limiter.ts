/**
 * Rate limiting of repeated log lines: a rule failing on every message must not flood the log.
 * One line per key per period; the next line says how many were suppressed meanwhile.
 *
 * @module
 */

import type { Clock } from "../core/clock.ts";

/** Lets one line per key through per `everyMs`. */
export class LogLimiter {
  #clock: Clock;
  #everyMs: number;
  #keys = new Map<string, { at: number; suppressed: number }>();

  /** Creates the limiter. */
  constructor(clock: Clock, everyMs: number) {
    this.#clock = clock;
    this.#everyMs = everyMs;
  }

  /**
   * The number of lines suppressed since the last one when a line for `key` may be written now;
   * undefined (and counted as suppressed) otherwise.
   */
  take(key: string): number | undefined {
    const now = this.#clock.now();
    const k = this.#keys.get(key);
    if (k && now - k.at < this.#everyMs) {
      k.suppressed++;
      return undefined;
    }
    const suppressed = k?.suppressed ?? 0;
    if (this.#keys.size > 10_000) this.#keys.clear();
    this.#keys.set(key, { at: now, suppressed: 0 });
    return suppressed;
  }
}
