import { assert, assertEquals } from "./_assert.ts";
import { systemClock } from "../src/core/clock.ts";

Deno.test("systemClock.now reads the time once per synchronous stretch and again after it", async () => {
  const first = systemClock.now();
  // Spin (bounded) until the wall clock has moved on: the cached reading stays.
  for (let i = 0; i < 1e8 && Date.now() <= first; i++) { /* spin */ }
  assert(Date.now() > first, "the wall clock moved");
  assertEquals(systemClock.now(), first, "same reading within one synchronous stretch");
  await Promise.resolve(); // a microtask checkpoint ends the stretch
  assert(systemClock.now() > first, "a fresh reading after the checkpoint");
});
