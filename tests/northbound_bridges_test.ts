/**
 * Several bridges, failover, rewrite, flow control and live reload (issue #18), against real
 * mosquitto processes and a real gateway process.
 *
 * @module
 */

import mqttPacket, { type Packet } from "mqtt-packet";
import { Buffer } from "node:buffer";
import { FbpClient } from "../src/protocols/binary/client.ts";
import { AckStatus } from "../src/protocols/binary/frame.ts";
import { assert, assertEquals } from "./_assert.ts";
import {
  ferryRefuses,
  metrics,
  startFerry,
  waitAllArrived,
  waitMetric,
  writeConfig,
} from "./_ferry_process.ts";
import { dec, enc, waitFor } from "./_harness.ts";
import { type Received, startMosquitto, subscribe } from "./_mosquitto.ts";
import { startGateway } from "./_process.ts";

/** Per device: the first arrivals of `seq` in `received` are in increasing order. */
function inOrder(received: Received[]): boolean {
  const last = new Map<string, number>();
  const seen = new Set<string>();
  for (const r of received) {
    const [dev, seq] = r.text.split(":");
    if (seen.has(r.text)) continue;
    seen.add(r.text);
    if ((last.get(dev) ?? -1) > Number(seq)) return false;
    last.set(dev, Number(seq));
  }
  return true;
}

Deno.test("Two bridges to two brokers forward by their own filters, each from its own spool partition", async () => {
  await using b1 = await startMosquitto();
  await using b2 = await startMosquitto();
  await using s1 = await subscribe(b1.url, "#");
  await using s2 = await subscribe(b2.url, "#");
  await using gw = await startFerry({
    northbound: [
      { name: "telemetry", url: b1.url, gatewayId: "gw1", forward: ["devices/+/telemetry"] },
      {
        name: "status",
        url: b2.url,
        gatewayId: "gw1",
        forward: ["devices/+/telemetry/alarm", "devices/+/status"],
        prefix: "site/{gatewayId}",
      },
    ],
  });
  await waitMetric(gw, (m) => m("ferry_northbound_connected") === 1, "both links");
  const c = await FbpClient.connect({ port: gw.addresses.binary.port, id: "d1" });
  assertEquals(await c.telemetry(enc("t1"), { ack: true }), AckStatus.OK);
  assertEquals(await c.telemetry(enc("a1"), { ack: true, channel: "alarm" }), AckStatus.OK);
  await waitFor(() => s1.received.some((r) => r.text === "t1"), "telemetry on broker 1");
  await waitFor(() => s2.received.some((r) => r.text === "a1"), "the alarm on broker 2");
  await waitFor(
    () => s2.received.some((r) => r.topic === "site/gw1/devices/d1/status"),
    "presence on broker 2",
  );
  await c.close();
  assert(!s1.received.some((r) => r.text === "a1"), "broker 1 got the alarm");
  assert(!s2.received.some((r) => r.text === "t1"), "broker 2 got plain telemetry");
  assert(
    !s1.received.some((r) => r.topic.includes("/devices/") && r.topic.endsWith("/status")),
    "broker 1 got device presence",
  );
  const m = await metrics(gw);
  assertEquals(m('ferry_northbound_bridge_connected{bridge="telemetry",url="' + b1.url + '"}'), 1);
});

