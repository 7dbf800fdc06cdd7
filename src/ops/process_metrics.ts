/**
 * The standard process metrics every Prometheus client exports (`process_cpu_seconds_total`,
 * `process_open_fds`, `process_max_fds`, `process_resident_memory_bytes`,
 * `process_virtual_memory_bytes`, `process_start_time_seconds`), read at scrape time from
 * `/proc/self` as the Go and Python clients do, and `ferry_build_info` (the version running). On a
 * system without `/proc` the metrics that need it have no sample.
 *
 * @module
 */

import type { MetricsRegistry } from "../core/mod.ts";
import { VERSION } from "../version.ts";

/** Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`: 100 on every Linux ABI). */
const USER_HZ = 100;

/** What `/proc/self/stat` says of the process, or `undefined` without `/proc`. */
interface ProcStat {
  /** User plus system CPU time, seconds. */
  cpuSeconds: number;
  /** Virtual memory size, bytes. */
  virtualBytes: number;
}

/**
 * Parses the text of `/proc/<pid>/stat` (`proc(5)`): fields 14 and 15 are user and system time
 * in clock ticks, field 23 the virtual memory size in bytes. The command name (field 2) may hold
 * spaces and parentheses: fields are counted after its last `)`.
 *
 * @example
 * ```ts
 * import { parseProcStat } from "./process_metrics.ts";
 * const line = "42 (deno (x) y) S 1 42 42 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 9 0 100 123456 300";
 * const s = parseProcStat(line);
 * if (s?.cpuSeconds !== 3 || s.virtualBytes !== 123456) throw new Error(JSON.stringify(s));
 * ```
 */
export function parseProcStat(text: string): ProcStat | undefined {
  const end = text.lastIndexOf(")");
  if (end < 0) return undefined;
  const f = text.slice(end + 1).trim().split(/\s+/); // f[0] is field 3 (state)
  const utime = Number(f[11]), stime = Number(f[12]), vsize = Number(f[20]);
  if (![utime, stime, vsize].every(Number.isFinite)) return undefined;
  return { cpuSeconds: (utime + stime) / USER_HZ, virtualBytes: vsize };
}

/**
 * The soft limit on open files from the text of `/proc/<pid>/limits`; `Infinity` when unlimited.
 *
 * @example
 * ```ts
 * import { parseMaxFds } from "./process_metrics.ts";
 * const text = "Limit  Soft Limit  Hard Limit  Units\nMax open files            1024                 524288               files\n";
 * if (parseMaxFds(text) !== 1024) throw new Error();
 * ```
 */
export function parseMaxFds(text: string): number | undefined {
  const m = /^Max open files\s+(\S+)/m.exec(text);
  if (!m) return undefined;
  if (m[1] === "unlimited") return Infinity;
  const n = Number(m[1]);
  return Number.isFinite(n) ? n : undefined;
}

function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined; // no /proc (or not allowed to read it)
  }
}

function openFds(): number | undefined {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
    return n;
  } catch {
    return undefined;
  }
}

/** A gauge's value, or no sample. */
const sample = (v: number | undefined): number | Array<[Record<string, string>, number]> =>
  v === undefined ? [] : v;

/**
 * Registers the process metrics and `ferry_build_info` in `metrics`.
 *
 * @example
 * ```ts
 * import { MetricsRegistry } from "../core/mod.ts";
 * import { registerProcessMetrics } from "./process_metrics.ts";
 * const m = new MetricsRegistry();
 * registerProcessMetrics(m);
 * const text = m.render();
 * if (!/^process_resident_memory_bytes \d+$/m.test(text)) throw new Error(text);
 * if (!/^ferry_build_info\{.*version="\d+\.\d+\.\d+.*\} 1$/m.test(text)) throw new Error(text);
 * ```
 */
export function registerProcessMetrics(metrics: MetricsRegistry): void {
  const stat = () => {
    const t = readText("/proc/self/stat");
    return t === undefined ? undefined : parseProcStat(t);
  };
  metrics.counter(
    "process_cpu_seconds_total",
    "Total user and system CPU time spent in seconds.",
    () => stat()?.cpuSeconds,
  );
  metrics.gauge("process_open_fds", "Number of open file descriptors.", () => sample(openFds()));
  metrics.gauge("process_max_fds", "Maximum number of open file descriptors.", () => {
    const t = readText("/proc/self/limits");
    return sample(t === undefined ? undefined : parseMaxFds(t));
  });
  metrics.gauge(
    "process_resident_memory_bytes",
    "Resident memory size in bytes.",
    () => Deno.memoryUsage().rss,
  );
  metrics.gauge(
    "process_virtual_memory_bytes",
    "Virtual memory size in bytes.",
    () => sample(stat()?.virtualBytes),
  );
  const started = performance.timeOrigin / 1000;
  metrics.gauge(
    "process_start_time_seconds",
    "Start time of the process since unix epoch in seconds.",
    () => started,
  );
  const build = Object.freeze({
    version: VERSION,
    deno: Deno.version.deno,
    target: Deno.build.target,
  });
  metrics.gauge(
    "ferry_build_info",
    "The Ferry build running: its version, and the Deno and target it runs on (always 1)",
    () => [[build, 1]],
  );
}
