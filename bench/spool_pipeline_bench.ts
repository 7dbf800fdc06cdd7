/**
 * The spool alone, as adapters that pipeline acknowledgements will drive it: `devices` producers
 * each keeping `window` appends in flight (acknowledged in order as their commits return), and a
 * reader that forwards and acknowledges rows as the bridge does. Measures appends/s, rows per
 * commit, append latency (p50/p99) and whether the reader keeps pace; worker and inline.
 *
 * Usage: `deno run -A bench/spool_pipeline_bench.ts [--devices 100] [--window 16] [--seconds 5]`
 *
 * @module
 */

import { createMessage } from "../src/core/message.ts";
import { Spool } from "../src/northbound/spool.ts";

function arg(name: string, def: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : def;
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = Float64Array.from(values).sort();
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

async function run(o: { devices: number; window: number; seconds: number; worker: boolean }) {
  const dir = await Deno.makeTempDir({ prefix: "ferry-spool-pipe-" });
  const spool = await Spool.open(`${dir}/s.db`, {
    worker: o.worker,
    maxBytesPerDevice: 1 << 30,
    maxBytes: 2 ** 31,
  });
  const payload = new Uint8Array(64);
  const latencies: number[] = [];
  let appended = 0;
  let forwarded = 0;
  let running = true;
  const until = Date.now() + o.seconds * 1000;
  // The reader: what the bridge does with the live stream (read from the tail, acknowledge).
  let cursor = 0;
  const reader = (async () => {
    while (running || spool.depth > 0) {
      const rows = await spool.read(cursor, 4096);
      for (const r of rows) {
        spool.ack(r.id);
        cursor = r.id;
        forwarded++;
      }
      await new Promise((r) => setTimeout(r, rows.length ? 0 : 1));
      if (!running && rows.length === 0) break;
    }
  })();
  const t0 = performance.now();
  const commits0 = spool.stats.commits;
  await Promise.all(Array.from({ length: o.devices }, async (_, d) => {
    const topic = `devices/d${d}/telemetry`;
    const inflight: Promise<unknown>[] = [];
    while (Date.now() < until) {
      while (inflight.length < o.window) {
        const t = performance.now();
        inflight.push(
          spool.append(createMessage({ topic, payload, qos: 1, deviceId: `d${d}` })).then(() => {
            latencies.push(performance.now() - t);
            appended++;
          }),
        );
      }
      await inflight.shift(); // acknowledged in order, as a pipelining adapter would
    }
    await Promise.all(inflight);
  }));
  const seconds = (performance.now() - t0) / 1000;
  const commits = spool.stats.commits - commits0;
  const forwardedDuringLoad = forwarded;
  running = false;
  await reader;
  await spool.close();
  await Deno.remove(dir, { recursive: true });
  return {
    ...o,
    appendsPerSec: Math.round(appended / seconds),
    forwardedPerSecDuringLoad: Math.round(forwardedDuringLoad / seconds),
    rowsPerCommit: Math.round(appended / Math.max(1, commits)),
    appendP50Ms: Number(percentile(latencies, 50).toFixed(2)),
    appendP99Ms: Number(percentile(latencies, 99).toFixed(2)),
  };
}

if (import.meta.main) {
  const base = {
    devices: Number(arg("devices", "100")),
    window: Number(arg("window", "16")),
    seconds: Number(arg("seconds", "5")),
  };
  const out = [];
  for (const worker of [true, false]) out.push(await run({ ...base, worker }));
  out.push({ loadAverage: Deno.loadavg() });
  console.log(JSON.stringify(out, null, 2));
}
