/**
 * `bench/mqtt_differential.ts` reports a difference from mosquitto only when it is one of its
 * `KNOWN` scenarios, each mapped to a row of "Differences from the reference broker" in
 * `docs/mqtt.md` (issue #14 item 8). This keeps the two in step: every mapped row exists, and every
 * row is there for at least one scenario.
 *
 * @module
 */

import { KNOWN } from "../bench/mqtt_differential.ts";
import { assert, assertEquals } from "./_assert.ts";

/** First-column cells of the table under "## Differences from the reference broker". */
function rows(): string[] {
  const doc = Deno.readTextFileSync(new URL("../docs/mqtt.md", import.meta.url));
  const start = doc.indexOf("## Differences from the reference broker");
  assert(start >= 0, "docs/mqtt.md has no 'Differences from the reference broker' section");
  const section = doc.slice(start, doc.indexOf("\n## ", start + 1));
  return section.split("\n")
    .filter((l) => l.startsWith("| ") && !l.startsWith("| -"))
    .map((l) => l.split("|")[1].trim())
    .slice(1); // the header
}

Deno.test("every difference the differential script accepts is a row of docs/mqtt.md", () => {
  const table = new Set(rows());
  const missing = [...new Set(Object.values(KNOWN))].filter((r) => !table.has(r));
  assertEquals(missing, []);
});

Deno.test("every row of 'Differences from the reference broker' is backed by a scenario", () => {
  const used = new Set(Object.values(KNOWN));
  assertEquals(rows().filter((r) => !used.has(r)), []);
});
