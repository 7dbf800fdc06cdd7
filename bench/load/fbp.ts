/**
 * FBP/1 load program (run by `bench/run.ts` in its own process). Modes:
 *
 * - `idle`: RSS growth per idle device connection (HELLO done), after a warm-up.
 * - `telemetry`: devices send ACK-requested TELEMETRY (64 B, empty channel: topic
 *   `devices/{id}/telemetry`) with `inFlight` unacknowledged each; ACKs received inside the window
 *   and their latency. With `metricsUrl` (Ferry), `ferry_messages_received_total{protocol=
 *   "binary"}` is read at both ends of the window as a cross-check.
 *
 * @module
 */

import {
  ACK_REQUESTED,
  BYE_FRAME,
  encodeFrame,
  FrameType,
  helloBody,
  restamp,
  scanFbp,
  telemetryBody,
} from "../_fbp_wire.ts";
import { rateBetween, readCounter } from "../_metrics.ts";
import { percentile, round } from "../_stats.ts";
import { sleep } from "../_util.ts";
import { deviceId, note, pool, runChild, until, Window } from "./_child.ts";

/** `idle` mode. */
export interface FbpIdleParams {
  mode: "idle";
  port: number;
  pid: number;
  warm: number;
  idle: number;
  concurrency: number;
  settleMs: number;
}

/** `telemetry` mode. */
export interface FbpTelemetryParams {
  mode: "telemetry";
  port: number;
  pid: number;
  metricsUrl?: string;
  devices: number;
  inFlight: number;
  payloadBytes: number;
  warmupMs: number;
  windowMs: number;
  graceMs: number;
}

/** Either mode. */
export type FbpLoadParams = FbpIdleParams | FbpTelemetryParams;

async function writeAll(conn: Deno.Conn, b: Uint8Array): Promise<void> {
  let o = 0;
  while (o < b.length) o += await conn.write(b.subarray(o));
}

/**
 * Sends BYE and waits (bounded) until the server closes, then closes: the TIME_WAIT stays on the
 * server's side, so the client's ephemeral ports are free for the next run (tens of thousands of
 * client-side TIME_WAITs make every later `connect` slow).
 */
async function bye(conn: Deno.TcpConn, timeoutMs = 5000): Promise<void> {
  try {
    await writeAll(conn, BYE_FRAME);
    const buf = new Uint8Array(256);
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const n = await Promise.race([conn.read(buf), sleep(deadline - performance.now())]);
      if (n === null || n === undefined) break;
    }
  } catch { /* closed */ }
  try {
    conn.close();
  } catch { /* closed */ }
}

/** {@link bye} on every connection at once, one bound (`timeoutMs`) for all. */
async function byeAll(
  conns: Array<Deno.TcpConn | undefined>,
  timeoutMs = 15_000,
): Promise<void> {
  await Promise.all(conns.map((c) => c && bye(c, timeoutMs)));
}

/** Connects and completes HELLO (bounded: 15 s); the connection's read side is left idle. */
async function hello(port: number, id: string): Promise<Deno.TcpConn> {
  const signal = AbortSignal.timeout(15_000);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port, signal });
  try {
    conn.setNoDelay(true);
    await writeAll(conn, encodeFrame(FrameType.HELLO, 0, 1, helloBody(id, "", 3600)));
    const buf = new Uint8Array(64);
    let got = 0;
    let status = -1;
    while (status < 0) {
      const n = await Promise.race([
        conn.read(buf.subarray(got)),
        new Promise<never>((_, reject) =>
          signal.addEventListener("abort", () => reject(new Error(`no HELLO_ACK for ${id}`)))
        ),
      ]);
      if (n === null) throw new Error(`connection ${id} closed during HELLO`);
      got += n;
      scanFbp(buf, 0, got, (type, _f, _s, b, ps) => {
        if (type === FrameType.HELLO_ACK) status = b[ps];
      });
    }
    if (status !== 0) throw new Error(`HELLO_ACK status ${status} for ${id}`);
    return conn;
  } catch (err) {
    conn.close();
    throw err;
  }
}

