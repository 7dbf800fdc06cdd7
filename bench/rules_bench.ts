/**
 * Rules benchmark: QoS 0 ingest into the gateway started as `deno task start` starts it (the start
 * task's flags, `main.ts`, a config file) with no rule, with one trivial rule on every message,
 * interleaved in the same run, each a fresh gateway process; the goal is ≥ 0.6× the
 * no-rule rate. The load is the MQTT bench's QoS 0 scenario (100 raw publishers, 64-byte payloads,
 * writes of 64 PUBLISHes); the clock stops when a marker published after the load has come out of
 * the rule (rules run after acceptance: a PINGRESP alone would not count a rule's backlog).
 *
 * Besides the rate, the gateway's CPU per input message, read from `/proc` (user + system, the
 * main thread and the whole process): on a shared 2-core machine the rate swings with what else
 * runs, the CPU a message costs much less. Then the p50/p99 delay a rule adds: a paced publisher,
 * one subscriber of both the raw topic and the rule's output.
 *
 * Rules: `copy` returns one output per message (`rules/copy/…`, same payload), `drop` returns null.
 *
 * Run: `deno task bench:rules [--quick] [--messages N] [--repeats N] [--profile DIR]`
 * (`--profile` passes `--cpu-prof` to the gateways, profiles written to DIR). Not (yet) a scenario
 * of `deno task bench` (bench/run.ts was rebuilt around scenarios on main).
 *
 * @module
 */

import mqttPacket, { type Packet } from "mqtt-packet";
import { Buffer } from "node:buffer";
import { mqtt } from "../tests/_dev_deps.ts";
import { median, percentile } from "./_stats.ts";
import { progress, sleep } from "./_util.ts";

/** Rules the gateway can run. */
export type BenchRule = "none" | "copy" | "drop";

const RULES: Record<Exclude<BenchRule, "none">, string> = {
  copy: 'export default (m) => ({ topic: "rules/copy/" + m.topic, payload: m.payload });\n',
  // Drops everything but the end marker (which tells the bench the rule has caught up). Matched by
  // topic: an anonymous MQTT client is no device (no deviceId) unless mqtt.anonymousPresence is on.
  drop:
    'export default (m) => m.topic === "devices/marker/telemetry" ? { topic: "rules/drop/" + m.topic, payload: m.payload } : null;\n',
};

/** Topic of the end marker, and where each configuration delivers it. */
const MARKER = "devices/marker/telemetry";
const MARKER_OUT: Record<BenchRule, string> = {
  none: MARKER,
  copy: `rules/copy/${MARKER}`,
  drop: `rules/drop/${MARKER}`,
};

/** Load sizes. */
export interface RulesBenchOptions {
  /** QoS 0 messages per ingest run. */
  messages: number;
  /** Rounds; each runs every configuration once, in turn (medians are reported). */
  repeats: number;
  /** Messages of the latency run. */
  latencyMessages: number;
  /** Their rate, messages/s. */
  latencyRate: number;
  /** Write V8 CPU profiles of the gateways here. */
  profileDir?: string;
}

/** Presets. */
export const rulesBenchPresets: Readonly<Record<"quick" | "full", RulesBenchOptions>> = {
  quick: { messages: 50_000, repeats: 1, latencyMessages: 2_000, latencyRate: 2_000 },
  full: { messages: 300_000, repeats: 5, latencyMessages: 10_000, latencyRate: 5_000 },
};

const ROOT = new URL("../", import.meta.url);

/** The `deno run` flags of `deno task start` (deno.json), as the gateway runs in production. */
async function startFlags(): Promise<string[]> {
  const deno = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  const words = (deno.tasks.start as string).split(/\s+/);
  if (words[0] !== "deno" || words[1] !== "run" || words.at(-1) !== "main.ts") {
    throw new Error(`unexpected start task: ${deno.tasks.start}`);
  }
  return words.slice(2, -1);
}

/** A gateway process. */
interface Gateway extends AsyncDisposable {
  pid: number;
  mqttPort: number;
}

