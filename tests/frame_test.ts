/**
 * Tests of FBP/1 frame encoding and of every body encoder/decoder: round trips, the hex fixtures of
 * `docs/binary-protocol.md`, and each malformed-body rejection.
 *
 * @module
 */

import {
  AckStatus,
  decodeAck,
  decodeBye,
  decodeCommand,
  decodeError,
  decodeHello,
  decodeHelloAck,
  decodeTelemetry,
  encodeAck,
  encodeBye,
  encodeCommand,
  encodeError,
  encodeFrame,
  encodeHello,
  encodeHelloAck,
  encodeTelemetry,
  ErrorCode,
  FLAG_ACK_REQUESTED,
  type Frame,
  FrameSyntaxError,
  FrameType,
  HEADER_SIZE,
  HelloStatus,
  MAGIC,
  TRAILER_SIZE,
} from "../src/protocols/binary/frame.ts";
import { FrameSyntaxError as CodecFrameSyntaxError } from "../src/protocols/binary/codec.ts";
import { assert, assertEquals, assertThrows } from "./_assert.ts";

const utf8 = (s: string) => new TextEncoder().encode(s);
const fromHex = (s: string) => Uint8Array.from(s.match(/[0-9a-f]{2}/g)!, (h) => parseInt(h, 16));
const bytes = (...xs: number[]) => new Uint8Array(xs);
const empty = new Uint8Array();

/** Asserts that `fn` throws a non-fatal FrameSyntaxError with code 6 mentioning `includes`. */
function assertBadBody(fn: () => unknown, includes: string, offset?: number): void {
  const err = assertThrows(fn, FrameSyntaxError, includes);
  assertEquals(err.code, ErrorCode.BAD_PAYLOAD, "code");
  assertEquals(err.fatal, false, "fatal");
  assertEquals(err.name, "FrameSyntaxError");
  if (offset !== undefined) assertEquals(err.offset, offset, "offset");
}

// ---------------------------------------------------------------------------------------------
// Constants and frames
// ---------------------------------------------------------------------------------------------

Deno.test("frame constants match the FBP/1 layout", () => {
  assertEquals(MAGIC, 0x12345678);
  assertEquals(HEADER_SIZE, 14);
  assertEquals(TRAILER_SIZE, 4);
  assertEquals(FLAG_ACK_REQUESTED, 1);
  assertEquals(FrameType, {
    HELLO: 0x01,
    HELLO_ACK: 0x02,
    TELEMETRY: 0x10,
    ACK: 0x11,
    PING: 0x20,
    PONG: 0x21,
    COMMAND: 0x30,
    BYE: 0x40,
    ERROR: 0x7f,
  });
  assertEquals(ErrorCode.BAD_MAGIC, 1);
  assertEquals(ErrorCode.HELLO_TIMEOUT, 10);
  assertEquals(AckStatus.BAD_PAYLOAD, 4);
  assertEquals(HelloStatus.UNAVAILABLE, 3);
});

Deno.test("codec.ts re-exports the same FrameSyntaxError class", () => {
  assert(CodecFrameSyntaxError === FrameSyntaxError);
  const err = new FrameSyntaxError("x", { offset: 3, code: 1, fatal: true });
  assert(err instanceof SyntaxError);
  assertEquals([err.offset, err.code, err.fatal, err.seq], [3, 1, true, undefined]);
});

