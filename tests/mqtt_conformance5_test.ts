/**
 * Black-box checks of the MQTT 5.0 server against normative statements of the OASIS MQTT 5.0
 * specification, one clause per test, over real sockets. Packets no client library would send are
 * built by hand (`rawPacket`) so that the server, not the library, is what is tested.
 *
 * @module
 */

import type { IConnackPacket, IPublishPacket, Packet } from "mqtt-packet";
import { Buffer } from "node:buffer";
import { FakeClock } from "../src/core/mod.ts";
import { assert, assertEquals } from "./_assert.ts";
import {
  Inbox,
  type MqttHarness,
  mqttString,
  rawPacket,
  startMqtt,
  until,
} from "./_mqtt_harness.ts";

/** [cmd, reason code] of each packet, to compare what the server sent. */
function codes(packets: Packet[]): Array<[string, number | undefined]> {
  return packets.map((p) => [p.cmd, (p as { reasonCode?: number }).reasonCode]);
}

// ---- CONNECT ----

Deno.test("[MQTT-3.2.2-21] a keepalive above the server's maximum is answered with Server Keep Alive", async () => {
  await using h = await startMqtt({ server: { maxKeepAlive: 30 } });
  const r = await h.raw(5);
  const ack = await r.connect({ clientId: "ska", keepalive: 600 }) as {
    properties?: { serverKeepAlive?: number };
  };
  assertEquals(ack.properties?.serverKeepAlive, 30);
});

// ---- SUBSCRIBE / UNSUBSCRIBE ----

Deno.test("[MQTT-3.8.3-5] SUBSCRIBE with reserved option bits set gets DISCONNECT 0x81", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  await r.send(rawPacket(0x82, [0, 1, 0, ...mqttString("a"), 0x41]));
  assertEquals(codes(await r.waitClosed()), [["disconnect", 0x81]]);
});

Deno.test("[MQTT-3.8.3-4] No Local on a shared subscription gets DISCONNECT 0x82", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  await r.send({
    cmd: "subscribe",
    messageId: 1,
    subscriptions: [{ topic: "$share/g/nl", qos: 1, nl: true, rap: false, rh: 0 }],
  });
  assertEquals(codes(await r.waitClosed()), [["disconnect", 0x82]]);
});

Deno.test("[MQTT-3.8.2-1] Subscription Identifier 0 gets DISCONNECT 0x82", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  // SUBSCRIBE id 1, properties: Subscription Identifier (0x0B) = 0; filter "a" QoS 0
  await r.send(rawPacket(0x82, [0, 1, 2, 0x0b, 0, ...mqttString("a"), 0]));
  assertEquals(codes(await r.waitClosed()), [["disconnect", 0x82]]);
});

for (const bad of ["$share/g", "$share//a", "$share/g+/a"]) {
  Deno.test(`[MQTT-4.8.2-1] [MQTT-4.8.2-2] a malformed shared subscription filter (${bad}) gets DISCONNECT 0x81 and nothing of its SUBSCRIBE is applied`, async () => {
    await using h = await startMqtt();
    const kept = { clientId: "msf", clean: false, properties: { sessionExpiryInterval: 60 } };
    const r = await h.raw(5);
    await r.connect(kept);
    await r.send({
      cmd: "subscribe",
      messageId: 3,
      subscriptions: [
        { topic: "msf/a", qos: 1, nl: false, rap: false, rh: 0 },
        { topic: bad, qos: 1, nl: false, rap: false, rh: 0 },
      ],
    });
    // mosquitto 2.0 answers the same: 0x8F is for a filter "correctly formed" but not allowed.
    assertEquals(codes(await r.waitClosed()), [["disconnect", 0x81]]);
    const again = await h.raw(5);
    assertEquals((await again.connect(kept) as IConnackPacket).sessionPresent, true);
    const pub = await h.client({ protocolVersion: 5 });
    await pub.publishAsync("msf/a", "m", { qos: 1 });
    await again.send(Uint8Array.from([0xc0, 0]));
    assertEquals((await again.next()).cmd, "pingresp"); // msf/a was not subscribed
  });
}

Deno.test("§4.8.2 a shared subscription gets no retained messages on subscribe", async () => {
  await using h = await startMqtt();
  const pub = await h.client({ protocolVersion: 5 });
  await pub.publishAsync("shr/a", "kept", { qos: 1, retain: true });
  const r = await h.raw(5);
  await r.connect();
  await r.send({
    cmd: "subscribe",
    messageId: 1,
    subscriptions: [{ topic: "$share/g/shr/#", qos: 1, nl: false, rap: false, rh: 0 }],
  });
  assertEquals((await r.next()).cmd, "suback");
  await pub.publishAsync("shr/a", "live", { qos: 0 });
  const live = await r.next() as { cmd: string; payload: Uint8Array };
  assertEquals([live.cmd, new TextDecoder().decode(live.payload)], ["publish", "live"]);
});

