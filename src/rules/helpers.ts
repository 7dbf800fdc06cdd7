/**
 * Helpers for the common jobs of a rule, so that a rule is a few lines: JSON in and out with clear
 * errors, numeric scaling, topic rename/rewrite, a deadband, window aggregates flushed by the
 * gateway's clock, and a route to the northbound with a topic rewrite. They are plain functions
 * with no permissions needed; rule modules import them from `ferry/rules` (see `docs/rules.md`).
 *
 * @example
 * ```ts
 * import { json, scale, rewriteTopic } from "./helpers.ts";
 * const v = json.parse(new TextEncoder().encode('{"t":21.5}')) as { t: number };
 * const f = scale(v.t, { factor: 9 / 5, offset: 32, decimals: 1 });
 * const topic = rewriteTopic("devices/s1/telemetry/temp", "devices/+id/telemetry/#rest", "{id}/{rest}_f");
 * if (f !== 70.7 || topic !== "s1/temp_f") throw new Error(`${f} ${topic}`);
 * ```
 *
 * @module
 */

import type { RuleContext, RuleMessage, RuleOutput } from "./types.ts";

const decoder = new TextDecoder();
const fatalDecoder = new TextDecoder("utf-8", { fatal: true });

function bytesOf(input: RuleMessage | Uint8Array | string): Uint8Array | string {
  if (typeof input === "string" || input instanceof Uint8Array) return input;
  return input.payload;
}

function describe(input: RuleMessage | Uint8Array | string): string {
  return typeof input === "object" && !(input instanceof Uint8Array)
    ? `the payload of ${input.topic}`
    : "the payload";
}

/**
 * The payload as UTF-8 text (invalid bytes become U+FFFD).
 *
 * @example
 * ```ts
 * import { text } from "./helpers.ts";
 * if (text(new Uint8Array([0x68, 0x69])) !== "hi") throw new Error();
 * ```
 */
export function text(input: RuleMessage | Uint8Array): string {
  return decoder.decode(input instanceof Uint8Array ? input : input.payload);
}

/** JSON in and out, with errors that say which message and where. */
export const json = {
  /**
   * Parses a message's payload (or bytes, or a string) as JSON. Throws a SyntaxError naming the
   * topic and quoting the start of the payload when it is not UTF-8 JSON.
   *
   * @example
   * ```ts
   * import { json } from "./helpers.ts";
   * const msg = { topic: "devices/a/t", payload: new TextEncoder().encode("{oops") } as never;
   * let err: Error | undefined;
   * try { json.parse(msg); } catch (e) { err = e as Error; }
   * if (!(err instanceof SyntaxError) || !err.message.includes("devices/a/t")) throw new Error();
   * ```
   */
  parse(input: RuleMessage | Uint8Array | string): unknown {
    const raw = bytesOf(input);
    let s: string;
    try {
      s = typeof raw === "string" ? raw : fatalDecoder.decode(raw);
    } catch {
      throw new SyntaxError(`Cannot parse ${describe(input)} as JSON: it is not valid UTF-8`);
    }
    try {
      return JSON.parse(s);
    } catch (err) {
      const head = s.length > 40 ? `${s.slice(0, 40)}…` : s;
      throw new SyntaxError(
        `Cannot parse ${describe(input)} as JSON: ${(err as Error).message} (payload ${
          JSON.stringify(head)
        })`,
      );
    }
  },
  /**
   * Serializes `value` as JSON text (a valid payload). Throws a TypeError when it cannot be
   * (a BigInt, a cycle, `undefined` or a function at the top).
   *
   * @example
   * ```ts
   * import { json } from "./helpers.ts";
   * if (json.stringify({ a: 1 }) !== '{"a":1}') throw new Error();
   * let threw = false;
   * try { json.stringify({ n: 1n }); } catch (e) { threw = e instanceof TypeError; }
   * if (!threw) throw new Error("BigInt accepted");
   * ```
   */
  stringify(value: unknown): string {
    let s: string | undefined;
    try {
      s = JSON.stringify(value);
    } catch (err) {
      throw new TypeError(`Cannot serialize the output as JSON: ${(err as Error).message}`);
    }
    if (s === undefined) {
      throw new TypeError(`Cannot serialize the output as JSON: ${typeof value} has no JSON form`);
    }
    return s;
  },
};

