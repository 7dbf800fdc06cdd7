/**
 * FBP/1 scenarios: RSS per idle device connection at 10,000, and ACKed telemetry from 1,000
 * devices (4 frames in flight each) with ACK latency, for Ferry (as `deno task start` runs it) and
 * the bare floor server (`bench/peers/bare_fbp_server.ts`, same runtime flags). The load runs in
 * its own process (`bench/load/fbp.ts`).
 *
 * @module
 */

import { runLoad } from "../_load.ts";
import type { RunContext, RunOutput, Scenario } from "../_scenario.ts";
import type { ServerKind } from "../_servers.ts";
import type { FbpIdleParams, FbpTelemetryParams } from "../load/fbp.ts";

type Omitted<T> = Omit<T, "port" | "pid" | "metricsUrl">;

async function load(
  ctx: RunContext,
  params: Omitted<FbpIdleParams> | Omitted<FbpTelemetryParams>,
  keys: string[],
  timeoutMs: number,
): Promise<RunOutput> {
  const s = await ctx.start(ctx.kind);
  const r = await runLoad<Record<string, number | null>>("fbp", {
    ...params,
    port: s.ports.binary,
    pid: s.pid,
    metricsUrl: s.metricsUrl,
  }, timeoutMs);
  return { figures: Object.fromEntries(keys.map((k) => [k, r[k] ?? null])), detail: r };
}

/** The FBP/1 scenarios for these servers (Ferry first, then the floor). */
export function fbpScenarios(servers: ServerKind[], quick: boolean): Scenario[] {
  const idle: Omitted<FbpIdleParams> = {
    mode: "idle",
    warm: 200,
    idle: quick ? 1000 : 10_000, // 15,000 took ~70 s a repetition at load 14
    concurrency: 100,
    settleMs: quick ? 2000 : 3000,
  };
  const tel: Omitted<FbpTelemetryParams> = {
    mode: "telemetry",
    devices: quick ? 200 : 1000,
    inFlight: 4,
    payloadBytes: 64,
    warmupMs: 1000,
    windowMs: quick ? 2000 : 10_000,
    graceMs: 10_000,
  };
  return [
    {
      id: "fbpIdle",
      section: "FBP/1",
      title:
        `RSS growth per idle FBP/1 device connection (HELLO done) for ${idle.idle} connections, after a warm-up`,
      servers,
      figures: [{
        key: "idleBytesPerConnection",
        label: `RSS per idle FBP/1 connection at ${idle.idle.toLocaleString("en")}`,
        unit: "bytes",
        better: "lower",
      }],
      params: idle as unknown as Record<string, unknown>,
      timeoutMs: 180_000,
      run: (ctx) => load(ctx, idle, ["idleBytesPerConnection"], 150_000),
    },
    {
      id: "fbpTelemetry",
      section: "FBP/1",
      title:
        `ACKed telemetry: ${tel.devices} devices, ${tel.inFlight} ACK-requested frames (64 B) in flight each; ACKs received inside the window and their latency`,
      servers,
      figures: [
        {
          key: "perSecond",
          label: `ACKed telemetry, ${
            tel.devices.toLocaleString("en")
          } devices × ${tel.inFlight} in flight`,
          unit: "msg/s",
          better: "higher",
        },
        { key: "p50Ms", label: "ACK latency p50", unit: "ms", better: "lower" },
        { key: "p99Ms", label: "ACK latency p99", unit: "ms", better: "lower" },
        {
          key: "closedByServer",
          label: "devices disconnected by the server during the load",
          unit: "count",
          better: "lower",
        },
      ],
      params: tel as unknown as Record<string, unknown>,
      timeoutMs: 150_000,
      run: (ctx) => load(ctx, tel, ["perSecond", "p50Ms", "p99Ms", "closedByServer"], 120_000),
    },
  ];
}
