import { FakeClock } from "../src/core/clock.ts";
import { AckStatus } from "../src/protocols/binary/frame.ts";
import { FbpClient } from "../src/protocols/binary/client.ts";
import { assert, assertEquals } from "./_assert.ts";
import { enc, waitFor } from "./_harness.ts";
import { startNorthboundHarness } from "./_northbound_harness.ts";
import type { Received } from "./_mosquitto.ts";

/** Per device: how many distinct seqs arrived, duplicates, and whether first arrivals are in order. */
function audit(received: Received[], devices: number, perDevice: number) {
  const seen = new Map<string, Set<number>>();
  const last = new Map<string, number>();
  let duplicates = 0;
  let outOfOrder = 0;
  for (const r of received) {
    const m = /^ferry\/gw1\/devices\/(d\d+)\/telemetry$/.exec(r.topic);
    if (!m) continue;
    const seq = Number(r.text);
    const s = seen.get(m[1]) ?? new Set();
    seen.set(m[1], s);
    if (s.has(seq)) {
      duplicates++;
      continue;
    }
    s.add(seq);
    if ((last.get(m[1]) ?? -1) > seq) outOfOrder++;
    last.set(m[1], seq);
  }
  let distinct = 0;
  for (const s of seen.values()) distinct += s.size;
  return { distinct, duplicates, outOfOrder, lost: devices * perDevice - distinct };
}

Deno.test("Bridge loses nothing and keeps per-device order while the upstream is restarted three times", async () => {
  await using h = await startNorthboundHarness({
    broker: { persistence: true },
    northbound: { replayRatePerSec: 20_000, inflight: 200 },
  });
  await waitFor(() => h.nb.state === "live", "the upstream link");
  const DEVICES = 100;
  const PER = 30;
  const devices = await Promise.all(
    Array.from({ length: DEVICES }, (_, i) => FbpClient.connect({ port: h.gw.port, id: `d${i}` })),
  );
  let sent = 0;
  const stream = Promise.all(devices.map(async (d) => {
    for (let seq = 0; seq < PER; seq++) {
      assertEquals(await d.telemetry(enc(String(seq)), { ack: true }), AckStatus.OK);
      sent++;
      if (seq % 3 === 0) await new Promise((r) => setTimeout(r, 5));
    }
  }));
  for (let i = 0; i < 3; i++) {
    const at = (i + 1) * DEVICES * PER / 4;
    await waitFor(() => sent >= at, `${at} messages sent`, 20_000);
    await waitFor(() => h.nb.state === "live" || h.nb.state === "replaying", "link up", 10_000);
    await h.broker.stop("SIGTERM");
    await waitFor(() => h.nb.state === "backing_off" || h.nb.state === "connecting", "link down");
    await new Promise((r) => setTimeout(r, 50)); // devices keep sending while the link is down
    await h.broker.start();
  }
  await stream;
  await waitFor(
    () => audit(h.sub.received, DEVICES, PER).lost === 0,
    "every message upstream",
    30_000,
  ).catch((err) => {
    const a = audit(h.sub.received, DEVICES, PER);
    throw new Error(
      `${err.message}: ${JSON.stringify(a)} spool=${h.nb.spool.depth} state=${h.nb.state} ` +
        `inflight=${h.nb.bridge.inflight} stats=${
          JSON.stringify(h.nb.bridge.stats)
        } subConnects=${h.sub.connects}`,
    );
  });
  await waitFor(() => h.nb.spool.depth === 0, "the spool to drain");
  const a = audit(h.sub.received, DEVICES, PER);
  console.log(
    `upstream restarts: ${
      DEVICES * PER
    } sent, ${a.distinct} distinct received, ${a.duplicates} duplicates, ` +
      `${h.nb.bridge.stats.resent} resent by the bridge, ${h.nb.bridge.stats.reconnects} reconnects`,
  );
  assertEquals(a.lost, 0);
  assertEquals(a.outOfOrder, 0, "per-device order");
  assertEquals(h.nb.bridge.stats.reconnects, 3);
  const metrics = h.gw.core.metrics.render();
  assert(
    metrics.includes('ferry_northbound_reconnects_total{bridge="default"} 3'),
    "reconnects in /metrics",
  );
  assert(
    metrics.includes('ferry_northbound_state{bridge="default",state="live"} 1'),
    "state in /metrics",
  );
  await Promise.all(devices.map((d) => d.close()));
});