// ---- PUBLISH ----

Deno.test("[MQTT-3.3.2-8] Topic Alias 0 gets DISCONNECT 0x94", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  await r.send({
    cmd: "publish",
    topic: "ta",
    payload: "x" as never,
    qos: 0,
    dup: false,
    retain: false,
    properties: { topicAlias: 0 },
  });
  assertEquals(codes(await r.waitClosed()), [["disconnect", 0x94]]);
});

Deno.test("[MQTT-3.3.1-4] PUBLISH with both QoS bits set gets DISCONNECT 0x81", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  await r.send(rawPacket(0x36, [...mqttString("a"), 0, 1, 0]));
  assertEquals(codes(await r.waitClosed()), [["disconnect", 0x81]]);
});

Deno.test("[MQTT-3.3.2-2] a wildcard in a PUBLISH topic gets DISCONNECT 0x90", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  await r.send(rawPacket(0x30, [...mqttString("a/+"), 0, 0x78]));
  assertEquals(codes(await r.waitClosed()), [["disconnect", 0x90]]);
});

Deno.test("[MQTT-3.3.4-6] a Subscription Identifier in a client's PUBLISH gets DISCONNECT 0x82", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  await r.send(rawPacket(0x30, [...mqttString("a"), 2, 0x0b, 1, 0x78]));
  assertEquals(codes(await r.waitClosed()), [["disconnect", 0x82]]);
});

// ---- AUTH, DISCONNECT, will ----

Deno.test("[MQTT-4.12.0-1] AUTH without an Authentication Method in CONNECT gets DISCONNECT 0x82", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  await r.send(Uint8Array.from([0xf0, 2, 0x18, 0])); // AUTH, Continue authentication
  assertEquals(codes(await r.waitClosed()), [["disconnect", 0x82]]);
});

Deno.test("[MQTT-4.12.0-1] a CONNECT with an unsupported Authentication Method gets CONNACK 0x8C and is closed", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.send({
    cmd: "connect",
    protocolId: "MQTT",
    protocolVersion: 5,
    clientId: "am",
    clean: true,
    keepalive: 0,
    properties: { authenticationMethod: "SCRAM-SHA-1", authenticationData: Buffer.from("x") },
  });
  assertEquals(codes(await r.waitClosed()), [["connack", 0x8c]]);
});

Deno.test("[MQTT-3.14.2-2] DISCONNECT setting Session Expiry after CONNECT said 0 publishes the will", async () => {
  await using h = await startMqtt();
  const sub = await h.client({ protocolVersion: 5 });
  const inbox = new Inbox(sub);
  await sub.subscribeAsync("se/will", { qos: 1 });
  const r = await h.raw(5);
  await r.connect({
    clientId: "se0",
    will: { topic: "se/will", payload: "w" as never, qos: 1, retain: false },
  });
  await r.send({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 30 } });
  assertEquals(codes(await r.waitClosed()), [["disconnect", 0x82]]);
  await inbox.waitFor(1);
});

Deno.test("[MQTT-3.1.3-9] a will whose delay outlasts the session is published when the session expires", async () => {
  const clock = new FakeClock(Date.now());
  await using h = await startMqtt({ core: { clock } });
  const seen: string[] = [];
  h.core.subscribe("wl/#", { id: "probe", deliver: (m) => seen.push(m.topic) });
  const r = await h.raw(5);
  await r.connect({
    clientId: "wl",
    properties: { sessionExpiryInterval: 3 },
    will: {
      topic: "wl/will",
      payload: "w" as never,
      qos: 0,
      retain: false,
      properties: { willDelayInterval: 60 },
    },
  });
  r.close();
  await until(() => h.server.connectionCount === 0, "disconnect");
  await clock.tickAsync(2_900);
  assertEquals(seen, []);
  await clock.tickAsync(200);
  await until(() => seen.length > 0, "will");
  assertEquals(seen, ["wl/will"]);
});

Deno.test("[MQTT-3.8.3-2] SUBSCRIBE without any topic filter gets DISCONNECT 0x82", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  await r.send(rawPacket(0x82, [0, 1, 0])); // packet id 1, no properties, no payload
  assertEquals(codes(await r.waitClosed()), [["disconnect", 0x82]]);
});

