/**
 * CRC-32/IEEE, the checksum zlib, gzip, PNG and Ethernet use (reflected polynomial 0xEDB88320,
 * initial value and final XOR 0xFFFFFFFF). FBP/1 frames carry it in their 4-byte trailer; see
 * `docs/binary-protocol.md` §2.
 *
 * The implementation is the classic byte-at-a-time table lookup: 1 KiB of table, no allocation per
 * call, and fast enough that the checksum never shows up next to socket I/O for 64 KiB frames.
 *
 * @module
 */

/** The 256-entry lookup table for the reflected polynomial 0xEDB88320. */
const TABLE: Uint32Array = makeTable();

function makeTable(): Uint32Array {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
}

/**
 * Computes the CRC-32/IEEE of `bytes`, as zlib's `crc32()` does.
 *
 * Pass the result of an earlier call as `seed` to continue a checksum over data that arrives in
 * pieces: `crc32(b, crc32(a))` equals `crc32` of `a` followed by `b`.
 *
 * @param bytes The data to checksum.
 * @param seed The CRC of the data before `bytes`; an unsigned 32-bit integer. @default 0
 * @returns The checksum as an unsigned 32-bit integer.
 * @throws {RangeError} If `seed` is not an integer in `0..0xFFFFFFFF`.
 *
 * @example
 * ```ts
 * import { crc32 } from "./crc32.ts";
 * const bytes = new TextEncoder().encode("123456789");
 * if (crc32(bytes) !== 0xcbf43926) throw new Error("wrong check value");
 * if (crc32(bytes.subarray(4), crc32(bytes.subarray(0, 4))) !== 0xcbf43926) {
 *   throw new Error("incremental use differs");
 * }
 * ```
 */
export function crc32(bytes: Uint8Array, seed = 0): number {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new RangeError(`Cannot compute CRC-32: seed ${seed} is not an unsigned 32-bit integer`);
  }
  const table = TABLE;
  let c = ~seed;
  for (let i = 0, n = bytes.length; i < n; i++) c = table[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * {@link crc32} of `bytes[start, end)` without a subarray (the frame codec's per-frame step).
 *
 * @example
 * ```ts
 * import { crc32, crc32Range } from "./crc32.ts";
 * const bytes = new TextEncoder().encode("xx123456789yy");
 * if (crc32Range(bytes, 2, 11) !== crc32(bytes.subarray(2, 11))) throw new Error("differs");
 * ```
 */
export function crc32Range(bytes: Uint8Array, start: number, end: number): number {
  const table = TABLE;
  let c = -1;
  for (let i = start; i < end; i++) c = table[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
