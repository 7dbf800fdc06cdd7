import { assert, assertEquals } from "./_assert.ts";
import { fuzz, targets } from "../bench/fuzz.ts";

Deno.test("Fuzz sample: 5,000 random and mutated inputs per decoder raise only the codec's own errors", () => {
  for (const t of targets()) {
    const r = fuzz(t, 5000, 0xfe77 + t.name.length);
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