Deno.test("[MQTT-3.10.3-2] UNSUBSCRIBE without any topic filter gets DISCONNECT 0x82", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  await r.send(rawPacket(0xa2, [0, 1, 0]));
  assertEquals(codes(await r.waitClosed()), [["disconnect", 0x82]]);
});

Deno.test("[MQTT-3.1.2-1] a v5 CONNECT with an unknown protocol name is closed without a CONNACK", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  // CONNECT "hj" level 5, clean start, keepalive 0, no properties, client id "x"
  await r.send(rawPacket(0x10, [...mqttString("hj"), 5, 2, 0, 0, 0, ...mqttString("x")]));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-3.8.3-5] SUBSCRIBE with Retain Handling 3 is closed with DISCONNECT 0x82", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  await r.send(rawPacket(0x82, [0, 1, 0, ...mqttString("a"), 0x31]));
  assertEquals(codes(await r.waitClosed()), [["disconnect", 0x82]]);
});

Deno.test("[MQTT-3.1.4-3] [MQTT-3.2.2-2] Clean Start 0 taking over a session with expiry 0 gets session present 0", async () => {
  await using h = await startMqtt();
  const first = await h.raw(5);
  await first.connect({ clientId: "to5", clean: true });
  await first.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t5/#", qos: 1 }] });
  assertEquals((await first.next()).cmd, "suback");
  const second = await h.raw(5);
  const ack = await second.connect({
    clientId: "to5",
    clean: false,
    properties: { sessionExpiryInterval: 60 },
  }) as { sessionPresent: boolean; reasonCode: number };
  assertEquals([ack.reasonCode, ack.sessionPresent], [0, false]);
  assertEquals(codes(await first.waitClosed()), [["disconnect", 0x8e]]);
  await second.send({ cmd: "subscribe", messageId: 2, subscriptions: [{ topic: "mark", qos: 1 }] });
  assertEquals((await second.next()).cmd, "suback");
  const pub = await h.client({ protocolVersion: 5 });
  await pub.publishAsync("t5/x", "x", { qos: 1 });
  await pub.publishAsync("mark", "m", { qos: 1 }); // delivered after t5/x, were it subscribed
  assertEquals((await second.next() as { topic?: string }).topic, "mark");
});

Deno.test("[MQTT-3.1.3-9] a delayed will is published at once when a Clean Start connection takes the session over", async () => {
  await using h = await startMqtt();
  const sub = await h.client({ protocolVersion: 5 });
  const inbox = new Inbox(sub);
  await sub.subscribeAsync("wt/will", { qos: 1 });
  const first = await h.raw(5);
  await first.connect({
    clientId: "wt",
    clean: false,
    properties: { sessionExpiryInterval: 600 },
    will: {
      topic: "wt/will",
      payload: "w" as never,
      qos: 1,
      retain: false,
      properties: { willDelayInterval: 600 },
    },
  });
  const second = await h.raw(5);
  await second.connect({ clientId: "wt", clean: true });
  await first.waitClosed();
  await inbox.waitFor(1); // the session ended, so its will could not wait for its delay
  assert(!second.closed);
});

Deno.test("[MQTT-3.1.3-6] [MQTT-3.2.2-16] an empty client id with Clean Start 0 is accepted with an Assigned Client Identifier, and the session resumes under it", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  // CONNECT "MQTT" level 5, Clean Start 0, keepalive 0, Session Expiry 60, client id ""
  // (mqtt-packet refuses to encode it)
  await r.send(rawPacket(0x10, [...mqttString("MQTT"), 5, 0, 0, 0, 5, 0x11, 0, 0, 0, 60, 0, 0]));
  const ack = await r.next() as IConnackPacket;
  assertEquals([ack.cmd, ack.reasonCode, ack.sessionPresent], ["connack", 0, false]);
  // 20 LL 00 00 (session present 0, Success), then properties with 0x12 Assigned Client Identifier
  assertEquals([...r.frames[0].subarray(2, 4)], [0, 0]);
  const id = ack.properties?.assignedClientIdentifier;
  assert(id !== undefined && id.length > 0, "no Assigned Client Identifier");
  await r.send({
    cmd: "subscribe",
    messageId: 1,
    subscriptions: [{ topic: "es/#", qos: 1, nl: false, rap: false, rh: 0 }],
  });
  assertEquals((await r.next()).cmd, "suback");
  r.close();
  const again = await h.raw(5);
  const back = await again.connect({
    clientId: id,
    clean: false,
    properties: { sessionExpiryInterval: 60 },
  }) as IConnackPacket;
  assertEquals([back.reasonCode, back.sessionPresent], [0, true]);
  const pub = await h.client({ protocolVersion: 5 });
  await pub.publishAsync("es/a", "kept", { qos: 1 });
  const got = await again.next() as IPublishPacket;
  assertEquals([got.topic, String(got.payload)], ["es/a", "kept"]);
});

