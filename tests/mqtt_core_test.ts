import { createMessage } from "../src/core/mod.ts";
import { assert, assertEquals } from "./_assert.ts";
import { Inbox, sleep, startMqtt, within } from "./_mqtt_harness.ts";
import { waitFor } from "./_harness.ts";

const devices = [{ id: "s1", token: "t1" }, { id: "s2", token: "t2" }];
const services = [{
  name: "dash",
  token: "pw",
  publish: ["devices/+/commands/#"],
  subscribe: ["devices/#"],
}];

Deno.test("a device may publish only under devices/{its id}/ (v5 PUBACK 0x87 otherwise)", async () => {
  await using h = await startMqtt({ core: { anonymous: false, devices, services } });
  const seen: string[] = [];
  h.core.subscribe("devices/+/telemetry/#", {
    id: "probe",
    deliver: (m) => seen.push(`${m.topic} ${m.deviceId}`),
  });
  const dev = await h.client({
    protocolVersion: 5,
    clientId: "s1",
    username: "s1",
    password: "t1",
  });
  const ok = await dev.publishAsync("devices/s1/telemetry/temp", "21", { qos: 1 });
  assertEquals((ok as { reasonCode?: number } | undefined)?.reasonCode ?? 0, 0);
  const denied = await dev.publishAsync("devices/s2/telemetry/temp", "x", { qos: 1 }).catch((e) =>
    e
  );
  assertEquals(
    (denied as { code?: number }).code ?? (denied as { reasonCode?: number }).reasonCode,
    0x87,
  );
  await waitFor(() => seen.length > 0, "the accepted publish", 20_000);
  await sleep(20);
  assertEquals(seen, ["devices/s1/telemetry/temp s1"]);
});

Deno.test("a device may subscribe only to its own subtree; a service account subscribes wider", async () => {
  await using h = await startMqtt({ core: { anonymous: false, devices, services } });
  const dev = await h.raw(4);
  await dev.connect({ clientId: "s1", username: "s1", password: "t1" as never });
  await dev.send({
    cmd: "subscribe",
    messageId: 1,
    subscriptions: [{ topic: "devices/s1/commands/+", qos: 1 }, {
      topic: "devices/+/telemetry",
      qos: 1,
    }],
  });
  assertEquals((await dev.next() as { granted: number[] }).granted, [1, 0x80]);
  const svc = await h.client({
    protocolVersion: 4,
    clientId: "dash-1",
    username: "dash",
    password: "pw",
  });
  const g2 = await svc.subscribeAsync("devices/+/telemetry/#", { qos: 1 });
  assertEquals(g2[0].qos, 1);
});

Deno.test("a service account publishes a command that reaches the device over MQTT", async () => {
  await using h = await startMqtt({ core: { anonymous: false, devices, services } });
  const dev = await h.client({
    protocolVersion: 5,
    clientId: "s1",
    username: "s1",
    password: "t1",
  });
  const inbox = new Inbox(dev);
  await dev.subscribeAsync("devices/s1/commands/+", { qos: 1 });
  const svc = await h.client({
    protocolVersion: 5,
    clientId: "dash-1",
    username: "dash",
    password: "pw",
  });
  await svc.publishAsync("devices/s1/commands/reboot", "now", { qos: 1 });
  await inbox.waitFor(1);
  assertEquals(inbox.messages[0].topic, "devices/s1/commands/reboot");
});

Deno.test("cross-protocol: another protocol's telemetry reaches MQTT subscribers of devices/+/telemetry/#", async () => {
  await using h = await startMqtt();
  const sub = await h.client({ protocolVersion: 4 });
  const inbox = new Inbox(sub);
  await sub.subscribeAsync("devices/+/telemetry/#", { qos: 1 });
  await h.core.publish(
    createMessage({
      topic: "devices/fbp7/telemetry/temp",
      payload: new TextEncoder().encode("20.5"),
      qos: 1,
      protocol: "binary",
      deviceId: "fbp7",
    }),
  );
  await inbox.waitFor(1);
  assertEquals([inbox.messages[0].topic, inbox.messages[0].payload], [
    "devices/fbp7/telemetry/temp",
    "20.5",
  ]);
});

Deno.test("cross-protocol: an MQTT publish to devices/{id}/commands/{name} reaches the core's command subscriber", async () => {
  await using h = await startMqtt();
  const got: string[] = [];
  // what the FBP/1 adapter does for a connected device
  h.core.subscribe("devices/fbp7/commands/+", {
    id: "binary-session",
    deliver: (m) => got.push(`${m.topic}:${new TextDecoder().decode(m.payload)}:${m.protocol}`),
  });
  const app = await h.client({ protocolVersion: 5 });
  await app.publishAsync("devices/fbp7/commands/led", "on", { qos: 1 });
  await waitFor(() => got.length > 0, "the command", 20_000);
  await sleep(20);
  assertEquals(got, ["devices/fbp7/commands/led:on:mqtt"]);
});

Deno.test("presence: an MQTT device appears on devices/{id}/status as retained online, then offline", async () => {
  await using h = await startMqtt({ core: { anonymous: false, devices, services } });
  const dev = await h.client({
    protocolVersion: 4,
    clientId: "s2",
    username: "s2",
    password: "t2",
  });
  const svc = await h.client({
    protocolVersion: 4,
    clientId: "dash-2",
    username: "dash",
    password: "pw",
  });
  const inbox = new Inbox(svc);
  await svc.subscribeAsync("devices/s2/status", { qos: 1 });
  await inbox.waitFor(1);
  assertEquals([inbox.messages[0].payload, inbox.messages[0].packet.retain], ["online", true]);
  await dev.endAsync();
  await inbox.waitFor(2);
  assertEquals(inbox.messages[1].payload, "offline");
  assertEquals(
    new TextDecoder().decode(h.core.retained.get("devices/s2/status")!.payload),
    "offline",
  );
});

