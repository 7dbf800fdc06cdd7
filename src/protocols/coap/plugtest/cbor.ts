/**
 * Just enough CBOR (RFC 8949) for the plugtest's `/multi-format` (Content-Format 60): a map of
 * text keys to text or unsigned integer values, in definite lengths (§4.2.1 preferred
 * serialisation: the shortest argument).
 *
 * @module
 */

const utf8 = new TextEncoder();

/** A value this encoder writes. */
export type CborValue = string | number;

function head(out: number[], major: number, n: number): void {
  // RFC 8949 §3: the argument inline below 24, else in 1, 2 or 4 following bytes.
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new RangeError(`Cannot encode CBOR: ${n} is not an integer in 0..2^32-1`);
  }
  const m = major << 5;
  if (n < 24) out.push(m | n);
  else if (n < 0x100) out.push(m | 24, n);
  else if (n < 0x10000) out.push(m | 25, n >> 8, n & 0xff);
  else out.push(m | 26, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
}

function item(out: number[], v: CborValue): void {
  if (typeof v === "number") return head(out, 0, v); // major type 0: unsigned integer
  const bytes = utf8.encode(v);
  head(out, 3, bytes.length); // major type 3: text string
  for (const b of bytes) out.push(b);
}

/**
 * Encodes a flat map of text keys (major type 5).
 *
 * @example
 * ```ts
 * import { encodeCborMap } from "./cbor.ts";
 * // {"a": 1, "b": "x"} → a2 61 61 01 61 62 61 78
 * const hex = [...encodeCborMap({ a: 1, b: "x" })].map((b) => b.toString(16).padStart(2, "0"));
 * if (hex.join("") !== "a2616101616261" + "78") throw new Error(hex.join(""));
 * ```
 */
export function encodeCborMap(map: Record<string, CborValue>): Uint8Array {
  const entries = Object.entries(map);
  const out: number[] = [];
  head(out, 5, entries.length);
  for (const [k, v] of entries) {
    item(out, k);
    item(out, v);
  }
  return new Uint8Array(out);
}