Deno.test("§2.2.2.2 a property not valid for PUBLISH (Session Expiry Interval) gets DISCONNECT 0x81", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  // PUBLISH QoS 0 "a", properties: Session Expiry Interval (0x11) = 1, payload "x"
  await r.send(rawPacket(0x30, [...mqttString("a"), 5, 0x11, 0, 0, 0, 1, 0x78]));
  assertEquals(codes(await r.waitClosed()), [["disconnect", 0x81]]);
});

Deno.test("§2.2.2.2 a property not valid for SUBSCRIBE (Topic Alias) gets DISCONNECT 0x81", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  await r.send(rawPacket(0x82, [0, 1, 3, 0x23, 0, 1, ...mqttString("a"), 0]));
  assertEquals(codes(await r.waitClosed()), [["disconnect", 0x81]]);
});

Deno.test("§2.2.2.2 a CONNECT with a property not valid for it (Topic Alias) is refused", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  // CONNECT "MQTT" 5, clean start, keepalive 0, properties: Topic Alias (0x23) = 1, client id "x"
  await r.send(
    rawPacket(0x10, [...mqttString("MQTT"), 5, 2, 0, 0, 3, 0x23, 0, 1, ...mqttString("x")]),
  );
  const got = await r.waitClosed();
  assert(
    got.every((p) => p.cmd === "connack" && (p as { reasonCode: number }).reasonCode === 0x81),
  );
});

Deno.test("§2.2.2.2 a will property not valid for a will (Topic Alias) is refused", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  // CONNECT "MQTT" 5, will flag + clean start, no properties, client id "x",
  // will properties: Topic Alias (0x23) = 1, will topic "w", will payload "p"
  await r.send(
    rawPacket(0x10, [
      ...mqttString("MQTT"),
      5,
      0x06,
      0,
      0,
      0,
      ...mqttString("x"),
      3,
      0x23,
      0,
      1,
      ...mqttString("w"),
      ...mqttString("p"),
    ]),
  );
  const got = await r.waitClosed();
  assert(
    got.every((p) => p.cmd === "connack" && (p as { reasonCode: number }).reasonCode === 0x81),
  );
});

Deno.test("§2.2.2.2 every property valid for PUBLISH is accepted and forwarded", async () => {
  await using h = await startMqtt();
  const sub = await h.client({ protocolVersion: 5 });
  const inbox = new Inbox(sub);
  await sub.subscribeAsync("pp/a", { qos: 1 });
  const r = await h.raw(5);
  await r.connect();
  await r.send({
    cmd: "publish",
    topic: "pp/a",
    payload: Buffer.from("x"),
    qos: 1,
    messageId: 1,
    dup: false,
    retain: false,
    properties: {
      payloadFormatIndicator: true,
      messageExpiryInterval: 60,
      contentType: "text/plain",
      responseTopic: "pp/reply",
      correlationData: Buffer.from("c"),
      userProperties: { k: "v" },
      topicAlias: 1,
    },
  });
  assertEquals((await r.next()).cmd, "puback");
  await inbox.waitFor(1);
  assertEquals(inbox.messages[0].packet.properties?.contentType, "text/plain");
});

Deno.test("[MQTT-4.4.0-1] [MQTT-3.3.2-5] an in-flight QoS 1 message is resent on reconnect even after its expiry passed", async () => {
  const clock = new FakeClock(Date.now());
  await using h = await startMqtt({ core: { clock } });
  const persistent = { clientId: "ei", clean: false, properties: { sessionExpiryInterval: 60 } };
  const sub = await h.raw(5);
  await sub.connect(persistent);
  await sub.send({
    cmd: "subscribe",
    messageId: 1,
    subscriptions: [{ topic: "ei/#", qos: 1, nl: false, rap: false, rh: 0 }],
  });
  assertEquals((await sub.next()).cmd, "suback");
  const pub = await h.raw(5);
  await pub.connect();
  await pub.send({
    cmd: "publish",
    topic: "ei/a",
    payload: Buffer.from("x"),
    qos: 1,
    messageId: 1,
    dup: false,
    retain: false,
    properties: { messageExpiryInterval: 2 },
  });
  const first = await sub.next() as { cmd: string; messageId: number };
  assertEquals(first.cmd, "publish");
  sub.close(); // no PUBACK
  await until(() => h.server.connectionCount === 1, "subscriber gone");
  await clock.tickAsync(5_000);
  const again = await h.raw(5);
  const ack = await again.connect(persistent) as { sessionPresent: boolean };
  assertEquals(ack.sessionPresent, true);
  const resent = await again.next() as { cmd: string; messageId: number; dup: boolean };
  assertEquals([resent.cmd, resent.messageId, resent.dup], ["publish", first.messageId, true]);
});

