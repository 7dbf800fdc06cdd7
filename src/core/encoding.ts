/**
 * Payload bytes as text for JSON views (HTTP command views, CoAP's JSON command envelope): UTF-8
 * when the bytes are valid UTF-8, else base64 (RFC 4648 §4), with the encoding named. JSR's
 * `@std/encoding` is unreachable here, so the small base64 encoder lives here.
 *
 * @module
 */

/**
 * Encodes bytes as base64.
 *
 * @example
 * ```ts
 * import { encodeBase64 } from "./encoding.ts";
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

/** A payload as text, and how it was encoded. */
export interface PayloadText {
  /** `utf8` when the bytes were valid UTF-8, else `base64`. */
  encoding: "utf8" | "base64";
  /** The text. */
  payload: string;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The payload as UTF-8 text, or base64 when it is not valid UTF-8.
 *
 * @example
 * ```ts
 * import { payloadText } from "./encoding.ts";
 * const t = payloadText(new Uint8Array([0xff]));
 * if (t.encoding !== "base64" || t.payload !== "/w==") throw new Error();
 * if (payloadText(new TextEncoder().encode("21.5")).payload !== "21.5") throw new Error();
 * ```
 */
export function payloadText(bytes: Uint8Array): PayloadText {
  try {
    return { encoding: "utf8", payload: strictUtf8.decode(bytes) };
  } catch {
    return { encoding: "base64", payload: encodeBase64(bytes) };
  }
}