/** The examples of docs/binary-protocol.md §10, byte for byte. */
const FIXTURES: [string, Frame, string][] = [
  [
    "HELLO",
    {
      type: FrameType.HELLO,
      flags: 0,
      seq: 1,
      payload: encodeHello({ id: "sensor-1", token: "secret", keepAlive: 30 }),
    },
    "12345678 00000012 01 00 00000001 08 73656e736f722d31 06 736563726574 001e 48be29e2",
  ],
  [
    "HELLO_ACK",
    {
      type: FrameType.HELLO_ACK,
      flags: 0,
      seq: 1,
      payload: encodeHelloAck({ status: HelloStatus.OK, keepAlive: 30 }),
    },
    "12345678 00000003 02 00 00000001 00 001e dd8ca553",
  ],
  [
    "TELEMETRY",
    {
      type: FrameType.TELEMETRY,
      flags: FLAG_ACK_REQUESTED,
      seq: 2,
      payload: encodeTelemetry({ channel: "temp", data: utf8('{"c":21.5}') }),
    },
    "12345678 0000000f 10 01 00000002 04 74656d70 7b2263223a32312e357d ef7234c1",
  ],
  [
    "ACK",
    { type: FrameType.ACK, flags: 0, seq: 2, payload: encodeAck(AckStatus.OK) },
    "12345678 00000001 11 00 00000002 00 3d510c56",
  ],
  [
    "PING",
    { type: FrameType.PING, flags: 0, seq: 3, payload: empty },
    "12345678 00000000 20 00 00000003 98a51e69",
  ],
  [
    "PONG",
    { type: FrameType.PONG, flags: 0, seq: 3, payload: empty },
    "12345678 00000000 21 00 00000003 53f9cdcc",
  ],
  [
    "COMMAND",
    {
      type: FrameType.COMMAND,
      flags: FLAG_ACK_REQUESTED,
      seq: 1,
      payload: encodeCommand({ name: "reboot", data: empty }),
    },
    "12345678 00000007 30 01 00000001 06 7265626f6f74 61a63b13",
  ],
  [
    "device ACK of the COMMAND",
    { type: FrameType.ACK, flags: 0, seq: 1, payload: encodeAck(AckStatus.OK) },
    "12345678 00000001 11 00 00000001 00 167c5f95",
  ],
  [
    "BYE",
    { type: FrameType.BYE, flags: 0, seq: 5, payload: encodeBye(0) },
    "12345678 00000002 40 00 00000005 0000 f5799358",
  ],
  [
    "ERROR 3",
    {
      type: FrameType.ERROR,
      flags: 0,
      seq: 4,
      payload: encodeError({ code: ErrorCode.BAD_CRC, reason: "bad crc" }),
    },
    "12345678 00000009 7f 00 00000004 0003 626164206372 63 6045fc2b",
  ],
];

for (const [name, frame, hex] of FIXTURES) {
  Deno.test(`encodeFrame produces the documented bytes of the ${name} example`, () => {
    assertEquals(encodeFrame(frame), fromHex(hex.replaceAll(" ", "")));
  });
}

Deno.test("encodeFrame writes the header fields big-endian and the CRC over header and payload", () => {
  const out = encodeFrame({ type: 0xab, flags: 0xcd, seq: 0xfedcba98, payload: bytes(1, 2, 3) });
  const view = new DataView(out.buffer);
  assertEquals(out.length, HEADER_SIZE + 3 + TRAILER_SIZE);
  assertEquals(view.getUint32(0), MAGIC);
  assertEquals(view.getUint32(4), 3);
  assertEquals([out[8], out[9]], [0xab, 0xcd]);
  assertEquals(view.getUint32(10), 0xfedcba98);
  assertEquals(out.subarray(14, 17), bytes(1, 2, 3));
});

Deno.test("encodeFrame encodes any type and flags byte, unknown ones included", () => {
  const out = encodeFrame({ type: 0x55, flags: 0xfe, seq: 0, payload: empty });
  assertEquals([out[8], out[9]], [0x55, 0xfe]);
});

Deno.test("encodeFrame rejects header fields that do not fit", () => {
  const ok: Frame = { type: 1, flags: 0, seq: 0, payload: empty };
  assertThrows(() => encodeFrame({ ...ok, type: 256 }), RangeError, "frame type");
  assertThrows(() => encodeFrame({ ...ok, flags: -1 }), RangeError, "frame flags");
  assertThrows(() => encodeFrame({ ...ok, seq: 2 ** 32 }), RangeError, "frame seq");
  assertThrows(() => encodeFrame({ ...ok, seq: 1.5 }), RangeError, "frame seq");
  assertThrows(
    () => encodeFrame({ ...ok, payload: [1, 2] as unknown as Uint8Array }),
    TypeError,
    "payload",
  );
});

// ---------------------------------------------------------------------------------------------
// HELLO
// ---------------------------------------------------------------------------------------------

