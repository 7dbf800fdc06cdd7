/**
 * The metrics of rules, per rule (label `rule`), in the gateway's {@link MetricsRegistry}:
 * messages in, outputs out (by route), dropped (by reason), errors (by kind), timeouts, restarts,
 * dead letters, and a latency histogram (message handed to the rule → its results back).
 *
 * @module
 */

import type { Counter, Histogram, MetricsRegistry } from "../core/metrics.ts";

type Labels = Readonly<Record<string, string>>;

/** Metric handles shared by every rule of an engine. */
export class RuleMetrics {
  /** Messages handed to a rule. */
  readonly in: Counter;
  /** Outputs accepted by their route. */
  readonly out: Counter;
  /** Messages or outputs dropped, by reason. */
  readonly dropped: Counter;
  /** Failures, by kind. */
  readonly errors: Counter;
  /** Messages over the time budget. */
  readonly timeouts: Counter;
  /** Worker restarts. */
  readonly restarts: Counter;
  /** Messages handed to the dead-letter sink. */
  readonly deadLetters: Counter;
  /** Seconds from a message handed to a rule to its results back. */
  readonly latency: Histogram;
  // Frozen label objects, one per combination: the registry caches rendered keys per object.
  #labels = new Map<string, Labels>();

  /** Registers the metrics. */
  constructor(registry: MetricsRegistry) {
    const r = registry;
    this.in = r.counter("ferry_rule_messages_in_total", "Messages handed to a rule");
    this.out = r.counter("ferry_rule_messages_out_total", "Rule outputs accepted, by route");
    this.dropped = r.counter("ferry_rule_dropped_total", "Rule messages or outputs dropped");
    this.errors = r.counter("ferry_rule_errors_total", "Rule failures by kind");
    this.timeouts = r.counter("ferry_rule_timeouts_total", "Rule messages over the time budget");
    this.restarts = r.counter("ferry_rule_restarts_total", "Rule worker restarts");
    this.deadLetters = r.counter("ferry_rule_dead_letters_total", "Rule dead letters");
    this.latency = r.histogram(
      "ferry_rule_latency_seconds",
      "Time from a message handed to a rule to its results back",
      [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    );
  }

  /** The `{ rule }` labels, or `{ rule, [key]: value }` (cached, frozen). */
  labels(rule: string, key?: string, value?: string): Labels {
    const id = key ? `${rule}\u0000${key}\u0000${value}` : rule;
    let l = this.#labels.get(id);
    if (!l) {
      l = Object.freeze(key ? { rule, [key]: value! } : { rule });
      this.#labels.set(id, l);
    }
    return l;
  }
}
