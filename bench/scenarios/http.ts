/**
 * HTTP scenarios: Ferry's device API against a plain `Deno.serve` ceiling
 * (`bench/peers/http_ceiling.ts`, same runtime flags) with single-message requests from 200
 * keep-alive clients; and messages/s in 50-message NDJSON batches (Ferry only: the ceiling does
 * not parse a body, so a ratio would mean nothing). The load runs in its own process
 * (`bench/load/http.ts`).
 *
 * @module
 */

import { runLoad } from "../_load.ts";
import type { RunContext, RunOutput, Scenario } from "../_scenario.ts";
import type { ServerKind } from "../_servers.ts";
import type { HttpLoadParams } from "../load/http.ts";

type Omitted = Omit<HttpLoadParams, "port" | "pid" | "metricsUrl">;

async function load(ctx: RunContext, params: Omitted, keys: string[]): Promise<RunOutput> {
  const s = await ctx.start(ctx.kind, { need: ["http"] });
  const r = await runLoad<Record<string, number | null>>("http", {
    ...params,
    port: s.ports.http,
    pid: s.pid,
    metricsUrl: s.metricsUrl,
  }, params.warmupMs + params.windowMs + 60_000);
  return { figures: Object.fromEntries(keys.map((k) => [k, r[k] ?? null])), detail: r };
}

/**
 * The HTTP scenarios: `servers` (Ferry first, then the ceiling) for single messages, `ferries`
 * alone for batches.
 */
export function httpScenarios(
  servers: ServerKind[],
  ferries: ServerKind[],
  quick: boolean,
): Scenario[] {
  const base = {
    clients: quick ? 50 : 200,
    warmupMs: quick ? 1000 : 2000,
    windowMs: quick ? 2000 : 10_000,
  };
  const single: Omitted = { ...base, batch: 1 };
  const batched: Omitted = { ...base, batch: 50 };
  return [
    {
      id: "httpSingle",
      section: "HTTP device API",
      title:
        `Single-message POST /api/v1/devices/{id}/telemetry from ${base.clients} keep-alive clients, one request in flight each; responses inside the window`,
      servers,
      figures: [
        {
          key: "requestsPerSecond",
          label: `single-message requests/s, ${base.clients} keep-alive clients`,
          unit: "req/s",
          better: "higher",
        },
        { key: "p50Ms", label: "latency p50", unit: "ms", better: "lower" },
        { key: "p99Ms", label: "latency p99", unit: "ms", better: "lower" },
        {
          key: "serverCpuPercent",
          label: "server CPU (% of one core)",
          unit: "%",
          better: "lower",
        },
      ],
      params: single as unknown as Record<string, unknown>,
      timeoutMs: base.warmupMs + base.windowMs + 90_000,
      run: (ctx) => load(ctx, single, ["requestsPerSecond", "p50Ms", "p99Ms", "serverCpuPercent"]),
    },
    {
      id: "httpBatch",
      section: "HTTP device API",
      title:
        `50-message NDJSON batches from ${base.clients} keep-alive clients (Ferry only: the ceiling does not parse bodies); messages accepted inside the window`,
      servers: ferries,
      figures: [{
        key: "messagesPerSecond",
        label: "messages/s in 50-message NDJSON batches",
        unit: "msg/s",
        better: "higher",
      }],
      params: batched as unknown as Record<string, unknown>,
      timeoutMs: base.warmupMs + base.windowMs + 90_000,
      run: (ctx) => load(ctx, batched, ["messagesPerSecond"]),
    },
  ];
}