/**
 * A finite number from `value` (a number or a numeric string), or a TypeError naming `what`.
 *
 * @example
 * ```ts
 * import { toNumber } from "./helpers.ts";
 * if (toNumber("2.5", "temp") !== 2.5) throw new Error();
 * ```
 */
export function toNumber(value: unknown, what = "value"): number {
  const n = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isFinite(n)) {
    throw new TypeError(`Cannot use ${what} as a number: got ${JSON.stringify(value) ?? value}`);
  }
  return n;
}

/**
 * Rounds to `decimals` places (half away from zero).
 *
 * @example
 * ```ts
 * import { round } from "./helpers.ts";
 * if (round(1.005, 2) !== 1.01 || round(-2.5, 0) !== -3) throw new Error();
 * ```
 */
export function round(value: number, decimals = 0): number {
  const f = 10 ** decimals;
  // Number.EPSILON corrects binary representation (1.005 is stored as 1.00499…).
  return Math.sign(value) * Math.round(Math.abs(value) * f * (1 + Number.EPSILON)) / f;
}

/** Options of {@link scale}. */
export interface ScaleOptions {
  /** Multiplier. @default 1 */
  factor?: number;
  /** Added after the multiplication. @default 0 */
  offset?: number;
  /** Round the result to this many decimals. @default no rounding */
  decimals?: number;
}

/**
 * `value × factor + offset`, optionally rounded; `value` may be a numeric string.
 *
 * @example
 * ```ts
 * import { scale } from "./helpers.ts";
 * if (scale(100, { factor: 9 / 5, offset: 32 }) !== 212) throw new Error();
 * if (scale("1234", { factor: 0.001, decimals: 2 }) !== 1.23) throw new Error();
 * ```
 */
export function scale(value: number | string, options: ScaleOptions = {}): number {
  const v = toNumber(value) * (options.factor ?? 1) + (options.offset ?? 0);
  return options.decimals === undefined ? v : round(v, options.decimals);
}

/**
 * Replaces the leading `from` levels of `topic` with `to`; returns `topic` unchanged when it does
 * not start with `from` (whole levels only).
 *
 * @example
 * ```ts
 * import { renameTopic } from "./helpers.ts";
 * if (renameTopic("devices/a/telemetry/t", "devices", "site1/devices") !== "site1/devices/a/telemetry/t") {
 *   throw new Error();
 * }
 * if (renameTopic("devicesX/a", "devices", "x") !== "devicesX/a") throw new Error("partial level");
 * ```
 */
export function renameTopic(topic: string, from: string, to: string): string {
  if (topic === from) return to;
  return topic.startsWith(`${from}/`) ? `${to}${topic.slice(from.length)}` : topic;
}

/** A compiled topic rewrite: returns the new topic, or undefined when the topic does not match. */
export type TopicRewrite = (topic: string) => string | undefined;

/**
 * Compiles a rewrite from a pattern and a template. The pattern is an MQTT filter whose wildcards
 * may be named: `+name` captures one level, `#name` the rest (possibly empty); the template
 * substitutes `{name}`. Unnamed `+`/`#` match without capturing.
 *
 * @example
 * ```ts
 * import { topicRewrite } from "./helpers.ts";
 * const up = topicRewrite("devices/+id/telemetry/#rest", "plant/{id}/{rest}");
 * if (up("devices/s1/telemetry/temp/c") !== "plant/s1/temp/c") throw new Error();
 * if (up("devices/s1/status") !== undefined) throw new Error("matched");
 * ```
 */