Deno.test("[MQTT-3.2.2-19] a refusing CONNACK leaves out the Reason String when it would exceed the client's Maximum Packet Size", async () => {
  await using h = await startMqtt({ core: { anonymous: false } });
  const small = await h.raw(5);
  await small.send({
    cmd: "connect",
    protocolId: "MQTT",
    protocolVersion: 5,
    clientId: "mps",
    clean: true,
    keepalive: 0,
    properties: { maximumPacketSize: 16 },
  });
  const got = await small.waitClosed();
  assertEquals(codes(got), [["connack", 0x87]]);
  assertEquals((got[0] as { properties?: unknown }).properties, undefined);
  const big = await h.raw(5); // without the limit, the reason string is there
  const ack = await big.connect({ clientId: "mps2" }) as {
    properties?: { reasonString?: string };
  };
  assert(ack.properties?.reasonString);
});

Deno.test("[MQTT-3.3.4-9] in-flight messages resent on reconnect respect the new CONNECT's Receive Maximum", async () => {
  await using h = await startMqtt();
  const persistent = { clientId: "rmr", clean: false, properties: { sessionExpiryInterval: 60 } };
  const sub = await h.raw(5);
  await sub.connect(persistent);
  await sub.send({
    cmd: "subscribe",
    messageId: 1,
    subscriptions: [{ topic: "rmr/#", qos: 1, nl: false, rap: false, rh: 0 }],
  });
  assertEquals((await sub.next()).cmd, "suback");
  const pub = await h.raw(5);
  await pub.connect();
  for (let i = 1; i <= 3; i++) {
    await pub.send({
      cmd: "publish",
      topic: "rmr/a",
      payload: Buffer.from(`m${i}`),
      qos: 1,
      messageId: i,
      dup: false,
      retain: false,
    });
    assertEquals((await pub.next()).cmd, "puback");
  }
  const first = [];
  for (let i = 0; i < 3; i++) first.push(await sub.next() as { messageId: number });
  sub.close(); // none acknowledged
  await until(() => h.server.connectionCount === 1, "subscriber gone");
  const again = await h.raw(5);
  const ack = await again.connect({
    ...persistent,
    properties: { ...persistent.properties, receiveMaximum: 1 },
  });
  assertEquals((ack as { sessionPresent: boolean }).sessionPresent, true);
  type Pub = { cmd: string; messageId: number; dup: boolean; payload: Uint8Array };
  const seen: Array<[string, number, boolean, string]> = [];
  for (let i = 0; i < 3; i++) {
    const p = await again.next() as Pub;
    seen.push([p.cmd, p.messageId, p.dup, new TextDecoder().decode(p.payload)]);
    // Only one unacknowledged PUBLISH at a time: nothing more arrives before the PUBACK.
    await again.send({ cmd: "pingreq" }); // the PINGRESP comes after anything already sent

    assertEquals((await again.next()).cmd, "pingresp");
    assertEquals(again.pending.length, 0);
    await again.send({ cmd: "puback", messageId: p.messageId });
  }
  assertEquals(
    seen,
    first.map((f, i) =>
      ["publish", f.messageId, true, `m${i + 1}`] as [string, number, boolean, string]
    ),
  );
});

// ---- property values and repeats that mqtt-packet hides ----

/** A v5 CONNECT of client "x" (clean start, keepalive 0) with these property bytes. */
function connectWith(props: number[]): Uint8Array {
  return rawPacket(0x10, [
    ...mqttString("MQTT"),
    5,
    2,
    0,
    0,
    props.length,
    ...props,
    ...mqttString("x"),
  ]);
}

/** Sends `frame` as the first packet and returns what the server sent before closing. */
async function refusedConnect(frame: Uint8Array): Promise<Array<[string, number | undefined]>> {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.send(frame);
  return codes(await r.waitClosed());
}

for (
  const [name, props, code] of [
    ["Receive Maximum 0", [0x21, 0, 0], 0x82],
    ["Maximum Packet Size 0", [0x27, 0, 0, 0, 0], 0x82],
  ] as Array<[string, number[], number]>
) {
  Deno.test(`§3.1.2.11 a CONNECT with ${name} gets CONNACK 0x82 and is closed`, async () => {
    assertEquals(await refusedConnect(connectWith(props)), [["connack", code]]);
  });
}

