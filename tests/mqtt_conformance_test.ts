/**
 * Black-box checks of the MQTT 3.1.1 server against normative statements of the OASIS MQTT 3.1.1
 * specification, one clause per test, over real sockets. Packets no client library would send are
 * built by hand (`rawPacket`) so that the server, not the library, is what is tested.
 *
 * @module
 */

import type { Packet } from "mqtt-packet";
import { assert, assertEquals } from "./_assert.ts";
import { Inbox, mqttString, rawPacket, startMqtt, until } from "./_mqtt_harness.ts";

/** CONNECT flags byte, keepalive 0, client id `id`, protocol name/level as given. */
function connectBytes(
  flags: number,
  id: string,
  opts: { name?: string; level?: number; tail?: number[] } = {},
): Uint8Array {
  return rawPacket(0x10, [
    ...mqttString(opts.name ?? "MQTT"),
    opts.level ?? 4,
    flags,
    0,
    0,
    ...mqttString(id),
    ...(opts.tail ?? []),
  ]);
}

function codes(packets: Packet[]): Array<[string, number | undefined]> {
  return packets.map((p) => [p.cmd, (p as { returnCode?: number }).returnCode]);
}

// ---- CONNECT ----

Deno.test("[MQTT-3.1.2-2] a CONNECT with protocol level 3 under the name MQTT gets return code 1", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.send(connectBytes(0x02, "lv", { level: 3 }));
  assertEquals(codes(await r.waitClosed()), [["connack", 1]]);
});

Deno.test("[MQTT-3.1.2-11] will QoS set without the will flag closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.send(connectBytes(0x02 | 0x08, "wq"));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-3.1.4-1] a will topic with a wildcard closes the connection without CONNACK", async () => {
  await using h = await startMqtt();
  for (const topic of ["w/#", "w/+/x", ""]) {
    const r = await h.raw(4);
    // CONNECT "MQTT" 4, will flag + clean session, keepalive 0, id "wt", will topic, payload "x"
    await r.send(
      rawPacket(0x10, [
        ...mqttString("MQTT"),
        4,
        0x06,
        0,
        0,
        ...mqttString("wt"),
        ...mqttString(topic),
        ...mqttString("x"),
      ]),
    );
    assertEquals(await r.waitClosed(), [], topic);
  }
});

Deno.test("MQTT 5 §3.1.3.3 a will topic with a wildcard gets CONNACK 0x90", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  const ack = await r.connect({
    will: { topic: "w/#", payload: "x", qos: 0, retain: false },
  });
  assertEquals([ack.cmd, (ack as { reasonCode?: number }).reasonCode], ["connack", 0x90]);
});

Deno.test("[MQTT-3.1.2-15] will retain set without the will flag closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.send(connectBytes(0x02 | 0x20, "wr"));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-3.1.2-14] will QoS 3 closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.send(connectBytes(0x02 | 0x04 | 0x18, "w3", { tail: [...mqttString("w/t"), 0, 0] }));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-3.1.2-22] a password without a user name closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.send(connectBytes(0x02 | 0x40, "pw", { tail: mqttString("secret") }));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-3.1.2-19] a zero-length user name is accepted", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.send(connectBytes(0x02 | 0x80, "zu", { tail: mqttString("") }));
  assertEquals(codes([await r.next()]), [["connack", 0]]);
});

Deno.test("[MQTT-3.1.2-8] the will is published when the server closes the connection for a protocol error", async () => {
  await using h = await startMqtt();
  const sub = await h.client({ protocolVersion: 4 });
  const inbox = new Inbox(sub);
  await sub.subscribeAsync("pe/will", { qos: 1 });
  const r = await h.raw(4);
  await r.connect({
    clientId: "pe",
    will: { topic: "pe/will", payload: "gone" as never, qos: 1, retain: false },
  });
  await r.send(Uint8Array.from([0x36, 5, 0, 1, 0x61, 0, 1])); // PUBLISH QoS 3
  await r.waitClosed();
  await inbox.waitFor(1);
  assertEquals(inbox.messages[0].payload, "gone");
});

// ---- fixed header flags ----

Deno.test("[MQTT-3.6.1-1] PUBREL with fixed-header flags 0000 closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  await r.send(Uint8Array.from([0x60, 2, 0, 1]));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-3.10.1-1] UNSUBSCRIBE with fixed-header flags 0000 closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  await r.send(rawPacket(0xa0, [0, 1, ...mqttString("a")]));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-2.2.2-2] PINGREQ with a reserved flag set closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  await r.send(Uint8Array.from([0xc1, 0]));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-3.3.1-4] PUBLISH with both QoS bits set closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  await r.send(rawPacket(0x36, [...mqttString("a"), 0, 1]));
  assertEquals(await r.waitClosed(), []);
});

// ---- PUBLISH ----

Deno.test("[MQTT-2.3.1-1] a QoS 1 PUBLISH with packet identifier 0 closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  await r.send(rawPacket(0x32, [...mqttString("a"), 0, 0, 0x78]));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-1.5.3-1] a topic name with an encoded surrogate closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  await r.send(rawPacket(0x30, [...mqttString(Uint8Array.from([0x61, 0xed, 0xa0, 0x80])), 0x78]));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-1.5.3-2] a topic name with U+0000 closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  await r.send(rawPacket(0x30, [...mqttString(Uint8Array.from([0x61, 0, 0x62])), 0x78]));
  assertEquals(await r.waitClosed(), []);
});

