/**
 * CoAP load, Ferry against libcoap, with a client that does not cap either: `bench/coap_load.c`
 * (built here with the system's C compiler) keeps one Confirmable request outstanding per device,
 * one UDP socket per device, in its own process. Ferry runs as `deno task start` runs it (the
 * task's flags, the embedded default config; only the ports and the data directory are set);
 * libcoap is `coap-server-notls` (or `coap-server`) answering `PUT /example_data` from memory, as
 * its users run it. Ferry's requests are `POST /d/dev{i}/telemetry` (anonymous devices are
 * allowed on loopback by default): logged in, published into the core, acknowledged 2.04.
 *
 * Runs are interleaved (Ferry, libcoap, Ferry, …), each server a fresh process, each window
 * measured by the client after a warm-up; min/median/max and the load average are printed, and
 * one JSON line at the end. The machine is shared and has two cores (server and client on the
 * same machine): the figures are noisy, compare medians of the same run.
 *
 * ```sh
 * deno run -A bench/coap_load.ts [--devices 1000] [--seconds 10] [--warmup 3] [--reps 3]
 *   [--ferry-dir DIR]   # the Ferry checkout to run (default: this one)
 *   [--before DIR]      # also run another checkout, interleaved ("before", for before/after)
 *   [--only ferry|libcoap]
 * ```
 *
 * @module
 */

interface Flags {
  devices: number;
  seconds: number;
  warmup: number;
  reps: number;
  ferryDir: string;
  before?: string;
  only?: "ferry" | "libcoap";
}

/** One client window. */
export interface LoadResult {
  devices: number;
  seconds: number;
  ok: number;
  other: number;
  timeouts: number;
  stray: number;
  rps: number;
  p50_us: number;
  p99_us: number;
}

import { coapServerPath } from "../tests/_coap_harness.ts";

const here = new URL(".", import.meta.url).pathname;

function parseFlags(args: string[]): Flags {
  const f: Flags = {
    devices: 1000,
    seconds: 10,
    warmup: 3,
    reps: 3,
    ferryDir: new URL("..", import.meta.url).pathname,
  };
  for (let i = 0; i < args.length; i++) {
    const v = args[i + 1];
    switch (args[i]) {
      case "--devices":
        f.devices = Number(v);
        break;
      case "--seconds":
        f.seconds = Number(v);
        break;
      case "--warmup":
        f.warmup = Number(v);
        break;
      case "--reps":
        f.reps = Number(v);
        break;
      case "--ferry-dir":
        f.ferryDir = v;
        break;
      case "--before":
        f.before = v;
        break;
      case "--only":
        if (v !== "ferry" && v !== "libcoap") throw new TypeError(`--only ferry|libcoap, not ${v}`);
        f.only = v;
        break;
      default:
        throw new TypeError(`Cannot run coap_load: unknown flag ${args[i]}`);
    }
    i++;
  }
  return f;
}

/** Builds the C client; its path. */
async function buildClient(dir: string): Promise<string> {
  const out = `${dir}/coap_load`;
  const cc = Deno.env.get("CC") ?? "cc";
  const r = await new Deno.Command(cc, {
    args: ["-O2", "-o", out, `${here}coap_load.c`],
    stderr: "piped",
  }).output().catch((err) => {
    throw new Error(`Cannot build the load client: ${cc} not found (${err.message})`);
  });
  if (!r.success) {
    throw new Error(`Cannot build the load client: ${new TextDecoder().decode(r.stderr)}`);
  }
  return out;
}

function freeUdpPort(): number {
  const probe = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  return port;
}

interface Server {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

/**
 * CPU seconds (user + system) the main thread of a process has used so far, from /proc: the
 * thread that serves the requests in both servers (Deno's GC helpers and I/O threads are not the
 * bottleneck and would make a multi-threaded process look slower per request).
 */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

/** The flags `deno task start` passes to `deno run`, from the checkout's deno.json. */
function startFlags(dir: string): string[] {
  const cfg = JSON.parse(Deno.readTextFileSync(`${dir}/deno.json`));
  const words = String(cfg.tasks.start).split(/\s+/);
  if (words[0] !== "deno" || words[1] !== "run") {
    throw new Error(`Cannot read the start task of ${dir}/deno.json: ${cfg.tasks.start}`);
  }
  return words.slice(2, words.indexOf("main.ts"));
}

/**
 * `--mqtt-ws-port 0` when the checkout has that listener (MQTT over WebSocket, on 8083 by default
 * since #16: without a free port of its own it would take 8083; an older checkout refuses the flag).
 */
async function wsPortFlag(dir: string): Promise<string[]> {
  const help = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...startFlags(dir), "main.ts", "--help"],
    cwd: dir,
    stdin: "null",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(help.stdout).includes("--mqtt-ws-port")
    ? ["--mqtt-ws-port", "0"]
    : [];
}

