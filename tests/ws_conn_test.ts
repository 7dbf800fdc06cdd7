/**
 * WsConn on in-memory sockets: the payload bytes come out the same however frames and reads are
 * cut, control frames are answered, writes are framed, and the closing handshake is bounded.
 */

import { assert, assertEquals } from "./_assert.ts";
import { prng, until } from "./_mqtt_harness.ts";
import { frame } from "./_mqtt_ws_harness.ts";
import { FakeClock } from "../src/core/clock.ts";
import type { CloseCode } from "../src/core/registry.ts";
import { encodeFrame, wsCloseCode, WsConn, WsFrameError } from "../src/net/ws_conn.ts";

/** A socket fed from a list of chunks; records what is written. */
class FakeSocket {
  remoteAddr: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 9 };
  written: Uint8Array[] = [];
  closed = false;
  writeClosed = false;
  #chunks: Uint8Array[];
  #wait: (() => void) | undefined;
  #ended = false;
  constructor(chunks: Uint8Array[] = []) {
    this.#chunks = chunks;
  }
  push(c: Uint8Array): void {
    this.#chunks.push(c);
    this.#wait?.();
  }
  end(): void {
    this.#ended = true;
    this.#wait?.();
  }
  async read(p: Uint8Array): Promise<number | null> {
    for (;;) {
      if (this.closed) throw new Deno.errors.BadResource("closed");
      const c = this.#chunks.shift();
      if (c) {
        const n = Math.min(c.length, p.length);
        p.set(c.subarray(0, n));
        if (n < c.length) this.#chunks.unshift(c.subarray(n));
        return n;
      }
      if (this.#ended) return null;
      await new Promise<void>((r) => this.#wait = r);
    }
  }
  write(p: Uint8Array): Promise<number> {
    if (this.closed || this.writeClosed) return Promise.reject(new Deno.errors.BrokenPipe("x"));
    this.written.push(p.slice());
    return Promise.resolve(p.length);
  }
  closeWrite(): void {
    this.writeClosed = true;
  }
  close(): void {
    this.closed = true;
    this.#wait?.();
  }
  /** Frames written, parsed. */
  frames(): Array<{ op: number; fin: boolean; masked: boolean; payload: Uint8Array }> {
    const all = concat(this.written);
    const out = [];
    let i = 0;
    while (i < all.length) {
      let len = all[i + 1] & 0x7f;
      let at = i + 2;
      if (len === 126) (len = (all[at] << 8) | all[at + 1], at += 2);
      else if (len === 127) {
        len = Number(new DataView(all.buffer, at, 8).getBigUint64(0));
        at += 8;
      }
      out.push({
        op: all[i] & 0x0f,
        fin: (all[i] & 0x80) !== 0,
        masked: (all[i + 1] & 0x80) !== 0,
        payload: all.slice(at, at + len),
      });
      i = at + len;
    }
    return out;
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) (out.set(p, o), o += p.length);
  return out;
}

async function readAll(ws: WsConn, size: () => number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (;;) {
    const buf = new Uint8Array(size());
    const n = await ws.read(buf);
    if (n === null) return concat(parts);
    assert(n > 0, "a read of 0 bytes");
    parts.push(buf.slice(0, n));
  }
}

Deno.test("WsConn hands on the payload of binary messages unchanged however frames, fragments and reads are cut (random)", async () => {
  const rand = prng(1616);
  for (let round = 0; round < 150; round++) {
    const expected: number[] = [];
    const pings: Uint8Array[] = [];
    const stream: Uint8Array[] = [];
    const messages = 1 + Math.floor(rand() * 6);
    for (let m = 0; m < messages; m++) {
      const fragments = 1 + Math.floor(rand() * 3);
      for (let f = 0; f < fragments; f++) {
        const sizeClass = rand();
        const len = sizeClass < 0.6
          ? Math.floor(rand() * 126)
          : sizeClass < 0.95
          ? 126 + Math.floor(rand() * 2000)
          : 65_536 + Math.floor(rand() * 1000);
        const payload = Uint8Array.from({ length: len }, () => Math.floor(rand() * 256));
        expected.push(...payload);
        stream.push(frame(f === 0 ? 0x2 : 0x0, payload, { fin: f === fragments - 1 }));
        if (rand() < 0.3) { // a ping between (or inside) messages
          const p = Uint8Array.from({ length: Math.floor(rand() * 20) }, () => 7);
          pings.push(p);
          stream.push(frame(0x9, p));
        }
      }
    }
    stream.push(frame(0x8, Uint8Array.from([0x03, 0xe8]))); // then Close: pongs go out before
    const all = concat(stream);
    const cuts: Uint8Array[] = [];
    for (let i = 0; i < all.length;) {
      const n = 1 + Math.floor(rand() * (rand() < 0.5 ? 20 : 5000));
      cuts.push(all.subarray(i, i + n));
      i += n;
    }
    const sock = new FakeSocket(cuts);
    const ws = new WsConn(sock, { options: {} });
    const got = await readAll(ws, () => 14 + Math.floor(rand() * 300));
    await until(() => sock.closed, "closed after the Close");
    assertEquals(got.length, expected.length, `round ${round}`);
    assert(got.every((b, i) => b === expected[i]), `round ${round}: payload differs`);
    const out = sock.frames();
    const pongs = out.filter((f) => f.op === 0xa);
    assertEquals(pongs.map((p) => [...p.payload].join()), pings.map((p) => [...p].join()));
    assertEquals(out.at(-1)?.op, 0x8, "the Close answered last");
  }
});

Deno.test("WsConn reads the frames the handshake read past, before the socket", async () => {
  const head = concat([frame(0x2, Uint8Array.from([1, 2, 3])), frame(0x2, Uint8Array.from([4]))]);
  // The head ends inside the second frame's header: its rest comes first from the socket.
  const sock = new FakeSocket([head.subarray(9), frame(0x2, Uint8Array.from([5]))]);
  sock.end();
  const ws = new WsConn(sock, { options: {}, head: head.subarray(0, 9) });
  assertEquals([...await readAll(ws, () => 16)], [1, 2, 3, 4, 5]);
});

Deno.test("WsConn writes each buffer as one unmasked binary frame with the shortest length form", async () => {
  for (const [len, headerLen] of [[0, 2], [125, 2], [126, 4], [65_535, 4], [65_536, 10]]) {
    const [first, ...rest] = encodeFrame(0x2, new Uint8Array(len));
    const total = first.length + rest.reduce((n, p) => n + p.length, 0);
    assertEquals(total, len + headerLen, `length ${len}`);
    assertEquals(first[0], 0x82);
    assertEquals(first[1] & 0x80, 0, "server frames are not masked");
  }
  const sock = new FakeSocket();
  const ws = new WsConn(sock, { options: {} });
  assertEquals(await ws.write(Uint8Array.from([0xc0, 0])), 2);
  assertEquals(sock.frames(), [{
    op: 2,
    fin: true,
    masked: false,
    payload: Uint8Array.from([0xc0, 0]),
  }]);
});

Deno.test("wsCloseCode: shutdown 1001, protocol error 1002, slow consumer and revocation 1008, the rest 1000", () => {
  const table: Record<CloseCode, number> = {
    shutting_down: 1001,
    protocol_error: 1002,
    slow_consumer: 1008,
    removed: 1008,
    taken_over: 1000,
    keepalive_timeout: 1000,
    administrative: 1000,
  };
  for (const [code, ws] of Object.entries(table)) {
    assertEquals(wsCloseCode({ code: code as CloseCode, message: "" }), ws, code);
  }
  assertEquals(wsCloseCode(), 1000);
});

Deno.test("WsConn.close sends Close with the reason cut at 123 bytes on a character boundary, shuts the write side, and closes on the peer's Close", async () => {
  const sock = new FakeSocket();
  let closedCalls = 0;
  const ws = new WsConn(sock, { options: { onClosed: () => closedCalls++ } });
  const reading = ws.read(new Uint8Array(64));
  ws.close({ code: "protocol_error", message: "é".repeat(100) });
  ws.close({ code: "shutting_down", message: "again" }); // idempotent
  await new Promise((r) => setTimeout(r, 0));
  const [c] = sock.frames();
  assertEquals(c.op, 0x8);
  assertEquals((c.payload[0] << 8) | c.payload[1], 1002);
  assertEquals(c.payload.length - 2, 122); // 61 two-byte characters
  new TextDecoder("utf-8", { fatal: true }).decode(c.payload.subarray(2));
  assert(sock.writeClosed, "write side shut");
  assert(!sock.closed, "waits for the peer's Close");
  sock.push(frame(0x2, Uint8Array.from([9]))); // data after our Close: dropped
  sock.push(frame(0x8, Uint8Array.from([0x03, 0xea])));
  assertEquals(await reading, null); // closing: the reader is done; the drain reads on
  await until(() => sock.closed, "the socket closed on the peer's Close");
  assertEquals(closedCalls, 1);
  await assertRejectsClosed(ws.write(new Uint8Array(1)));
});

async function assertRejectsClosed(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert(err instanceof Deno.errors.BadResource, String(err));
    return;
  }
  throw new Error("write after close was accepted");
}