// ---- SUBSCRIBE / UNSUBSCRIBE ----

Deno.test("[MQTT-3.8.3-4] SUBSCRIBE with reserved bits set in the requested QoS byte closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  await r.send(rawPacket(0x82, [0, 1, ...mqttString("a"), 0x04]));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-3.8.3-4] SUBSCRIBE requesting QoS 3 closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  await r.send(rawPacket(0x82, [0, 1, ...mqttString("a"), 0x03]));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-2.3.1-1] SUBSCRIBE with packet identifier 0 closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  await r.send(rawPacket(0x82, [0, 0, ...mqttString("a"), 0]));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-3.9.3-1] SUBACK return codes follow the order of the topic filters", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  await r.send({
    cmd: "subscribe",
    messageId: 7,
    subscriptions: [
      { topic: "o/2", qos: 2 },
      { topic: "o/#/x", qos: 1 },
      { topic: "o/0", qos: 0 },
      { topic: "o+", qos: 1 },
      { topic: "o/1", qos: 1 },
    ],
  });
  const ack = await r.next() as { cmd: string; messageId: number; granted: number[] };
  assertEquals([ack.cmd, ack.messageId, ack.granted], ["suback", 7, [2, 0x80, 0, 0x80, 1]]);
  assert(!r.closed);
});

// ---- other packets ----

Deno.test("[MQTT-4.8.0-1] a server-to-client packet (SUBACK) from a client closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  await r.send(Uint8Array.from([0x90, 3, 0, 1, 0]));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-3.14.1-1] DISCONNECT with a reserved flag set closes the connection and publishes the will", async () => {
  await using h = await startMqtt();
  const sub = await h.client({ protocolVersion: 4 });
  const inbox = new Inbox(sub);
  await sub.subscribeAsync("df/will", { qos: 1 });
  const r = await h.raw(4);
  await r.connect({
    clientId: "df",
    will: { topic: "df/will", payload: "bad" as never, qos: 1, retain: false },
  });
  await r.send(Uint8Array.from([0xe1, 0]));
  assertEquals(await r.waitClosed(), []);
  await inbox.waitFor(1);
  await until(() => h.server.connectionCount === 1, "raw connection released");
});

Deno.test("[MQTT-3.8.3-3] SUBSCRIBE without any topic filter closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  await r.send(rawPacket(0x82, [0, 1]));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-3.10.3-2] UNSUBSCRIBE without any topic filter closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  await r.send(rawPacket(0xa2, [0, 1]));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-3.1.2-1] a CONNECT with an unknown protocol name is closed without a CONNACK", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.send(connectBytes(0x02, "pn", { name: "hj" }));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-3.1.4-2] [MQTT-3.2.2-2] a clean=0 CONNECT that takes over a clean session gets session present 0 and none of its subscriptions", async () => {
  await using h = await startMqtt();
  const first = await h.raw(4);
  await first.connect({ clientId: "to-clean", clean: true });
  await first.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "tc/#", qos: 1 }] });
  assertEquals((await first.next()).cmd, "suback");
  const second = await h.raw(4);
  const ack = await second.connect({ clientId: "to-clean", clean: false }) as {
    sessionPresent: boolean;
  };
  // The first connection's session ended with it (clean session), so nothing was resumed.
  assertEquals(ack.sessionPresent, false);
  await first.waitClosed();
  await second.send({ cmd: "subscribe", messageId: 2, subscriptions: [{ topic: "mark", qos: 1 }] });
  assertEquals((await second.next()).cmd, "suback");
  const pub = await h.client({ protocolVersion: 4 });
  await pub.publishAsync("tc/x", "x", { qos: 1 });
  await pub.publishAsync("mark", "m", { qos: 1 }); // delivered after tc/x, were it subscribed
  assertEquals((await second.next() as { topic?: string }).topic, "mark");
});

Deno.test("[MQTT-1.5.3-3] a leading U+FEFF in a topic name is kept, not stripped", async () => {
  await using h = await startMqtt();
  const sub = await h.raw(4);
  await sub.connect();
  await sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "bom/#", qos: 0 }] });
  assertEquals((await sub.next()).cmd, "suback");
  const pub = await h.raw(4);
  await pub.connect();
  const bom = [0xef, 0xbb, 0xbf];
  await pub.send(
    rawPacket(0x30, [
      ...mqttString(Uint8Array.from([...bom, ...new TextEncoder().encode("bom/a")])),
      0x31,
    ]),
  );
  await pub.send(rawPacket(0x30, [...mqttString("bom/b"), 0x32]));
  // Only bom/b matches bom/#: "\uFEFFbom/a" is a different topic.
  assertEquals((await sub.next() as { topic?: string }).topic, "bom/b");
});

Deno.test("§3.4.1 a PUBACK with a remaining length other than 2 is malformed and closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  await r.send(Uint8Array.from([0x40, 3, 0, 1, 0]));
  assertEquals(await r.waitClosed(), []);
});
