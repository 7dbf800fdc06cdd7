/**
 * MQTT benchmark: the same load against Ferry's MQTT listener, Debian's mosquitto and aedes (npm)
 * in one run, each server a fresh child process. Scenarios: RSS per idle connection, connections
 * accepted per second, QoS 1 ingest, delivery to one subscriber (with the server's peak RSS), and
 * QoS 1 fan-in and fan-out with p50/p99 latency. Prints figures and Ferry's ratios to each peer.
 *
 * Run alone: `deno run -A bench/mqtt_bench.ts [--quick]`; or import {@link run} from `bench/run.ts`.
 *
 * @module
 */

import mqttPacket, { type Packet } from "mqtt-packet";
import { Buffer } from "node:buffer";
import { MqttFrameDecoder } from "../src/protocols/mqtt/codec.ts";
import { type ChildServer, percentile, progress, rssOf, sleep, spawnServer } from "./_util.ts";

/** Load sizes. */
export interface MqttBenchOptions {
  /** Idle connections held open. */
  idle: number;
  /** Connections opened and closed for the accept rate. */
  connRate: number;
  /** QoS 1 messages published for ingest (over `publishers` connections). */
  ingest: number;
  /** Publisher connections. */
  publishers: number;
  /** Messages delivered to one subscriber. */
  deliver: number;
  /** Fan-in publishers (each sends `fanInPerPublisher` QoS 1 messages to one subscriber). */
  fanInPublishers: number;
  /** Messages per fan-in publisher. */
  fanInPerPublisher: number;
  /** QoS 0 publishers (the table: 100). */
  qos0Publishers: number;
  /** QoS 0 messages published for ingest with no subscriber. */
  qos0Messages: number;
  /** QoS 0 messages published for delivery to one `#` subscriber. */
  qos0Deliver: number;
  /** Connections held at once (the issue: 19,000 without error). */
  hold: number;
  /** Fan-out subscribers. */
  fanOutSubscribers: number;
  /** Messages published to all fan-out subscribers. */
  fanOutMessages: number;
  /** Peers to run. @default all */
  peers?: Peer[];
  /** Scenarios to run (idle, connRate, ingestQos1, deliverToOne, fanInQos1, fanOutQos1). @default all */
  scenarios?: string[];
}

/** Servers compared. */
export type Peer = "ferry" | "mosquitto" | "aedes" | "bare";

const HERE = new URL(".", import.meta.url).pathname;

function findListening(line: string): number | undefined {
  const m = /listening (\d+)/.exec(line) ?? /listen socket on port (\d+)/.exec(line);
  return m ? Number(m[1]) : undefined;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Starts one peer server and waits until it accepts connections. */
export async function startPeer(peer: Peer): Promise<ChildServer> {
  const server = await spawnPeer(peer);
  for (let i = 0;; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port: server.port })).close();
      return server;
    } catch (err) {
      if (i >= 100) {
        await server[Symbol.asyncDispose]();
        throw err;
      }
      await sleep(20);
    }
  }
}

async function spawnPeer(peer: Peer): Promise<ChildServer> {
  if (peer === "ferry") {
    return spawnServer(
      Deno.execPath(),
      ["run", "-A", "--v8-flags=--optimize-for-size", `${HERE}mqtt_ferry_server.ts`],
      findListening,
    );
  }
  if (peer === "bare") {
    return spawnServer(
      Deno.execPath(),
      ["run", "-A", "--v8-flags=--optimize-for-size", `${HERE}mqtt_bare_server.ts`],
      findListening,
    );
  }
  if (peer === "aedes") {
    return spawnServer(
      Deno.execPath(),
      // aedes is a bench-only dependency: pinned in dev.lock, not in the gateway's deno.lock.
      ["run", "-A", `--lock=${HERE}../dev.lock`, `${HERE}mqtt_aedes_server.ts`],
      findListening,
    );
  }
  const dir = await Deno.makeTempDir();
  const port = freePort();
  await Deno.writeTextFile(
    `${dir}/m.conf`,
    `listener ${port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n`,
  );
  return spawnServer("mosquitto", ["-c", `${dir}/m.conf`], findListening);
}

