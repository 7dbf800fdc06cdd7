import { assert, assertEquals, assertRejects, assertThrows } from "./_assert.ts";
import { createMessage, type Message } from "../src/core/message.ts";
import { Pipeline, PipelineClosedError } from "../src/core/pipeline.ts";

const msg = (deviceId: string, n: number): Message =>
  createMessage({ topic: `devices/${deviceId}/telemetry`, payload: new Uint8Array([n]), deviceId });

Deno.test("Pipeline keeps per-device order with a parallel pool", async () => {
  const seen = new Map<string, number[]>();
  const p = new Pipeline(async (m) => {
    await new Promise((r) => setTimeout(r, Math.random() * 2));
    const l = seen.get(m.deviceId!) ?? [];
    l.push(m.payload[0]);
    seen.set(m.deviceId!, l);
  }, { capacity: 8, concurrency: 4 });
  for (let i = 0; i < 50; i++) for (const d of ["a", "b", "c"]) await p.submit(msg(d, i));
  await p.close();
  for (const d of ["a", "b", "c"]) {
    assertEquals(
      seen.get(d),
      Array.from({ length: 50 }, (_, i) => i),
    );
  }
});

Deno.test("Pipeline runs at most `concurrency` handlers at once", async () => {
  let running = 0;
  let peak = 0;
  const p = new Pipeline(async () => {
    running++;
    peak = Math.max(peak, running);
    await new Promise((r) => setTimeout(r, 1));
    running--;
  }, { capacity: 4, concurrency: 3 });
  for (let i = 0; i < 40; i++) await p.submit(msg(`d${i}`, i));
  await p.close();
  assertEquals(peak, 3);
  assertEquals(p.stats.handled, 40);
});

Deno.test("Pipeline.offer refuses when full and submit waits for room", async () => {
  const gate = Promise.withResolvers<void>();
  const p = new Pipeline(() => gate.promise, { capacity: 2, concurrency: 1 });
  await p.submit(msg("a", 0)); // taken by the handler
  await new Promise((r) => setTimeout(r, 0));
  assert(p.offer(msg("a", 1)));
  assert(p.offer(msg("a", 2)));
  assert(!p.offer(msg("a", 3)), "offer accepted past capacity");
  let accepted = false;
  const waiting = p.submit(msg("a", 4)).then(() => accepted = true);
  await new Promise((r) => setTimeout(r, 10));
  assert(!accepted, "submit did not wait");
  assertEquals(p.waiting, 1);
  gate.resolve();
  await waiting;
  await p.close();
  assertEquals(p.stats.handled, 4);
});

Deno.test("Pipeline.close drains queued messages and rejects later submits", async () => {
  let handled = 0;
  const p = new Pipeline(async () => {
    await new Promise((r) => setTimeout(r, 1));
    handled++;
  }, { capacity: 10, concurrency: 2 });
  for (let i = 0; i < 10; i++) await p.submit(msg("a", i));
  await p.close();
  assertEquals(handled, 10);
  await assertRejects(() => p.submit(msg("a", 1)), PipelineClosedError);
  assert(!p.offer(msg("a", 1)));
});

Deno.test("Pipeline counts a failing handler and goes on", async () => {
  const errors: unknown[] = [];
  const p = new Pipeline((m) => {
    if (m.payload[0] === 1) throw new Error("boom");
  }, { onError: (e) => errors.push(e) });
  for (let i = 0; i < 3; i++) await p.submit(msg("a", i));
  await p.close();
  assertEquals(p.stats, { handled: 2, failed: 1 });
  assertEquals(errors.length, 1);
});

Deno.test("Pipeline.submit can be aborted while waiting", async () => {
  const gate = Promise.withResolvers<void>();
  const p = new Pipeline(() => gate.promise, { capacity: 1, concurrency: 1 });
  await p.submit(msg("a", 0));
  await new Promise((r) => setTimeout(r, 0));
  await p.submit(msg("a", 1));
  const ac = new AbortController();
  const waiting = p.submit(msg("a", 2), ac.signal);
  ac.abort(new Error("gone"));
  await assertRejects(() => waiting, Error, "gone");
  gate.resolve();
  await p.close();
  assertEquals(p.stats.handled, 2);
});

Deno.test("Pipeline runs a message at once when nothing is queued, and never ahead of its key", async () => {
  // A synchronous handler runs inside offer() when the queue is empty.
  const direct: number[] = [];
  const p1 = new Pipeline((m) => {
    direct.push(m.payload[0]);
  }, { capacity: 4, concurrency: 2 });
  assert(p1.offer(msg("a", 1)));
  assertEquals(direct, [1]);
  await p1.close();

  // Mixed: device a's first message is async and slow, so its later messages (offered while it
  // runs) must queue behind it, while other devices go straight through.
  const seen: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const p = new Pipeline(async (m) => {
    if (m.deviceId === "a" && m.payload[0] === 0) await gate;
    seen.push(`${m.deviceId}${m.payload[0]}`);
  }, { capacity: 16, concurrency: 4 });
  assert(p.offer(msg("a", 0)));
  assert(p.offer(msg("a", 1)));
  assert(p.offer(msg("b", 0)));
  assert(p.offer(msg("a", 2)));
  await new Promise((r) => setTimeout(r, 5));
  assert(!seen.some((s) => s.startsWith("a")), `a ran ahead of its first message: ${seen}`);
  release();
  await p.close();
  assertEquals(seen.filter((s) => s.startsWith("a")), ["a0", "a1", "a2"]);
  assertEquals(p.stats.handled, 4);
});

Deno.test("Pipeline: a handler that publishes again queues the new message instead of nesting", async () => {
  const order: string[] = [];
  const p: Pipeline = new Pipeline((m) => {
    order.push(`start ${m.topic}`);
    if (m.topic === "first") p.offer(createMessage({ topic: "second", payload: new Uint8Array() }));
    order.push(`end ${m.topic}`);
  }, { capacity: 4, concurrency: 4 });
  p.offer(createMessage({ topic: "first", payload: new Uint8Array() }));
  await p.close();
  assertEquals(order, ["start first", "end first", "start second", "end second"]);
});

Deno.test("Pipeline.admit takes a derived message into a full queue; producers wait until it drains", async () => {
  const release = Promise.withResolvers<void>();
  const seen: number[] = [];
  const p = new Pipeline(async (m) => {
    await release.promise;
    seen.push(m.payload[0]);
  }, { capacity: 2, concurrency: 1 });
  await p.submit(msg("a", 0)); // running (holds the only permit)
  await p.submit(msg("a", 1));
  await p.submit(msg("a", 2)); // the queue is full now
  assert(!p.hasRoom);
  p.admit(msg("a", 3)); // taken anyway, in order
  let producerIn = false;
  const producer = p.submit(msg("a", 4)).then(() => producerIn = true);
  await Promise.resolve();
  assert(!producerIn, "a producer waits while the queue is over capacity");
  release.resolve();
  await producer;
  await p.close();
  assertEquals(seen, [0, 1, 2, 3, 4]);
  assertThrows(() => p.admit(msg("a", 5)), PipelineClosedError);
});