for (
  const [name, props] of [
    ["Request Problem Information 2", [0x17, 2]],
    ["Request Response Information 2", [0x19, 2]],
    ["Session Expiry Interval 0 twice", [0x11, 0, 0, 0, 0, 0x11, 0, 0, 0, 0]],
    ["Request Problem Information 0 twice", [0x17, 0, 0x17, 0]],
    ["Receive Maximum 0, then 5", [0x21, 0, 0, 0x21, 0, 5]],
  ] as Array<[string, number[]]>
) {
  Deno.test(`§3.1.2.11 a CONNECT with ${name} is a Protocol Error and is closed`, async () => {
    const got = await refusedConnect(connectWith(props));
    // [MQTT-3.1.4-1] closed; a CONNACK, if any, carries an error code (MQTT 5 §3.1.4).
    assert(got.every(([cmd, rc]) => cmd === "connack" && rc! >= 0x80), JSON.stringify(got));
  });
}

Deno.test("§3.1.3.2 a will with Payload Format Indicator 2 is a Protocol Error and is closed", async () => {
  // CONNECT, will flag + clean start, client id "x", will properties: PFI 2, topic "w", payload "p"
  const got = await refusedConnect(
    rawPacket(0x10, [
      ...mqttString("MQTT"),
      5,
      0x06,
      0,
      0,
      0,
      ...mqttString("x"),
      2,
      0x01,
      2,
      ...mqttString("w"),
      ...mqttString("p"),
    ]),
  );
  assert(got.every(([cmd, rc]) => cmd === "connack" && rc! >= 0x80), JSON.stringify(got));
});

for (
  const [name, frame] of [
    // PUBLISH QoS 0 "a", properties: Payload Format Indicator 2
    [
      "PUBLISH with Payload Format Indicator 2",
      rawPacket(0x30, [...mqttString("a"), 2, 0x01, 2, 0x78]),
    ],
    // PUBLISH QoS 1 "a" id 1, properties: Message Expiry Interval twice
    [
      "PUBLISH with Message Expiry Interval twice",
      rawPacket(0x32, [...mqttString("a"), 0, 1, 10, 0x02, 0, 0, 0, 0, 0x02, 0, 0, 0, 9, 0x78]),
    ],
    // SUBSCRIBE id 1, properties: Subscription Identifier 1 twice; filter "a" QoS 0
    [
      "SUBSCRIBE with Subscription Identifier twice",
      rawPacket(0x82, [0, 1, 4, 0x0b, 1, 0x0b, 2, ...mqttString("a"), 0]),
    ],
    // PUBACK id 9, reason 0, properties: Reason String "" twice
    ["PUBACK with Reason String twice", rawPacket(0x40, [0, 9, 0, 6, 0x1f, 0, 0, 0x1f, 0, 0])],
    // DISCONNECT 0x00, properties: Session Expiry Interval 0 twice
    [
      "DISCONNECT with Session Expiry Interval twice",
      rawPacket(0xe0, [0, 10, 0x11, 0, 0, 0, 0, 0x11, 0, 0, 0, 0]),
    ],
  ] as Array<[string, Uint8Array]>
) {
  Deno.test(`§2.2.2.2 ${name} gets DISCONNECT 0x82`, async () => {
    await using h = await startMqtt();
    const r = await h.raw(5);
    await r.connect({ properties: { sessionExpiryInterval: 0 } });
    await r.send(frame);
    assertEquals(codes(await r.waitClosed()), [["disconnect", 0x82]]);
  });
}

Deno.test("§2.2.2.2 User Property may appear more than once (SUBSCRIBE, UNSUBSCRIBE)", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  const up = [0x26, ...mqttString("k"), ...mqttString("v")];
  await r.send(rawPacket(0x82, [0, 1, up.length * 2, ...up, ...up, ...mqttString("a"), 0]));
  assertEquals(codes([await r.next()]), [["suback", undefined]]);
  await r.send(rawPacket(0xa2, [0, 2, up.length * 2, ...up, ...up, ...mqttString("a")]));
  assertEquals((await r.next()).cmd, "unsuback");
});

// ---- issue #14 item 4: CONNECT fields and the client's Maximum Packet Size ----

const hexOf = (f: Uint8Array): string =>
  [...f].map((x) => x.toString(16).padStart(2, "0")).join(" ");

