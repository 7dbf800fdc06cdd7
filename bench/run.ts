/**
 * `deno task bench`: Ferry as the README starts it (`deno task start`, default config, device
 * topics) side by side with its peers, measured from outside, in interleaved repetitions
 * (A B C, A B C, A B C). JSON results go to `bench/results/` and stdout, progress to stderr;
 * `deno task bench:report FILE` renders the README's tables from them.
 *
 * ```
 * deno task bench [--quick] [--only id,…] [--skip server,…] [--compare DIR] [--reps N] [--out DIR]
 *                 [--list]
 * ```
 *
 * - `--quick`: smaller counts, 2 s windows, one repetition (the JSON says so).
 * - `--only`: a subset of scenarios (ids from `--list`).
 * - `--compare DIR`: also runs the Ferry of another checkout (its own `deno task start`, from DIR)
 *   as `ferry@before`, in the same interleaved repetitions, e.g. a `git worktree` of an older
 *   commit.
 * - `--skip`: leave these servers out (e.g. `aedes,mosquitto-bridge` to shorten a `--compare`
 *   run); Ferry cannot be skipped.
 * - `--reps N`: repetitions (default 3; 1 with `--quick`).
 * - `--out DIR`: where the result file goes (default `bench/results/`, git-ignored).
 *
 * aedes runs on Node; without `node` on the PATH it is left out and the results say so.
 *
 * A scenario never stops the run: each run is isolated and bounded, failures are reported.
 *
 * @module
 */

import {
  aedes,
  ferry,
  floor,
  libcoap,
  mosquitto,
  nodeVersion,
  type ServerKind,
} from "./_servers.ts";
import { type BenchResult, runScenario, type Scenario } from "./_scenario.ts";
import { loadavg, progress } from "./_util.ts";
import { startupScenarios } from "./scenarios/startup.ts";
import { mqttScenarios } from "./scenarios/mqtt.ts";
import { fbpScenarios } from "./scenarios/fbp.ts";
import { coapScenarios } from "./scenarios/coap.ts";
import { httpScenarios } from "./scenarios/http.ts";
import { northboundScenarios } from "./scenarios/northbound.ts";

/** Parsed flags. */
export interface BenchArgs {
  quick: boolean;
  only?: string[];
  skip: string[];
  compare?: string;
  reps: number;
  list: boolean;
  out?: string;
}

/** Parses the command line; throws a `TypeError` naming a bad flag. */
export function parseArgs(args: string[]): BenchArgs {
  const out: BenchArgs = { quick: false, reps: 0, list: false, skip: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = () => {
      const v = args[++i];
      if (v === undefined || v.startsWith("--")) throw new TypeError(`${a} needs a value`);
      return v;
    };
    if (a === "--quick") out.quick = true;
    else if (a === "--list") out.list = true;
    else if (a === "--only") out.only = value().split(",").map((s) => s.trim()).filter(Boolean);
    else if (a === "--skip") out.skip = value().split(",").map((s) => s.trim()).filter(Boolean);
    else if (a === "--compare") out.compare = value();
    else if (a === "--out") out.out = value();
    else if (a === "--reps") {
      out.reps = Number(value());
      if (!Number.isInteger(out.reps) || out.reps < 1) throw new TypeError("--reps wants N >= 1");
    } else throw new TypeError(`unknown flag ${a}`);
  }
  if (!out.reps) out.reps = out.quick ? 1 : 3;
  if (out.skip.some((s) => s === "ferry" || s.startsWith("ferry@"))) {
    throw new TypeError("--skip cannot leave Ferry out");
  }
  return out;
}

/** Every scenario, in run order. */
export function allScenarios(ferries: ServerKind[], quick: boolean): Scenario[] {
  const mqttPeers = [mosquitto(), aedes()];
  return [
    ...startupScenarios([...ferries, ...mqttPeers], quick),
    ...mqttScenarios([...ferries, ...mqttPeers], quick),
    ...fbpScenarios(
      [...ferries, floor("floor", "bare_fbp_server.ts", "binary", "bare FBP/1 floor")],
      quick,
    ),
    ...coapScenarios([...ferries, libcoap()], quick),
    ...httpScenarios(
      [...ferries, floor("ceiling", "http_ceiling.ts", "http", "plain Deno.serve ceiling")],
      ferries,
      quick,
    ),
    ...northboundScenarios([...ferries, mosquitto("mosquitto-bridge", true)], quick),
  ];
}

