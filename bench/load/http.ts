/**
 * HTTP load program (run by `bench/run.ts`, several processes at once so the client does not cap
 * the server): keep-alive HTTP/1.1 clients over raw TCP, one request in flight each,
 * `POST /api/v1/devices/{id}/telemetry` with one JSON message or an NDJSON batch. The processes
 * share one window by wall clock (`startAt`); each reports the responses inside it, a latency
 * histogram, and (the first process, for Ferry) `ferry_messages_received_total{protocol="http"}`
 * as a cross-check.
 *
 * @module
 */

import { rateBetween, readCounter } from "../_metrics.ts";
import { LatencyHistogram } from "../_stats.ts";
import { sleep } from "../_util.ts";
import { deviceId, pool, runChild, Window } from "./_child.ts";

/** Parameters. */
export interface HttpLoadParams {
  port: number;
  pid: number;
  metricsUrl?: string;
  /** Clients in this process. */
  clients: number;
  /** Index of this process's first client (device ids are unique across processes). */
  firstClient: number;
  /** Messages per request (1 = a JSON body, more = an NDJSON batch). */
  batch: number;
  /** `Date.now()` at which the warm-up starts, the same for every process. */
  startAt: number;
  warmupMs: number;
  windowMs: number;
}

const encoder = new TextEncoder();

function request(id: string, batch: number, port: number): Uint8Array {
  const body = batch === 1
    ? '{"temp":21.5,"hum":40}'
    : Array.from({ length: batch }, (_, i) => `{"temp":21.5,"hum":40,"i":${i}}`).join("\n");
  const b = encoder.encode(body);
  // The Host a client of 127.0.0.1:port sends (Ferry refuses unknown hosts: DNS rebinding).
  const head = `POST /api/v1/devices/${id}/telemetry HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
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
  if (Date.now() > p.startAt) {
    throw new Error(`load process ready ${Date.now() - p.startAt} ms after the agreed start`);
  }
  const hist = new LatencyHistogram();
  const refused: Record<string, number> = {};
  let requests = 0;
  let accepted = 0;
  let stop = false;
  let failed: unknown;
  const start = p.startAt + p.warmupMs;
  const end = start + p.windowMs;
  const loops = conns.map(async (conn, k) => {
    const req = request(deviceId(p.firstClient + k), p.batch, p.port);
    const reader = new ResponseReader(conn);
    try {
      while (!stop) {
        const t0 = performance.now();
        let o = 0;
        while (o < req.length) o += await conn.write(req.subarray(o));
        const status = await reader.next();
        const at = Date.now(); // by wall clock: every process counts the same window
        if (at < start || at >= end) continue;
        if (status === 202) { // only accepted requests count (and are timed)
          requests++;
          hist.record(performance.now() - t0);
          accepted += p.batch;
        } else refused[status] = (refused[status] ?? 0) + 1;
      }
    } catch (err) {
      if (!stop) failed ??= err;
    } finally {
      conn.close();
    }
  });
  const count = () =>
    p.firstClient === 0
      ? readCounter(p.metricsUrl, "ferry_messages_received_total", { protocol: "http" })
      : Promise.resolve(undefined);
  await sleep(start - Date.now());
  win.start();
  const m0p = count(); // not awaited here: a busy gateway may answer late
  await sleep(end - Date.now());
  win.end();
  const m1p = count();
  stop = true;
  await Promise.race([Promise.all(loops), sleep(10_000)]);
  if (failed) throw failed;
  return {
    requests,
    accepted,
    windowSeconds: p.windowMs / 1000,
    refused,
    metricsPerSecond: rateBetween(await m0p, await m1p),
    serverCpuPercent: win.cpuPercent,
    latency: hist.toJSON(),
  };
}

if (import.meta.main) await runChild<HttpLoadParams>(main);
