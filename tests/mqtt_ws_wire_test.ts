/**
 * MQTT over WebSocket at the wire: a WebSocket client written byte by byte over TCP (`RawWs`)
 * sends handshakes and frames the tests choose, and every status, frame and close code the server
 * sends back is checked against RFC 6455 and MQTT 5.0 §6 / 3.1.1 §6.
 */

import { assert, assertEquals } from "./_assert.ts";
import { RawWs, startMqttWs } from "./_mqtt_ws_harness.ts";
import { until, within } from "./_mqtt_harness.ts";
import { acceptKey } from "../src/net/ws_handshake.ts";
import { FakeClock } from "../src/core/clock.ts";
import mqttPacket, { type Packet } from "mqtt-packet";
import { Buffer } from "node:buffer";

const BINARY = 0x2;
const TEXT = 0x1;
const CONT = 0x0;
const CLOSE = 0x8;
const PING = 0x9;
const PONG = 0xa;

function connectBytes(clientId: string, version: 3 | 4 | 5 = 4, extra = {}): Uint8Array {
  return mqttPacket.generate({
    cmd: "connect",
    protocolId: version === 3 ? "MQIsdp" : "MQTT",
    protocolVersion: version,
    clientId,
    clean: true,
    keepalive: 0,
    ...extra,
  } as Packet, { protocolVersion: version });
}

function warned(logs: string[], msg: string): boolean {
  return logs.some((l) => JSON.parse(l).msg === msg);
}

Deno.test("WebSocket upgrade: 101 with the RFC 6455 accept value and the mqtt subprotocol echoed [MQTT-6.0.0-4]", async () => {
  await using h = await startMqttWs();
  const key = "dGhlIHNhbXBsZSBub25jZQ==";
  const r = await h.rawWs({
    protocols: ["chat", "mqtt"],
    headers: { "Sec-WebSocket-Key": key },
  });
  assertEquals(r.status, 101);
  assertEquals(r.headers.get("sec-websocket-accept"), await acceptKey(key));
  assertEquals(r.headers.get("sec-websocket-protocol"), "mqtt");
  assertEquals(r.headers.get("upgrade")?.toLowerCase(), "websocket");
  const ack = await r.connect();
  assertEquals(ack.cmd, "connack");
  assert(r.frames.every((f) => !f.masked && f.op === BINARY), "server frames: binary, unmasked");
});

Deno.test("WebSocket upgrade: an MQTT 3.1 client offering only mqttv3.1 gets it echoed and connects", async () => {
  await using h = await startMqttWs();
  const r = await h.rawWs({ protocols: ["mqttv3.1"], version: 3 });
  assertEquals(r.headers.get("sec-websocket-protocol"), "mqttv3.1");
  const ack = await r.connect();
  assertEquals((ack as { returnCode?: number }).returnCode, 0);
});

Deno.test("WebSocket upgrade without the mqtt subprotocol is refused with 400 and the reason, and logged [MQTT-6.0.0-3]", async () => {
  await using h = await startMqttWs();
  const none = await RawWs.open(h.wsPort, { protocols: [] });
  assertEquals(none.status, 400);
  assert(none.body.includes('"mqtt" WebSocket subprotocol'), none.body);
  await none.waitEnded();
  const wrong = await RawWs.open(h.wsPort, { protocols: ["chat", "mqttv5"] });
  assertEquals(wrong.status, 400);
  assert(wrong.body.includes("it offered chat, mqttv5"), wrong.body);
  assertEquals(wrong.headers.get("sec-websocket-protocol"), undefined);
  await wrong.waitEnded();
  assert(warned(h.logs, "WebSocket upgrade refused"), "refusal logged");
  assertEquals(h.server.connectionCount, 0);
});

Deno.test("WebSocket upgrade from an origin not in allowedOrigins is refused with 403; an allowed origin and no Origin pass", async () => {
  await using h = await startMqttWs({
    websocket: { allowedOrigins: ["https://dash.example.com"] },
  });
  const bad = await RawWs.open(h.wsPort, { headers: { Origin: "https://evil.example" } });
  assertEquals(bad.status, 403);
  assert(bad.body.includes("origin https://evil.example is not in"), bad.body);
  await bad.waitEnded();
  const good = await h.rawWs({ headers: { Origin: "https://DASH.example.com" } });
  assertEquals(good.status, 101);
  const tool = await h.rawWs(); // no Origin: not a browser
  assertEquals(tool.status, 101);
  assert(warned(h.logs, "WebSocket upgrade refused"));
});