Deno.test("WsConn closes the socket after closeTimeoutMs when the peer never answers its Close (injected clock)", async () => {
  const clock = new FakeClock(0);
  const sock = new FakeSocket();
  const ws = new WsConn(sock, { options: { clock, closeTimeoutMs: 2000 } });
  ws.close();
  await new Promise((r) => setTimeout(r, 0));
  assert(!sock.closed);
  clock.tick(1999);
  assert(!sock.closed);
  clock.tick(1);
  assert(sock.closed, "closed at the timeout");
});

Deno.test("WsConn reports a refused frame with its code and stream offset before closing", async () => {
  const errors: WsFrameError[] = [];
  const good = frame(0x2, Uint8Array.from([1, 2, 3]));
  const sock = new FakeSocket([good, frame(0x1, new TextEncoder().encode("text"))]);
  const ws = new WsConn(sock, { options: { onFrameError: (e) => errors.push(e) } });
  const buf = new Uint8Array(64);
  assertEquals(await ws.read(buf), 3); // the bytes before the bad frame still arrive
  assertEquals(await ws.read(buf), null);
  assertEquals(errors.length, 1);
  assertEquals([errors[0].code, errors[0].offset], [1003, good.length]);
  assert(errors[0] instanceof WsFrameError && errors[0] instanceof SyntaxError);
  sock.end();
});

