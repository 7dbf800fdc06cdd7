/**
 * HTTP ingest benchmark: requests/s and messages/s with p50/p99 latency from keep-alive clients
 * (raw HTTP/1.1 over TCP, one request in flight per connection), for single-message requests and
 * NDJSON batches, against Ferry's device API and against a plain `Deno.serve` endpoint that only
 * reads the body (the ceiling), in the same run. Each server runs in its own process.
 *
 * Run alone with `deno run -A bench/http_bench.ts [--quick]`, or through `deno task bench`.
 *
 * @module
 */

import { type ChildServer, percentile, progress, spawnServer } from "./_util.ts";

const FERRY = new URL("./http_ferry_server.ts", import.meta.url).pathname;
const BARE = new URL("./http_bare_server.ts", import.meta.url).pathname;

const findPort = (l: string) => {
  const m = /^listening (\d+)/.exec(l);
  return m ? Number(m[1]) : undefined;
};

/** Starts Ferry's HTTP ingest (core + HttpServer + DeviceApi) in a child process. */
export function startFerryHttp(): Promise<ChildServer> {
  return spawnServer(
    Deno.execPath(),
    ["run", "-A", "--v8-flags=--optimize-for-size", FERRY],
    findPort,
  );
}

/** Starts the plain Deno.serve ceiling in a child process. */
export function startBareHttp(): Promise<ChildServer> {
  return spawnServer(Deno.execPath(), ["run", "-A", BARE], findPort);
}

/** Options of {@link load}. */
export interface LoadOptions {
  /** Keep-alive connections (one device each). */
  clients: number;
  /** Messages per request (1 = plain body, more = NDJSON batch). */
  batch: number;
  /** Seconds of measurement (after a short warm-up). */
  seconds: number;
  /** Seconds of warm-up, not measured. */
  warmupSeconds: number;
}

/** Figures of one load run. */
export interface LoadResult {
  clients: number;
  batch: number;
  seconds: number;
  requests: number;
  accepted: number;
  refused: Record<string, number>;
  requestsPerSecond: number;
  messagesPerSecond: number;
  latencyMs: { p50: number; p99: number; max: number };
}

const encoder = new TextEncoder();

function request(id: string, batch: number): Uint8Array {
  const body = batch === 1
    ? '{"temp":21.5,"hum":40}'
    : Array.from({ length: batch }, (_, i) => `{"temp":21.5,"hum":40,"i":${i}}`).join("\n");
  const b = encoder.encode(body);
  const head = `POST /api/v1/devices/${id}/telemetry HTTP/1.1\r\nHost: bench\r\n` +
    `Authorization: Bearer bench\r\nContent-Type: ${
      batch === 1 ? "application/json" : "application/x-ndjson"
    }\r\nContent-Length: ${b.length}\r\n\r\n`;
  const h = encoder.encode(head);
  const out = new Uint8Array(h.length + b.length);
  out.set(h);
  out.set(b, h.length);
  return out;
}

