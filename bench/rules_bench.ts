/**
 * Rules benchmark: QoS 0 ingest (as the MQTT bench's scenario: 100 publishers, 64-byte payloads,
 * no subscriber) into Ferry's core and MQTT listener with no rule, then with one trivial rule on
 * every message, in the same run, each server a fresh child process; the goal is ≥ 0.6×
 * the no-rule rate. The clock stops when a marker sent after the load has come out of the rule. Then the p50/p99 latency a rule adds: a paced publisher, one subscriber of both the
 * raw topic and the rule's output, and per message the delay between the two arrivals.
 *
 * Rules: `copy` returns one output per message (`rules/copy/…`, same payload), `drop` returns null.
 *
 * Run alone: `deno task bench:rules [--quick]`; or import {@link run}.
 *
 * @module
 */

import { Core, Logger } from "../src/core/mod.ts";
import { MqttServer } from "../src/protocols/mqtt/mod.ts";
import { attachRules, resolveRules } from "../src/rules/mod.ts";
import { type ChildServer, percentile, progress, sleep, spawnServer } from "./_util.ts";
import mqttPacket, { type Packet } from "mqtt-packet";
import { mqtt } from "../tests/_dev_deps.ts";
import { Buffer } from "node:buffer";

/** Rules the server can run. */
export type BenchRule = "none" | "copy" | "drop";

const RULES: Record<Exclude<BenchRule, "none">, string> = {
  copy: 'export default (m) => ({ topic: "rules/copy/" + m.topic, payload: m.payload });\n',
  // Drops everything but the end marker (which tells the bench the rule has caught up).
  drop:
    'export default (m) => m.deviceId === "marker" ? { topic: "rules/drop/" + m.topic, payload: m.payload } : null;\n',
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
  /** Runs per configuration (the best is kept: the machine is shared). */
  repeats: number;
  /** Messages of the latency run. */
  latencyMessages: number;
  /** Their rate, messages/s. */
  latencyRate: number;
}

/** Presets. */
export const rulesBenchPresets: Readonly<Record<"quick" | "full", RulesBenchOptions>> = {
  quick: { messages: 50_000, repeats: 1, latencyMessages: 2_000, latencyRate: 2_000 },
  full: { messages: 300_000, repeats: 3, latencyMessages: 10_000, latencyRate: 5_000 },
};

async function serve(rule: BenchRule): Promise<void> {
  const core = new Core({ anonymous: true, log: new Logger({ level: "warn" }) });
  let dir: string | undefined;
  let rules: Awaited<ReturnType<typeof attachRules>> | undefined;
  if (rule !== "none") {
    dir = await Deno.makeTempDir({ prefix: "ferry-bench-rules-" });
    await Deno.writeTextFile(`${dir}/${rule}.ts`, RULES[rule]);
    rules = await attachRules(core, {
      rules: resolveRules([{
        name: rule,
        from: ["devices/#"],
        module: `${rule}.ts`,
        to: "core",
        timeoutMs: 1000,
        maxMessageBytes: 262_144,
        enabled: true,
        onError: "drop",
        errorsBeforeRestart: 10,
        restartsBeforeDisable: 5,
      }]),
      baseDir: dir,
      watch: false,
    });
  }
  const server = new MqttServer(core, { hostname: "127.0.0.1", port: 0 });
  const { port } = await server.listen();
  console.log(`listening ${port}`);
  Deno.addSignalListener("SIGTERM", async () => {
    await server.close();
    await rules?.settle();
    await core.close();
    await rules?.close();
    if (rules) {
      const m = rules.engine.metrics;
      console.error(
        `rule ${rule}: in ${m.in.total()} out ${m.out.total()} dropped ${m.dropped.total()}`,
      );
    }
    if (dir) await Deno.remove(dir, { recursive: true });
    Deno.exit(0);
  });
}