Deno.test("WsConn refuses a read buffer shorter than the largest frame header", async () => {
  const ws = new WsConn(new FakeSocket(), { options: {} });
  let threw = false;
  try {
    await ws.read(new Uint8Array(13));
  } catch (e) {
    threw = e instanceof RangeError;
  }
  assert(threw);
});

Deno.test("WsConn hands over the upgrade's credentials once", () => {
  const ws = new WsConn(new FakeSocket(), { options: {}, credentials: { secret: "s" } });
  assertEquals(ws.takeCredentials()?.secret, "s");
  assertEquals(ws.takeCredentials(), undefined);
});

Deno.test("WsConn given random and mutated bytes refuses them with a close code or reads them; nothing else is thrown (fuzz sample)", async () => {
  const rand = prng(6455);
  const seeds = [
    frame(0x2, Uint8Array.from([0x10, 0x02, 0, 0])),
    frame(0x0, new Uint8Array(3), { fin: false }),
    frame(0x9, Uint8Array.from([1])),
    frame(0x8, Uint8Array.from([3, 0xe8])),
    frame(0x2, new Uint8Array(300)),
  ];
  for (let i = 0; i < 2000; i++) {
    const base = concat(
      Array.from(
        { length: 1 + Math.floor(rand() * 3) },
        () => seeds[Math.floor(rand() * seeds.length)],
      ),
    );
    const b = base.slice();
    const flips = Math.floor(rand() * 4);
    for (let f = 0; f < flips; f++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
    const sock = new FakeSocket([b.subarray(0, Math.floor(rand() * (b.length + 1))), b]);
    sock.end();
    const errors: WsFrameError[] = [];
    const ws = new WsConn(sock, {
      options: { maxFrameSize: 1000, onFrameError: (e) => errors.push(e) },
    });
    await readAll(ws, () => 14 + Math.floor(rand() * 64)); // must end, and throw nothing
    for (const e of errors) assert([1002, 1003, 1009].includes(e.code), `code ${e.code}`);
  }
});
