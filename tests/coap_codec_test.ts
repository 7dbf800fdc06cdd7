/**
 * The CoAP codec: byte fixtures from RFC 7252 Appendix A style exchanges, round trips against
 * npm:coap-packet, every format-error clause, and random/mutated input (fuzz).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { coapGenerate as generate, coapParse as parse } from "./_dev_deps.ts";
import { CoapSyntaxError, decodeMessage, encodeMessage } from "../src/protocols/coap/codec.ts";
import { type CoapMessage, CoapType, Code } from "../src/protocols/coap/message.ts";
import { encodeString, firstBadCriticalOption, Opt } from "../src/protocols/coap/option_codec.ts";
import { assert, assertEquals, assertThrows } from "./_assert.ts";

const hex = (s: string) =>
  new Uint8Array(s.split(/\s+/).filter(Boolean).map((b) => parseInt(b, 16)));

function reason(bytes: Uint8Array): string {
  try {
    decodeMessage(bytes);
    return "ok";
  } catch (e) {
    assert(e instanceof CoapSyntaxError, `not a CoapSyntaxError: ${e}`);
    return e.reason;
  }
}

Deno.test("CoAP codec decodes a CON GET with token, Uri-Path and Uri-Query", () => {
  // 44 01 7d 34 | token 4 bytes | Uri-Path "temperature" (delta 11, len 11) | Uri-Query "a=1"
  const m = decodeMessage(
    hex("44 01 7d 34 01 02 03 04 bb 74 65 6d 70 65 72 61 74 75 72 65 43 61 3d 31"),
  );
  assertEquals([m.type, m.code, m.messageId], [CoapType.CON, Code.GET, 0x7d34]);
  assertEquals(m.token, hex("01 02 03 04"));
  assertEquals(m.options.map((o) => o.number), [Opt.URI_PATH, Opt.URI_QUERY]);
  assertEquals(new TextDecoder().decode(m.options[0].value), "temperature");
});

Deno.test("CoAP codec decodes extended option deltas and lengths (13 and 14)", () => {
  // option 60 (Size1): delta 60 = 13 + 47 → nibble 13, ext 0x2f; option 2049: delta 1989 → 14
  const m = decodeMessage(hex("40 01 00 01 d1 2f 05 e0 06 b8"));
  assertEquals(m.options.map((o) => o.number), [60, 2049]);
  const long = new Uint8Array(300).fill(0x61);
  const enc = encodeMessage({
    type: CoapType.NON,
    code: Code.POST,
    messageId: 1,
    token: new Uint8Array(),
    options: [{ number: Opt.URI_QUERY, value: long }],
    payload: new Uint8Array(),
  });
  assertEquals(decodeMessage(enc).options[0].value.length, 300);
});

Deno.test("CoAP codec round-trips through coap-packet both ways", () => {
  const msg: CoapMessage = {
    type: CoapType.ACK,
    code: Code.CONTENT,
    messageId: 0xbeef,
    token: hex("de ad be ef"),
    options: [
      { number: Opt.ETAG, value: hex("01 02") },
      { number: Opt.OBSERVE, value: hex("12") },
      { number: Opt.CONTENT_FORMAT, value: hex("32") },
      { number: Opt.BLOCK2, value: hex("0e") },
    ],
    payload: new TextEncoder().encode('{"t":21}'),
  };
  const bytes = encodeMessage(msg);
  assertEquals(decodeMessage(bytes), msg);
  const theirs = parse(Buffer.from(bytes));
  assertEquals([theirs.code, theirs.ack, theirs.messageId], ["2.05", true, 0xbeef]);
  assertEquals(theirs.options.map((o) => String(o.name)), [
    "ETag",
    "Observe",
    "Content-Format",
    "Block2",
  ]);
});

Deno.test("CoAP codec encodes Empty messages as the bare 4-byte header", () => {
  assertEquals(
    encodeMessage({
      type: CoapType.RST,
      code: 0,
      messageId: 0x1234,
      token: new Uint8Array(),
      options: [],
      payload: new Uint8Array(),
    }),
    hex("70 00 12 34"),
  );
});

Deno.test("CoAP codec rejects each RFC 7252 format error with its reason and offset", () => {
  assertEquals(reason(hex("40 01 00")), "too_short"); // §3 header
  assertEquals(reason(hex("80 01 00 01")), "bad_version"); // §3 version
  assertEquals(reason(hex("49 01 00 01 00 00 00 00 00 00 00 00 00")), "bad_token_length"); // §3
  assertEquals(reason(hex("44 01 00 01 aa")), "truncated"); // token past the end
  assertEquals(reason(hex("40 01 00 01 f0")), "bad_option"); // §3.1 delta 15 not a marker
  assertEquals(reason(hex("40 01 00 01 bf")), "bad_option"); // §3.1 length 15
  assertEquals(reason(hex("40 01 00 01 b5 61")), "truncated"); // value past the end
  assertEquals(reason(hex("40 01 00 01 d1")), "truncated"); // extended delta missing
  assertEquals(reason(hex("40 01 00 01 ff")), "empty_payload"); // §3 marker, no payload
  assertEquals(reason(hex("40 00 00 01 ff 61")), "empty_not_empty"); // §4.1
  assertEquals(reason(hex("41 00 00 01 aa")), "empty_not_empty"); // §4.1 token in Empty
  // e0 ff ff = delta 269 + 65535 > 65535
  assertEquals(reason(hex("40 01 00 01 e0 ff ff")), "bad_option");
  const e = assertThrows(() => decodeMessage(hex("40 01 00 07 b5 61"))) as CoapSyntaxError;
  assertEquals([e.offset, e.header?.messageId, e.silent], [5, 7, false]);
});

Deno.test("CoAP codec refuses to encode a token over 8 bytes or a datagram over the cap", () => {
  const base: CoapMessage = {
    type: CoapType.CON,
    code: Code.GET,
    messageId: 1,
    token: new Uint8Array(),
    options: [],
    payload: new Uint8Array(),
  };
  assertThrows(() => encodeMessage({ ...base, token: new Uint8Array(9) }), TypeError);
  assertThrows(
    () =>
      encodeMessage({ ...base, token: new Uint8Array(), payload: new Uint8Array(100) }, {
        maxSize: 50,
      }),
    RangeError,
  );
});

Deno.test("CoAP option checks find unrecognised critical options and ignore elective ones", () => {
  const v = encodeString("x");
  assertEquals(firstBadCriticalOption([{ number: Opt.URI_PATH, value: v }]), undefined);
  assertEquals(firstBadCriticalOption([{ number: 2048, value: v }]), undefined);
  assertEquals(firstBadCriticalOption([{ number: 2049, value: v }]), 2049);
  // §5.4.3: a value outside the length range counts as unrecognised (Uri-Host is 1..255)
  assertEquals(
    firstBadCriticalOption([{ number: Opt.URI_HOST, value: new Uint8Array() }]),
    Opt.URI_HOST,
  );
  // §5.4.5: a repeated non-repeatable critical option
  assertEquals(
    firstBadCriticalOption([{ number: Opt.ACCEPT, value: v }, { number: Opt.ACCEPT, value: v }]),
    Opt.ACCEPT,
  );
});

Deno.test("decodeMessage and encodeMessage handle datagrams one by one and report bad ones", () => {
  const errors: string[] = [];
  const msgs = [
    hex("40 01 00 01"),
    hex("40 01 00 02 ff"),
    new Uint8Array(70_000),
    hex("50 02 00 03 b1 61 ff 78"),
  ];
  const out: CoapMessage[] = [];
  for (const datagram of msgs) { // as the server's receive loop does
    try {
      out.push(decodeMessage(datagram));
    } catch (e) {
      if (!(e instanceof CoapSyntaxError)) throw e;
      errors.push(e.reason);
    }
  }
  assertEquals(out.map((m) => m.messageId), [1, 3]);
  assertEquals(errors, ["empty_payload", "too_large"]);
  const back = out.map((m) => encodeMessage(m));
  assertEquals(back[1], msgs[3]);
});

/** Small deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("CoAP codec fuzz: random and mutated datagrams decode or fail with CoapSyntaxError only", () => {
  const rnd = prng(0xc0a9);
  const seeds = [
    hex("44 01 7d 34 01 02 03 04 bb 74 65 6d 70 65 72 61 74 75 72 65 43 61 3d 31"),
    hex("40 01 00 01 d1 2f 05 e0 06 b8"),
    hex("62 45 be ef 01 61 31 ff 68 69"),
    hex("70 00 12 34"),
  ];
  let decoded = 0;
  for (let i = 0; i < 20_000; i++) {
    let bytes: Uint8Array;
    if (i % 2 === 0) {
      bytes = new Uint8Array(Math.floor(rnd() * 40));
      for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(rnd() * 256);
      if (bytes.length > 0) bytes[0] = (bytes[0] & 0x3f) | 0x40; // mostly version 1
    } else {
      const s = seeds[i % seeds.length];
      bytes = s.slice(0, Math.max(0, s.length - Math.floor(rnd() * 3)));
      for (let k = 0; k < 3; k++) {
        if (bytes.length) bytes[Math.floor(rnd() * bytes.length)] = Math.floor(rnd() * 256);
      }
    }
    let msg: CoapMessage;
    try {
      msg = decodeMessage(bytes);
    } catch (e) {
      if (!(e instanceof CoapSyntaxError)) throw new Error(`input ${bytes.join(",")}: ${e}`);
      continue;
    }
    decoded++;
    // Whatever decodes re-encodes to something that decodes to the same message.
    if (msg.token.length <= 8) assertEquals(decodeMessage(encodeMessage(msg)), msg);
  }
  assert(decoded > 1000, `only ${decoded} inputs decoded`);
});

Deno.test("CoAP encoder writes the same bytes as coap-packet's generate for 2,000 random messages", () => {
  let seed = 7;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => rnd(256));
  const buf = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < 2000; i++) {
    const options = [];
    let number = 0;
    for (let k = rnd(6); k > 0; k--) {
      // deltas and lengths across the nibble, 1-byte and 2-byte extensions (RFC 7252 §3.1)
      number += [0, 1, 12, 13, 268, 269, 300][rnd(7)];
      if (number > 65_000) break;
      options.push({ number, value: bytes([0, 1, 12, 13, 14, 268, 269, 270][rnd(8)]) });
    }
    const msg: CoapMessage = {
      type: rnd(4) as CoapMessage["type"],
      code: [1, 2, 69, 68, 132][rnd(5)],
      messageId: rnd(0x10000),
      token: bytes(rnd(9)),
      options,
      payload: bytes([0, 1, 100, 1500][rnd(4)]),
    };
    const ours = encodeMessage(msg);
    const theirs = generate(
      {
        code: `${msg.code >> 5}.${String(msg.code & 31).padStart(2, "0")}`,
        messageId: msg.messageId,
        confirmable: msg.type === 0,
        ack: msg.type === 2,
        reset: msg.type === 3,
        token: buf(msg.token),
        options: msg.options.map((o) => ({ name: String(o.number), value: buf(o.value) })),
        payload: buf(msg.payload),
      } as unknown as Parameters<typeof generate>[0],
      1 << 20,
    );
    assertEquals(Array.from(ours), Array.from(theirs), `message ${i}`);
    assertEquals(decodeMessage(ours), msg);
  }
});

Deno.test("decodeMessage keeps no view of its input: the buffer can be reused at once", () => {
  const buf = new Uint8Array(64);
  // CON POST, MID 1, token AB CD, Uri-Path "a", Uri-Query "x", payload "hi"
  const datagram = [0x42, 0x02, 0, 1, 0xab, 0xcd, 0xb1, 0x61, 0x41, 0x78, 0xff, 0x68, 0x69];
  buf.set(datagram);
  const m = decodeMessage(buf.subarray(0, datagram.length));
  buf.fill(0xee); // the next datagram
  assertEquals([...m.token], [0xab, 0xcd]);
  assertEquals(m.options.map((o) => [o.number, ...o.value]), [[11, 0x61], [15, 0x78]]);
  assertEquals([...m.payload], [0x68, 0x69]);
  assert(m.payload.buffer !== buf.buffer && m.token.buffer !== buf.buffer);
});
