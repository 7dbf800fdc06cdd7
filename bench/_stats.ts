/**
 * The benchmark's arithmetic, kept pure so it is unit-tested (`tests/bench_stats_test.ts`):
 * percentiles of latency samples, min/median/max of the repetitions of one figure, and the ratio
 * of two servers' figures rep by rep.
 *
 * @module
 */

/** Min, median and max of a figure over the repetitions that produced it. */
export interface Spread {
  /** Smallest value. */
  min: number;
  /** Median (the mean of the two middle values when their count is even). */
  median: number;
  /** Largest value. */
  max: number;
  /** How many repetitions produced a value. */
  n: number;
}

/** A ratio of two servers' figures, one per repetition, and their spread. */
export interface RatioSpread extends Spread {
  /** The ratio in each repetition, `null` where either server produced no value. */
  perRep: Array<number | null>;
}

/**
 * The `p`-th percentile (0..100) of `values` by the nearest-rank method: the smallest value with at
 * least `p`% of the values at or below it. `NaN` for no values.
 *
 * @example
 * ```ts
 * import { percentile } from "./_stats.ts";
 * const v = [5, 1, 4, 2, 3];
 * if (percentile(v, 50) !== 3 || percentile(v, 100) !== 5 || percentile(v, 0) !== 1) {
 *   throw new Error();
 * }
 * if (!Number.isNaN(percentile([], 50))) throw new Error();
 * ```
 */
export function percentile(values: ArrayLike<number>, p: number): number {
  if (values.length === 0) return NaN;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`Cannot take percentile ${p}: not in 0..100`);
  const s = Float64Array.from(values).sort();
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))];
}

/**
 * The median of `values` (mean of the two middle ones when their count is even); `NaN` for none.
 *
 * @example
 * ```ts
 * import { median } from "./_stats.ts";
 * if (median([3, 1, 2]) !== 2 || median([4, 1, 2, 3]) !== 2.5) throw new Error();
 * ```
 */
export function median(values: ArrayLike<number>): number {
  if (values.length === 0) return NaN;
  const s = Float64Array.from(values).sort();
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * Min, median and max of the finite numbers among `values` (a failed repetition is `null` or
 * `undefined` and is left out); `undefined` when none is left.
 *
 * @example
 * ```ts
 * import { spread } from "./_stats.ts";
 * const s = spread([10, null, 30, 20]);
 * if (s?.min !== 10 || s.median !== 20 || s.max !== 30 || s.n !== 3) throw new Error();
 * if (spread([null, undefined]) !== undefined) throw new Error();
 * ```
 */
export function spread(values: ArrayLike<number | null | undefined>): Spread | undefined {
  const ok: number[] = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v === "number" && Number.isFinite(v)) ok.push(v);
  }
  if (ok.length === 0) return undefined;
  return { min: Math.min(...ok), median: median(ok), max: Math.max(...ok), n: ok.length };
}

/**
 * The ratio `a[i] / b[i]` of two servers' figures in each repetition `i`, and the spread of those
 * ratios; a repetition where either value is missing, not finite, or `b` is 0 gives `null`.
 * `undefined` when no repetition gives a ratio.
 *
 * @example
 * ```ts
 * import { ratioByRep } from "./_stats.ts";
 * const r = ratioByRep([200, 300, null], [100, 100, 100]);
 * if (r?.median !== 2.5 || r.min !== 2 || r.max !== 3 || r.perRep[2] !== null) throw new Error();
 * ```
 */
export function ratioByRep(
  a: ArrayLike<number | null | undefined>,
  b: ArrayLike<number | null | undefined>,
): RatioSpread | undefined {
  const perRep: Array<number | null> = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    const ok = typeof x === "number" && typeof y === "number" && Number.isFinite(x) &&
      Number.isFinite(y) && y !== 0;
    perRep.push(ok ? x / y : null);
  }
  const s = spread(perRep);
  return s && { ...s, perRep };
}

/**
 * Rounds to `digits` significant digits (3 by default), for figures written to JSON.
 *
 * @example
 * ```ts
 * import { round } from "./_stats.ts";
 * if (round(123456) !== 123000 || round(0.012345) !== 0.0123 || round(2.5, 2) !== 2.5) {
 *   throw new Error();
 * }
 * ```
 */
export function round(x: number, digits = 3): number {
  if (!Number.isFinite(x) || x === 0) return x;
  return Number(x.toPrecision(digits));
}

/**
 * Latency samples counted in buckets 1% wide (relative), so load processes can report their
 * latencies compactly and the orchestrator can merge them and take percentiles. Values are in ms;
 * below 1 µs they count as 1 µs. Percentiles are exact to within 1%.
 *
 * @example
 * ```ts
 * import { LatencyHistogram } from "./_stats.ts";
 * const h = new LatencyHistogram();
 * for (let i = 1; i <= 100; i++) h.record(i);
 * const p50 = h.percentile(50);
 * if (Math.abs(p50 - 50) > 0.5 || h.count !== 100) throw new Error(String(p50));
 * const m = LatencyHistogram.from([h.toJSON(), h.toJSON()]);
 * if (m.count !== 200 || Math.abs(m.percentile(99) - 99) > 1) throw new Error();
 * ```
 */
export class LatencyHistogram {
  static readonly #STEP = Math.log(1.01);
  static readonly #MIN = 0.001;
  #buckets = new Map<number, number>();
  #count = 0;
  #max = 0;

  /** Merges histograms serialised by {@link toJSON}. */
  static from(parts: Array<{ buckets: Record<string, number>; max: number }>): LatencyHistogram {
    const h = new LatencyHistogram();
    for (const p of parts) {
      for (const [k, n] of Object.entries(p.buckets)) {
        h.#buckets.set(Number(k), (h.#buckets.get(Number(k)) ?? 0) + n);
        h.#count += n;
      }
      h.#max = Math.max(h.#max, p.max);
    }
    return h;
  }

  /** Counts one sample, ms. */
  record(ms: number): void {
    const b = Math.floor(
      Math.log(Math.max(ms, LatencyHistogram.#MIN) / LatencyHistogram.#MIN) /
        LatencyHistogram.#STEP,
    );
    this.#buckets.set(b, (this.#buckets.get(b) ?? 0) + 1);
    this.#count++;
    if (ms > this.#max) this.#max = ms;
  }

  /** Samples counted. */
  get count(): number {
    return this.#count;
  }

  /** The `p`-th percentile (nearest rank, to the middle of its bucket); NaN when empty. */
  percentile(p: number): number {
    if (this.#count === 0) return NaN;
    if (p >= 100) return this.#max;
    const rank = Math.max(1, Math.ceil((p / 100) * this.#count));
    let seen = 0;
    for (const b of [...this.#buckets.keys()].sort((x, y) => x - y)) {
      seen += this.#buckets.get(b)!;
      if (seen >= rank) {
        return Math.min(
          this.#max,
          LatencyHistogram.#MIN * Math.exp((b + 0.5) * LatencyHistogram.#STEP),
        );
      }
    }
    return this.#max;
  }

  /** A plain object for JSON. */
  toJSON(): { buckets: Record<string, number>; max: number } {
    return { buckets: Object.fromEntries(this.#buckets), max: this.#max };
  }
}
