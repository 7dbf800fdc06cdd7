import type { IPublishPacket } from "mqtt-packet";
import { FakeClock } from "../src/core/mod.ts";
import { assert, assertEquals } from "./_assert.ts";
import { Inbox, sleep, startMqtt } from "./_mqtt_harness.ts";

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(5);
  }
}

Deno.test("a persistent session keeps subscriptions and queues QoS 1 (not QoS 0) while offline", async () => {
  await using h = await startMqtt();
  const a = await h.client({ protocolVersion: 4, clientId: "pers", clean: false });
  await a.subscribeAsync("p/#", { qos: 1 });
  await a.endAsync();
  await until(() => h.server.connectionCount === 0, "disconnect");
  const pub = await h.client({ protocolVersion: 4 });
  await pub.publishAsync("p/1", "one", { qos: 1 });
  await pub.publishAsync("p/0", "zero", { qos: 0 });
  await pub.publishAsync("p/2", "two", { qos: 1 });
  const b = h.clientLater({ protocolVersion: 4, clientId: "pers", clean: false });
  const inbox = new Inbox(b);
  await inbox.waitFor(2);
  await sleep(30);
  assertEquals(inbox.messages.map((m) => m.payload), ["one", "two"]);
});

Deno.test("a clean session discards the previous session: session present 0, no subscriptions", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect({ clientId: "cs", clean: false });
  await r.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "cs/#", qos: 1 }] });
  await r.next();
  r.close();
  await until(() => h.server.connectionCount === 0, "disconnect");
  const r2 = await h.raw(4);
  const ack = await r2.connect({ clientId: "cs", clean: true }) as { sessionPresent: boolean };
  assertEquals(ack.sessionPresent, false); // [MQTT-3.2.2-1]
  const pub = await h.client({ protocolVersion: 4 });
  await pub.publishAsync("cs/x", "x", { qos: 1 });
  await sleep(30);
  assertEquals(r2.pending.length, 0);
});

Deno.test("a second connection with the same client id takes over; the first gets DISCONNECT 0x8E (v5)", async () => {
  await using h = await startMqtt();
  const first = await h.raw(5);
  await first.connect({ clientId: "dup-id" });
  const second = await h.raw(5);
  const ack = await second.connect({ clientId: "dup-id" }) as { reasonCode: number };
  assertEquals(ack.reasonCode, 0);
  const got = await first.waitClosed();
  assertEquals(got.map((p) => [p.cmd, (p as { reasonCode?: number }).reasonCode]), [[
    "disconnect",
    0x8e,
  ]]);
  assert(!second.closed);
});

Deno.test("a 3.1.1 takeover closes the first connection and keeps the session for the second", async () => {
  await using h = await startMqtt();
  const first = await h.raw(4);
  await first.connect({ clientId: "tk", clean: false });
  await first.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "tk", qos: 1 }] });
  await first.next();
  const second = await h.raw(4);
  const ack = await second.connect({ clientId: "tk", clean: false }) as { sessionPresent: boolean };
  assertEquals(ack.sessionPresent, true);
  await first.waitClosed();
  const pub = await h.client({ protocolVersion: 4 });
  await pub.publishAsync("tk", "after", { qos: 1 });
  const p = await second.next() as IPublishPacket;
  assertEquals(p.topic, "tk");
});

Deno.test("the offline queue is bounded: the oldest message is dropped and counted", async () => {
  await using h = await startMqtt({ server: { maxQueuedMessages: 2 } });
  const r = await h.raw(4);
  await r.connect({ clientId: "bq", clean: false });
  await r.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "bq", qos: 1 }] });
  await r.next();
  r.close();
  await until(() => h.server.connectionCount === 0, "disconnect");
  const pub = await h.client({ protocolVersion: 4 });
  for (const m of ["1", "2", "3"]) await pub.publishAsync("bq", m, { qos: 1 });
  const r2 = await h.raw(4);
  await r2.connect({ clientId: "bq", clean: false });
  const a = await r2.next() as IPublishPacket;
  const b = await r2.next() as IPublishPacket;
  assertEquals([String(a.payload), String(b.payload)], ["2", "3"]);
  assertEquals(h.core.stats.drops.get({ protocol: "mqtt", reason: "queue_full" }), 1);
});

