/**
 * The floor for FBP/1 on Deno: a server with no core, no streams and no routing. Each connection
 * is a `conn.read` loop on a 64-byte buffer (growing while reads come back full) feeding a frame
 * scanner that checks magic and CRC; HELLO, ACK-requested TELEMETRY and BYE are answered (a BYE
 * with a BYE, then the connection is closed, [FBP-5.4-1]). The benchmark runs it with the same
 * runtime flags as Ferry (`deno task start`'s) to report ratios.
 *
 * Usage: `deno run <flags> bench/peers/bare_fbp_server.ts [--port N]`; prints `listening PORT`.
 *
 * @module
 */

import { ACK_REQUESTED, encodeFrame, FrameType, scanFbp } from "../_fbp_wire.ts";

const pi = Deno.args.indexOf("--port");
const listener = Deno.listen({
  hostname: "127.0.0.1",
  port: pi >= 0 ? Number(Deno.args[pi + 1]) : 0,
});
console.log(`listening ${(listener.addr as Deno.NetAddr).port}`);

const HELLO_ACK_BODY = new Uint8Array([0, 0, 60]); // status OK, keepalive 60 s
const ACK_BODY = new Uint8Array([0]);
const BYE_BODY = new Uint8Array(2); // reason 0

/** What the frames in `buf[0, end)` ask for: the replies joined, bytes consumed, and a BYE. */
interface Answer {
  reply?: Uint8Array;
  used: number;
  bye: boolean;
}

function answer(buf: Uint8Array, end: number): Answer {
  const out: Uint8Array[] = [];
  let bye = false;
  const used = scanFbp(buf, 0, end, (type, flags, seq) => {
    if (bye) return; // nothing after a BYE is handled
    if (type === FrameType.HELLO) {
      out.push(encodeFrame(FrameType.HELLO_ACK, 0, seq, HELLO_ACK_BODY));
    } else if (type === FrameType.TELEMETRY && (flags & ACK_REQUESTED)) {
      out.push(encodeFrame(FrameType.ACK, 0, seq, ACK_BODY));
    } else if (type === FrameType.BYE) {
      out.push(encodeFrame(FrameType.BYE, 0, seq, BYE_BODY));
      bye = true;
    }
  });
  if (out.length <= 1) return { reply: out[0], used, bye };
  const joined = new Uint8Array(out.reduce((a, b) => a + b.length, 0));
  let o = 0;
  for (const b of out) {
    joined.set(b, o);
    o += b.length;
  }
  return { reply: joined, used, bye };
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let w = 0;
  while (w < bytes.length) w += await conn.write(bytes.subarray(w));
}

/** Few locals on purpose: an idle connection's suspended frame keeps every register. */
async function serve(conn: Deno.Conn): Promise<void> {
  let buf = new Uint8Array(64);
  let end = 0;
  try {
    for (;;) {
      const n = await conn.read(buf.subarray(end));
      if (n === null) break;
      end += n;
      const { reply, used, bye } = answer(buf, end);
      const full = end === buf.length;
      buf.copyWithin(0, used, end);
      end -= used;
      if (full && buf.length < 16384) {
        const bigger = new Uint8Array(buf.length * 4);
        bigger.set(buf.subarray(0, end));
        buf = bigger;
      } else if (end === 0 && n < buf.length / 8 && buf.length > 64) buf = new Uint8Array(64);
      if (reply) await writeAll(conn, reply);
      if (bye) break;
    }
  } catch { /* peer gone or bad magic */ }
  try {
    conn.close();
  } catch { /* closed */ }
}

for await (const conn of listener) serve(conn);
