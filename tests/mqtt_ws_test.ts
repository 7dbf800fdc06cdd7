/**
 * MQTT over WebSocket behaves as MQTT over TCP: the same behaviour tests run with MQTT.js over
 * `mqtt://`, `ws://` and `wss://`, then the things only a second transport can show (messages and
 * sessions across transports), and the gateway's rules over WebSocket (credentials, the upgrade's
 * token, ACLs, per-address caps, slow readers, keepalive, presence, revocation).
 */

import { assert, assertEquals } from "./_assert.ts";
import { Inbox, until, within } from "./_mqtt_harness.ts";
import { RawWs, startMqttWs, TRANSPORTS } from "./_mqtt_ws_harness.ts";
import { FakeClock } from "../src/core/clock.ts";
import { type IClientOptions, mqtt } from "./_dev_deps.ts";
import mqttPacket, { type Packet } from "mqtt-packet";
import { Buffer } from "node:buffer";

// ---- the same behaviour over every transport ----

for (const t of TRANSPORTS) {
  const tls = t === "wss";

  Deno.test(`MQTT.js over ${t}: publish and subscribe at QoS 0, 1 and 2`, async () => {
    await using h = await startMqttWs({ tls });
    const sub = await h.client(t);
    await sub.subscribeAsync("q/#", { qos: 2 });
    const inbox = new Inbox(sub);
    const pub = await h.client(t);
    for (const qos of [0, 1, 2] as const) await pub.publishAsync(`q/${qos}`, `m${qos}`, { qos });
    await inbox.waitFor(3);
    const got = inbox.messages.map((m) => `${m.topic}:${m.payload}:${m.packet.qos}`).sort();
    assertEquals(got, ["q/0:m0:0", "q/1:m1:1", "q/2:m2:2"]);
  });

  Deno.test(`MQTT.js over ${t}: a retained message reaches a later subscriber; an empty one clears it`, async () => {
    await using h = await startMqttWs({ tls });
    const pub = await h.client(t);
    await pub.publishAsync("r/a", "kept", { qos: 1, retain: true });
    const sub = await h.client(t);
    const inbox = new Inbox(sub);
    await sub.subscribeAsync("r/#", { qos: 1 });
    await inbox.waitFor(1);
    assertEquals(inbox.messages[0].payload, "kept");
    assertEquals(inbox.messages[0].packet.retain, true);
    await pub.publishAsync("r/a", "", { qos: 1, retain: true });
    const late = await h.client(t);
    const lateInbox = new Inbox(late);
    await late.subscribeAsync("r/#", { qos: 1 });
    await late.publishAsync("r/marker", "m", { qos: 1 }); // arrives after any retained message
    await lateInbox.waitFor(1);
    assertEquals(lateInbox.messages.map((m) => m.topic), ["r/marker"]);
  });

  Deno.test(`MQTT.js over ${t}: the will is published when the connection drops, not after DISCONNECT`, async () => {
    await using h = await startMqttWs({ tls });
    const watcher = await h.client(t);
    await watcher.subscribeAsync("wills/#", { qos: 1 });
    const inbox = new Inbox(watcher);
    const polite = await h.client(t, {
      will: { topic: "wills/polite", payload: Buffer.from("no"), qos: 1, retain: false },
    });
    await polite.endAsync();
    const rude = await h.client(t, {
      will: { topic: "wills/rude", payload: Buffer.from("gone"), qos: 1, retain: false },
    });
    rude.stream.destroy(); // no DISCONNECT, no Close frame
    await inbox.waitFor(1, 5000);
    await watcher.publishAsync("wills/marker", "m", { qos: 1 });
    await inbox.waitFor(2);
    assertEquals(inbox.messages.map((m) => m.topic), ["wills/rude", "wills/marker"]);
  });

  Deno.test(`MQTT.js over ${t}: a persistent session resumes with what was queued while offline`, async () => {
    await using h = await startMqttWs({ tls });
    const o: IClientOptions = { clientId: `resume-${t}`, clean: false, protocolVersion: 4 };
    const first = await h.client(t, o);
    await first.subscribeAsync("s/#", { qos: 1 });
    await first.endAsync();
    const pub = await h.client(t);
    await pub.publishAsync("s/1", "while away", { qos: 1 });
    const again = h.clientLater(t, o);
    const inbox = new Inbox(again);
    const connack = await within(
      new Promise<{ sessionPresent: boolean }>((r) => again.once("connect", r)),
      8000,
      "reconnect",
    );
    assertEquals(connack.sessionPresent, true);
    await inbox.waitFor(1);
    assertEquals(inbox.messages[0].payload, "while away");
  });

  Deno.test(`MQTT.js over ${t}: MQTT 5 properties travel (user properties, content type, response topic, correlation data, expiry, topic alias, subscription identifier)`, async () => {
    await using h = await startMqttWs({ tls });
    const sub = await h.client(t, { protocolVersion: 5 });
    await sub.subscribeAsync("p/#", { qos: 1, properties: { subscriptionIdentifier: 42 } });
    const inbox = new Inbox(sub);
    const pub = await h.client(t, { protocolVersion: 5 });
    await pub.publishAsync("p/x", "props", {
      qos: 1,
      properties: {
        userProperties: { k: "v" },
        contentType: "text/plain",
        responseTopic: "p/reply",
        correlationData: Buffer.from("c1"),
        messageExpiryInterval: 60,
        topicAlias: 3,
      },
    });
    await pub.publishAsync("", "by alias", { qos: 1, properties: { topicAlias: 3 } });
    await inbox.waitFor(2);
    const [a, b] = inbox.messages;
    const p = a.packet.properties!;
    assertEquals(p.userProperties, { k: "v" });
    assertEquals(p.contentType, "text/plain");
    assertEquals(p.responseTopic, "p/reply");
    assertEquals(Buffer.from(p.correlationData!).toString(), "c1");
    assert((p.messageExpiryInterval ?? 0) > 0 && p.messageExpiryInterval! <= 60);
    assertEquals(p.subscriptionIdentifier, 42);
    assertEquals([b.topic, b.payload], ["p/x", "by alias"]);
  });
}

