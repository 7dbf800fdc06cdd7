import type { IPublishPacket } from "mqtt-packet";
import { Buffer } from "node:buffer";
import { FakeClock } from "../src/core/mod.ts";
import { assert, assertEquals } from "./_assert.ts";
import { Inbox, sleep, startMqtt } from "./_mqtt_harness.ts";
import { waitFor } from "./_harness.ts";

type WithCode = { cmd: string; reasonCode?: number };

Deno.test("v5 PUBLISH properties travel end to end between MQTT.js clients", async () => {
  await using h = await startMqtt();
  const sub = await h.client({ protocolVersion: 5 });
  const inbox = new Inbox(sub);
  await sub.subscribeAsync("props/x", { qos: 1 });
  const pub = await h.client({ protocolVersion: 5 });
  await pub.publishAsync("props/x", "{}", {
    qos: 1,
    properties: {
      userProperties: { a: "1", b: ["2", "3"] },
      contentType: "application/json",
      responseTopic: "props/reply",
      correlationData: Buffer.from([1, 2, 3]),
      payloadFormatIndicator: true,
      messageExpiryInterval: 60,
    },
  });
  await inbox.waitFor(1);
  const p = inbox.messages[0].packet.properties!;
  assertEquals(p.userProperties, { a: "1", b: ["2", "3"] });
  assertEquals(p.contentType, "application/json");
  assertEquals(p.responseTopic, "props/reply");
  assertEquals([...p.correlationData!], [1, 2, 3]);
  assertEquals(p.payloadFormatIndicator, true);
  assert(p.messageExpiryInterval! <= 60 && p.messageExpiryInterval! >= 59);
});

Deno.test("v5 inbound topic alias: set with a topic, then used with an empty topic", async () => {
  await using h = await startMqtt();
  const seen: string[] = [];
  h.core.subscribe("ta/#", { id: "probe", deliver: (m) => seen.push(m.topic) });
  const r = await h.raw(5);
  await r.connect();
  await r.send({
    cmd: "publish",
    topic: "ta/1",
    payload: "a",
    qos: 1,
    messageId: 1,
    dup: false,
    retain: false,
    properties: { topicAlias: 1 },
  });
  await r.next();
  await r.send({
    cmd: "publish",
    topic: "",
    payload: "b",
    qos: 1,
    messageId: 2,
    dup: false,
    retain: false,
    properties: { topicAlias: 1 },
  });
  await r.next();
  assertEquals(seen, ["ta/1", "ta/1"]);
});

Deno.test("v5 topic alias above Topic Alias Maximum gets DISCONNECT 0x94", async () => {
  await using h = await startMqtt({ server: { maxTopicAlias: 2 } });
  const r = await h.raw(5);
  const ack = await r.connect() as { properties?: { topicAliasMaximum?: number } };
  assertEquals(ack.properties?.topicAliasMaximum, 2);
  await r.send({
    cmd: "publish",
    topic: "t",
    payload: "a",
    qos: 0,
    dup: false,
    retain: false,
    properties: { topicAlias: 3 },
  });
  const got = await r.waitClosed() as WithCode[];
  assertEquals(got.map((p) => [p.cmd, p.reasonCode]), [["disconnect", 0x94]]);
});

Deno.test("v5 outbound topic aliases are assigned up to the client's Topic Alias Maximum", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect({ properties: { topicAliasMaximum: 1 } });
  await r.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "oa/+", qos: 0 }] });
  await r.next();
  const pub = await h.client({ protocolVersion: 5 });
  for (const t of ["oa/1", "oa/1", "oa/2"]) await pub.publishAsync(t, "x", { qos: 1 });
  const ps = [await r.next(), await r.next(), await r.next()] as IPublishPacket[];
  assertEquals(ps.map((p) => [p.topic, p.properties?.topicAlias]), [["oa/1", 1], ["", 1], [
    "oa/2",
    undefined,
  ]]);
});