async function startFerry(dir: string): Promise<Server> {
  const data = await Deno.makeTempDir({ prefix: "ferry-coap-load-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...startFlags(dir),
      "main.ts",
      "--binary-port",
      "0",
      "--mqtt-port",
      "0",
      "--http-port",
      "0",
      "--coap-port",
      "0",
      ...await wsPortFlag(dir),
      "--data-dir",
      data,
    ],
    cwd: dir,
    stdout: "null",
    stderr: "piped", // the log, where the "ready" line tells the port
  }).spawn();
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let port: number | undefined;
  const deadline = AbortSignal.timeout(30_000);
  while (port === undefined) {
    if (deadline.aborted) throw new Error("Ferry did not report ready within 30 s");
    const { value, done } = await lines.read();
    if (done) throw new Error("Ferry exited before it was ready");
    buf += value;
    for (const l of buf.split("\n")) {
      if (!l.includes('"ready"')) continue;
      port = JSON.parse(l).addresses.coap.port;
    }
    buf = buf.slice(buf.lastIndexOf("\n") + 1);
  }
  // keep draining the log (one "device online" line per device) so the pipe never fills
  const drained = (async () => {
    while (!(await lines.read()).done) { /* discard */ }
  })();
  return {
    port,
    pid: child.pid,
    async stop() {
      child.kill("SIGINT");
      await child.status;
      await drained;
      await Deno.remove(data, { recursive: true });
    },
  };
}

async function startLibcoap(): Promise<Server> {
  const port = freeUdpPort();
  const child = new Deno.Command(coapServerPath(), {
    args: ["-A", "127.0.0.1", "-p", String(port), "-v", "0"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await new Promise((r) => setTimeout(r, 300));
  return {
    port,
    pid: child.pid,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

/**
 * Runs the client against `server`; also measures the server's CPU time during the window (the
 * figure the machine's load disturbs least: CPU µs per request).
 */
async function runClient(
  client: string,
  server: Server,
  kind: "ferry" | "libcoap",
  f: Flags,
): Promise<LoadResult & { cpu_us_per_req: number }> {
  const run = new Deno.Command(client, {
    args: [
      "127.0.0.1",
      String(server.port),
      String(f.devices),
      String(f.warmup),
      String(f.seconds),
      kind,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  await new Promise((r) => setTimeout(r, f.warmup * 1000));
  const cpu0 = cpuSeconds(server.pid);
  const out = await run;
  const cpu = cpuSeconds(server.pid) - cpu0;
  if (!out.success) throw new Error(`The load client failed against ${kind}`);
  const r: LoadResult = JSON.parse(new TextDecoder().decode(out.stdout));
  return { ...r, cpu_us_per_req: Math.round(cpu * 1e6 / Math.max(1, r.ok + r.other)) };
}

function stats(xs: number[]): { min: number; median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor((s.length - 1) / 2)], max: s[s.length - 1] };
}

if (import.meta.main) {
  const f = parseFlags(Deno.args);
  const tmp = await Deno.makeTempDir({ prefix: "coap-load-" });
  const client = await buildClient(tmp);
  type Kind = "before" | "ferry" | "libcoap";
  type Run = LoadResult & { cpu_us_per_req: number };
  const runs: Record<Kind, Run[]> = { before: [], ferry: [], libcoap: [] };
  const kinds = (["before", "ferry", "libcoap"] as const).filter((k) =>
    k === "before" ? f.before !== undefined && !f.only : !f.only || f.only === k
  );
  const load: number[][] = [];
  for (let rep = 1; rep <= f.reps; rep++) {
    for (const kind of kinds) {
      const server = kind === "libcoap"
        ? await startLibcoap()
        : await startFerry(kind === "before" ? f.before! : f.ferryDir);
      try {
        const r = await runClient(client, server, kind === "libcoap" ? kind : "ferry", f);
        runs[kind].push(r);
        load.push(Deno.loadavg());
        console.error(
          `rep ${rep} ${kind.padEnd(7)} ${String(r.rps).padStart(7)} req/s  p50 ${
            (r.p50_us / 1000).toFixed(1)
          } ms  p99 ${
            (r.p99_us / 1000).toFixed(1)
          } ms  timeouts ${r.timeouts}  non-2.xx ${r.other}  ${r.cpu_us_per_req} µs CPU/req`,
        );
      } finally {
        await server.stop();
      }
    }
  }
  await Deno.remove(tmp, { recursive: true });
  const summary: Record<string, unknown> = {
    date: new Date().toISOString(),
    devices: f.devices,
    seconds: f.seconds,
    reps: f.reps,
    loadavg: load,
  };
  for (const k of kinds) {
    summary[k] = {
      rps: stats(runs[k].map((r) => r.rps)),
      cpuUsPerReq: stats(runs[k].map((r) => r.cpu_us_per_req)),
      runs: runs[k],
    };
  }
  const median = (k: Kind) => stats(runs[k].map((r) => r.rps)).median;
  if (runs.ferry.length && runs.libcoap.length) {
    summary.ratio = Math.round(median("ferry") / median("libcoap") * 100) / 100;
    console.error(`Ferry / libcoap (medians): ${summary.ratio}×`);
  }
  if (runs.before.length && runs.libcoap.length) {
    summary.ratioBefore = Math.round(median("before") / median("libcoap") * 100) / 100;
    console.error(`before / libcoap (medians): ${summary.ratioBefore}×`);
  }
  console.log(JSON.stringify(summary));
}
