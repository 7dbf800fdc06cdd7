/**
 * Northbound benchmark: FBP/1 devices → Ferry (spool on, `synchronous=FULL`) → a real mosquitto
 * with a subscriber attached. Measures
 *
 * - sustained end-to-end QoS 1 throughput (device ACKs and upstream PUBACKs per second),
 * - p50/p99 device-ACK latency at half that load,
 * - the replay rate of a backlog (1,000,000 messages; 100,000 with `--quick`) built while the
 *   upstream was down, and the spool's bytes per message.
 *
 * Run alone with `deno run -A bench/northbound_bench.ts [--quick]`, or from `bench/run.ts`.
 *
 * @module
 */

import { FrameParser } from "../src/protocols/binary/codec.ts";
import {
  encodeFrame,
  encodeHello,
  encodeTelemetry,
  FLAG_ACK_REQUESTED,
  FrameType,
} from "../src/protocols/binary/frame.ts";
import { percentile, progress } from "./_util.ts";

const GATEWAY = new URL("./northbound_gateway.ts", import.meta.url).pathname;

interface Stats {
  t: number;
  published: number;
  depth: number;
  bytes: number;
  fileBytes: number;
  commits: number;
  appended: number;
  state: string;
  maxLagMs: number;
  maxCommitMs: number;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await sleep(20);
    }
  }
  throw new Error(`nothing listening on ${port}`);
}

