/**
 * The CoAP option registry Ferry understands (RFC 7252 §5.10 and §12.2, RFC 7641 §2, RFC 7959
 * §2.1, §4), option classes (§5.4.6) and value formats (§3.2).
 *
 * @module
 */

/** Option numbers, RFC 7252 §12.2, RFC 7641 §2, RFC 7959 §2.1 and §4, RFC 7967 §2. */
export const Opt = {
  IF_MATCH: 1,
  URI_HOST: 3,
  ETAG: 4,
  IF_NONE_MATCH: 5,
  OBSERVE: 6,
  URI_PORT: 7,
  LOCATION_PATH: 8,
  URI_PATH: 11,
  CONTENT_FORMAT: 12,
  MAX_AGE: 14,
  URI_QUERY: 15,
  ACCEPT: 17,
  LOCATION_QUERY: 20,
  BLOCK2: 23,
  BLOCK1: 27,
  SIZE2: 28,
  PROXY_URI: 35,
  PROXY_SCHEME: 39,
  SIZE1: 60,
  NO_RESPONSE: 258,
  /**
   * Ferry's own elective option carrying the command name on `/d/{id}/commands` responses. In the
   * experimental range (RFC 7252 §12.2: 65000-65535), even so elective: clients that do not know
   * it ignore it (§5.4.1).
   */
  FERRY_COMMAND: 65000,
} as const;

/** Value format of an option, RFC 7252 §3.2. */
export type OptionFormat = "empty" | "opaque" | "uint" | "string";

/** What Ferry knows about an option. */
export interface OptionSpec {
  /** Registry name. */
  name: string;
  /** Value format. */
  format: OptionFormat;
  /** Shortest valid value in bytes. */
  min: number;
  /** Longest valid value in bytes. */
  max: number;
  /** May occur more than once. */
  repeatable: boolean;
}

function spec(
  name: string,
  format: OptionFormat,
  min: number,
  max: number,
  repeatable = false,
): OptionSpec {
  return { name, format, min, max, repeatable };
}

/** Options recognised by the server, with their length ranges (RFC 7252 §5.10 Table 4). */
export const OPTION_SPECS: ReadonlyMap<number, OptionSpec> = new Map([
  [Opt.IF_MATCH, spec("If-Match", "opaque", 0, 8, true)],
  [Opt.URI_HOST, spec("Uri-Host", "string", 1, 255)],
  [Opt.ETAG, spec("ETag", "opaque", 1, 8, true)],
  [Opt.IF_NONE_MATCH, spec("If-None-Match", "empty", 0, 0)],
  [Opt.OBSERVE, spec("Observe", "uint", 0, 3)],
  [Opt.URI_PORT, spec("Uri-Port", "uint", 0, 2)],
  [Opt.LOCATION_PATH, spec("Location-Path", "string", 0, 255, true)],
  [Opt.URI_PATH, spec("Uri-Path", "string", 0, 255, true)],
  [Opt.CONTENT_FORMAT, spec("Content-Format", "uint", 0, 2)],
  [Opt.MAX_AGE, spec("Max-Age", "uint", 0, 4)],
  [Opt.URI_QUERY, spec("Uri-Query", "string", 0, 255, true)],
  [Opt.ACCEPT, spec("Accept", "uint", 0, 2)],
  [Opt.LOCATION_QUERY, spec("Location-Query", "string", 0, 255, true)],
  [Opt.BLOCK2, spec("Block2", "uint", 0, 3)],
  [Opt.BLOCK1, spec("Block1", "uint", 0, 3)],
  [Opt.SIZE2, spec("Size2", "uint", 0, 4)],
  [Opt.PROXY_URI, spec("Proxy-Uri", "string", 1, 1034)],
  [Opt.PROXY_SCHEME, spec("Proxy-Scheme", "string", 1, 255)],
  [Opt.SIZE1, spec("Size1", "uint", 0, 4)],
  [Opt.NO_RESPONSE, spec("No-Response", "uint", 0, 1)],
]);

