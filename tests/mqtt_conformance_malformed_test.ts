/**
 * Malformed input, byte for byte (issue #14, items 1–3): raw bytes in, raw bytes out. MQTT 5
 * property sections are read from the raw frame by a strict scan (a property that runs past its
 * section, a truncated string, an unknown identifier, a value of the wrong type: 0x81), MQTT 5
 * acknowledgements must hold a packet identifier and nothing after their properties, and an
 * acknowledgement with packet identifier 0, or of the wrong kind for the message in flight, or an
 * UNSUBSCRIBE with an empty filter closes the connection.
 *
 * Every raw client reads what the server sends strictly (`tests/_mqtt_wire.ts`), and the harness
 * fails a test whose server wrote anything that is not a whole, well-formed packet; the last test
 * plays every malformed input of this file on one server and checks each byte it sent.
 *
 * v5 clients connect with Request Problem Information 0, so the server's DISCONNECT carries no
 * Reason String and its bytes are exact: `e0 02 81 00` (Malformed Packet), `e0 02 82 00`.
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import {
  type MqttHarness,
  mqttString,
  type RawClient,
  rawPacket,
  startMqtt,
} from "./_mqtt_harness.ts";

const te = new TextEncoder();
const s = (x: string): number[] => [...te.encode(x)];
const hex = (f: Uint8Array): string => [...f].map((x) => x.toString(16).padStart(2, "0")).join(" ");

/** DISCONNECT 0x81 Malformed Packet, without properties (the client asked for no Reason String). */
const MALFORMED = "e0 02 81 00";
/** DISCONNECT 0x82 Protocol Error. */
const PROTOCOL_ERROR = "e0 02 82 00";
const PINGREQ = Uint8Array.from([0xc0, 0]);

/** CONNECT "MQTT" 5, Clean Start, keepalive 0, Request Problem Information 0, client id `id`. */
function connect5(id: string): Uint8Array {
  return rawPacket(0x10, [...mqttString("MQTT"), 5, 0x02, 0, 0, 2, 0x17, 0, ...mqttString(id)]);
}

/** CONNECT "MQTT" 4, clean session, keepalive 0, client id `id`. */
function connect4(id: string): Uint8Array {
  return rawPacket(0x10, [...mqttString("MQTT"), 4, 0x02, 0, 0, ...mqttString(id)]);
}

let n = 0;

/** A raw client of `version`, connected (CONNACK read). */
async function connected(h: MqttHarness, version: 4 | 5): Promise<RawClient> {
  const r = await h.raw(version);
  const id = `mal-${++n}`;
  await r.send(version === 5 ? connect5(id) : connect4(id));
  assertEquals((await r.next()).cmd, "connack");
  return r;
}

/** Sends `input` after CONNACK; returns every frame the server sent after CONNACK, once it closed. */
async function closedAfter(h: MqttHarness, version: 4 | 5, input: Uint8Array): Promise<string[]> {
  const r = await connected(h, version);
  await r.send(input);
  await r.waitClosed();
  assertEquals(r.wireProblems, []);
  return r.frames.slice(1).map(hex);
}

/** Sends `input` then PINGREQ; returns the frames after CONNACK up to PINGRESP (still open). */
async function answeredBefore(r: RawClient, input: Uint8Array): Promise<string[]> {
  const from = r.frames.length;
  await r.send(input);
  await r.send(PINGREQ);
  while ((await r.next()).cmd !== "pingresp") { /* what came before PINGRESP is in r.frames */ }
  assert(!r.closed, "the connection was closed");
  return r.frames.slice(from, -1).map(hex);
}

// ---- item 1: MQTT 5 property sections, every packet type ----

