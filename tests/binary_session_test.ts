import { assert, assertEquals } from "./_assert.ts";
import { dec, enc, startBinary, waitFor } from "./_harness.ts";
import { FakeClock } from "../src/core/clock.ts";
import { createMessage } from "../src/core/message.ts";
import { FbpClient, HelloRefusedError } from "../src/protocols/binary/client.ts";
import {
  AckStatus,
  decodeHelloAck,
  encodeFrame,
  encodeHello,
  encodeTelemetry,
  ErrorCode,
  FLAG_ACK_REQUESTED,
  FrameType,
  HelloStatus,
} from "../src/protocols/binary/frame.ts";

const none = new Uint8Array(0);

Deno.test("FBP/1 HELLO is answered with HELLO_ACK ok, the granted keepalive, and presence online", async () => {
  await using h = await startBinary();
  const c = await FbpClient.connect({ port: h.port, id: "sensor-1", keepAlive: 30 });
  assertEquals(c.keepAlive, 30);
  await waitFor(() => h.core.retained.get("devices/sensor-1/status") !== undefined, "presence");
  assertEquals(dec(h.core.retained.get("devices/sensor-1/status")!.payload), "online");
  await c.close();
  await waitFor(
    () => dec(h.core.retained.get("devices/sensor-1/status")!.payload) === "offline",
    "offline",
  );
});

Deno.test("FBP/1 HELLO with keepalive 0 gets the default and a large one is capped", async () => {
  await using h = await startBinary({ server: { defaultKeepAliveSec: 45, maxKeepAliveSec: 100 } });
  const a = await FbpClient.connect({ port: h.port, id: "a", keepAlive: 0 });
  const b = await FbpClient.connect({ port: h.port, id: "b", keepAlive: 9000 });
  assertEquals([a.keepAlive, b.keepAlive], [45, 100]);
  await a.close();
  await b.close();
});

Deno.test("FBP/1 HELLO with a bad token gets status 1 and the connection closes", async () => {
  await using h = await startBinary({
    core: { anonymous: false, devices: [{ id: "s1", token: "right" }] },
  });
  const c = await FbpClient.open(h.port);
  assertEquals(await c.hello("s1", "wrong", 30), HelloStatus.BAD_CREDENTIALS);
  await c.finished;
  assert(c.ended);
  const ok = await FbpClient.connect({ port: h.port, id: "s1", token: "right" });
  await ok.close();
});

Deno.test("FBP/1 HELLO from an unknown device is refused when anonymous access is off", async () => {
  await using h = await startBinary({
    core: { anonymous: false, devices: [{ id: "s1", token: "t" }] },
  });
  let err: unknown;
  try {
    await FbpClient.connect({ port: h.port, id: "intruder", token: "t" });
  } catch (e) {
    err = e;
  }
  assert(err instanceof HelloRefusedError && err.status === HelloStatus.BAD_CREDENTIALS);
});

Deno.test("FBP/1 HELLO with a malformed id gets status 2 and the connection closes", async () => {
  await using h = await startBinary();
  const c = await FbpClient.open(h.port);
  const id = enc("bad id!");
  const payload = new Uint8Array([id.length, ...id, 0, 0, 30]);
  await c.send({ type: FrameType.HELLO, flags: 0, seq: 7, payload });
  const f = await c.nextFrame(2000, (f) => f.type === FrameType.HELLO_ACK);
  assertEquals(f?.seq, 7);
  assertEquals(decodeHelloAck(f!.payload).status, HelloStatus.BAD_ID);
  await c.finished;
  await c.close();
});

Deno.test("FBP/1 a first frame other than HELLO gets ERROR 5 and the connection closes", async () => {
  await using h = await startBinary();
  const c = await FbpClient.open(h.port);
  await c.send({ type: FrameType.PING, flags: 0, seq: 1, payload: none });
  const e = await c.nextError();
  assertEquals(e?.code, ErrorCode.NOT_AUTHENTICATED);
  await c.finished;
  await c.close();
});

Deno.test("FBP/1 no HELLO within helloTimeout gets ERROR 10 and the connection closes", async () => {
  const clock = new FakeClock(Date.now());
  await using h = await startBinary({ clock, server: { helloTimeoutMs: 10_000 } });
  const c = await FbpClient.open(h.port);
  await waitFor(() => h.server.connections === 1, "the connection");
  clock.tick(9_999);
  await new Promise((r) => setTimeout(r, 20));
  assert(!c.ended, "closed before the timeout");
  clock.tick(1);
  const e = await c.nextError();
  assertEquals(e?.code, ErrorCode.HELLO_TIMEOUT);
  await c.finished;
  await c.close();
});

