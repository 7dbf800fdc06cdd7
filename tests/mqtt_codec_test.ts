import type { Packet } from "mqtt-packet";
import {
  loadCodec,
  MqttFrameDecoder,
  MqttMalformedError,
  MqttProtocolError,
} from "../src/protocols/mqtt/mod.ts";
import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { fuzzInput, Inbox, prng, seedPackets, startMqtt } from "./_mqtt_harness.ts";
import { waitFor } from "./_harness.ts";

await loadCodec(); // the codec imports npm:mqtt-packet on first need

function decodeAll(bytes: Uint8Array, version: 3 | 4 | 5): Packet[] {
  const d = new MqttFrameDecoder();
  const connect = seedPackets(version)[0];
  d.push(connect); // teach the parser the protocol level, as a connection does
  return d.push(bytes);
}

for (const v of [3, 4, 5] as const) {
  Deno.test(`MqttFrameDecoder decodes every client packet kind of level ${v}, whole or byte by byte`, () => {
    const seeds = seedPackets(v);
    const whole = new MqttFrameDecoder();
    const bytewise = new MqttFrameDecoder();
    const a: Packet[] = [];
    const b: Packet[] = [];
    for (const s of seeds) {
      a.push(...whole.push(s));
      for (const x of s) b.push(...bytewise.push(new Uint8Array([x])));
    }
    assertEquals(a.map((p) => p.cmd), [
      "connect",
      "publish",
      "publish",
      "subscribe",
      "unsubscribe",
      "puback",
      "pubrec",
      "pubrel",
      "pubcomp",
      "pingreq",
      "disconnect",
    ]);
    assertEquals(b.map((p) => p.cmd), a.map((p) => p.cmd));
    const pub = a[1] as { topic: string; payload: Uint8Array; messageId: number; retain: boolean };
    assertEquals([pub.topic, new TextDecoder().decode(pub.payload), pub.messageId, pub.retain], [
      "a/b",
      "hello",
      3,
      true,
    ]);
    if (v === 5) {
      assertEquals((a[1] as { properties?: unknown }).properties, {
        userProperties: { k: "v" },
        contentType: "t",
      });
    }
  });
}

Deno.test("MqttFrameDecoder stops after a packet when emit returns true, and resumes on the rest (also across a split frame)", () => {
  for (const v of [4, 5] as const) {
    const seeds = seedPackets(v);
    const all = new Uint8Array(seeds.reduce((n, s) => n + s.length, 0));
    let o = 0;
    for (const s of seeds) {
      all.set(s, o);
      o += s.length;
    }
    const expected = new MqttFrameDecoder().push(all).map((p) => p.cmd);
    // Split the input in two reads inside the third packet; stop after every packet.
    const cut = seeds[0].length + seeds[1].length + 2;
    const d = new MqttFrameDecoder();
    const got: string[] = [];
    let calls = 0;
    for (const read of [all.subarray(0, cut), all.subarray(cut)]) {
      let rest = read;
      while (rest.length !== 0) {
        calls++;
        const used = d.parse(rest, (p) => {
          got.push(p.cmd);
          return true;
        });
        assert(used > 0 && used <= rest.length, `consumed ${used} of ${rest.length}`);
        rest = rest.subarray(used);
      }
    }
    assertEquals(got, expected);
    // One call per packet, plus the call that only buffered the first part of the split one.
    assertEquals(calls, expected.length + 1);
    assertEquals(d.buffered, 0);
    // An emit returning anything but true (Array.push returns a count) does not stop decoding.
    assertEquals(new MqttFrameDecoder().parse(all, () => 1), all.length);
  }
});

Deno.test("MqttFrameDecoder rejects a packet above the size cap before buffering its body", () => {
  const d = new MqttFrameDecoder({ maxPacketSize: 1024 });
  // PUBLISH claiming 1,000,000 bytes: only the 4 header bytes are needed to refuse it
  const err = assertThrows(
    () => d.push(new Uint8Array([0x30, 0xc0, 0x84, 0x3d])),
    MqttMalformedError,
  );
  assertEquals((err as MqttMalformedError).reasonCode, 0x95);
});

Deno.test("MqttFrameDecoder rejects a Remaining Length longer than four bytes", () => {
  const d = new MqttFrameDecoder({ protocolVersion: 4 });
  assertThrows(
    () => d.push(new Uint8Array([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])),
    MqttMalformedError,
  );
});

Deno.test("MqttFrameDecoder rejects a Remaining Length that is not minimally encoded", () => {
  const d = new MqttFrameDecoder({ protocolVersion: 4 });
  assertThrows(() => d.push(new Uint8Array([0xc0, 0x80, 0x00])), MqttMalformedError); // [MQTT-1.5.5-1]
});

Deno.test("MqttFrameDecoder rejects ill-formed UTF-8 and U+0000 in a topic but accepts an encoded U+FFFD", () => {
  const pub = (topic: number[]) =>
    new Uint8Array([0x30, 2 + topic.length, 0, topic.length, ...topic]);
  assertThrows(() => decodeAll(pub([0x61, 0xc3]), 4), MqttMalformedError); // truncated sequence
  assertThrows(() => decodeAll(pub([0x61, 0xed, 0xa0, 0x80]), 4), MqttMalformedError); // surrogate
  assertThrows(() => decodeAll(pub([0x61, 0x00]), 4), MqttMalformedError); // [MQTT-1.5.4-2]
  const ok = decodeAll(pub([0x61, 0xef, 0xbf, 0xbd]), 4);
  assertEquals((ok[0] as { topic: string }).topic, "a\uFFFD");
});