/** [what, input] pairs: each is malformed (0x81), whatever packet carries it. */
const MALFORMED_PROPERTIES: Array<[string, Uint8Array]> = [
  // The bytes: QoS 1, id 0x1234, a 1-byte section holding a 4-byte Message Expiry Interval.
  [
    "PUBLISH Message Expiry Interval overrunning a 1-byte Property Length",
    rawPacket(0x32, [
      ...mqttString("topic"),
      0x12,
      0x34,
      1,
      0x02,
      ...s("payload"),
    ]),
  ],
  [
    "PUBLISH User Property without its value",
    rawPacket(0x32, [
      ...mqttString("t"),
      0,
      1,
      4,
      0x26,
      ...mqttString("a"),
      ...s("x"),
    ]),
  ],
  ["PUBLISH Content Type without its string", rawPacket(0x32, [...mqttString("t"), 0, 1, 1, 0x03])],
  [
    "PUBLISH Content Type longer than its section",
    rawPacket(0x32, [
      ...mqttString("t"),
      0,
      1,
      4,
      0x03,
      0,
      5,
      0x61,
      ...s("bcdef"),
    ]),
  ],
  [
    "PUBLISH Property Length past the end of the packet",
    rawPacket(0x30, [
      ...mqttString("t"),
      9,
      0x01,
      0,
    ]),
  ],
  [
    "PUBLISH Property Length not minimally encoded",
    rawPacket(0x30, [
      ...mqttString("t"),
      0x80,
      0x00,
      ...s("x"),
    ]),
  ],
  ["PUBLISH unknown property 0x7f", rawPacket(0x30, [...mqttString("t"), 2, 0x7f, 0, ...s("x")])],
  [
    "PUBLISH Content Type of ill-formed UTF-8",
    rawPacket(0x30, [
      ...mqttString("t"),
      4,
      0x03,
      0,
      1,
      0xff,
      ...s("x"),
    ]),
  ],
  [
    "PUBLISH User Property name with U+0000",
    rawPacket(0x30, [
      ...mqttString("t"),
      7,
      0x26,
      0,
      1,
      0,
      ...mqttString("v"),
      ...s("x"),
    ]),
  ],
  [
    "SUBSCRIBE Subscription Identifier of five bytes",
    rawPacket(0x82, [
      0,
      1,
      6,
      0x0b,
      0x80,
      0x80,
      0x80,
      0x80,
      0x01,
      ...mqttString("f"),
      0,
    ]),
  ],
  ["SUBSCRIBE Property Length past the filters", rawPacket(0x82, [0, 1, 9, ...mqttString("f"), 0])],
  ["UNSUBSCRIBE unknown property 0x7f", rawPacket(0xa2, [0, 1, 2, 0x7f, 0, ...mqttString("f")])],
  [
    "UNSUBSCRIBE Reason String (not an UNSUBSCRIBE property)",
    rawPacket(0xa2, [
      0,
      1,
      3,
      0x1f,
      0,
      0,
      ...mqttString("f"),
    ]),
  ],
  ["PUBACK Property Length past the end", rawPacket(0x40, [0, 1, 0, 5, 0x1f, 0])],
  ["PUBREC User Property without its value", rawPacket(0x50, [0, 1, 0, 4, 0x26, 0, 1, 0x61])],
  ["PUBREL unknown property 0x7f", rawPacket(0x62, [0, 1, 0, 2, 0x7f, 0])],
  ["PUBCOMP Reason String of ill-formed UTF-8", rawPacket(0x70, [0, 1, 0, 4, 0x1f, 0, 1, 0xc0])],
  ["DISCONNECT Session Expiry Interval cut off", rawPacket(0xe0, [0x00, 3, 0x11, 0, 0])],
  ["AUTH Authentication Method without its string", rawPacket(0xf0, [0x18, 1, 0x15])],
];

for (const [what, input] of MALFORMED_PROPERTIES) {
  Deno.test(`MQTT 5 §2.2.2.1 ${what} gets DISCONNECT 0x81 and the connection closes`, async () => {
    await using h = await startMqtt();
    assertEquals(await closedAfter(h, 5, input), [MALFORMED]);
  });
}

