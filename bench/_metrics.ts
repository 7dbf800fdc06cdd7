/**
 * Reading Ferry's `/metrics` from outside: the Prometheus text format parsed into samples, and
 * counter sums by name and labels. The benchmark reads counters before and after a measurement
 * window to count what the gateway itself processed.
 *
 * @module
 */

/** One sample line: metric name, labels, value. */
export interface Sample {
  /** Metric name. */
  name: string;
  /** Label values by name. */
  labels: Record<string, string>;
  /** The value. */
  value: number;
}

/**
 * Parses the Prometheus text exposition format (comments skipped, escapes in label values kept
 * as written except `\"`).
 *
 * @example
 * ```ts
 * import { parseMetrics } from "./_metrics.ts";
 * const s = parseMetrics('# HELP x y\nferry_x{protocol="mqtt"} 3\nferry_up 1\n');
 * if (s.length !== 2 || s[0].labels.protocol !== "mqtt" || s[0].value !== 3) throw new Error();
 * ```
 */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    if (m[2]) {
      for (const l of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
        labels[l[1]] = l[2].replace(/\\"/g, '"');
      }
    }
    const v = m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : Number(m[3]);
    out.push({ name: m[1], labels, value: v });
  }
  return out;
}

/**
 * The sum of every sample named `name` whose labels include `labels`; `undefined` when there is no
 * such sample (the gateway does not export it).
 *
 * @example
 * ```ts
 * import { parseMetrics, sumOf } from "./_metrics.ts";
 * const s = parseMetrics('m{p="a",r="x"} 1\nm{p="a",r="y"} 2\nm{p="b"} 4\n');
 * if (sumOf(s, "m", { p: "a" }) !== 3 || sumOf(s, "m") !== 7) throw new Error();
 * if (sumOf(s, "other") !== undefined) throw new Error();
 * ```
 */
export function sumOf(
  samples: Sample[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  let sum: number | undefined;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (!Object.entries(labels).every(([k, v]) => s.labels[k] === v)) continue;
    sum = (sum ?? 0) + s.value;
  }
  return sum;
}

/** Fetches and parses `/metrics` (bounded: 5 s); `undefined` if the gateway does not answer. */
export async function scrape(url: string | undefined): Promise<Sample[] | undefined> {
  if (!url) return undefined;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) {
      await res.body?.cancel();
      return undefined;
    }
    return parseMetrics(await res.text());
  } catch {
    return undefined;
  }
}

/**
 * A counter of the gateway now (`sumOf` over a fresh scrape) and when it was read: the middle of
 * the request (`performance.now()`), as a busy gateway answers late. `undefined` when there is no
 * such counter.
 */
export async function readCounter(
  url: string | undefined,
  name: string,
  labels: Record<string, string> = {},
): Promise<{ value: number; at: number } | undefined> {
  const t0 = performance.now();
  const s = await scrape(url);
  const value = s && sumOf(s, name, labels);
  return value === undefined ? undefined : { value, at: (t0 + performance.now()) / 2 };
}

/** The rate of a counter between two reads, per second; `null` if either is missing. */
export function rateBetween(
  a: { value: number; at: number } | undefined,
  b: { value: number; at: number } | undefined,
): number | null {
  return a && b && b.at > a.at ? (b.value - a.value) / ((b.at - a.at) / 1000) : null;
}