// ---- across transports ----

Deno.test("A TCP client and a WebSocket client see each other's messages, both ways", async () => {
  await using h = await startMqttWs();
  const tcp = await h.client("tcp");
  const ws = await h.client("ws");
  await tcp.subscribeAsync("to/tcp", { qos: 1 });
  await ws.subscribeAsync("to/ws", { qos: 1 });
  const tcpIn = new Inbox(tcp);
  const wsIn = new Inbox(ws);
  await tcp.publishAsync("to/ws", "from tcp", { qos: 1 });
  await ws.publishAsync("to/tcp", "from ws", { qos: 1 });
  await Promise.all([tcpIn.waitFor(1), wsIn.waitFor(1)]);
  assertEquals(tcpIn.messages[0].payload, "from ws");
  assertEquals(wsIn.messages[0].payload, "from tcp");
});

Deno.test("Takeover across transports: a WebSocket client takes over a TCP session with its subscriptions, and TCP takes it back", async () => {
  await using h = await startMqttWs();
  const o: IClientOptions = {
    clientId: "roamer",
    clean: false,
    protocolVersion: 5,
    properties: {
      sessionExpiryInterval: 300,
    },
  };
  const tcp = h.clientLater("tcp", o);
  const tcpGone = new Promise<number | undefined>((r) =>
    tcp.on("disconnect", (p) => r(p.reasonCode))
  );
  await within(new Promise((r) => tcp.once("connect", r)), 8000, "tcp connect");
  await tcp.subscribeAsync("roam/#", { qos: 1 });
  const ws = h.clientLater("ws", o);
  const wsIn = new Inbox(ws);
  const ack = await within(
    new Promise<{ sessionPresent: boolean }>((r) => ws.once("connect", r)),
    8000,
    "ws connect",
  );
  assertEquals(ack.sessionPresent, true);
  assertEquals(await within(tcpGone, 5000, "the TCP client taken over"), 0x8e);
  const pub = await h.client("tcp");
  await pub.publishAsync("roam/1", "to the new transport", { qos: 1 });
  await wsIn.waitFor(1);
  assertEquals(wsIn.messages[0].payload, "to the new transport");
  const back = h.clientLater("tcp", { ...o, clientId: "roamer" });
  const backAck = await within(
    new Promise<{ sessionPresent: boolean }>((r) => back.once("connect", r)),
    8000,
    "tcp again",
  );
  assertEquals(backAck.sessionPresent, true);
  await until(() => !ws.connected, "the WebSocket client taken over", 5000);
  assertEquals(h.server.sessionCount, 2);
});

