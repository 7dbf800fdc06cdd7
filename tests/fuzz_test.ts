import process from "node:process";
import { assert, assertEquals } from "./_assert.ts";
import { fuzz, targets } from "../bench/fuzz.ts";

// A hang or a blow-up costs seconds of CPU per input; 1 s is a wide margin over the ~0.05 ms an
// input costs, and CPU time does not grow when a loaded machine pauses the test.
Deno.test("Fuzz sample: 5,000 random and mutated inputs per decoder raise only the codec's own errors", () => {
  for (const t of targets()) {
    const r = fuzz(t, 5000, 0xfe77 + t.name.length, { slowInputMs: 1000 });
    assertEquals(r.failure, undefined, `${t.name}: ${r.failure?.error}`);
    assert(
      r.rejected > 0,
      `${t.name}: no input was rejected, the mutations are not reaching the decoder`,
    );
  }
});

Deno.test("Fuzz regressions: every saved crashing input now decodes or is rejected cleanly", async () => {
  const dir = new URL("./fuzz_regressions/", import.meta.url);
  const all = targets();
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.endsWith(".bin")) continue;
    const t = all.find((x) => e.name.startsWith(`${x.name}-`));
    assert(t, `no decoder for ${e.name}`);
    const input = await Deno.readFile(new URL(e.name, dir));
    try {
      t.decode(input);
    } catch (err) {
      assert(t.expected(err), `${e.name}: ${err}`);
    }
  }
});

Deno.test("Fuzz harness reports an input whose decode really costs CPU time", () => {
  // Spins until the process has used `ms` of CPU time (not wall-clock time: on a loaded machine
  // 30 ms of wall clock may be a few ms of CPU, and the harness rightly judges by CPU).
  const cpuMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const spin = (ms: number) => {
    const end = cpuMs() + ms;
    while (cpuMs() < end) { /* burn CPU, as a decoder stuck in a loop does */ }
  };
  const r = fuzz(
    {
      name: "slow",
      seeds: [new Uint8Array([1, 2, 3])],
      decode: () => spin(30),
      expected: () => true,
    },
    3,
    1,
    { slowInputMs: 10 },
  );
  assert(r.failure, "a decoder spending 30 ms of CPU per input was not reported");
  assert(/CPU time/.test(r.failure.error), r.failure.error);
});