/** Starts the gateway with `rule` (or none) in its config file; resolves once MQTT listens. */
async function startGateway(rule: BenchRule, o: RulesBenchOptions, tag: string): Promise<Gateway> {
  const dir = await Deno.makeTempDir({ prefix: "ferry-bench-rules-" });
  const config: Record<string, unknown> = {
    dataDir: `${dir}/data`,
    binary: { port: 0 },
    mqtt: { port: 0, websocket: { enabled: false } },
    coap: { port: 0 },
    http: { port: 0 },
  };
  if (rule !== "none") {
    await Deno.writeTextFile(`${dir}/${rule}.ts`, RULES[rule]);
    config.rules = [{ name: rule, from: ["devices/#"], module: `${rule}.ts` }];
  }
  await Deno.writeTextFile(`${dir}/ferry.json`, JSON.stringify(config));
  const flags = await startFlags();
  if (o.profileDir) {
    flags.push("--cpu-prof", `--cpu-prof-dir=${o.profileDir}`, `--cpu-prof-name=${tag}.cpuprofile`);
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...flags,
      new URL("main.ts", ROOT).pathname,
      "--config",
      `${dir}/ferry.json`,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const found = Promise.withResolvers<number>();
  const pump = (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of child.stderr) {
      buf += dec.decode(chunk, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.includes('"msg":"mqtt listening"')) found.resolve(JSON.parse(line).port);
        else if (/"level":"(warn|error)"/.test(line)) progress(`gateway: ${line}`);
      }
    }
  })();
  const timer = setTimeout(() => found.reject(new Error("the gateway did not listen")), 60_000);
  const mqttPort = await found.promise.finally(() => clearTimeout(timer));
  return {
    pid: child.pid,
    mqttPort,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      const t = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 10_000);
      await child.status;
      clearTimeout(t);
      await pump;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** CPU seconds (user + system) a process has used: its main thread, and all its threads. */
function cpuOf(pid: number): { main: number; all: number } {
  const ticks = (stat: string) => {
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  };
  let all = 0;
  let main = 0;
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const s = ticks(Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/stat`));
      all += s;
      if (t.name === String(pid)) main = s;
    } catch { /* the thread ended */ }
  }
  return { main, all };
}

const enc = (p: Packet) => mqttPacket.generate(p, { protocolVersion: 4 });

/** A raw MQTT connection that publishes QoS 0 as fast as the socket takes it. */
async function openPublisher(port: number, clientId: string): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  await conn.write(
    enc({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 4,
      clientId,
      clean: true,
      keepalive: 0,
    }),
  );
  const buf = new Uint8Array(64);
  const n = await conn.read(buf);
  if (!n || buf[0] !== 0x20 || buf[3] !== 0) throw new Error(`${clientId}: no CONNACK 0`);
  return conn;
}

/** Writes `count` QoS 0 PUBLISHes of 64 bytes in writes of 64, then waits for a PINGRESP. */
async function publishAll(conn: Deno.TcpConn, topic: string, count: number): Promise<void> {
  const one = enc({
    cmd: "publish",
    topic,
    payload: Buffer.alloc(64),
    qos: 0,
    dup: false,
    retain: false,
  });
  const batch = Buffer.concat(Array.from({ length: 64 }, () => one));
  for (let sent = 0; sent < count; sent += 64) {
    const chunk = Math.min(64, count - sent) === 64
      ? batch
      : batch.subarray(0, (count - sent) * one.length);
    for (let o = 0; o < chunk.length;) o += await conn.write(chunk.subarray(o));
  }
  await conn.write(enc({ cmd: "pingreq" }));
  const buf = new Uint8Array(16);
  for (;;) { // nothing else is sent to a publisher: the first bytes are the PINGRESP
    const n = await conn.read(buf);
    if (n === null) throw new Error("closed before PINGRESP");
    if (buf[0] === 0xd0) return;
  }
}

/** One ingest run's figures. */
interface IngestRun {
  rate: number;
  /** Gateway main-thread CPU per input message, µs. */
  mainUs: number;
  /** Gateway process CPU (all threads: rule workers, spool, V8) per input message, µs. */
  allUs: number;
}

/**
 * QoS 0 ingest, timed from the first PUBLISH until a marker published after the last PINGRESP has
 * come out of the rule.
 */
async function ingestOnce(rule: BenchRule, o: RulesBenchOptions, tag: string): Promise<IngestRun> {
  await using gw = await startGateway(rule, o, tag);
  const url = `mqtt://127.0.0.1:${gw.mqttPort}`;
  const sub = await mqtt.connectAsync(url, { clientId: "marker-sub", reconnectPeriod: 0 });
  const marker = await mqtt.connectAsync(url, { clientId: "marker", reconnectPeriod: 0 });
  const pubs: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 100; i++) pubs.push(await openPublisher(gw.mqttPort, `q0pub-${i}`));
    const out = Promise.withResolvers<void>();
    sub.on("message", () => out.resolve());
    await sub.subscribeAsync(MARKER_OUT[rule], { qos: 0 });
    await sleep(200); // the connections' log lines and presence are written
    const per = Math.ceil(o.messages / pubs.length);
    const n = per * pubs.length;
    const cpu0 = cpuOf(gw.pid);
    const t0 = performance.now();
    await Promise.all(pubs.map((c, i) => publishAll(c, `devices/q0pub-${i}/telemetry`, per)));
    await marker.publishAsync(MARKER, "end", { qos: 0 });
    const arrived = await Promise.race([out.promise.then(() => true), sleep(120_000)]);
    if (!arrived) throw new Error(`rule ${rule}: the marker did not come out within 120 s`);
    const seconds = (performance.now() - t0) / 1000;
    const cpu1 = cpuOf(gw.pid);
    const run = {
      rate: Math.round(n / seconds),
      mainUs: Math.round((cpu1.main - cpu0.main) * 1e6 / n * 10) / 10,
      allUs: Math.round((cpu1.all - cpu0.all) * 1e6 / n * 10) / 10,
    };
    progress(
      `ingest QoS 0, rule ${rule}: ${run.rate} msgs/s, CPU/msg main ${run.mainUs} µs, all threads ${run.allUs} µs`,
    );
    return run;
  } finally {
    for (const c of pubs) c.close();
    await marker.endAsync();
    await sub.endAsync();
  }
}

