/**
 * FBP/1 benchmark: RSS per idle connection and ACKed telemetry throughput with latency, for Ferry
 * and for the bare-Deno floor server, in the same run; results as figures and ratios.
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
import { type ChildServer, percentile, progress, rssOf, sleep, spawnServer } from "./_util.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const BARE = new URL("./peers/bare_fbp_server.ts", import.meta.url).pathname;

/** Starts Ferry with only the FBP/1 listener. */
export async function startFerry(extraConfig: Record<string, unknown> = {}): Promise<ChildServer> {
  const dir = await Deno.makeTempDir();
  const cfg = `${dir}/bench.json`;
  await Deno.writeTextFile(
    cfg,
    JSON.stringify({
      mqtt: { enabled: false },
      coap: { enabled: false },
      http: { enabled: false },
      log: { level: "warn" },
      dataDir: `${dir}/data`,
      ...extraConfig,
    }),
  );
  return spawnServer(
    Deno.execPath(),
    [
      "run",
      "-A",
      "--unstable-net",
      "--v8-flags=--optimize-for-size",
      MAIN,
      "--config",
      cfg,
      "--binary-port",
      "0",
      "--log-level",
      "info",
    ],
    (line) => {
      try {
        const o = JSON.parse(line);
        return o.msg === "binary listening" ? o.port : undefined;
      } catch {
        return undefined;
      }
    },
  );
}

/** Starts the bare floor server. */
export function startBare(): Promise<ChildServer> {
  return spawnServer(Deno.execPath(), ["run", "-A", BARE], (l) => {
    const m = /^listening (\d+)/.exec(l);
    return m ? Number(m[1]) : undefined;
  });
}

async function writeAll(conn: Deno.Conn, b: Uint8Array): Promise<void> {
  let o = 0;
  while (o < b.length) o += await conn.write(b.subarray(o));
}

/** Connects and completes HELLO; returns the open connection (its read side idle). */
export async function idleDevice(port: number, id: string): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(
    conn,
    encodeFrame({
      type: FrameType.HELLO,
      flags: 0,
      seq: 1,
      payload: encodeHello({ id, token: "", keepAlive: 3600 }),
    }),
  );
  const buf = new Uint8Array(64);
  let got = 0;
  while (got < 21) { // HELLO_ACK: 14 header + 3 body + 4 crc
    const n = await conn.read(buf.subarray(got));
    if (n === null) throw new Error(`connection ${id} closed during HELLO`);
    got += n;
  }
  return conn;
}

/** RSS growth per idle connection, bytes. */
export async function idleRss(
  server: ChildServer,
  n: number,
): Promise<{ perConnection: number; connections: number; rssBefore: number; rssAfter: number }> {
  const warm: Deno.Conn[] = [];
  for (let i = 0; i < 50; i++) warm.push(await idleDevice(server.port, `warm-${i}`));
  await sleep(1000);
  const before = rssOf(server.pid);
  const conns: Deno.Conn[] = [];
  const batch = 250;
  for (let i = 0; i < n; i += batch) {
    const part = await Promise.all(
      Array.from(
        { length: Math.min(batch, n - i) },
        (_, k) => idleDevice(server.port, `idle-${i + k}`),
      ),
    );
    conns.push(...part);
    if ((i / batch) % 12 === 0) progress(`  ${conns.length}/${n} connections`);
  }
  // Let every connection's HELLO burst go idle (2 s) so what is measured is idle connections.
  await sleep(5000);
  const after = rssOf(server.pid);
  for (const c of [...conns, ...warm]) {
    try {
      c.close();
    } catch { /* closed */ }
  }
  await sleep(500);
  return {
    perConnection: (after - before) / n,
    connections: n,
    rssBefore: before,
    rssAfter: after,
  };
}