function start(rule: BenchRule): Promise<ChildServer> {
  return spawnServer(
    Deno.execPath(),
    [
      "run",
      "-A",
      "--unstable-worker-options",
      "--v8-flags=--optimize-for-size",
      new URL(import.meta.url).pathname,
      "--serve",
      rule,
    ],
    (line) => {
      const m = /listening (\d+)/.exec(line);
      return m ? Number(m[1]) : undefined;
    },
  );
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

/**
 * QoS 0 ingest, timed from the first PUBLISH until a marker published after the last PINGRESP has
 * come out of the rule (rules run after acceptance: without the marker a rule's backlog would not
 * count). The best of `repeats` runs.
 */
async function ingest(rule: BenchRule, o: RulesBenchOptions): Promise<number> {
  let best = 0;
  for (let r = 0; r < o.repeats; r++) {
    await using server = await start(rule);
    const url = `mqtt://127.0.0.1:${server.port}`;
    const sub = await mqtt.connectAsync(url, { clientId: "marker-sub", reconnectPeriod: 0 });
    const marker = await mqtt.connectAsync(url, { clientId: "marker", reconnectPeriod: 0 });
    const pubs: Deno.TcpConn[] = [];
    try {
      for (let i = 0; i < 100; i++) pubs.push(await openPublisher(server.port, `q0pub-${i}`));
      const out = Promise.withResolvers<void>();
      sub.on("message", () => out.resolve());
      await sub.subscribeAsync(MARKER_OUT[rule], { qos: 0 });
      const per = Math.ceil(o.messages / pubs.length);
      const t0 = performance.now();
      await Promise.all(pubs.map((c, i) => publishAll(c, `devices/q0pub-${i}/telemetry`, per)));
      await marker.publishAsync(MARKER, "end", { qos: 0 });
      await Promise.race([out.promise, sleep(120_000)]);
      const rate = Math.round((per * pubs.length) / ((performance.now() - t0) / 1000));
      progress(`ingest QoS 0, rule ${rule}: ${rate} msgs/s`);
      best = Math.max(best, rate);
    } finally {
      for (const c of pubs) c.close();
      await marker.endAsync();
      await sub.endAsync();
    }
  }
  return best;
}

/** Delay between a message's raw delivery and its `copy` rule output, ms (p50, p99). */
async function addedLatency(o: RulesBenchOptions): Promise<{ p50: number; p99: number }> {
  await using server = await start("copy");
  const url = `mqtt://127.0.0.1:${server.port}`;
  const sub = await mqtt.connectAsync(url, { clientId: "lat-sub", reconnectPeriod: 0 });
  const pub = await mqtt.connectAsync(url, { clientId: "lat-pub", reconnectPeriod: 0 });
  try {
    await sub.subscribeAsync(["devices/lat/telemetry", "rules/copy/devices/lat/telemetry"], {
      qos: 0,
    });
    const raw = new Map<number, number>();
    const delays: number[] = [];
    const all = Promise.withResolvers<void>();
    sub.on("message", (topic, payload) => {
      const now = performance.now();
      const i = Number(payload.toString());
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
  const none = await ingest("none", o);
  const copy = await ingest("copy", o);
  const drop = await ingest("drop", o);
  const latency = await addedLatency(o);
  const ratio = (x: number) => Math.round((x / none) * 100) / 100;
  return {
    "ingest QoS 0 msgs/s, no rule": none,
    "ingest QoS 0 msgs/s, one copy rule (1 output/msg)": copy,
    "ingest QoS 0 msgs/s, one drop rule (null)": drop,
    "copy rule / no rule": ratio(copy),
    "drop rule / no rule": ratio(drop),
    "goal: one trivial rule >= 0.6x no rule": ratio(copy) >= 0.6 ? "met" : "NOT met",
    [`added latency ms at ${o.latencyRate} msgs/s (p50, p99)`]: latency,
  };
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--serve");
  if (i >= 0) await serve(Deno.args[i + 1] as BenchRule);
  else {
    const preset = Deno.args.includes("--quick") ? "quick" : "full";
    console.log(JSON.stringify(await run(rulesBenchPresets[preset]), null, 2));
  }
}
