/**
 * Acknowledgements pipelined through the spool's group commit: a connection reads on while its
 * messages wait for the commit (up to `limits.publishWindow`), so one commit takes many of them,
 * and the answers still go out in the order the messages came ([MQTT-4.6.0-2]; FBP/1 ACKs). A
 * real gateway process, a real mosquitto upstream, clients over real sockets.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { Packet } from "mqtt-packet";
import { FbpClient } from "../src/protocols/binary/client.ts";
import { AckStatus } from "../src/protocols/binary/frame.ts";
import { assert, assertEquals } from "./_assert.ts";
import { metrics, startFerry, waitMetric } from "./_ferry_process.ts";
import { enc } from "./_harness.ts";
import { startMosquitto, subscribe } from "./_mosquitto.ts";
import { RawClient, until } from "./_mqtt_harness.ts";

const N = 300;

async function gatewayWithBridge(brokerUrl: string, publishWindow?: number) {
  const gw = await startFerry({
    northbound: { url: brokerUrl, gatewayId: "gw1" },
    ...(publishWindow ? { limits: { publishWindow } } : {}),
  });
  await waitMetric(gw, (m) => m("ferry_northbound_connected") === 1, "the upstream link");
  return gw;
}

/** Sends N QoS 1 PUBLISHes (one invalid in v5, one QoS 0) in one write; returns the acks. */
async function burstOfPublishes(port: number, version: 4 | 5): Promise<Packet[]> {
  const c = await RawClient.connect(port, version);
  try {
    assertEquals((await c.connect({ clientId: "m1" }) as { cmd: string }).cmd, "connack");
    const { default: mqttPacket } = await import("mqtt-packet");
    const parts: Uint8Array[] = [];
    for (let i = 1; i <= N; i++) {
      const invalid = version === 5 && i === 150; // payload format says UTF-8, bytes are not
      parts.push(mqttPacket.generate({
        cmd: "publish",
        topic: "devices/m1/telemetry",
        payload: invalid ? Buffer.from([0xff, 0xfe]) : Buffer.from(`m${i}`),
        qos: i === 100 ? 0 : 1,
        messageId: i === 100 ? undefined : i,
        dup: false,
        retain: false,
        properties: invalid ? { payloadFormatIndicator: true } : undefined,
      }, { protocolVersion: version }));
    }
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) all.set(p, (off += p.length) - p.length);
    await c.send(all);
    const acks: Packet[] = [];
    while (acks.length < N - 1) acks.push(await c.next());
    return acks;
  } finally {
    c.close();
  }
}

for (const version of [4, 5] as const) {
  Deno.test(`MQTT ${version === 5 ? "5" : "3.1.1"}: QoS 1 PUBLISHes sent without waiting share spool commits, and their PUBACKs come in order`, async () => {
    await using broker = await startMosquitto();
    await using sub = await subscribe(broker.url, "ferry/gw1/devices/+/telemetry");
    await using gw = await gatewayWithBridge(broker.url);
    const acks = await burstOfPublishes(gw.addresses.mqtt.port, version);
    const ids = acks.map((a) => (a as { messageId?: number }).messageId);
    const expected = Array.from({ length: N }, (_, i) => i + 1).filter((i) => i !== 100);
    assertEquals(ids, expected, "PUBACKs in PUBLISH order [MQTT-4.6.0-2]");
    for (const a of acks) {
      assertEquals(a.cmd, "puback");
      const rc = (a as { reasonCode?: number }).reasonCode ?? 0;
      const id = (a as { messageId: number }).messageId;
      assertEquals(rc, version === 5 && id === 150 ? 0x99 : 0, `reason code of ${id}`);
    }
    // Upstream, in order, everything but the refused one.
    const sent = expected.filter((i) => !(version === 5 && i === 150));
    const want = [...sent, 100].sort((a, b) => a - b).map((i) => `m${i}`);
    await until(() => sub.received.length >= want.length, "everything upstream", 30_000);
    assertEquals(sub.received.map((m) => m.text), want);
    // Read on while waiting: far fewer commits than messages (one by one, there would be one
    // commit per message; the window-of-1 test below shows it).
    const m = await metrics(gw);
    const commits = m("ferry_spool_commits_total");
    assert(commits > 0 && commits < N / 2, `${commits} commits for ${N} messages`);
  });
}

Deno.test("MQTT: with publishWindow 1 a connection waits for each commit before it reads on (one commit per message)", async () => {
  await using broker = await startMosquitto();
  await using gw = await gatewayWithBridge(broker.url, 1);
  const acks = await burstOfPublishes(gw.addresses.mqtt.port, 4);
  assertEquals(acks.length, N - 1);
  const m = await metrics(gw);
  assert(m("ferry_spool_commits_total") >= N - 1, `${m("ferry_spool_commits_total")} commits`);
});

Deno.test("FBP/1: telemetry sent without waiting shares spool commits, and the ACKs come in frame order", async () => {
  await using broker = await startMosquitto();
  await using sub = await subscribe(broker.url, "ferry/gw1/devices/+/telemetry");
  await using gw = await gatewayWithBridge(broker.url);
  const c = await FbpClient.connect({ port: gw.addresses.binary.port, id: "f1" });
  const order: number[] = [];
  const statuses = await Promise.all(
    Array.from(
      { length: N },
      (_, i) =>
        c.telemetry(enc(`f${i}`), { ack: true, timeoutMs: 60_000 }).then((s) => {
          order.push(i);
          return s;
        }),
    ),
  );
  await c.close();
  assert(statuses.every((s) => s === AckStatus.OK), "every frame acknowledged OK");
  assertEquals(order, Array.from({ length: N }, (_, i) => i), "ACKs in frame order");
  await until(() => sub.received.length >= N, "everything upstream", 30_000);
  assertEquals(sub.received.map((m) => m.text), order.map((i) => `f${i}`));
  const m = await metrics(gw);
  const commits = m("ferry_spool_commits_total");
  assert(commits > 0 && commits < N / 2, `${commits} commits for ${N} frames`);
});
