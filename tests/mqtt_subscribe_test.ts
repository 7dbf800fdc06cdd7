import type { IPublishPacket } from "mqtt-packet";
import { assert, assertEquals } from "./_assert.ts";
import { Inbox, run, sleep, startMqtt } from "./_mqtt_harness.ts";
import { createMessage } from "../src/core/mod.ts";

Deno.test("+ and # filters match one level and the rest, including the parent level", async () => {
  await using h = await startMqtt();
  const sub = await h.client({ protocolVersion: 4 });
  const inbox = new Inbox(sub);
  await sub.subscribeAsync(["w/+/t", "h/#"], { qos: 0 });
  const pub = await h.client({ protocolVersion: 4 });
  for (const t of ["w/a/t", "w/a/b/t", "h", "h/x/y", "w/t"]) {
    await pub.publishAsync(t, t, { qos: 1 });
  }
  await pub.publishAsync("end", "end");
  await sub.subscribeAsync("end");
  await pub.publishAsync("end", "end");
  await inbox.waitFor(4);
  assertEquals(inbox.messages.map((m) => m.topic), ["w/a/t", "h", "h/x/y", "end"]);
});

Deno.test("$-topics are not matched by # or + at the first level", async () => {
  await using h = await startMqtt();
  const sub = await h.client({ protocolVersion: 5 });
  const inbox = new Inbox(sub);
  await sub.subscribeAsync(["#", "+/x"], { qos: 0 });
  const dollar = await h.client({ protocolVersion: 5 });
  const dInbox = new Inbox(dollar);
  await dollar.subscribeAsync("$app/#"); // ($SYS is the gateway's: anonymous clients stay out)
  const pub = await h.client({ protocolVersion: 5 });
  // `$` topics are the server's (a client may not publish to them, MQTT §4.7.2): the core's.
  const payload = new TextEncoder().encode("s");
  await h.core.publish(createMessage({ topic: "$app/x", payload, protocol: "system" }));
  await pub.publishAsync("plain/x", "p", { qos: 1 });
  await dInbox.waitFor(1);
  await inbox.waitFor(1);
  await sleep(20);
  const seen = inbox.messages.map((m) => m.topic).filter((t) => !t.startsWith("devices/"));
  assertEquals(seen, ["plain/x"]); // [MQTT-4.7.2-1] (presence topics of the clients filtered out)
  assertEquals(dInbox.messages.map((m) => m.topic), ["$app/x"]);
});

Deno.test("overlapping subscriptions deliver one copy at the highest granted QoS", async () => {
  await using h = await startMqtt();
  const sub = await h.client({ protocolVersion: 4 });
  const inbox = new Inbox(sub);
  await sub.subscribeAsync({ "ov/#": { qos: 0 }, "ov/+": { qos: 1 }, "ov/a": { qos: 2 } });
  const pub = await h.client({ protocolVersion: 4 });
  await pub.publishAsync("ov/a", "x", { qos: 2 });
  await inbox.waitFor(1);
  await sleep(30);
  assertEquals(inbox.messages.length, 1);
  assertEquals(inbox.messages[0].packet.qos, 2);
});

Deno.test("a retained message is delivered on subscribe with RETAIN set and cleared by an empty payload", async () => {
  await using h = await startMqtt();
  const pub = await h.client({ protocolVersion: 4 });
  await pub.publishAsync("ret/a", "kept", { qos: 1, retain: true });
  const s1 = await h.client({ protocolVersion: 4 });
  const i1 = new Inbox(s1);
  await s1.subscribeAsync("ret/+", { qos: 1 });
  await i1.waitFor(1);
  assertEquals([i1.messages[0].payload, i1.messages[0].packet.retain], ["kept", true]); // [MQTT-3.3.1-8]
  // live delivery to an established subscription has RETAIN 0 in 3.1.1 ([MQTT-3.3.1-9])
  await pub.publishAsync("ret/a", "live", { qos: 1, retain: true });
  await i1.waitFor(2);
  assertEquals([i1.messages[1].payload, i1.messages[1].packet.retain], ["live", false]);
  await pub.publishAsync("ret/a", "", { qos: 1, retain: true }); // [MQTT-3.3.1-10]
  await i1.waitFor(3);
  const s2 = await h.client({ protocolVersion: 4 });
  const i2 = new Inbox(s2);
  await s2.subscribeAsync("ret/+", { qos: 1 });
  await sleep(50);
  assertEquals(i2.messages.length, 0);
});