/** Reads one response (status, content-length body) from a keep-alive connection. */
class ResponseReader {
  #conn: Deno.Conn;
  #buf = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;
  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  async #fill(): Promise<void> {
    if (this.#start > 0 && this.#start === this.#end) this.#start = this.#end = 0;
    if (this.#end === this.#buf.length) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    const n = await this.#conn.read(this.#buf.subarray(this.#end));
    if (n === null) throw new Error("connection closed by the server");
    this.#end += n;
  }

  async next(): Promise<number> {
    let headEnd: number;
    for (;;) {
      headEnd = findCrlfCrlf(this.#buf, this.#start, this.#end);
      if (headEnd >= 0) break;
      await this.#fill();
    }
    const head = new TextDecoder().decode(this.#buf.subarray(this.#start, headEnd));
    const status = Number(head.slice(9, 12));
    const m = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (!m) throw new Error(`response without content-length: ${head}`);
    const total = headEnd + 4 - this.#start + Number(m[1]);
    while (this.#end - this.#start < total) await this.#fill();
    this.#start += total;
    return status;
  }
}

function findCrlfCrlf(b: Uint8Array, from: number, to: number): number {
  for (let i = from; i + 3 < to; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i;
  }
  return -1;
}

async function writeAll(conn: Deno.Conn, b: Uint8Array): Promise<void> {
  let o = 0;
  while (o < b.length) o += await conn.write(b.subarray(o));
}

/** Drives `clients` keep-alive connections for the warm-up plus `seconds`. */
export async function load(port: number, o: LoadOptions): Promise<LoadResult> {
  const conns = await Promise.all(
    Array.from({ length: o.clients }, () => Deno.connect({ hostname: "127.0.0.1", port })),
  );
  const latencies: number[] = [];
  const refused: Record<string, number> = {};
  let requests = 0;
  let accepted = 0;
  const t0 = performance.now();
  const measureFrom = t0 + o.warmupSeconds * 1000;
  const stopAt = measureFrom + o.seconds * 1000;
  await Promise.all(conns.map(async (conn, i) => {
    const req = request(`bench-${i}`, o.batch);
    const reader = new ResponseReader(conn);
    try {
      for (;;) {
        const start = performance.now();
        if (start >= stopAt) break;
        await writeAll(conn, req);
        const status = await reader.next();
        const end = performance.now();
        if (start < measureFrom) continue;
        requests++;
        latencies.push(end - start);
        if (status === 202) accepted += o.batch;
        else refused[status] = (refused[status] ?? 0) + 1;
      }
    } finally {
      conn.close();
    }
  }));
  const r2 = (x: number) => Number(x.toFixed(2));
  return {
    clients: o.clients,
    batch: o.batch,
    seconds: o.seconds,
    requests,
    accepted,
    refused,
    requestsPerSecond: Math.round(requests / o.seconds),
    messagesPerSecond: Math.round(accepted / o.seconds),
    latencyMs: {
      p50: r2(percentile(latencies, 50)),
      p99: r2(percentile(latencies, 99)),
      max: r2(percentile(latencies, 100)),
    },
  };
}

/** Runs both scenarios (single, batched) against Ferry and the ceiling. */
export async function run(
  options: { clients: number; batch: number; seconds: number; warmupSeconds: number },
): Promise<Record<string, unknown>> {
  const results: Record<string, Record<string, LoadResult>> = {};
  for (const [name, start] of [["ferry", startFerryHttp], ["bare", startBareHttp]] as const) {
    results[name] = {};
    for (const [scenario, batch] of [["single", 1], ["batched", options.batch]] as const) {
      progress(`HTTP ${name}: ${scenario}, ${options.clients} keep-alive clients x ${batch} msg`);
      await using s = await start();
      results[name][scenario] = await load(s.port, { ...options, batch });
      progress(`  ${JSON.stringify(results[name][scenario])}`);
    }
  }
  const ratio = (a: number, b: number) => Number((a / b).toFixed(2));
  const f = results.ferry;
  const b = results.bare;
  return {
    ...results,
    ratios: {
      single_requestsPerSecond_ferry_over_bare: ratio(
        f.single.requestsPerSecond,
        b.single.requestsPerSecond,
      ),
      batched_messagesPerSecond_ferry_over_bare: ratio(
        f.batched.messagesPerSecond,
        b.batched.messagesPerSecond,
      ),
      single_p99_ferry_over_bare: ratio(f.single.latencyMs.p99, b.single.latencyMs.p99),
    },
  };
}

/** The run's options: 200 clients, 50-message batches, 5 s (or a smoke run with `quick`). */
export function benchOptions(
  quick: boolean,
): { clients: number; batch: number; seconds: number; warmupSeconds: number } {
  return quick
    ? { clients: 50, batch: 50, seconds: 1, warmupSeconds: 0.3 }
    : { clients: 200, batch: 50, seconds: 5, warmupSeconds: 1 };
}

if (import.meta.main) {
  const res = await run(benchOptions(Deno.args.includes("--quick")));
  console.log(JSON.stringify(res, null, 2));
}
