import { assert, assertEquals } from "./_assert.ts";
import { Semaphore } from "../src/core/semaphore.ts";

Deno.test("Semaphore: a slot taken without a permit is given back to the longest waiter, or adopted", async () => {
  const s = new Semaphore(1);
  assert(s.tryTake());
  assert(!s.tryTake(), "no second slot");
  assertEquals(s.tryAcquire(), undefined);
  const order: string[] = [];
  const a = s.acquire().then((p) => (order.push("a"), p));
  const b = s.acquire().then((p) => (order.push("b"), p));
  s.give(); // the slot goes to the first waiter, not back to the pool
  const pa = await a;
  assertEquals(order, ["a"]);
  assertEquals(s.available, 0);
  pa.release();
  const pb = await b;
  assertEquals(order, ["a", "b"]);
  pb.release();
  assertEquals(s.available, 1);
  // adopt: a taken slot becomes a permit whose release gives it back exactly once.
  assert(s.tryTake());
  const p = s.adopt();
  assertEquals(s.available, 0);
  p.release();
  p.release();
  assertEquals(s.available, 1);
});