Deno.test("FBP/1 TELEMETRY with ACK_REQUESTED is published on the device's topic and ACKed with its seq", async () => {
  await using h = await startBinary();
  const c = await FbpClient.connect({ port: h.port, id: "s1" });
  assertEquals(await c.telemetry(enc('{"c":21.5}'), { channel: "temp", ack: true }), AckStatus.OK);
  assertEquals(await c.telemetry(enc("x"), { ack: true }), AckStatus.OK);
  await waitFor(
    () => h.seen.filter((m) => m.topic.includes("telemetry")).length === 2,
    "2 messages",
  );
  const t = h.seen.filter((m) => m.topic.includes("telemetry"));
  assertEquals(t.map((m) => [m.topic, dec(m.payload), m.deviceId, m.protocol, m.qos]), [
    ["devices/s1/telemetry/temp", '{"c":21.5}', "s1", "binary", 1],
    ["devices/s1/telemetry", "x", "s1", "binary", 1],
  ]);
  await c.close();
});

Deno.test("FBP/1 TELEMETRY without ACK_REQUESTED is published and not ACKed", async () => {
  await using h = await startBinary();
  const c = await FbpClient.connect({ port: h.port, id: "s1" });
  await c.telemetry(enc("fire-and-forget"));
  await c.ping();
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/telemetry"), "message");
  const stray = await c.nextFrame(100).catch(() => undefined);
  assertEquals(stray, undefined);
  await c.close();
});

Deno.test("FBP/1 PING is answered by PONG with the same seq", async () => {
  await using h = await startBinary();
  const c = await FbpClient.connect({ port: h.port, id: "s1" });
  await c.send({ type: FrameType.PING, flags: 0, seq: 4242, payload: none });
  const f = await c.nextFrame();
  assertEquals([f?.type, f?.seq], [FrameType.PONG, 4242]);
  await c.close();
});

Deno.test("FBP/1 a frame with a bad CRC gets ERROR 3 and the connection stays", async () => {
  await using h = await startBinary();
  const c = await FbpClient.connect({ port: h.port, id: "s1" });
  const bytes = encodeFrame({ type: FrameType.PING, flags: 0, seq: 9, payload: none });
  bytes[bytes.length - 1] ^= 0xff;
  await c.sendRaw(bytes);
  const e = await c.nextError();
  assertEquals([e?.code, e?.seq], [ErrorCode.BAD_CRC, 9]);
  await c.ping();
  await c.close();
});

Deno.test("FBP/1 an unknown frame type gets ERROR 4 and the connection stays", async () => {
  await using h = await startBinary();
  const c = await FbpClient.connect({ port: h.port, id: "s1" });
  await c.send({ type: 0x55, flags: 0, seq: 3, payload: none });
  const e = await c.nextError();
  assertEquals([e?.code, e?.seq], [ErrorCode.UNKNOWN_TYPE, 3]);
  await c.ping();
  await c.close();
});

Deno.test("FBP/1 a malformed TELEMETRY body gets ERROR 6 (and ACK 4 when asked) and the connection stays", async () => {
  await using h = await startBinary();
  const c = await FbpClient.connect({ port: h.port, id: "s1" });
  const chan = enc("UPPER");
  const payload = new Uint8Array([chan.length, ...chan, 1, 2]);
  const seq = c.nextSeq();
  await c.send({ type: FrameType.TELEMETRY, flags: FLAG_ACK_REQUESTED, seq, payload });
  const e = await c.nextError();
  assertEquals([e?.code, e?.seq], [ErrorCode.BAD_PAYLOAD, seq]);
  assertEquals(await c.telemetry(enc("ok"), { ack: true }), AckStatus.OK);
  assert(!h.seen.some((m) => m.topic.includes("UPPER")));
  await c.close();
});

Deno.test("FBP/1 reserved flag bits get ERROR 6 and the frame is dropped", async () => {
  await using h = await startBinary();
  const c = await FbpClient.connect({ port: h.port, id: "s1" });
  await c.send({
    type: FrameType.TELEMETRY,
    flags: 0x02,
    seq: 5,
    payload: encodeTelemetry({ channel: "", data: enc("x") }),
  });
  assertEquals((await c.nextError())?.code, ErrorCode.BAD_PAYLOAD);
  await c.ping();
  assert(!h.seen.some((m) => m.topic === "devices/s1/telemetry"));
  await c.close();
});

Deno.test("FBP/1 a bad magic gets ERROR 1 and the connection closes", async () => {
  await using h = await startBinary();
  const c = await FbpClient.connect({ port: h.port, id: "s1" });
  await c.sendRaw(new Uint8Array(32).fill(0xab));
  assertEquals((await c.nextError())?.code, ErrorCode.BAD_MAGIC);
  await c.finished;
  await c.close();
});

