/**
 * Bench floor: the least a Deno MQTT server can do per connection — accept, answer any CONNECT
 * with CONNACK 0, and keep one pending 256-byte read. Used to show what part of Ferry's idle
 * connection cost is the runtime's. Prints `listening <port>`.
 *
 * @module
 */

const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log(`listening ${(l.addr as Deno.NetAddr).port}`);
const CONNACK = new Uint8Array([0x20, 2, 0, 0]);

async function serve(c: Deno.Conn): Promise<void> {
  try {
    for (let first = true;; first = false) {
      const n = await c.read(new Uint8Array(256));
      if (n === null) break;
      if (first) await c.write(CONNACK);
    }
  } catch { /* closed */ }
  try {
    c.close();
  } catch { /* closed */ }
}

for await (const c of l) serve(c);