Deno.test("WebSocket upgrade errors get their HTTP status: another path 404, no Upgrade 426, version 8 426, POST 405, bad key 400, no Host 400, oversized head 431", async () => {
  await using h = await startMqttWs({ websocket: { maxHandshakeBytes: 2048 } });
  const cases: Array<[string, Parameters<typeof RawWs.open>[1], number, string]> = [
    ["path", { path: "/other" }, 404, "no MQTT endpoint at /other"],
    ["plain GET", { headers: { Upgrade: null, Connection: null } }, 426, "speaks WebSocket only"],
    ["version", { headers: { "Sec-WebSocket-Version": "8" } }, 426, "only 13 is served"],
    ["key", { headers: { "Sec-WebSocket-Key": "c2hvcnQ=" } }, 400, "Sec-WebSocket-Key"],
    ["host", { headers: { Host: null } }, 400, "no Host"],
    ["big", { headers: { "X-Pad": "x".repeat(3000) } }, 431, "exceeds the 2048 byte limit"],
    [
      "post",
      {
        request: new TextEncoder().encode(
          "POST /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        ),
      },
      405,
      "a WebSocket handshake is a GET",
    ],
    ["http/1.0", { request: new TextEncoder().encode("GET /mqtt HTTP/1.0\r\n\r\n") }, 400, ""],
  ];
  for (const [what, o, status, text] of cases) {
    const r = await RawWs.open(h.wsPort, o);
    assertEquals(r.status, status, what);
    assert(r.body.includes(text), `${what}: ${r.body}`);
    if (status === 426 && what === "version") {
      assertEquals(r.headers.get("sec-websocket-version"), "13");
    }
    await r.waitEnded();
  }
  // Every refused handshake gave its slot back.
  assertEquals(h.core.admission.connections("127.0.0.1"), 0);
});

Deno.test("WebSocket upgrade not completed within handshakeTimeoutMs gets 408 and its slot back (injected clock)", async () => {
  const clock = new FakeClock(1_000_000);
  await using h = await startMqttWs({ core: { clock }, websocket: { handshakeTimeoutMs: 5000 } });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.wsPort });
  await conn.write(new TextEncoder().encode("GET /mqtt HTTP/1.1\r\nHost: x\r\n")); // never ends
  const reply = (async () => {
    const buf = new Uint8Array(1024);
    let text = "";
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) return text;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
  })();
  let done = false;
  reply.then(() => done = true);
  // The deadline is armed once the socket is accepted: move time until it fires.
  await until(() => (clock.tick(1000), done), "the 408", 8000);
  const text = await reply;
  conn.close();
  assert(text.startsWith("HTTP/1.1 408 Request Timeout"), text);
  assert(text.includes("no complete request within 5000 ms"), text);
  await until(() => warned(h.logs, "WebSocket upgrade timed out"), "the log");
  assertEquals(h.core.admission.connections("127.0.0.1"), 0);
});

Deno.test("A text frame closes the connection with 1003 and a reason [MQTT-6.0.0-1], logged with the close code", async () => {
  await using h = await startMqttWs();
  const r = await h.rawWs();
  await r.connect();
  await r.sendFrame(TEXT, new TextEncoder().encode("hello"));
  const c = await r.closeFrame();
  assertEquals(c.code, 1003);
  assert(c.reason.includes("binary frames only"), c.reason);
  await r.waitEnded();
  const line = h.logs.map((l) => JSON.parse(l)).find((l) =>
    l.msg === "closing WebSocket: frame refused"
  );
  assertEquals(line?.closeCode, 1003);
});

Deno.test("Frames refused with 1002: unmasked, reserved bits, unknown opcode, long or fragmented control frames, bad 64-bit length", async () => {
  await using h = await startMqttWs();
  const cases: Array<[string, (r: RawWs) => Promise<void>, string]> = [
    ["unmasked", (r) => r.sendFrame(BINARY, connectBytes("u"), { mask: false }), "masked"],
    ["rsv1", (r) => r.sendFrame(BINARY, connectBytes("u"), { rsv: 4 }), "reserved bits"],
    ["opcode 3", (r) => r.sendFrame(0x3, new Uint8Array(1)), "unknown opcode 3"],
    ["opcode 0xB", (r) => r.sendFrame(0xb, new Uint8Array(1)), "unknown opcode 11"],
    ["long ping", (r) => r.sendFrame(PING, new Uint8Array(126)), "exceeds 125"],
    ["fragmented ping", (r) => r.sendFrame(PING, new Uint8Array(1), { fin: false }), "fragmented"],
    [
      "top bit",
      (r) => r.sendBytes(Uint8Array.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])),
      "top bit",
    ],
  ];
  for (const [what, send, text] of cases) {
    const r = await h.rawWs();
    await send(r);
    const c = await r.closeFrame();
    assertEquals(c.code, 1002, what);
    assert(c.reason.includes(text), `${what}: ${c.reason}`);
    await r.waitEnded();
  }
});

