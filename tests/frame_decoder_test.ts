/**
 * Tests of the FBP/1 stream decoder (`FrameParser`, `FrameDecoder`) and of `encodeFrame` with it:
 * chunking at every byte boundary, size cap before buffering, bad magic/CRC handling, truncation,
 * and random/mutated input.
 *
 * @module
 */

import {
  DEFAULT_MAX_PAYLOAD,
  FrameDecoder,
  FrameParser,
  FrameSyntaxError,
} from "../src/protocols/binary/codec.ts";
import {
  decodeAck,
  decodeBye,
  decodeCommand,
  decodeError,
  decodeHello,
  decodeHelloAck,
  decodeTelemetry,
  encodeAck,
  encodeCommand,
  encodeFrame,
  encodeHello,
  encodeTelemetry,
  ErrorCode,
  FLAG_ACK_REQUESTED,
  type Frame,
  FrameType,
  HEADER_SIZE,
  TRAILER_SIZE,
} from "../src/protocols/binary/frame.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./_assert.ts";

/**
 * Reads a decoder's output one frame at a time (it emits one batch per chunk): the tests below
 * check frames and errors in stream order, whatever the batching.
 */
function frameReader(readable: ReadableStream<Frame[]>) {
  const reader = readable.getReader();
  let batch: Frame[] = [];
  return {
    async read(): Promise<ReadableStreamReadResult<Frame>> {
      while (batch.length === 0) {
        const r = await reader.read();
        if (r.done) return { done: true, value: undefined };
        batch = [...r.value];
      }
      return { done: false, value: batch.shift()! };
    },
  };
}

/** Every frame a decoder emits, in order. */
async function decodeAll(readable: ReadableStream<Frame[]>): Promise<Frame[]> {
  return (await Array.fromAsync(readable)).flat();
}

const utf8 = (s: string) => new TextEncoder().encode(s);
const empty = new Uint8Array();

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Frame header with an arbitrary magic and length, for hand-made bad frames. */
function header(magic: number, length: number, type = FrameType.PING, seq = 0): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE);
  const view = new DataView(out.buffer);
  view.setUint32(0, magic);
  view.setUint32(4, length);
  out[8] = type;
  view.setUint32(10, seq);
  return out;
}

