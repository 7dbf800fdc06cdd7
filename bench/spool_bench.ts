/**
 * Spool benchmark against the real gateway: `main.ts` started as users start it (default config,
 * every listener on, fsync on) with a northbound section, a real mosquitto upstream, FBP/1
 * devices sending ACK-requested telemetry with a window in flight, and a raw upstream subscriber
 * in this process that timestamps arrivals (the payload carries the send time), so the figures
 * are device ACKs/s, upstream arrivals/s *during* the load, and end-to-end latency (device send →
 * upstream subscriber receipt) at half the sustained load.
 *
 * With `--bridges 2` the same devices are split over two bridges to two mosquittos (even devices
 * send on telemetry channel `a`, odd ones on `b`; each bridge forwards one channel), for the
 * one-vs-two bridge comparison.
 *
 * Usage: `deno run -A bench/spool_bench.ts [--devices 100] [--seconds 10] [--window 32]
 * [--bridges 1|2] [--sync full|normal] [--worker true|false] [--json out.json]`
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

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function arg(name: string, def: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : def;
}

function log(msg: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`[spool-bench] ${msg}\n`));
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = Float64Array.from(values).sort();
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

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

async function startBroker(dir: string) {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.chmod(dir, 0o777);
  const port = freePort();
  const conf = `${dir}/mosquitto.conf`;
  await Deno.writeTextFile(
    conf,
    `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n` +
      `max_queued_messages 1000000\n`,
  );
  const child = new Deno.Command("/usr/sbin/mosquitto", {
    args: ["-c", conf],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitPort(port);
  return {
    port,
    async stop() {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    },
  };
}

const enc = new TextEncoder();

function mqttString(s: string): Uint8Array {
  const b = enc.encode(s);
  const out = new Uint8Array(2 + b.length);
  out[0] = b.length >> 8;
  out[1] = b.length & 0xff;
  out.set(b, 2);
  return out;
}

function packet(type: number, body: Uint8Array): Uint8Array {
  const len: number[] = [];
  let x = body.length;
  do {
    let b = x % 128;
    x = Math.floor(x / 128);
    if (x > 0) b |= 0x80;
    len.push(b);
  } while (x > 0);
  const out = new Uint8Array(1 + len.length + body.length);
  out[0] = type;
  out.set(len, 1);
  out.set(body, 1 + len.length);
  return out;
}

/**
 * A raw MQTT 3.1.1 subscriber at QoS 0 (no acknowledgements to send): counts arrivals and, for
 * payloads that start with a float64 send time, records the end-to-end latency.
 */
async function upstreamSubscriber(port: number, filter: string) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const connect = new Uint8Array([
    ...mqttString("MQTT"),
    4,
    0x02,
    0,
    60,
    ...mqttString(`bench-sub-${port}`),
  ]);
  await conn.write(packet(0x10, connect));
  await conn.write(packet(0x82, new Uint8Array([0, 1, ...mqttString(filter), 0])));
  const s = { received: 0, latencies: [] as number[], record: false, closed: false };
  const reading = (async () => {
    const buf = new Uint8Array(256 * 1024);
    let pending = new Uint8Array(0);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        const now = performance.now();
        let data: Uint8Array;
        if (pending.length) {
          data = new Uint8Array(pending.length + n);
          data.set(pending);
          data.set(buf.subarray(0, n), pending.length);
        } else data = buf.subarray(0, n);
        let o = 0;
        for (;;) {
          if (o + 2 > data.length) break;
          let len = 0;
          let mul = 1;
          let i = o + 1;
          let ok = false;
          for (; i < data.length && i < o + 5; i++) {
            len += (data[i] & 0x7f) * mul;
            mul *= 128;
            if ((data[i] & 0x80) === 0) {
              ok = true;
              i++;
              break;
            }
          }
          if (!ok || i + len > data.length) break;
          if ((data[o] & 0xf0) === 0x30) {
            s.received++;
            const tlen = (data[i] << 8) | data[i + 1];
            const p = i + 2 + tlen; // QoS 0: no packet id
            if (s.record && i + len - p >= 8) {
              const t = new DataView(data.buffer, data.byteOffset + p, 8).getFloat64(0);
              if (t > 0) s.latencies.push(now - t);
            }
          }
          o = i + len;
        }
        pending = data.slice(o);
      }
    } catch { /* closed */ }
    s.closed = true;
  })();
  return {
    stats: s,
    async close() {
      try {
        conn.close();
      } catch { /* closed */ }
      await reading;
    },
  };
}

