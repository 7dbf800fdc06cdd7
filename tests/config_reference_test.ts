import { assertEquals } from "./_assert.ts";
import { configJsonSchema, referenceTable, withReferenceTable } from "../src/config/reference.ts";

const root = new URL("../", import.meta.url);

Deno.test("The README's config table is the one src/config/reference.ts generates (regenerate with deno run -R -W src/config/reference.ts)", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", root));
  assertEquals(withReferenceTable(readme), readme);
  assertEquals(readme.includes(referenceTable()), true);
});

Deno.test("deploy/ferry.schema.json is the schema src/config/reference.ts generates", async () => {
  const text = await Deno.readTextFile(new URL("deploy/ferry.schema.json", root));
  assertEquals(text, JSON.stringify(configJsonSchema(), null, 2) + "\n");
});