Deno.test("FBP/1 a frame longer than maxPayload gets ERROR 2 and the connection closes before the body is sent", async () => {
  await using h = await startBinary({ server: { maxPayload: 1024 } });
  const c = await FbpClient.connect({ port: h.port, id: "s1" });
  const header = new Uint8Array(14);
  const v = new DataView(header.buffer);
  v.setUint32(0, 0x12345678);
  v.setUint32(4, 70_000); // declared, never sent
  v.setUint8(8, FrameType.TELEMETRY);
  await c.sendRaw(header);
  assertEquals((await c.nextError())?.code, ErrorCode.FRAME_TOO_LARGE);
  await c.finished;
  await c.close();
});

Deno.test("FBP/1 frames split at every byte and many frames in one write are all handled in order", async () => {
  await using h = await startBinary();
  const c = await FbpClient.open(h.port);
  const frames = [
    encodeFrame({
      type: FrameType.HELLO,
      flags: 0,
      seq: 1,
      payload: encodeHello({ id: "s1", token: "", keepAlive: 30 }),
    }),
    ...[2, 3, 4].map((seq) =>
      encodeFrame({
        type: FrameType.TELEMETRY,
        flags: FLAG_ACK_REQUESTED,
        seq,
        payload: encodeTelemetry({ channel: "c", data: enc(`m${seq}`) }),
      })
    ),
  ];
  const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let o = 0;
  for (const f of frames) {
    all.set(f, o);
    o += f.length;
  }
  for (let i = 0; i < all.length; i++) await c.sendRaw(all.subarray(i, i + 1)); // byte by byte
  const sticky = [5, 6, 7, 8, 9].map((seq) =>
    encodeFrame({
      type: FrameType.TELEMETRY,
      flags: FLAG_ACK_REQUESTED,
      seq,
      payload: encodeTelemetry({ channel: "c", data: enc(`m${seq}`) }),
    })
  );
  const joined = new Uint8Array(sticky.reduce((n, f) => n + f.length, 0));
  o = 0;
  for (const f of sticky) {
    joined.set(f, o);
    o += f.length;
  }
  await c.sendRaw(joined); // many in one write
  const seqs: number[] = [];
  assertEquals((await c.nextFrame())?.type, FrameType.HELLO_ACK);
  for (let i = 0; i < 8; i++) {
    const f = await c.nextFrame();
    assertEquals(f?.type, FrameType.ACK);
    seqs.push(f!.seq);
  }
  assertEquals(seqs, [2, 3, 4, 5, 6, 7, 8, 9]);
  await waitFor(
    () => h.seen.filter((m) => m.topic === "devices/s1/telemetry/c").length === 8,
    "8 messages",
  );
  assertEquals(
    h.seen.filter((m) => m.topic === "devices/s1/telemetry/c").map((m) => dec(m.payload)),
    ["m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"],
  );
  await c.close();
});

Deno.test("FBP/1 ACKs of 500 pipelined frames come back in frame order and messages keep their order", async () => {
  await using h = await startBinary({ core: { concurrency: 8 } });
  const c = await FbpClient.connect({ port: h.port, id: "s1" });
  const order: number[] = [];
  await Promise.all(
    Array.from(
      { length: 500 },
      (_, i) => c.telemetry(enc(String(i)), { ack: true }).then(() => order.push(i)),
    ),
  );
  assertEquals(order, Array.from({ length: 500 }, (_, i) => i));
  await waitFor(
    () => h.seen.filter((m) => m.deviceId === "s1" && m.topic.endsWith("telemetry")).length === 500,
    "500",
  );
  const got = h.seen.filter((m) => m.topic === "devices/s1/telemetry").map((m) =>
    Number(dec(m.payload))
  );
  assertEquals(got, Array.from({ length: 500 }, (_, i) => i));
  await c.close();
});

Deno.test("FBP/1 a command published on devices/{id}/commands/{name} reaches the device and its ACK is published", async () => {
  await using h = await startBinary();
  const c = await FbpClient.connect({ port: h.port, id: "s1" });
  await waitFor(() => h.core.router.size >= 2, "command subscription");
  await h.core.publish(
    createMessage({ topic: "devices/s1/commands/reboot", payload: enc("now"), qos: 1 }),
  );
  const cmd = await c.nextCommand();
  assertEquals([cmd?.name, dec(cmd!.data), cmd?.ackRequested], ["reboot", "now", true]);
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/acks/reboot"), "ack message");
  const ack = h.seen.find((m) => m.topic === "devices/s1/acks/reboot")!;
  assertEquals(JSON.parse(dec(ack.payload)), { seq: cmd!.seq, status: 0 });
  await c.close();
});

