/**
 * A short in-memory history of the gateway's own counters, for the dashboard's charts (served by
 * `GET /api/v1/admin/history`, so that they survive a page reload): one sample every
 * `intervalMs` for the last `samples` intervals (15 minutes at the defaults), each with the
 * messages received and delivered per second by protocol, the open connections by protocol and
 * the spool depth.
 *
 * It reads the core's metrics registry by metric name and `protocol` label only, so it names no
 * protocol: whatever adapters registered a label appears in the history.
 *
 * @module
 */

import type { Clock } from "../core/clock.ts";
import type { Counter, Gauge, MetricsRegistry } from "../core/metrics.ts";

/** One point of the history. */
export interface HistorySample {
  /** End of the interval, ms since the epoch. */
  time: number;
  /** Messages accepted into the pipeline per second over the interval, by protocol. */
  messagesIn: Record<string, number>;
  /** Messages delivered to devices and subscribers per second over the interval, by protocol. */
  messagesOut: Record<string, number>;
  /** Open connections at `time`, by protocol. */
  connections: Record<string, number>;
  /** Messages in the northbound spool at `time`; null without a northbound. */
  spoolDepth: number | null;
}

/** What {@link MetricsHistory.snapshot} returns (and the API serves). */
export interface HistorySnapshot {
  /** Time between samples, ms. */
  intervalMs: number;
  /** Most samples kept. */
  capacity: number;
  /** Oldest first. */
  samples: HistorySample[];
}

/** Tunables of {@link MetricsHistory}. */
export interface MetricsHistoryOptions {
  /** Time between samples, ms. @default 5000 */
  intervalMs?: number;
  /** Samples kept (older ones are dropped). @default 180 */
  samples?: number;
  /** Time source (tests pass a fake one). @default Date.now */
  clock?: Pick<Clock, "now">;
}

/** The metrics read (registered by the core's `coreMetrics` and the northbound). */
const MESSAGES_IN = "ferry_messages_received_total";
const MESSAGES_OUT = "ferry_messages_delivered_total";
const CONNECTIONS = "ferry_connections";
const SPOOL_DEPTH = "ferry_spool_depth";

/** Values by `protocol` label (series without one are left out). */
function byProtocol(metric: Counter | Gauge | undefined): Map<string, number> {
  const out = new Map<string, number>();
  if (!metric) return out;
  for (const [labels, v] of metric.series()) {
    const p = labels.protocol;
    if (p !== undefined) out.set(p, (out.get(p) ?? 0) + v);
  }
  return out;
}

/** Per-second rates between two counter readings (a protocol new since `before` started at 0). */
function rates(now: Map<string, number>, before: Map<string, number>, seconds: number) {
  const out: Record<string, number> = {};
  for (const [p, v] of now) {
    out[p] = Math.round(Math.max(0, v - (before.get(p) ?? 0)) / seconds * 1000) / 1000;
  }
  return out;
}

/**
 * Samples the core's counters on an interval into a bounded ring; {@link snapshot} is what the
 * management API serves.
 *
 * @example
 * ```ts
 * import { MetricsRegistry } from "../core/metrics.ts";
 * import { MetricsHistory } from "./metrics_history.ts";
 * const m = new MetricsRegistry();
 * const received = m.counter("ferry_messages_received_total", "…");
 * let now = 0;
 * const h = new MetricsHistory(m, { intervalMs: 1000, samples: 2, clock: { now: () => now } });
 * h.sample(); // the baseline: no point yet
 * received.inc({ protocol: "p1" }, 30);
 * now = 2000;
 * h.sample();
 * const s = h.snapshot();
 * if (s.samples.length !== 1 || s.samples[0].messagesIn.p1 !== 15) throw new Error();
 * if (s.samples[0].spoolDepth !== null) throw new Error();
 * ```
 */
export class MetricsHistory {
  #metrics: MetricsRegistry;
  #clock: Pick<Clock, "now">;
  #intervalMs: number;
  #capacity: number;
  #samples: HistorySample[] = [];
  #last: { time: number; in: Map<string, number>; out: Map<string, number> } | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;

  /** Creates the history over `metrics` (not started: see {@link start}). */
  constructor(metrics: MetricsRegistry, options: MetricsHistoryOptions = {}) {
    const intervalMs = options.intervalMs ?? 5000;
    const samples = options.samples ?? 180;
    if (!Number.isInteger(intervalMs) || intervalMs < 1) {
      throw new RangeError(`Cannot sample every ${intervalMs} ms: expected a positive integer`);
    }
    if (!Number.isInteger(samples) || samples < 1) {
      throw new RangeError(`Cannot keep ${samples} samples: expected a positive integer`);
    }
    this.#metrics = metrics;
    this.#clock = options.clock ?? { now: () => Date.now() };
    this.#intervalMs = intervalMs;
    this.#capacity = samples;
  }

  /** Takes the baseline and samples every `intervalMs` until {@link close} (the timer is unref'd). */
  start(): void {
    if (this.#timer !== undefined) return;
    this.sample();
    this.#timer = setInterval(() => this.sample(), this.#intervalMs);
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  /** Reads the counters now; appends a point unless this is the first reading (the baseline). */
  sample(): void {
    const m = this.#metrics;
    const time = this.#clock.now();
    const inNow = byProtocol(m.find(MESSAGES_IN) as Counter | undefined);
    const outNow = byProtocol(m.find(MESSAGES_OUT) as Counter | undefined);
    const last = this.#last;
    this.#last = { time, in: inNow, out: outNow };
    if (!last || time <= last.time) return;
    const seconds = (time - last.time) / 1000;
    const spool = m.find(SPOOL_DEPTH) as Gauge | undefined;
    const connections: Record<string, number> = {};
    for (const [p, v] of byProtocol(m.find(CONNECTIONS) as Gauge | undefined)) {
      connections[p] = v;
    }
    this.#samples.push({
      time,
      messagesIn: rates(inNow, last.in, seconds),
      messagesOut: rates(outNow, last.out, seconds),
      connections,
      spoolDepth: spool ? spool.total() : null,
    });
    if (this.#samples.length > this.#capacity) this.#samples.shift();
  }

  /** The samples kept, oldest first (a copy of the list). */
  snapshot(): HistorySnapshot {
    return {
      intervalMs: this.#intervalMs,
      capacity: this.#capacity,
      samples: this.#samples.slice(),
    };
  }

  /** Stops sampling (idempotent); the samples taken stay readable. */
  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Same as {@link close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