Deno.test("One bridge's backlog never blocks another: with broker 1 down, broker 2 still gets everything at once", async () => {
  await using b1 = await startMosquitto();
  await using b2 = await startMosquitto();
  await using s2 = await subscribe(b2.url, "ferry/gw1/devices/+/telemetry");
  await b1.stop();
  await using gw = await startFerry({
    northbound: [
      { name: "down", url: b1.url, gatewayId: "gw1", backoffBaseMs: 20, backoffCapMs: 100 },
      { name: "up", url: b2.url, gatewayId: "gw1" },
    ],
  });
  const c = await FbpClient.connect({ port: gw.addresses.binary.port, id: "d1" });
  const sent: string[] = [];
  for (let i = 0; i < 300; i++) {
    assertEquals(await c.telemetry(enc(`d1:${i}`), { ack: true }), AckStatus.OK);
    sent.push(`d1:${i}`);
  }
  await c.close();
  await waitAllArrived(s2.received, sent, (t) => t, 20_000);
  await waitMetric(gw, (m) => m('ferry_spool_partition_depth{bridge="up"}') === 0, "up drained");
  const m = await metrics(gw);
  assert(m('ferry_spool_partition_depth{bridge="down"}') >= 300, "the down bridge keeps its own");
  assertEquals(m('ferry_spool_partition_depth{bridge="up"}'), 0);
});

