/**
 * MQTT scenarios (the table): QoS 0 ingest from 100 device publishers, the same delivered
 * to one `#` subscriber, QoS 1 paced at 20k msg/s with PUBACK latency, and idle RSS per connection
 * at 15,000, all held and answering PINGREQ. Ferry (as `deno task start` runs it) against
 * mosquitto, and aedes in QoS 0 ingest (and start-up): the full run must fit in 20 minutes, and
 * aedes's delivery run takes ~20 s (its subscriber lags), 15,000 connections to it ~45 s.
 * Warm-up 1 s, windows 10 s (2 s with `--quick`). The load runs in its own process
 * (`bench/load/mqtt.ts`).
 *
 * @module
 */

import { runLoad } from "../_load.ts";
import type { RunContext, RunOutput, Scenario } from "../_scenario.ts";
import type { ServerKind } from "../_servers.ts";
import type { ConnectionsParams, Qos0Params, Qos1Params } from "../load/mqtt.ts";

type Omitted<T> = Omit<T, "port" | "pid" | "metricsUrl">;

async function load(
  ctx: RunContext,
  params: Omitted<Qos0Params> | Omitted<Qos1Params> | Omitted<ConnectionsParams>,
  timeoutMs: number,
): Promise<Record<string, number | null>> {
  const s = await ctx.start(ctx.kind);
  return await runLoad<Record<string, number | null>>("mqtt", {
    ...params,
    port: s.ports.mqtt,
    pid: s.pid,
    metricsUrl: s.metricsUrl,
  }, timeoutMs);
}

function output(r: Record<string, number | null>, keys: string[]): RunOutput {
  return { figures: Object.fromEntries(keys.map((k) => [k, r[k] ?? null])), detail: r };
}

/** The MQTT scenarios for these servers (Ferry first). */
export function mqttScenarios(servers: ServerKind[], quick: boolean): Scenario[] {
  const warmupMs = 1000;
  const windowMs = quick ? 2000 : 10_000;
  const loadBound = warmupMs + windowMs + 90_000;
  const qos0: Omitted<Qos0Params> = {
    mode: "qos0",
    publishers: 100,
    payloadBytes: 64,
    chunkBytes: 16 * 1024,
    chunksInFlight: 2,
    subscriber: false,
    drainCapMs: 30_000,
    deliveryDrainMs: quick ? 5000 : 10_000,
    warmupMs,
    windowMs,
  };
  const qos1: Omitted<Qos1Params> = {
    mode: "qos1Paced",
    publishers: 100,
    payloadBytes: 64,
    ratePerSec: 20_000,
    graceMs: 5000,
    warmupMs,
    windowMs,
  };
  const conns: Omitted<ConnectionsParams> = {
    mode: "connections",
    warm: 200,
    idle: quick ? 1000 : 15_000,
    // Held = the idle ones: opening more than ~14,000 from one client address is slow for every
    // server alike (Linux's ephemeral port search, docs/benchmark.md), minutes of a full run.
    hold: quick ? 1000 : 15_000,
    concurrency: 100,
    settleMs: quick ? 1500 : 3000,
  };
  return [
    {
      id: "mqttQos0Ingest",
      section: "MQTT",
      title:
        "QoS 0 ingest: 100 device publishers (client id = device id, topic devices/{id}/telemetry), 64 B, no subscriber; publishes confirmed processed by a PINGRESP fence inside the window",
      servers,
      figures: [{
        key: "perSecond",
        label: "QoS 0 ingest, 100 publishers, 64 B, devices/{id}/telemetry",
        unit: "msg/s",
        better: "higher",
      }],
      params: qos0 as unknown as Record<string, unknown>,
      timeoutMs: loadBound + 60_000,
      run: async (ctx) => output(await load(ctx, qos0, loadBound), ["perSecond"]),
    },
    {
      id: "mqttQos0Deliver",
      section: "MQTT",
      title:
        "The same QoS 0 load delivered to one # subscriber: what the subscriber received inside the window, what had not arrived 10 s after the publishers stopped (or once nothing arrived for 2 s), and the server's peak RSS",
      servers: servers.filter((k) => k.name !== "aedes"),
      figures: [
        {
          key: "perSecond",
          label: "QoS 0 delivered to one # subscriber",
          unit: "msg/s",
          better: "higher",
        },
        {
          key: "lost",
          label: `not delivered ${qos0.deliveryDrainMs / 1000} s after the publishers stopped`,
          unit: "count",
          better: "lower",
        },
        { key: "peakRss", label: "peak RSS during that delivery", unit: "bytes", better: "lower" },
      ],
      params: { ...qos0, subscriber: true },
      timeoutMs: loadBound + 60_000,
      run: async (ctx) =>
        output(await load(ctx, { ...qos0, subscriber: true }, loadBound), [
          "perSecond",
          "lost",
          "peakRss",
        ]),
    },
    {
      id: "mqttQos1Paced",
      section: "MQTT",
      title:
        "QoS 1 paced: 100 device publishers at 20,000 msg/s in total, 64 B; PUBACK latency of every publish sent inside the window",
      servers: servers.filter((k) => k.name !== "aedes"),
      figures: [
        { key: "p50Ms", label: "QoS 1 at 20k msg/s, PUBACK p50", unit: "ms", better: "lower" },
        { key: "p99Ms", label: "QoS 1 at 20k msg/s, PUBACK p99", unit: "ms", better: "lower" },
      ],
      params: qos1 as unknown as Record<string, unknown>,
      timeoutMs: loadBound + 60_000,
      run: async (ctx) => output(await load(ctx, qos1, loadBound), ["p50Ms", "p99Ms"]),
    },
    {
      id: "mqttConnections",
      section: "MQTT",
      title:
        `Idle connections: RSS growth per connection for ${conns.idle} (after a warm-up), all ${conns.hold} then answering a PINGREQ`,
      servers: servers.filter((k) => k.name !== "aedes"),
      figures: [
        {
          key: "idleBytesPerConnection",
          label: `RSS per idle MQTT connection at ${conns.idle.toLocaleString("en")}`,
          unit: "bytes",
          better: "lower",
        },
        {
          key: "held",
          label: `connections held of ${conns.hold.toLocaleString("en")}, each answering PINGREQ`,
          unit: "count",
          better: "higher",
        },
        {
          key: "rssHold",
          label: `RSS holding ${conns.hold.toLocaleString("en")}`,
          unit: "bytes",
          better: "lower",
        },
      ],
      params: conns as unknown as Record<string, unknown>,
      timeoutMs: 240_000,
      run: async (ctx) =>
        output(await load(ctx, conns, 180_000), ["idleBytesPerConnection", "held", "rssHold"]),
    },
  ];
}