export function topicRewrite(pattern: string, template: string): TopicRewrite {
  const levels = pattern.split("/");
  const names = new Set<string>();
  levels.forEach((l, i) => {
    if (l.startsWith("#") && i !== levels.length - 1) {
      throw new TypeError(`Cannot compile topic pattern "${pattern}": # must be the last level`);
    }
    if (l.startsWith("+") || l.startsWith("#")) {
      if (l.length > 1) names.add(l.slice(1));
    } else if (l.includes("+") || l.includes("#")) {
      throw new TypeError(
        `Cannot compile topic pattern "${pattern}": a wildcard must start its level`,
      );
    }
  });
  for (const m of template.matchAll(/\{([^}]*)\}/g)) {
    if (!names.has(m[1])) {
      throw new TypeError(
        `Cannot compile topic template "${template}": {${m[1]}} is not named in "${pattern}"`,
      );
    }
  }
  return (topic) => {
    const parts = topic.split("/");
    const got: Record<string, string> = {};
    for (let i = 0; i < levels.length; i++) {
      const l = levels[i];
      if (l[0] === "#") {
        if (l.length > 1) got[l.slice(1)] = parts.slice(i).join("/");
        return fill(template, got);
      }
      if (i >= parts.length) return undefined;
      if (l[0] === "+") {
        if (l.length > 1) got[l.slice(1)] = parts[i];
      } else if (l !== parts[i]) return undefined;
    }
    return parts.length === levels.length ? fill(template, got) : undefined;
  };
}

function fill(template: string, values: Record<string, string>): string {
  // "{rest}" may be empty (`#` matched its parent level): no doubled or trailing separator.
  return template.replace(/\{([^}]*)\}/g, (_, k) => values[k]).replace(/\/{2,}/g, "/")
    .replace(/\/$/, "");
}

/**
 * One-shot form of {@link topicRewrite}.
 *
 * @example
 * ```ts
 * import { rewriteTopic } from "./helpers.ts";
 * if (rewriteTopic("a/b/c", "a/+x/#", "z/{x}") !== "z/b") throw new Error();
 * ```
 */
export function rewriteTopic(topic: string, pattern: string, template: string): string | undefined {
  return topicRewrite(pattern, template)(topic);
}

/**
 * A deadband: true (forward) when `value` differs from the last forwarded value of `key` by more
 * than `threshold`, or when there is none yet; the last forwarded value is kept in the rule's
 * persisted state, so it survives restarts.
 *
 * @example
 * ```ts
 * import { deadband } from "./helpers.ts";
 * const m = new Map<string, unknown>();
 * const ctx = { state: { get: (k: string) => m.get(k), set: (k: string, v: unknown) => m.set(k, v) } };
 * const seen = [20, 20.3, 20.6, 19.9].filter((v) => deadband(ctx as never, "t", v, 0.5));
 * if (seen.join() !== "20,20.6,19.9") throw new Error(seen.join());
 * ```
 */
export function deadband(ctx: RuleContext, key: string, value: number, threshold: number): boolean {
  const k = `deadband:${key}`;
  const last = ctx.state.get<number>(k);
  if (last !== undefined && Math.abs(value - last) <= threshold) return false;
  ctx.state.set(k, value);
  return true;
}

/** A closed window of {@link WindowAggregator}. */
export interface WindowResult {
  /** The key the values were added under (e.g. a device id or a topic). */
  key: string;
  /** Window start, ms (a multiple of the period). */
  start: number;
  /** Window end (exclusive), ms. */
  end: number;
  /** Values added. */
  count: number;
  /** Smallest value. */
  min: number;
  /** Largest value. */
  max: number;
  /** Sum of the values. */
  sum: number;
  /** Mean of the values. */
  avg: number;
}

interface OpenWindow {
  start: number;
  count: number;
  min: number;
  max: number;
  sum: number;
}