Deno.test("Fragmentation: a continuation with nothing to continue and a new message inside a fragmented one close with 1002", async () => {
  await using h = await startMqttWs();
  const orphan = await h.rawWs();
  await orphan.sendFrame(CONT, connectBytes("o"));
  const a = await orphan.closeFrame();
  assertEquals(a.code, 1002);
  assert(a.reason.includes("no message to continue"), a.reason);
  const inner = await h.rawWs();
  const bytes = connectBytes("i");
  await inner.sendFrame(BINARY, bytes.subarray(0, 4), { fin: false });
  await inner.sendFrame(BINARY, bytes.subarray(4));
  const b = await inner.closeFrame();
  assertEquals(b.code, 1002);
  assert(b.reason.includes("inside a fragmented one"), b.reason);
  await Promise.all([orphan.waitEnded(), inner.waitEnded()]);
});

Deno.test("A packet may span frames [MQTT-6.0.0-2]: CONNECT in a fragmented message with a Ping in between, then split over two messages", async () => {
  await using h = await startMqttWs();
  const r = await h.rawWs();
  const bytes = connectBytes("spanning");
  await r.sendFrame(BINARY, bytes.subarray(0, 3), { fin: false });
  await r.sendFrame(PING, new TextEncoder().encode("between"));
  await r.sendFrame(CONT, bytes.subarray(3, 9), { fin: false });
  await r.sendFrame(CONT, bytes.subarray(9));
  const ack = await r.packet();
  assertEquals(ack.cmd, "connack");
  const pong = await r.frame((f) => f.op === PONG, "the Pong");
  assertEquals(new TextDecoder().decode(pong.payload), "between");
  // A SUBSCRIBE split over two whole messages, byte by byte at the split.
  const sub = mqttPacket.generate({
    cmd: "subscribe",
    messageId: 7,
    subscriptions: [{ topic: "span/#", qos: 0 }],
  } as Packet);
  await r.sendFrame(BINARY, sub.subarray(0, 1));
  await r.sendFrame(BINARY, sub.subarray(1));
  const suback = await r.packet();
  assertEquals(suback.cmd, "suback");
  assertEquals((suback as { messageId: number }).messageId, 7);
});

Deno.test("A frame may hold several packets: CONNECT, SUBSCRIBE and PUBLISH in one frame are handled in order", async () => {
  await using h = await startMqttWs();
  const r = await h.rawWs();
  const parts = [
    connectBytes("several"),
    mqttPacket.generate({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: [{ topic: "many/#", qos: 1 }],
    } as Packet),
    mqttPacket.generate({
      cmd: "publish",
      topic: "many/x",
      payload: "self",
      qos: 1,
      messageId: 2,
      dup: false,
      retain: false,
    } as Packet),
  ];
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) (all.set(p, o), o += p.length);
  await r.sendFrame(BINARY, all);
  const seen: string[] = [];
  for (let i = 0; i < 4; i++) seen.push((await r.packet()).cmd);
  assertEquals(seen.slice(0, 2), ["connack", "suback"]);
  assertEquals(seen.slice(2).sort(), ["puback", "publish"]);
});

Deno.test("A frame longer than maxFrameSize closes with 1009 from its header alone; a 2^40-byte length too", async () => {
  await using h = await startMqttWs({ websocket: { maxFrameSize: 1024 } });
  const r = await h.rawWs();
  await r.connect();
  // The header announces 2048 bytes; none follow: the refusal does not wait for them.
  await r.sendFrame(BINARY, new Uint8Array(0), { length: 2048 });
  const c = await r.closeFrame();
  assertEquals(c.code, 1009);
  assert(c.reason.includes("length 2048 exceeds the 1024 byte limit"), c.reason);
  await r.waitEnded();
  const huge = await h.rawWs();
  await huge.sendFrame(BINARY, new Uint8Array(0), { length: 2 ** 40 });
  assertEquals((await huge.closeFrame()).code, 1009);
  await huge.waitEnded();
});

Deno.test("An MQTT packet larger than maxConnectPacketSize, spread over small frames before CONNECT, is refused by MQTT's cap (frames are never buffered whole)", async () => {
  await using h = await startMqttWs({ server: { maxConnectPacketSize: 1024 } });
  const r = await h.rawWs();
  const big = connectBytes("big", 4, { username: "u", password: Buffer.alloc(4096) });
  for (let i = 0; i < big.length; i += 500) {
    const op = i === 0 ? BINARY : CONT;
    await r.sendFrame(op, big.subarray(i, i + 500), { fin: i + 500 >= big.length });
  }
  const c = await r.closeFrame();
  assertEquals(c.code, 1002);
  await r.waitEnded();
});

