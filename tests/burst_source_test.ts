/**
 * `serveChunks` over a real loopback socket: a read buffer nothing holds a view of any more is
 * reused for the next read, also after a chunk that made reading wait (a publisher held at the
 * flow gate), and never while the consumer says it may still be viewed.
 */
import { serveChunks } from "../src/net/burst_source.ts";
import { assert, assertEquals } from "./_assert.ts";
import { within } from "./_mqtt_harness.ts";

/** Reads served from one connection: the ArrayBuffer each chunk was a view of. */
async function buffersOfReads(
  options: { waits: boolean; keeps: boolean },
): Promise<ArrayBufferLike[]> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const server = await listener.accept();
  const buffers: ArrayBufferLike[] = [];
  let arrived: (() => void) | undefined;
  const serving = serveChunks(server, {
    chunk(bytes) {
      buffers.push(bytes.buffer);
      arrived?.();
      // A consumer that has to wait (as a connection held at the flow gate does) returns a promise.
      return options.waits ? new Promise<void>((r) => setTimeout(r, 1)) : undefined;
    },
    keepsChunk: () => options.keeps,
  }, { minBuffer: 64, maxBuffer: 64 });
  try {
    for (let i = 0; i < 3; i++) {
      const got = new Promise<void>((r) => arrived = r);
      await client.write(new Uint8Array(10).fill(i));
      await within(got, 5000, `read ${i + 1}`);
    }
  } finally {
    client.close();
    await within(serving, 5000, "serveChunks to end");
  }
  return buffers;
}

Deno.test("serveChunks reuses the read buffer after a chunk that made reading wait, once nothing keeps a view", async () => {
  const buffers = await buffersOfReads({ waits: true, keeps: false });
  assertEquals(buffers.length, 3);
  assert(buffers[1] === buffers[0] && buffers[2] === buffers[0], "a fresh buffer per read");
});

Deno.test("serveChunks reuses the read buffer after a chunk handled at once, once nothing keeps a view", async () => {
  const buffers = await buffersOfReads({ waits: false, keeps: false });
  assertEquals(buffers.length, 3);
  assert(buffers[1] === buffers[0] && buffers[2] === buffers[0], "a fresh buffer per read");
});

Deno.test("serveChunks gives a fresh buffer to every read while the consumer may still view the last one", async () => {
  for (const waits of [true, false]) {
    const buffers = await buffersOfReads({ waits, keeps: true });
    assertEquals(buffers.length, 3);
    assertEquals(new Set(buffers).size, 3, `a buffer was reused (waits: ${waits})`);
  }
});
