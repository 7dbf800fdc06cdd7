import type { IPublishPacket } from "mqtt-packet";
import mqttPacket from "mqtt-packet";
import { Buffer } from "node:buffer";
import { assert, assertEquals } from "./_assert.ts";
import { Inbox, run, sleep, startMqtt, within } from "./_mqtt_harness.ts";
import { waitFor } from "./_harness.ts";

for (const version of [4, 5] as const) {
  Deno.test(`MQTT.js v${version} publishes QoS 0, 1 and 2 and a QoS 2 subscriber receives each at its QoS`, async () => {
    await using h = await startMqtt();
    const sub = await h.client({ protocolVersion: version, clientId: `sub${version}` });
    const inbox = new Inbox(sub);
    await sub.subscribeAsync("q/#", { qos: 2 });
    const pub = await h.client({ protocolVersion: version, clientId: `pub${version}` });
    for (const qos of [0, 1, 2] as const) await pub.publishAsync(`q/${qos}`, `m${qos}`, { qos });
    await inbox.waitFor(3);
    const got = inbox.messages.map((m) => [m.topic, m.payload, m.packet.qos]);
    assertEquals(got, [["q/0", "m0", 0], ["q/1", "m1", 1], ["q/2", "m2", 2]]);
  });
}

Deno.test("a QoS 1 subscription downgrades a QoS 2 publish to QoS 1", async () => {
  await using h = await startMqtt();
  const sub = await h.client({ protocolVersion: 4 });
  const inbox = new Inbox(sub);
  const granted = await sub.subscribeAsync("d/x", { qos: 1 });
  assertEquals(granted[0].qos, 1);
  const pub = await h.client({ protocolVersion: 4 });
  await pub.publishAsync("d/x", "two", { qos: 2 });
  await inbox.waitFor(1);
  assertEquals(inbox.messages[0].packet.qos, 1);
});

Deno.test("QoS 2 inbound: PUBREC, a resent PUBLISH is not delivered twice, PUBREL gets PUBCOMP", async () => {
  await using h = await startMqtt();
  const seen: string[] = [];
  h.core.subscribe("x/#", { id: "probe", deliver: (m) => seen.push(m.topic) });
  const r = await h.raw(4);
  await r.connect({ clientId: "q2" });
  const pub: IPublishPacket = {
    cmd: "publish",
    topic: "x/1",
    payload: "p",
    qos: 2,
    messageId: 7,
    dup: false,
    retain: false,
  };
  await r.send(pub);
  const rec = await r.next();
  assertEquals([rec.cmd, (rec as { messageId: number }).messageId], ["pubrec", 7]);
  await r.send({ ...pub, dup: true });
  assertEquals((await r.next()).cmd, "pubrec");
  await r.send({ cmd: "pubrel", messageId: 7 });
  const comp = await r.next();
  assertEquals([comp.cmd, (comp as { messageId: number }).messageId], ["pubcomp", 7]);
  await sleep(20);
  assertEquals(seen, ["x/1"]); // [MQTT-4.3.3-10] delivered once
});

Deno.test("QoS 2 outbound: the server sends PUBREL after PUBREC and completes on PUBCOMP", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect({ clientId: "q2out" });
  await r.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "o/#", qos: 2 }] });
  assertEquals((await r.next()).cmd, "suback");
  const pub = await h.client({ protocolVersion: 4 });
  await pub.publishAsync("o/1", "x", { qos: 2 });
  const p = await r.next() as IPublishPacket;
  assertEquals([p.cmd, p.qos, p.dup], ["publish", 2, false]);
  await r.send({ cmd: "pubrec", messageId: p.messageId });
  const rel = await r.next();
  assertEquals([rel.cmd, (rel as { messageId: number }).messageId], ["pubrel", p.messageId]);
  await r.send({ cmd: "pubcomp", messageId: p.messageId });
  await sleep(10);
  assert(!r.closed);
});

Deno.test("unacknowledged QoS 1 messages are resent with DUP and the same packet id on reconnect", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect({ clientId: "dup", clean: false });
  await r.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "r/#", qos: 1 }] });
  await r.next();
  const pub = await h.client({ protocolVersion: 4 });
  await pub.publishAsync("r/1", "a", { qos: 1 });
  const first = await r.next() as IPublishPacket;
  assertEquals(first.dup, false);
  r.close(); // no PUBACK
  await waitFor(() => h.server.connectionCount <= 1, "the first connection gone", 20_000);
  const r2 = await h.raw(4);
  const ack = await r2.connect({ clientId: "dup", clean: false }) as { sessionPresent: boolean };
  assertEquals(ack.sessionPresent, true);
  const again = await r2.next() as IPublishPacket;
  assertEquals([again.topic, again.dup, again.messageId], ["r/1", true, first.messageId]);
  await r2.send({ cmd: "puback", messageId: again.messageId });
});