// ---- the gateway's rules over WebSocket ----

const DEVICES = [{ id: "dev-1", token: "tok-dev-1" }, { id: "dev-2", token: "tok-dev-2" }];
const SERVICES = [{
  name: "dash",
  token: "tok-dash",
  publish: ["devices/+/commands/#"],
  subscribe: [
    "devices/#",
  ],
}];

function secured() {
  return { anonymous: false, devices: DEVICES, services: SERVICES };
}

Deno.test("Over WebSocket, CONNECT credentials work as over TCP: right ones connect, a wrong token gets 0x86 / return code 4", async () => {
  await using h = await startMqttWs({ core: secured() });
  const ok = await h.client("ws", { clientId: "dev-1", username: "dev-1", password: "tok-dev-1" });
  assert(ok.connected);
  for (const protocolVersion of [4, 5] as const) {
    const bad = h.clientLater("ws", {
      clientId: "dev-2",
      username: "dev-2",
      password: "wrong",
      protocolVersion,
    });
    const err = await within(
      new Promise<{ code?: number }>((r) => bad.once("error", (e) => r(e as { code?: number }))),
      8000,
      "refusal",
    );
    assertEquals(err.code, protocolVersion === 5 ? 0x86 : 4);
  }
});

Deno.test("A browser's token in the upgrade: ?access_token= for the client id, Bearer for the CONNECT user name, Basic for a service account; never logged", async () => {
  await using h = await startMqttWs({ core: secured(), logLevel: "debug" });
  const base = h.url("ws");
  // The query token, for the device named by the client id.
  const byQuery = await within(
    mqtt.connectAsync(`${base}?access_token=tok-dev-1`, {
      clientId: "dev-1",
      reconnectPeriod: 0,
    }, false),
    8000,
    "query token",
  );
  assert(byQuery.connected);
  await byQuery.endAsync();
  const bearer = await h.client("ws", {
    clientId: "dev-2", // a device's client id is its id
    username: "dev-2",
    wsOptions: { headers: { Authorization: "Bearer tok-dev-2" } },
  });
  assert(bearer.connected);
  const basic = await h.client("ws", {
    clientId: "dashboard-1",
    wsOptions: { headers: { Authorization: `Basic ${btoa("dash:tok-dash")}` } },
  });
  await basic.subscribeAsync("devices/#", { qos: 0 });
  const inbox = new Inbox(basic);
  await bearer.publishAsync("devices/dev-2/telemetry", "t", { qos: 1 });
  await inbox.waitFor(1);
  // A wrong query token is refused like a wrong password.
  const wrong = mqtt.connect(`${base}?access_token=nope`, {
    clientId: "dev-1",
    reconnectPeriod: 0,
    protocolVersion: 5,
  });
  const err = await within(
    new Promise<{ code?: number }>((r) => wrong.once("error", (e) => r(e as { code?: number }))),
    8000,
    "refusal",
  );
  wrong.end(true);
  assertEquals(err.code, 0x86);
  const all = h.logs.join("\n");
  for (const secret of ["tok-dev-1", "tok-dev-2", "tok-dash", "nope", btoa("dash:tok-dash")]) {
    assert(!all.includes(secret), `${secret} appears in the log`);
  }
});

