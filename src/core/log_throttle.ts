/**
 * Rate-limited logging for what an attacker or a broken device can repeat at will (refused
 * connections, bad frames, failed logins, a full disk): the first line of each kind in an interval
 * is written; the rest are counted, and one summary line per kind says how many were suppressed.
 * The table of kinds is bounded.
 *
 * @module
 */

import type { Clock, TimerHandle } from "./clock.ts";
import type { LogFields, Logger, LogLevel } from "./logger.ts";

/** Tunables of {@link LogThrottle}. */
export interface LogThrottleOptions {
  /** One line per kind per interval, ms. @default 10000 */
  intervalMs?: number;
  /** Kinds tracked at once; past it, lines of new kinds are dropped and counted. @default 1000 */
  maxKinds?: number;
  /** Time source (its timers write the summaries). */
  clock: Clock;
}

interface Kind {
  since: number;
  suppressed: number;
  level: LogLevel;
  msg: string;
}

/**
 * Writes at most one line per kind per interval.
 *
 * @example
 * ```ts
 * import { FakeClock } from "./clock.ts";
 * import { Logger } from "./logger.ts";
 * import { LogThrottle } from "./log_throttle.ts";
 * const lines: string[] = [];
 * const clock = new FakeClock();
 * const t = new LogThrottle(new Logger({ sink: (l) => lines.push(l) }), { clock, intervalMs: 1000 });
 * for (let i = 0; i < 5; i++) t.warn("refused:10.0.0.1", "connection refused", { address: "10.0.0.1" });
 * clock.tick(1000);
 * if (lines.length !== 2 || !lines[1].includes('"suppressed":4')) throw new Error(lines.join("\n"));
 * ```
 */
export class LogThrottle {
  #log: Logger;
  #clock: Clock;
  #interval: number;
  #max: number;
  #kinds = new Map<string, Kind>();
  #timer: TimerHandle | undefined;
  #overflow = 0;

  /** Throttles lines written to `log`. */
  constructor(log: Logger, options: LogThrottleOptions) {
    this.#log = log;
    this.#clock = options.clock;
    this.#interval = options.intervalMs ?? 10_000;
    this.#max = options.maxKinds ?? 1000;
  }

  /** A warning of `kind` (e.g. `"refused:" + address`). */
  warn(kind: string, msg: string, fields?: LogFields): void {
    this.#write("warn", kind, msg, fields);
  }

  /** An info line of `kind`. */
  info(kind: string, msg: string, fields?: LogFields): void {
    this.#write("info", kind, msg, fields);
  }

  /** An error of `kind`. */
  error(kind: string, msg: string, fields?: LogFields): void {
    this.#write("error", kind, msg, fields);
  }

  #write(level: LogLevel, kind: string, msg: string, fields?: LogFields): void {
    if (!this.#log.enabled(level)) return;
    const k = this.#kinds.get(kind);
    if (k) {
      k.suppressed++;
      return;
    }
    if (this.#kinds.size >= this.#max) {
      this.#overflow++;
      this.#arm();
      return;
    }
    this.#kinds.set(kind, { since: this.#clock.now(), suppressed: 0, level, msg });
    this.#log[level](msg, fields);
    this.#arm();
  }

  #arm(): void {
    if (this.#timer !== undefined) return;
    this.#timer = this.#clock.setTimeout(this.#sweep, this.#interval);
    this.#clock.unref?.(this.#timer);
  }

  #sweep = (): void => {
    this.#timer = undefined;
    const now = this.#clock.now();
    for (const [key, k] of this.#kinds) {
      if (now - k.since < this.#interval) continue;
      this.#kinds.delete(key);
      if (k.suppressed > 0) {
        this.#log[k.level](`${k.msg} (repeated)`, { kind: key, suppressed: k.suppressed });
      }
    }
    if (this.#overflow > 0) {
      this.#log.warn("log lines suppressed: too many kinds at once", {
        suppressed: this.#overflow,
      });
      this.#overflow = 0;
    }
    if (this.#kinds.size) this.#arm();
  };

  /** Writes pending summaries now and stops the timer (shutdown). */
  flush(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const k of this.#kinds.values()) k.since = -Infinity;
    this.#sweep();
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