const enc = (p: Packet, v = 4) => mqttPacket.generate(p, { protocolVersion: v });

/** A minimal load-generating MQTT client over a raw socket. */
class LoadConn {
  conn: Deno.TcpConn;
  #dec = new MqttFrameDecoder({ protocolVersion: 4 });
  #buf = new Uint8Array(4096);
  onPacket: (p: Packet) => void = () => {};
  reading: Promise<void> | undefined;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  static async open(port: number, clientId: string, clean = true): Promise<LoadConn> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    const c = new LoadConn(conn);
    await c.write(
      enc({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 4,
        clientId,
        clean,
        keepalive: 0,
      }),
    );
    const ack = await c.readOne();
    if (ack.cmd !== "connack" || (ack as { returnCode?: number }).returnCode !== 0) {
      throw new Error(`connect refused: ${JSON.stringify(ack)}`);
    }
    return c;
  }

  #queue: Uint8Array[] = [];
  #flushing: Promise<void> | undefined;

  /** Writes in order: concurrent callers are queued and coalesced (no interleaved partial writes). */
  write(b: Uint8Array): Promise<void> {
    this.#queue.push(b);
    return this.#flushing ??= this.#flush();
  }

  async #flush(): Promise<void> {
    try {
      while (this.#queue.length) {
        const chunks = this.#queue;
        this.#queue = [];
        const buf = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
        let o = 0;
        while (o < buf.length) o += await this.conn.write(buf.subarray(o));
      }
    } finally {
      this.#flushing = undefined;
    }
  }

  async readOne(): Promise<Packet> {
    for (;;) {
      const n = await this.conn.read(this.#buf);
      if (n === null) throw new Error("closed");
      const ps = this.#dec.push(this.#buf.slice(0, n));
      if (ps.length) return ps[0];
    }
  }

  /**
   * Reads without decoding: calls `onPublish` once per PUBLISH frame whose topic starts with
   * `prefix` (a light reader, so the load generator is not what limits delivery figures).
   */
  startCounting(prefix: string, onPublish: () => void): void {
    const want = new TextEncoder().encode(prefix);
    const big = new Uint8Array(65536);
    let carry = new Uint8Array(0);
    this.reading = (async () => {
      try {
        for (;;) {
          const n = await this.conn.read(big);
          if (n === null) return;
          let buf = big.subarray(0, n);
          if (carry.length) {
            const joined = new Uint8Array(carry.length + n);
            joined.set(carry);
            joined.set(buf, carry.length);
            buf = joined;
          }
          let i = 0;
          for (;;) {
            // Fixed header, Remaining Length (1-4 bytes), body.
            let len = 0;
            let mul = 1;
            let j = i + 1;
            let ok = false;
            while (j < buf.length && j < i + 5) {
              const b = buf[j++];
              len += (b & 0x7f) * mul;
              mul *= 128;
              if (!(b & 0x80)) {
                ok = true;
                break;
              }
            }
            if (!ok || j + len > buf.length) break;
            if (buf[i] >> 4 === 3 && buf[j + 1] >= want.length) {
              let match = true;
              for (let k = 0; k < want.length; k++) {
                if (buf[j + 2 + k] !== want[k]) {
                  match = false;
                  break;
                }
              }
              if (match) onPublish();
            }
            i = j + len;
          }
          carry = buf.slice(i);
        }
      } catch { /* closed */ }
    })();
  }

  startReading(): void {
    this.reading = (async () => {
      try {
        for (;;) {
          const n = await this.conn.read(this.#buf);
          if (n === null) return;
          for (const p of this.#dec.push(this.#buf.subarray(0, n))) this.onPacket(p);
        }
      } catch { /* closed */ }
    })();
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

async function pool<T>(n: number, width: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, n) }, async () => {
    while (next < n) {
      const i = next++;
      out[i] = await fn(i);
    }
  }));
  return out;
}