Deno.test("Credentials sent twice in one upgrade (query and header) are refused with 400 (RFC 6750 §2)", async () => {
  await using h = await startMqttWs({ core: secured() });
  const r = await RawWs.open(h.wsPort, {
    path: "/mqtt?access_token=a",
    headers: { Authorization: "Bearer b" },
  });
  assertEquals(r.status, 400);
  assert(r.body.includes("more than once"), r.body);
  const scheme = await RawWs.open(h.wsPort, { headers: { Authorization: "Digest x" } });
  assertEquals(scheme.status, 400);
  await Promise.all([r.waitEnded(), scheme.waitEnded()]);
});

Deno.test("ACLs apply over WebSocket: a device cannot subscribe to another's topics nor publish outside its own", async () => {
  await using h = await startMqttWs({ core: secured() });
  const c = await h.client("ws", {
    clientId: "dev-1",
    username: "dev-1",
    password: "tok-dev-1",
    protocolVersion: 5,
  });
  const own = await c.subscribeAsync("devices/dev-1/commands/#", { qos: 1 });
  assertEquals(own.map((g) => g.qos), [1]);
  const other = await c.subscribeAsync("devices/dev-2/#", { qos: 1 }).then(
    () => undefined,
    (e: { packet?: { granted?: number[] } }) => e.packet?.granted,
  );
  assertEquals(other, [0x87]);
  const watcher = await h.client("ws", {
    clientId: "w",
    username: "dash",
    password: "tok-dash",
  });
  await watcher.subscribeAsync("devices/+/telemetry", { qos: 1 });
  const inbox = new Inbox(watcher);
  await c.publishAsync("devices/dev-2/telemetry", "spoof", { qos: 1 }).catch(() => {});
  await c.publishAsync("devices/dev-1/telemetry", "mine", { qos: 1 });
  await inbox.waitFor(1);
  await c.publishAsync("devices/dev-1/telemetry", "again", { qos: 1 });
  await inbox.waitFor(2);
  assertEquals(inbox.messages.map((m) => m.payload), ["mine", "again"]);
});

Deno.test("The per-address cap counts WebSocket and TCP connections together; a refused upgrade is closed before a byte is read", async () => {
  await using h = await startMqttWs({
    core: { admission: { maxConnectionsPerAddress: 2, exemptLoopback: false } },
  });
  const a = await h.client("tcp");
  const b = await h.client("ws");
  const refused = await Deno.connect({ hostname: "127.0.0.1", port: h.wsPort });
  const buf = new Uint8Array(16);
  assertEquals(await refused.read(buf).catch(() => null), null); // closed, nothing sent
  refused.close();
  assert(h.logs.some((l) => l.includes("connection refused: per-address limit")));
  await b.endAsync();
  await until(() => h.core.admission.connections("127.0.0.1") === 1, "the slot given back");
  const c = await h.client("ws");
  assert(c.connected && a.connected);
});

Deno.test("maxConnections counts WebSocket connections", async () => {
  await using h = await startMqttWs({ server: { maxConnections: 1 } });
  const a = await h.client("ws");
  const refused = await Deno.connect({ hostname: "127.0.0.1", port: h.tcpPort });
  assertEquals(await refused.read(new Uint8Array(8)).catch(() => null), null);
  refused.close();
  assert(a.connected);
});