/** Delay between a message's raw delivery and its `copy` rule output, ms (p50, p99). */
async function addedLatency(o: RulesBenchOptions): Promise<{ p50: number; p99: number }> {
  await using gw = await startGateway("copy", { ...o, profileDir: undefined }, "latency");
  const url = `mqtt://127.0.0.1:${gw.mqttPort}`;
  const sub = await mqtt.connectAsync(url, { clientId: "lat-sub", reconnectPeriod: 0 });
  const pub = await mqtt.connectAsync(url, { clientId: "lat-pub", reconnectPeriod: 0 });
  try {
    await sub.subscribeAsync(["devices/lat/telemetry", "rules/copy/devices/lat/telemetry"], {
      qos: 0,
    });
    const raw = new Map<number, number>();
    const delays: number[] = [];
    const all = Promise.withResolvers<void>();
    sub.on("message", (topic: string, payload: Uint8Array) => {
      const now = performance.now();
      const i = Number(new TextDecoder().decode(payload));
      if (topic.startsWith("rules/")) {
        const t = raw.get(i);
        if (t !== undefined) delays.push(now - t);
        if (delays.length === o.latencyMessages) all.resolve();
      } else raw.set(i, now);
    });
    const gap = 1000 / o.latencyRate;
    const t0 = performance.now();
    for (let i = 0; i < o.latencyMessages; i++) {
      pub.publish("devices/lat/telemetry", String(i), { qos: 0 });
      const due = t0 + (i + 1) * gap;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
    }
    await Promise.race([all.promise, sleep(10_000)]);
    return {
      p50: Math.round(percentile(delays, 50) * 1000) / 1000,
      p99: Math.round(percentile(delays, 99) * 1000) / 1000,
    };
  } finally {
    await sub.endAsync();
    await pub.endAsync();
  }
}

/** Runs the benchmark; returns the figures. */
export async function run(o: RulesBenchOptions): Promise<Record<string, unknown>> {
  const runs: Record<BenchRule, IngestRun[]> = { none: [], copy: [], drop: [] };
  const ratios: Record<"copy" | "drop", number[]> = { copy: [], drop: [] };
  for (let r = 0; r < o.repeats; r++) {
    for (const rule of ["none", "copy", "drop"] as const) {
      runs[rule].push(await ingestOnce(rule, o, `${rule}-${r}`));
    }
    // Each round's ratio against that round's no-rule run (neighbours in time share the load).
    for (const rule of ["copy", "drop"] as const) {
      ratios[rule].push(runs[rule][r].rate / runs.none[r].rate);
    }
  }
  const latency = await addedLatency(o);
  const sum = (k: BenchRule) => ({
    "msgs/s (median)": median(runs[k].map((x) => x.rate)),
    "msgs/s (each run)": runs[k].map((x) => x.rate),
    "main-thread CPU µs/msg (median)": median(runs[k].map((x) => x.mainUs)),
    "process CPU µs/msg (median)": median(runs[k].map((x) => x.allUs)),
  });
  const round2 = (x: number) => Math.round(x * 100) / 100;
  const copy = round2(median(ratios.copy));
  return {
    "ingest QoS 0, no rule": sum("none"),
    "ingest QoS 0, one copy rule (1 output/msg)": sum("copy"),
    "ingest QoS 0, one drop rule (null)": sum("drop"),
    "copy rule / no rule (median of per-round ratios)": copy,
    "drop rule / no rule (median of per-round ratios)": round2(median(ratios.drop)),
    "goal: one trivial rule >= 0.6x no rule": copy >= 0.6 ? "met" : "NOT met",
    [`added latency ms at ${o.latencyRate} msgs/s (p50, p99)`]: latency,
  };
}

if (import.meta.main) {
  const preset = Deno.args.includes("--quick") ? "quick" : "full";
  const arg = (name: string) => {
    const i = Deno.args.indexOf(name);
    return i >= 0 ? Deno.args[i + 1] : undefined;
  };
  const o = { ...rulesBenchPresets[preset] };
  o.profileDir = arg("--profile");
  o.messages = Number(arg("--messages") ?? o.messages);
  o.repeats = Number(arg("--repeats") ?? o.repeats);
  console.log(JSON.stringify(await run(o), null, 2));
}
