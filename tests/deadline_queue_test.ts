import { assert, assertEquals } from "./_assert.ts";
import { FakeClock } from "../src/core/clock.ts";
import { DeadlineQueue } from "../src/core/deadline_queue.ts";

Deno.test("DeadlineQueue watches 20,000 deadlines with one timer and fires each once", () => {
  const clock = new FakeClock(0);
  const q = new DeadlineQueue({ clock, resolutionMs: 10 });
  const fired: number[] = [];
  const entries = Array.from(
    { length: 20_000 },
    (_, i) => q.add(1000 + (i % 100) * 10, () => fired.push(i)),
  );
  assert(clock.pending <= 1, `${clock.pending} timers armed`);
  for (let i = 0; i < entries.length; i += 2) entries[i].touch(); // refreshed at t=0: no change
  clock.tick(500);
  for (let i = 0; i < entries.length; i += 2) entries[i].touch(); // even ones move by 500 ms
  clock.tick(1000);
  const deadline = (i: number) => (i % 2 === 0 ? 500 : 0) + 1000 + (i % 100) * 10;
  const due = Array.from({ length: 20_000 }, (_, i) => i).filter((i) => deadline(i) <= 1500);
  assertEquals(fired.length, due.length);
  assertEquals(new Set(fired), new Set(due), "an entry fired before its (refreshed) deadline");
  clock.tick(2000);
  assertEquals(fired.length, 20_000);
  assertEquals(new Set(fired).size, 20_000);
  assertEquals(q.size, 0);
  assertEquals(clock.pending, 0);
  q.close();
});

Deno.test("DeadlineQueue cancel stops an entry and touch with a shorter timeout re-files it earlier", () => {
  const clock = new FakeClock(0);
  const q = new DeadlineQueue({ clock, resolutionMs: 1 });
  let a = 0, b = 0;
  const ea = q.add(100, () => a++);
  const eb = q.add(10_000, () => b++);
  ea.cancel();
  eb.touch(50);
  clock.tick(60);
  assertEquals([a, b], [0, 1]);
  assert(!ea.active && !eb.active);
  q.close();
});

Deno.test("DeadlineQueue fires an entry exactly at its deadline, not before", () => {
  const clock = new FakeClock(0);
  const q = new DeadlineQueue({ clock, resolutionMs: 1 });
  let fired = false;
  q.add(1500, () => fired = true);
  clock.tick(1499);
  assert(!fired);
  clock.tick(1);
  assert(fired);
  q.close();
});
