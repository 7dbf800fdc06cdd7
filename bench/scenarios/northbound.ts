/**
 * Northbound scenario: 100 MQTT QoS 1 devices → the gateway → an upstream mosquitto with one
 * subscriber. Ferry runs as `deno task start` does with only `northbound.url` added to its config
 * (spool on, its defaults: fsync'd commits); the peer is mosquitto as a bridge (not durable in the
 * same way: it acknowledges devices before forwarding). The upstream is a fresh mosquitto per run.
 * The load runs in its own process (`bench/load/northbound.ts`).
 *
 * @module
 */

import { runLoad } from "../_load.ts";
import type { Scenario } from "../_scenario.ts";
import { mosquitto, type ServerKind } from "../_servers.ts";
import type { NorthboundLoadParams } from "../load/northbound.ts";

type Omitted = Omit<NorthboundLoadParams, "port" | "pid" | "metricsUrl" | "upstreamPort">;

interface Phase {
  notForwarded: number;
  deviceAcksPerSecond: number;
  upstreamPerSecond: number;
  e2eP50Ms: number;
  e2eP99Ms: number;
}

/** The northbound scenario for these servers (Ferry first, then the mosquitto bridge). */
export function northboundScenarios(servers: ServerKind[], quick: boolean): Scenario[] {
  const params: Omitted = {
    devices: quick ? 50 : 100,
    inFlight: 16,
    payloadBytes: 64,
    pacedFraction: 0.5,
    warmupMs: 1000,
    windowMs: quick ? 2000 : 10_000,
    drainCapMs: quick ? 20_000 : 30_000,
  };
  const upstream = mosquitto("upstream", false, true); // unbounded queues: it only measures
  return [{
    id: "northbound",
    section: "Northbound",
    title:
      `${params.devices} MQTT QoS 1 devices (${params.inFlight} in flight each) → gateway → upstream mosquitto and a subscriber: device ACKs/s and the rate forwarded upstream during that load; after each load a drain (until all arrived, 3 s without progress, or ${
        params.drainCapMs / 1000
      } s); end-to-end latency (device send → upstream receipt) paced at half the device ACK rate`,
    servers,
    figures: [
      {
        key: "deviceAcksPerSecond",
        label: `device ACKs/s, ${params.devices} QoS 1 devices`,
        unit: "msg/s",
        better: "higher",
      },
      {
        key: "upstreamPerSecond",
        label: "forwarded upstream during that load",
        unit: "msg/s",
        better: "higher",
      },
      {
        key: "notForwarded",
        label: "acknowledged to devices, never seen upstream",
        unit: "count",
        better: "lower",
      },
      {
        key: "pacedPerSecond",
        label: "half load: device messages/s",
        unit: "msg/s",
        better: "higher",
      },
      {
        key: "e2eP50Ms",
        label: "half load: end-to-end latency p50",
        unit: "ms",
        better: "lower",
      },
      {
        key: "e2eP99Ms",
        label: "half load: end-to-end latency p99",
        unit: "ms",
        better: "lower",
      },
    ],
    params: params as unknown as Record<string, unknown>,
    timeoutMs: 2 * (params.warmupMs + params.windowMs + params.drainCapMs) + 90_000,
    async run(ctx) {
      const up = await ctx.start(upstream);
      const url = `mqtt://127.0.0.1:${up.ports.mqtt}`;
      const s = await ctx.start(ctx.kind, { upstream: url });
      const r = await runLoad<{ saturated: Phase; paced: Phase }>("northbound", {
        ...params,
        port: s.ports.mqtt,
        pid: s.pid,
        metricsUrl: s.metricsUrl,
        upstreamPort: up.ports.mqtt,
      }, 2 * (params.warmupMs + params.windowMs + params.drainCapMs) + 60_000);
      return {
        figures: {
          deviceAcksPerSecond: r.saturated.deviceAcksPerSecond,
          upstreamPerSecond: r.saturated.upstreamPerSecond,
          notForwarded: r.saturated.notForwarded + r.paced.notForwarded,
          pacedPerSecond: r.paced.deviceAcksPerSecond,
          e2eP50Ms: r.paced.e2eP50Ms,
          e2eP99Ms: r.paced.e2eP99Ms,
        },
        detail: r as unknown as Record<string, unknown>,
      };
    },
  }];
}