Deno.test("MQTT.js v5 with topic aliases on both sides publishes and receives", async () => {
  await using h = await startMqtt();
  const sub = await h.client({ protocolVersion: 5, properties: { topicAliasMaximum: 10 } });
  const inbox = new Inbox(sub);
  await sub.subscribeAsync("tb/#", { qos: 1 });
  const pub = await h.client({ protocolVersion: 5, autoUseTopicAlias: true } as never);
  for (let i = 0; i < 3; i++) await pub.publishAsync("tb/x", String(i), { qos: 1 });
  await inbox.waitFor(3);
  assertEquals(inbox.messages.map((m) => [m.topic, m.payload]), [["tb/x", "0"], ["tb/x", "1"], [
    "tb/x",
    "2",
  ]]);
});

Deno.test("the client's Receive Maximum bounds unacknowledged QoS 1 deliveries", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect({ properties: { receiveMaximum: 2 } });
  await r.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "rm", qos: 1 }] });
  await r.next();
  const pub = await h.client({ protocolVersion: 5 });
  for (let i = 0; i < 4; i++) await pub.publishAsync("rm", String(i), { qos: 1 });
  const a = await r.next() as IPublishPacket;
  await r.next();
  await sleep(30);
  assertEquals(r.pending.length, 0); // [MQTT-3.3.4-9]
  await r.send({ cmd: "puback", messageId: a.messageId });
  const c = await r.next() as IPublishPacket;
  assertEquals(String(c.payload), "2");
});

Deno.test("a message larger than the client's Maximum Packet Size is not sent to it", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect({ properties: { maximumPacketSize: 64 } });
  await r.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "mp", qos: 1 }] });
  await r.next();
  const pub = await h.client({ protocolVersion: 5 });
  await pub.publishAsync("mp", "x".repeat(200), { qos: 1 });
  await pub.publishAsync("mp", "small", { qos: 1 });
  const p = await r.next() as IPublishPacket;
  assertEquals(String(p.payload), "small"); // [MQTT-3.1.2-25]
});

Deno.test("message expiry: an expired queued message is dropped and the interval counts down", async () => {
  const clock = new FakeClock(Date.now());
  await using h = await startMqtt({ core: { clock } });
  const r = await h.raw(5);
  await r.connect({ clientId: "mx", clean: false, properties: { sessionExpiryInterval: 100 } });
  await r.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "mx/#", qos: 1 }] });
  await r.next();
  r.close();
  await waitFor(() => h.server.connectionCount === 0, "the connection gone", 20_000);
  const pub = await h.raw(5);
  await pub.connect();
  const send = (t: string, s: number, id: number) =>
    pub.send({
      cmd: "publish",
      topic: t,
      payload: "x",
      qos: 1,
      messageId: id,
      dup: false,
      retain: false,
      properties: { messageExpiryInterval: s },
    });
  await send("mx/short", 2, 1);
  await send("mx/long", 10, 2);
  await pub.next();
  await pub.next();
  await clock.tickAsync(3000);
  const back = await h.raw(5);
  await back.connect({ clientId: "mx", clean: false, properties: { sessionExpiryInterval: 100 } });
  const p = await back.next() as IPublishPacket;
  assertEquals([p.topic, p.properties?.messageExpiryInterval], ["mx/long", 7]); // [MQTT-3.3.2-6]
  await sleep(20);
  assertEquals(back.pending.length, 0);
});

Deno.test("subscription option No Local: a client does not get its own messages", async () => {
  await using h = await startMqtt();
  const me = await h.client({ protocolVersion: 5 });
  const inbox = new Inbox(me);
  await me.subscribeAsync("nl", { qos: 1, nl: true });
  await me.publishAsync("nl", "mine", { qos: 1 });
  const other = await h.client({ protocolVersion: 5 });
  await other.publishAsync("nl", "theirs", { qos: 1 });
  await inbox.waitFor(1);
  await sleep(20);
  assertEquals(inbox.messages.map((m) => m.payload), ["theirs"]);
});

