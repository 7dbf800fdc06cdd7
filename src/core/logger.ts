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
