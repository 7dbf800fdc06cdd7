/**
 * HTTP load program (run by `bench/run.ts` in its own process): keep-alive HTTP/1.1 clients over
 * raw TCP, one request in flight each, `POST /api/v1/devices/{id}/telemetry` with one JSON
 * message or an NDJSON batch. Accepted (202) responses inside the window and their latency; with
 * `metricsUrl` (Ferry), `ferry_messages_received_total{protocol="http"}` as a cross-check.
 *
 * @module
 */

import { rateBetween, readCounter } from "../_metrics.ts";
import { percentile, round } from "../_stats.ts";
import { sleep } from "../_util.ts";
import { deviceId, pool, runChild, Window } from "./_child.ts";

/** Parameters. */
export interface HttpLoadParams {
  port: number;
  pid: number;
  metricsUrl?: string;
  clients: number;
  /** Messages per request (1 = a JSON body, more = an NDJSON batch). */
  batch: number;
  warmupMs: number;
  windowMs: number;
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

/** Reads one response at a time (status, Content-Length body) from a keep-alive connection. */
class ResponseReader {
  #conn: Deno.Conn;
  #buf = new Uint8Array(16 * 1024);
  #start = 0;
  #end = 0;
  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  async #fill(): Promise<void> {
    if (this.#start === this.#end) this.#start = this.#end = 0;
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

async function main(p: HttpLoadParams) {
  const win = new Window(p.pid);
  const conns = await pool(
    p.clients,
    50,
    () =>
      Deno.connect({ hostname: "127.0.0.1", port: p.port, signal: AbortSignal.timeout(15_000) }),
  );
  const lat: number[] = [];
  const refused: Record<string, number> = {};
  let requests = 0;
  let accepted = 0;
  let stop = false;
  let failed: unknown;
  const loops = conns.map(async (conn, i) => {
    const req = request(deviceId(i), p.batch);
    const reader = new ResponseReader(conn);
    try {
      while (!stop) {
        const t0 = performance.now();
        let o = 0;
        while (o < req.length) o += await conn.write(req.subarray(o));
        const status = await reader.next();
        if (!win.open) continue;
        requests++;
        lat.push(performance.now() - t0);
        if (status === 202) accepted += p.batch;
        else refused[status] = (refused[status] ?? 0) + 1;
      }
    } catch (err) {
      if (!stop) failed ??= err;
    } finally {
      conn.close();
    }
  });
  const count = () =>
    readCounter(p.metricsUrl, "ferry_messages_received_total", { protocol: "http" });
  await sleep(p.warmupMs);
  win.start();
  const m0 = await count();
  await sleep(p.windowMs - (performance.now() - win.t0));
  win.end();
  const m1 = await count();
  stop = true;
  await Promise.race([Promise.all(loops), sleep(10_000)]);
  if (failed) throw failed;
  return {
    requestsPerSecond: round(requests / win.seconds),
    messagesPerSecond: round(accepted / win.seconds),
    p50Ms: round(percentile(lat, 50)),
    p99Ms: round(percentile(lat, 99)),
    refused,
    metricsPerSecond: m0 && m1 ? round(rateBetween(m0, m1) ?? NaN) : null,
    serverCpuPercent: win.cpuPercent,
    windowSeconds: round(win.seconds),
  };
}

if (import.meta.main) await runChild<HttpLoadParams>(main);