Deno.test("the will is published when the connection drops without DISCONNECT", async () => {
  await using h = await startMqtt();
  const watcher = await h.client({ protocolVersion: 4 });
  const inbox = new Inbox(watcher);
  await watcher.subscribeAsync("will/#", { qos: 1 });
  const r = await h.raw(4);
  await r.connect({
    clientId: "w1",
    will: { topic: "will/w1", payload: "gone" as never, qos: 1, retain: false },
  });
  r.close();
  await inbox.waitFor(1);
  assertEquals([inbox.messages[0].topic, inbox.messages[0].payload], ["will/w1", "gone"]);
});

Deno.test("the will is not published after a normal DISCONNECT", async () => {
  await using h = await startMqtt();
  const watcher = await h.client({ protocolVersion: 4 });
  const inbox = new Inbox(watcher);
  await watcher.subscribeAsync("will/#", { qos: 1 });
  const c = await h.client({
    protocolVersion: 4,
    clientId: "w2",
    will: { topic: "will/w2", payload: "gone", qos: 1, retain: false },
  });
  await c.endAsync();
  await until(() => h.server.connectionCount === 1, "disconnect");
  await sleep(30);
  assertEquals(inbox.messages.length, 0); // [MQTT-3.1.2-10]
});

Deno.test("a v5 DISCONNECT with reason 0x04 publishes the will", async () => {
  await using h = await startMqtt();
  const watcher = await h.client({ protocolVersion: 5 });
  const inbox = new Inbox(watcher);
  await watcher.subscribeAsync("will/#", { qos: 1 });
  const r = await h.raw(5);
  await r.connect({
    clientId: "w4",
    will: { topic: "will/w4", payload: "bye" as never, qos: 0, retain: false },
  });
  await r.send({ cmd: "disconnect", reasonCode: 0x04 });
  await inbox.waitFor(1);
  assertEquals(inbox.messages[0].payload, "bye");
});

Deno.test("a v5 will with a delay is published after the delay, and not if the client returns first", async () => {
  const clock = new FakeClock(Date.now());
  await using h = await startMqtt({ core: { clock } });
  const seen: string[] = [];
  h.core.subscribe("will/#", { id: "probe", deliver: (m) => seen.push(m.topic) });
  const will = (t: string) => ({
    topic: t,
    payload: "x" as never,
    qos: 0 as const,
    retain: false,
    properties: { willDelayInterval: 5 },
  });
  const a = await h.raw(5);
  await a.connect({
    clientId: "wd1",
    clean: false,
    properties: { sessionExpiryInterval: 60 },
    will: will("will/wd1"),
  });
  const b = await h.raw(5);
  await b.connect({
    clientId: "wd2",
    clean: false,
    properties: { sessionExpiryInterval: 60 },
    will: will("will/wd2"),
  });
  a.close();
  b.close();
  await until(() => h.server.connectionCount === 0, "disconnect");
  await clock.tickAsync(4000);
  assertEquals(seen, []);
  const back = await h.raw(5);
  await back.connect({ clientId: "wd2", clean: false, properties: { sessionExpiryInterval: 60 } });
  await clock.tickAsync(2000);
  await until(() => seen.length > 0, "will");
  assertEquals(seen, ["will/wd1"]);
});

Deno.test("a silent client is closed after 1.5x its keepalive (v5: DISCONNECT 0x8D) and PINGREQ keeps it alive", async () => {
  const clock = new FakeClock(Date.now());
  await using h = await startMqtt({ core: { clock } });
  const quiet = await h.raw(5);
  await quiet.connect({ clientId: "ka1", keepalive: 10 });
  const pinger = await h.raw(4);
  await pinger.connect({ clientId: "ka2", keepalive: 10 });
  await clock.tickAsync(10_000);
  await pinger.send({ cmd: "pingreq" });
  assertEquals((await pinger.next()).cmd, "pingresp");
  await clock.tickAsync(5_100);
  const got = await quiet.waitClosed();
  assertEquals(got.map((p) => [p.cmd, (p as { reasonCode?: number }).reasonCode]), [[
    "disconnect",
    0x8d,
  ]]);
  assert(!pinger.closed);
});

