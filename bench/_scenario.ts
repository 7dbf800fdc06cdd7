/**
 * Scenarios and how one is run: every server of the scenario in turn, repetition after repetition
 * (A B C, A B C, A B C), each run isolated — its own temporary directory, its servers and load
 * processes killed in `finally`, every wait bounded — so a failing peer is reported as failed with
 * its error and the benchmark goes on. The results (`BenchResult`) are what `bench/report.ts`
 * renders.
 *
 * @module
 */

import type { Server, ServerInfo, ServerKind, StartOptions } from "./_servers.ts";
import { ratioByRep, type RatioSpread, type Spread, spread } from "./_stats.ts";
import { loadavg, progress } from "./_util.ts";

/** One figure a scenario reports. */
export interface Figure {
  /** Key in each run's `figures`. */
  key: string;
  /** Row label in the report. */
  label: string;
  /** Unit, which also decides how the report prints it. */
  unit: "msg/s" | "req/s" | "ms" | "bytes" | "count" | "%";
  /** Which direction is better. */
  better: "higher" | "lower";
}

/** The figures of one run and anything else worth keeping. */
export interface RunOutput {
  /** Values by {@link Figure.key}; `null` when not measured. */
  figures: Record<string, number | null>;
  /** Raw detail (rates cross-checked against `/metrics`, CPU, counts). */
  detail?: Record<string, unknown>;
}

/** What a scenario's `run` gets. */
export interface RunContext {
  /** The server under test. */
  kind: ServerKind;
  /** Repetition, from 1. */
  rep: number;
  /** Starts a server (the one under test or a helper such as an upstream broker) in a fresh
   * directory; it is stopped when the run ends, whatever happens. */
  start(kind: ServerKind, o?: Partial<Omit<StartOptions, "dir">>): Promise<Server>;
}

/** A scenario. */
export interface Scenario {
  /** Id (`--only` takes these). */
  id: string;
  /** Report section (`MQTT`, `FBP/1`, …). */
  section: string;
  /** What it measures and how, one or two sentences. */
  title: string;
  /** Servers in run order; the first is Ferry. */
  servers: ServerKind[];
  /** Figures reported. */
  figures: Figure[];
  /** Load parameters (recorded in the results). */
  params: Record<string, unknown>;
  /** Bound on one run, ms. */
  timeoutMs: number;
  /** One run against `ctx.kind`. */
  run(ctx: RunContext): Promise<RunOutput>;
}

/** One run in the results. */
export interface RunResult {
  /** Repetition, from 1. */
  rep: number;
  /** Server name. */
  server: string;
  /** Whether it produced figures. */
  ok: boolean;
  /** Why not. */
  error?: string;
  /** Load average (1, 5, 15 min) when the run started. */
  loadavg: [number, number, number];
  /** Wall time of the run, s. */
  seconds: number;
  /** Figures by key. */
  figures: Record<string, number | null>;
  /** Raw detail. */
  detail?: Record<string, unknown>;
}

/** A scenario in the results. */
export interface ScenarioResult {
  /** Id. */
  id: string;
  /** Report section. */
  section: string;
  /** What it measures. */
  title: string;
  /** Server names in run order. */
  servers: string[];
  /** Figures reported. */
  figures: Figure[];
  /** Load parameters. */
  params: Record<string, unknown>;
  /** Load average when the scenario started. */
  loadavg: [number, number, number];
  /** Wall time, s. */
  seconds: number;
  /** Every run. */
  runs: RunResult[];
  /** Per server, per figure: min/median/max over the repetitions. */
  summary: Record<string, Record<string, Spread>>;
  /** Per `a/b` server pair, per figure: the ratio rep by rep and its min/median/max. */
  ratios: Record<string, Record<string, RatioSpread>>;
}

/** A whole benchmark run. */
export interface BenchResult {
  /** Format of this file. */
  format: "ferry-bench/2";
  /** Start, ISO 8601. */
  date: string;
  /** Wall time of the whole run, s. */
  wallSeconds: number;
  /** `--quick`: smaller counts and shorter windows. */
  quick: boolean;
  /** Repetitions per server and scenario. */
  reps: number;
  /** What differs from a full run. */
  note?: string;
  /** The command line. */
  argv: string[];
  /** The machine. */
  machine: Record<string, unknown>;
  /** How each server was run. */
  servers: Record<string, ServerInfo>;
  /** Servers left out without being asked to (name → why), e.g. aedes without Node. */
  skipped?: Record<string, string>;
  /** Scenario results in run order. */
  scenarios: ScenarioResult[];
}

/** Servers whose figures are divided by the others' (Ferry and Ferry before a change). */
export function isFerry(name: string): boolean {
  return name === "ferry" || name.startsWith("ferry@");
}

/**
 * Ratios `a/b` rep by rep for every Ferry server `a` and every other server `b` of the scenario.
 *
 * @example
 * ```ts
 * import { ratiosOf, type RunResult } from "./_scenario.ts";
 * const run = (rep: number, server: string, v: number): RunResult => ({
 *   rep, server, ok: true, loadavg: [0, 0, 0], seconds: 1, figures: { x: v },
 * });
 * const r = ratiosOf(["ferry", "peer"], [run(1, "ferry", 2), run(1, "peer", 1), run(2, "ferry", 3),
 *   run(2, "peer", 1)], ["x"]);
 * if (r["ferry/peer"].x.median !== 2.5 || r["ferry/peer"].x.perRep.length !== 2) throw new Error();
 * ```
 */