Deno.test("HELLO round-trips id, token and keepalive", () => {
  for (
    const hello of [
      { id: "sensor-1", token: "secret", keepAlive: 30 },
      { id: "a", token: "", keepAlive: 0 },
      { id: "A.b_c:d-9".padEnd(64, "z"), token: "ключ🔑".repeat(10), keepAlive: 65535 },
      { id: "x", token: "t".repeat(255), keepAlive: 1 },
    ]
  ) {
    assertEquals(decodeHello(encodeHello(hello)), hello);
  }
});

Deno.test("HELLO keeps a leading byte-order mark in the token", () => {
  assertEquals(
    decodeHello(encodeHello({ id: "a", token: "\ufeffx", keepAlive: 0 })).token,
    "\ufeffx",
  );
});

Deno.test("encodeHello rejects ids, tokens and keepalives out of range", () => {
  assertThrows(() => encodeHello({ id: "", token: "", keepAlive: 0 }), RangeError, "length 0");
  assertThrows(() => encodeHello({ id: "a".repeat(65), token: "", keepAlive: 0 }), RangeError);
  assertThrows(() => encodeHello({ id: "a/b", token: "", keepAlive: 0 }), RangeError, "a/b");
  assertThrows(() => encodeHello({ id: "é", token: "", keepAlive: 0 }), RangeError);
  assertThrows(
    () => encodeHello({ id: "a", token: "é".repeat(128), keepAlive: 0 }),
    RangeError,
    "256 bytes exceed 255",
  );
  assertThrows(() => encodeHello({ id: "a", token: "", keepAlive: 65536 }), RangeError);
  assertThrows(
    () => encodeHello({ id: 1 as unknown as string, token: "", keepAlive: 0 }),
    TypeError,
  );
});

Deno.test("decodeHello rejects an empty body", () => {
  assertBadBody(() => decodeHello(empty), "ends before the id length", 0);
});

Deno.test("decodeHello rejects an id length of 0", () => {
  assertBadBody(() => decodeHello(bytes(0, 0, 0, 30)), "id length 0 is outside 1..64", 0);
});

Deno.test("decodeHello rejects an id longer than 64 bytes", () => {
  const body = new Uint8Array(1 + 65 + 1 + 2).fill(0x61);
  body[0] = 65;
  body[66] = 0;
  assertBadBody(() => decodeHello(body), "id length 65", 0);
});

Deno.test("decodeHello rejects an id length that runs past the body", () => {
  assertBadBody(() => decodeHello(bytes(5, 0x61, 0x62)), "runs past the end", 0);
});

Deno.test("decodeHello rejects an id byte outside [A-Za-z0-9._:-]", () => {
  for (const bad of [0x2f, 0x2b, 0x23, 0x20, 0x00, 0x7f, 0xc3]) {
    assertBadBody(() => decodeHello(bytes(2, 0x61, bad, 0, 0, 30)), "id byte", 2);
  }
});

Deno.test("decodeHello rejects a body that ends before the token length", () => {
  assertBadBody(() => decodeHello(bytes(1, 0x61)), "before the token length", 2);
});

Deno.test("decodeHello rejects a token length that runs past the body", () => {
  assertBadBody(() => decodeHello(bytes(1, 0x61, 9, 0x74, 0, 30)), "expected 14");
});

Deno.test("decodeHello rejects a body without the keepalive", () => {
  assertBadBody(() => decodeHello(bytes(1, 0x61, 0, 0)), "body is 4 bytes, expected 5");
});

Deno.test("decodeHello rejects trailing bytes after the keepalive", () => {
  assertBadBody(() => decodeHello(bytes(1, 0x61, 0, 0, 30, 0)), "body is 6 bytes, expected 5");
});

Deno.test("decodeHello rejects a token that is not valid UTF-8", () => {
  const err = assertThrows(
    () => decodeHello(bytes(1, 0x61, 2, 0xc3, 0x28, 0, 30)),
    FrameSyntaxError,
    "not valid UTF-8",
  );
  assertEquals(err.offset, 3);
  assert(err.cause instanceof TypeError);
});

// ---------------------------------------------------------------------------------------------
// HELLO_ACK
// ---------------------------------------------------------------------------------------------

Deno.test("HELLO_ACK round-trips every status", () => {
  for (const status of Object.values(HelloStatus)) {
    const ack = { status, keepAlive: status === 0 ? 45 : 0 };
    assertEquals(decodeHelloAck(encodeHelloAck(ack)), ack);
  }
  assertEquals(encodeHelloAck({ status: 0, keepAlive: 0x1234 }), bytes(0, 0x12, 0x34));
});