async function startGateway(dir: string, northbound: unknown) {
  await Deno.mkdir(dir, { recursive: true });
  const cfg = `${dir}/ferry.json`;
  await Deno.writeTextFile(cfg, JSON.stringify({ northbound }));
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--unstable-net",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-sys",
      "--v8-flags=--optimize-for-size",
      // FERRY_BENCH_CPU_PROF=dir writes a V8 CPU profile of the gateway there.
      ...(Deno.env.get("FERRY_BENCH_CPU_PROF")
        ? ["--cpu-prof", `--cpu-prof-dir=${Deno.env.get("FERRY_BENCH_CPU_PROF")}`]
        : []),
      MAIN,
      "--config",
      cfg,
      "--data-dir",
      dir,
      "--binary-port",
      "0",
      "--mqtt-port",
      "0",
      "--coap-port",
      "0",
      "--http-port",
      "0",
      "--mqtt-ws-port", // MQTT over WebSocket is on by default (8083): a free port like the rest
      "0",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const ready = Promise.withResolvers<Record<string, { port: number }>>();
  let tail = "";
  const warnings: string[] = [];
  const reading = (async () => {
    let buf = "";
    for await (const s of child.stderr.pipeThrough(new TextDecoderStream())) {
      buf += s;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        tail = (tail + line + "\n").slice(-4000);
        if (/"level":"(warn|error)"/.test(line) && warnings.length < 20) warnings.push(line);
        if (line.includes('"msg":"ready"')) ready.resolve(JSON.parse(line).addresses);
      }
    }
    ready.reject(new Error(`gateway exited:\n${tail}`));
  })();
  const addresses = await ready.promise;
  return { child, addresses, reading, warnings };
}

async function scrape(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    const k = line.slice(0, i);
    m.set(k, (m.get(k) ?? 0) + Number(line.slice(i + 1)));
  }
  return m;
}

function sum(m: Map<string, number>, prefix: string): number {
  let n = 0;
  for (const [k, v] of m) if (k === prefix || k.startsWith(prefix + "{")) n += v;
  return n;
}

async function writeAll(conn: Deno.Conn, b: Uint8Array): Promise<void> {
  let o = 0;
  while (o < b.length) o += await conn.write(b.subarray(o));
}

