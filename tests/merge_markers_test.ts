/**
 * No file of the repository keeps a merge-conflict marker (one once hid in the README's
 * generated config table, where `deno fmt` had turned it into a table row).
 *
 * @module
 */

import { assertEquals } from "./_assert.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const SKIP = /^(\.git|node_modules|data|dist|bench\/results)(\/|$)/;
const MARKER = /^(<{7}|>{7})( |$)/m;

async function* files(dir: string, rel = ""): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir + rel)) {
    const path = rel === "" ? e.name : `${rel}/${e.name}`;
    if (SKIP.test(path)) continue;
    if (e.isDirectory) yield* files(dir, path);
    else if (e.isFile && /\.(ts|md|json|jsonc|html|yml|yaml|sh|toml)$|^\.ci\/run$/.test(path)) {
      yield path;
    }
  }
}

Deno.test("No source or doc file keeps a merge-conflict marker", async () => {
  const found: string[] = [];
  for await (const path of files(ROOT)) {
    const text = await Deno.readTextFile(ROOT + path);
    if (MARKER.test(text)) found.push(path);
  }
  assertEquals(found, []);
});
