/**
 * `serveChunks`, the socket reader of every stream protocol, over real loopback sockets: order,
 * waiting on the consumer, how reading ends (quietly on a closed socket, with the error
 * otherwise), and buffer reuse: a read buffer nothing holds a view of any more is reused for the
 * next read, also after a chunk that made reading wait (a publisher held at the flow gate), and
 * never while the consumer says it may still be viewed; an idle-size read is a copy out of a pooled
 * slot, so what a consumer keeps never changes.
 */

import { assert, assertEquals } from "./_assert.ts";
import { type ChunkConsumer, serveChunks } from "../src/net/chunk_reader.ts";
import { within } from "./_mqtt_harness.ts";

/** A connected pair of loopback TCP sockets. */
async function pair(): Promise<{ client: Deno.Conn; server: Deno.Conn; close(): void }> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: (l.addr as Deno.NetAddr).port }),
    l.accept(),
  ]);
  l.close();
  return {
    client,
    server,
    close() {
      for (const c of [client, server]) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

/** Runs `serveChunks` on `conn`; resolves with what `end` got. */
function serve(
  conn: Deno.Conn,
  consumer: Omit<ChunkConsumer, "end">,
  options = {},
): Promise<{ error?: unknown }> {
  const { promise, resolve } = Promise.withResolvers<{ error?: unknown }>();
  // Not a spread copy: a `closing` getter must stay live.
  const c: ChunkConsumer = Object.assign(consumer, {
    end: (error?: unknown) => resolve({ error }),
  });
  serveChunks(conn, c, options);
  return promise;
}

Deno.test("serveChunks hands every byte over in order and ends quietly when the peer closes", async () => {
  const p = await pair();
  const seen: number[] = [];
  const done = serve(p.server, { chunk: (b) => void seen.push(...b) });
  const sent: number[] = [];
  for (let i = 0; i < 50; i++) {
    const b = new Uint8Array(1 + (i * 37) % 300).map((_, j) => (i + j) & 0xff);
    sent.push(...b);
    await p.client.write(b);
  }
  p.client.close();
  const { error } = await done;
  assertEquals(error, undefined);
  assertEquals(seen.length, sent.length);
  assertEquals(seen, sent);
  p.close();
});

Deno.test("serveChunks stops reading while the consumer's promise is pending", async () => {
  const p = await pair();
  let release!: () => void;
  let chunks = 0;
  const done = serve(p.server, {
    chunk(): Promise<void> | undefined {
      chunks++;
      return chunks === 1 ? new Promise<void>((r) => release = r) : undefined;
    },
  });
  await p.client.write(new Uint8Array([1]));
  while (chunks === 0) await new Promise((r) => setTimeout(r, 5));
  await p.client.write(new Uint8Array([2]));
  // Bounded wait: the second byte is in the socket, but no read happens while the first waits.
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 5));
  assertEquals(chunks, 1, "no read while the consumer waits");
  release();
  while (chunks < 2) await new Promise((r) => setTimeout(r, 5));
  p.client.close();
  assertEquals((await done).error, undefined);
  p.close();
});

Deno.test("serveChunks ends with the error a chunk throws, and stops once the consumer is closing", async () => {
  const p = await pair();
  const boom = new Error("bad packet");
  const done = serve(p.server, {
    chunk: () => {
      throw boom;
    },
  });
  await p.client.write(new Uint8Array([1, 2, 3]));
  assertEquals((await done).error, boom);
  p.close();

  const q = await pair();
  let closing = false;
  let chunks = 0;
  const ended = serve(q.server, {
    get closing() {
      return closing;
    },
    chunk() {
      chunks++;
      closing = true;
    },
  });
  await q.client.write(new Uint8Array([1]));
  assertEquals((await ended).error, undefined);
  assertEquals(chunks, 1);
  q.close();
});

/**
 * Reads served from one connection: the ArrayBuffer each chunk was a view of. The first write
 * fills the idle-size buffer (16 bytes), so the reads after it get a larger buffer (64), the one
 * that is reused; the idle-size read itself is a copy out of a pooled slot.
 */
async function buffersOfReads(
  options: { waits: boolean; keeps: boolean },
): Promise<ArrayBufferLike[]> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const server = await listener.accept();
  const buffers: ArrayBufferLike[] = [];
  let arrived: (() => void) | undefined;
  const { promise: serving, resolve: ended } = Promise.withResolvers<void>();
  serveChunks(server, {
    end: () => ended(),
    chunk(bytes) {
      buffers.push(bytes.buffer);
      arrived?.();
      // A consumer that has to wait (as a connection held at the flow gate does) returns a promise.
      return options.waits ? new Promise<void>((r) => setTimeout(r, 1)) : undefined;
    },
    keepsChunk: () => options.keeps,
  }, { minBuffer: 16, maxBuffer: 64 });
  try {
    for (let i = 0; i < 4; i++) {
      const got = new Promise<void>((r) => arrived = r);
      await client.write(new Uint8Array(i === 0 ? 16 : 10).fill(i));
      await within(got, 5000, `read ${i + 1}`);
    }
  } finally {
    client.close();
    await within(serving, 5000, "serveChunks to end");
  }
  return buffers.slice(1); // the reads at the larger size
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

Deno.test("serveChunks hands idle-size reads over as copies: chunks kept by the consumer never change as later reads reuse the pooled slots", async () => {
  // Many connections at once, each read at most the idle size: every pending read holds a slot of
  // a shared slab, and every slot is reused by later reads once its bytes were copied out.
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const N = 40;
  const ROUNDS = 5;
  const clients: Deno.Conn[] = [];
  const kept: Uint8Array[][] = [];
  const ends: Promise<void>[] = [];
  let arrivals = 0;
  let arrived: (() => void) | undefined;
  for (let c = 0; c < N; c++) {
    clients.push(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
    const server = await listener.accept();
    const mine: Uint8Array[] = [];
    kept.push(mine);
    const { promise, resolve } = Promise.withResolvers<void>();
    ends.push(promise);
    serveChunks(server, {
      end: () => resolve(),
      chunk(bytes) {
        mine.push(bytes); // kept, as a decoded message's payload view would be
        arrivals++;
        arrived?.();
      },
      keepsChunk: () => true,
    }, { minBuffer: 16, maxBuffer: 16 });
  }
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const want = (r + 1) * N;
      const all = new Promise<void>((res) => arrived = () => arrivals >= want && res());
      await Promise.all(clients.map((c, i) => c.write(new Uint8Array(8).fill(i * ROUNDS + r))));
      await within(all, 5000, `round ${r + 1}`);
    }
  } finally {
    clients.forEach((c) => c.close());
    await within(Promise.all(ends), 5000, "every reader to end");
  }
  for (let i = 0; i < N; i++) {
    const bytes = kept[i].flatMap((b) => [...b]);
    const want = Array.from({ length: ROUNDS }, (_, r) => new Array(8).fill(i * ROUNDS + r)).flat();
    assertEquals(bytes, want, `connection ${i}: a kept chunk changed`);
    assert(
      kept[i].every((b) => b.byteLength === b.buffer.byteLength),
      "a chunk views a shared slot",
    );
  }
});
