/**
 * MQTT load program (run by `bench/run.ts` in its own process). Publishers are device clients:
 * client id = device id, topic `devices/{id}/telemetry`, 3.1.1, clean session. Modes:
 *
 * - `qos0`: publishers send QoS 0 as fast as the server takes it, each chunk of publishes followed
 *   by a PINGREQ; a broker answers one connection's packets in order, so a PINGRESP proves the
 *   server processed the chunk before it. At most `chunksInFlight` chunks are unconfirmed per
 *   publisher (the server is kept busy without a backlog that outlives the window). The rate is the
 *   publishes confirmed inside the window; with `subscriber`, one `#` subscriber counts what it
 *   received inside the window (the delivery rate), what never arrived, and the server's peak RSS.
 * - `qos1Paced`: publishers at a fixed total rate, QoS 1; PUBACK latency of each publish sent in
 *   the window.
 * - `connections`: RSS per idle connection (after a warm-up), then connections held at once, each
 *   answering a PINGREQ.
 *
 * With `metricsUrl` (Ferry), the gateway's own `ferry_messages_received_total{protocol="mqtt"}`
 * is read at both ends of the window as a cross-check.
 *
 * @module
 */

import { rateBetween, readCounter } from "../_metrics.ts";
import {
  disconnectAll,
  MqttConn,
  packetId,
  PacketType,
  PINGREQ,
  publishTemplate,
  topicEndsWith,
} from "../_mqtt_wire.ts";
import { percentile, round } from "../_stats.ts";
import { RssSampler, sleep } from "../_util.ts";
import { deviceId, note, pool, runChild, until, Window } from "./_child.ts";

/** Parameters shared by every mode. */
interface Common {
  port: number;
  pid: number;
  metricsUrl?: string;
  warmupMs: number;
  windowMs: number;
}

/** `qos0` mode. */
export interface Qos0Params extends Common {
  mode: "qos0";
  publishers: number;
  payloadBytes: number;
  chunkBytes: number;
  chunksInFlight: number;
  subscriber: boolean;
  /** Bound on confirming the publishes sent before the window closed. */
  drainCapMs: number;
  /** Bound on the subscriber catching up after the publishers stopped. */
  deliveryDrainMs: number;
}

/** `qos1Paced` mode. */
export interface Qos1Params extends Common {
  mode: "qos1Paced";
  publishers: number;
  payloadBytes: number;
  ratePerSec: number;
  graceMs: number;
}

/** `connections` mode. */
export interface ConnectionsParams {
  mode: "connections";
  port: number;
  pid: number;
  warm: number;
  idle: number;
  hold: number;
  concurrency: number;
  settleMs: number;
}

/** Any mode. */
export type MqttLoadParams = Qos0Params | Qos1Params | ConnectionsParams;

const TELEMETRY = new TextEncoder().encode("/telemetry");

async function openPublishers(port: number, n: number): Promise<MqttConn[]> {
  return await pool(n, 50, (i) => MqttConn.open(port, deviceId(i), { readBytes: 64 }));
}

/** `ferry_messages_received_total{protocol="mqtt"}` now, if the server exports it. */
function mqttReceived(url?: string) {
  return readCounter(url, "ferry_messages_received_total", { protocol: "mqtt" });
}