/** CONNECT "MQTT" 5 with `flags`, keepalive 0, properties `props`, client id `id`, then `tail`. */
function connect5(
  flags: number,
  id: string,
  props: number[] = [],
  tail: number[] = [],
): Uint8Array {
  return rawPacket(0x10, [
    ...mqttString("MQTT"),
    5,
    flags,
    0,
    0,
    props.length,
    ...props,
    ...mqttString(id),
    ...tail,
  ]);
}

Deno.test("[MQTT-3.1.2-16] a user name present with the User Name Flag 0 is malformed: closed without CONNACK", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.send(connect5(0x02, "un5", [], mqttString("user")));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-3.1.2-18] a password present with the Password Flag 0 is malformed: closed without CONNACK", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.send(connect5(0x82, "pf5", [], [...mqttString("u"), ...mqttString("p")]));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("[MQTT-3.1.2-24] a CONNACK larger than the client's Maximum Packet Size leaves out optional properties until it fits", async () => {
  await using h = await startMqtt(); // announces Receive Maximum, Topic Alias Maximum, Maximum Packet Size
  const r = await h.raw(5);
  // Maximum Packet Size 12: the full CONNACK is 16 bytes
  await r.send(connect5(0x02, "mps", [0x27, 0, 0, 0, 12]));
  await r.next();
  // Topic Alias Maximum and Receive Maximum left out; Maximum Packet Size (1 MiB) kept: 10 bytes
  assertEquals(hexOf(r.frames[0]), "20 08 00 00 05 27 00 10 00 00");
  await r.send(Uint8Array.from([0xc0, 0]));
  assertEquals((await r.next()).cmd, "pingresp");
});

Deno.test("[MQTT-3.1.2-24] a DISCONNECT whose Reason String would exceed the client's Maximum Packet Size goes out without it", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.send(connect5(0x02, "mpsd", [0x27, 0, 0, 0, 12]));
  await r.next();
  await r.send(Uint8Array.from([0xc0, 1, 0])); // PINGREQ with a body: malformed
  assertEquals(codes(await r.waitClosed()), [["disconnect", 0x81]]);
  const sent = r.frames[1];
  assert(sent.length <= 12, `DISCONNECT of ${sent.length} bytes: ${hexOf(sent)}`);
});

Deno.test("[MQTT-3.1.2-24] [MQTT-3.2.2-16] an assigned client id that cannot fit the client's Maximum Packet Size: CONNACK 0x85 without properties", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.send(connect5(0x02, "", [0x27, 0, 0, 0, 12]));
  await r.waitClosed();
  assertEquals(r.frames.map(hexOf), ["20 03 00 85 00"]);
});

Deno.test("[MQTT-3.1.2-24] a client whose Maximum Packet Size is below the 5 bytes of any CONNACK gets none", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.send(connect5(0x02, "tiny", [0x27, 0, 0, 0, 4]));
  assertEquals(await r.waitClosed(), []);
});

// ---- issue #14 item 6: wills ----

/** A raw v5 client subscribed to `topic` (QoS 0), for watching wills. */
async function watcher(h: MqttHarness, topic: string) {
  const sub = await h.raw(5);
  await sub.connect();
  await sub.send({
    cmd: "subscribe",
    messageId: 1,
    subscriptions: [{ topic, qos: 0, nl: false, rap: false, rh: 0 }],
  });
  await sub.next();
  return {
    /** Topics delivered so far (a PINGREQ round trip first, so nothing is still in flight). */
    async topics(): Promise<string[]> {
      await sub.send(Uint8Array.from([0xc0, 0]));
      const out: string[] = [];
      for (let p = await sub.next(); p.cmd !== "pingresp"; p = await sub.next()) {
        out.push((p as { topic: string }).topic);
      }
      return out;
    },
  };
}

for (const delay of [0, 30]) {
  Deno.test(`[MQTT-3.1.2-8] [MQTT-3.1.3-9] a takeover that resumes the session does not publish the will (Will Delay ${delay})`, async () => {
    const clock = new FakeClock(Date.now());
    await using h = await startMqtt({ core: { clock } });
    const w = await watcher(h, "rw/#");
    const first = await h.raw(5);
    await first.connect({
      clientId: `rw${delay}`,
      clean: false,
      properties: { sessionExpiryInterval: 600 },
      will: {
        topic: "rw/will",
        payload: "w" as never,
        qos: 0,
        retain: false,
        properties: delay ? { willDelayInterval: delay } : {},
      },
    });
    const second = await h.raw(5);
    const ack = await second.connect({
      clientId: `rw${delay}`,
      clean: false,
      properties: { sessionExpiryInterval: 600 },
    }) as IConnackPacket;
    assertEquals(ack.sessionPresent, true);
    assertEquals(codes(await first.waitClosed()), [["disconnect", 0x8e]]);
    // A new connection to the session came before the delay (0 included) had passed.
    await clock.tickAsync(delay * 1000 + 1000);
    assertEquals(await w.topics(), []);
  });
}

