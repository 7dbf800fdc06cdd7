/**
 * The floor for FBP/1 on Deno: a server with no core, no streams and no routing. Each connection
 * is a `conn.read` loop on a 1 KiB buffer feeding the FBP/1 parser; HELLO and ACK-requested
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
  const buf = new Uint8Array(1024);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      const out: Uint8Array[] = [];
      for (const f of parser.push(buf.subarray(0, n))) {
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
