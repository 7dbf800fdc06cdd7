/**
 * Structured logging: one JSON object per line (default) or a human format for terminals, with
 * levels and per-component child loggers. Secrets never belong in fields.
 *
 * @module
 */

/** Log levels, lowest first. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** One of {@link LOG_LEVELS}. */
export type LogLevel = typeof LOG_LEVELS[number];
/** Output formats. */
export type LogFormat = "json" | "pretty";

/** Structured fields of a log line. */
export type LogFields = Record<string, unknown>;

/** Where lines go. */
export type LogSink = (line: string) => void;

/** Tunables of {@link Logger}. */
export interface LoggerOptions {
  /** Lowest level written. @default "info" */
  level?: LogLevel;
  /** Line format. @default "json" */
  format?: LogFormat;
  /** Component name put in every line. */
  component?: string;
  /** Line writer. @default writes to stderr */
  sink?: LogSink;
  /** Time source. @default Date.now */
  now?: () => number;
}

const encoder = new TextEncoder();
function stderrSink(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

function fieldValue(v: unknown): unknown {
  if (v instanceof Error) return { name: v.name, message: v.message };
  if (v instanceof Uint8Array) return `<${v.length} bytes>`;
  return v;
}

/**
 * A leveled, structured logger.
 *
 * @example
 * ```ts
 * import { Logger } from "./logger.ts";
 * const lines: string[] = [];
 * const log = new Logger({ sink: (l) => lines.push(l), now: () => 0 }).child("binary");
 * log.info("listening", { port: 7883 });
 * log.debug("hidden");
 * const o = JSON.parse(lines[0]);
 * if (lines.length !== 1 || o.component !== "binary" || o.port !== 7883) throw new Error();
 * ```
 */
export class Logger {
  #level: number;
  #format: LogFormat;
  #component?: string;
  #sink: LogSink;
  #now: () => number;

  /** Creates a logger. */
  constructor(options: LoggerOptions = {}) {
    this.#level = LOG_LEVELS.indexOf(options.level ?? "info");
    this.#format = options.format ?? "json";
    this.#component = options.component;
    this.#sink = options.sink ?? stderrSink;
    this.#now = options.now ?? Date.now;
  }

  /** A logger for a component, sharing level, format and sink. */
  child(component: string): Logger {
    return new Logger({
      level: LOG_LEVELS[this.#level],
      format: this.#format,
      component,
      sink: this.#sink,
      now: this.#now,
    });
  }

  /** True when lines of `level` are written. */
  enabled(level: LogLevel): boolean {
    return LOG_LEVELS.indexOf(level) >= this.#level;
  }

  /** Writes a debug line. */
  debug(msg: string, fields?: LogFields): void {
    this.#write("debug", msg, fields);
  }
  /** Writes an info line. */
  info(msg: string, fields?: LogFields): void {
    this.#write("info", msg, fields);
  }
  /** Writes a warning line. */
  warn(msg: string, fields?: LogFields): void {
    this.#write("warn", msg, fields);
  }
  /** Writes an error line. */
  error(msg: string, fields?: LogFields): void {
    this.#write("error", msg, fields);
  }

  #write(level: LogLevel, msg: string, fields?: LogFields): void {
    if (LOG_LEVELS.indexOf(level) < this.#level) return;
    const time = new Date(this.#now()).toISOString();
    if (this.#format === "pretty") {
      const extra = fields
        ? Object.entries(fields).map(([k, v]) => `${k}=${JSON.stringify(fieldValue(v))}`).join(" ")
        : "";
      this.#sink(
        `${time} ${level.toUpperCase().padEnd(5)} ${this.#component ?? "ferry"}: ${msg}${
          extra ? " " + extra : ""
        }`,
      );
      return;
    }
    const o: LogFields = { time, level, component: this.#component, msg };
    if (fields) { for (const [k, v] of Object.entries(fields)) o[k] = fieldValue(v); }
    this.#sink(JSON.stringify(o));
  }
}

/** A logger that writes nothing (tests, embedding). */
export const silentLogger: Logger = new Logger({ sink: () => {}, level: "error" });

/** Tunables of {@link LogLimiter}. */
export interface LogLimiterOptions {
  /** Each key writes at most one line per interval; the rest are summarised, ms. @default 10000 */
  intervalMs?: number;
  /** Keys tracked at most; past it, new keys share one summary. @default 1000 */
  maxKeys?: number;
  /** Time source. @default Date.now */
  now?: () => number;
}

interface Suppressed {
  since: number;
  count: number;
  level: LogLevel;
  msg: string;
}

/**
 * Rate-limited logging for lines an outsider can cause (bad requests, failed logins, refused
 * connections, a full disk refusing every message): the first line of a kind (`key`) in an
 * interval is written, the rest are counted and summarised in one line
 * (`… (37 more in the last 10 s)`) when the kind next occurs after the interval, or on
 * {@link LogLimiter.flush}. The table of kinds is bounded.
 *
 * @example
 * ```ts
 * import { Logger, LogLimiter } from "./logger.ts";
 * const lines: string[] = [];
 * let t = 0;
 * const log = new Logger({ sink: (l) => lines.push(l), now: () => t });
 * const limited = new LogLimiter(log, { intervalMs: 1000, now: () => t });
 * for (let i = 0; i < 100; i++) limited.warn("bad-login", "login failed", { address: "10.0.0.1" });
 * t = 1500;
 * limited.warn("bad-login", "login failed", { address: "10.0.0.2" });
 * if (lines.length !== 3 || JSON.parse(lines[1]).suppressed !== 99) throw new Error(lines.join("\n"));
 * ```
 */
export class LogLimiter {
  #log: Logger;
  #interval: number;
  #maxKeys: number;
  #now: () => number;
  #seen = new Map<string, Suppressed>();

  /** Limits lines written to `log`. */
  constructor(log: Logger, options: LogLimiterOptions = {}) {
    this.#log = log;
    this.#interval = options.intervalMs ?? 10_000;
    this.#maxKeys = options.maxKeys ?? 1000;
    this.#now = options.now ?? Date.now;
  }

  /** Kinds tracked now. */
  get size(): number {
    return this.#seen.size;
  }

  /** Writes a warning of kind `key`, unless one was written within the interval. */
  warn(key: string, msg: string, fields?: LogFields): void {
    this.#line("warn", key, msg, fields);
  }

  /** Writes an info line of kind `key`, unless one was written within the interval. */
  info(key: string, msg: string, fields?: LogFields): void {
    this.#line("info", key, msg, fields);
  }

  /** Writes an error of kind `key`, unless one was written within the interval. */
  error(key: string, msg: string, fields?: LogFields): void {
    this.#line("error", key, msg, fields);
  }

  /** Writes the summaries of every kind with suppressed lines, and forgets them. */
  flush(): void {
    const now = this.#now();
    for (const [key, s] of this.#seen) {
      this.#summarise(s, now);
      this.#seen.delete(key);
    }
  }

  #line(level: LogLevel, key: string, msg: string, fields?: LogFields): void {
    if (!this.#log.enabled(level)) return;
    const now = this.#now();
    let s = this.#seen.get(key);
    if (s && now - s.since < this.#interval) {
      s.count++;
      return;
    }
    if (s) {
      this.#summarise(s, now);
      this.#seen.delete(key); // re-inserted last: the Map's order is the age order
    } else if (this.#seen.size >= this.#maxKeys) {
      this.#shrink(now);
      if (this.#seen.size >= this.#maxKeys) key = "(other)";
      s = this.#seen.get(key);
      if (s && now - s.since < this.#interval) {
        s.count++;
        return;
      }
    }
    this.#seen.set(key, { since: now, count: 0, level, msg });
    this.#log[level](msg, fields);
  }

  #summarise(s: Suppressed, now: number): void {
    if (s.count === 0) return;
    const seconds = Math.max(1, Math.round((now - s.since) / 1000));
    this.#log[s.level](`${s.msg} (${s.count} more in the last ${seconds} s)`, {
      suppressed: s.count,
    });
  }

  #shrink(now: number): void {
    for (const [k, s] of this.#seen) {
      if (now - s.since < this.#interval) break; // the rest are younger
      this.#summarise(s, now);
      this.#seen.delete(k);
    }
  }
}
