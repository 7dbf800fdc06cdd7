/**
 * The shared metric handles of the gateway, and one protocol's view of them with its labels bound
 * (the same frozen label objects every time: the metrics registry caches their rendered keys), so
 * an adapter counts a frame with `stats.frameIn()` and never builds a label set on a hot path.
 *
 * @module
 */

import type { Counter, Gauge, MetricsRegistry } from "./metrics.ts";
import type { Protocol } from "./message.ts";

/** Metric handles shared by every adapter (labels: `protocol`, plus `reason`/`code`). */
export interface CoreMetrics {
  /** Open connections by protocol. */
  connections: Gauge;
  /** Connections accepted. */
  connectionsAccepted: Counter;
  /** Frames/packets/datagrams received. */
  framesIn: Counter;
  /** Frames/packets/datagrams sent. */
  framesOut: Counter;
  /** Bytes received. */
  bytesIn: Counter;
  /** Bytes sent. */
  bytesOut: Counter;
  /** Messages published into the pipeline. */
  messagesIn: Counter;
  /** Messages delivered to subscribers/devices. */
  messagesOut: Counter;
  /** Messages or frames dropped, by reason. */
  drops: Counter;
  /** Protocol errors, by code. */
  errors: Counter;
  /** Sessions closed by the supervisor. */
  reaped: Counter;
  /** Connections refused by admission, by reason (`descriptors`, `address_limit`). */
  refusedConnections: Counter;
}

/** Registers the shared metrics in `m`. */
export function coreMetrics(m: MetricsRegistry): CoreMetrics {
  return {
    connections: m.gauge("ferry_connections", "Open device connections by protocol"),
    connectionsAccepted: m.counter(
      "ferry_connections_accepted_total",
      "Connections accepted by protocol",
    ),
    framesIn: m.counter("ferry_frames_received_total", "Frames/packets received"),
    framesOut: m.counter("ferry_frames_sent_total", "Frames/packets sent"),
    bytesIn: m.counter("ferry_received_bytes_total", "Bytes received from devices"),
    bytesOut: m.counter("ferry_sent_bytes_total", "Bytes sent to devices"),
    messagesIn: m.counter("ferry_messages_received_total", "Messages accepted into the pipeline"),
    messagesOut: m.counter("ferry_messages_delivered_total", "Messages delivered to devices"),
    drops: m.counter("ferry_dropped_total", "Messages or frames dropped, by reason"),
    errors: m.counter("ferry_errors_total", "Protocol errors by code"),
    reaped: m.counter("ferry_sessions_reaped_total", "Sessions closed for keepalive timeout"),
    refusedConnections: m.counter(
      "ferry_connections_refused_total",
      "Connections refused by admission (descriptor budget, per-address cap), by reason",
    ),
  };
}

type Labels = Readonly<Record<string, string>>;

/**
 * One protocol's counters.
 *
 * @example
 * ```ts
 * import { MetricsRegistry } from "./metrics.ts";
 * import { coreMetrics, ProtocolStats } from "./protocol_stats.ts";
 * const metrics = coreMetrics(new MetricsRegistry());
 * const stats = new ProtocolStats(metrics, "fbp");
 * stats.frameIn();
 * stats.drop("rate_limited", 2);
 * if (metrics.framesIn.get({ protocol: "fbp" }) !== 1) throw new Error();
 * if (metrics.drops.get({ protocol: "fbp", reason: "rate_limited" }) !== 2) throw new Error();
 * ```
 */
export class ProtocolStats {
  /** The protocol's label set (`{ protocol }`). */
  readonly labels: Labels;
  #m: CoreMetrics;
  #drops = new Map<string, Labels>();
  #errors = new Map<string, Labels>();

  /** Binds `metrics` to `protocol`. */
  constructor(metrics: CoreMetrics, protocol: Protocol) {
    this.#m = metrics;
    this.labels = Object.freeze({ protocol });
  }

  /** Counts `n` frames received. */
  frameIn(n = 1): void {
    this.#m.framesIn.inc(this.labels, n);
  }

  /** Counts `n` frames sent. */
  frameOut(n = 1): void {
    this.#m.framesOut.inc(this.labels, n);
  }

  /** Counts bytes received. */
  bytesIn(n: number): void {
    this.#m.bytesIn.inc(this.labels, n);
  }

  /** Counts bytes sent. */
  bytesOut(n: number): void {
    this.#m.bytesOut.inc(this.labels, n);
  }

  /** Counts `n` messages delivered to devices or subscribers. */
  delivered(n = 1): void {
    this.#m.messagesOut.inc(this.labels, n);
  }

  /** Counts `n` messages or frames dropped for `reason`. */
  drop(reason: string, n = 1): void {
    this.#m.drops.inc(this.#bound(this.#drops, "reason", reason), n);
  }

  /** Counts a protocol error of `code`. */
  error(code: string): void {
    this.#m.errors.inc(this.#bound(this.#errors, "code", code));
  }

  /** A connection was accepted and is open. */
  opened(): void {
    this.#m.connectionsAccepted.inc(this.labels);
    this.#m.connections.inc(this.labels);
  }

  /** An open connection ended. */
  closed(): void {
    this.#m.connections.inc(this.labels, -1);
  }

  #bound(cache: Map<string, Labels>, key: string, value: string): Labels {
    let l = cache.get(value);
    if (!l) cache.set(value, l = Object.freeze({ ...this.labels, [key]: value }));
    return l;
  }
}