/** mosquitto + a mosquitto_sub subscriber (output discarded). */
async function startBroker(dir: string, port: number) {
  await Deno.chmod(dir, 0o777);
  const conf = `${dir}/mosquitto.conf`;
  await Deno.writeTextFile(
    conf,
    `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n` +
      `max_queued_messages 1000000\n`,
  );
  const broker = new Deno.Command("/usr/sbin/mosquitto", {
    args: ["-c", conf],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitPort(port);
  const sub = new Deno.Command("mosquitto_sub", {
    args: ["-h", "127.0.0.1", "-p", String(port), "-q", "1", "-t", "ferry/#"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await sleep(200);
  return {
    async stop() {
      for (const c of [sub, broker]) {
        try {
          c.kill("SIGKILL");
        } catch { /* gone */ }
        await c.status;
      }
    },
  };
}

/** The gateway child; `latest` holds its newest stats line. */
async function startGateway(dir: string, options: Record<string, unknown>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      ...(Deno.env.get("NB_GATEWAY_FLAGS")?.split(" ").filter(Boolean) ?? []),
      GATEWAY,
      "--data",
      dir,
      "--options",
      JSON.stringify(options),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const ready = Promise.withResolvers<number>();
  const g = { port: 0, latest: undefined as Stats | undefined, child, maxLagMs: 0, maxCommitMs: 0 };
  const reading = (async () => {
    let buf = "";
    for await (const s of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += s;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const o = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (o.port) ready.resolve(o.port);
        else {
          g.latest = o;
          g.maxLagMs = Math.max(g.maxLagMs, o.maxLagMs);
          g.maxCommitMs = Math.max(g.maxCommitMs, o.maxCommitMs);
        }
      }
    }
  })();
  g.port = await ready.promise;
  return {
    ...g,
    get latest() {
      return g.latest;
    },
    /** Worst event-loop lag of the gateway since the last call. */
    takeMaxLag(): number {
      const m = g.maxLagMs;
      g.maxLagMs = 0;
      return m;
    },
    /** Longest spool transaction (incl. fsync and any checkpoint) since the last call. */
    takeMaxCommit(): number {
      const m = g.maxCommitMs;
      g.maxCommitMs = 0;
      return m;
    },
    async waitStats(cond: (s: Stats) => boolean, timeoutMs: number): Promise<Stats> {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (g.latest && cond(g.latest)) return g.latest;
        await sleep(50);
      }
      throw new Error(`gateway stats condition not met; last ${JSON.stringify(g.latest)}`);
    },
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await reading;
    },
  };
}

async function writeAll(conn: Deno.Conn, b: Uint8Array): Promise<void> {
  let o = 0;
  while (o < b.length) o += await conn.write(b.subarray(o));
}

/**
 * One FBP/1 device sending ACK-requested telemetry with `window` in flight, optionally paced to
 * `ratePerSec`, until `until` (ms, Date.now) or `count` messages. Records ACK latencies.
 */
async function device(
  port: number,
  id: string,
  o: {
    window: number;
    until: number;
    count: number;
    ratePerSec?: number;
    latencies?: number[];
    warmupMs?: number;
  },
): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(
    conn,
    encodeFrame({
      type: FrameType.HELLO,
      flags: 0,
      seq: 1,
      payload: encodeHello({ id, token: "", keepAlive: 60 }),
    }),
  );
  const parser = new FrameParser();
  const buf = new Uint8Array(16 * 1024);
  const payload = encodeTelemetry({ channel: "bench", data: new Uint8Array(64).fill(0x61) });
  const sentAt = new Map<number, number>();
  let seq = 2;
  let sent = 0;
  let acked = 0;
  const t0 = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let helloAcked = false;
  // One writer at a time: the read loop and the pacing timer both call pump, and concurrent
  // partial writes would interleave frames.
  let writing = false;
  let again = false;
  const pump = async () => {
    if (writing) {
      again = true;
      return;
    }
    writing = true;
    try {
      do {
        again = false;
        const frames: Uint8Array[] = [];
        const allowed = o.ratePerSec
          ? Math.floor((performance.now() - t0) * o.ratePerSec / 1000)
          : Infinity;
        while (
          sent < o.count && sent - acked < o.window && sent < allowed && Date.now() < o.until
        ) {
          const s = seq++;
          sentAt.set(s, performance.now());
          frames.push(
            encodeFrame({ type: FrameType.TELEMETRY, flags: FLAG_ACK_REQUESTED, seq: s, payload }),
          );
          sent++;
        }
        if (frames.length) {
          const all = new Uint8Array(frames.reduce((a, b) => a + b.length, 0));
          let off = 0;
          for (const f of frames) {
            all.set(f, off);
            off += f.length;
          }
          await writeAll(conn, all);
        }
      } while (again);
    } finally {
      writing = false;
    }
    const over = sent >= o.count || Date.now() >= o.until;
    if (over && acked >= sent && helloAcked) {
      // Nothing in flight and nothing more to send: end the read loop below.
      try {
        conn.close();
      } catch { /* closed */ }
      return;
    }
    if (o.ratePerSec && !over && timer === undefined) {
      timer = setTimeout(() => {
        timer = undefined;
        pump();
      }, 1);
    }
  };
  await pump();
  for (;;) {
    if (helloAcked && acked >= sent && (sent >= o.count || Date.now() >= o.until)) break;
    let n: number | null;
    try {
      n = await conn.read(buf);
    } catch {
      break; // closed by pump
    }
    if (n === null) break;
    for (const f of parser.push(buf.subarray(0, n))) {
      if (f.type === FrameType.HELLO_ACK) helloAcked = true;
      if (f.type !== FrameType.ACK) continue;
      const t = sentAt.get(f.seq);
      if (t === undefined) continue;
      sentAt.delete(f.seq);
      if (t - t0 >= (o.warmupMs ?? 0)) o.latencies?.push(performance.now() - t);
      acked++;
    }
    await pump();
  }
  clearTimeout(timer);
  try {
    conn.close();
  } catch { /* closed by pump */ }
  return acked;
}

async function load(
  port: number,
  o: {
    devices: number;
    seconds: number;
    window: number;
    ratePerSec?: number;
    count?: number;
    warmupMs?: number;
  },
) {
  const latencies: number[] = [];
  const until = Date.now() + o.seconds * 1000;
  const t0 = performance.now();
  const counts = await Promise.all(
    Array.from({ length: o.devices }, (_, i) =>
      device(port, `b${i}`, {
        window: o.window,
        until,
        count: o.count ?? Infinity,
        ratePerSec: o.ratePerSec ? o.ratePerSec / o.devices : undefined,
        latencies,
        warmupMs: o.warmupMs,
      })),
  );
  const seconds = (performance.now() - t0) / 1000;
  const acked = counts.reduce((a, b) => a + b, 0);
  return {
    acked,
    seconds: Number(seconds.toFixed(2)),
    ackedPerSecond: Math.round(acked / seconds),
    p50Ms: Number(percentile(latencies, 50).toFixed(2)),
    p99Ms: Number(percentile(latencies, 99).toFixed(2)),
  };
}

/** Runs the northbound scenarios. */
export async function run(
  options: { devices: number; seconds: number; backlog: number },
): Promise<Record<string, unknown>> {
  const dir = await Deno.makeTempDir({ prefix: "ferry-nb-bench-" });
  const brokerPort = freePort();
  const base = {
    url: `mqtt://127.0.0.1:${brokerPort}`,
    gatewayId: "bench",
    inflight: 2000,
    replayRatePerSec: 0,
    backoffBaseMs: 50,
    backoffCapMs: 200,
    spool: { maxBytes: 2 ** 31, synchronous: "full" },
  };
  const results: Record<string, unknown> = {};
  try {
    // 1. Sustained throughput, link up.
    {
      const broker = await startBroker(dir, brokerPort);
      const gw = await startGateway(`${dir}/a`, base);
      await gw.waitStats((s) => s.state === "live", 10_000);
      progress(`northbound: sustained load, ${options.devices} devices, ${options.seconds} s`);
      await load(gw.port, { devices: options.devices, seconds: 2, window: 32 }); // warm-up
      await gw.waitStats((s) => s.depth === 0, 60_000);
      const before = gw.latest!;
      const r = await load(gw.port, {
        devices: options.devices,
        seconds: options.seconds,
        window: 32,
      });
      const after = gw.latest!;
      const drained = await gw.waitStats((s) => s.depth === 0, 120_000);
      const upstreamPerSecond = Math.round(
        (drained.published - before.published) / ((drained.t - before.t) / 1000),
      );
      results.sustained = {
        ...r,
        upstreamPublishedPerSecond: upstreamPerSecond,
        spoolDepthAtEnd: after.depth,
        commitsPerSecond: Math.round(
          (after.commits - before.commits) / ((after.t - before.t) / 1000),
        ),
      };
      progress(`  ${JSON.stringify(results.sustained)}`);
      // 2. Latency at half the sustained rate.
      (results.sustained as Record<string, unknown>).gatewayMaxEventLoopLagMs = gw.takeMaxLag();
      (results.sustained as Record<string, unknown>).maxCommitMs = gw.takeMaxCommit();
      const half = Math.round(Math.min(r.ackedPerSecond, upstreamPerSecond) / 2);
      progress(`northbound: latency at ${half} msg/s`);
      const l = await load(gw.port, {
        devices: options.devices,
        seconds: options.seconds,
        window: 64,
        ratePerSec: half,
        warmupMs: 1000,
      });
      results.halfLoad = {
        targetPerSecond: half,
        ...l,
        gatewayMaxEventLoopLagMs: gw.takeMaxLag(),
        maxCommitMs: gw.takeMaxCommit(),
      };
      progress(`  ${JSON.stringify(results.halfLoad)}`);
      await gw.stop();
      await broker.stop();
    }
    // 3. Backlog while the upstream is down, then replay.
    if (options.backlog > 0) {
      const gw = await startGateway(`${dir}/b`, base);
      progress(`northbound: building a ${options.backlog}-message backlog with the upstream down`);
      const per = Math.ceil(options.backlog / options.devices);
      const fill = await load(gw.port, {
        devices: options.devices,
        seconds: 3600,
        window: 64,
        count: per,
      });
      const full = await gw.waitStats((s) => s.depth >= fill.acked, 30_000);
      progress(`  spooled ${full.depth} at ${fill.ackedPerSecond} msg/s, ${full.fileBytes} bytes`);
      const broker = await startBroker(dir, brokerPort);
      const t0 = performance.now();
      const start = gw.latest!;
      const done = await gw.waitStats((s) => s.depth === 0, 1_800_000);
      const seconds = (performance.now() - t0) / 1000;
      await sleep(6000); // housekeeping compacts the drained spool
      results.backlog = {
        messages: full.depth,
        fillPerSecond: fill.ackedPerSecond,
        spoolFileBytes: full.fileBytes,
        spoolBytesPerMessage: Math.round(full.fileBytes / full.depth),
        replaySeconds: Number(seconds.toFixed(2)),
        replayPerSecond: Math.round((done.published - start.published) / seconds),
        fileBytesAfterDrain: gw.latest!.fileBytes,
      };
      progress(`  ${JSON.stringify(results.backlog)}`);
      await gw.stop();
      await broker.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  return results;
}

if (import.meta.main) {
  const quick = Deno.args.includes("--quick");
  const opts = quick
    ? { devices: 50, seconds: 4, backlog: 100_000 }
    : { devices: 100, seconds: 10, backlog: 1_000_000 };
  const i = Deno.args.indexOf("--backlog");
  if (i >= 0) opts.backlog = Number(Deno.args[i + 1]);
  const r = await run(opts);
  console.log(JSON.stringify(r, null, 2));
}