async function subscribe(c: LoadConn, filter: string, qos: 0 | 1): Promise<void> {
  await c.write(enc({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: filter, qos }] }));
  const ack = await c.readOne();
  if (ack.cmd !== "suback") throw new Error("no suback");
}

function stamp(size: number): Buffer {
  const b = Buffer.alloc(size);
  b.writeDoubleBE(performance.now(), 0);
  return b;
}

async function idleScenario(port: number, pid: number, n: number) {
  // Warm-up (every peer alike): code paths compiled and allocator pools created before the
  // baseline, so the figure is the steady-state cost of one more idle connection.
  const warm = await pool(200, 50, (i) => LoadConn.open(port, `warm-${i}`));
  for (const c of warm) c.close();
  await sleep(500);
  const before = rssOf(pid);
  const conns = await pool(n, 100, (i) => LoadConn.open(port, `idle-${i}`));
  await sleep(2000);
  const after = rssOf(pid);
  for (const c of conns) c.close();
  return {
    connections: n,
    rssBefore: before,
    rssAfter: after,
    bytesPerConnection: Math.round((after - before) / n),
  };
}

export async function connRateScenario(port: number, n: number) {
  const disc = enc({ cmd: "disconnect" });
  const t0 = performance.now();
  await pool(n, 50, async (i) => {
    const c = await LoadConn.open(port, `rate-${i}`);
    await c.write(disc);
    c.close();
  });
  const s = (performance.now() - t0) / 1000;
  return { connections: n, perSecond: Math.round(n / s) };
}

/** Publishes `count` QoS 1 messages on `c` with a window of `window` unacknowledged. */
async function publishQos1(
  c: LoadConn,
  topic: string,
  count: number,
  window: number,
  size = 64,
): Promise<void> {
  let sent = 0;
  let acked = 0;
  const done = Promise.withResolvers<void>();
  let wake: (() => void) | undefined;
  c.onPacket = (p) => {
    if (p.cmd === "puback") {
      acked++;
      wake?.();
      if (acked === count) done.resolve();
    }
  };
  c.startReading();
  while (sent < count) {
    while (sent < count && sent - acked < window) {
      const batch: Uint8Array[] = [];
      while (sent < count && sent - acked < window && batch.length < 32) {
        batch.push(
          enc({
            cmd: "publish",
            topic,
            payload: stamp(size),
            qos: 1,
            messageId: (sent % 65000) + 1,
            dup: false,
            retain: false,
          }),
        );
        sent++;
      }
      await c.write(Buffer.concat(batch));
    }
    // Re-check after every wake-up: an ack may have arrived while the write was pending.
    while (sent < count && sent - acked >= window) await new Promise<void>((r) => wake = r);
  }
  await done.promise;
}

/** Publishes `count` QoS 1 messages, one every `intervalMs`, then waits for every PUBACK. */
async function publishPaced(c: LoadConn, topic: string, count: number, intervalMs: number) {
  let acked = 0;
  const done = Promise.withResolvers<void>();
  c.onPacket = (p) => {
    if (p.cmd === "puback" && ++acked === count) done.resolve();
  };
  c.startReading();
  await sleep(Math.random() * intervalMs); // spread the publishers over the interval
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const due = start + i * intervalMs - performance.now();
    if (due > 0) await sleep(due);
    await c.write(
      enc({
        cmd: "publish",
        topic,
        payload: stamp(64),
        qos: 1,
        messageId: i + 1,
        dup: false,
        retain: false,
      }),
    );
  }
  await done.promise;
}

