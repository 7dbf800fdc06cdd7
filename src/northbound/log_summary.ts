/**
 * Repeated warnings summarised per interval: the first occurrence is logged at once, the rest of
 * the interval only counted, and one line at its end says how many there were, by key. A full
 * disk refusing thousands of messages a second writes a line every interval, not a line each.
 *
 * @module
 */

import type { Clock, TimerHandle } from "../core/clock.ts";
import type { LogFields, Logger } from "../core/logger.ts";

/** Tunables of {@link LogSummary}. */
export interface LogSummaryOptions {
  /** Level of the lines. @default "warn" */
  level?: "info" | "warn" | "error";
  /** Length of an interval, ms. @default 10000 */
  intervalMs?: number;
  /** Time source. */
  clock: Clock;
}

/**
 * One summarised message.
 *
 * @example
 * ```ts
 * import { LogSummary } from "./log_summary.ts";
 * import { Logger } from "../core/logger.ts";
 * import { FakeClock } from "../core/clock.ts";
 * const lines: string[] = [];
 * const clock = new FakeClock();
 * const log = new Logger({ sink: (l) => lines.push(l) });
 * const s = new LogSummary(log, "spool refused messages", { clock, intervalMs: 1000 });
 * for (let i = 0; i < 500; i++) s.note("quota", { topic: `t${i}` });
 * clock.tick(1000);
 * if (lines.length !== 2 || JSON.parse(lines[1]).repeated !== 499) throw new Error(lines.join("\n"));
 * s.close();
 * ```
 */
export class LogSummary {
  #log: Logger;
  #msg: string;
  #level: "info" | "warn" | "error";
  #intervalMs: number;
  #clock: Clock;
  #counts = new Map<string, number>();
  #timer: TimerHandle | undefined;
  #total = 0;

  /** Summarises `msg` on `log`. */
  constructor(log: Logger, msg: string, options: LogSummaryOptions) {
    this.#log = log;
    this.#msg = msg;
    this.#level = options.level ?? "warn";
    this.#intervalMs = options.intervalMs ?? 10_000;
    this.#clock = options.clock;
  }

  /** One occurrence, with its key (a reason) and the fields of the first line. */
  note(key: string, fields: LogFields = {}): void {
    if (this.#timer === undefined) {
      this.#log[this.#level](this.#msg, { ...fields, reason: key });
      this.#timer = this.#clock.setTimeout(() => this.#flush(), this.#intervalMs);
      this.#clock.unref?.(this.#timer);
      return;
    }
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
    this.#total++;
  }

  #flush(): void {
    this.#timer = undefined;
    if (this.#total === 0) return;
    const byReason = Object.fromEntries(this.#counts);
    const repeated = this.#total;
    this.#counts.clear();
    this.#total = 0;
    this.#log[this.#level](`${this.#msg} (summary)`, {
      repeated,
      intervalMs: this.#intervalMs,
      byReason,
    });
    // The next interval starts now: a steady stream gives one summary line per interval.
    this.#timer = this.#clock.setTimeout(() => this.#flush(), this.#intervalMs);
    this.#clock.unref?.(this.#timer);
  }

  /** Writes what is counted and stops. */
  close(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#total) {
      this.#log[this.#level](`${this.#msg} (summary)`, {
        repeated: this.#total,
        byReason: Object.fromEntries(this.#counts),
      });
    }
    this.#counts.clear();
    this.#total = 0;
  }
}
