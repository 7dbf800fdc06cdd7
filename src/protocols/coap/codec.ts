/**
 * The CoAP datagram codec (RFC 7252 §3): bytes ⇄ {@link CoapMessage}.
 *
 * - {@link decodeMessage} is a strict, explicit HEADER → TOKEN → OPTIONS → PAYLOAD state machine.
 *   Each check cites the clause it enforces; a failure throws {@link CoapSyntaxError} carrying the
 *   byte offset and, when the 4-byte header was readable, the type and message ID so the caller can
 *   reject a Confirmable message with a Reset (§4.2). `npm:coap-packet`'s `parse` is lenient where
 *   RFC 7252 demands a format error (reserved token lengths 9-15 are read as RFC 8974 extended
 *   tokens, a payload marker with no payload is accepted, truncated options read past the end), so
 *   decoding is done here.
 * - {@link encodeMessage} serialises in one pass into shared slabs, behind a size cap (the tests
 *   check it byte for byte against `npm:coap-packet`'s `generate`).
 *
 * CoAP is datagrams, not a byte stream: the server decodes each datagram it receives in one call
 * and sends each encoded message in one `send`, with no stream step in between (a stream pipeline
 * per datagram would cost more than the decoding; see `docs/architecture.md`).
 *
 * @module
 */

import type { CoapMessage, CoapOption, CoapType } from "./message.ts";

/** Largest datagram Ferry sends or accepts by default (UDP payload limit over IPv4). */
export const MAX_DATAGRAM = 65_507;

/** Why a datagram could not be decoded. */
export type CoapSyntaxReason =
  | "too_short"
  | "bad_version"
  | "bad_token_length"
  | "truncated"
  | "bad_option"
  | "empty_payload"
  | "empty_not_empty"
  | "too_large";

/** Options of {@link CoapSyntaxError}. */
export interface CoapSyntaxErrorOptions {
  /** Machine-readable reason. */
  reason: CoapSyntaxReason;
  /** Byte offset of the problem. */
  offset: number;
  /** Header fields, when the 4-byte header was read (so a CON can be rejected with RST). */
  header?: { type: CoapType; messageId: number; code: number };
}

/** A datagram that is not a well-formed CoAP message, with the byte offset of the problem. */
export class CoapSyntaxError extends SyntaxError {
  /** Error name. */
  override name = "CoapSyntaxError";
  /** Machine-readable reason. */
  readonly reason: CoapSyntaxReason;
  /** Byte offset of the problem. */
  readonly offset: number;
  /** Header fields, when readable. */
  readonly header?: { type: CoapType; messageId: number; code: number };
  /**
   * True when RFC 7252 says to ignore the datagram silently even if it was Confirmable (unknown
   * version, §3; fewer than 4 bytes, no message ID to reject).
   */
  get silent(): boolean {
    return this.reason === "bad_version" || this.header === undefined;
  }

  /** Creates the error. */
  constructor(message: string, options: CoapSyntaxErrorOptions) {
    super(`Cannot decode CoAP message: ${message} at byte ${options.offset}`);
    this.reason = options.reason;
    this.offset = options.offset;
    this.header = options.header;
  }
}

const EMPTY = new Uint8Array(0);

/** Options of {@link decodeMessage}. */
export interface DecodeOptions {
  /** Largest datagram accepted; a larger one is refused before its bytes are read. @default 65507 */
  maxSize?: number;
}

/**
 * Decodes one datagram.
 *
 * @example
 * ```ts
 * import { decodeMessage } from "./codec.ts";
 * // CON GET, MID 0x1234, token 0xAB, Uri-Path "a"
 * const m = decodeMessage(new Uint8Array([0x41, 0x01, 0x12, 0x34, 0xab, 0xb1, 0x61]));
 * if (m.type !== 0 || m.code !== 1 || m.messageId !== 0x1234 || m.options[0].number !== 11) {
 *   throw new Error();
 * }
 * ```
 */