async function main(): Promise<number> {
  let args: BenchArgs;
  try {
    args = parseArgs(Deno.args);
  } catch (err) {
    console.error(`bench: ${(err as Error).message}`);
    return 2;
  }
  const skipped: Record<string, string> = {};
  const node = await nodeVersion();
  if (!node && !args.skip.includes("aedes")) {
    skipped.aedes = "node is not installed (aedes runs on Node, not Deno)";
    args.skip.push("aedes");
  }
  const ferries = [ferry("ferry")];
  if (args.compare) {
    const dir = await Deno.realPath(args.compare).catch(() => undefined);
    if (!dir) {
      console.error(`bench: --compare ${args.compare}: no such directory`);
      return 2;
    }
    ferries.push(ferry("ferry@before", dir));
  }
  const scenarios = allScenarios(ferries, args.quick);
  if (args.list) {
    for (const s of scenarios) console.log(`${s.id}\t${s.section}\t${s.title}`);
    return 0;
  }
  const unknown = args.only?.filter((id) => !scenarios.some((s) => s.id === id));
  if (unknown?.length) {
    console.error(`bench: unknown scenario ${unknown.join(", ")} (see --list)`);
    return 2;
  }
  const chosen = scenarios
    .filter((s) => !args.only || args.only.includes(s.id))
    .map((s) => ({ ...s, servers: s.servers.filter((k) => !args.skip.includes(k.name)) }));

  // A stray rejection in a helper must not end the run: it is reported and the run goes on.
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    progress(`unhandled rejection (ignored): ${e.reason}`);
  });
  globalThis.addEventListener("error", (e) => {
    e.preventDefault();
    progress(`uncaught error (ignored): ${e.error ?? e.message}`);
  });

  const t0 = performance.now();
  const date = new Date().toISOString();
  const servers: BenchResult["servers"] = {};
  for (const s of chosen) {
    for (const k of s.servers) {
      servers[k.name] ??= await k.info().catch((err) => ({
        label: k.name,
        command: [],
        notes: `info unavailable: ${err}`,
      }));
    }
  }
  const result: BenchResult = {
    format: "ferry-bench/2",
    date,
    wallSeconds: 0,
    quick: args.quick,
    reps: args.reps,
    note: args.quick
      ? `--quick: smaller counts, 2 s windows, ${args.reps} repetition${
        args.reps > 1 ? "s" : ""
      }: a smoke run, not for the README`
      : args.reps !== 3
      ? `${args.reps} repetitions instead of 3`
      : undefined,
    argv: Deno.args,
    machine: {
      cores: navigator.hardwareConcurrency,
      deno: Deno.version.deno,
      v8: Deno.version.v8,
      os: `${Deno.build.os} ${Deno.osRelease()}`,
      arch: Deno.build.arch,
      memoryBytes: Deno.systemMemoryInfo().total,
      loadavgAtStart: loadavg(),
    },
    servers,
    skipped: Object.keys(skipped).length ? skipped : undefined,
    scenarios: [],
  };
  for (const s of chosen) {
    progress(`== ${s.id}: ${s.title}`);
    result.scenarios.push(await runScenario(s, args.reps));
  }
  result.wallSeconds = Math.round((performance.now() - t0) / 1000);
  result.machine.loadavgAtEnd = loadavg();
  const text = JSON.stringify(result, null, 2);
  const dir = args.out ?? new URL("./results/", import.meta.url).pathname;
  await Deno.mkdir(dir, { recursive: true });
  const file = `${dir.replace(/\/+$/, "")}/${date.replaceAll(":", "-")}${
    args.quick ? "-quick" : ""
  }.json`;
  await Deno.writeTextFile(file, text + "\n");
  console.log(text);
  const failed = result.scenarios.flatMap((s) =>
    s.runs.filter((r) => !r.ok).map((r) => `${s.id}/${r.server}#${r.rep}`)
  );
  progress(
    `done in ${result.wallSeconds} s; ${
      failed.length ? `failed runs: ${failed.join(", ")}` : "no run failed"
    }; results in ${file}; render with: deno task bench:report ${file}`,
  );
  return 0;
}

if (import.meta.main) Deno.exit(await main());