Deno.test("MQTT 5 §2.2.2.1 a PUBLISH whose properties overrun is neither acknowledged nor delivered", async () => {
  await using h = await startMqtt();
  const sub = await connected(h, 5);
  // SUBSCRIBE id 1, no properties, "topic" and "t" at QoS 1
  assertEquals(
    await answeredBefore(
      sub,
      rawPacket(0x82, [0, 1, 0, ...mqttString("topic"), 1, ...mqttString("t"), 1]),
    ),
    ["90 05 00 01 00 01 01"],
  );
  for (const [what, input] of MALFORMED_PROPERTIES.filter(([w]) => w.startsWith("PUBLISH"))) {
    assertEquals(await closedAfter(h, 5, input), [MALFORMED], what);
  }
  // Nothing reached the subscriber (a PUBLISH would come before PINGRESP).
  assertEquals(await answeredBefore(sub, PINGREQ), []);
});

Deno.test("MQTT 5 §2.2.2.1 a CONNECT whose properties or will properties overrun is closed without CONNACK", async () => {
  await using h = await startMqtt();
  const inputs = [
    // Property Length 5 holding a Session Expiry Interval cut after two bytes, then the client id
    rawPacket(0x10, [...mqttString("MQTT"), 5, 0x02, 0, 0, 5, 0x11, 0, 0, ...mqttString("c1")]),
    // will flag: will Property Length 4 holding a Content Type of 5 bytes
    rawPacket(0x10, [
      ...mqttString("MQTT"),
      5,
      0x06,
      0,
      0,
      0,
      ...mqttString("c2"),
      4,
      0x03,
      0,
      5,
      0x61,
      ...mqttString("w"),
      ...mqttString("x"),
    ]),
    // CONNECT User Property whose value is missing
    rawPacket(0x10, [
      ...mqttString("MQTT"),
      5,
      0x02,
      0,
      0,
      4,
      0x26,
      0,
      1,
      0x61,
      ...mqttString("c3"),
    ]),
  ];
  for (const input of inputs) {
    const r = await h.raw(5);
    await r.send(input);
    assertEquals(await r.waitClosed(), [], hex(input));
  }
});

Deno.test("MQTT 5 §2.2.2.2 a well-formed property section is read from the raw bytes: User Properties in order, Content Type, a payload that starts after the section", async () => {
  await using h = await startMqtt();
  const sub = await connected(h, 5);
  await answeredBefore(sub, rawPacket(0x82, [0, 1, 0, ...mqttString("wf"), 0]));
  const pub = await connected(h, 5);
  // PUBLISH QoS 1 id 2 "wf": User Property a=1, a=2, Content Type "c"; payload "pay"
  const props = [
    0x26,
    ...mqttString("a"),
    ...mqttString("1"),
    0x26,
    ...mqttString("a"),
    ...mqttString("2"),
    0x03,
    ...mqttString("c"),
  ];
  assertEquals(
    await answeredBefore(
      pub,
      rawPacket(0x32, [...mqttString("wf"), 0, 2, props.length, ...props, ...s("pay")]),
    ),
    ["40 02 00 02"],
  );
  const got = await sub.next() as {
    topic: string;
    payload: Uint8Array;
    properties?: Record<string, unknown>;
  };
  assertEquals(new TextDecoder().decode(got.payload), "pay");
  assertEquals(got.properties?.contentType, "c");
  assertEquals(got.properties?.userProperties, { a: ["1", "2"] });
});

// ---- item 2: nothing Ferry writes is ever cut short ----

Deno.test("issue #14: a v5 PUBREC `50 00` or PUBREL `62 00` gets DISCONNECT 0x81, never a bodiless PUBREL `62 04` or PUBCOMP `70 04`", async () => {
  await using h = await startMqtt();
  assertEquals(await closedAfter(h, 5, Uint8Array.from([0x50, 0x00])), [MALFORMED]);
  assertEquals(await closedAfter(h, 5, Uint8Array.from([0x62, 0x00])), [MALFORMED]);
});

// ---- item 3: acknowledgements ----