Deno.test("Failover: a stopped primary hands over to the secondary and the bridge returns to the primary; 0 acknowledged lost, per-device order kept", async () => {
  await using primary = await startMosquitto({ persistence: true });
  await using secondary = await startMosquitto();
  await using sp = await subscribe(primary.url, "ferry/gw1/devices/+/telemetry");
  await using ss = await subscribe(secondary.url, "ferry/gw1/devices/+/telemetry");
  await using gw = await startFerry({
    northbound: {
      urls: [primary.url, secondary.url],
      primaryReturnSec: 1,
      gatewayId: "gw1",
      backoffBaseMs: 20,
      backoffCapMs: 100,
      inflight: 50,
    },
  });
  await waitMetric(gw, (m) => m("ferry_northbound_connected") === 1, "the link");
  const port = gw.addresses.binary.port;
  const acked: string[] = [];
  let phase = 0;
  const stream = Promise.all(Array.from({ length: 10 }, async (_, d) => {
    const c = await FbpClient.connect({ port, id: `d${d}` });
    for (let i = 0; phase < 3 && i < 5000; i++) {
      assertEquals(await c.telemetry(enc(`d${d}:${i}`), { ack: true }), AckStatus.OK);
      acked.push(`d${d}:${i}`);
      if (i % 20 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    await c.close();
  }));
  await waitFor(() => acked.length >= 200, "traffic", 20_000);
  await primary.stop();
  await waitFor(() => ss.received.length >= 100, "traffic through the secondary", 20_000);
  phase = 1;
  await primary.start();
  await waitMetric(
    gw,
    (m) => m(`ferry_northbound_bridge_connected{bridge="default",url="${primary.url}"}`) === 1,
    "the return to the primary",
  );
  const onPrimary = sp.received.length;
  await waitFor(
    () => sp.received.length >= onPrimary + 100,
    "traffic on the primary again",
    20_000,
  );
  phase = 3;
  await stream;
  await waitAllArrived([sp.received, ss.received], acked, (t) => t, 30_000).catch((err) => {
    const where = (t: string) =>
      `${t}@${sp.received.findIndex((r) => r.text === t)}/${
        ss.received.findIndex((r) => r.text === t)
      }`;
    const missing = acked.filter((t) =>
      !sp.received.some((r) => r.text === t) && !ss.received.some((r) => r.text === t)
    );
    const near = missing.flatMap((t) => {
      const [d, i] = t.split(":");
      return [where(`${d}:${Number(i) - 1}`), where(`${d}:${Number(i) + 1}`)];
    });
    throw new Error(
      `${err.message}; neighbours (primary/secondary index) ${near.join(" ")}; ${
        JSON.stringify(gw.lines.filter((l) => l.component === "northbound").map((l) => l.msg))
      }`,
    );
  });
  assert(inOrder(sp.received), "order per device on the primary");
  assert(inOrder(ss.received), "order per device on the secondary");
  const m = await metrics(gw);
  assert(m('ferry_northbound_failovers_total{bridge="default"}') >= 2, "failovers counted");
});

Deno.test("Topic rewrite both ways: uplink topics rewritten, a rewritten downlink command reaches the device", async () => {
  await using broker = await startMosquitto();
  await using sub = await subscribe(broker.url, "site/#");
  await using gw = await startFerry({
    northbound: {
      url: broker.url,
      gatewayId: "gw1",
      rewrite: [
        { direction: "up", from: "devices/+/telemetry/#", to: "site/{gatewayId}/{1}/t/{2}" },
        { direction: "down", from: "cloud/cmd/+/+", to: "devices/{1}/commands/{2}" },
      ],
    },
  });
  await waitMetric(gw, (m) => m("ferry_northbound_connected") === 1, "the link");
  const c = await FbpClient.connect({ port: gw.addresses.binary.port, id: "d1" });
  assertEquals(await c.telemetry(enc("21.5"), { ack: true, channel: "temp" }), AckStatus.OK);
  await waitFor(() => sub.received.some((r) => r.topic === "site/gw1/d1/t/temp"), "uplink");
  await sub.publish("cloud/cmd/d1/reboot", "now");
  const cmd = await c.nextCommand(10_000);
  assertEquals([cmd?.name, cmd && dec(cmd.data)], ["reboot", "now"]);
  await c.close();
});

Deno.test("A looping or ambiguous rewrite rule is refused when the config loads", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ferry-rules-" });
  const loop = await ferryRefuses({
    northbound: {
      url: "mqtt://127.0.0.1:1",
      gatewayId: "gw1",
      rewrite: [{
        direction: "up",
        from: "devices/+/telemetry",
        to: "ferry/gw1/devices/{1}/commands/x",
      }],
    },
  }, dir);
  assertEquals(loop.code, 2);
  assert(loop.stderr.includes("loop"), loop.stderr);
  const ambiguous = await ferryRefuses({
    northbound: {
      url: "mqtt://127.0.0.1:1",
      gatewayId: "gw1",
      rewrite: [
        { direction: "up", from: "devices/+/telemetry", to: "a/{1}" },
        { direction: "up", from: "devices/d1/#", to: "b/{1}" },
      ],
    },
  }, dir);
  assertEquals(ambiguous.code, 2);
  assert(ambiguous.stderr.includes("ambiguous"), ambiguous.stderr);
  await Deno.remove(dir, { recursive: true });
});

/**
 * A scripted MQTT 5 upstream on a free loopback port: every packet it reads goes to `onPacket`,
 * which answers through `send`. Returns its URL and `close` (listener and connections).
 */
function scriptedBroker(onPacket: (p: Packet, send: (p: Packet) => Promise<number>) => void) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const serve = async (conn: Deno.Conn) => {
    const parser = mqttPacket.parser({ protocolVersion: 5 });
    const send = (p: Packet) =>
      conn.write(mqttPacket.generate(p, { protocolVersion: 5 })).catch(() => 0);
    parser.on("packet", (p: Packet) => onPacket(p, send));
    const buf = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        parser.parse(Buffer.from(buf.subarray(0, n)));
      }
    } catch { /* closed */ }
  };
  const serving: Promise<void>[] = [];
  const accepting = (async () => {
    try {
      for await (const c of listener) {
        conns.push(c);
        serving.push(serve(c));
      }
    } catch { /* closed */ }
  })();
  return {
    url: `mqtt://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await accepting;
      await Promise.all(serving);
    },
  };
}

/**
 * An MQTT 5 upstream that announces Receive Maximum 5, acknowledges slowly, and counts the
 * unacknowledged QoS 1 publishes it holds at any moment.
 */
function receiveMaxBroker(receiveMaximum: number) {
  const s = { maxOutstanding: 0, outstanding: 0, received: [] as string[], violations: 0 };
  const broker = scriptedBroker((p, send) => {
    if (p.cmd === "connect") {
      send({
        cmd: "connack",
        reasonCode: 0,
        sessionPresent: false,
        properties: { receiveMaximum },
      } as Packet);
    }
    if (p.cmd === "subscribe") {
      send({ cmd: "suback", messageId: p.messageId, granted: p.subscriptions.map(() => 1) });
    }
    if (p.cmd === "publish" && p.qos === 1) {
      s.outstanding++;
      if (s.outstanding > receiveMaximum) s.violations++;
      s.maxOutstanding = Math.max(s.maxOutstanding, s.outstanding);
      s.received.push(String(p.payload));
      setTimeout(() => {
        s.outstanding--;
        send({ cmd: "puback", messageId: p.messageId, reasonCode: 0 } as Packet);
      }, 3);
    }
  });
  return { ...broker, stats: s };
}

Deno.test("An upstream with Receive Maximum 5 never holds more than 5 unacknowledged publishes from the bridge", async () => {
  const upstream = receiveMaxBroker(5);
  try {
    await using gw = await startFerry({
      northbound: { url: upstream.url, gatewayId: "gw1", protocolVersion: 5, inflight: 1000 },
    });
    await waitMetric(gw, (m) => m("ferry_northbound_connected") === 1, "the link");
    const port = gw.addresses.binary.port;
    const sent: string[] = [];
    await Promise.all(Array.from({ length: 10 }, async (_, d) => {
      const c = await FbpClient.connect({ port, id: `r${d}` });
      for (let i = 0; i < 30; i++) {
        assertEquals(await c.telemetry(enc(`r${d}:${i}`), { ack: true }), AckStatus.OK);
        sent.push(`r${d}:${i}`);
      }
      await c.close();
    }));
    await waitFor(() => sent.every((t) => upstream.stats.received.includes(t)), "all", 30_000);
    assertEquals(upstream.stats.violations, 0);
    assert(upstream.stats.maxOutstanding === 5, `at most ${upstream.stats.maxOutstanding}`);
  } finally {
    await upstream.close();
  }
});

Deno.test("A bridge added by SIGHUP under load starts forwarding; the running bridge loses nothing", async () => {
  await using b1 = await startMosquitto();
  await using b2 = await startMosquitto();
  await using s1 = await subscribe(b1.url, "ferry/gw1/devices/+/telemetry");
  await using s2 = await subscribe(b2.url, "ferry/gw1/devices/+/telemetry");
  const one = { name: "a", url: b1.url, gatewayId: "gw1" };
  const cfg = await writeConfig({ northbound: [one] });
  const dir = await Deno.makeTempDir({ prefix: "ferry-hup-" });
  try {
    await using gw = await startGateway([
      "--config",
      cfg,
      "--data-dir",
      dir,
      "--binary-port",
      "0",
      "--mqtt-port",
      "0",
      "--mqtt-ws-port",
      "0",
      "--coap-port",
      "0",
      "--http-port",
      "0",
    ]);
    const port = gw.addresses.binary.port;
    const acked: string[] = [];
    let stop = false;
    const stream = Promise.all(Array.from({ length: 10 }, async (_, d) => {
      const c = await FbpClient.connect({ port, id: `h${d}` });
      for (let i = 0; !stop && i < 100_000; i++) {
        assertEquals(await c.telemetry(enc(`h${d}:${i}`), { ack: true }), AckStatus.OK);
        acked.push(`h${d}:${i}`);
        if (i % 10 === 0) await new Promise((r) => setTimeout(r, 2));
      }
      await c.close();
    }));
    await waitFor(() => acked.length >= 300, "traffic", 20_000);
    await Deno.writeTextFile(
      cfg,
      JSON.stringify({ northbound: [one, { name: "b", url: b2.url, gatewayId: "gw1" }] }),
    );
    gw.child.kill("SIGHUP");
    await gw.waitForLine((l) => l.msg === "bridges reloaded", 10_000);
    const line = gw.lines.find((l) => l.msg === "bridges reloaded")!;
    assertEquals(line.added, ["b"]);
    assertEquals(line.changed, [], "the running bridge was not restarted");
    await waitFor(() => s2.received.length >= 200, "the new bridge forwarding", 20_000);
    stop = true;
    await stream;
    await waitAllArrived(s1.received, acked, (t) => t, 30_000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Bridge at QoS 2 delivers exactly once to the upstream broker", async () => {
  await using broker = await startMosquitto();
  await using sub = await subscribe(broker.url, "ferry/gw1/devices/+/telemetry");
  await using gw = await startFerry({
    northbound: { url: broker.url, gatewayId: "gw1", qos: 2, protocolVersion: 5 },
  });
  await waitMetric(gw, (m) => m("ferry_northbound_connected") === 1, "the link");
  const c = await FbpClient.connect({ port: gw.addresses.binary.port, id: "q" });
  const sent: string[] = [];
  for (let i = 0; i < 100; i++) {
    assertEquals(await c.telemetry(enc(`q:${i}`), { ack: true }), AckStatus.OK);
    sent.push(`q:${i}`);
  }
  await c.close();
  await waitAllArrived(sub.received, sent, (t) => t, 20_000);
  await waitMetric(gw, (m) => m("ferry_spool_depth") === 0, "PUBCOMPs");
  assertEquals(sub.received.filter((r) => r.text.startsWith("q:")).length, 100);
});

/**
 * A v5 broker that keeps every session (CONNACK session present) and holds back PUBCOMP (or
 * PUBREC) while told to; records each PUBLISH and PUBREL.
 */
function qos2Broker() {
  const s = {
    publishes: [] as Array<{ pid: number; text: string; dup: boolean }>,
    releases: [] as number[],
    holdPubrec: false,
    holdPubcomp: true,
  };
  const broker = scriptedBroker((p, send) => {
    if (p.cmd === "connect") {
      send({ cmd: "connack", reasonCode: 0, sessionPresent: true } as Packet);
    } else if (p.cmd === "subscribe") {
      send({ cmd: "suback", messageId: p.messageId, granted: p.subscriptions.map(() => 1) });
    } else if (p.cmd === "publish" && p.qos === 2) {
      s.publishes.push({ pid: p.messageId!, text: String(p.payload), dup: p.dup });
      if (!s.holdPubrec) send({ cmd: "pubrec", messageId: p.messageId } as Packet);
    } else if (p.cmd === "pubrel") {
      s.releases.push(p.messageId!);
      if (!s.holdPubcomp) send({ cmd: "pubcomp", messageId: p.messageId } as Packet);
    }
  });
  return { ...broker, stats: s };
}

for (const stage of ["PUBREC", "PUBCOMP"] as const) {
  Deno.test(`QoS 2 upstream: a gateway killed while waiting for ${stage} resumes the exchange with the same packet ids after the restart, never a second PUBLISH`, async () => {
    const broker = qos2Broker();
    broker.stats.holdPubrec = stage === "PUBREC";
    const dir = await Deno.makeTempDir({ prefix: "ferry-q2-" });
    const config = {
      northbound: {
        url: broker.url,
        gatewayId: "gw1",
        qos: 2,
        protocolVersion: 5,
        presence: false,
        backoffBaseMs: 20,
        backoffCapMs: 100,
      },
    };
    try {
      const gw = await startFerry(config, dir);
      const c = await FbpClient.connect({ port: gw.addresses.binary.port, id: "q" });
      const sent: string[] = [];
      for (let i = 0; i < 20; i++) {
        assertEquals(await c.telemetry(enc(`q:${i}`), { ack: true }), AckStatus.OK);
        sent.push(`q:${i}`);
      }
      const firstPids = () => new Map(broker.stats.publishes.map((p) => [p.text, p.pid]));
      await waitFor(() => sent.every((t) => firstPids().has(t)), "every PUBLISH", 10_000);
      if (stage === "PUBCOMP") {
        await waitFor(
          () => {
            const pids = firstPids();
            return sent.every((t) => broker.stats.releases.includes(pids.get(t)!));
          },
          "a PUBREL for every message",
          10_000,
        );
      }
      const before = firstPids();
      const publishedBefore = broker.stats.publishes.length;
      const releasedBefore = broker.stats.releases.length;
      await c.close().catch(() => {});
      gw.child.kill("SIGKILL");
      await gw.status;
      broker.stats.holdPubrec = false;
      broker.stats.holdPubcomp = false;
      await using gw2 = await startFerry(config, dir);
      await waitMetric(gw2, (m) => m("ferry_spool_depth") === 0, "the exchanges to complete");
      const after = broker.stats.publishes.slice(publishedBefore).filter((p) =>
        p.text.startsWith("q:")
      );
      if (stage === "PUBCOMP") {
        assertEquals(after, [], "a message was published again after its PUBREC");
        const again = new Set(broker.stats.releases.slice(releasedBefore));
        assert(sent.every((t) => again.has(before.get(t)!)), "PUBREL again with the same ids");
      } else {
        // Sent again with DUP and the same packet id: the broker takes it as the same message.
        assertEquals(after.length, 20);
        assert(after.every((p) => p.dup && before.get(p.text) === p.pid), JSON.stringify(after));
      }
    } finally {
      await broker.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("MQTT 5 topic aliases toward mosquitto: topics arrive intact, past the broker's alias maximum too", async () => {
  await using broker = await startMosquitto({ extra: ["max_topic_alias 4"] });
  await using sub = await subscribe(broker.url, "ferry/gw1/devices/+/telemetry");
  await using gw = await startFerry({
    northbound: { url: broker.url, gatewayId: "gw1", protocolVersion: 5 },
  });
  await waitMetric(gw, (m) => m("ferry_northbound_connected") === 1, "the link");
  const port = gw.addresses.binary.port;
  const sent: string[] = [];
  for (let round = 0; round < 3; round++) {
    for (let d = 0; d < 8; d++) {
      const c = await FbpClient.connect({ port, id: `alias${d}` });
      assertEquals(await c.telemetry(enc(`alias${d}:${round}`), { ack: true }), AckStatus.OK);
      sent.push(`alias${d}:${round}`);
      await c.close();
    }
  }
  await waitAllArrived(sub.received, sent, (t) => t, 20_000);
  for (const r of sub.received) {
    assertEquals(r.topic, `ferry/gw1/devices/${r.text.split(":")[0]}/telemetry`);
  }
  const up = gw.lines.find((l) => l.msg === "upstream live" && l.topicAliasMaximum !== undefined);
  assertEquals(up?.topicAliasMaximum, 4, "the broker's limit was read");
});

Deno.test("Editing the config file reloads the bridges without a signal; a removed bridge's spooled messages stay for it", async () => {
  await using b1 = await startMosquitto();
  await using b2 = await startMosquitto();
  await b2.stop(); // bridge "b" cannot deliver: its messages wait in its partition
  const a = { name: "a", url: b1.url, gatewayId: "gw1" };
  const b = { name: "b", url: b2.url, gatewayId: "gw1", backoffBaseMs: 20, backoffCapMs: 100 };
  const cfg = await writeConfig({ northbound: [a, b] });
  const dir = await Deno.makeTempDir({ prefix: "ferry-watch-" });
  try {
    await using gw = await startGateway([
      "--config",
      cfg,
      "--data-dir",
      dir,
      "--binary-port",
      "0",
      "--mqtt-port",
      "0",
      "--mqtt-ws-port",
      "0",
      "--coap-port",
      "0",
      "--http-port",
      "0",
    ]);
    const c = await FbpClient.connect({ port: gw.addresses.binary.port, id: "w" });
    for (let i = 0; i < 10; i++) {
      assertEquals(await c.telemetry(enc(`w:${i}`), { ack: true }), AckStatus.OK);
    }
    await c.close();
    await Deno.writeTextFile(cfg, JSON.stringify({ northbound: [a] }));
    const line = await gw.waitForLine((l) => l.msg === "bridges reloaded", 10_000);
    assertEquals(line.removed, ["b"]);
    const m = await metrics(gw);
    assert(m('ferry_spool_partition_depth{bridge="b"}') >= 10, "b's messages were dropped");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