/** One device's load: `count` ACK-requested frames, `window` in flight, latencies in ms. */
async function loadDevice(
  port: number,
  id: string,
  count: number,
  window: number,
  latencies: number[],
  deadline: number,
): Promise<number> {
  const conn = await idleDevice(port, id);
  const parser = new FrameParser();
  const sentAt = new Map<number, number>();
  const payload = encodeTelemetry({ channel: "bench", data: new Uint8Array(64).fill(1) });
  let seq = 2;
  let acked = 0;
  let sent = 0;
  const sendSome = async () => {
    const frames: Uint8Array[] = [];
    while (sent < count && sent - acked < window && Date.now() < deadline) {
      const s = seq++;
      sentAt.set(s, performance.now());
      frames.push(
        encodeFrame({ type: FrameType.TELEMETRY, flags: FLAG_ACK_REQUESTED, seq: s, payload }),
      );
      sent++;
    }
    if (!frames.length) return;
    const all = new Uint8Array(frames.reduce((a, b) => a + b.length, 0));
    let o = 0;
    for (const f of frames) {
      all.set(f, o);
      o += f.length;
    }
    await writeAll(conn, all);
  };
  await sendSome();
  const buf = new Uint8Array(4096);
  while (acked < sent) {
    const n = await conn.read(buf);
    if (n === null) break;
    for (const f of parser.push(buf.subarray(0, n))) {
      if (f.type !== FrameType.ACK) continue;
      const t = sentAt.get(f.seq);
      if (t !== undefined) {
        latencies.push(performance.now() - t);
        sentAt.delete(f.seq);
        acked++;
      }
    }
    await sendSome();
  }
  conn.close();
  return acked;
}

/** ACKed telemetry from `devices` devices: frames/s and ACK latency percentiles. */
export async function throughput(
  port: number,
  options: { devices: number; perDevice: number; window: number; maxSeconds: number },
): Promise<
  { framesPerSecond: number; frames: number; seconds: number; p50Ms: number; p99Ms: number }
> {
  const latencies: number[] = [];
  const deadline = Date.now() + options.maxSeconds * 1000;
  const t0 = performance.now();
  const counts = await Promise.all(
    Array.from(
      { length: options.devices },
      (_, i) =>
        loadDevice(port, `load-${i}`, options.perDevice, options.window, latencies, deadline),
    ),
  );
  const seconds = (performance.now() - t0) / 1000;
  const frames = counts.reduce((a, b) => a + b, 0);
  return {
    framesPerSecond: Math.round(frames / seconds),
    frames,
    seconds: Number(seconds.toFixed(2)),
    p50Ms: Number(percentile(latencies, 50).toFixed(2)),
    p99Ms: Number(percentile(latencies, 99).toFixed(2)),
  };
}

/** Runs the FBP/1 scenarios against Ferry and the bare floor. */
export async function run(
  options: { idle: number; devices: number; perDevice: number },
): Promise<Record<string, unknown>> {
  const results: Record<string, Record<string, unknown>> = {};
  for (const [name, start] of [["ferry", () => startFerry()], ["bare", startBare]] as const) {
    progress(`FBP/1 ${name}: ${options.idle} idle connections`);
    {
      await using s = await start();
      results[name] = { idle: await idleRss(s, options.idle) };
    }
    progress(
      `FBP/1 ${name}: throughput, ${options.devices} devices x ${options.perDevice} ACKed frames`,
    );
    {
      await using s = await start();
      results[name].throughput = await throughput(s.port, {
        devices: options.devices,
        perDevice: options.perDevice,
        window: 4,
        maxSeconds: 60,
      });
    }
    progress(`  ${JSON.stringify(results[name])}`);
  }
  const f = results.ferry as {
    idle: { perConnection: number };
    throughput: { framesPerSecond: number };
  };
  const b = results.bare as {
    idle: { perConnection: number };
    throughput: { framesPerSecond: number };
  };
  return {
    ...results,
    ratios: {
      rssPerIdleConnection_ferry_over_bare: Number(
        (f.idle.perConnection / b.idle.perConnection).toFixed(2),
      ),
      throughput_ferry_over_bare: Number(
        (f.throughput.framesPerSecond / b.throughput.framesPerSecond).toFixed(2),
      ),
    },
  };
}