export async function ingestScenario(port: number, o: MqttBenchOptions) {
  const per = Math.ceil(o.ingest / o.publishers);
  const pubs = await Promise.all(
    Array.from({ length: o.publishers }, (_, i) => LoadConn.open(port, `pub-${i}`)),
  );
  const t0 = performance.now();
  await Promise.all(pubs.map((c, i) => publishQos1(c, `devices/pub-${i}/telemetry`, per, 100)));
  const s = (performance.now() - t0) / 1000;
  for (const c of pubs) c.close();
  return { messages: per * o.publishers, perSecond: Math.round((per * o.publishers) / s) };
}

/**
 * Publishes `count` QoS 0 messages as fast as the socket takes them, in writes of 64 packets, then
 * a PINGREQ; resolves on the PINGRESP. A broker answers packets of one connection in order, so the
 * PINGRESP means every PUBLISH before it was processed.
 */
async function publishQos0(c: LoadConn, topic: string, count: number, size = 64): Promise<void> {
  const pong = Promise.withResolvers<void>();
  c.onPacket = (p) => {
    if (p.cmd === "pingresp") pong.resolve();
  };
  c.startReading();
  const one = enc({
    cmd: "publish",
    topic,
    payload: stamp(size),
    qos: 0,
    dup: false,
    retain: false,
  });
  const batch = Buffer.concat(Array.from({ length: 64 }, () => one));
  for (let sent = 0; sent < count; sent += 64) {
    const n = Math.min(64, count - sent);
    await c.write(n === 64 ? batch : batch.subarray(0, n * one.length));
  }
  await c.write(enc({ cmd: "pingreq" }));
  // Bounded: a server that lost the PINGREQ or stalls fails the scenario instead of hanging.
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    pong.promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("no PINGRESP within 60 s")), 60_000);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** QoS 0 ingest as the issue defines it: 100 publishers, 64-byte payloads, no subscriber. */
export async function ingestQos0Scenario(port: number, o: MqttBenchOptions) {
  const n = o.qos0Publishers;
  const per = Math.ceil(o.qos0Messages / n);
  const pubs = await pool(n, 50, (i) => LoadConn.open(port, `q0pub-${i}`));
  const t0 = performance.now();
  await Promise.all(pubs.map((c, i) => publishQos0(c, `devices/q0pub-${i}/telemetry`, per)));
  const s = (performance.now() - t0) / 1000;
  for (const c of pubs) c.close();
  return { messages: per * n, perSecond: Math.round((per * n) / s) };
}

/**
 * The same QoS 0 load delivered to one subscriber of `#`: messages/s the subscriber received
 * (until all arrived, or 3 s without progress) and the share lost, with the server's peak RSS.
 */
export async function deliverQos0Scenario(port: number, pid: number, o: MqttBenchOptions) {
  const n = o.qos0Publishers;
  const per = Math.ceil(o.qos0Deliver / n);
  const total = per * n;
  const sub = await LoadConn.open(port, "q0-sub");
  await subscribe(sub, "#", 0);
  let got = 0;
  let last = performance.now();
  const all = Promise.withResolvers<void>();
  sub.startCounting("q0d/", () => {
    last = performance.now();
    if (++got === total) all.resolve();
  });
  const pubs = await pool(n, 50, (i) => LoadConn.open(port, `q0dpub-${i}`));
  let peak = rssOf(pid);
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssOf(pid));
    if (performance.now() - last > 3000) all.resolve();
  }, 100);
  const t0 = performance.now();
  last = t0;
  await Promise.all(pubs.map((c, i) => publishQos0(c, `q0d/${i}`, per)));
  last = Math.max(last, performance.now());
  await all.promise;
  const s = ((got === total ? last : performance.now() - 3000) - t0) / 1000;
  clearInterval(sampler);
  for (const c of [...pubs, sub]) c.close();
  return {
    messages: total,
    received: got,
    lostPercent: round((100 * (total - got)) / total),
    perSecond: Math.round(got / Math.max(s, 0.001)),
    peakRss: peak,
  };
}

