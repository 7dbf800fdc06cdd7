/**
 * Base64 (RFC 4648 §4) of bytes, private to the device API (JSR's `@std/encoding` is unreachable).
 *
 * @module
 */

/**
 * Encodes bytes as base64.
 *
 * @example
 * ```ts
 * import { encodeBase64 } from "./_base64.ts";
 * if (encodeBase64(new Uint8Array([104, 105])) !== "aGk=") throw new Error();
 * ```
 */
export function encodeBase64(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}