for (
  const [what, input] of [
    ["PUBACK with remaining length 0", [0x40, 0]],
    ["PUBACK with remaining length 1", [0x40, 1, 0]],
    ["PUBACK with a byte after its properties", [0x40, 5, 0, 1, 0, 0, 0xff]],
    ["PUBCOMP with remaining length 0", [0x70, 0]],
    ["PUBCOMP with remaining length 1", [0x70, 1, 0]],
    ["PUBCOMP with a byte after its properties", [0x70, 5, 0, 1, 0, 0, 0xff]],
    ["PUBREC with remaining length 1", [0x50, 1, 0]],
    ["PUBREL with a byte after its properties", [0x62, 5, 0, 1, 0, 0, 0xff]],
  ] as Array<[string, number[]]>
) {
  Deno.test(`MQTT 5 §3.4.2 ${what} is malformed: DISCONNECT 0x81`, async () => {
    await using h = await startMqtt();
    assertEquals(await closedAfter(h, 5, Uint8Array.from(input)), [MALFORMED]);
  });
}

Deno.test("MQTT 5 §3.4.2 a PUBACK of remaining length 2 or 3 (reason code, no properties) is well-formed", async () => {
  await using h = await startMqtt();
  const r = await connected(h, 5);
  assertEquals(await answeredBefore(r, Uint8Array.from([0x40, 2, 0, 9])), []);
  assertEquals(await answeredBefore(r, Uint8Array.from([0x40, 3, 0, 9, 0x10])), []);
  assertEquals(await answeredBefore(r, Uint8Array.from([0x70, 4, 0, 9, 0, 0])), []);
});

for (
  const [name, first] of [["PUBACK", 0x40], ["PUBREC", 0x50], ["PUBREL", 0x62], [
    "PUBCOMP",
    0x70,
  ]] as const
) {
  Deno.test(`[MQTT-2.3.1-1] a 3.1.1 ${name} with packet identifier 0 closes the connection, unanswered`, async () => {
    await using h = await startMqtt();
    assertEquals(await closedAfter(h, 4, Uint8Array.from([first, 2, 0, 0])), []);
  });
  Deno.test(`[MQTT-2.2.1-3] a v5 ${name} with packet identifier 0 gets DISCONNECT 0x82`, async () => {
    await using h = await startMqtt();
    assertEquals(await closedAfter(h, 5, Uint8Array.from([first, 2, 0, 0])), [PROTOCOL_ERROR]);
  });
}

/**
 * A raw client of `version` subscribed to `wk` at `qos`, holding one message in flight from the
 * server; returns it and the packet identifier the server chose.
 */
async function inFlight(h: MqttHarness, version: 4 | 5, qos: 1 | 2): Promise<[RawClient, number]> {
  const r = await connected(h, version);
  const props = version === 5 ? [0] : [];
  await answeredBefore(r, rawPacket(0x82, [0, 1, ...props, ...mqttString("wk"), qos]));
  const pub = await connected(h, version);
  await answeredBefore(
    pub,
    rawPacket(0x30 | (qos << 1), [...mqttString("wk"), 0, 1, ...props, ...s("m")]),
  );
  const got = await r.next() as { cmd: string; messageId: number };
  assertEquals(got.cmd, "publish");
  return [r, got.messageId];
}

