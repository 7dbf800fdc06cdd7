/**
 * Tests of the CRC-32/IEEE implementation used in FBP/1 frame trailers.
 *
 * @module
 */

import { crc32 } from "../src/protocols/binary/crc32.ts";
import { assertEquals, assertThrows } from "./_assert.ts";

const ascii = (s: string) => new TextEncoder().encode(s);

Deno.test('crc32 returns the catalogued check value for "123456789"', () => {
  assertEquals(crc32(ascii("123456789")), 0xcbf43926);
});

Deno.test("crc32 of no bytes is 0", () => {
  assertEquals(crc32(new Uint8Array()), 0);
});

Deno.test("crc32 matches zlib's values for known inputs", () => {
  // Values from Python's zlib.crc32.
  assertEquals(crc32(ascii("a")), 0xe8b7be43);
  assertEquals(crc32(ascii("The quick brown fox jumps over the lazy dog")), 0x414fa339);
  assertEquals(crc32(new Uint8Array(32)), 0x190a55ad);
  assertEquals(crc32(new Uint8Array(32).fill(0xff)), 0xff6cab0b);
});

Deno.test("crc32 returns an unsigned 32-bit integer", () => {
  const value = crc32(ascii("123456789"));
  assertEquals(value > 0x7fffffff, true);
  assertEquals(value >>> 0, value);
});

Deno.test("crc32 continues a checksum from a seed at every split point", () => {
  const bytes = new Uint8Array(300);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 131 + 7) & 0xff;
  const whole = crc32(bytes);
  for (let cut = 0; cut <= bytes.length; cut++) {
    assertEquals(crc32(bytes.subarray(cut), crc32(bytes.subarray(0, cut))), whole, `cut ${cut}`);
  }
});

Deno.test("crc32 reads only the view it is given", () => {
  const backing = ascii("xx123456789yy");
  assertEquals(crc32(backing.subarray(2, 11)), 0xcbf43926);
});

Deno.test("crc32 rejects a seed that is not an unsigned 32-bit integer", () => {
  assertThrows(() => crc32(new Uint8Array(), -1), RangeError);
  assertThrows(() => crc32(new Uint8Array(), 2 ** 32), RangeError);
  assertThrows(() => crc32(new Uint8Array(), 1.5), RangeError);
});