async function idle(p: FbpIdleParams) {
  const win = new Window(p.pid);
  const warm = await pool(p.warm, 50, (i) => hello(p.port, `bench-warm-${i}`));
  await byeAll(warm);
  await sleep(1000);
  const rssBefore = win.rss();
  let refused = 0;
  let firstError: string | undefined;
  const t0 = performance.now();
  const conns = await pool(p.idle, p.concurrency, async (i) => {
    try {
      return await hello(p.port, deviceId(i));
    } catch (err) {
      refused++;
      firstError ??= String(err);
      return undefined;
    }
  });
  const connectSeconds = (performance.now() - t0) / 1000;
  note(`${p.idle - refused}/${p.idle} idle devices connected in ${connectSeconds.toFixed(1)} s`);
  await sleep(p.settleMs);
  const rssIdle = win.rss();
  await byeAll(conns);
  return {
    idleBytesPerConnection: p.idle > refused
      ? Math.round((rssIdle - rssBefore) / (p.idle - refused))
      : null,
    rssBefore,
    rssIdle,
    refused,
    firstError,
    connectsPerSecond: Math.round((p.idle - refused) / connectSeconds),
  };
}

async function telemetry(p: FbpTelemetryParams) {
  const win = new Window(p.pid);
  const conns = await pool(p.devices, 100, (i) => hello(p.port, deviceId(i)));
  note(`${conns.length} devices connected, ${p.inFlight} ACK-requested frames in flight each`);
  const lat: number[] = [];
  let ackedInWindow = 0;
  let stopping = false;
  let failed: unknown;
  let outstanding = 0;
  let closedByServer = 0; // devices the gateway disconnected during the load
  const body = telemetryBody(new Uint8Array(p.payloadBytes).fill(0x61));
  const loops = conns.map(async (conn) => {
    const tpl = encodeFrame(FrameType.TELEMETRY, ACK_REQUESTED, 2, body);
    const sentAt = new Map<number, number>();
    let seq = 2;
    const send = async (n: number) => {
      const out = new Uint8Array(n * tpl.length);
      for (let k = 0; k < n; k++) {
        const s = seq++;
        restamp(tpl, s);
        out.set(tpl, k * tpl.length);
        sentAt.set(s, win.open ? performance.now() : -performance.now());
      }
      outstanding += n;
      await writeAll(conn, out);
    };
    const buf = new Uint8Array(16 * 1024);
    let end = 0;
    try {
      await send(p.inFlight);
      while (!stopping || sentAt.size > 0) {
        const n = await conn.read(buf.subarray(end));
        if (n === null) {
          // Counted and reported, not fatal: the other devices' figures still stand.
          if (!stopping) closedByServer++;
          outstanding -= sentAt.size;
          conn.close();
          return;
        }
        end += n;
        let acks = 0;
        const used = scanFbp(buf, 0, end, (type, _f, seq) => {
          if (type !== FrameType.ACK) return;
          const t = sentAt.get(seq);
          if (t === undefined) return;
          sentAt.delete(seq);
          outstanding--;
          acks++;
          if (win.open) ackedInWindow++;
          if (t >= 0) lat.push(performance.now() - t); // sent inside the window
        }, false);
        buf.copyWithin(0, used, end);
        end -= used;
        if (acks && !stopping) await send(acks);
      }
      await bye(conn);
    } catch (err) {
      if (!stopping) failed ??= err;
      conn.close();
    }
  });
  await sleep(p.warmupMs);
  const count = () =>
    readCounter(p.metricsUrl, "ferry_messages_received_total", { protocol: "binary" });
  win.start();
  const m0p = count(); // not awaited here: a busy gateway may answer late
  await sleep(p.windowMs);
  win.end();
  const m1p = count();
  stopping = true;
  if (failed) throw failed;
  await until(() => outstanding === 0, p.graceMs);
  const ended = await Promise.race([Promise.all(loops).then(() => true), sleep(10_000)]);
  if (!ended) {
    for (const c of conns) {
      try {
        c.close();
      } catch { /* closed by its loop */ }
    }
  }
  return {
    perSecond: round(ackedInWindow / win.seconds),
    p50Ms: round(percentile(lat, 50)),
    p99Ms: round(percentile(lat, 99)),
    metricsPerSecond: round(rateBetween(await m0p, await m1p) ?? NaN),
    serverCpuPercent: win.cpuPercent,
    windowSeconds: round(win.seconds),
    unackedAtEnd: outstanding,
    closedByServer,
  };
}

if (import.meta.main) {
  await runChild<FbpLoadParams>((p) => p.mode === "idle" ? idle(p) : telemetry(p));
}
