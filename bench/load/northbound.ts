/**
 * Northbound load program (run by `bench/run.ts` in its own process): MQTT QoS 1 devices
 * (client id = device id, topic `devices/{id}/telemetry`) publish to the gateway under test, which
 * forwards upstream to a mosquitto where one subscriber (`#`, in this same process, so one clock)
 * receives. Each payload carries its send time, so latency is end to end: device send → upstream
 * subscriber receipt.
 *
 * 1. A probe message must arrive upstream first (the bridge is up).
 * 2. Saturation: each device keeps `inFlight` publishes unacknowledged. Inside the window: device
 *    PUBACKs/s, and what the upstream subscriber received per second *during* the load. Then
 *    sending stops and the backlog drains (bounded).
 * 3. Paced at `pacedFraction` of the device ACK rate of step 2: end-to-end and PUBACK latency of
 *    the publishes sent inside the window, and the upstream rate during it; then a bounded drain.
 *
 * @module
 */

import { rateBetween, readCounter } from "../_metrics.ts";
import {
  disconnectAll,
  MqttConn,
  packetId,
  PacketType,
  publishPayloadStart,
  publishTemplate,
} from "../_mqtt_wire.ts";
import { percentile, round } from "../_stats.ts";
import { sleep } from "../_util.ts";
import { deviceId, note, pool, runChild, until, Window } from "./_child.ts";

/** Parameters. */
export interface NorthboundLoadParams {
  port: number;
  pid: number;
  metricsUrl?: string;
  upstreamPort: number;
  devices: number;
  inFlight: number;
  payloadBytes: number;
  pacedFraction: number;
  warmupMs: number;
  windowMs: number;
  drainCapMs: number;
}

const MAGIC = 0x46424e42; // "FBNB"

interface Device {
  c: MqttConn;
  tpl: Uint8Array;
  idOffset: number;
  payloadOffset: number;
  nextId: number;
  sentAt: Float64Array;
  outstanding: number;
}

