/**
 * What every load program (`bench/load/*.ts`) shares: it runs in its own process, takes its
 * parameters as one JSON argument, writes progress to stderr and its result as one JSON line on
 * stdout, and exits. The orchestrator (`bench/_load.ts`) bounds it in time and kills it if needed,
 * so a load program that fails or hangs costs one run, never the whole benchmark.
 *
 * @module
 */

import { cpuSecondsOf, rssOf } from "../_util.ts";

/** Runs `fn` on the JSON parameters in `Deno.args[0]`; prints its result; exits. */
export async function runChild<P>(fn: (params: P) => Promise<unknown>): Promise<never> {
  let params: P;
  try {
    params = JSON.parse(Deno.args[0] ?? "");
  } catch {
    console.error("usage: deno run -A bench/load/<name>.ts '<JSON parameters>'");
    Deno.exit(2);
  }
  try {
    const result = await fn(params);
    console.log(JSON.stringify(result));
    Deno.exit(0);
  } catch (err) {
    console.error(err instanceof Error ? err.stack ?? err.message : String(err));
    Deno.exit(1);
  }
}

/** Writes a progress line to stderr (the orchestrator prefixes and forwards it). */
export function note(msg: string): void {
  console.error(msg);
}

/** A measurement window over a server process: wall time, CPU time and RSS at both ends. */
export class Window {
  #pid: number;
  /** `performance.now()` at the start. */
  t0 = NaN;
  /** `performance.now()` at the end. */
  t1 = NaN;
  #cpu0 = NaN;
  #cpu1 = NaN;
  /** Whether the window is open. */
  open = false;

  /** A window over `pid`'s process. */
  constructor(pid: number) {
    this.#pid = pid;
  }

  /** Opens the window. */
  start(): void {
    this.#cpu0 = safe(() => cpuSecondsOf(this.#pid));
    this.t0 = performance.now();
    this.open = true;
  }

  /** Closes the window. */
  end(): void {
    this.open = false;
    this.t1 = performance.now();
    this.#cpu1 = safe(() => cpuSecondsOf(this.#pid));
  }

  /** Length in seconds. */
  get seconds(): number {
    return (this.t1 - this.t0) / 1000;
  }

  /** The server's CPU use during the window, % of one core (threads added up). */
  get cpuPercent(): number {
    return Math.round((100 * (this.#cpu1 - this.#cpu0)) / this.seconds);
  }

  /** The server's RSS now, or NaN if it is gone. */
  rss(): number {
    return safe(() => rssOf(this.#pid));
  }
}

function safe(f: () => number): number {
  try {
    return f();
  } catch {
    return NaN;
  }
}

/** Runs `fn(i)` for `i` in `0..n-1`, at most `width` at once; results in order. */
export async function pool<T>(
  n: number,
  width: number,
  fn: (i: number) => Promise<T>,
): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, n) }, async () => {
    while (next < n) {
      const i = next++;
      out[i] = await fn(i);
    }
  }));
  return out;
}

/** Waits until `cond()` holds (checked every 20 ms) or `ms` pass; returns whether it held. */
export async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** A device id for load client `i` (also the MQTT client id and the topic level). */
export function deviceId(i: number): string {
  return `bench-dev-${String(i).padStart(5, "0")}`;
}
