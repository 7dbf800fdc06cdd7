import { FakeClock } from "../src/core/mod.ts";
import { assert, assertEquals } from "./_assert.ts";
import { startMqtt } from "./_mqtt_harness.ts";

Deno.test("CONNECT from a 3.1.1 client gets CONNACK 0 with session present 0", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  const ack = await r.connect({ clientId: "c1", clean: true });
  assertEquals(ack.cmd, "connack");
  assertEquals((ack as { returnCode?: number }).returnCode, 0);
  assertEquals((ack as { sessionPresent: boolean }).sessionPresent, false);
});

Deno.test("CONNECT from an MQTT 3.1 (MQIsdp) client is accepted", async () => {
  await using h = await startMqtt();
  const r = await h.raw(3);
  const ack = await r.connect({ clientId: "old31" });
  assertEquals((ack as { returnCode?: number }).returnCode, 0);
});

Deno.test("v5 CONNECT with an empty client id gets an Assigned Client Identifier", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  const ack = await r.connect({ clientId: "" }) as {
    reasonCode: number;
    properties?: { assignedClientIdentifier?: string; receiveMaximum?: number };
  };
  assertEquals(ack.reasonCode, 0);
  assert(ack.properties?.assignedClientIdentifier?.startsWith("ferry-"));
  assertEquals(ack.properties?.receiveMaximum, 64);
});

Deno.test("3.1.1 CONNECT with an empty client id is accepted only with clean session", async () => {
  await using h = await startMqtt();
  const ok = await h.raw(4);
  assertEquals(
    ((await ok.connect({ clientId: "", clean: true })) as { returnCode: number }).returnCode,
    0,
  );
  const bad = await h.raw(4);
  // CONNECT 3.1.1, clean session 0, empty client id (MQTT.js refuses to encode it)
  await bad.send(new Uint8Array([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0, 0, 0, 0, 0]));
  const got = await bad.waitClosed();
  assertEquals((got[0] as { returnCode: number }).returnCode, 2); // [MQTT-3.1.3-8]
});

Deno.test("CONNECT with an unsupported protocol level gets return code 1 and is closed", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  // CONNECT, "MQTT", level 6, flags clean, keepalive 0, client id "x"
  await r.send(new Uint8Array([0x10, 13, 0, 4, 0x4d, 0x51, 0x54, 0x54, 6, 2, 0, 0, 0, 1, 0x78]));
  const got = await r.waitClosed();
  assertEquals(got.length, 1);
  assertEquals(got[0].cmd, "connack");
  assertEquals((got[0] as { returnCode: number }).returnCode, 1);
});

Deno.test("a first packet other than CONNECT closes the connection without a reply", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.send({ cmd: "pingreq" });
  assertEquals((await r.waitClosed()).length, 0); // [MQTT-3.1.0-1]
});

Deno.test("a second CONNECT closes a 3.1.1 connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.connect({ clientId: "twice" });
  await r.send({
    cmd: "connect",
    protocolId: "MQTT",
    protocolVersion: 4,
    clientId: "twice",
    clean: true,
    keepalive: 0,
  });
  assertEquals((await r.waitClosed()).length, 0); // [MQTT-3.1.0-2]
});

Deno.test("a second CONNECT gets a v5 client DISCONNECT 0x82 Protocol Error", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  await r.connect({ clientId: "twice5" });
  await r.send({
    cmd: "connect",
    protocolId: "MQTT",
    protocolVersion: 5,
    clientId: "twice5",
    clean: true,
    keepalive: 0,
  });
  const got = await r.waitClosed();
  assertEquals(got[0]?.cmd, "disconnect");
  assertEquals((got[0] as { reasonCode: number }).reasonCode, 0x82);
});

Deno.test("a CONNECT with the reserved flag set is malformed and closes the connection", async () => {
  await using h = await startMqtt();
  const r = await h.raw(4);
  await r.send(new Uint8Array([0x10, 13, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 3, 0, 0, 0, 1, 0x78]));
  assertEquals((await r.waitClosed()).length, 0); // [MQTT-3.1.2-3]
});

Deno.test("a connection that sends nothing is closed after the connect timeout", async () => {
  const clock = new FakeClock(Date.now());
  await using h = await startMqtt({ core: { clock }, server: { connectTimeoutMs: 1000 } });
  const r = await h.raw(4);
  for (let i = 0; i < 50 && h.server.connectionCount === 0; i++) {
    await new Promise((x) => setTimeout(x, 5));
  }
  await clock.tickAsync(999);
  assert(!r.closed);
  await clock.tickAsync(100);
  await r.waitClosed();
});