/** Holds `n` connections open at once and reports how many the server accepted (CONNACK 0). */
async function holdScenario(port: number, pid: number, n: number) {
  let refused = 0;
  const conns = await pool(n, 100, async (i) => {
    try {
      return await LoadConn.open(port, `hold-${i}`);
    } catch {
      refused++;
      return undefined;
    }
  });
  await sleep(1000);
  // Every held connection still answers a PINGREQ.
  let alive = 0;
  await pool(conns.length, 200, async (i) => {
    const c = conns[i];
    if (!c) return;
    await c.write(enc({ cmd: "pingreq" }));
    const p = await Promise.race([c.readOne(), sleep(10_000).then(() => undefined)]);
    if (p?.cmd === "pingresp") alive++;
  });
  const rss = rssOf(pid);
  for (const c of conns) c?.close();
  return { connections: n, refused, alive, ok: alive === n, rss };
}

export async function deliverScenario(port: number, pid: number, o: MqttBenchOptions) {
  const sub = await LoadConn.open(port, "deliver-sub");
  await subscribe(sub, "deliver/#", 0);
  let got = 0;
  const all = Promise.withResolvers<void>();
  sub.onPacket = (p) => {
    if (p.cmd === "publish" && ++got === o.deliver) all.resolve();
  };
  sub.startReading();
  const pubs = await Promise.all(
    Array.from({ length: 4 }, (_, i) => LoadConn.open(port, `dpub-${i}`)),
  );
  let peak = rssOf(pid);
  const sampler = setInterval(() => peak = Math.max(peak, rssOf(pid)), 100);
  const t0 = performance.now();
  await Promise.all(
    pubs.map((c, i) => publishQos1(c, `deliver/${i}`, Math.ceil(o.deliver / 4), 100)),
  );
  const timeout = setTimeout(() => all.reject(new Error(`delivered ${got}/${o.deliver}`)), 30_000);
  let ok = true;
  await all.promise.catch(() => ok = false).finally(() => clearTimeout(timeout));
  const s = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  for (const c of [...pubs, sub]) c.close();
  return {
    messages: o.deliver,
    received: got,
    complete: ok,
    perSecond: Math.round(got / s),
    peakRss: peak,
  };
}

async function fanInScenario(port: number, o: MqttBenchOptions) {
  const sub = await LoadConn.open(port, "fanin-sub");
  await subscribe(sub, "fanin/#", 1);
  const total = o.fanInPublishers * o.fanInPerPublisher;
  const lat: number[] = [];
  const all = Promise.withResolvers<void>();
  sub.onPacket = (p) => {
    if (p.cmd !== "publish") return;
    lat.push(performance.now() - (p.payload as Buffer).readDoubleBE(0));
    sub.write(enc({ cmd: "puback", messageId: p.messageId })).catch(() => {});
    if (lat.length === total) all.resolve();
  };
  sub.startReading();
  const pubs = await pool(o.fanInPublishers, 50, (i) => LoadConn.open(port, `fpub-${i}`));
  const t0 = performance.now();
  // Paced load (each publisher one message every 20 ms, 5,000 msg/s for 100 publishers): latency
  // under a sustainable rate, not the depth of a queue that a burst would fill.
  await Promise.all(pubs.map((c, i) => publishPaced(c, `fanin/${i}`, o.fanInPerPublisher, 20)));
  const timeout = setTimeout(
    () => all.reject(new Error(`fan-in got ${lat.length}/${total}`)),
    30_000,
  );
  let ok = true;
  await all.promise.catch(() => ok = false).finally(() => clearTimeout(timeout));
  const s = (performance.now() - t0) / 1000;
  for (const c of [...pubs, sub]) c.close();
  return {
    messages: total,
    received: lat.length,
    complete: ok,
    perSecond: Math.round(lat.length / s),
    p50Ms: round(percentile(lat, 50)),
    p99Ms: round(percentile(lat, 99)),
  };
}

