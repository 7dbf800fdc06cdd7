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
  assert(metrics.includes("ferry_northbound_reconnects_total 3"), "reconnects in /metrics");
  assert(metrics.includes('ferry_northbound_state{state="live"} 1'), "state in /metrics");
  await Promise.all(devices.map((d) => d.close()));
});
