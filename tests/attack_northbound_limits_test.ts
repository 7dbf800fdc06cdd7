/**
 * Attack: messages the upstream can never take, and one device that tries to fill the spool
 * (issue #13, items 15 and 16). A real gateway process, real sockets, real mosquitto upstreams.
 *
 * @module
 */

import { FbpClient } from "../src/protocols/binary/client.ts";
import { AckStatus } from "../src/protocols/binary/frame.ts";
import { assert, assertEquals } from "./_assert.ts";
import { metrics, startFerry, waitAllArrived, waitMetric } from "./_ferry_process.ts";
import { enc } from "./_harness.ts";
import { startMosquitto, subscribe } from "./_mosquitto.ts";

/** Small messages from many devices; returns the acknowledged payload texts. */
async function flock(port: number, devices: number, per: number): Promise<string[]> {
  const acked: string[] = [];
  await Promise.all(Array.from({ length: devices }, async (_, d) => {
    const c = await FbpClient.connect({ port, id: `s${d}` });
    for (let i = 0; i < per; i++) {
      const text = `s${d}:${i}`;
      const status = await c.telemetry(enc(text), { ack: true });
      assertEquals(status, AckStatus.OK, `device s${d} refused`);
      acked.push(text);
    }
    await c.close();
  }));
  return acked;
}

for (const version of [4, 5] as const) {
  Deno.test(`attack: a message larger than the upstream's packet limit (MQTT ${version === 4 ? "3.1.1: the link drops on it" : "5: CONNACK Maximum Packet Size"}) goes to the dead letters and the rest flows on`, async () => {
    await using broker = await startMosquitto({ extra: ["max_packet_size 20000"] });
    await using sub = await subscribe(broker.url, "ferry/gw1/devices/+/telemetry");
    await using gw = await startFerry({
      northbound: {
        url: broker.url,
        gatewayId: "gw1",
        protocolVersion: version,
        backoffBaseMs: 20,
        backoffCapMs: 100,
        stableAfterMs: 60_000,
      },
    });
    await waitMetric(gw, (m) => m("ferry_northbound_connected") === 1, "the upstream link");
    const port = gw.addresses.binary.port;
    const big = await FbpClient.connect({ port, id: "big" });
    // Acknowledged: it is durable locally; the upstream will never take it.
    assertEquals(await big.telemetry(enc("B".repeat(50_000)), { ack: true }), AckStatus.OK);
    await big.close();
    const acked = await flock(port, 20, 10);
    await waitAllArrived(sub.received, acked, (t) => t, 60_000);
    const reason = version === 4 ? "link_dropped" : "too_large";
    await waitMetric(
      gw,
      (m) => m(`ferry_dead_letters_total{bridge="default",reason="${reason}"}`) === 1,
      `a ${reason} dead letter`,
    );
    const m = await metrics(gw);
    assertEquals(m("ferry_dead_letters"), 1);
    const disconnects = m('ferry_northbound_disconnects_total{bridge="default"}');
    if (version === 5) assertEquals(disconnects, 0, "never sent: the broker said its limit");
    else assert(disconnects >= 3 && disconnects <= 6, `${disconnects} link drops`);
    assert(!sub.received.some((r) => r.text.startsWith("BBBB")), "the big one went up");
    assert(
      gw.lines.some((l) => l.msg === "message moved to the dead letters" && l.reason === reason),
      "the move is logged",
    );
  });
}

Deno.test("attack: with northbound.maxPacketSize set, a device's oversized message is refused at once (too_large) and never spooled", async () => {
  await using broker = await startMosquitto();
  await using gw = await startFerry({
    northbound: { url: broker.url, gatewayId: "gw1", maxPacketSize: 20_000 },
  });
  const c = await FbpClient.connect({ port: gw.addresses.binary.port, id: "big" });
  const status = await c.telemetry(enc("B".repeat(30_000)), { ack: true });
  assert(status !== AckStatus.OK, "an oversized message was acknowledged");
  assertEquals(await c.telemetry(enc("small"), { ack: true }), AckStatus.OK);
  await c.close();
  const m = await metrics(gw);
  assertEquals(m('ferry_spool_refused_total{reason="too_large"}'), 1);
  assertEquals(m("ferry_dead_letters"), 0);
});

Deno.test("attack: one device cannot evict the others' acknowledged data: past its quota it is refused (quota), everyone else is accepted and nothing is dropped", async () => {
  await using broker = await startMosquitto({ persistence: true });
  await using sub = await subscribe(broker.url, "ferry/gw1/devices/+/telemetry");
  await broker.stop(); // upstream down: everything waits in the spool
  await using gw = await startFerry({
    northbound: {
      url: broker.url,
      gatewayId: "gw1",
      backoffBaseMs: 20,
      backoffCapMs: 200,
      spool: { maxBytes: 2 * 1024 * 1024 }, // default policy refuse-new, 512 KiB per device
    },
  });
  const port = gw.addresses.binary.port;
  const before = await flock(port, 50, 10);
  const hog = await FbpClient.connect({ port, id: "hog" });
  const hogAcked: string[] = [];
  let refused = 0;
  for (let i = 0; i < 70; i++) { // 3.5 MB in 50 KB messages
    const text = `hog:${i}:${"h".repeat(50_000)}`;
    const s = await hog.telemetry(enc(text), { ack: true });
    if (s === AckStatus.OK) hogAcked.push(`hog:${i}`);
    else {
      assertEquals(s, AckStatus.OVERLOADED, "refused with the retryable status");
      refused++;
    }
  }
  await hog.close();
  assert(
    refused >= 55 && hogAcked.length >= 5,
    `hog: ${hogAcked.length} accepted, ${refused} refused`,
  );
  const after = await flock(port, 50, 10).then((a) => a.map((t) => t.replace(/^s/, "s")));
  const m = await metrics(gw);
  assertEquals(m('ferry_spool_dropped_total{bridge="default",reason="full"}'), 0);
  assert(m('ferry_spool_refused_total{reason="quota"}') >= refused, "quota refusals counted");
  await broker.start();
  await waitAllArrived(
    sub.received,
    [...before, ...after, ...hogAcked],
    (t) => t.startsWith("hog:") ? t.split(":").slice(0, 2).join(":") : t,
    60_000,
  );
});
