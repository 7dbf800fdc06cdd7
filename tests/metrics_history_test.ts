import { assertEquals, assertThrows } from "./_assert.ts";
import { MetricsRegistry } from "../src/core/metrics.ts";
import { coreMetrics } from "../src/core/protocol_stats.ts";
import { MetricsHistory } from "../src/ops/metrics_history.ts";

function setup(samples = 3) {
  const registry = new MetricsRegistry();
  const m = coreMetrics(registry);
  let now = 1_000_000;
  const clock = { now: () => now };
  const h = new MetricsHistory(registry, { intervalMs: 1000, samples, clock });
  return { registry, m, h, tick: (ms = 1000) => (now += ms, h.sample()) };
}

Deno.test("MetricsHistory gives per-second rates by protocol label, a protocol that appears later counted from 0", () => {
  const { m, h, tick } = setup();
  m.messagesIn.inc({ protocol: "p1" }, 5);
  h.sample(); // baseline
  m.messagesIn.inc({ protocol: "p1" }, 10);
  m.messagesIn.inc({ protocol: "p2" }, 4);
  m.messagesOut.inc({ protocol: "p2" }, 1);
  tick(2000);
  const [s] = h.snapshot().samples;
  assertEquals(s.messagesIn, { p1: 5, p2: 2 });
  assertEquals(s.messagesOut, { p2: 0.5 });
});

Deno.test("MetricsHistory reads open connections by protocol and the spool depth gauge when there is one", () => {
  const { registry, m, h, tick } = setup();
  h.sample();
  m.connections.inc({ protocol: "p1" }, 3);
  m.connections.inc({ protocol: "p1" }, -1);
  tick();
  assertEquals(h.snapshot().samples[0].connections, { p1: 2 });
  assertEquals(h.snapshot().samples[0].spoolDepth, null);
  let depth = 7;
  registry.gauge("ferry_spool_depth", "spool", () => depth);
  tick();
  depth = 0;
  tick();
  assertEquals(h.snapshot().samples.map((s) => s.spoolDepth), [null, 7, 0]);
});

Deno.test("MetricsHistory keeps the last `samples` points, oldest first", () => {
  const { h, tick } = setup(3);
  h.sample();
  for (let i = 0; i < 5; i++) tick();
  const s = h.snapshot();
  assertEquals(s.samples.length, 3);
  assertEquals(s.samples.map((x) => x.time), [1_003_000, 1_004_000, 1_005_000]);
  assertEquals([s.intervalMs, s.capacity], [1000, 3]);
});

Deno.test("MetricsHistory refuses an interval or size that is not a positive integer", () => {
  const r = new MetricsRegistry();
  assertThrows(() => new MetricsHistory(r, { intervalMs: 0 }), RangeError);
  assertThrows(() => new MetricsHistory(r, { samples: 1.5 }), RangeError);
});

Deno.test("MetricsHistory started samples on its interval until closed", async () => {
  const r = new MetricsRegistry();
  using h = new MetricsHistory(r, { intervalMs: 5, samples: 1000 });
  h.start();
  for (let i = 0; i < 400 && h.snapshot().samples.length < 2; i++) {
    await new Promise((res) => setTimeout(res, 5));
  }
  h.close();
  const n = h.snapshot().samples.length;
  assertEquals(n >= 2, true);
  await new Promise((res) => setTimeout(res, 30));
  assertEquals(h.snapshot().samples.length, n, "no sample after close");
});