export function decodeMessage(bytes: Uint8Array, limits: DecodeOptions = {}): CoapMessage {
  const max = limits.maxSize ?? MAX_DATAGRAM;
  if (bytes.length > max) { // a hard cap before looking at the bytes
    throw new CoapSyntaxError(`${bytes.length} bytes exceeds the ${max} byte limit`, {
      reason: "too_large",
      offset: max,
    });
  }
  // HEADER (RFC 7252 §3)
  if (bytes.length < 4) {
    throw new CoapSyntaxError(`${bytes.length} bytes is shorter than the 4-byte header`, {
      reason: "too_short",
      offset: bytes.length,
    });
  }
  const b0 = bytes[0];
  const type = ((b0 >> 4) & 3) as CoapType;
  const tkl = b0 & 0x0f;
  const code = bytes[1];
  const messageId = (bytes[2] << 8) | bytes[3];
  // RFC 7252 §3: "Messages with unknown version numbers MUST be silently ignored."
  if (b0 >> 6 !== 1) {
    throw new CoapSyntaxError(`unknown version ${b0 >> 6}`, {
      reason: "bad_version",
      offset: 0,
      header: headerOf(bytes),
    });
  }
  // RFC 7252 §4.1: an Empty message has only the 4-byte header.
  if (code === 0) {
    if (bytes.length !== 4 || tkl !== 0) {
      throw new CoapSyntaxError("Empty message (0.00) with bytes after the message ID", {
        reason: "empty_not_empty",
        offset: 4,
        header: headerOf(bytes),
      });
    }
    return { type, code, messageId, token: EMPTY, options: [], payload: EMPTY };
  }
  // TOKEN. RFC 7252 §3: "Lengths 9-15 are reserved ... MUST be processed as a message format error."
  if (tkl > 8) {
    throw new CoapSyntaxError(`reserved token length ${tkl}`, {
      reason: "bad_token_length",
      offset: 0,
      header: headerOf(bytes),
    });
  }
  let pos = 4;
  if (pos + tkl > bytes.length) {
    throw new CoapSyntaxError(`token of ${tkl} bytes runs past the end`, {
      reason: "truncated",
      offset: pos,
      header: headerOf(bytes),
    });
  }
  // The message keeps views of one copy of the datagram (the caller's buffer is reused): a `slice`
  // per token, option and payload cost ~1 µs each on Deno 2.9.6, a view a tenth of that.
  const copy = received(bytes);
  const buf = copy.buffer;
  const base = copy.byteOffset;
  const token = tkl === 0 ? EMPTY : new Uint8Array(buf, base + pos, tkl);
  pos += tkl;
  // OPTIONS (RFC 7252 §3.1)
  const options: CoapOption[] = [];
  let number = 0;
  while (pos < bytes.length) {
    const ob = bytes[pos];
    if (ob === 0xff) break; // payload marker
    const at = pos;
    pos++;
    let delta = ob >> 4;
    let length = ob & 0x0f;
    // RFC 7252 §3.1: nibble 15 is reserved unless the whole byte is the payload marker.
    if (delta === 15 || length === 15) {
      throw new CoapSyntaxError(`reserved option ${delta === 15 ? "delta" : "length"} 15`, {
        reason: "bad_option",
        offset: at,
        header: headerOf(bytes),
      });
    }
    // RFC 7252 §3.1: nibbles 13 and 14 take one or two extension bytes.
    delta = extended(bytes, pos, delta);
    pos += extSize(ob >> 4);
    length = extended(bytes, pos, length);
    pos += extSize(ob & 0x0f);
    number += delta;
    if (number > 0xffff) {
      throw new CoapSyntaxError(`option number ${number} exceeds 65535`, {
        reason: "bad_option",
        offset: at,
        header: headerOf(bytes),
      });
    }
    if (pos + length > bytes.length) throw truncated(pos, bytes);
    options.push({ number, value: new Uint8Array(buf, base + pos, length) });
    pos += length;
  }
  // PAYLOAD. RFC 7252 §3: a marker followed by a zero-length payload is a format error.
  let payload = EMPTY;
  if (pos < bytes.length) {
    pos++; // the 0xFF marker
    if (pos === bytes.length) {
      throw new CoapSyntaxError("payload marker followed by no payload", {
        reason: "empty_payload",
        offset: pos - 1,
        header: headerOf(bytes),
      });
    }
    payload = new Uint8Array(buf, base + pos, bytes.length - pos);
  }
  return { type, code, messageId, token, options, payload };
}

