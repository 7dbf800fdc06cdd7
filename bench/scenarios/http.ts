/**
 * HTTP scenarios: Ferry's device API against a plain `Deno.serve` ceiling
 * (`bench/peers/http_ceiling.ts`, same runtime flags) with single-message requests from 200
 * keep-alive clients; and messages/s in 50-message NDJSON batches (Ferry only: the ceiling does
 * not parse a body, so a ratio would mean nothing). The clients are spread over two load processes
 * (`bench/load/http.ts`) so that the client does not cap the ceiling; the server's CPU is reported.
 *
 * @module
 */

import { runLoad } from "../_load.ts";
import type { RunContext, RunOutput, Scenario } from "../_scenario.ts";
import type { ServerKind } from "../_servers.ts";
import { LatencyHistogram, round } from "../_stats.ts";
import type { HttpLoadParams } from "../load/http.ts";

/** What the scenario sets; the rest is per run and per process. */
type LoadShape = Pick<HttpLoadParams, "batch" | "warmupMs" | "windowMs"> & {
  clients: number;
  processes: number;
};

interface HttpLoadResult {
  requests: number;
  accepted: number;
  windowSeconds: number;
  refused: Record<string, number>;
  metricsPerSecond: number | null;
  serverCpuPercent: number;
  latency: { buckets: Record<string, number>; max: number };
}

async function load(ctx: RunContext, shape: LoadShape, keys: string[]): Promise<RunOutput> {
  const s = await ctx.start(ctx.kind);
  const per = Math.ceil(shape.clients / shape.processes);
  const startAt = Date.now() + 3000; // every process started and connected
  const parts = await Promise.all(
    Array.from({ length: shape.processes }, (_, k) =>
      runLoad<HttpLoadResult>(
        "http",
        {
          port: s.ports.http!,
          pid: s.pid,
          metricsUrl: s.metricsUrl,
          clients: Math.min(per, shape.clients - k * per),
          firstClient: k * per,
          batch: shape.batch,
          startAt,
          warmupMs: shape.warmupMs,
          windowMs: shape.windowMs,
        } satisfies HttpLoadParams as unknown as Record<string, unknown>,
        shape.warmupMs + shape.windowMs + 60_000,
      )),
  );
  const seconds = parts[0].windowSeconds;
  const hist = LatencyHistogram.from(parts.map((p) => p.latency));
  const refused: Record<string, number> = {};
  for (const p of parts) {
    for (const [c, n] of Object.entries(p.refused)) refused[c] = (refused[c] ?? 0) + n;
  }
  const refusedCount = Object.values(refused).reduce((a, n) => a + n, 0);
  const acceptedCount = parts.reduce((a, p) => a + p.requests, 0);
  if (refusedCount > 0.01 * (refusedCount + acceptedCount)) {
    // A figure made of refusals measures nothing: the run fails and says why.
    throw new Error(
      `the server refused ${refusedCount} of ${refusedCount + acceptedCount} requests ` +
        `(status: count ${JSON.stringify(refused)})`,
    );
  }
  const r: Record<string, number | null> = {
    requestsPerSecond: round(parts.reduce((a, p) => a + p.requests, 0) / seconds),
    messagesPerSecond: round(parts.reduce((a, p) => a + p.accepted, 0) / seconds),
    p50Ms: round(hist.percentile(50)),
    p99Ms: round(hist.percentile(99)),
    serverCpuPercent: parts[0].serverCpuPercent,
  };
  return {
    figures: Object.fromEntries(keys.map((k) => [k, r[k] ?? null])),
    detail: {
      ...r,
      windowSeconds: round(seconds),
      refused,
      metricsPerSecond: parts[0].metricsPerSecond === null
        ? null
        : round(parts[0].metricsPerSecond),
    },
  };
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
    processes: 2,
    warmupMs: 1000,
    windowMs: quick ? 2000 : 10_000,
  };
  const single: LoadShape = { ...base, batch: 1 };
  const batched: LoadShape = { ...base, batch: 50 };
  return [
    {
      id: "httpSingle",
      section: "HTTP device API",
      title:
        `Single-message POST /api/v1/devices/{id}/telemetry from ${base.clients} keep-alive clients (one request in flight each) in ${base.processes} load processes; responses inside the window`,
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