export async function fanOutScenario(port: number, o: MqttBenchOptions) {
  const subs = await pool(o.fanOutSubscribers, 100, (i) => LoadConn.open(port, `fsub-${i}`));
  await pool(subs.length, 100, (i) => subscribe(subs[i], "fanout/x", 1));
  const total = o.fanOutSubscribers * o.fanOutMessages;
  const lat: number[] = [];
  const all = Promise.withResolvers<void>();
  for (const s of subs) {
    s.onPacket = (p) => {
      if (p.cmd !== "publish") return;
      lat.push(performance.now() - (p.payload as Buffer).readDoubleBE(0));
      s.write(enc({ cmd: "puback", messageId: p.messageId })).catch(() => {});
      if (lat.length === total) all.resolve();
    };
    s.startReading();
  }
  const pub = await LoadConn.open(port, "fanout-pub");
  const t0 = performance.now();
  // Paced: one message every 50 ms, each fanned out to every subscriber (latency per delivery).
  await publishPaced(pub, "fanout/x", o.fanOutMessages, 50);
  const timeout = setTimeout(
    () => all.reject(new Error(`fan-out got ${lat.length}/${total}`)),
    60_000,
  );
  let ok = true;
  await all.promise.catch(() => ok = false).finally(() => clearTimeout(timeout));
  const s = (performance.now() - t0) / 1000;
  for (const c of [...subs, pub]) c.close();
  return {
    deliveries: total,
    received: lat.length,
    complete: ok,
    perSecond: Math.round(lat.length / s),
    p50Ms: round(percentile(lat, 50)),
    p99Ms: round(percentile(lat, 99)),
  };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

type Figures = Record<string, Record<string, number | boolean>>;

/** Runs every scenario against every peer; returns figures and Ferry's ratios. */
export async function run(o: MqttBenchOptions): Promise<Record<string, unknown>> {
  const peers = o.peers ?? ["ferry", "mosquitto", "aedes"];
  const figures: Record<string, Figures> = {};
  const scenarios: Array<
    [string, (port: number, pid: number) => Promise<Record<string, number | boolean>>]
  > = [
    ["idle", (port, pid) => idleScenario(port, pid, o.idle)],
    ["connRate", (port) => connRateScenario(port, o.connRate)],
    ["hold", (port, pid) => holdScenario(port, pid, o.hold)],
    ["ingestQos0", (port) => ingestQos0Scenario(port, o)],
    ["deliverQos0", (port, pid) => deliverQos0Scenario(port, pid, o)],
    ["ingestQos1", (port) => ingestScenario(port, o)],
    ["deliverToOne", (port, pid) => deliverScenario(port, pid, o)],
    ["fanInQos1", (port) => fanInScenario(port, o)],
    ["fanOutQos1", (port) => fanOutScenario(port, o)],
  ];
  for (const [name, fn] of scenarios) {
    if (o.scenarios && !o.scenarios.includes(name)) continue;
    figures[name] = {};
    // The bare-Deno floor only makes sense for idle connections.
    const run = name === "idle" && !o.peers ? [...peers, "bare" as const] : peers;
    for (const peer of run) {
      progress(`mqtt ${name} on ${peer}`);
      await using server = await startPeer(peer);
      try {
        figures[name][peer] = await fn(server.port, server.pid);
        progress(`  ${JSON.stringify(figures[name][peer])}`);
      } catch (err) {
        figures[name][peer] = { failed: true };
        progress(`mqtt ${name} on ${peer} failed: ${err}`);
      }
    }
  }
  const ratio = (s: string, k: string, inverse = false) => {
    const out: Record<string, number> = {};
    if (!figures[s]) return out;
    const f = figures[s].ferry?.[k];
    for (const p of peers) {
      if (p === "ferry" || p === "bare") continue;
      const x = figures[s][p]?.[k];
      if (typeof f === "number" && typeof x === "number" && f > 0 && x > 0) {
        out[`ferry/${p}`] = round(inverse ? x / f : f / x);
      }
    }
    return out;
  };
  return {
    options: o,
    figures,
    ratios: {
      "idle bytes per connection (peer/ferry, >1 = ferry smaller)": ratio(
        "idle",
        "bytesPerConnection",
        true,
      ),
      "connections per second": ratio("connRate", "perSecond"),
      "ingest QoS 0 msgs/s (100 publishers)": ratio("ingestQos0", "perSecond"),
      "delivery QoS 0 to one # subscriber msgs/s": ratio("deliverQos0", "perSecond"),
      "ingest QoS 1 msgs/s": ratio("ingestQos1", "perSecond"),
      "delivery to one subscriber msgs/s": ratio("deliverToOne", "perSecond"),
      "fan-in QoS 1 msgs/s": ratio("fanInQos1", "perSecond"),
      "fan-out QoS 1 deliveries/s": ratio("fanOutQos1", "perSecond"),
    },
    goals: {
      "idle <= 6 KB per connection": (figures.idle?.ferry?.bytesPerConnection as number) <= 6144,
      "idle bare-Deno floor (bytes per connection)": figures.idle?.bare?.bytesPerConnection ??
        "not run",
      "19,000 connections held": figures.hold?.ferry?.ok ?? "not run",
      "ingest (QoS 0, 100 publishers) >= 1.5x mosquitto":
        (ratio("ingestQos0", "perSecond")["ferry/mosquitto"] ?? 0) >= 1.5,
      "ingest QoS 1 >= 1.5x mosquitto":
        (ratio("ingestQos1", "perSecond")["ferry/mosquitto"] ?? 0) >= 1.5,
      "delivery QoS 0 >= 1.0x mosquitto":
        (ratio("deliverQos0", "perSecond")["ferry/mosquitto"] ?? 0) >= 1.0,
      "delivery >= 1.0x mosquitto":
        (ratio("deliverToOne", "perSecond")["ferry/mosquitto"] ?? 0) >= 1.0,
    },
  };
}

/** Load sizes for `--quick` (smoke) and full runs; `bench/run.ts` can pass these to {@link run}. */
export const mqttBenchPresets: Readonly<Record<"quick" | "full", MqttBenchOptions>> = {
  quick: {
    idle: 1000,
    connRate: 500,
    ingest: 20_000,
    publishers: 4,
    deliver: 20_000,
    fanInPublishers: 20,
    fanInPerPublisher: 50,
    qos0Publishers: 100,
    qos0Messages: 50_000,
    qos0Deliver: 50_000,
    hold: 1000,
    fanOutSubscribers: 100,
    fanOutMessages: 10,
  },
  full: {
    idle: 15_000,
    connRate: 5000,
    ingest: 200_000,
    publishers: 8,
    deliver: 200_000,
    fanInPublishers: 100,
    fanInPerPublisher: 100,
    qos0Publishers: 100,
    qos0Messages: 1_000_000,
    qos0Deliver: 500_000,
    hold: 19_000,
    fanOutSubscribers: 1000,
    fanOutMessages: 20,
  },
};

if (import.meta.main) {
  const quick = Deno.args.includes("--quick");
  const sc = Deno.args.indexOf("--scenarios");
  const scenarios = sc >= 0 ? Deno.args[sc + 1].split(",") : undefined;
  const only = Deno.args.indexOf("--peers");
  const peers = only >= 0 ? Deno.args[only + 1].split(",") as Peer[] : undefined;
  const preset = mqttBenchPresets[quick ? "quick" : "full"];
  const result = await run({ ...preset, peers, scenarios });
  console.log(JSON.stringify(result, null, 2));
}
