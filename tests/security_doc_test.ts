/**
 * docs/security.md lists every promise with the test that proves it: each test file it names must
 * exist, and each test it quotes ("name" or "name…" as a prefix) must be a test of that file (or,
 * when the cell names several files, of one of them).
 *
 * @module
 */

import { assertEquals } from "./_assert.ts";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("docs/security.md names only tests that exist", async () => {
  const doc = await Deno.readTextFile(`${ROOT}docs/security.md`);
  const problems: string[] = [];
  const sources = new Map<string, string>();
  const source = async (file: string) => {
    if (!sources.has(file)) {
      sources.set(file, await Deno.readTextFile(`${ROOT}${file}`).catch(() => ""));
    }
    return sources.get(file)!;
  };
  for (const row of doc.split("\n").filter((l) => l.startsWith("| "))) {
    const cells = row.split("|").map((c) => c.trim()).filter((c) => c !== "");
    const line = cells[cells.length - 1] ?? ""; // the "test" column
    const files = [...line.matchAll(/`(tests\/[\w./-]+_test\.ts)`/g)].map((m) => m[1]);
    for (const f of files) if ((await source(f)) === "") problems.push(`missing file ${f}`);
    if (files.length === 0) continue;
    const names = [...line.matchAll(/(?<=[\s(]|^)"([^"|`]+?)…?"/g)].map((m) => m[1]);
    for (const name of names) {
      let found = false;
      for (const f of files) if ((await source(f)).includes(name)) found = true;
      if (!found) problems.push(`"${name}" is not a test of ${files.join(", ")}`);
    }
  }
  assertEquals(problems, []);
});
