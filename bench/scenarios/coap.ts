/**
 * CoAP scenario: Confirmable requests per second from 100 clients (one request outstanding each),
 * Ferry's device API (`POST /d/{id}/telemetry`) against libcoap's `coap-server` (`PUT
 * /example_data`). The clients are spread over several load processes on Node
 * (`bench/load/coap.mjs`: its UDP costs a third of Deno's per request) so that the client does
 * not cap libcoap; the server's CPU use is reported to show which side was the limit.
 *
 * @module
 */

import { runLoad } from "../_load.ts";
import type { Scenario } from "../_scenario.ts";
import type { ServerKind } from "../_servers.ts";
import { LatencyHistogram, round } from "../_stats.ts";

/** Parameters of one load process (`bench/load/coap.mjs`, on Node). */
interface CoapLoadParams {
  port: number;
  pid: number;
  metricsUrl?: string;
  target: "ferry" | "libcoap";
  /** Clients in this process. */
  clients: number;
  /** Index of this process's first client (device ids are unique across processes). */
  firstClient: number;
  /** `Date.now()` at which the warm-up starts, the same for every process. */
  startAt: number;
  warmupMs: number;
  windowMs: number;
  /** A request without an answer is given up after this long and a new one is sent. */
  timeoutMs: number;
}

interface CoapLoadResult {
  okInWindow: number;
  windowSeconds: number;
  serverCpuPercent: number;
  metricsPerSecond: number | null;
  errors: number;
  timeouts: number;
  codes: Record<string, number>;
  latency: { buckets: Record<string, number>; max: number };
}

/** The CoAP scenario for these servers (Ferry first, then libcoap). */
export function coapScenarios(servers: ServerKind[], quick: boolean): Scenario[] {
  const params = {
    clients: 100,
    processes: 2,
    warmupMs: 1000,
    windowMs: quick ? 2000 : 10_000,
    timeoutMs: 2000,
  };
  return [{
    id: "coapRequests",
    section: "CoAP",
    title:
      `CON requests/s: ${params.clients} clients (one UDP socket and one request outstanding each) spread over ${params.processes} load processes; successful responses inside the window`,
    servers,
    figures: [
      {
        key: "perSecond",
        label: `CON requests/s, ${params.clients} clients`,
        unit: "req/s",
        better: "higher",
      },
      { key: "p50Ms", label: "latency p50", unit: "ms", better: "lower" },
      { key: "p99Ms", label: "latency p99", unit: "ms", better: "lower" },
      { key: "serverCpuPercent", label: "server CPU (% of one core)", unit: "%", better: "lower" },
    ],
    params,
    timeoutMs: params.warmupMs + params.windowMs + 90_000,
    async run(ctx) {
      const s = await ctx.start(ctx.kind);
      const per = Math.ceil(params.clients / params.processes);
      const startAt = Date.now() + 3000; // every process started and its sockets open
      const parts = await Promise.all(
        Array.from({ length: params.processes }, (_, k) =>
          runLoad<CoapLoadResult>(
            "coap.mjs",
            {
              port: s.ports.coap!,
              pid: s.pid,
              metricsUrl: s.metricsUrl,
              target: ctx.kind.name.startsWith("ferry") ? "ferry" : "libcoap",
              clients: Math.min(per, params.clients - k * per),
              firstClient: k * per,
              startAt,
              warmupMs: params.warmupMs,
              windowMs: params.windowMs,
              timeoutMs: params.timeoutMs,
            } satisfies CoapLoadParams as unknown as Record<string, unknown>,
            60_000 + params.windowMs,
          )),
      );
      const ok = parts.reduce((a, p) => a + p.okInWindow, 0);
      const seconds = parts[0].windowSeconds;
      const hist = LatencyHistogram.from(parts.map((p) => p.latency));
      const codes: Record<string, number> = {};
      for (const p of parts) {
        for (const [c, n] of Object.entries(p.codes)) codes[c] = (codes[c] ?? 0) + n;
      }
      return {
        figures: {
          perSecond: round(ok / seconds),
          p50Ms: round(hist.percentile(50)),
          p99Ms: round(hist.percentile(99)),
          serverCpuPercent: parts[0].serverCpuPercent,
        },
        detail: {
          windowSeconds: round(seconds),
          metricsPerSecond: parts[0].metricsPerSecond === null
            ? null
            : round(parts[0].metricsPerSecond),
          errors: parts.reduce((a, p) => a + p.errors, 0),
          timeouts: parts.reduce((a, p) => a + p.timeouts, 0),
          codes,
        },
      };
    },
  }];
}