/**
 * Received datagrams are copied into shared 16 KiB slabs (never reused: a slab is freed when no
 * view of it is left), so a decoded message is a few views of one copy. What keeps a part of a
 * request for long copies it out (`ownBytes`: an observer's token, Block1 parts, a message the
 * core keeps), so that no slab is pinned by a few bytes.
 */
const RECEIVE_SLAB = 16_384;
let rslab = new ArrayBuffer(RECEIVE_SLAB);
let rslabUsed = 0;

function received(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const n = bytes.length;
  let out: Uint8Array<ArrayBuffer>;
  if (n > RECEIVE_SLAB / 16) out = new Uint8Array(n);
  else {
    if (rslabUsed + n > RECEIVE_SLAB) {
      rslab = new ArrayBuffer(RECEIVE_SLAB);
      rslabUsed = 0;
    }
    out = new Uint8Array(rslab, rslabUsed, n);
    rslabUsed += (n + 7) & ~7;
  }
  out.set(bytes);
  return out;
}

/** Bytes of extension after a delta or length nibble, RFC 7252 §3.1. */
function extSize(nibble: number): number {
  return nibble < 13 ? 0 : nibble - 12;
}

/** The value of a delta or length nibble, reading its extension at `pos` (RFC 7252 §3.1). */
function extended(bytes: Uint8Array, pos: number, nibble: number): number {
  if (nibble < 13) return nibble;
  if (pos + nibble - 12 > bytes.length) throw truncated(pos, bytes);
  return nibble === 13 ? bytes[pos] + 13 : ((bytes[pos] << 8) | bytes[pos + 1]) + 269;
}

function truncated(offset: number, bytes: Uint8Array): CoapSyntaxError {
  return new CoapSyntaxError("option runs past the end of the datagram", {
    reason: "truncated",
    offset,
    header: headerOf(bytes),
  });
}

/** The header fields of a datagram of at least 4 bytes, for a {@link CoapSyntaxError}. */
function headerOf(bytes: Uint8Array): { type: CoapType; messageId: number; code: number } {
  return {
    type: ((bytes[0] >> 4) & 3) as CoapType,
    messageId: (bytes[2] << 8) | bytes[3],
    code: bytes[1],
  };
}

/** Options of {@link encodeMessage}. */
export interface EncodeOptions {
  /** Largest datagram produced. @default 65507 */
  maxSize?: number;
}

/**
 * Datagrams are written into shared 64 KiB slabs: a view on an off-heap buffer goes to the socket
 * without a copy (a small `Uint8Array` lives on V8's heap, and handing it to an op copies it into
 * a fresh allocation), and one allocation serves thousands of datagrams. A slab is freed when the
 * last datagram in it is (the deduplication cache keeps replies, in time order).
 */
const SLAB = 65_536;
let slab = new ArrayBuffer(SLAB);
let slabUsed = 0;

function allocate(n: number): Uint8Array {
  if (n > SLAB / 4) return new Uint8Array(n);
  if (slabUsed + n > SLAB) {
    slab = new ArrayBuffer(SLAB);
    slabUsed = 0;
  }
  const out = new Uint8Array(slab, slabUsed, n);
  slabUsed += (n + 7) & ~7;
  return out;
}