Deno.test("backpressure: a QoS 1 PUBLISH is acknowledged only once the pipeline accepted it", async () => {
  await using h = await startMqtt({ core: { queueCapacity: 1, concurrency: 1 } });
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  let handled = 0;
  h.core.addSink(async (m) => {
    if (m.topic.startsWith("bp/")) {
      await gate;
      handled++;
    }
  });
  const r = await h.raw(4);
  await r.connect();
  for (const id of [1, 2, 3, 4]) {
    await r.send({
      cmd: "publish",
      topic: `bp/${id}`,
      payload: "x",
      qos: 1,
      messageId: id,
      dup: false,
      retain: false,
    });
  }
  // 1 in the handler, 1 in the queue: at most two accepted, the rest wait unacknowledged.
  await sleep(50);
  const early = r.pending.filter((p) => p.cmd === "puback").length;
  assert(early <= 2, `acknowledged ${early} before the pipeline had room`);
  release();
  for (let i = 0; i < 4 - early; i++) await within(r.next(), 20_000, "puback");
  await waitFor(() => handled >= 4, "the four handled", 20_000);
  assertEquals(handled, 4);
});

Deno.test("with anonymousPresence on an anonymous client whose client id is a device id gets presence once it publishes as that device", async () => {
  await using h = await startMqtt({ server: { anonymousPresence: true } });
  const c = await h.client({ protocolVersion: 4, clientId: "anon-dev" });
  // Subscribing, or publishing outside its own topics (a tool), makes no device of it.
  await c.subscribeAsync("devices/+/status", { qos: 1 });
  await c.publishAsync("devices/other/commands/x", "1", { qos: 1 });
  assertEquals(h.core.registry.get("anon-dev"), undefined);
  await c.publishAsync("devices/anon-dev/telemetry", "1", { qos: 1 });
  await waitFor(() => h.core.registry.get("anon-dev") !== undefined, "presence", 20_000);
  assertEquals(h.core.registry.get("anon-dev")?.state, "online");
});

Deno.test("a subscriber that stops reading is closed as a slow consumer instead of buffering", async () => {
  await using h = await startMqtt({ server: { maxPendingBytes: 64 * 1024, drainTimeoutMs: 500 } });
  const mqttPacket = (await import("mqtt-packet")).default;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.port });
  try {
    const send = (p: object) => conn.write(mqttPacket.generate(p as never, { protocolVersion: 4 }));
    await send({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 4,
      clientId: "slow",
      clean: true,
      keepalive: 0,
    });
    await send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "flood", qos: 0 }] });
    await waitFor(() => h.core.router.size > 0, "the subscription", 20_000);
    const payload = new Uint8Array(16 * 1024);
    // never read: ~32 MB offered, far beyond socket buffers and maxPendingBytes
    for (let i = 0; i < 2000 && h.server.connectionCount > 0; i++) {
      await h.core.publish(createMessage({ topic: "flood", payload, protocol: "system" }));
      if (i % 50 === 0) await sleep(1);
    }
    await waitFor(() => h.server.connectionCount === 0, "the slow reader closed", 20_000);
    assertEquals(h.server.connectionCount, 0);
  } finally {
    conn.close();
  }
});

Deno.test("by default (anonymousPresence off) an anonymous client gets no presence, a device still does", async () => {
  await using h = await startMqtt({ core: { devices: [{ id: "dev9", token: "t" }] } });
  await h.client({ protocolVersion: 4, clientId: "anon9" });
  await h.client({ protocolVersion: 4, clientId: "dev9", username: "dev9", password: "t" });
  await waitFor(() => h.core.registry.get("dev9") !== undefined, "dev9's presence", 20_000);
  assertEquals(h.core.registry.get("anon9")?.state, undefined);
  assertEquals(h.core.registry.get("dev9")?.state, "online");
});

Deno.test("with an accept hook, a PUBLISH is acknowledged only after the hook; a refusal is never acknowledged", async () => {
  await using h = await startMqtt();
  const hooked: string[] = [];
  h.core.setAcceptHook((m) => {
    if (m.topic === "hook/bad") throw new Error("spool full");
    if (m.topic.startsWith("hook/")) hooked.push(m.topic);
  });
  const r5 = await h.raw(5);
  await r5.connect();
  await r5.send({
    cmd: "publish",
    topic: "hook/ok",
    payload: "x",
    qos: 1,
    messageId: 1,
    dup: false,
    retain: false,
  });
  const ok = await r5.next() as { cmd: string; reasonCode?: number };
  assertEquals([ok.cmd, ok.reasonCode ?? 0], ["puback", 0]);
  assertEquals(hooked, ["hook/ok"]);
  await r5.send({
    cmd: "publish",
    topic: "hook/bad",
    payload: "x",
    qos: 1,
    messageId: 2,
    dup: false,
    retain: false,
  });
  const bad = await r5.next() as { cmd: string; reasonCode?: number };
  assertEquals([bad.cmd, bad.reasonCode], ["puback", 0x83]);
  const r4 = await h.raw(4);
  await r4.connect();
  await r4.send({
    cmd: "publish",
    topic: "hook/bad",
    payload: "x",
    qos: 1,
    messageId: 3,
    dup: false,
    retain: false,
  });
  assertEquals((await r4.waitClosed()).length, 0); // 3.1.1: closed unacknowledged, the client resends
});