/** Critical options have an odd number, RFC 7252 §5.4.6. */
export function isCritical(number: number): boolean {
  return (number & 1) === 1;
}

/**
 * Encodes a non-negative integer as a minimal big-endian uint option value (zero is the empty
 * string), RFC 7252 §3.2.
 *
 * @example
 * ```ts
 * import { encodeUint } from "./option_codec.ts";
 * if (encodeUint(0).length !== 0 || encodeUint(256).join() !== "1,0") throw new Error();
 * ```
 */
export function encodeUint(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new RangeError(`Cannot encode uint option: ${n} is not an integer in 0..2^32-1`);
  }
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return new Uint8Array(bytes);
}

/** Decodes a uint option value (leading zeros tolerated), RFC 7252 §3.2. */
export function decodeUint(value: Uint8Array): number {
  let n = 0;
  for (const b of value) n = n * 256 + b;
  return n;
}

const utf8 = new TextDecoder();
const utf8enc = new TextEncoder();

/**
 * Decodes a string option value (UTF-8). Short ASCII values (every Uri-Path and Uri-Query of a
 * typical request) are read byte by byte: `TextDecoder.decode` costs an op call and argument
 * checks per value, which was ~3% of the gateway's time under CoAP load.
 *
 * @example
 * ```ts
 * import { decodeString } from "./option_codec.ts";
 * if (decodeString(new Uint8Array([0x61, 0x62])) !== "ab") throw new Error();
 * if (decodeString(new Uint8Array([0xc3, 0xa9])) !== "é") throw new Error();
 * ```
 */
export function decodeString(value: Uint8Array): string {
  const n = value.length;
  if (n > 64) return utf8.decode(value);
  let s = "";
  for (let i = 0; i < n; i++) {
    const b = value[i];
    if (b >= 0x80) return utf8.decode(value); // not ASCII: the real decoder
    s += String.fromCharCode(b);
  }
  return s;
}

/** Encodes a string option value (UTF-8). */
export function encodeString(s: string): Uint8Array {
  return utf8enc.encode(s);
}

/**
 * Checks a request's options against the registry: an unrecognised option, a value outside the
 * option's length range (§5.4.3) or a second instance of a non-repeatable option (§5.4.5) counts as
 * unrecognised. Returns the first such option that is critical (the request must be answered 4.02,
 * §5.4.1), or undefined; elective ones are silently ignored.
 *
 * @example
 * ```ts
 * import { firstBadCriticalOption } from "./option_codec.ts";
 * const opts = [{ number: 11, value: new Uint8Array([0x61]) }, { number: 2049, value: new Uint8Array() }];
 * if (firstBadCriticalOption(opts) !== 2049) throw new Error();
 * ```
 */
export function firstBadCriticalOption(
  options: ReadonlyArray<{ number: number; value: Uint8Array }>,
  known: ReadonlyMap<number, OptionSpec> = OPTION_SPECS,
): number | undefined {
  let prev = -1;
  for (const o of options) {
    const s = known.get(o.number);
    const repeated = o.number === prev;
    prev = o.number;
    const ok = s !== undefined && o.value.length >= s.min && o.value.length <= s.max &&
      (!repeated || s.repeatable);
    if (!ok && isCritical(o.number)) return o.number;
  }
  return undefined;
}

/** Options of a request with elective unrecognised or malformed instances removed (§5.4.1). */
export function recognisedOptions<T extends { number: number; value: Uint8Array }>(
  options: ReadonlyArray<T>,
  known: ReadonlyMap<number, OptionSpec> = OPTION_SPECS,
): T[] {
  const out: T[] = [];
  let prev = -1;
  for (const o of options) {
    const s = known.get(o.number);
    const repeated = o.number === prev;
    prev = o.number;
    if (s && o.value.length >= s.min && o.value.length <= s.max && (!repeated || s.repeatable)) {
      out.push(o);
    }
  }
  return out;
}
