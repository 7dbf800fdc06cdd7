import { assert, assertEquals } from "./_assert.ts";
import { ConnWriter } from "../src/net/conn_writer.ts";

/** A socket stand-in that takes at most `step` bytes per write, after a macrotask. */
function sink(step = Infinity) {
  const got: number[] = [];
  return {
    got,
    write(p: Uint8Array): Promise<number> {
      const n = Math.min(step, p.length);
      got.push(...p.subarray(0, n));
      return new Promise((r) => setTimeout(() => r(n), 0));
    },
  };
}

Deno.test("ConnWriter keeps order across written and reserved frames, partial writes included", async () => {
  const s = sink(64);
  const w = new ConnWriter(s);
  const expect: number[] = [];
  let v = 0;
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 200; i++) {
      const n = 1 + (i % 9);
      if (i % 3 === 0) {
        const b = new Uint8Array(n).map(() => v++ & 0xff);
        w.write(b);
        expect.push(...b);
      } else {
        const r = w.reserve(n)!;
        for (let k = 0; k < n; k++) {
          r[k] = v++ & 0xff;
          expect.push(r[k]);
        }
      }
    }
    await w.flushed();
  }
  const big = w.reserve(5000)!; // larger than a chunk: a buffer of its own
  big.fill(9);
  expect.push(...big);
  await w.flushed();
  assertEquals(s.got, expect);
  assertEquals(w.pendingBytes, 0);
});

Deno.test("ConnWriter signals high water once and low water once drained", async () => {
  const events: string[] = [];
  const w = new ConnWriter(sink(100), {
    highWaterBytes: 1000,
    lowWaterBytes: 200,
    onHigh: () => events.push("high"),
    onLow: () => events.push(`low at ${w.pendingBytes}`),
  });
  for (let i = 0; i < 30; i++) w.reserve(50)!.fill(1);
  assertEquals(events, ["high"]);
  assert(w.behind);
  await w.flushed();
  assertEquals(events.length, 2);
  assert(/^low at (\d+)$/.test(events[1]) && Number(events[1].slice(7)) <= 200, events[1]);
  assert(!w.behind);
});

Deno.test("ConnWriter refuses reservations after failing, and a failure counts as low water", () => {
  const events: string[] = [];
  const w = new ConnWriter(sink(), {
    maxPendingBytes: 100,
    highWaterBytes: 50,
    onHigh: () => events.push("high"),
    onLow: () => events.push("low"),
    onStall: () => events.push("stall"),
  });
  w.reserve(60);
  assertEquals(w.reserve(60), undefined);
  assertEquals(events, ["high", "low", "stall"]);
  assert(w.failed);
});

Deno.test("ConnWriter's pooled first chunks are never reused while a write still views them", async () => {
  // A socket that reads the bytes only when the write completes, as late as a kernel could.
  function lateSink() {
    const got: number[] = [];
    return {
      got,
      write(p: Uint8Array): Promise<number> {
        return new Promise((r) =>
          setTimeout(() => {
            got.push(...p);
            r(p.length);
          }, 1)
        );
      },
    };
  }
  const sinks = [lateSink(), lateSink(), lateSink()];
  const writers = sinks.map((s) => new ConnWriter(s));
  const expect: number[][] = sinks.map(() => []);
  for (let round = 0; round < 40; round++) {
    // Each writer answers "a read" with a few small frames, then the flushes interleave.
    writers.forEach((w, k) => {
      for (let f = 0; f < 1 + (round + k) % 3; f++) {
        const r = w.reserve(19)!;
        r.fill((round * 7 + k * 31 + f) & 0xff);
        expect[k].push(...r);
      }
    });
    if (round % 2 === 0) await Promise.all(writers.map((w) => w.flushed()));
    else await new Promise((r) => setTimeout(r, 0));
  }
  await Promise.all(writers.map((w) => w.flushed()));
  sinks.forEach((s, k) => assertEquals(s.got, expect[k], `writer ${k}`));
});