Deno.test("MqttFrameDecoder rejects a v5 property that appears twice as a protocol error", () => {
  // PUBLISH QoS 0 "t", properties: content type "a" twice
  const bytes = new Uint8Array([0x30, 11, 0, 1, 0x74, 8, 0x03, 0, 1, 0x61, 0x03, 0, 1, 0x61]);
  bytes[1] = bytes.length - 2;
  assertThrows(() => decodeAll(bytes, 5), MqttProtocolError);
});

Deno.test("MqttFrameDecoder reports an unknown protocol level as 0x84", () => {
  const d = new MqttFrameDecoder();
  const err = assertThrows(
    () => d.push(new Uint8Array([0x10, 13, 0, 4, 0x4d, 0x51, 0x54, 0x54, 9, 2, 0, 0, 0, 1, 0x78])),
    MqttProtocolError,
  );
  assertEquals((err as MqttProtocolError).reasonCode, 0x84);
});

Deno.test("MqttFrameDecoder errors when the input ends inside a packet", () => {
  const d = new MqttFrameDecoder({ protocolVersion: 4 });
  d.push(new Uint8Array([0xc0]));
  let failed = false;
  try {
    d.end();
  } catch (e) {
    failed = e instanceof MqttMalformedError;
  }
  assert(failed);
});

Deno.test("fuzz sample: 6,000 random and mutated inputs only ever raise MQTT decode errors", () => {
  const rand = prng(0xf3ee);
  let packets = 0;
  let errors = 0;
  for (const v of [3, 4, 5] as const) {
    const seeds = seedPackets(v);
    for (let i = 0; i < 2000; i++) {
      const d = new MqttFrameDecoder({ maxPacketSize: 4096 });
      if (v !== 4) d.push(seeds[0]);
      const input = fuzzInput(rand, seeds);
      try {
        packets += d.push(input).length;
      } catch (e) {
        if (!(e instanceof MqttMalformedError || e instanceof MqttProtocolError)) {
          throw new Error(`unexpected ${e} for input ${Array.from(input)}`);
        }
        errors++;
      }
    }
  }
  assert(packets > 0 && errors > 0);
});

Deno.test("fuzz over sockets: garbage connections are closed and a live session is unaffected", async () => {
  await using h = await startMqtt();
  const good = await h.client({ protocolVersion: 5 });
  const inbox = new Inbox(good);
  await good.subscribeAsync("alive", { qos: 1 });
  const rand = prng(42);
  const seeds = seedPackets(5);
  for (let round = 0; round < 5; round++) {
    const raws = await Promise.all(Array.from({ length: 10 }, () => h.raw(5)));
    await Promise.all(raws.map(async (r) => {
      await r.send(seeds[0]);
      for (let i = 0; i < 5; i++) await r.send(fuzzInput(rand, seeds));
      r.close();
    }));
    await good.publishAsync("alive", String(round), { qos: 1 });
  }
  await inbox.waitFor(5);
  await waitFor(() => h.server.connectionCount <= 1, "the bad connection closed", 20_000);
  assertEquals(h.server.connectionCount, 1);
  assertEquals(inbox.messages.map((m) => m.payload), ["0", "1", "2", "3", "4"]);
});

Deno.test("the hot-path PUBLISH and ack encoders produce the same bytes as mqtt-packet", async () => {
  const { encodeAck, encodePublish } = await import("../src/protocols/mqtt/_fast_codec.ts");
  const mqttPacket = (await import("mqtt-packet")).default;
  const { Buffer } = await import("node:buffer");
  for (const v of [4, 5] as const) {
    for (const qos of [0, 1, 2] as const) {
      for (const size of [0, 5, 200, 20_000]) {
        const p = {
          topic: "a/é/c",
          payload: Buffer.alloc(size, 7),
          qos,
          retain: size % 2 === 0,
          dup: qos > 0,
          messageId: qos ? 513 : undefined,
        };
        const ref = mqttPacket.generate({ cmd: "publish", ...p }, { protocolVersion: v });
        assertEquals(encodePublish(p, v === 5), new Uint8Array(ref), `v${v} qos${qos} ${size}`);
      }
    }
  }
  for (const cmd of ["puback", "pubrec", "pubrel", "pubcomp"] as const) {
    const ref = mqttPacket.generate({ cmd, messageId: 700 }, { protocolVersion: 4 });
    assertEquals(encodeAck(cmd, 700), new Uint8Array(ref));
  }
});

Deno.test("the hot-path decoder agrees with mqtt-packet on PUBLISH and acks", () => {
  for (const v of [4, 5] as const) {
    const seeds = seedPackets(v);
    const d = new MqttFrameDecoder();
    d.push(seeds[0]);
    const [pub] = d.push(seeds[v === 5 ? 2 : 1]) as Array<
      { topic: string; qos: number; retain: boolean }
    >;
    assertEquals([pub.topic, pub.qos, pub.retain], ["a/b", v === 5 ? 0 : 1, v !== 5]);
    const acks = d.push(new Uint8Array([0x40, 2, 1, 2, 0x62, 2, 0, 9, 0xc0, 0])) as Array<
      { cmd: string; messageId?: number }
    >;
    assertEquals(acks.map((a) => [a.cmd, a.messageId]), [["puback", 258], ["pubrel", 9], [
      "pingreq",
      undefined,
    ]]);
  }
  // PUBREL with flags 0 is malformed ([MQTT-3.6.1-1]), left to the general path which refuses it
  const d = new MqttFrameDecoder({ protocolVersion: 4 });
  assertThrows(() => d.push(new Uint8Array([0x60, 2, 0, 9])), MqttMalformedError);
});