Deno.test("subscription option Retain As Published keeps RETAIN on live delivery", async () => {
  await using h = await startMqtt();
  const sub = await h.client({ protocolVersion: 5 });
  const inbox = new Inbox(sub);
  await sub.subscribeAsync("rap/a", { qos: 1, rap: true });
  await sub.subscribeAsync("rap/b", { qos: 1, rap: false });
  const pub = await h.client({ protocolVersion: 5 });
  await pub.publishAsync("rap/a", "1", { qos: 1, retain: true });
  await pub.publishAsync("rap/b", "2", { qos: 1, retain: true });
  await inbox.waitFor(2);
  assertEquals(inbox.messages.map((m) => [m.topic, m.packet.retain]), [["rap/a", true], [
    "rap/b",
    false,
  ]]);
});

Deno.test("subscription option Retain Handling 1 sends retained only for a new subscription, 2 never", async () => {
  await using h = await startMqtt();
  const pub = await h.client({ protocolVersion: 5 });
  await pub.publishAsync("rh/x", "r", { qos: 1, retain: true });
  const r = await h.raw(5);
  await r.connect();
  const sub = (id: number, rh: number) =>
    r.send({
      cmd: "subscribe",
      messageId: id,
      subscriptions: [{ topic: "rh/x", qos: 1, rh } as never],
    });
  await sub(1, 2);
  assertEquals((await r.next()).cmd, "suback");
  await sleep(20);
  assertEquals(r.pending.length, 0);
  await r.send({ cmd: "unsubscribe", messageId: 2, unsubscriptions: ["rh/x"] });
  await r.next();
  await sub(3, 1);
  assertEquals((await r.next()).cmd, "suback");
  assertEquals((await r.next()).cmd, "publish");
  await sub(4, 1);
  assertEquals((await r.next()).cmd, "suback");
  await sleep(20);
  assertEquals(r.pending.length, 0);
});

Deno.test("subscription identifiers of every matching subscription are sent with the message", async () => {
  await using h = await startMqtt();
  const sub = await h.client({ protocolVersion: 5 });
  const inbox = new Inbox(sub);
  await sub.subscribeAsync("si/+", { qos: 1, properties: { subscriptionIdentifier: 7 } });
  await sub.subscribeAsync("si/#", { qos: 1, properties: { subscriptionIdentifier: 9 } });
  const pub = await h.client({ protocolVersion: 5 });
  await pub.publishAsync("si/a", "x", { qos: 1 });
  await inbox.waitFor(1);
  const ids = inbox.messages[0].packet.properties?.subscriptionIdentifier;
  assertEquals(([] as number[]).concat(ids as number | number[]).sort(), [7, 9]);
});

Deno.test("shared subscriptions deliver each message to one member of the group", async () => {
  await using h = await startMqtt();
  const a = await h.client({ protocolVersion: 5 });
  const b = await h.client({ protocolVersion: 5 });
  const ia = new Inbox(a);
  const ib = new Inbox(b);
  await a.subscribeAsync("$share/g/sh/#", { qos: 1 });
  await b.subscribeAsync("$share/g/sh/#", { qos: 1 });
  const pub = await h.client({ protocolVersion: 5 });
  for (let i = 0; i < 10; i++) await pub.publishAsync("sh/x", String(i), { qos: 1 });
  await waitFor(() => ia.messages.length + ib.messages.length >= 10, "ten deliveries", 20_000);
  await sleep(20);
  assertEquals(ia.messages.length + ib.messages.length, 10);
  assertEquals([ia.messages.length, ib.messages.length], [5, 5]);
});

Deno.test("server shutdown sends v5 clients DISCONNECT 0x8B", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  await h.server.close();
  const got = await r.waitClosed() as WithCode[];
  assertEquals(got.map((p) => [p.cmd, p.reasonCode]), [["disconnect", 0x8b]]);
});

Deno.test("a refused v5 CONNECT carries a reason string", async () => {
  await using h = await startMqtt({ core: { anonymous: false } });
  const r = await h.raw(5);
  const ack = await r.connect() as { reasonCode: number; properties?: { reasonString?: string } };
  assertEquals(ack.reasonCode, 0x87);
  assert(ack.properties?.reasonString?.includes("anonymous"));
});

