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
  // Refused but well formed (a malformed filter closes the connection): deeper than 201 levels.
  const deep = (x: string) => `o/${"l/".repeat(201)}${x}`;
  await r.send({
    cmd: "subscribe",
    messageId: 7,
    subscriptions: [
      { topic: "o/2", qos: 2 },
      { topic: deep("x"), qos: 1 },
      { topic: "o/0", qos: 0 },
      { topic: deep("y"), qos: 1 },
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

// ---- issue #14 item 4: a CONNECT holds exactly what its flags announce ----

const hexOf = (f: Uint8Array): string =>
  [...f].map((x) => x.toString(16).padStart(2, "0")).join(" ");

Deno.test("[MQTT-3.1.2-18] a user name present with the User Name Flag 0 closes the connection without CONNACK", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.send(connectBytes(0x02, "un", { tail: mqttString("user") }));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-3.1.2-20] a password present with the Password Flag 0 closes the connection without CONNACK", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.send(connectBytes(0x02 | 0x80, "pf", { tail: [...mqttString("u"), ...mqttString("p")] }));
  assertEquals(await r.waitClosed(), []);
});

// ---- issue #14 item 5: MQTT 3.1 is not 3.1.1 ----

/** CONNECT "MQIsdp" level 3 with `flags`, keepalive 0, client id `id`. */
function connect31(flags: number, id: string): Uint8Array {
  return rawPacket(0x10, [...mqttString("MQIsdp"), 3, flags, 0, 0, ...mqttString(id)]);
}

Deno.test("MQTT 3.1 §3.6: a PUBREL sent again with DUP set is answered with PUBCOMP", async () => {
  await using h = await startMqtt();
  const r = await h.raw(3);
  await r.send(connect31(0x02, "d31"));
  assertEquals(codes([await r.next()]), [["connack", 0]]);
  await r.send(rawPacket(0x34, [...mqttString("q31/a"), 0, 7, 0x6d])); // PUBLISH QoS 2, id 7
  assertEquals((await r.next()).cmd, "pubrec");
  await r.send(Uint8Array.from([0x6a, 2, 0, 7])); // PUBREL, DUP 1, QoS 1
  assertEquals((await r.next()).cmd, "pubcomp");
  assertEquals(r.frames.map(hexOf).slice(1), ["50 02 00 07", "70 02 00 07"]);
});

Deno.test("MQTT 3.1 §3.1: the reserved bit of the CONNECT flags has no rule; a 3.1 CONNECT with it set is accepted", async () => {
  await using h = await startMqtt();
  const r = await h.raw(3);
  await r.send(connect31(0x03, "r31"));
  await r.next();
  assertEquals(hexOf(r.frames[0]), "20 02 00 00");
});

Deno.test("MQTT 3.1 §3.8: a SUBSCRIBE sent again with DUP set is answered with SUBACK", async () => {
  await using h = await startMqtt();
  const r = await h.raw(3);
  await r.send(connect31(0x02, "s31"));
  await r.next();
  await r.send(rawPacket(0x8a, [0, 5, ...mqttString("t31"), 1]));
  await r.next();
  assertEquals(hexOf(r.frames[1]), "90 03 00 05 01");
});

Deno.test("MQTT 3.1 §3.10: an UNSUBSCRIBE sent again with DUP set is answered with UNSUBACK", async () => {
  await using h = await startMqtt();
  const r = await h.raw(3);
  await r.send(connect31(0x02, "u31"));
  await r.next();
  await r.send(rawPacket(0xaa, [0, 6, ...mqttString("t31")])); // UNSUBSCRIBE, DUP 1, QoS 1
  await r.next();
  assertEquals(hexOf(r.frames[1]), "b0 02 00 06");
});

Deno.test("[MQTT-3.6.1-1] a 3.1.1 PUBREL with DUP set closes the connection (3.1's resend rule is not 3.1.1's)", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  await r.send(rawPacket(0x34, [...mqttString("q4/a"), 0, 7, 0x6d]));
  assertEquals((await r.next()).cmd, "pubrec");
  await r.send(Uint8Array.from([0x6a, 2, 0, 7]));
  assertEquals(await r.waitClosed(), []);
});