Deno.test("encodeHelloAck rejects an unknown status or a keepalive out of range", () => {
  assertThrows(() => encodeHelloAck({ status: 4, keepAlive: 0 }), RangeError, "status");
  assertThrows(() => encodeHelloAck({ status: 0, keepAlive: -1 }), RangeError, "keepalive");
});

Deno.test("decodeHelloAck rejects a body that is not 3 bytes", () => {
  assertBadBody(() => decodeHelloAck(bytes(0, 0)), "body is 2 bytes, expected 3", 2);
  assertBadBody(() => decodeHelloAck(bytes(0, 0, 0, 0)), "body is 4 bytes, expected 3", 3);
});

Deno.test("decodeHelloAck rejects an undefined status", () => {
  assertBadBody(() => decodeHelloAck(bytes(4, 0, 0)), "status 4 is not defined", 0);
});

// ---------------------------------------------------------------------------------------------
// TELEMETRY
// ---------------------------------------------------------------------------------------------

Deno.test("TELEMETRY round-trips channel and data", () => {
  for (
    const t of [
      { channel: "temp", data: utf8('{"c":21.5}') },
      { channel: "", data: empty },
      { channel: "a-z_0-9".padEnd(64, "q"), data: new Uint8Array(1000).fill(7) },
    ]
  ) {
    assertEquals(decodeTelemetry(encodeTelemetry(t)), t);
  }
});

Deno.test("decodeTelemetry returns data as a view into the payload", () => {
  const payload = encodeTelemetry({ channel: "c", data: bytes(1, 2) });
  const t = decodeTelemetry(payload);
  assert(t.data.buffer === payload.buffer);
  assertEquals(t.data.byteOffset, payload.byteOffset + 2);
});

Deno.test("encodeTelemetry rejects a channel out of range or with bad characters", () => {
  assertThrows(() => encodeTelemetry({ channel: "a".repeat(65), data: empty }), RangeError);
  assertThrows(() => encodeTelemetry({ channel: "Temp", data: empty }), RangeError, "Temp");
  assertThrows(() => encodeTelemetry({ channel: "a/b", data: empty }), RangeError);
  assertThrows(() => encodeTelemetry({ channel: "a.b", data: empty }), RangeError);
  assertThrows(
    () => encodeTelemetry({ channel: "a", data: "x" as unknown as Uint8Array }),
    TypeError,
  );
});

Deno.test("decodeTelemetry rejects an empty body", () => {
  assertBadBody(() => decodeTelemetry(empty), "ends before the channel length", 0);
});

Deno.test("decodeTelemetry rejects a channel longer than 64 bytes", () => {
  const body = new Uint8Array(66).fill(0x61);
  body[0] = 65;
  assertBadBody(() => decodeTelemetry(body), "channel length 65 is outside 0..64", 0);
});

Deno.test("decodeTelemetry rejects a channel length that runs past the body", () => {
  assertBadBody(() => decodeTelemetry(bytes(3, 0x61)), "runs past the end", 0);
});

Deno.test("decodeTelemetry rejects a channel byte outside [a-z0-9_-]", () => {
  for (const bad of [0x41, 0x2e, 0x2f, 0x2b, 0x23, 0x3a, 0x80]) {
    assertBadBody(() => decodeTelemetry(bytes(2, 0x61, bad, 1)), "channel byte", 2);
  }
});

// ---------------------------------------------------------------------------------------------
// ACK
// ---------------------------------------------------------------------------------------------

Deno.test("ACK round-trips every status", () => {
  for (const status of Object.values(AckStatus)) {
    assertEquals(decodeAck(encodeAck(status)), status);
  }
});

Deno.test("encodeAck rejects an unknown status", () => {
  assertThrows(() => encodeAck(5), RangeError, "ACK status");
});

Deno.test("decodeAck rejects a body that is not 1 byte", () => {
  assertBadBody(() => decodeAck(empty), "body is 0 bytes, expected 1", 0);
  assertBadBody(() => decodeAck(bytes(0, 0)), "body is 2 bytes, expected 1", 1);
});

Deno.test("decodeAck rejects an undefined status", () => {
  assertBadBody(() => decodeAck(bytes(5)), "status 5 is not defined", 0);
});