Deno.test("MQTT 5 §3.1.2.11.2 §3.1.3.2.2 a Will Delay with Session Expiry 0 is published when the connection closes (the session ends then), and a Clean Start reconnect does not publish it again", async () => {
  const clock = new FakeClock(Date.now());
  await using h = await startMqtt({ core: { clock } });
  const w = await watcher(h, "wd/#");
  const r = await h.raw(5);
  await r.connect({
    clientId: "wd0",
    will: {
      topic: "wd/will",
      payload: "w" as never,
      qos: 0,
      retain: false,
      properties: { willDelayInterval: 30 },
    },
  });
  r.close();
  await until(() => h.server.connectionCount === 1, "wd0 gone");
  assertEquals(await w.topics(), ["wd/will"]); // before any time passed
  const again = await h.raw(5);
  await again.connect({ clientId: "wd0", clean: true });
  await clock.tickAsync(31_000);
  assertEquals(await w.topics(), []);
});

// ---- issue #14 item 8: where the spec leaves a choice ----

Deno.test("§4.7.2 a v5 PUBLISH to a $ topic gets PUBACK 0x87 and is not delivered", async () => {
  await using h = await startMqtt();
  const w = await watcher(h, "$x/#");
  const r = await h.raw(5);
  await r.connect();
  await r.send(rawPacket(0x32, [...mqttString("$x/a"), 0, 1, 0, 0x6d]));
  await r.next();
  assertEquals(hexOf(r.frames[1]), "40 04 00 01 87 00");
  await r.send(rawPacket(0x32, [...mqttString("$SYS/x"), 0, 2, 0, 0x6d]));
  await r.next();
  assertEquals(hexOf(r.frames[2]), "40 04 00 02 87 00");
  assertEquals(await w.topics(), []);
});

Deno.test("§4.7.2 a v5 will to a $ topic ($CONTROL/…) gets CONNACK 0x87", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  const ack = await r.connect({
    clientId: "wc",
    will: { topic: "$CONTROL/x", payload: "w" as never, qos: 0, retain: false },
  });
  assertEquals(codes([ack]), [["connack", 0x87]]);
});

Deno.test("topic levels: a v5 PUBLISH to a topic of more than 201 levels gets DISCONNECT 0x90; a filter that deep gets SUBACK 0x8F", async () => {
  await using h = await startMqtt();
  const levels = (n: number) => Array.from({ length: n }, () => "a").join("/");
  const r = await h.raw(5);
  await r.connect();
  await r.send({
    cmd: "subscribe",
    messageId: 1,
    subscriptions: [{ topic: levels(202), qos: 0, nl: false, rap: false, rh: 0 }],
  });
  assertEquals((await r.next() as { granted: number[] }).granted, [0x8f]);
  await r.send(rawPacket(0x30, [...mqttString(levels(202)), 0, 0x6d]));
  assertEquals(codes(await r.waitClosed()), [["disconnect", 0x90]]);
});

Deno.test("§3.4.2.1 a QoS 1 PUBLISH nobody subscribes to gets PUBACK 0x00, not 0x10 (sinks and bridges receive it)", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  await r.send(rawPacket(0x32, [...mqttString("nobody/here"), 0, 1, 0, 0x6d]));
  await r.next();
  assertEquals(hexOf(r.frames[1]), "40 02 00 01");
});

Deno.test("§4.13 a packet only a server sends (CONNACK) from a v5 client gets DISCONNECT 0x82", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  await r.send(Uint8Array.from([0x20, 3, 0, 0, 0]));
  assertEquals(codes(await r.waitClosed()), [["disconnect", 0x82]]);
});

Deno.test("§4.6 retained messages reach a new subscriber in the order their topics were first retained", async () => {
  await using h = await startMqtt();
  const pub = await h.raw(5);
  await pub.connect();
  for (const [t, id] of [["ro/b/x", 1], ["ro/a", 2], ["ro/b/y", 3]] as const) {
    await pub.send(rawPacket(0x33, [...mqttString(t), 0, id, 0, 0x6d])); // QoS 1, RETAIN
    await pub.next();
  }
  const w = await watcher(h, "ro/#");
  assertEquals(await w.topics(), ["ro/b/x", "ro/a", "ro/b/y"]);
});