Deno.test("A WebSocket subscriber that stops reading is closed as a slow consumer (bounded send buffer); the others go on", async () => {
  await using h = await startMqttWs({
    server: { maxPendingBytes: 64 * 1024, drainTimeoutMs: 500 },
    websocket: { closeTimeoutMs: 500 },
    core: { subscriberHoldMs: 50 },
    logLevel: "debug",
  });
  // Upgrade and subscribe by hand, then never read again.
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.wsPort });
  const { frame } = await import("./_mqtt_ws_harness.ts");
  const req = `GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${btoa("0123456789abcdef")}\r\nSec-WebSocket-Version: 13\r\n` +
    `Sec-WebSocket-Protocol: mqtt\r\n\r\n`;
  const send = async (b: Uint8Array) => {
    let o = 0;
    while (o < b.length) o += await conn.write(b.subarray(o));
  };
  await send(new TextEncoder().encode(req));
  await send(frame(
    0x2,
    mqttPacket.generate({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 4,
      clientId: "sleeper",
      clean: true,
      keepalive: 0,
    } as Packet),
  ));
  await send(frame(
    0x2,
    mqttPacket.generate({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: [{ topic: "flood/#", qos: 0 }],
    } as Packet),
  ));
  await until(() => h.server.connectionCount === 1, "the sleeper connected");
  const sleeperClosed = () =>
    h.logs.some((l) =>
      l.includes('"clientId":"sleeper"') && l.includes('"reason":"slow_consumer"')
    );
  const pub = await h.client("tcp");
  const payload = Buffer.alloc(16 * 1024, 1);
  // At most 64 KiB may wait for the sleeper: a few hundred KiB are plenty to close it (bounded).
  for (let sent = 0; !sleeperClosed() && sent < 4000; sent++) {
    await pub.publishAsync("flood/x", payload, { qos: 0 });
    if (sent % 16 === 15) await new Promise((r) => setTimeout(r, 1));
  }
  await until(sleeperClosed, "the sleeper closed as a slow consumer", 10_000);
  await until(() => h.server.connectionCount === 1, "only the publisher left", 10_000);
  // The others go on: a new subscriber over WebSocket gets a QoS 1 message.
  const next = await h.client("ws");
  await next.subscribeAsync("after/#", { qos: 1 });
  const inbox = new Inbox(next);
  await pub.publishAsync("after/x", "still serving", { qos: 1 });
  await inbox.waitFor(1, 10_000);
  conn.close();
});

Deno.test("Keepalive over WebSocket: a silent v5 client is closed after 1.5x its keepalive with DISCONNECT 0x8D and Close 1000 (injected clock)", async () => {
  const clock = new FakeClock(1_000_000);
  await using h = await startMqttWs({ core: { clock } });
  const r = await h.rawWs({ version: 5 });
  await r.connect({ keepalive: 10 });
  clock.tick(14_000);
  await new Promise((r) => setTimeout(r, 20));
  assertEquals(r.frames.filter((f) => f.op === 0x8).length, 0);
  clock.tick(2_000);
  const d = await r.packet();
  assertEquals((d as { reasonCode?: number }).reasonCode, 0x8d);
  assertEquals((await r.closeFrame()).code, 1000);
});

Deno.test("Presence over WebSocket: a device is online on devices/{id}/status while connected and offline after", async () => {
  await using h = await startMqttWs({ core: secured() });
  const watcher = await h.client("tcp", { username: "dash", password: "tok-dash" });
  await watcher.subscribeAsync("devices/dev-1/status", { qos: 1 });
  const inbox = new Inbox(watcher);
  const dev = await h.client("ws", { clientId: "dev-1", username: "dev-1", password: "tok-dev-1" });
  await until(() => h.core.registry.device("dev-1").state === "online", "online");
  await dev.endAsync();
  await until(() => h.core.registry.device("dev-1").state === "offline", "offline");
  await inbox.waitFor(2);
  assertEquals(inbox.messages.map((m) => m.payload), ["online", "offline"]);
});

Deno.test("Revocation over WebSocket: removing a device's credentials closes its connection (v5 DISCONNECT 0x87, Close 1008)", async () => {
  await using h = await startMqttWs({ core: secured() });
  const r = await h.rawWs({ version: 5 });
  const ack = await r.connect({
    clientId: "dev-1",
    username: "dev-1",
    password: Buffer.from("tok-dev-1"),
  });
  assertEquals((ack as { reasonCode?: number }).reasonCode, 0);
  h.core.registry.setCredentials([DEVICES[1]], SERVICES);
  const d = await r.packet();
  assertEquals((d as { reasonCode?: number }).reasonCode, 0x87);
  assertEquals((await r.closeFrame()).code, 1008);
});