/** One FBP/1 device with `window` ACK-requested telemetry frames in flight. */
async function device(
  port: number,
  id: string,
  o: {
    window: number;
    until: number;
    ratePerSec?: number;
    latencies?: number[];
    channel?: string;
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
  const data = new Uint8Array(64).fill(0x61);
  const sentAt = new Map<number, number>();
  let seq = 2;
  let sent = 0;
  let acked = 0;
  const t0 = performance.now();
  let writing = false;
  let again = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
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
        while (sent - acked < o.window && sent < allowed && Date.now() < o.until) {
          const s = seq++;
          const now = performance.now();
          sentAt.set(s, now);
          new DataView(data.buffer).setFloat64(0, now);
          frames.push(encodeFrame({
            type: FrameType.TELEMETRY,
            flags: FLAG_ACK_REQUESTED,
            seq: s & 0xffff || 1,
            payload: encodeTelemetry({ channel: o.channel ?? "", data }),
          }));
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
    if (o.ratePerSec && Date.now() < o.until && timer === undefined) {
      timer = setTimeout(() => {
        timer = undefined;
        pump();
      }, 1);
    }
  };
  // Time's up and nothing in flight: end the read loop (no more acks will come to wake it).
  const watchdog = setInterval(() => {
    if (Date.now() >= o.until && acked >= sent) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  }, 50);
  let helloAcked = false;
  await pump();
  const deadline = o.until + 30_000;
  for (;;) {
    if (helloAcked && acked >= sent && Date.now() >= o.until) break;
    if (Date.now() > deadline) break;
    let n: number | null;
    try {
      n = await conn.read(buf);
    } catch {
      break;
    }
    if (n === null) break;
    for (const f of parser.push(buf.subarray(0, n))) {
      if (f.type === FrameType.HELLO_ACK) helloAcked = true;
      if (f.type !== FrameType.ACK) continue;
      const t = sentAt.get(f.seq);
      if (t === undefined) continue;
      sentAt.delete(f.seq);
      o.latencies?.push(performance.now() - t);
      acked++;
    }
    await pump();
  }
  clearTimeout(timer);
  clearInterval(watchdog);
  try {
    conn.close();
  } catch { /* closed */ }
  return acked;
}

async function load(
  port: number,
  o: { devices: number; seconds: number; window: number; ratePerSec?: number; channels?: boolean },
) {
  const until = Date.now() + o.seconds * 1000;
  const t0 = performance.now();
  const latencies: number[] = [];
  const counts = await Promise.all(
    Array.from({ length: o.devices }, (_, i) =>
      device(port, `d${i}`, {
        window: o.window,
        until,
        channel: o.channels ? (i % 2 ? "b" : "a") : undefined,
        ratePerSec: o.ratePerSec ? o.ratePerSec / o.devices : undefined,
        latencies,
      })),
  );
  const seconds = (performance.now() - t0) / 1000;
  const acked = counts.reduce((a, b) => a + b, 0);
  return { acked, seconds, latencies };
}

/** Runs one configuration; returns its figures. */
export async function run(o: {
  devices: number;
  seconds: number;
  window: number;
  bridges: 1 | 2;
  sync: "full" | "normal";
  worker: boolean;
}): Promise<Record<string, unknown>> {
  const dir = await Deno.makeTempDir({ prefix: "ferry-spool-bench-" });
  const brokers = [await startBroker(`${dir}/mq1`)];
  if (o.bridges === 2) brokers.push(await startBroker(`${dir}/mq2`));
  const subs = await Promise.all(
    brokers.map((b) => upstreamSubscriber(b.port, "ferry/#")),
  );
  const common = {
    gatewayId: "bench",
    spool: { synchronous: o.sync, maxBytes: 2 ** 31, worker: o.worker },
  };
  // Two bridges: even devices send on channel "a", odd ones on "b"; each bridge forwards one.
  const northbound = o.bridges === 1 ? { ...common, url: `mqtt://127.0.0.1:${brokers[0].port}` } : [
    {
      ...common,
      name: "a",
      url: `mqtt://127.0.0.1:${brokers[0].port}`,
      forward: ["devices/+/telemetry/a"],
    },
    {
      ...common,
      name: "b",
      url: `mqtt://127.0.0.1:${brokers[1].port}`,
      forward: ["devices/+/telemetry/b"],
    },
  ];
  const two = o.bridges === 2;
  const gw = await startGateway(`${dir}/gw`, northbound);
  const out: Record<string, unknown> = { ...o };
  try {
    const httpPort = gw.addresses.http.port;
    const fbpPort = gw.addresses.binary.port;
    for (let i = 0; i < 100; i++) {
      const m = await scrape(httpPort);
      if (sum(m, "ferry_northbound_connected") >= o.bridges) break;
      await sleep(100);
    }
    log(`gateway up (fbp ${fbpPort}, http ${httpPort}); warm-up`);
    await load(fbpPort, { devices: o.devices, seconds: 2, window: o.window, channels: two });
    for (let i = 0; i < 600; i++) {
      if (sum(await scrape(httpPort), "ferry_spool_depth") === 0) break;
      await sleep(100);
    }
    // Sustained: as fast as the devices can get ACKs.
    const before = await scrape(httpPort);
    const upBefore = subs.reduce((a, s) => a + s.stats.received, 0);
    const t0 = performance.now();
    const r = await load(fbpPort, {
      devices: o.devices,
      seconds: o.seconds,
      window: o.window,
      channels: two,
    });
    const loadSec = (performance.now() - t0) / 1000;
    const upDuring = subs.reduce((a, s) => a + s.stats.received, 0) - upBefore;
    const after = await scrape(httpPort);
    let drainSec = 0;
    for (let i = 0; i < 1200; i++) {
      if (sum(await scrape(httpPort), "ferry_spool_depth") === 0) break;
      await sleep(100);
      drainSec += 0.1;
    }
    const commits = sum(after, "ferry_spool_commits_total") -
      sum(before, "ferry_spool_commits_total");
    out.sustained = {
      deviceAcksPerSec: Math.round(r.acked / r.seconds),
      upstreamReceivedPerSecDuringLoad: Math.round(upDuring / loadSec),
      upstreamPublishedPerSecDuringLoad: Math.round(
        (sum(after, "ferry_northbound_published_total") -
          sum(before, "ferry_northbound_published_total")) / loadSec,
      ),
      spoolDepthAtEnd: sum(after, "ferry_spool_depth"),
      drainAfterLoadSec: Number(drainSec.toFixed(1)),
      commitsPerSec: Math.round(commits / loadSec),
      ackP50Ms: Number(percentile(r.latencies, 50).toFixed(2)),
      ackP99Ms: Number(percentile(r.latencies, 99).toFixed(2)),
    };
    log(`sustained ${JSON.stringify(out.sustained)}`);
    // End-to-end latency at half the sustained device rate.
    const half = Math.round(r.acked / r.seconds / 2);
    for (const s of subs) {
      s.stats.latencies = [];
      s.stats.record = true;
    }
    const h = await load(fbpPort, {
      devices: o.devices,
      seconds: o.seconds,
      window: 64,
      ratePerSec: half,
      channels: two,
    });
    await sleep(1000);
    for (const s of subs) s.stats.record = false;
    const e2e = subs.flatMap((s) => s.stats.latencies);
    out.halfLoad = {
      targetPerSec: half,
      deviceAcksPerSec: Math.round(h.acked / h.seconds),
      ackP50Ms: Number(percentile(h.latencies, 50).toFixed(2)),
      ackP99Ms: Number(percentile(h.latencies, 99).toFixed(2)),
      endToEndP50Ms: Number(percentile(e2e, 50).toFixed(2)),
      endToEndP99Ms: Number(percentile(e2e, 99).toFixed(2)),
      endToEndSamples: e2e.length,
    };
    log(`half load ${JSON.stringify(out.halfLoad)}`);
    out.loadAverage = Deno.loadavg();
    if (gw.warnings.length) log(`gateway warnings:\n${gw.warnings.join("\n")}`);
  } finally {
    gw.child.kill("SIGTERM");
    await gw.child.status;
    await gw.reading;
    for (const s of subs) await s.close();
    for (const b of brokers) await b.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  return out;
}

if (import.meta.main) {
  const bridges = Number(arg("bridges", "1"));
  const o = {
    devices: Number(arg("devices", "100")),
    seconds: Number(arg("seconds", "10")),
    window: Number(arg("window", "32")),
    bridges: (bridges === 2 ? 2 : 1) as 1 | 2,
    sync: (arg("sync", "full") === "normal" ? "normal" : "full") as "full" | "normal",
    worker: arg("worker", "true") !== "false",
  };
  const r = await run(o);
  console.log(JSON.stringify(r, null, 2));
  const file = arg("json", "");
  if (file) await Deno.writeTextFile(file, JSON.stringify(r, null, 2) + "\n");
}