Deno.test("QoS 1 messages arrive in publish order", async () => {
  await using h = await startMqtt({ server: { maxInflight: 4 } });
  const sub = await h.client({ protocolVersion: 4 });
  const inbox = new Inbox(sub);
  await sub.subscribeAsync("ord", { qos: 1 });
  const pub = await h.client({ protocolVersion: 4 });
  await Promise.all(
    Array.from({ length: 200 }, (_, i) => pub.publishAsync("ord", String(i), { qos: 1 })),
  );
  await inbox.waitFor(200, 5000);
  assertEquals(
    inbox.messages.map((m) => Number(m.payload)),
    Array.from({ length: 200 }, (_, i) => i),
  );
});

Deno.test("mosquitto_pub publishes QoS 0, 1 and 2 to an MQTT.js subscriber", async () => {
  await using h = await startMqtt();
  const sub = await h.client({ protocolVersion: 5 });
  const inbox = new Inbox(sub);
  await sub.subscribeAsync("mp/#", { qos: 2 });
  for (const q of ["0", "1", "2"]) {
    const r = await run("mosquitto_pub", [
      "-h",
      "127.0.0.1",
      "-p",
      String(h.port),
      "-q",
      q,
      "-t",
      `mp/${q}`,
      "-m",
      `v${q}`,
    ]);
    assertEquals(r.code, 0, r.stderr);
  }
  await inbox.waitFor(3);
  assertEquals(inbox.messages.map((m) => [m.topic, m.payload, m.packet.qos]), [["mp/0", "v0", 0], [
    "mp/1",
    "v1",
    1,
  ], ["mp/2", "v2", 2]]);
});

for (const v of ["mqttv311", "mqttv5"]) {
  Deno.test(`mosquitto_sub (${v}) receives QoS 2 messages from MQTT.js`, async () => {
    await using h = await startMqtt();
    const child = new Deno.Command("mosquitto_sub", {
      args: [
        "-h",
        "127.0.0.1",
        "-p",
        String(h.port),
        "-V",
        v,
        "-q",
        "2",
        "-t",
        "ms/#",
        "-C",
        "3",
        "-v",
        "-W",
        "5",
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const pub = await h.client({ protocolVersion: 4 });
    const output = child.output();
    // wait for the subscription to exist, then publish
    await waitFor(() => h.core.router.size > 0, "the subscription", 20_000);
    for (let i = 0; i < 3; i++) await pub.publishAsync(`ms/${i}`, `x${i}`, { qos: 2 });
    const out = await within(output, 6000, "mosquitto_sub");
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    assertEquals(new TextDecoder().decode(out.stdout).trim().split("\n"), [
      "ms/0 x0",
      "ms/1 x1",
      "ms/2 x2",
    ]);
  });
}

Deno.test("PUBREL for an unknown packet id still gets PUBCOMP (v5: reason 0x92)", async () => {
  await using h = await startMqtt();
  const r4 = await h.raw(4);
  await r4.connect();
  await r4.send({ cmd: "pubrel", messageId: 99 });
  const c4 = await r4.next() as { cmd: string; messageId: number };
  assertEquals([c4.cmd, c4.messageId], ["pubcomp", 99]);
  const r5 = await h.raw(5);
  await r5.connect();
  await r5.send({ cmd: "pubrel", messageId: 98 });
  const c5 = await r5.next() as { cmd: string; reasonCode?: number };
  assertEquals([c5.cmd, c5.reasonCode], ["pubcomp", 0x92]);
});

Deno.test("a 3.1.1 PUBLISH the ACL refuses is acknowledged and dropped", async () => {
  await using h = await startMqtt({
    core: { anonymous: false, devices: [{ id: "d1", token: "t" }] },
  });
  const seen: string[] = [];
  h.core.subscribe("#", { id: "probe", deliver: (m) => seen.push(m.topic) });
  const r = await h.raw(4);
  await r.connect({ clientId: "d1", username: "d1", password: "t" as never });
  await r.send({
    cmd: "publish",
    topic: "elsewhere",
    payload: "x",
    qos: 1,
    messageId: 4,
    dup: false,
    retain: false,
  });
  const ack = await r.next() as { cmd: string; messageId: number };
  assertEquals([ack.cmd, ack.messageId], ["puback", 4]);
  await sleep(20);
  assertEquals(seen.filter((t) => t === "elsewhere"), []);
  assertEquals(h.core.stats.drops.get({ protocol: "mqtt", reason: "not_authorized" }), 1);
});

Deno.test("a PUBLISH with a wildcard in its topic closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  await r.send({ cmd: "publish", topic: "a/+", payload: "x", qos: 0, dup: false, retain: false });
  const got = await r.waitClosed() as Array<{ cmd: string; reasonCode?: number }>;
  assertEquals(got.map((p) => [p.cmd, p.reasonCode]), [["disconnect", 0x90]]); // [MQTT-3.3.2-2]
});

Deno.test("an unacknowledged PUBREL is resent on reconnect of a persistent session", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect({ clientId: "rel", clean: false });
  await r.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "rel", qos: 2 }] });
  await r.next();
  const pub = await h.client({ protocolVersion: 4 });
  await pub.publishAsync("rel", "x", { qos: 2 });
  const p = await r.next() as IPublishPacket;
  await r.send({ cmd: "pubrec", messageId: p.messageId });
  assertEquals((await r.next()).cmd, "pubrel");
  r.close(); // no PUBCOMP
  await waitFor(() => h.server.connectionCount <= 1, "the first connection gone", 20_000);
  const r2 = await h.raw(4);
  await r2.connect({ clientId: "rel", clean: false });
  const again = await r2.next() as { cmd: string; messageId: number };
  assertEquals([again.cmd, again.messageId], ["pubrel", p.messageId]); // [MQTT-4.4.0-1]
  await r2.send({ cmd: "pubcomp", messageId: p.messageId });
});