for (const version of [4, 5] as const) {
  const closing = version === 5 ? [PROTOCOL_ERROR] : [];
  const tag = version === 5 ? "v5, DISCONNECT 0x82" : "3.1.1";
  Deno.test(`[MQTT-4.8.0-1] PUBREC for a QoS 1 message in flight closes the connection without PUBREL (${tag})`, async () => {
    await using h = await startMqtt();
    const [r, id] = await inFlight(h, version, 1);
    const from = r.frames.length;
    await r.send(Uint8Array.from([0x50, 2, id >> 8, id & 0xff]));
    await r.waitClosed();
    assertEquals(r.frames.slice(from).map(hex), closing);
  });
  Deno.test(`[MQTT-4.8.0-1] PUBACK for a QoS 2 message in flight closes the connection (${tag})`, async () => {
    await using h = await startMqtt();
    const [r, id] = await inFlight(h, version, 2);
    const from = r.frames.length;
    await r.send(Uint8Array.from([0x40, 2, id >> 8, id & 0xff]));
    await r.waitClosed();
    assertEquals(r.frames.slice(from).map(hex), closing);
  });
  Deno.test(`[MQTT-4.8.0-1] PUBCOMP before PUBREC for a QoS 2 message closes the connection (${tag})`, async () => {
    await using h = await startMqtt();
    const [r, id] = await inFlight(h, version, 2);
    const from = r.frames.length;
    await r.send(Uint8Array.from([0x70, 2, id >> 8, id & 0xff]));
    await r.waitClosed();
    assertEquals(r.frames.slice(from).map(hex), closing);
  });
  Deno.test(`[MQTT-4.3.3-4] the right acknowledgements complete a QoS 2 delivery: PUBREC, PUBREL, PUBCOMP (${tag.slice(0, 4)})`, async () => {
    await using h = await startMqtt();
    const [r, id] = await inFlight(h, version, 2);
    const i = [id >> 8, id & 0xff];
    assertEquals(await answeredBefore(r, Uint8Array.from([0x50, 2, ...i])), [
      hex(Uint8Array.from([0x62, 2, ...i])),
    ]);
    assertEquals(await answeredBefore(r, Uint8Array.from([0x70, 2, ...i])), []);
  });
}

Deno.test("MQTT 5 §4.3.3 PUBREL follows only a PUBREC below 0x80: 0x80 ends the flow, for a known or an unknown id", async () => {
  await using h = await startMqtt();
  const [r, id] = await inFlight(h, 5, 2);
  // PUBREC id, 0x80 Unspecified error, no properties
  assertEquals(await answeredBefore(r, Uint8Array.from([0x50, 3, id >> 8, id & 0xff, 0x80])), []);
  assertEquals(await answeredBefore(r, Uint8Array.from([0x50, 3, 0, 99, 0x80])), []);
  // an unknown id reported as received is completed: PUBREL 0x92 Packet Identifier not found
  assertEquals(await answeredBefore(r, Uint8Array.from([0x50, 2, 0, 99])), ["62 04 00 63 92 00"]);
});

Deno.test("[MQTT-4.7.3-1] a 3.1.1 UNSUBSCRIBE with a zero-length topic filter closes the connection", async () => {
  await using h = await startMqtt();
  assertEquals(await closedAfter(h, 4, rawPacket(0xa2, [0, 1, 0, 0])), []);
  assertEquals(await closedAfter(h, 4, rawPacket(0xa2, [0, 1, ...mqttString("a/#/b")])), []);
});

Deno.test("[MQTT-4.7.3-1] a v5 UNSUBSCRIBE with a zero-length topic filter gets DISCONNECT 0x81", async () => {
  await using h = await startMqtt();
  assertEquals(await closedAfter(h, 5, rawPacket(0xa2, [0, 1, 0, 0, 0])), [MALFORMED]);
});

// ---- item 2: every packet sent while malformed input arrives decodes strictly ----

Deno.test("every byte Ferry sends while receiving the malformed inputs above is a whole, well-formed packet", async () => {
  await using h = await startMqtt();
  const inputs: Array<[4 | 5, Uint8Array]> = [
    ...MALFORMED_PROPERTIES.map(([, b]) => [5, b] as [5, Uint8Array]),
    [5, Uint8Array.from([0x50, 0])],
    [5, Uint8Array.from([0x62, 0])],
    [5, Uint8Array.from([0x40, 1, 0])],
    [5, Uint8Array.from([0x70, 5, 0, 1, 0, 0, 0xff])],
    [5, Uint8Array.from([0x40, 2, 0, 0])],
    [4, Uint8Array.from([0x62, 2, 0, 0])],
    [4, Uint8Array.from([0x50, 2, 0, 0])],
    [4, rawPacket(0xa2, [0, 1, 0, 0])],
  ];
  let frames = 0;
  for (const [version, input] of inputs) {
    const r = await connected(h, version);
    await r.send(input);
    await r.waitClosed();
    assertEquals(r.wireProblems, [], hex(input));
    frames += r.frames.length;
  }
  assert(frames >= inputs.length * 2 - 3, `only ${frames} frames seen`);
});
