/**
 * A small Prometheus registry: counters, gauges (set or computed at scrape time) and histograms,
 * with labels, rendered in the text exposition format (version 0.0.4).
 *
 * @module
 */

type Labels = Record<string, string>;

// Hot paths pass the same (frozen, module-level) label objects every time: their rendered key is
// computed once. Label objects must not be mutated after first use.
const keyCache = new WeakMap<Labels, string>();

function labelKey(labels?: Labels): string {
  if (!labels) return "";
  let key = keyCache.get(labels);
  if (key === undefined) {
    const keys = Object.keys(labels).sort();
    key = keys.map((k) => `${k}="${escapeLabel(labels[k])}"`).join(",");
    keyCache.set(labels, key);
  }
  return key;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/** The label set a rendered key stands for (the inverse of {@link labelKey}). */
function parseLabelKey(key: string): Labels {
  const out: Labels = {};
  for (const m of key.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
    out[m[1]] = m[2].replace(/\\(.)/g, (_, c: string) => c === "n" ? "\n" : c);
  }
  return out;
}

function fmt(v: number): string {
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return Number.isNaN(v) ? "NaN" : String(v);
}

interface Metric {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  render(out: string[]): void;
}

/**
 * A monotonically increasing count, optionally per label set; or one read at scrape time from a
 * source that counts by itself (`collect`: CPU seconds from the kernel, say).
 */
export class Counter implements Metric {
  readonly type = "counter" as const;
  #values = new Map<string, number>();
  #collect?: () => number | undefined;
  /** Creates a counter; use {@link MetricsRegistry.counter}. */
  constructor(readonly name: string, readonly help: string, collect?: () => number | undefined) {
    this.#collect = collect;
  }
  /** Adds `n` (default 1). */
  inc(labels?: Labels, n = 1): void {
    const k = labelKey(labels);
    this.#values.set(k, (this.#values.get(k) ?? 0) + n);
  }
  /** Current value for a label set. */
  get(labels?: Labels): number {
    if (this.#collect) return labels ? 0 : this.#collect() ?? 0;
    return this.#values.get(labelKey(labels)) ?? 0;
  }
  /** Sum over every label set. */
  total(): number {
    if (this.#collect) return this.#collect() ?? 0;
    let t = 0;
    for (const v of this.#values.values()) t += v;
    return t;
  }
  /** Each label set's value (none for a collected counter: it has no label sets). */
  series(): Array<[Labels, number]> {
    return [...this.#values].map(([k, v]) => [parseLabelKey(k), v]);
  }
  /** Renders exposition lines (a collected counter with no value renders none). */
  render(out: string[]): void {
    if (this.#collect) {
      const v = this.#collect();
      if (v !== undefined) out.push(`${this.name} ${fmt(v)}`);
      return;
    }
    if (this.#values.size === 0) out.push(`${this.name} 0`);
    for (const [k, v] of this.#values) out.push(`${this.name}${k ? `{${k}}` : ""} ${fmt(v)}`);
  }
}

/** A value that goes up and down; either set, or computed by a callback at scrape time. */
export class Gauge implements Metric {
  readonly type = "gauge" as const;
  #values = new Map<string, number>();
  #collect?: () => number | Array<[Labels, number]>;
  /** Creates a gauge; use {@link MetricsRegistry.gauge}. */
  constructor(
    readonly name: string,
    readonly help: string,
    collect?: () => number | Array<[Labels, number]>,
  ) {
    this.#collect = collect;
  }
  /** Sets the value for a label set. */
  set(value: number, labels?: Labels): void {
    this.#values.set(labelKey(labels), value);
  }
  /** Adds `n` (may be negative). */
  inc(labels?: Labels, n = 1): void {
    const k = labelKey(labels);
    this.#values.set(k, (this.#values.get(k) ?? 0) + n);
  }
  /** Current value for a label set (computed gauges are evaluated). */
  get(labels?: Labels): number {
    if (this.#collect) {
      const v = this.#collect();
      if (typeof v === "number") return v;
      const k = labelKey(labels);
      return v.find(([l]) => labelKey(l) === k)?.[1] ?? 0;
    }
    return this.#values.get(labelKey(labels)) ?? 0;
  }
  /** Sum over every label set. */
  total(): number {
    if (this.#collect) {
      const v = this.#collect();
      return typeof v === "number" ? v : v.reduce((a, [, x]) => a + x, 0);
    }
    let t = 0;
    for (const v of this.#values.values()) t += v;
    return t;
  }
  /** Each label set's value (a computed gauge of one number: that number with no labels). */
  series(): Array<[Labels, number]> {
    if (this.#collect) {
      const v = this.#collect();
      return typeof v === "number" ? [[{}, v]] : v.map(([l, x]) => [{ ...l }, x]);
    }
    return [...this.#values].map(([k, v]) => [parseLabelKey(k), v]);
  }
  /** Renders exposition lines. */
  render(out: string[]): void {
    if (this.#collect) {
      const v = this.#collect();
      if (typeof v === "number") out.push(`${this.name} ${fmt(v)}`);
      else for (const [l, x] of v) out.push(`${this.name}{${labelKey(l)}} ${fmt(x)}`);
      return;
    }
    if (this.#values.size === 0) out.push(`${this.name} 0`);
    for (const [k, v] of this.#values) out.push(`${this.name}${k ? `{${k}}` : ""} ${fmt(v)}`);
  }
}

/** Observations counted into cumulative buckets. */
export class Histogram implements Metric {
  readonly type = "histogram" as const;
  #buckets: number[];
  #series = new Map<string, { counts: number[]; sum: number; count: number }>();
  /** Creates a histogram; use {@link MetricsRegistry.histogram}. */
  constructor(readonly name: string, readonly help: string, buckets: number[]) {
    this.#buckets = [...buckets].sort((a, b) => a - b);
  }
  /**
   * Records `n` observations of `value` (default one): a batch whose items share a value costs
   * one lookup, not one per item.
   */
  observe(value: number, labels?: Labels, n = 1): void {
    const k = labelKey(labels);
    let s = this.#series.get(k);
    if (!s) this.#series.set(k, s = { counts: this.#buckets.map(() => 0), sum: 0, count: 0 });
    for (let i = 0; i < this.#buckets.length; i++) if (value <= this.#buckets[i]) s.counts[i] += n;
    s.sum += value * n;
    s.count += n;
  }

  /**
   * The observations of a label set: the upper bounds, the cumulative count at or below each, the
   * sum and the count (all zero when nothing was observed).
   *
   * @example
   * ```ts
   * import { MetricsRegistry } from "./metrics.ts";
   * const h = new MetricsRegistry().histogram("t_seconds", "Time", [0.1, 1]);
   * h.observe(0.5, { rule: "a" }, 3);
   * const s = h.get({ rule: "a" });
   * if (s.count !== 3 || s.counts[0] !== 0 || s.counts[1] !== 3 || s.sum !== 1.5) throw new Error();
   * ```
   */
  get(labels?: Labels): { buckets: number[]; counts: number[]; sum: number; count: number } {
    const s = this.#series.get(labelKey(labels));
    return {
      buckets: [...this.#buckets],
      counts: s ? [...s.counts] : this.#buckets.map(() => 0),
      sum: s?.sum ?? 0,
      count: s?.count ?? 0,
    };
  }
  /** Renders exposition lines. */
  render(out: string[]): void {
    for (const [k, s] of this.#series) {
      const sep = k ? "," : "";
      this.#buckets.forEach((b, i) =>
        out.push(`${this.name}_bucket{${k}${sep}le="${fmt(b)}"} ${s.counts[i]}`)
      );
      out.push(`${this.name}_bucket{${k}${sep}le="+Inf"} ${s.count}`);
      out.push(`${this.name}_sum${k ? `{${k}}` : ""} ${fmt(s.sum)}`);
      out.push(`${this.name}_count${k ? `{${k}}` : ""} ${s.count}`);
    }
  }
}

/**
 * Holds every metric of a gateway and renders them for `/metrics`.
 *
 * @example
 * ```ts
 * import { MetricsRegistry } from "./metrics.ts";
 * const m = new MetricsRegistry();
 * const frames = m.counter("ferry_frames_received_total", "Frames received");
 * frames.inc({ protocol: "binary" }, 2);
 * const text = m.render();
 * if (!text.includes('ferry_frames_received_total{protocol="binary"} 2')) throw new Error(text);
 * const [[labels, n]] = frames.series();
 * if (labels.protocol !== "binary" || n !== 2) throw new Error();
 * ```
 */
export class MetricsRegistry {
  #metrics = new Map<string, Metric>();

  /** Gets or creates a counter; `collect` makes it read at scrape time (`undefined`: no sample). */
  counter(name: string, help: string, collect?: () => number | undefined): Counter {
    return this.#get(name, () => new Counter(name, help, collect)) as Counter;
  }

  /** Gets or creates a gauge; `collect` makes it computed at scrape time. */
  gauge(name: string, help: string, collect?: () => number | Array<[Labels, number]>): Gauge {
    return this.#get(name, () => new Gauge(name, help, collect)) as Gauge;
  }

  /** Gets or creates a histogram. */
  histogram(name: string, help: string, buckets: number[]): Histogram {
    return this.#get(name, () => new Histogram(name, help, buckets)) as Histogram;
  }

  /** A registered metric by name (e.g. to read another component's gauge), if any. */
  find(name: string): Counter | Gauge | Histogram | undefined {
    return this.#metrics.get(name) as Counter | Gauge | Histogram | undefined;
  }

  #get(name: string, make: () => Metric): Metric {
    let m = this.#metrics.get(name);
    if (!m) this.#metrics.set(name, m = make());
    return m;
  }

  /** The Prometheus text exposition of every metric. */
  render(): string {
    const out: string[] = [];
    for (const m of this.#metrics.values()) {
      out.push(`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`);
      m.render(out);
    }
    return out.join("\n") + "\n";
  }
}