// ---- issue #14 item 6: the will on a takeover ----

Deno.test("[MQTT-3.1.2-8] 3.1.1: a takeover that resumes a clean session 0 still publishes the first connection's will", async () => {
  await using h = await startMqtt();
  const sub = await h.raw(4);
  await sub.connect();
  await sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "tw/#", qos: 0 }] });
  await sub.next();
  const first = await h.raw(4);
  await first.connect({
    clientId: "tw4",
    clean: false,
    will: { topic: "tw/will", payload: "gone" as never, qos: 0, retain: false },
  });
  const second = await h.raw(4);
  const ack = await second.connect({ clientId: "tw4", clean: false }) as {
    sessionPresent: boolean;
  };
  assertEquals(ack.sessionPresent, true);
  await first.waitClosed();
  // 3.1.1 has no Will Delay and no exception for a takeover: the connection closed other than by
  // DISCONNECT, so its will goes out (mosquitto keeps it back: docs/mqtt.md).
  assertEquals((await sub.next() as { topic?: string }).topic, "tw/will");
});

// ---- issue #14 item 8: `$` topics, topic levels ----

Deno.test("§4.7.2 a 3.1.1 PUBLISH to a $ topic is acknowledged and dropped (3.1.1 cannot refuse it)", async () => {
  await using h = await startMqtt();
  const sub = await h.raw(4);
  await sub.connect();
  await sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "$x/#", qos: 1 }] });
  await sub.next();
  const r = await h.raw(4);
  await r.connect();
  await r.send(rawPacket(0x32, [...mqttString("$x/a"), 0, 1, 0x6d])); // QoS 1, id 1
  await r.next();
  assertEquals(hexOf(r.frames[1]), "40 02 00 01");
  await sub.send(Uint8Array.from([0xc0, 0]));
  assertEquals((await sub.next()).cmd, "pingresp"); // nothing delivered before it
  assertEquals(h.core.stats.drops.get({ protocol: "mqtt", reason: "not_authorized" }), 1);
});

Deno.test("§4.7.2 a 3.1.1 will to a $ topic gets CONNACK 5 (not authorized)", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.send(
    connectBytes(0x02 | 0x04, "wd", { tail: [...mqttString("$CONTROL/x"), ...mqttString("w")] }),
  );
  await r.waitClosed();
  assertEquals(r.frames.map(hexOf), ["20 02 00 05"]);
});

Deno.test("topic levels: a 3.1.1 PUBLISH to a topic of more than 201 levels closes the connection, 201 are accepted", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  const levels = (n: number) => Array.from({ length: n }, () => "a").join("/");
  await r.send(rawPacket(0x32, [...mqttString(levels(201)), 0, 1, 0x6d]));
  assertEquals((await r.next()).cmd, "puback");
  await r.send(rawPacket(0x32, [...mqttString(levels(202)), 0, 2, 0x6d]));
  assertEquals(await r.waitClosed(), []);
});

// ---- issue #14 item 9: no gateway artefacts for a plain MQTT client ----

Deno.test("by default an anonymous client is not a device: a # subscriber sees no devices/{id}/status", async () => {
  await using h = await startMqtt();
  const sub = await h.raw(4);
  await sub.connect({ clientId: "watcher" });
  await sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "#", qos: 0 }] });
  await sub.next();
  const r = await h.raw(4);
  await r.connect({ clientId: "sensor-1" }); // a valid device id, but anonymous
  r.close();
  await until(() => h.server.connectionCount === 1, "sensor-1 gone");
  await sub.send(Uint8Array.from([0xc0, 0]));
  assertEquals((await sub.next()).cmd, "pingresp"); // no online/offline status before it
  assertEquals(h.core.retained.match("devices/#").length, 0);
});