Deno.test("FBP/1 keepalive: no frame for 1.5x keepalive gets ERROR 7, the connection closes and presence goes offline", async () => {
  const clock = new FakeClock(Date.now());
  await using h = await startBinary({ clock, core: { timerResolutionMs: 1 } });
  const c = await FbpClient.connect({ port: h.port, id: "s1", keepAlive: 10 });
  clock.tick(14_000);
  await c.ping(); // refreshes the deadline to now + 15 s
  clock.tick(14_000);
  await new Promise((r) => setTimeout(r, 20));
  assert(!c.ended, "reaped although a frame refreshed the deadline");
  clock.tick(1_001);
  assertEquals((await c.nextError())?.code, ErrorCode.KEEPALIVE_TIMEOUT);
  await c.finished;
  await waitFor(
    () => dec(h.core.retained.get("devices/s1/status")!.payload) === "offline",
    "offline",
  );
  await c.close();
});

Deno.test("FBP/1 a second HELLO for a connected id takes over: the old connection gets ERROR 8 and closes", async () => {
  await using h = await startBinary();
  const old = await FbpClient.connect({ port: h.port, id: "s1" });
  const fresh = await FbpClient.connect({ port: h.port, id: "s1" });
  assertEquals((await old.nextError())?.code, ErrorCode.SESSION_TAKEN_OVER);
  await old.finished;
  assertEquals(await fresh.telemetry(enc("still here"), { ack: true }), AckStatus.OK);
  assertEquals(h.core.registry.get("s1")?.state, "online");
  await h.core.publish(createMessage({ topic: "devices/s1/commands/x", payload: none }));
  assertEquals((await fresh.nextCommand())?.name, "x");
  await old.close();
  await fresh.close();
});

Deno.test("FBP/1 BYE from the device is answered with BYE, the connection closes and presence goes offline", async () => {
  await using h = await startBinary();
  const c = await FbpClient.connect({ port: h.port, id: "s1" });
  await c.bye(0);
  assert(c.ended);
  await waitFor(
    () => dec(h.core.retained.get("devices/s1/status")!.payload) === "offline",
    "offline",
  );
});

Deno.test("FBP/1 server close sends ERROR 9 to every device and waits for them", async () => {
  await using h = await startBinary();
  const clients = await Promise.all(
    [1, 2, 3].map((i) => FbpClient.connect({ port: h.port, id: `d${i}` })),
  );
  await h.server.close();
  for (const c of clients) {
    assertEquals((await c.nextError())?.code, ErrorCode.SHUTTING_DOWN);
    await c.finished;
    await c.close();
  }
  assertEquals(h.server.connections, 0);
});

Deno.test("FBP/1 connections past maxConnections are refused with ERROR 9", async () => {
  await using h = await startBinary({ server: { maxConnections: 2 } });
  const a = await FbpClient.connect({ port: h.port, id: "a" });
  const b = await FbpClient.connect({ port: h.port, id: "b" });
  const c = await FbpClient.open(h.port);
  assertEquals((await c.nextError())?.code, ErrorCode.SHUTTING_DOWN);
  await c.finished;
  await Promise.all([a.close(), b.close(), c.close()]);
});

Deno.test("FBP/1 frames before garbage in the same write are handled before ERROR 1 closes the connection", async () => {
  await using h = await startBinary();
  const c = await FbpClient.connect({ port: h.port, id: "s1" });
  const good = encodeFrame({
    type: FrameType.TELEMETRY,
    flags: FLAG_ACK_REQUESTED,
    seq: 77,
    payload: encodeTelemetry({ channel: "", data: enc("before") }),
  });
  const bytes = new Uint8Array(good.length + 16);
  bytes.set(good);
  bytes.fill(0xee, good.length);
  await c.sendRaw(bytes);
  const ack = await c.nextFrame();
  assertEquals([ack?.type, ack?.seq], [FrameType.ACK, 77]);
  assertEquals((await c.nextError())?.code, ErrorCode.BAD_MAGIC);
  await c.finished;
  assert(h.seen.some((m) => m.topic === "devices/s1/telemetry" && dec(m.payload) === "before"));
  await c.close();
});

Deno.test("FBP/1 a device quiet after HELLO (no parser held) still parses later frames and reports stream offsets", async () => {
  await using h = await startBinary();
  const c = await FbpClient.open(h.port);
  const hello = encodeFrame({
    type: FrameType.HELLO,
    flags: 0,
    seq: 1,
    payload: encodeHello({ id: "s1", token: "", keepAlive: 30 }),
  });
  await c.sendRaw(hello);
  assertEquals((await c.nextFrame())?.type, FrameType.HELLO_ACK);
  await c.ping(); // a read after the quiet spell: a fresh parser takes over
  const ping = encodeFrame({ type: FrameType.PING, flags: 0, seq: 2, payload: none });
  const offset = hello.length + ping.length;
  await c.sendRaw(new Uint8Array(16).fill(0x58)); // not a frame: bad magic, fatal
  const e = await c.nextError();
  assertEquals(e?.code, ErrorCode.BAD_MAGIC);
  assert(e!.reason.includes(`offset ${offset} `), e!.reason);
  await c.finished;
  await c.close();
});
