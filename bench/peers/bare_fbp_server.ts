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

async function serve(conn: Deno.Conn): Promise<void> {
  const parser = new FrameParser();
  // 64 bytes while quiet (as Ferry), 16 KiB while reads come back full.
  const small = new Uint8Array(64);
  let big: Uint8Array<ArrayBuffer> | undefined;
  let buf = small;
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      const frames = parser.push(buf.subarray(0, n)); // (payloads are copies)
      buf = n === buf.length ? (big ??= new Uint8Array(16384)) : small;
      const out: Uint8Array[] = [];
      for (const f of frames) {
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
          out.push(
            encodeFrame({ type: FrameType.ACK, flags: 0, seq: f.seq, payload: encodeAck(0) }),
          );
        }
      }
      if (out.length) {
        const total = out.reduce((a, b) => a + b.length, 0);
        const joined = new Uint8Array(total);
        let o = 0;
        for (const b of out) {
          joined.set(b, o);
          o += b.length;
        }
        let w = 0;
        while (w < joined.length) w += await conn.write(joined.subarray(w));
      }
    }
  } catch { /* peer gone */ }
  try {
    conn.close();
  } catch { /* closed */ }
}

for await (const conn of listener) serve(conn);
