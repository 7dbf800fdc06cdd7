/**
 * The floor for FBP/1 on Deno: a server with no core, no streams and no routing. Each connection
 * is a `conn.read` loop on a 64-byte buffer (16 KiB while reads come back full) feeding the FBP/1
 * parser; HELLO and ACK-requested
 * TELEMETRY are answered. The benchmark runs it beside Ferry to report ratios.
 *
 * @module
 */

import { FrameParser } from "../../src/protocols/binary/codec.ts";
import {
  encodeAck,
  encodeFrame,
  encodeHelloAck,
  FLAG_ACK_REQUESTED,
  FrameType,
} from "../../src/protocols/binary/frame.ts";

const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log(`listening ${(listener.addr as Deno.NetAddr).port}`);

/** The replies to the frames in `chunk` (HELLO_ACK, ACK), joined, or undefined. */
function answer(parser: FrameParser, chunk: Uint8Array): Uint8Array | undefined {
  const out: Uint8Array[] = [];
  for (const f of parser.push(chunk)) {
    if (f.type === FrameType.HELLO) {
      out.push(
        encodeFrame({
          type: FrameType.HELLO_ACK,
          flags: 0,
          seq: f.seq,
          payload: encodeHelloAck({ status: 0, keepAlive: 60 }),
        }),
      );
    } else if (f.type === FrameType.TELEMETRY && (f.flags & FLAG_ACK_REQUESTED)) {
      out.push(encodeFrame({ type: FrameType.ACK, flags: 0, seq: f.seq, payload: encodeAck(0) }));
    }
  }
  if (out.length === 0) return undefined;
  const joined = new Uint8Array(out.reduce((a, b) => a + b.length, 0));
  let o = 0;
  for (const b of out) {
    joined.set(b, o);
    o += b.length;
  }
  return joined;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let w = 0;
  while (w < bytes.length) w += await conn.write(bytes.subarray(w));
}

/** Few locals on purpose: an idle connection's suspended frame keeps every register. */
async function serve(conn: Deno.Conn): Promise<void> {
  const parser = new FrameParser();
  // 64 bytes while quiet (as Ferry), growing while reads come back full.
  let buf = new Uint8Array(64);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      const reply = answer(parser, buf.subarray(0, n)); // (payloads are copies)
      if (n === buf.length && n < 16384) buf = new Uint8Array(n * 4);
      else if (n < buf.length / 8 && buf.length > 64) buf = new Uint8Array(64);
      if (reply) await writeAll(conn, reply);
    }
  } catch { /* peer gone */ }
  try {
    conn.close();
  } catch { /* closed */ }
}

for await (const conn of listener) serve(conn);