async function main(p: NorthboundLoadParams) {
  const win = new Window(p.pid);
  let phase = 0;
  // Upstream subscriber: one QoS 1 subscription to everything (a broker may drop QoS 0 for a
  // subscriber that falls behind, which would count as a message the gateway lost); counts our
  // payloads by phase and acknowledges them in one write per read.
  const up = await MqttConn.open(p.upstreamPort, "bench-upstream", {
    readBytes: 65536,
    maxReadBytes: 1 << 20,
  });
  await up.subscribe("#", 1);
  const upAcks: number[] = [];
  const flushUpAcks = () => {
    const out = new Uint8Array(upAcks.length * 4);
    for (let i = 0; i < upAcks.length; i++) {
      out[i * 4] = 0x40;
      out[i * 4 + 1] = 2;
      out[i * 4 + 2] = upAcks[i] >> 8;
      out[i * 4 + 3] = upAcks[i] & 0xff;
    }
    upAcks.length = 0;
    up.write(out).catch(() => {});
  };
  const upReceived = [0, 0, 0];
  let upInWindow = 0;
  const e2e: number[][] = [[], [], []];
  up.onFrame = (type, flags, buf, s, e) => {
    if (type !== PacketType.PUBLISH) return;
    if (((flags >> 1) & 3) === 1) {
      const idAt = s + 2 + ((buf[s] << 8) | buf[s + 1]);
      if (upAcks.push((buf[idAt] << 8) | buf[idAt + 1]) === 1) queueMicrotask(flushUpAcks);
    }
    const ps = publishPayloadStart(buf, s, flags);
    if (e - ps < 21) return;
    const v = new DataView(buf.buffer, buf.byteOffset + ps, e - ps);
    if (v.getUint32(0) !== MAGIC) return;
    const ph = v.getUint8(20);
    upReceived[ph]++;
    if (win.open && ph === phase) upInWindow++;
    if (v.getUint8(21) === 1) e2e[ph].push(performance.now() - v.getFloat64(4));
  };

  const devices: Device[] = await pool(p.devices, 50, async (i) => {
    const c = await MqttConn.open(p.port, deviceId(i), { readBytes: 256 });
    const t = publishTemplate(`devices/${deviceId(i)}/telemetry`, p.payloadBytes, 1);
    const v = new DataView(t.bytes.buffer);
    v.setUint32(t.payloadOffset, MAGIC);
    v.setUint32(t.payloadOffset + 12, i);
    return {
      c,
      tpl: t.bytes,
      idOffset: t.idOffset,
      payloadOffset: t.payloadOffset,
      nextId: 1,
      sentAt: new Float64Array(65536).fill(NaN),
      outstanding: 0,
    };
  });
  note(`${devices.length} QoS 1 devices connected; upstream subscriber on #`);

  let failed: unknown;
  let sending = false;
  let acked = 0; // PUBACKs of the current phase
  let ackedInWindow = 0;
  const ackLat: number[] = [];
  const send = (d: Device, n: number) => {
    const len = d.tpl.length;
    const out = new Uint8Array(n * len);
    const now = performance.now();
    for (let k = 0; k < n; k++) {
      const id = d.nextId;
      d.nextId = id === 65535 ? 1 : id + 1;
      const o = k * len;
      out.set(d.tpl, o);
      out[o + d.idOffset] = id >> 8;
      out[o + d.idOffset + 1] = id & 0xff;
      const v = new DataView(out.buffer, o + d.payloadOffset);
      v.setFloat64(4, now);
      v.setUint8(20, phase);
      v.setUint8(21, win.open ? 1 : 0); // sent inside the window: its latency counts
      d.sentAt[id] = win.open ? now : -now;
    }
    d.outstanding += n;
    d.c.write(out).catch((err) => failed ??= err);
  };
  let refill = true; // saturation: each PUBACK sends the next publish
  for (const d of devices) {
    d.c.onFrame = (type, _f, buf, s) => {
      if (type !== PacketType.PUBACK) return;
      const id = packetId(buf, s);
      const at = d.sentAt[id];
      if (Number.isNaN(at)) return;
      d.sentAt[id] = NaN;
      d.outstanding--;
      acked++;
      if (win.open) ackedInWindow++;
      if (at >= 0) ackLat.push(performance.now() - at);
      if (sending && refill) send(d, 1);
    };
  }
  const metric = (name: string) => readCounter(p.metricsUrl, name);
  // After the load: wait until every publish is acknowledged and forwarded, the cap passes, or
  // nothing has moved for 3 s (a peer that dropped messages never catches up).
  const drain = async () => {
    const t = performance.now();
    const sent = () => devices.reduce((a, d) => a + d.outstanding, 0);
    let last = -1;
    let lastAt = t;
    await until(() => {
      const progress = upReceived[phase] + acked;
      if (progress !== last) {
        last = progress;
        lastAt = performance.now();
      }
      return (sent() === 0 && upReceived[phase] >= acked) || performance.now() - lastAt > 3000;
    }, p.drainCapMs);
    return {
      drainMs: Math.round(performance.now() - t),
      notAcked: sent(),
      notForwarded: Math.max(0, acked - upReceived[phase]),
    };
  };

  // 1. The probe.
  send(devices[0], 1);
  if (!await until(() => upReceived[0] >= 1, 30_000)) {
    throw new Error("the probe message did not arrive upstream within 30 s");
  }
  if (failed) throw failed;

  // 2. Saturation.
  phase = 1;
  acked = 0;
  sending = true;
  for (const d of devices) send(d, p.inFlight);
  await sleep(p.warmupMs);
  win.start();
  const pub0p = metric("ferry_northbound_published_total"); // a busy gateway may answer late
  await sleep(p.windowMs);
  win.end();
  const pub1p = metric("ferry_northbound_published_total");
  const depthp = metric("ferry_spool_depth");
  sending = false;
  if (failed) throw failed;
  const satSeconds = win.seconds;
  const satCpu = win.cpuPercent;
  const satAcked = ackedInWindow;
  const satUp = upInWindow;
  const satDrain = await drain(); // latencies of the window's publishes include their wait
  const saturated = {
    deviceAcksPerSecond: round(satAcked / satSeconds),
    upstreamPerSecond: round(satUp / satSeconds),
    e2eP50Ms: round(percentile(e2e[1], 50)),
    e2eP99Ms: round(percentile(e2e[1], 99)),
    ackP99Ms: round(percentile(ackLat, 99)),
    metricsPublishedPerSecond: round(rateBetween(await pub0p, await pub1p) ?? NaN),
    spoolDepthAtEnd: (await depthp)?.value ?? null,
    serverCpuPercent: satCpu,
    ...satDrain,
  };
  note(`saturation: ${JSON.stringify(saturated)}`);

  // 3. Paced at a fraction of the device ACK rate.
  phase = 2;
  acked = 0;
  ackedInWindow = 0;
  upInWindow = 0;
  ackLat.length = 0;
  refill = false;
  const rate = Math.max(1, saturated.deviceAcksPerSecond * p.pacedFraction);
  const period = (1000 * p.devices) / rate;
  const t0 = performance.now();
  const sentBy = new Float64Array(p.devices);
  sending = true;
  const ticker = setInterval(() => {
    const now = performance.now();
    devices.forEach((d, i) => {
      const due = Math.floor((now - t0 - (i * period) / p.devices) / period) + 1;
      if (due > sentBy[i]) {
        send(d, due - sentBy[i]);
        sentBy[i] = due;
      }
    });
  }, 1);
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
  const pacedSeconds = win.seconds;
  const pacedAcked = ackedInWindow;
  const pacedUp = upInWindow;
  const pacedDrain = await drain();
  const paced = {
    targetPerSecond: round(rate),
    deviceAcksPerSecond: round(pacedAcked / pacedSeconds),
    upstreamPerSecond: round(pacedUp / pacedSeconds),
    serverCpuPercent: win.cpuPercent,
    ...pacedDrain,
    e2eP50Ms: round(percentile(e2e[2], 50)),
    e2eP99Ms: round(percentile(e2e[2], 99)),
    ackP50Ms: round(percentile(ackLat, 50)),
    ackP99Ms: round(percentile(ackLat, 99)),
  };
  note(`paced: ${JSON.stringify(paced)}`);
  await disconnectAll([...devices.map((d) => d.c), up]);
  return { saturated, paced };
}

if (import.meta.main) await runChild<NorthboundLoadParams>(main);