Deno.test("a malformed packet gets v5 DISCONNECT 0x81 and leaves other sessions untouched", async () => {
  await using h = await startMqtt();
  const good = await h.client({ protocolVersion: 5 });
  const inbox = new Inbox(good);
  await good.subscribeAsync("ok", { qos: 1 });
  const r = await h.raw(5);
  await r.connect();
  // PUBLISH QoS 3 (both QoS bits set) is malformed ([MQTT-3.3.1-4])
  await r.send(new Uint8Array([0x36, 5, 0, 1, 0x61, 0, 1]));
  const got = await r.waitClosed() as WithCode[];
  assertEquals(got.map((p) => [p.cmd, p.reasonCode]), [["disconnect", 0x81]]);
  await good.publishAsync("ok", "still", { qos: 1 });
  await inbox.waitFor(1);
  assert(h.logs.some((l) => l.includes("closing connection")));
});

Deno.test("a packet above the server's maximum size gets v5 DISCONNECT 0x95", async () => {
  await using h = await startMqtt({ server: { maxPacketSize: 1024 } });
  const r = await h.raw(5);
  const ack = await r.connect() as { properties?: { maximumPacketSize?: number } };
  assertEquals(ack.properties?.maximumPacketSize, 1024);
  await r.send({
    cmd: "publish",
    topic: "big",
    payload: "x".repeat(2000),
    qos: 0,
    dup: false,
    retain: false,
  });
  const got = await r.waitClosed() as WithCode[];
  assertEquals(got.map((p) => [p.cmd, p.reasonCode]), [["disconnect", 0x95]]);
});

Deno.test("more unreleased QoS 2 PUBLISHes than Receive Maximum get DISCONNECT 0x93", async () => {
  await using h = await startMqtt({ server: { receiveMaximum: 2 } });
  const r = await h.raw(5);
  await r.connect();
  for (const id of [1, 2, 3]) {
    await r.send({
      cmd: "publish",
      topic: "q2",
      payload: "x",
      qos: 2,
      messageId: id,
      dup: false,
      retain: false,
    });
  }
  const got = await r.waitClosed() as WithCode[];
  assertEquals(got.map((p) => [p.cmd, p.reasonCode ?? 0]), [["pubrec", 0], ["pubrec", 0], [
    "disconnect",
    0x93,
  ]]);
});

Deno.test("a payload that is not UTF-8 despite Payload Format Indicator 1 gets PUBACK 0x99", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  await r.send({
    cmd: "publish",
    topic: "pf",
    payload: Buffer.from([0xff, 0xfe]),
    qos: 1,
    messageId: 5,
    dup: false,
    retain: false,
    properties: { payloadFormatIndicator: true },
  });
  const ack = await r.next() as WithCode;
  assertEquals([ack.cmd, ack.reasonCode], ["puback", 0x99]);
});

Deno.test("mosquitto_pub v5 properties reach mosquitto_sub unchanged", async () => {
  const { run, within } = await import("./_mqtt_harness.ts");
  await using h = await startMqtt();
  const port = String(h.port);
  const child = new Deno.Command("mosquitto_sub", {
    args: ["-p", port, "-V", "mqttv5", "-t", "pp/#", "-C", "1", "-F", "%t %p %P %C", "-W", "5"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = child.output();
  await waitFor(() => h.core.router.size > 0, "the subscription", 20_000);
  const pub = await run("mosquitto_pub", [
    "-p",
    port,
    "-V",
    "mqttv5",
    "-t",
    "pp/x",
    "-m",
    "hello",
    "-q",
    "1",
    "-D",
    "publish",
    "user-property",
    "k",
    "v",
    "-D",
    "publish",
    "content-type",
    "text/plain",
  ]);
  assertEquals(pub.code, 0, pub.stderr);
  const out = await within(output, 6000, "mosquitto_sub");
  assertEquals(new TextDecoder().decode(out.stdout).trim(), "pp/x hello k:v text/plain");
});