Deno.test("bad credentials get return code 4 (3.1.1) and reason 0x86 (v5)", async () => {
  await using h = await startMqtt({
    core: { anonymous: false, devices: [{ id: "s1", token: "good" }] },
  });
  const r4 = await h.raw(4);
  const a4 = await r4.connect({ clientId: "s1", username: "s1", password: "bad" as never });
  assertEquals((a4 as { returnCode: number }).returnCode, 4);
  const r5 = await h.raw(5);
  const a5 = await r5.connect({ clientId: "s1", username: "s1", password: "bad" as never });
  assertEquals((a5 as { reasonCode: number }).reasonCode, 0x86);
  assertEquals((a5 as { sessionPresent: boolean }).sessionPresent, false);
  const ok = await h.raw(4);
  const a = await ok.connect({ clientId: "s1", username: "s1", password: "good" as never });
  assertEquals((a as { returnCode: number }).returnCode, 0);
});

Deno.test("a client without credentials is refused with 5 / 0x87 unless anonymous mode is on", async () => {
  await using h = await startMqtt({ core: { anonymous: false } });
  const r4 = await h.raw(4);
  assertEquals(((await r4.connect({ clientId: "x" })) as { returnCode: number }).returnCode, 5);
  const r5 = await h.raw(5);
  assertEquals(((await r5.connect({ clientId: "x" })) as { reasonCode: number }).reasonCode, 0x87);
});

Deno.test("v5 CONNECT with an authentication method gets 0x8C Bad authentication method", async () => {
  await using h = await startMqtt();
  const r = await h.raw(5);
  const ack = await r.connect({ properties: { authenticationMethod: "SCRAM-SHA-1" } });
  assertEquals((ack as { reasonCode: number }).reasonCode, 0x8c);
});

Deno.test("MQTT.js v4 and v5 clients connect and disconnect cleanly", async () => {
  await using h = await startMqtt();
  const a = await h.client({ protocolVersion: 4, clientId: "js4" });
  const b = await h.client({ protocolVersion: 5, clientId: "js5" });
  assert(a.connected && b.connected);
  await a.endAsync();
  await b.endAsync();
});

Deno.test("mosquitto_pub connects with 3.1.1, 3.1 and 5", async () => {
  await using h = await startMqtt();
  const { run } = await import("./_mqtt_harness.ts");
  for (const v of ["mqttv311", "mqttv31", "mqttv5"]) {
    const r = await run("mosquitto_pub", [
      "-h",
      "127.0.0.1",
      "-p",
      String(h.port),
      "-V",
      v,
      "-t",
      "t/x",
      "-m",
      "hi",
    ]);
    assertEquals(r.code, 0, `${v}: ${r.stderr}`);
  }
});

Deno.test("connections past maxConnections are closed at once; existing ones are unaffected", async () => {
  await using h = await startMqtt({ server: { maxConnections: 2 } });
  const a = await h.raw(4);
  await a.connect({ clientId: "a" });
  const b = await h.raw(4);
  await b.connect({ clientId: "b" });
  const c = await h.raw(4);
  await c.waitClosed();
  await a.send({ cmd: "pingreq" });
  assertEquals((await a.next()).cmd, "pingresp");
  assertEquals(h.core.stats.drops.get({ protocol: "mqtt", reason: "connection_limit" }), 1);
});

Deno.test("a first packet above maxConnectPacketSize closes the connection before it is buffered", async () => {
  await using h = await startMqtt({ server: { maxConnectPacketSize: 1024 } });
  const r = await h.raw(4);
  // CONNECT header claiming 100,000 bytes
  await r.send(new Uint8Array([0x10, 0xa0, 0x8d, 0x06]));
  assertEquals((await r.waitClosed()).length, 0);
  // after CONNECT the general maxPacketSize applies
  const ok = await h.raw(4);
  await ok.connect();
  await ok.send({
    cmd: "publish",
    topic: "big",
    payload: "x".repeat(5000),
    qos: 1,
    messageId: 1,
    dup: false,
    retain: false,
  });
  assertEquals((await ok.next()).cmd, "puback");
});

Deno.test("in anonymous mode a user name that is no device id connects as anonymous; a device with a bad token does not", async () => {
  await using h = await startMqtt({
    core: { anonymous: true, devices: [{ id: "s1", token: "good" }] },
  });
  const a = await h.raw(4);
  const ack = await a.connect({
    clientId: "tool",
    username: "someone@example",
    password: "x" as never,
  });
  assertEquals((ack as { returnCode: number }).returnCode, 0);
  const b = await h.raw(4);
  const bad = await b.connect({ clientId: "s1", username: "s1", password: "wrong" as never });
  assertEquals((bad as { returnCode: number }).returnCode, 4);
});