/** Seeded PRNG (mulberry32) so fuzz failures are reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const THREE: Frame[] = [
  {
    type: FrameType.HELLO,
    flags: 0,
    seq: 1,
    payload: encodeHello({ id: "sensor-1", token: "secret", keepAlive: 30 }),
  },
  {
    type: FrameType.TELEMETRY,
    flags: FLAG_ACK_REQUESTED,
    seq: 2,
    payload: encodeTelemetry({ channel: "temp", data: utf8('{"c":21.5}') }),
  },
  { type: FrameType.PING, flags: 0, seq: 3, payload: empty },
];
const THREE_BYTES = concat(...THREE.map(encodeFrame));

// ---------------------------------------------------------------------------------------------
// Chunking
// ---------------------------------------------------------------------------------------------

Deno.test("FrameParser decodes a frame delivered in one chunk", () => {
  const parser = new FrameParser();
  assertEquals(parser.push(encodeFrame(THREE[1])), [THREE[1]]);
  assertEquals(parser.buffered, 0);
  assertEquals(parser.offset, encodeFrame(THREE[1]).length);
  parser.end();
});

Deno.test("FrameParser decodes a 3-frame stream split at every byte boundary", () => {
  for (let cut = 0; cut <= THREE_BYTES.length; cut++) {
    const parser = new FrameParser();
    const frames = [
      ...parser.push(THREE_BYTES.subarray(0, cut)),
      ...parser.push(THREE_BYTES.subarray(cut)),
    ];
    assertEquals(frames, THREE, `cut at ${cut}`);
    parser.end();
  }
});

Deno.test("FrameParser decodes a 3-frame stream split at every pair of byte boundaries", () => {
  const n = THREE_BYTES.length;
  for (let a = 0; a <= n; a++) {
    for (let b = a; b <= n; b++) {
      const parser = new FrameParser();
      const frames = [
        ...parser.push(THREE_BYTES.subarray(0, a)),
        ...parser.push(THREE_BYTES.subarray(a, b)),
        ...parser.push(THREE_BYTES.subarray(b)),
      ];
      assertEquals(frames, THREE, `cuts at ${a}, ${b}`);
    }
  }
});

Deno.test("FrameParser decodes a stream fed one byte at a time", () => {
  const parser = new FrameParser();
  const frames: Frame[] = [];
  for (let i = 0; i < THREE_BYTES.length; i++) {
    frames.push(...parser.push(THREE_BYTES.subarray(i, i + 1)));
    assertEquals(parser.offset, i + 1);
  }
  assertEquals(frames, THREE);
  assertEquals(parser.buffered, 0);
});

Deno.test("FrameParser decodes many frames from one chunk", () => {
  const frames: Frame[] = [];
  for (let i = 0; i < 1000; i++) {
    frames.push({
      type: i % 2 ? FrameType.TELEMETRY : FrameType.PING,
      flags: i & 1,
      seq: i,
      payload: i % 2 ? encodeTelemetry({ channel: "", data: new Uint8Array(i % 50) }) : empty,
    });
  }
  const parser = new FrameParser();
  assertEquals(parser.push(concat(...frames.map(encodeFrame))), frames);
});

Deno.test("FrameParser ignores empty chunks", () => {
  const parser = new FrameParser();
  assertEquals(parser.push(empty), []);
  parser.push(THREE_BYTES.subarray(0, 3));
  assertEquals(parser.push(empty), []);
  assertEquals(parser.buffered, 3);
});

Deno.test("FrameParser emits payloads that do not alias the input chunk", () => {
  const whole = new FrameParser().push(THREE_BYTES);
  for (const frame of whole) assert(frame.payload.buffer !== THREE_BYTES.buffer);
  assertEquals(whole[0].payload.buffer.byteLength, whole[0].payload.length);

  const parser = new FrameParser();
  parser.push(THREE_BYTES.subarray(0, 20));
  const [split] = parser.push(THREE_BYTES.subarray(20));
  assertEquals(split.payload.buffer.byteLength, split.payload.length);
});

Deno.test("FrameParser emits frames of unknown type and with reserved flags", () => {
  const odd: Frame = { type: 0x55, flags: 0xfe, seq: 0xffffffff, payload: utf8("?") };
  assertEquals(new FrameParser().push(encodeFrame(odd)), [odd]);
});

Deno.test("FrameParser accepts a payload of exactly maxPayload bytes", () => {
  const frame: Frame = { type: FrameType.TELEMETRY, flags: 0, seq: 1, payload: new Uint8Array(64) };
  assertEquals(new FrameParser({ maxPayload: 64 }).push(encodeFrame(frame)), [frame]);
  const big = { ...frame, payload: new Uint8Array(DEFAULT_MAX_PAYLOAD).fill(9) };
  assertEquals(new FrameParser().push(encodeFrame(big)), [big]);
});

Deno.test("FrameParser rejects an invalid maxPayload", () => {
  assertThrows(() => new FrameParser({ maxPayload: -1 }), RangeError, "maxPayload");
  assertThrows(() => new FrameParser({ maxPayload: 1.5 }), RangeError, "maxPayload");
  assertThrows(() => new FrameParser({ maxPayload: 2 ** 32 }), RangeError, "maxPayload");
});

// ---------------------------------------------------------------------------------------------
// Bad magic
// ---------------------------------------------------------------------------------------------

Deno.test("FrameParser rejects a bad magic as a fatal error", () => {
  const bad = concat(header(0x12345679, 0), new Uint8Array(4));
  const err = assertThrows(() => new FrameParser().push(bad), FrameSyntaxError, "magic");
  assertEquals([err.code, err.fatal, err.offset], [ErrorCode.BAD_MAGIC, true, 3]);
});

Deno.test("FrameParser rejects a bad magic at the first wrong byte", () => {
  const parser = new FrameParser();
  assertEquals(parser.push(new Uint8Array([0x12])), []);
  const err = assertThrows(() => parser.push(new Uint8Array([0x35])), FrameSyntaxError);
  assertEquals([err.code, err.offset], [ErrorCode.BAD_MAGIC, 1]);
});

Deno.test("FrameParser reports the stream offset of a bad magic after good frames", () => {
  const parser = new FrameParser();
  parser.push(THREE_BYTES);
  const err = assertThrows(() => parser.push(utf8("GET / HTTP/1.1\r\n")), FrameSyntaxError);
  assertEquals(err.offset, THREE_BYTES.length);
  assert(err.message.includes("0x47"), err.message);
});

Deno.test("FrameParser rethrows its fatal error on every later call", () => {
  const parser = new FrameParser();
  const err = assertThrows(() => parser.push(new Uint8Array([0])), FrameSyntaxError);
  assert(assertThrows(() => parser.push(THREE_BYTES), FrameSyntaxError) === err);
  assert(assertThrows(() => parser.end(), FrameSyntaxError) === err);
});

Deno.test("FrameParser.parse delivers the frames before a fatal error", () => {
  const seen: Frame[] = [];
  const parser = new FrameParser();
  assertThrows(
    () => parser.parse(concat(THREE_BYTES, new Uint8Array([0xff])), (f) => seen.push(f)),
    FrameSyntaxError,
  );
  assertEquals(seen, THREE);
});

Deno.test("FrameDecoder errors the stream on a bad magic after emitting earlier frames", async () => {
  const reader = frameReader(
    ReadableStream.from([concat(THREE_BYTES, utf8("nope"))]).pipeThrough(new FrameDecoder()),
  );
  for (const frame of THREE) assertEquals((await reader.read()).value, frame);
  const err = await assertRejects(() => reader.read(), FrameSyntaxError, "magic");
  assertEquals([err.code, err.fatal], [ErrorCode.BAD_MAGIC, true]);
});

// ---------------------------------------------------------------------------------------------
// Size cap
// ---------------------------------------------------------------------------------------------

Deno.test("FrameParser rejects a frame whose length exceeds the cap", () => {
  const frame = encodeFrame({ type: 1, flags: 0, seq: 0, payload: new Uint8Array(65) });
  const err = assertThrows(
    () => new FrameParser({ maxPayload: 64 }).push(frame),
    FrameSyntaxError,
    "length 65 exceeds the 64 byte limit",
  );
  assertEquals([err.code, err.fatal, err.offset], [ErrorCode.FRAME_TOO_LARGE, true, 4]);
});

Deno.test("FrameParser rejects an oversized length from the 8-byte prefix alone", () => {
  const parser = new FrameParser();
  const prefix = header(0x12345678, 0xffffffff).subarray(0, 8);
  assertEquals(parser.push(prefix.subarray(0, 7)), []);
  const err = assertThrows(
    () => parser.push(prefix.subarray(7)),
    FrameSyntaxError,
    "length 4294967295 exceeds the 65536 byte limit",
  );
  assertEquals([err.code, err.fatal, err.offset], [ErrorCode.FRAME_TOO_LARGE, true, 4]);
  assertEquals(parser.offset, 8);
});

Deno.test("FrameDecoder rejects a frame whose length exceeds the cap before buffering", async () => {
  const decoder = new FrameDecoder({ maxPayload: 1024 });
  const writer = decoder.writable.getWriter();
  const reader = decoder.readable.getReader();
  // Only the 8 bytes of magic and length are written; the payload never comes.
  const written = writer.write(header(0x12345678, 1025).subarray(0, 8));
  const err = await assertRejects(() => reader.read(), FrameSyntaxError, "exceeds the 1024");
  assertEquals([err.code, err.fatal], [ErrorCode.FRAME_TOO_LARGE, true]);
  await written;
  assert(await assertRejects(() => writer.closed, FrameSyntaxError) === err);
});

// ---------------------------------------------------------------------------------------------
// Bad CRC
// ---------------------------------------------------------------------------------------------

function corruptCrc(frame: Frame): Uint8Array {
  const bytes = encodeFrame(frame);
  bytes[bytes.length - 1] ^= 0x01;
  return bytes;
}

Deno.test("FrameParser drops a frame with a bad CRC, reports it and decodes the next", () => {
  const errors: FrameSyntaxError[] = [];
  const parser = new FrameParser({ onError: (err) => errors.push(err) });
  const bad = corruptCrc({ type: FrameType.PING, flags: 0, seq: 77, payload: utf8("xy") });
  const frames = parser.push(concat(encodeFrame(THREE[0]), bad, encodeFrame(THREE[2])));
  assertEquals(frames, [THREE[0], THREE[2]]);
  assertEquals(errors.length, 1);
  const [err] = errors;
  assert(err instanceof FrameSyntaxError);
  assertEquals([err.code, err.fatal, err.seq], [ErrorCode.BAD_CRC, false, 77]);
  assertEquals(err.offset, encodeFrame(THREE[0]).length + HEADER_SIZE + 2);
  assert(err.message.includes("CRC"), err.message);
});

Deno.test("FrameParser drops a bad-CRC frame split across chunks and decodes the next", () => {
  const bad = concat(corruptCrc(THREE[1]), encodeFrame(THREE[2]));
  for (let cut = 0; cut <= bad.length; cut++) {
    const errors: FrameSyntaxError[] = [];
    const parser = new FrameParser({ onError: (err) => errors.push(err) });
    const frames = [...parser.push(bad.subarray(0, cut)), ...parser.push(bad.subarray(cut))];
    assertEquals(frames, [THREE[2]], `cut at ${cut}`);
    assertEquals(errors.map((e) => [e.code, e.seq]), [[ErrorCode.BAD_CRC, 2]]);
  }
});

Deno.test("FrameParser detects a flipped payload bit through the CRC", () => {
  const bytes = encodeFrame(THREE[1]);
  bytes[HEADER_SIZE + 3] ^= 0x80;
  let calls = 0;
  assertEquals(new FrameParser({ onError: () => calls++ }).push(bytes), []);
  assertEquals(calls, 1);
});

Deno.test("FrameParser drops a bad-CRC frame silently without onError", () => {
  const parser = new FrameParser();
  assertEquals(parser.push(concat(corruptCrc(THREE[2]), encodeFrame(THREE[2]))), [THREE[2]]);
});

Deno.test("FrameDecoder calls onError for a bad CRC and keeps decoding", async () => {
  const errors: FrameSyntaxError[] = [];
  const frames = await decodeAll(
    ReadableStream.from([
      corruptCrc(THREE[0]),
      THREE_BYTES.subarray(0, 10),
      THREE_BYTES.subarray(10),
    ])
      .pipeThrough(new FrameDecoder({ onError: (err) => errors.push(err) })),
  );
  assertEquals(frames, THREE);
  assertEquals(errors.map((e) => e.code), [ErrorCode.BAD_CRC]);
});

Deno.test("FrameDecoder calls onError in stream order, after the frames before the bad one", async () => {
  const errors: FrameSyntaxError[] = [];
  const reader = frameReader(
    ReadableStream.from([
      concat(encodeFrame(THREE[0]), corruptCrc(THREE[1]), encodeFrame(THREE[2])),
    ]).pipeThrough(new FrameDecoder({ onError: (err) => errors.push(err) })),
  );
  assertEquals((await reader.read()).value, THREE[0]);
  assertEquals(errors.length, 0);
  assertEquals((await reader.read()).value, THREE[2]);
  assertEquals(errors.map((e) => e.seq), [2]);
  assertEquals((await reader.read()).done, true);
});

Deno.test("FrameDecoder emits the frames before a too-large frame, then errors", async () => {
  const reader = frameReader(
    ReadableStream.from([concat(THREE_BYTES, header(0x12345678, 70_000))])
      .pipeThrough(new FrameDecoder()),
  );
  for (const frame of THREE) assertEquals((await reader.read()).value, frame);
  const err = await assertRejects(() => reader.read(), FrameSyntaxError, "length 70000");
  assertEquals(err.offset, THREE_BYTES.length + 4);
});

Deno.test("FrameDecoder discards bytes written after a fatal error and errors the writable", async () => {
  const decoder = new FrameDecoder();
  const writer = decoder.writable.getWriter();
  const reader = decoder.readable.getReader();
  const first = writer.write(utf8("junk"));
  const err = await assertRejects(() => reader.read(), FrameSyntaxError, "magic");
  await first;
  await assertRejects(() => writer.write(THREE_BYTES), FrameSyntaxError);
  assert(await assertRejects(() => writer.closed, FrameSyntaxError) === err);
});

Deno.test("FrameDecoder errors the writable when its readable is cancelled", async () => {
  const decoder = new FrameDecoder();
  const writer = decoder.writable.getWriter();
  await decoder.readable.cancel(new Error("session closed"));
  await assertRejects(() => writer.closed, Error, "session closed");
});

Deno.test("FrameDecoder errors the readable when its writable is aborted", async () => {
  const decoder = new FrameDecoder();
  const reader = decoder.readable.getReader();
  const writer = decoder.writable.getWriter();
  const read = reader.read();
  await writer.write(THREE_BYTES.subarray(0, 5));
  await writer.abort(new Error("socket reset"));
  await assertRejects(() => read, Error, "socket reset");
});

Deno.test("FrameDecoder rejects an invalid maxPayload", () => {
  assertThrows(() => new FrameDecoder({ maxPayload: -5 }), RangeError, "maxPayload");
});

// ---------------------------------------------------------------------------------------------
// End of stream
// ---------------------------------------------------------------------------------------------

Deno.test("FrameParser.end rejects a stream that stops inside a frame", () => {
  for (const cut of [1, 8, HEADER_SIZE, HEADER_SIZE + 5, encodeFrame(THREE[0]).length - 1]) {
    const parser = new FrameParser();
    parser.push(THREE_BYTES.subarray(0, cut));
    assertEquals(parser.buffered, cut);
    const err = assertThrows(() => parser.end(), FrameSyntaxError, `stream ended ${cut} bytes`);
    assertEquals([err.code, err.fatal, err.offset], [ErrorCode.BAD_PAYLOAD, true, cut]);
  }
});

Deno.test("FrameDecoder errors a stream that ends inside a frame", async () => {
  await assertRejects(
    () =>
      decodeAll(
        ReadableStream.from([THREE_BYTES.subarray(0, 40)]).pipeThrough(new FrameDecoder()),
      ),
    FrameSyntaxError,
    "stream ended",
  );
});

Deno.test("FrameDecoder closes cleanly at a frame boundary", async () => {
  const frames = await decodeAll(
    ReadableStream.from([THREE_BYTES]).pipeThrough(new FrameDecoder()),
  );
  assertEquals(frames, THREE);
});

// ---------------------------------------------------------------------------------------------
// Encoding (encodeFrame, as sessions write frames) through the decoder
// ---------------------------------------------------------------------------------------------

Deno.test("encodeFrame and FrameDecoder round-trip a frame sequence", async () => {
  const frames: Frame[] = [
    ...THREE,
    {
      type: FrameType.COMMAND,
      flags: FLAG_ACK_REQUESTED,
      seq: 9,
      payload: encodeCommand({ name: "reboot", data: empty }),
    },
    { type: FrameType.ACK, flags: 0, seq: 9, payload: encodeAck(0) },
  ];
  const out = await decodeAll(
    ReadableStream.from(frames.map(encodeFrame)).pipeThrough(new FrameDecoder()),
  );
  assertEquals(out, frames);
});

Deno.test("encodeFrame refuses a frame that cannot be encoded", () => {
  assertThrows(
    () => encodeFrame({ type: 256, flags: 0, seq: 0, payload: empty }),
    RangeError,
  );
});

// ---------------------------------------------------------------------------------------------
// Random and mutated input
// ---------------------------------------------------------------------------------------------

const TYPES = Object.values(FrameType) as number[];

function randomFrame(rand: () => number): Frame {
  const type = rand() < 0.9 ? TYPES[Math.floor(rand() * TYPES.length)] : Math.floor(rand() * 256);
  const payload = new Uint8Array(Math.floor(rand() ** 3 * 300));
  for (let i = 0; i < payload.length; i++) payload[i] = Math.floor(rand() * 256);
  if (type === FrameType.TELEMETRY && payload.length > 0) payload[0] = Math.min(payload[0], 8);
  return {
    type,
    flags: rand() < 0.8 ? Math.floor(rand() * 2) : Math.floor(rand() * 256),
    seq: Math.floor(rand() * 2 ** 32),
    payload,
  };
}

/** Runs every body decoder that applies; only FrameSyntaxError may escape. */
function decodeBody(frame: Frame): void {
  const decoders: Record<number, (p: Uint8Array) => unknown> = {
    [FrameType.HELLO]: decodeHello,
    [FrameType.HELLO_ACK]: decodeHelloAck,
    [FrameType.TELEMETRY]: decodeTelemetry,
    [FrameType.ACK]: decodeAck,
    [FrameType.COMMAND]: decodeCommand,
    [FrameType.BYE]: decodeBye,
    [FrameType.ERROR]: decodeError,
  };
  try {
    decoders[frame.type]?.(frame.payload);
  } catch (err) {
    if (!(err instanceof FrameSyntaxError)) throw err;
    assertEquals([err.code, err.fatal], [ErrorCode.BAD_PAYLOAD, false]);
  }
}