function dropped(h: { gw: { core: { metrics: { render(): string } } } }, reason: string): number {
  let n = 0;
  for (const line of h.gw.core.metrics.render().split("\n")) {
    if (line.startsWith("ferry_spool_dropped_total{") && line.includes(`reason="${reason}"`)) {
      n += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return n;
}

function telemetrySeqs(received: Received[], device: string): number[] {
  return received.filter((r) => r.topic === `ferry/gw1/devices/${device}/telemetry`)
    .map((r) => Number(r.text));
}

Deno.test("Spool full with refuse-new answers devices OVERLOADED, counts the refusals, forwards the rest", async () => {
  // Room for about 20 telemetry messages of this size.
  await using h = await startNorthboundHarness({
    northbound: {
      spool: { maxBytes: 20 * 70, maxBytesPerDevice: 20 * 70, fullPolicy: "refuse-new" },
    },
  });
  await waitFor(() => h.nb.state === "live", "the upstream link");
  await h.broker.stop();
  await waitFor(() => h.nb.state !== "live", "link down");
  const dev = await FbpClient.connect({ port: h.gw.port, id: "d1" });
  const statuses: number[] = [];
  for (let i = 0; i < 40; i++) {
    statuses.push(await dev.telemetry(enc(`${i}`.padStart(20, "0")), { ack: true }));
  }
  const ok = statuses.filter((s) => s === AckStatus.OK).length;
  assert(ok > 5 && ok < 40, `${ok} accepted`);
  assertEquals(statuses, [
    ...Array(ok).fill(AckStatus.OK),
    ...Array(40 - ok).fill(AckStatus.OVERLOADED),
  ]);
  assertEquals(dropped(h, "refused"), 40 - ok);
  await h.broker.start();
  await waitFor(() => telemetrySeqs(h.sub.received, "d1").length === ok, `${ok} upstream`);
  assertEquals(telemetrySeqs(h.sub.received, "d1"), Array.from({ length: ok }, (_, i) => i));
  await dev.close();
});

Deno.test("Spool full with drop-oldest acknowledges every message, keeps the newest, counts the drops", async () => {
  await using h = await startNorthboundHarness({
    northbound: {
      spool: { maxBytes: 20 * 70, maxBytesPerDevice: 20 * 70, fullPolicy: "drop-oldest" },
    },
  });
  await waitFor(() => h.nb.state === "live", "the upstream link");
  await h.broker.stop();
  await waitFor(() => h.nb.state !== "live", "link down");
  const dev = await FbpClient.connect({ port: h.gw.port, id: "d1" });
  for (let i = 0; i < 40; i++) {
    assertEquals(await dev.telemetry(enc(`${i}`.padStart(20, "0")), { ack: true }), AckStatus.OK);
  }
  const depth = h.nb.spool.depth;
  const drops = dropped(h, "full");
  assertEquals(drops + depth, 41, "40 telemetry + 1 presence message either kept or dropped");
  await h.broker.start();
  await waitFor(() => h.nb.spool.depth === 0, "the spool to drain");
  await waitFor(() => telemetrySeqs(h.sub.received, "d1").at(-1) === 39, "the newest upstream");
  const got = telemetrySeqs(h.sub.received, "d1");
  assertEquals(got, Array.from({ length: got.length }, (_, i) => 40 - got.length + i), "a suffix");
  assertEquals(got.length, depth);
  await dev.close();
});

Deno.test("Messages older than the spool TTL are dropped, counted, and never sent upstream", async () => {
  const clock = new FakeClock(Date.now());
  await using h = await startNorthboundHarness({
    core: { clock },
    northbound: {
      spool: { ttlSec: 30 },
      housekeepingMs: 1000,
      backoffBaseMs: 10,
      backoffCapMs: 10,
    },
  });
  await waitFor(() => h.nb.state === "live", "the upstream link");
  await h.broker.stop();
  await waitFor(() => h.nb.state !== "live", "link down");
  const dev = await FbpClient.connect({ port: h.gw.port, id: "d1" });
  for (let i = 0; i < 10; i++) assertEquals(await dev.telemetry(enc(`${i}`), { ack: true }), 0);
  assertEquals(h.nb.spool.depth, 11); // and the presence message
  await clock.tickAsync(30_000);
  // Housekeeping runs on the clock but its SQL in the spool's worker: let both go on.
  for (let i = 0; i < 500 && h.nb.spool.depth > 0; i++) {
    await clock.tickAsync(1000);
    await new Promise((r) => setTimeout(r, 5));
  }
  assertEquals(h.nb.spool.depth, 0);
  assertEquals(dropped(h, "ttl"), 11);
  await h.broker.start();
  // Bounded by real time (a loaded machine runs fewer rounds per second), not a round count.
  for (const end = Date.now() + 20_000; h.nb.state !== "live" && Date.now() < end;) {
    await clock.tickAsync(10);
    await new Promise((r) => setTimeout(r, 5));
  }
  assertEquals(h.nb.state, "live");
  await dev.telemetry(enc("fresh"), { ack: true });
  await waitFor(() => h.sub.received.some((r) => r.text === "fresh"), "a fresh message");
  assertEquals(telemetrySeqs(h.sub.received, "d1").filter((n) => !Number.isNaN(n)), []);
  await dev.close();
});