/**
 * Min/max/avg/count of values per key over fixed windows of `periodMs` (aligned to multiples of
 * it), flushed by the clock: call {@link add} with each value and its time, and {@link flush} with
 * the clock's time (from the rule's `tick` export) to collect every window that has ended. Lives
 * in the rule's memory: windows open when the rule restarts are lost.
 *
 * @example
 * ```ts
 * import { WindowAggregator } from "./helpers.ts";
 * const w = new WindowAggregator({ periodMs: 10_000 });
 * w.add("s1", 20, 1_000);
 * w.add("s1", 22, 9_000);
 * if (w.flush(9_999).length !== 0) throw new Error("flushed early");
 * const [r] = w.flush(10_000);
 * if (r.avg !== 21 || r.count !== 2 || r.start !== 0 || r.end !== 10_000) throw new Error();
 * ```
 */
export class WindowAggregator {
  readonly periodMs: number;
  #open = new Map<string, OpenWindow>();
  #closed: WindowResult[] = [];

  /** Creates the aggregator. */
  constructor(options: { periodMs: number }) {
    if (!(options.periodMs > 0)) {
      throw new RangeError(`Cannot aggregate: periodMs must be > 0, got ${options.periodMs}`);
    }
    this.periodMs = options.periodMs;
  }

  /** Adds `value` under `key` at time `at` (ms; use the message's `ts`). */
  add(key: string, value: number, at: number): void {
    const start = Math.floor(at / this.periodMs) * this.periodMs;
    let w = this.#open.get(key);
    if (w && w.start !== start) {
      if (start < w.start) return; // late value for a window already closed: ignored
      this.#closed.push(this.#result(key, w));
      w = undefined;
    }
    if (!w) {
      this.#open.set(key, { start, count: 1, min: value, max: value, sum: value });
      return;
    }
    w.count++;
    w.sum += value;
    if (value < w.min) w.min = value;
    if (value > w.max) w.max = value;
  }

  /** Every window that ended at or before `now`, oldest first; they are forgotten. */
  flush(now: number): WindowResult[] {
    const out = this.#closed;
    this.#closed = [];
    for (const [key, w] of this.#open) {
      if (w.start + this.periodMs <= now) {
        out.push(this.#result(key, w));
        this.#open.delete(key);
      }
    }
    return out.sort((a, b) => a.end - b.end);
  }

  #result(key: string, w: OpenWindow): WindowResult {
    return {
      key,
      start: w.start,
      end: w.start + this.periodMs,
      count: w.count,
      min: w.min,
      max: w.max,
      sum: w.sum,
      avg: w.sum / w.count,
    };
  }
}

/**
 * Marks an output for the northbound: it goes to the upstream broker directly (under the bridge's
 * prefix) instead of into the gateway.
 *
 * @example
 * ```ts
 * import { northbound } from "./helpers.ts";
 * if (northbound({ topic: "a", payload: "1" }).route !== "northbound") throw new Error();
 * ```
 */
export function northbound(output: RuleOutput): RuleOutput {
  return { ...output, route: "northbound" };
}

/**
 * Routes `msg` to the northbound with its topic rewritten by `rewrite` (a {@link topicRewrite}),
 * keeping its payload unless `payload` is given; null (drop) when the topic does not match.
 *
 * @example
 * ```ts
 * import { routeNorthbound, topicRewrite } from "./helpers.ts";
 * const up = topicRewrite("devices/+id/telemetry/#rest", "plant/{id}/{rest}");
 * const msg = { topic: "devices/s1/telemetry/t", payload: new Uint8Array([1]), qos: 1 } as never;
 * const out = routeNorthbound(msg, up);
 * if (out?.topic !== "plant/s1/t" || out.route !== "northbound" || out.qos !== 1) throw new Error();
 * ```
 */
export function routeNorthbound(
  msg: RuleMessage,
  rewrite: TopicRewrite,
  payload?: Uint8Array | string,
): RuleOutput | null {
  const topic = rewrite(msg.topic);
  if (topic === undefined) return null;
  return { topic, payload: payload ?? msg.payload, qos: msg.qos, route: "northbound" };
}