/** Bytes of the delta or length nibble's extension, RFC 7252 §3.1. */
function extBytes(n: number): number {
  return n < 13 ? 0 : n < 269 ? 1 : 2;
}

function nibble(n: number): number {
  return n < 13 ? n : n < 269 ? 13 : 14;
}

function byOptionNumber(a: CoapOption, b: CoapOption): number {
  return a.number - b.number;
}

/**
 * Encodes a message, RFC 7252 §3: header, token, options in ascending number order (§3.1 deltas;
 * repeated options keep their order), payload marker and payload. Throws `RangeError` if it
 * would exceed `maxSize` or an option number is out of range, and `TypeError` for a token longer
 * than 8 bytes (RFC 7252 §3).
 *
 * @example
 * ```ts
 * import { decodeMessage, encodeMessage } from "./codec.ts";
 * import { Code, CoapType } from "./message.ts";
 * const bytes = encodeMessage({
 *   type: CoapType.ACK, code: Code.CONTENT, messageId: 9, token: new Uint8Array([1]),
 *   options: [], payload: new TextEncoder().encode("hi"),
 * });
 * if (decodeMessage(bytes).payload.length !== 2) throw new Error();
 * ```
 */
export function encodeMessage(msg: CoapMessage, options: EncodeOptions = {}): Uint8Array {
  const max = options.maxSize ?? MAX_DATAGRAM;
  const token = msg.token;
  if (token.length > 8) {
    throw new TypeError(`Cannot encode CoAP message: token of ${token.length} bytes exceeds 8`);
  }
  const empty = msg.code === 0; // RFC 7252 §4.1: an Empty message is the 4-byte header alone
  let opts = empty ? [] : msg.options;
  for (let i = 1; i < opts.length; i++) {
    if (opts[i].number < opts[i - 1].number) {
      opts = [...opts].sort(byOptionNumber); // stable: repeated options keep their order
      break;
    }
  }
  const payload = empty ? EMPTY : msg.payload;
  let size = 4 + (empty ? 0 : token.length);
  let prev = 0;
  for (const o of opts) {
    const delta = o.number - prev;
    const len = o.value.length;
    if (o.number > 0xffff || len > 65_804) {
      throw new RangeError(`Cannot encode CoAP option ${o.number} of ${len} bytes`);
    }
    size += 1 + extBytes(delta) + extBytes(len) + len;
    prev = o.number;
  }
  if (payload.length > 0) size += 1 + payload.length;
  if (size > max) {
    throw new RangeError(
      `Cannot encode CoAP message: ${size} bytes exceeds the ${max} byte limit`,
    );
  }
  const out = allocate(size);
  const tkl = empty ? 0 : token.length;
  out[0] = 0x40 | (msg.type << 4) | tkl; // version 1
  out[1] = msg.code;
  out[2] = (msg.messageId >> 8) & 0xff;
  out[3] = msg.messageId & 0xff;
  let pos = 4;
  if (tkl) {
    out.set(token, pos);
    pos += tkl;
  }
  prev = 0;
  for (const o of opts) {
    const delta = o.number - prev;
    const len = o.value.length;
    out[pos++] = (nibble(delta) << 4) | nibble(len);
    pos = writeExt(out, pos, delta);
    pos = writeExt(out, pos, len);
    if (len) {
      out.set(o.value, pos);
      pos += len;
    }
    prev = o.number;
  }
  if (payload.length > 0) {
    out[pos++] = 0xff;
    out.set(payload, pos);
  }
  return out;
}

function writeExt(out: Uint8Array, pos: number, n: number): number {
  if (n < 13) return pos;
  if (n < 269) {
    out[pos] = n - 13;
    return pos + 1;
  }
  out[pos] = (n - 269) >> 8;
  out[pos + 1] = (n - 269) & 0xff;
  return pos + 2;
}
