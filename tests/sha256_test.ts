/**
 * The SHA-256 primitive against FIPS 180-4's examples and against `node:crypto` on random inputs of
 * every length around the block and padding boundaries.
 */

import { createHash, randomBytes } from "node:crypto";
import { assert, assertEquals } from "./_assert.ts";
import { constantTimeEqual, sha256 } from "../src/core/sha256.ts";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

Deno.test("sha256 gives the FIPS 180-4 digests of the empty string, abc and the two-block message", () => {
  assertEquals(hex(sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  assertEquals(
    hex(sha256("abc")),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assertEquals(
    hex(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
  );
  assertEquals(
    hex(sha256("a".repeat(1_000_000))),
    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
  );
});

Deno.test("sha256 of concatenated parts (bytes and UTF-8 strings) matches node:crypto at every length from 0 to 300", () => {
  for (let n = 0; n <= 300; n++) {
    const salt = randomBytes(n % 17);
    const text = "é€😀x".repeat(n).slice(0, n);
    const want = createHash("sha256").update(salt).update(text, "utf8").digest();
    assertEquals(hex(sha256(salt, text)), hex(want), `length ${n}`);
  }
});

Deno.test("constantTimeEqual tells equal, different and differently long byte strings apart", () => {
  const a = randomBytes(32);
  assert(constantTimeEqual(a, Uint8Array.from(a)));
  const b = Uint8Array.from(a);
  b[31] ^= 1;
  assert(!constantTimeEqual(a, b));
  assert(!constantTimeEqual(a, a.subarray(0, 31)));
  assert(constantTimeEqual(new Uint8Array(0), new Uint8Array(0)));
});