/** Splits `bytes` into random chunks. */
function randomChunks(bytes: Uint8Array, rand: () => number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < bytes.length;) {
    const n = 1 + Math.floor(rand() ** 2 * 64);
    chunks.push(bytes.subarray(at, at + n));
    at += n;
  }
  return chunks;
}

Deno.test("FrameParser survives 2,000 mutated frame streams with only FrameSyntaxError", () => {
  const seed = 0xf00d;
  const rand = prng(seed);
  let fatal = 0;
  let dropped = 0;
  let decoded = 0;
  for (let round = 0; round < 2000; round++) {
    const originals = Array.from({ length: 1 + Math.floor(rand() * 4) }, () => randomFrame(rand));
    const encoded = originals.map(encodeFrame);
    const clean = concat(...encoded);
    const bytes = clean.slice();
    // Mutate 1..4 bytes: flip a bit, set a random value, or (rarely) truncate.
    const mutations = 1 + Math.floor(rand() * 4);
    let first = bytes.length;
    for (let m = 0; m < mutations; m++) {
      const at = Math.floor(rand() * bytes.length);
      bytes[at] = rand() < 0.5 ? bytes[at] ^ (1 << Math.floor(rand() * 8)) : rand() * 256;
      if (bytes[at] !== clean[at]) first = Math.min(first, at);
    }
    const input = rand() < 0.1 ? bytes.subarray(0, Math.floor(rand() * bytes.length)) : bytes;

    const frames: Frame[] = [];
    const parser = new FrameParser({ maxPayload: 256, onError: () => dropped++ });
    let fed = 0;
    try {
      for (const chunk of randomChunks(input, rand)) {
        parser.parse(chunk, (f) => frames.push(f));
        fed += chunk.length;
        assertEquals(parser.offset, fed, `round ${round}: parser must consume every byte`);
      }
      parser.end();
    } catch (err) {
      if (!(err instanceof FrameSyntaxError)) {
        throw new Error(`round ${round} (seed ${seed}): unexpected ${err}`, { cause: err });
      }
      fatal++;
    }
    // Frames wholly before the first mutated byte come out unchanged (when not over the cap).
    let end = 0;
    for (let i = 0; i < encoded.length; i++) {
      end += encoded[i].length;
      if (end > first || end > input.length || originals[i].payload.length > 256) break;
      assertEquals(frames[i], originals[i], `round ${round}: frame ${i} before the mutation`);
    }
    for (const frame of frames) decodeBody(frame);
    decoded += frames.length;
  }
  // The mix must exercise every path.
  assert(fatal > 100 && dropped > 100 && decoded > 1000, `${fatal} ${dropped} ${decoded}`);
});