async function qos0(p: Qos0Params) {
  const win = new Window(p.pid);
  let sub: MqttConn | undefined;
  let received = 0;
  let receivedInWindow = 0;
  if (p.subscriber) {
    sub = await MqttConn.open(p.port, "bench-subscriber", {
      readBytes: 65536,
      maxReadBytes: 1 << 20,
    });
    await sub.subscribe("#", 0);
    sub.onFrame = (type, _f, buf, s) => {
      if (type !== PacketType.PUBLISH || !topicEndsWith(buf, s, TELEMETRY)) return;
      received++;
      if (win.open) receivedInWindow++;
    };
  }
  const pubs = await openPublishers(p.port, p.publishers);
  note(`${pubs.length} publishers connected${sub ? ", subscriber on #" : ""}`);
  using rss = new RssSampler(p.pid);
  let confirmed = 0;
  let confirmedInWindow = 0;
  let stopping = false;
  let failed: unknown;
  const loops = pubs.map(async (c, i) => {
    const tpl = publishTemplate(`devices/${deviceId(i)}/telemetry`, p.payloadBytes, 0).bytes;
    const per = Math.max(1, Math.floor(p.chunkBytes / tpl.length));
    const chunk = new Uint8Array(per * tpl.length + PINGREQ.length);
    for (let k = 0; k < per; k++) chunk.set(tpl, k * tpl.length);
    chunk.set(PINGREQ, per * tpl.length);
    let outstanding = 0;
    let wake: (() => void) | undefined;
    c.onFrame = (type) => {
      if (type !== PacketType.PINGRESP) return;
      outstanding--;
      confirmed += per;
      if (win.open) confirmedInWindow += per;
      wake?.();
    };
    try {
      while (!stopping) {
        while (outstanding >= p.chunksInFlight && !c.isClosed) {
          await new Promise<void>((r) => wake = r);
        }
        if (c.isClosed) throw new Error(`publisher ${i} closed by the server`);
        outstanding++;
        await c.write(chunk);
      }
      // Every chunk sent is confirmed before the publisher counts as done (bounded by the caller).
      while (outstanding > 0 && !c.isClosed) await new Promise<void>((r) => wake = r);
    } catch (err) {
      failed ??= err;
      stopping = true;
    }
  });
  await sleep(p.warmupMs);
  // The gateway's counter is read at both ends without delaying them (a busy gateway may answer
  // /metrics late): the window is exact, the cross-check has its own interval.
  win.start();
  const m0p = mqttReceived(p.metricsUrl);
  await sleep(p.windowMs);
  win.end();
  const m1p = mqttReceived(p.metricsUrl);
  stopping = true;
  const t = performance.now();
  const allConfirmed = await Promise.race([
    Promise.all(loops).then(() => true),
    sleep(p.drainCapMs).then(() => false),
  ]);
  if (failed) throw failed;
  if (!allConfirmed) throw new Error(`publishes not confirmed within ${p.drainCapMs} ms`);
  let drained = true;
  if (sub) {
    // Wait for delivery to catch up: all confirmed publishes received, or 2 s without progress.
    let last = received;
    let lastAt = performance.now();
    drained = await until(() => {
      if (received !== last) {
        last = received;
        lastAt = performance.now();
      }
      return received >= confirmed || performance.now() - lastAt > 2000;
    }, p.deliveryDrainMs);
  }
  rss.sample();
  const metricsPerSecond = round(rateBetween(await m0p, await m1p) ?? NaN);
  await disconnectAll([...pubs, sub]);
  const base = {
    windowSeconds: round(win.seconds),
    publishedPerSecond: round(confirmedInWindow / win.seconds),
    metricsPerSecond: Number.isNaN(metricsPerSecond) ? null : metricsPerSecond,
    serverCpuPercent: win.cpuPercent,
    published: confirmed,
  };
  if (!sub) return { perSecond: base.publishedPerSecond, ...base };
  const lost = Math.max(0, confirmed - received);
  return {
    perSecond: round(receivedInWindow / win.seconds),
    ...base,
    received,
    lost,
    lostPercent: round((100 * lost) / confirmed),
    peakRss: rss.peak,
    drainMs: Math.round(performance.now() - t),
    drained,
  };
}

async function qos1Paced(p: Qos1Params) {
  const win = new Window(p.pid);
  const pubs = await openPublishers(p.port, p.publishers);
  note(`${pubs.length} publishers connected; ${p.ratePerSec} msg/s QoS 1`);
  const lat: number[] = [];
  let sentInWindow = 0;
  let ackedInWindow = 0;
  let outstandingInWindow = 0;
  const perPub = p.ratePerSec / p.publishers; // messages/s per publisher
  const period = 1000 / perPub;
  const state = pubs.map((c, i) => {
    const tpl = publishTemplate(`devices/${deviceId(i)}/telemetry`, p.payloadBytes, 1);
    const st = {
      c,
      tpl,
      sent: 0,
      nextId: 1,
      offset: (i * period) / p.publishers, // publishers spread over one period
      sentAt: new Float64Array(65536).fill(NaN),
      inWindow: new Uint8Array(65536),
    };
    c.onFrame = (type, _f, buf, s) => {
      if (type !== PacketType.PUBACK) return;
      const id = packetId(buf, s);
      const at = st.sentAt[id];
      if (Number.isNaN(at)) return;
      st.sentAt[id] = NaN;
      if (st.inWindow[id]) {
        lat.push(performance.now() - at);
        ackedInWindow++;
        outstandingInWindow--;
      }
    };
    return st;
  });
  const t0 = performance.now();
  let failed: unknown;
  let sending = true;
  const tick = () => {
    if (!sending) return;
    const now = performance.now();
    for (const st of state) {
      const due = Math.floor((now - t0 - st.offset) / period) + 1;
      if (due <= st.sent) continue;
      const n = due - st.sent;
      const out = new Uint8Array(n * st.tpl.bytes.length);
      for (let k = 0; k < n; k++) {
        const id = st.nextId;
        st.nextId = id === 65535 ? 1 : id + 1;
        const o = k * st.tpl.bytes.length;
        out.set(st.tpl.bytes, o);
        out[o + st.tpl.idOffset] = id >> 8;
        out[o + st.tpl.idOffset + 1] = id & 0xff;
        st.sentAt[id] = now;
        st.inWindow[id] = win.open ? 1 : 0;
        if (win.open) {
          sentInWindow++;
          outstandingInWindow++;
        }
      }
      st.sent = due;
      st.c.write(out).catch((err) => failed ??= err);
    }
  };
  const ticker = setInterval(tick, 1);
  try {
    await sleep(p.warmupMs);
    win.start();
    await sleep(p.windowMs);
    win.end();
  } finally {
    sending = false;
    clearInterval(ticker);
  }
  if (failed) throw failed;
  await until(() => outstandingInWindow === 0, p.graceMs);
  await disconnectAll(pubs);
  return {
    p50Ms: round(percentile(lat, 50)),
    p99Ms: round(percentile(lat, 99)),
    maxMs: round(percentile(lat, 100)),
    sentPerSecond: round(sentInWindow / win.seconds),
    ackedPerSecond: round(ackedInWindow / win.seconds),
    unacked: outstandingInWindow,
    serverCpuPercent: win.cpuPercent,
    windowSeconds: round(win.seconds),
  };
}