Deno.test("a v5 session expires after its Session Expiry Interval", async () => {
  const clock = new FakeClock(Date.now());
  await using h = await startMqtt({ core: { clock } });
  const r = await h.raw(5);
  await r.connect({ clientId: "exp", clean: false, properties: { sessionExpiryInterval: 10 } });
  r.close();
  await until(() => h.server.connectionCount === 0, "disconnect");
  assertEquals(h.server.sessionCount, 1);
  await clock.tickAsync(10_001);
  assertEquals(h.server.sessionCount, 0);
  const again = await h.raw(5);
  const ack = await again.connect({
    clientId: "exp",
    clean: false,
    properties: { sessionExpiryInterval: 10 },
  });
  assertEquals((ack as { sessionPresent: boolean }).sessionPresent, false);
});

Deno.test("the will is published when the keepalive expires", async () => {
  const clock = new FakeClock(Date.now());
  await using h = await startMqtt({ core: { clock } });
  const seen: string[] = [];
  h.core.subscribe("will/#", { id: "probe", deliver: (m) => seen.push(m.topic) });
  const r = await h.raw(4);
  await r.connect({
    clientId: "kaw",
    keepalive: 2,
    will: { topic: "will/kaw", payload: "x" as never, qos: 0, retain: false },
  });
  await clock.tickAsync(3100);
  await r.waitClosed();
  await until(() => seen.length > 0, "will");
  assertEquals(seen, ["will/kaw"]);
});

Deno.test("a v5 DISCONNECT that sets a session expiry after CONNECT said 0 is a protocol error", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect({ clientId: "se0" });
  await r.send({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 30 } });
  const got = await r.waitClosed() as Array<{ cmd: string; reasonCode?: number }>;
  assertEquals(got.map((p) => [p.cmd, p.reasonCode]), [["disconnect", 0x82]]); // [MQTT-3.14.2-2]
});

Deno.test("past maxSessions a new client is refused with return code 3 (0x97 in v5)", async () => {
  await using h = await startMqtt({ server: { maxSessions: 1 } });
  const a = await h.raw(4);
  await a.connect({ clientId: "only" });
  const b = await h.raw(4);
  assertEquals(((await b.connect({ clientId: "second" })) as { returnCode: number }).returnCode, 3);
  const c = await h.raw(5);
  assertEquals(
    ((await c.connect({ clientId: "third" })) as { reasonCode: number }).reasonCode,
    0x97,
  );
});

Deno.test("MQTT.js v5 sees DISCONNECT 0x8E Session taken over when its client id connects again", async () => {
  await using h = await startMqtt();
  const first = await h.client({ protocolVersion: 5, clientId: "js-take" });
  const seen = new Promise<number | undefined>((resolve) =>
    first.on("disconnect", (p) => resolve(p.reasonCode))
  );
  await h.client({ protocolVersion: 5, clientId: "js-take" });
  const { within } = await import("./_mqtt_harness.ts");
  assertEquals(await within(seen, 3000, "DISCONNECT"), 0x8e);
});

Deno.test("a v5 DISCONNECT with an error reason code publishes the will", async () => {
  await using h = await startMqtt();
  const seen: string[] = [];
  h.core.subscribe("will/#", { id: "probe", deliver: (m) => seen.push(m.topic) });
  const r = await h.raw(5);
  await r.connect({
    clientId: "w80",
    will: { topic: "will/w80", payload: "x" as never, qos: 0, retain: false },
  });
  await r.send({ cmd: "disconnect", reasonCode: 0x80 });
  await r.waitClosed();
  await until(() => seen.length > 0, "will");
  assertEquals(seen, ["will/w80"]);
});
