/**
 * Every `deno task NAME` the README or docs show exists in deno.json (what each task does is
 * tested where it is driven: the start path, the bench, the soak, the CLI).
 *
 * @module
 */

import { assertEquals } from "./_assert.ts";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("Every deno task the README and docs name is defined in deno.json", async () => {
  const tasks = Object.keys(JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks);
  const files = ["README.md"];
  for await (const e of Deno.readDir(`${ROOT}docs`)) {
    if (e.isFile && e.name.endsWith(".md")) files.push(`docs/${e.name}`);
  }
  const missing: string[] = [];
  for (const f of files) {
    const text = await Deno.readTextFile(`${ROOT}${f}`);
    for (const m of text.matchAll(/deno(?:@[\d.]+)? task ([a-z][\w:-]*)/g)) {
      if (!tasks.includes(m[1])) missing.push(`${f}: deno task ${m[1]}`);
    }
  }
  assertEquals([...new Set(missing)], []);
});