export function ratiosOf(
  servers: string[],
  runs: RunResult[],
  keys: string[],
): Record<string, Record<string, RatioSpread>> {
  const reps = Math.max(0, ...runs.map((r) => r.rep));
  const series = (server: string, key: string) =>
    Array.from({ length: reps }, (_, i) => {
      const r = runs.find((x) => x.server === server && x.rep === i + 1);
      return r?.ok ? r.figures[key] : null;
    });
  const out: Record<string, Record<string, RatioSpread>> = {};
  for (const a of servers.filter(isFerry)) {
    for (const b of servers) {
      if (a === b || (b === "ferry" && a !== "ferry")) continue;
      const pair: Record<string, RatioSpread> = {};
      for (const k of keys) {
        const r = ratioByRep(series(a, k), series(b, k));
        if (r) pair[k] = r;
      }
      out[`${a}/${b}`] = pair;
    }
  }
  return out;
}

/** Per server, per figure: min/median/max of the successful runs. */
export function summaryOf(
  servers: string[],
  runs: RunResult[],
  keys: string[],
): Record<string, Record<string, Spread>> {
  const out: Record<string, Record<string, Spread>> = {};
  for (const s of servers) {
    out[s] = {};
    for (const k of keys) {
      const v = spread(runs.filter((r) => r.server === s && r.ok).map((r) => r.figures[k]));
      if (v) out[s][k] = v;
    }
  }
  return out;
}

/** Runs a scenario: `reps` interleaved repetitions over its servers. Never throws. */
export async function runScenario(s: Scenario, reps: number): Promise<ScenarioResult> {
  const t0 = performance.now();
  const startLoad = loadavg();
  const runs: RunResult[] = [];
  for (let rep = 1; rep <= reps; rep++) {
    for (const kind of s.servers) {
      progress(`${s.id} rep ${rep}/${reps}: ${kind.name} (load ${loadavg()[0].toFixed(2)})`);
      const r = await runOnce(s, kind, rep);
      runs.push(r);
      progress(
        r.ok
          ? `  ${kind.name}: ${Object.entries(r.figures).map(([k, v]) => `${k}=${v}`).join(" ")} (${
            r.seconds.toFixed(1)
          } s)`
          : `  ${kind.name} FAILED: ${r.error?.split("\n")[0]}`,
      );
    }
  }
  const names = s.servers.map((k) => k.name);
  const keys = s.figures.map((f) => f.key);
  return {
    id: s.id,
    section: s.section,
    title: s.title,
    servers: names,
    figures: s.figures,
    params: s.params,
    loadavg: startLoad,
    seconds: Math.round((performance.now() - t0) / 100) / 10,
    runs,
    summary: summaryOf(names, runs, keys),
    ratios: ratiosOf(names, runs, keys),
  };
}

/**
 * What the servers' logs last said about trouble, a few lines each: warnings, errors and Ferry's
 * closed sessions; with `broad` (a failed run) also any close, refusal, timeout or drop. Often the
 * reason a run failed or a figure is off.
 */
function troubleOf(servers: Server[], broad = false): string[] {
  const pattern = broad
    ? /warn|error|fatal|panic|clos|refus|timeout|drop/i
    : /warn|error|fatal|panic|"closing session"/i;
  return servers.flatMap((srv) =>
    srv.logTail(400).split("\n")
      .filter((l) => pattern.test(l) && !/"msg":"(closed|stopped|shutting down)"/.test(l))
      .slice(-4)
      .map((l) => `${srv.name}: ${l.slice(0, 300)}`)
  );
}

async function runOnce(s: Scenario, kind: ServerKind, rep: number): Promise<RunResult> {
  const t0 = performance.now();
  const la = loadavg();
  const root = await Deno.makeTempDir({ prefix: `ferry-bench-${s.id}-` });
  await Deno.chmod(root, 0o777); // mosquitto drops root privileges to its own user
  const started: Server[] = [];
  let n = 0;
  const ctx: RunContext = {
    kind,
    rep,
    async start(k, o = {}) {
      const dir = `${root}/${k.name.replace(/[^a-z0-9-]/gi, "_")}-${++n}`;
      await Deno.mkdir(dir);
      await Deno.chmod(dir, 0o777);
      const srv = await k.start({ ...o, dir });
      started.push(srv);
      return srv;
    },
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const out = await Promise.race([
      s.run(ctx),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`run not finished within ${s.timeoutMs / 1000} s`)),
          s.timeoutMs,
        );
      }),
    ]);
    for (const srv of started) {
      if (srv.exited()) throw new Error(`${srv.name} exited during the run:\n${srv.logTail()}`);
    }
    const trouble = troubleOf(started);
    return {
      rep,
      server: kind.name,
      ok: true,
      loadavg: la,
      seconds: (performance.now() - t0) / 1000,
      figures: out.figures,
      detail: trouble.length ? { ...out.detail, serverLog: trouble } : out.detail,
    };
  } catch (err) {
    const trouble = troubleOf(started, true);
    const logs = trouble.length ? trouble : ["(the servers' logs say nothing about trouble)"];
    return {
      rep,
      server: kind.name,
      ok: false,
      error: `${err instanceof Error ? err.message : String(err)}\n${logs.join("\n")}`,
      loadavg: la,
      seconds: (performance.now() - t0) / 1000,
      figures: {},
    };
  } finally {
    clearTimeout(timer);
    for (const srv of started.reverse()) {
      await Promise.resolve(srv[Symbol.asyncDispose]()).catch(() => {});
    }
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}
