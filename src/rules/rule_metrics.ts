/**
 * The metrics of rules, per rule (label `rule`), in the gateway's {@link MetricsRegistry}:
 * messages in, outputs out (by route), dropped (by reason), errors (by kind), timeouts, restarts,
 * dead letters, and a latency histogram (message handed to the rule → its results back). Each
 * rule's {@link RuleMeter} also keeps its totals as plain numbers, which the engine's list (the
 * admin API's view) reads; they outlive reloads of the rule.
 *
 * @module
 */

import type { Counter, Histogram, MetricsRegistry } from "../core/metrics.ts";

type Labels = Readonly<Record<string, string>>;

/** A rule's totals since the gateway started (over every version of it). */
export interface RuleCounters {
  /** Messages handed to the rule. */
  in: number;
  /** Outputs accepted by their route (core or northbound). */
  out: number;
  /** Messages the rule dropped (returned null) and messages or outputs dropped for it. */
  dropped: number;
  /** Failures (throws, timeouts, too large, crashes, refused outputs…). */
  errors: number;
  /** Messages over the time budget. */
  timeouts: number;
  /** Worker restarts. */
  restarts: number;
  /** Messages handed to the dead-letter sink. */
  deadLetters: number;
}

/** Latency of a rule from its histogram: bucket upper bounds, seconds (undefined: no data). */
export interface RuleLatency {
  /** Observations. */
  count: number;
  /** The bucket bound at or below which half of them are. */
  p50: number | undefined;
  /** The bucket bound at or below which 99 % of them are. */
  p99: number | undefined;
}

/** Metric handles shared by every rule of an engine. */
export class RuleMetrics {
  readonly #in: Counter;
  readonly #out: Counter;
  readonly #dropped: Counter;
  readonly #errors: Counter;
  readonly #timeouts: Counter;
  readonly #restarts: Counter;
  readonly #deadLetters: Counter;
  readonly #latency: Histogram;
  #meters = new Map<string, RuleMeter>();

  /** Registers the metrics. */
  constructor(registry: MetricsRegistry) {
    const r = registry;
    this.#in = r.counter("ferry_rule_messages_in_total", "Messages handed to a rule");
    this.#out = r.counter("ferry_rule_messages_out_total", "Rule outputs accepted, by route");
    this.#dropped = r.counter("ferry_rule_dropped_total", "Rule messages or outputs dropped");
    this.#errors = r.counter("ferry_rule_errors_total", "Rule failures by kind");
    this.#timeouts = r.counter("ferry_rule_timeouts_total", "Rule messages over the time budget");
    this.#restarts = r.counter("ferry_rule_restarts_total", "Rule worker restarts");
    this.#deadLetters = r.counter("ferry_rule_dead_letters_total", "Rule dead letters");
    this.#latency = r.histogram(
      "ferry_rule_latency_seconds",
      "Time from a message handed to a rule to its results back",
      [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    );
  }

  /** The meter of rule `name` (the same one for every version of the rule). */
  forRule(name: string): RuleMeter {
    let m = this.#meters.get(name);
    if (!m) {
      m = new RuleMeter(name, {
        in: this.#in,
        out: this.#out,
        dropped: this.#dropped,
        errors: this.#errors,
        timeouts: this.#timeouts,
        restarts: this.#restarts,
        deadLetters: this.#deadLetters,
        latency: this.#latency,
      });
      this.#meters.set(name, m);
    }
    return m;
  }
}

interface Handles {
  in: Counter;
  out: Counter;
  dropped: Counter;
  errors: Counter;
  timeouts: Counter;
  restarts: Counter;
  deadLetters: Counter;
  latency: Histogram;
}

/** One rule's metrics: the registry's counters under its labels, and its totals. */
export class RuleMeter {
  /** The rule's totals (read-only to callers). */
  readonly counters: RuleCounters = {
    in: 0,
    out: 0,
    dropped: 0,
    errors: 0,
    timeouts: 0,
    restarts: 0,
    deadLetters: 0,
  };
  readonly #rule: string;
  readonly #h: Handles;
  readonly #labels: Labels;
  // Frozen label objects, one per value: the registry caches rendered keys per object.
  #byKey = new Map<string, Labels>();

  /** Use {@link RuleMetrics.forRule}. */
  constructor(rule: string, handles: Handles) {
    this.#rule = rule;
    this.#h = handles;
    this.#labels = Object.freeze({ rule });
  }

  #with(key: string, value: string): Labels {
    const id = `${key}\u0000${value}`;
    let l = this.#byKey.get(id);
    if (!l) this.#byKey.set(id, l = Object.freeze({ rule: this.#rule, [key]: value }));
    return l;
  }

  /** `n` messages handed to the rule. */
  in(n = 1): void {
    this.counters.in += n;
    this.#h.in.inc(this.#labels, n);
  }

  /** `n` outputs accepted by `route`. */
  out(route: string, n = 1): void {
    this.counters.out += n;
    this.#h.out.inc(this.#with("route", route), n);
  }

  /** `n` messages or outputs dropped for `reason`. */
  dropped(reason: string, n = 1): void {
    this.counters.dropped += n;
    this.#h.dropped.inc(this.#with("reason", reason), n);
  }

  /** A failure of `kind`. */
  error(kind: string): void {
    this.counters.errors++;
    this.#h.errors.inc(this.#with("kind", kind));
  }

  /** A message over the time budget. */
  timeout(): void {
    this.counters.timeouts++;
    this.#h.timeouts.inc(this.#labels);
  }

  /** A worker restart. */
  restart(): void {
    this.counters.restarts++;
    this.#h.restarts.inc(this.#labels);
  }

  /** A dead letter. */
  deadLetter(): void {
    this.counters.deadLetters++;
    this.#h.deadLetters.inc(this.#labels);
  }

  /** `n` messages whose results came back after `seconds`. */
  latency(seconds: number, n = 1): void {
    this.#h.latency.observe(seconds, this.#labels, n);
  }

  /** p50 and p99 of the latency histogram (bucket upper bounds). */
  latencySummary(): RuleLatency {
    const s = this.#h.latency.get(this.#labels);
    const at = (q: number) => {
      const i = s.counts.findIndex((c) => c >= q * s.count);
      return s.count === 0 ? undefined : i < 0 ? Infinity : s.buckets[i];
    };
    return { count: s.count, p50: at(0.5), p99: at(0.99) };
  }
}