// ---------------------------------------------------------------------------------------------
// COMMAND
// ---------------------------------------------------------------------------------------------

Deno.test("COMMAND round-trips name and data", () => {
  for (
    const c of [
      { name: "reboot", data: empty },
      { name: "Set.Level_2-x", data: utf8('{"level":3}') },
      { name: "n".repeat(64), data: new Uint8Array(300).fill(1) },
    ]
  ) {
    assertEquals(decodeCommand(encodeCommand(c)), c);
  }
});

Deno.test("encodeCommand rejects names that are empty, too long or not topic-safe", () => {
  assertThrows(() => encodeCommand({ name: "", data: empty }), RangeError);
  assertThrows(() => encodeCommand({ name: "n".repeat(65), data: empty }), RangeError);
  for (const name of ["a/b", "a+", "#", "a b", "a:b"]) {
    assertThrows(() => encodeCommand({ name, data: empty }), RangeError, JSON.stringify(name));
  }
  assertThrows(
    () => encodeCommand({ name: "a", data: null as unknown as Uint8Array }),
    TypeError,
  );
});

Deno.test("decodeCommand rejects an empty body", () => {
  assertBadBody(() => decodeCommand(empty), "ends before the name length", 0);
});

Deno.test("decodeCommand rejects an empty name", () => {
  assertBadBody(() => decodeCommand(bytes(0, 1)), "name length 0 is outside 1..64", 0);
});

Deno.test("decodeCommand rejects a name longer than 64 bytes", () => {
  const body = new Uint8Array(66).fill(0x61);
  body[0] = 65;
  assertBadBody(() => decodeCommand(body), "name length 65", 0);
});

Deno.test("decodeCommand rejects a name length that runs past the body", () => {
  assertBadBody(() => decodeCommand(bytes(2, 0x61)), "runs past the end", 0);
});

Deno.test("decodeCommand rejects a name byte that is not MQTT-topic-safe", () => {
  for (const bad of [0x2f, 0x2b, 0x23, 0x20, 0x3a, 0x00, 0xff]) {
    assertBadBody(() => decodeCommand(bytes(2, bad, 0x61)), "name byte", 1);
  }
});

// ---------------------------------------------------------------------------------------------
// BYE
// ---------------------------------------------------------------------------------------------

Deno.test("BYE round-trips its reason", () => {
  for (const reason of [0, 1, 0x1234, 65535]) assertEquals(decodeBye(encodeBye(reason)), reason);
  assertEquals(encodeBye(0x1234), bytes(0x12, 0x34));
});

Deno.test("encodeBye rejects a reason that is not a u16", () => {
  assertThrows(() => encodeBye(65536), RangeError, "BYE reason");
});

Deno.test("decodeBye rejects a body that is not 2 bytes", () => {
  assertBadBody(() => decodeBye(bytes(0)), "body is 1 bytes, expected 2", 1);
  assertBadBody(() => decodeBye(bytes(0, 0, 0)), "body is 3 bytes, expected 2", 2);
});

// ---------------------------------------------------------------------------------------------
// ERROR
// ---------------------------------------------------------------------------------------------

Deno.test("ERROR round-trips code and reason", () => {
  for (
    const e of [
      { code: ErrorCode.BAD_CRC, reason: "bad crc" },
      { code: ErrorCode.SHUTTING_DOWN, reason: "" },
      { code: 65535, reason: "künftig 🚀" },
    ]
  ) {
    assertEquals(decodeError(encodeError(e)), e);
  }
});

Deno.test("encodeError rejects a code that is not a u16 or a reason that is not a string", () => {
  assertThrows(() => encodeError({ code: 70000, reason: "" }), RangeError, "ERROR code");
  assertThrows(
    () => encodeError({ code: 1, reason: 5 as unknown as string }),
    TypeError,
    "ERROR reason",
  );
});

Deno.test("decodeError rejects a body shorter than 2 bytes", () => {
  assertBadBody(() => decodeError(bytes(0)), "expected at least 2", 0);
});

Deno.test("decodeError rejects a reason that is not valid UTF-8", () => {
  assertBadBody(() => decodeError(bytes(0, 1, 0xff)), "not valid UTF-8", 2);
});
