/**
 * Rules benchmark: QoS 0 ingest (the MQTT bench's scenario: 100 publishers, 64-byte payloads, no
 * subscriber) into Ferry's core and MQTT listener with no rule, then with one trivial rule on every
 * message, in the same run, each server a fresh child process; the goal is ≥ 0.6× the
 * no-rule rate. Then the p50/p99 latency a rule adds: a paced publisher, one subscriber of both the
 * raw topic and the rule's output, and per message the delay between the two arrivals.
 *
 * Rules: `copy` returns one output per message (`rules/copy/…`, same payload), `drop` returns null.
 *
 * Run alone: `deno task bench:rules [--quick]`; or import {@link run}.
 *
 * @module
 */

import mqtt from "mqtt";
import { Core, Logger } from "../src/core/mod.ts";
import { MqttServer } from "../src/protocols/mqtt/mod.ts";
import { attachRules, resolveRules } from "../src/rules/mod.ts";
import { type ChildServer, percentile, progress, sleep, spawnServer } from "./_util.ts";
import { ingestQos0Scenario, mqttBenchPresets } from "./mqtt_bench.ts";

/** Rules the server can run. */
export type BenchRule = "none" | "copy" | "drop";

const RULES: Record<Exclude<BenchRule, "none">, string> = {
  copy: 'export default (m) => ({ topic: "rules/copy/" + m.topic, payload: m.payload });\n',
  drop: "export default () => null;\n",
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

async function ingest(rule: BenchRule, o: RulesBenchOptions): Promise<number> {
  let best = 0;
  for (let i = 0; i < o.repeats; i++) {
    await using server = await start(rule);
    const r = await ingestQos0Scenario(server.port, {
      ...mqttBenchPresets.quick,
      qos0Publishers: 100,
      qos0Messages: o.messages,
    });
    progress(`ingest QoS 0, rule ${rule}: ${r.perSecond} msgs/s`);
    best = Math.max(best, r.perSecond);
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
