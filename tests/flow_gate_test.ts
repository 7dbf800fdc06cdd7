import { assert, assertEquals } from "./_assert.ts";
import { FakeClock } from "../src/core/clock.ts";
import { FlowGate } from "../src/core/flow_gate.ts";

const settle = () => new Promise((r) => setTimeout(r, 0));

Deno.test("FlowGate stays closed while any holder holds it and opens when the last lets go", async () => {
  const clock = new FakeClock();
  const gate = new FlowGate({ clock, maxHoldMs: 1000 });
  const a = {}, b = {};
  gate.hold(a);
  gate.hold(b);
  gate.hold(a); // idempotent
  assertEquals(gate.holders, 2);
  let passed = 0;
  gate.wait().then(() => passed++);
  gate.wait().then(() => passed++);
  gate.release(a);
  await settle();
  assertEquals(passed, 0);
  gate.release(b);
  await settle();
  assertEquals(passed, 2);
  assert(gate.open);
  assertEquals(clock.pending, 0, "timer left behind");
});

Deno.test("FlowGate lets go of a holder after maxHoldMs and reports it; a later hold starts a new episode", async () => {
  const clock = new FakeClock();
  const evicted: object[] = [];
  const gate = new FlowGate({ clock, maxHoldMs: 500, onEvict: (h) => evicted.push(h) });
  const stuck = {}, late = {};
  gate.hold(stuck);
  clock.tick(300);
  gate.hold(late);
  let passed = false;
  gate.wait().then(() => passed = true);
  clock.tick(199);
  await settle();
  assert(!passed);
  clock.tick(1); // stuck held 500 ms: let go; late has held 200 ms
  await settle();
  assertEquals(evicted, [stuck]);
  assert(!passed, "late still holds");
  clock.tick(300);
  await settle();
  assertEquals(evicted, [stuck, late]);
  assert(passed && gate.open);
  assertEquals(gate.evicted, 2);
});

Deno.test("FlowGate.close opens for good", async () => {
  const gate = new FlowGate({ clock: new FakeClock(), maxHoldMs: 1000 });
  gate.hold({});
  const w = gate.wait();
  gate.close();
  await w;
  gate.hold({});
  assert(gate.open, "a hold after close must be ignored");
});