Deno.test("mosquitto_sub receives a retained message with -R unset and retained flag shown", async () => {
  await using h = await startMqtt();
  const pub = await h.client({ protocolVersion: 4 });
  await pub.publishAsync("mr/t", "r1", { qos: 1, retain: true });
  const r = await run("mosquitto_sub", [
    "-h",
    "127.0.0.1",
    "-p",
    String(h.port),
    "-t",
    "mr/#",
    "-C",
    "1",
    "-F",
    "%t %p %r",
    "-W",
    "3",
  ]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.stdout.trim(), "mr/t r1 1");
});

Deno.test("UNSUBSCRIBE stops delivery and is acknowledged", async () => {
  await using h = await startMqtt();
  const sub = await h.client({ protocolVersion: 5 });
  const inbox = new Inbox(sub);
  await sub.subscribeAsync("u/1");
  await sub.unsubscribeAsync("u/1");
  await sub.subscribeAsync("u/2");
  const pub = await h.client({ protocolVersion: 5 });
  await pub.publishAsync("u/1", "no", { qos: 1 });
  await pub.publishAsync("u/2", "yes", { qos: 1 });
  await inbox.waitFor(1);
  assertEquals(inbox.messages.map((m) => m.topic), ["u/2"]);
});

Deno.test("[MQTT-4.7.1-2] [MQTT-4.8.0-1] a malformed filter closes the connection: 3.1.1 without SUBACK, v5 with DISCONNECT 0x81", async () => {
  await using h = await startMqtt();
  const r4 = await h.raw(4);
  await r4.connect();
  await r4.send({
    cmd: "subscribe",
    messageId: 3,
    subscriptions: [{ topic: "ok", qos: 2 }, { topic: "a/#/b", qos: 1 }],
  });
  assertEquals((await r4.waitClosed()).map((p) => p.cmd), []);
  const r5 = await h.raw(5);
  await r5.connect();
  await r5.send({
    cmd: "subscribe",
    messageId: 4,
    subscriptions: [{ topic: "x+", qos: 0 }, { topic: "ok", qos: 1 }],
  });
  const got = await r5.waitClosed();
  assertEquals(got.map((p) => [p.cmd, (p as { reasonCode?: number }).reasonCode]), [[
    "disconnect",
    0x81,
  ]]);
});

Deno.test("3.1.1: an empty topic filter in SUBSCRIBE closes the connection [MQTT-4.7.3-1]", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  // SUBSCRIBE id 5, filter "" QoS 0 (mqtt-packet would not encode it)
  await r.send(Uint8Array.from([0x82, 5, 0, 5, 0, 0, 0]));
  assertEquals(await r.waitClosed(), []);
});

Deno.test("UNSUBACK v5 reports 0x11 for a filter that had no subscription", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  await r.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "a", qos: 0 }] });
  await r.next();
  await r.send({ cmd: "unsubscribe", messageId: 2, unsubscriptions: ["a", "b"] });
  const u = await r.next() as { cmd: string; granted: number[] };
  assertEquals([u.cmd, u.granted], ["unsuback", [0, 0x11]]);
});

Deno.test("SUBSCRIBE with wrong fixed-header flags closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect();
  // SUBSCRIBE with flags 0 instead of 2 ([MQTT-3.8.1-1])
  await r.send(new Uint8Array([0x80, 6, 0, 1, 0, 1, 0x61, 0]));
  await r.waitClosed();
  assert(r.closed);
});

Deno.test("a resubscribe replaces the subscription and resends retained messages", async () => {
  await using h = await startMqtt();
  const pub = await h.client({ protocolVersion: 4 });
  await pub.publishAsync("rs/a", "v", { qos: 1, retain: true });
  const r = await h.raw(4);
  await r.connect();
  await r.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "rs/a", qos: 0 }] });
  assertEquals((await r.next()).cmd, "suback");
  assertEquals((await r.next() as IPublishPacket).qos, 0);
  await r.send({ cmd: "subscribe", messageId: 2, subscriptions: [{ topic: "rs/a", qos: 1 }] });
  assertEquals((await r.next()).cmd, "suback");
  const again = await r.next() as IPublishPacket;
  assertEquals([again.qos, again.retain], [1, true]); // [MQTT-3.8.4-3]
});