Deno.test("FrameParser survives random bytes with only FrameSyntaxError", () => {
  const rand = prng(0xbeef);
  for (let round = 0; round < 500; round++) {
    const bytes = new Uint8Array(1 + Math.floor(rand() * 200));
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rand() * 256);
    // Half the rounds start with a valid magic so the length/CRC paths see random data too.
    if (round % 2) bytes.set([0x12, 0x34, 0x56, 0x78].slice(0, bytes.length));
    const parser = new FrameParser({ maxPayload: 128 });
    try {
      for (const chunk of randomChunks(bytes, rand)) parser.push(chunk);
      parser.end();
    } catch (err) {
      if (!(err instanceof FrameSyntaxError)) throw err;
    }
  }
});

Deno.test("FrameDecoder ends or errors with FrameSyntaxError on mutated streams", async () => {
  const rand = prng(0xcafe);
  for (let round = 0; round < 200; round++) {
    const bytes = concat(...Array.from({ length: 3 }, () => encodeFrame(randomFrame(rand))));
    bytes[Math.floor(rand() * bytes.length)] ^= 1 << Math.floor(rand() * 8);
    try {
      await decodeAll(
        ReadableStream.from(randomChunks(bytes, rand)).pipeThrough(new FrameDecoder()),
      );
    } catch (err) {
      if (!(err instanceof FrameSyntaxError)) throw err;
    }
  }
});

Deno.test("FrameParser holds at most header + maxPayload + trailer bytes of a partial frame", () => {
  const parser = new FrameParser({ maxPayload: 100 });
  parser.push(header(0x12345678, 100));
  assertEquals(parser.buffered, HEADER_SIZE);
  parser.push(new Uint8Array(100 + TRAILER_SIZE - 1));
  assertEquals(parser.buffered, HEADER_SIZE + 100 + TRAILER_SIZE - 1);
});
