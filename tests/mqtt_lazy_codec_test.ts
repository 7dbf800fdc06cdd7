/**
 * The MQTT codec imports `npm:mqtt-packet` on first need (start-up: docs/operations.md): a plain
 * 3.1.1 CONNECT is decoded and answered without it, exactly as mqtt-packet would decode it, and
 * every other first read waits for the import. Checked against mqtt-packet itself and through a
 * fresh gateway process over real sockets.
 */
import mqttPacket, { type Packet } from "mqtt-packet";
import { Buffer } from "node:buffer";
import { assert, assertEquals } from "./_assert.ts";
import { fastConnect } from "../src/protocols/mqtt/_fast_codec.ts";
import { startFerry } from "./_ferry_process.ts";

function parseWithMqttPacket(frame: Uint8Array, protocolVersion?: number): Packet {
  const parser = mqttPacket.parser(protocolVersion ? { protocolVersion } : undefined);
  let got: Packet | undefined;
  let err: Error | undefined;
  parser.on("packet", (p: Packet) => got = p);
  parser.on("error", (e: Error) => err = e);
  parser.parse(Buffer.from(frame));
  if (err) throw err;
  if (!got) throw new Error("mqtt-packet decoded nothing");
  return got;
}

/** A packet as plain data, so a decoded object and mqtt-packet's `Packet` instance compare. */
function plain(p: unknown): unknown {
  return JSON.parse(JSON.stringify(p));
}

const connect = (o: Record<string, unknown>) =>
  new Uint8Array(
    mqttPacket.generate({ cmd: "connect", protocolId: "MQTT", protocolVersion: 4, ...o } as Packet),
  );

Deno.test("fastConnect decodes a plain 3.1.1 CONNECT exactly as mqtt-packet does", () => {
  const cases: Record<string, unknown>[] = [
    { clientId: "dev-1", clean: true, keepalive: 60 },
    { clientId: "", clean: true, keepalive: 0 },
    { clientId: "ünïcødé-✓", clean: true, keepalive: 65535 },
    { clientId: "u", clean: true, keepalive: 10, username: "alice" },
    { clientId: "p", clean: true, keepalive: 10, username: "bob", password: Buffer.from("s3cret") },
    { clientId: "e", clean: true, keepalive: 10, username: "", password: Buffer.alloc(0) },
    { clientId: "x".repeat(300), clean: true, keepalive: 1 }, // two-byte Remaining Length
  ];
  for (const c of cases) {
    const frame = connect(c);
    const fast = fastConnect(frame);
    assert(fast !== undefined, `not taken: ${JSON.stringify(c)}`);
    assertEquals(plain(fast), plain(parseWithMqttPacket(frame)));
  }
});

Deno.test("fastConnect leaves every other CONNECT to mqtt-packet", () => {
  const will = { topic: "w", payload: Buffer.from("x"), qos: 0, retain: false };
  const others: Uint8Array[] = [
    connect({ clientId: "a", clean: false, keepalive: 1 }), // a session to restore
    connect({ clientId: "a", clean: true, keepalive: 1, will }),
    new Uint8Array(mqttPacket.generate({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 5,
      clientId: "a",
      clean: true,
      keepalive: 1,
    } as Packet)),
    new Uint8Array(mqttPacket.generate({
      cmd: "connect",
      protocolId: "MQIsdp",
      protocolVersion: 3,
      clientId: "a",
      clean: true,
      keepalive: 1,
    } as Packet)),
  ];
  for (const f of others) assertEquals(fastConnect(f), undefined);
  const base = connect({ clientId: "a", clean: true, keepalive: 1 });
  const reserved = base.slice();
  reserved[9] |= 0x01; // [MQTT-3.1.2-3]
  assertEquals(fastConnect(reserved), undefined);
  const passwordOnly = base.slice();
  passwordOnly[9] |= 0x40; // a password flag without user name, and no field for it
  assertEquals(fastConnect(passwordOnly), undefined);
  const badUtf8 = connect({ clientId: "ab", clean: true, keepalive: 1 });
  badUtf8[badUtf8.length - 1] = 0xff;
  assertEquals(fastConnect(badUtf8), undefined);
  const trailing = new Uint8Array([...base, 0]);
  trailing[1]++; // one byte after the last field
  assertEquals(fastConnect(trailing), undefined);
  assertEquals(fastConnect(base.subarray(0, base.length - 1)), undefined); // truncated
});

/** Reads from `conn` until `bytes` have come (bounded by 10 s). */
async function readBytes(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let have = 0;
  const deadline = AbortSignal.timeout(10_000);
  while (have < n) {
    if (deadline.aborted) throw new Error(`only ${have} of ${n} bytes within 10 s`);
    const buf = new Uint8Array(n - have);
    const got = await conn.read(buf);
    if (got === null) throw new Error(`closed after ${have} of ${n} bytes`);
    out.set(buf.subarray(0, got), have);
    have += got;
  }
  return out;
}

function packetsOf(bytes: Uint8Array, protocolVersion: number): Packet[] {
  const parser = mqttPacket.parser({ protocolVersion });
  const got: Packet[] = [];
  parser.on("packet", (p: Packet) => got.push(p));
  parser.parse(Buffer.from(bytes));
  return got;
}

Deno.test("A fresh gateway answers a plain 3.1.1 CONNECT, then a SUBSCRIBE and QoS 1 PUBLISH sent at once", async () => {
  await using gw = await startFerry({});
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: gw.addresses.mqtt.port });
  try {
    await conn.write(connect({ clientId: "lazy-1", clean: true, keepalive: 30 }));
    assertEquals([...await readBytes(conn, 4)], [0x20, 0x02, 0x00, 0x00]);
    const sub = mqttPacket.generate({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: [{ topic: "lazy/t", qos: 1 }],
    } as Packet);
    const pub = mqttPacket.generate({
      cmd: "publish",
      topic: "lazy/t",
      payload: Buffer.from("hi"),
      qos: 1,
      messageId: 2,
      retain: false,
      dup: false,
    } as Packet);
    await conn.write(new Uint8Array([...sub, ...pub])); // needs mqtt-packet: waits for it
    // SUBACK (5 bytes), PUBACK (4), the PUBLISH back (2 + 2 + 6 + 2 + 2 = 14), in some order.
    const packets = packetsOf(await readBytes(conn, 23), 4);
    const cmds = packets.map((p) => p.cmd).sort();
    assertEquals(cmds, ["puback", "publish", "suback"]);
    const back = packets.find((p) => p.cmd === "publish") as { topic: string; payload: Uint8Array };
    assertEquals(back.topic, "lazy/t");
    assertEquals(new TextDecoder().decode(back.payload), "hi");
  } finally {
    conn.close();
  }
});

Deno.test("A fresh gateway's first read that is not a plain CONNECT (5.0 CONNECT and PINGREQ) waits for the codec and is answered", async () => {
  await using gw = await startFerry({});
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: gw.addresses.mqtt.port });
  try {
    const c5 = mqttPacket.generate({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 5,
      clientId: "lazy-5",
      clean: true,
      keepalive: 30,
    } as Packet);
    await conn.write(new Uint8Array([...c5, 0xc0, 0x00]));
    const head = await readBytes(conn, 2);
    const connack = new Uint8Array([...head, ...await readBytes(conn, head[1])]);
    const [ack] = packetsOf(connack, 5) as Array<{ cmd: string; reasonCode?: number }>;
    assertEquals([ack.cmd, ack.reasonCode], ["connack", 0]);
    assertEquals([...await readBytes(conn, 2)], [0xd0, 0x00]); // PINGRESP
  } finally {
    conn.close();
  }
});