Deno.test("Ping gets a Pong with its payload; a client Close gets the same code back and the socket closes; the will is published", async () => {
  await using h = await startMqttWs();
  const watcher = await h.client("tcp");
  await watcher.subscribeAsync("will/ws", { qos: 1 });
  const will = new Promise<string>((r) => watcher.on("message", (_t, p) => r(p.toString())));
  const r = await h.rawWs();
  await r.connect({ will: { topic: "will/ws", payload: "gone", qos: 1, retain: false } } as never);
  await r.sendFrame(PING, Uint8Array.from([1, 2, 3]));
  const pong = await r.frame((f) => f.op === PONG, "the Pong");
  assertEquals([...pong.payload], [1, 2, 3]);
  assert(!pong.masked);
  await r.sendFrame(CLOSE, Uint8Array.from([0x0f, 0xa0])); // 4000, no DISCONNECT first
  assertEquals((await r.closeFrame()).code, 4000);
  await r.waitEnded();
  assertEquals(await within(will, 5000, "the will"), "gone");
});

Deno.test("A client Close with a bad code gets 1002 and with a non-UTF-8 reason 1007", async () => {
  await using h = await startMqttWs();
  const bad = await h.rawWs();
  await bad.sendFrame(CLOSE, Uint8Array.from([0x03, 0xed])); // 1005 must never be sent
  assertEquals((await bad.closeFrame()).code, 1002);
  const utf = await h.rawWs();
  await utf.sendFrame(CLOSE, Uint8Array.from([0x03, 0xe8, 0xc3, 0x28]));
  assertEquals((await utf.closeFrame()).code, 1007);
  const one = await h.rawWs();
  await one.sendFrame(CLOSE, Uint8Array.from([0x03]));
  assertEquals((await one.closeFrame()).code, 1002);
  await Promise.all([bad.waitEnded(), utf.waitEnded(), one.waitEnded()]);
});

Deno.test("An MQTT protocol error over WebSocket: v5 DISCONNECT 0x82 in a binary frame, then Close 1002 with the reason", async () => {
  await using h = await startMqttWs();
  const r = await h.rawWs({ version: 5 });
  await r.connect();
  await r.mqtt(connectBytes("again", 5)); // a second CONNECT [MQTT-3.1.0-2]
  const d = await r.packet();
  assertEquals(d.cmd, "disconnect");
  assertEquals((d as { reasonCode?: number }).reasonCode, 0x82);
  const c = await r.closeFrame();
  assertEquals(c.code, 1002);
  assert(c.reason.includes("already connected"), c.reason);
  await r.waitEnded();
});

Deno.test("A session taken over from TCP: the WebSocket v5 client gets DISCONNECT 0x8E, then Close 1000", async () => {
  await using h = await startMqttWs();
  const r = await h.rawWs({ version: 5 });
  await r.connect({ clientId: "same-id" });
  const tcp = await h.client("tcp", { clientId: "same-id", protocolVersion: 5 });
  assert(tcp.connected);
  const d = await r.packet();
  assertEquals((d as { reasonCode?: number }).reasonCode, 0x8e);
  assertEquals((await r.closeFrame()).code, 1000);
  await r.waitEnded();
});

Deno.test("Server shutdown: a WebSocket v5 client gets DISCONNECT 0x8B, then Close 1001 (going away)", async () => {
  const h = await startMqttWs({ websocket: { closeTimeoutMs: 300 } }); // the raw client never answers
  const r = await h.rawWs({ version: 5 });
  await r.connect();
  const closing = h.server.close();
  const d = await r.packet();
  assertEquals((d as { reasonCode?: number }).reasonCode, 0x8b);
  const c = await r.closeFrame();
  assertEquals(c.code, 1001);
  assert(c.reason.includes("shutting down"), c.reason);
  await r.waitEnded();
  await closing;
  await h[Symbol.asyncDispose]();
});

Deno.test("Frames the client sent right behind its upgrade request are read (no wait for the 101)", async () => {
  await using h = await startMqttWs();
  const key = btoa("0123456789abcdef");
  const head = new TextEncoder().encode(
    `GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n`,
  );
  const { frame } = await import("./_mqtt_ws_harness.ts");
  const f = frame(BINARY, connectBytes("eager"));
  const req = new Uint8Array(head.length + f.length);
  req.set(head);
  req.set(f, head.length);
  const r = await RawWs.open(h.wsPort, { request: req });
  assertEquals(r.status, 101);
  assertEquals((await r.packet()).cmd, "connack");
  r.close();
});
