/**
 * The POSIX path helpers (src/core/path.ts) agree with `node:path/posix` on a corpus of tricky paths:
 * the sandbox's "inside the root" check is built on `resolve` and `dirname`.
 */

import posix from "node:path/posix";
import { assertEquals } from "./_assert.ts";
import { basename, dirname, resolve, sep } from "../src/core/path.ts";

const CORPUS = [
  "",
  ".",
  "..",
  "/",
  "//",
  "///a",
  "a",
  "a/",
  "a//",
  "/a",
  "/a/",
  "/a/b",
  "/a/b/",
  "a/b/c.ts",
  "./a",
  "../a",
  "../../a/../b",
  "/..",
  "/../..",
  "/a/../..",
  "/a/./b/../c/",
  "a/../..",
  "a/../../b",
  "/etc/ferry/../ferry/./rules//x.ts",
  "rules/.hidden",
  "..a/b..",
  "/a/b/...",
  "x/.../y",
];

Deno.test("path helpers: dirname and basename agree with node:path/posix on every corpus path", () => {
  for (const p of CORPUS) {
    assertEquals(dirname(p), posix.dirname(p), `dirname(${JSON.stringify(p)})`);
    assertEquals(basename(p), posix.basename(p), `basename(${JSON.stringify(p)})`);
  }
  assertEquals(sep, posix.sep);
});

Deno.test("path helpers: resolve agrees with node:path/posix for one, two and three segments", () => {
  assertEquals(resolve(), posix.resolve());
  for (const a of CORPUS) {
    assertEquals(resolve(a), posix.resolve(a), `resolve(${JSON.stringify(a)})`);
    for (const b of CORPUS) {
      assertEquals(
        resolve(a, b),
        posix.resolve(a, b),
        `resolve(${JSON.stringify(a)}, ${JSON.stringify(b)})`,
      );
    }
    assertEquals(resolve("/r", a, "x.ts"), posix.resolve("/r", a, "x.ts"));
  }
});