async function connections(p: ConnectionsParams) {
  const win = new Window(p.pid);
  // How long each phase took (ms), to tell a slow server from a slow machine.
  const phases: Record<string, number> = {};
  let mark = performance.now();
  const phase = (name: string) => {
    const now = performance.now();
    phases[name] = Math.round(now - mark);
    mark = now;
  };
  // Warm-up, every server alike: code paths compiled and pools created before the baseline.
  const warm = await pool(p.warm, 50, (i) => MqttConn.open(p.port, `bench-warm-${i}`));
  await disconnectAll(warm);
  phase("warm");
  await sleep(1000);
  const rssBefore = win.rss();
  let refused = 0;
  let firstError: string | undefined;
  const open = async (i: number) => {
    try {
      return await MqttConn.open(p.port, deviceId(i), { readBytes: 64 });
    } catch (err) {
      refused++;
      firstError ??= String(err);
      return undefined;
    }
  };
  const t0 = performance.now();
  mark = t0;
  const conns = await pool(p.idle, p.concurrency, open);
  phase("openIdle");
  const connectSeconds = (performance.now() - t0) / 1000;
  const refusedIdle = refused;
  note(`${p.idle - refusedIdle}/${p.idle} idle connections open in ${connectSeconds.toFixed(1)} s`);
  await sleep(p.settleMs);
  const rssIdle = win.rss();
  mark = performance.now();
  const more = await pool(Math.max(0, p.hold - p.idle), p.concurrency, (i) => open(p.idle + i));
  const all = [...conns, ...more];
  if (more.length) {
    phase("openMore");
    await sleep(1000);
  }
  // Every held connection answers a PINGREQ.
  let alive = 0;
  for (const c of all) {
    if (!c) continue;
    let answered = false;
    c.onFrame = (type) => {
      if (type === PacketType.PINGRESP && !answered) {
        answered = true;
        alive++;
      }
    };
  }
  mark = performance.now();
  await pool(all.length, 500, async (i) => {
    await all[i]?.write(PINGREQ).catch(() => {});
  });
  const held = all.filter((c) => c).length;
  await until(() => alive >= held, 20_000);
  phase("ping");
  const rssHold = win.rss();
  note(`${alive}/${p.hold} held connections answered PINGREQ`);
  await disconnectAll(all);
  phase("disconnect");
  return {
    idleBytesPerConnection: p.idle > refusedIdle
      ? Math.round((rssIdle - rssBefore) / (p.idle - refusedIdle))
      : null,
    rssBefore,
    rssIdle,
    held: alive,
    heldAll: alive === p.hold ? 1 : 0,
    refused,
    firstError,
    rssHold,
    connectsPerSecond: Math.round((p.idle - refusedIdle) / connectSeconds),
    phases,
  };
}

if (import.meta.main) {
  await runChild<MqttLoadParams>((p) => {
    switch (p.mode) {
      case "qos0":
        return qos0(p);
      case "qos1Paced":
        return qos1Paced(p);
      case "connections":
        return connections(p);
    }
  });
}