Deno.test("a v5 PUBLISH with an empty topic and no topic alias gets DISCONNECT 0x82", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect();
  // PUBLISH QoS 0, topic "", no properties, payload "x"
  await r.send(new Uint8Array([0x30, 4, 0, 0, 0, 0x78]));
  const got = await r.waitClosed() as Array<{ cmd: string; reasonCode?: number }>;
  assertEquals(got.map((p) => [p.cmd, p.reasonCode]), [["disconnect", 0x82]]);
});

Deno.test("a retained message and a message queued for an offline session own their payload bytes (they do not pin the socket read they arrived in)", async () => {
  await using h = await startMqtt();
  // A persistent QoS 1 subscriber, then offline: its messages are queued.
  const sub = await h.raw(4);
  await sub.connect({ clientId: "keeper", clean: false });
  await sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "pin/#", qos: 1 }] });
  assertEquals((await sub.next()).cmd, "suback");
  await sub.send({ cmd: "disconnect" });
  await sub.waitClosed();

  const pub = await h.raw(4);
  await pub.connect();
  // One write of 200 publishes: the server reads them in one large read.
  const frames = Array.from({ length: 200 }, (_, i) =>
    mqttPacket.generate({
      cmd: "publish",
      topic: i === 100 ? "kept/retained" : "pin/other", // the retained one has no subscriber
      payload: Buffer.alloc(64, i),
      qos: 1,
      messageId: i + 1,
      retain: i === 100,
      dup: false,
    }));
  await pub.send(Buffer.concat(frames));
  for (let i = 0; i < 200; i++) assertEquals((await pub.next()).cmd, "puback");

  const kept = h.core.retained.get("kept/retained");
  assert(kept, "retained message not stored");
  assertEquals(kept.payload, new Uint8Array(64).fill(100));
  assert(kept.payload.buffer.byteLength < 1024, `pins ${kept.payload.buffer.byteLength} bytes`);

  // The queued messages come back intact on resume.
  const again = await h.raw(4);
  const ack = await again.connect({ clientId: "keeper", clean: false }) as {
    sessionPresent?: boolean;
  };
  assert(ack.sessionPresent);
  for (let i = 0; i < 200; i++) {
    if (i === 100) continue; // (the retained one went to no subscriber)
    const p = await again.next() as IPublishPacket;
    assertEquals(p.cmd, "publish");
    assertEquals([...(p.payload as Uint8Array)], new Array(64).fill(i));
    await again.send({ cmd: "puback", messageId: p.messageId });
  }
});
