/**
 * FBP/1 frame layout, constants and the encoders/decoders of every frame body.
 *
 * A frame on the wire is (all integers big-endian, see `docs/binary-protocol.md` §2):
 *
 * ```text
 * magic u32 = 0x12345678 | length u32 | type u8 | flags u8 | seq u32 | payload | crc32 u32
 * ```
 *
 * {@link encodeFrame} builds such a frame; decoding a byte stream into frames is the job of
 * `FrameParser`/`FrameDecoder` in `codec.ts`. The body codecs here (`encodeHello`/`decodeHello`,
 * …) translate between a frame's `payload` and a typed object. Encoders reject bad arguments with
 * `TypeError`/`RangeError`; decoders reject malformed bodies with {@link FrameSyntaxError} (code
 * {@link ErrorCode.BAD_PAYLOAD}), which the session answers per the spec.
 *
 * {@link FrameSyntaxError} lives in this file, the lowest layer, so that `codec.ts` can import the
 * frame layout without an import cycle; `codec.ts` re-exports it.
 *
 * @module
 */

import { crc32Range } from "./crc32.ts";

// ---------------------------------------------------------------------------------------------
// Layout constants
// ---------------------------------------------------------------------------------------------

/** The 4 bytes every frame starts with, `12 34 56 78` on the wire. [FBP-2-1] */
export const MAGIC = 0x12345678;

/** Bytes before the payload: magic (4), length (4), type (1), flags (1), seq (4). */
export const HEADER_SIZE = 14;

/** Bytes after the payload: the CRC-32 (4). */
export const TRAILER_SIZE = 4;

/** Flags bit 0: the sender asks for an ACK carrying the same seq. [FBP-2-4] */
export const FLAG_ACK_REQUESTED = 0x01;

/** Frame types. The `type` byte of a {@link Frame}; see `docs/binary-protocol.md` §4. */
export const FrameType = {
  /** Device → gateway, first frame: identity, credentials, requested keepalive. */
  HELLO: 0x01,
  /** Gateway → device: answer to HELLO, same seq. */
  HELLO_ACK: 0x02,
  /** Device → gateway: a message for `devices/{id}/telemetry[/{channel}]`. */
  TELEMETRY: 0x10,
  /** Either way: acknowledges the frame with the same seq. */
  ACK: 0x11,
  /** Either way: liveness probe, answered by PONG with the same seq. */
  PING: 0x20,
  /** Either way: answer to PING, same seq. */
  PONG: 0x21,
  /** Gateway → device: a command from `devices/{id}/commands/{name}`. */
  COMMAND: 0x30,
  /** Either way: graceful close. */
  BYE: 0x40,
  /** Gateway → device: an error report, see {@link ErrorCode}. */
  ERROR: 0x7f,
} as const;

/** One of the {@link FrameType} values. */
export type FrameType = typeof FrameType[keyof typeof FrameType];

/** Codes of the ERROR frame (`docs/binary-protocol.md` §8); each says whether the link closes. */
export const ErrorCode = {
  /** Frame did not start with {@link MAGIC}. Connection closes. */
  BAD_MAGIC: 1,
  /** Declared payload length exceeds the gateway's limit. Connection closes. */
  FRAME_TOO_LARGE: 2,
  /** CRC mismatch. Frame dropped, connection stays. */
  BAD_CRC: 3,
  /** Unknown or unexpected frame type. Frame dropped, connection stays. */
  UNKNOWN_TYPE: 4,
  /** First frame was not HELLO. Connection closes. */
  NOT_AUTHENTICATED: 5,
  /** Malformed body or reserved flag set. Frame dropped, connection stays. */
  BAD_PAYLOAD: 6,
  /** Nothing received for 1.5× the granted keepalive. Connection closes. */
  KEEPALIVE_TIMEOUT: 7,
  /** Another connection said HELLO with the same id. Connection closes. */
  SESSION_TAKEN_OVER: 8,
  /** The gateway is shutting down. Connection closes. */
  SHUTTING_DOWN: 9,
  /** No HELLO within the hello timeout. Connection closes. */
  HELLO_TIMEOUT: 10,
  /** The gateway's payload budget could not take the frame: read and dropped, retry later. */
  OVERLOADED: 11,
} as const;

/** One of the {@link ErrorCode} values. */
export type ErrorCode = typeof ErrorCode[keyof typeof ErrorCode];

/** Status byte of an ACK frame (`docs/binary-protocol.md` §9). */
export const AckStatus = {
  /** Accepted (TELEMETRY) or delivered (COMMAND). */
  OK: 0,
  /** The sender may not publish/receive this. */
  NOT_AUTHORIZED: 1,
  /** The message is larger than the receiver accepts. */
  TOO_LARGE: 2,
  /** The receiver is overloaded; retry later. */
  OVERLOADED: 3,
  /** The body could not be decoded or processed. */
  BAD_PAYLOAD: 4,
} as const;

/** One of the {@link AckStatus} values. */
export type AckStatus = typeof AckStatus[keyof typeof AckStatus];

/** Status byte of a HELLO_ACK frame (`docs/binary-protocol.md` §4.2). */
export const HelloStatus = {
  /** Session established. */
  OK: 0,
  /** Token rejected. The gateway closes after sending. */
  BAD_CREDENTIALS: 1,
  /** Malformed or unacceptable id. The gateway closes after sending. */
  BAD_ID: 2,
  /** The gateway cannot take the session now. The gateway closes after sending. */
  UNAVAILABLE: 3,
} as const;

/** One of the {@link HelloStatus} values. */
export type HelloStatus = typeof HelloStatus[keyof typeof HelloStatus];

/** Longest device id, channel and command name, in bytes. */
const MAX_NAME = 64;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/** Options of {@link FrameSyntaxError}. */
export interface FrameSyntaxErrorOptions {
  /**
   * Byte offset of the problem. For errors from `FrameParser`/`FrameDecoder` it counts from the
   * start of the stream; for errors from the body decoders it counts from the start of the payload.
   */
  offset: number;
  /** The {@link ErrorCode} to send to the peer. */
  code: number;
  /** Whether the connection must close (bad magic, frame too large). @default false */
  fatal?: boolean;
  /** The seq of the frame in error, when its header was read (it may itself be corrupt). */
  seq?: number;
  /** The flags of the frame in error, when its header was read. */
  flags?: number;
  /** The underlying error, if any. */
  cause?: unknown;
}

/**
 * A frame or frame body that breaks the FBP/1 syntax.
 *
 * `code` is the {@link ErrorCode} to report in an ERROR frame and `fatal` says whether the
 * connection must then close: bad magic and too-large frames are fatal (the stream cannot be
 * resynchronised); a bad CRC or a malformed body is not (the whole frame was consumed and the next
 * one can be read).
 *
 * @example
 * ```ts
 * import { decodeAck, ErrorCode, FrameSyntaxError } from "./frame.ts";
 * try {
 *   decodeAck(new Uint8Array([0, 0]));
 *   throw new Error("accepted a 2-byte ACK");
 * } catch (err) {
 *   if (!(err instanceof FrameSyntaxError) || err.code !== ErrorCode.BAD_PAYLOAD) throw err;
 *   if (err.fatal || err.offset !== 1) throw err;
 * }
 * ```
 */
export class FrameSyntaxError extends SyntaxError {
  /** Always `"FrameSyntaxError"`. */
  override name = "FrameSyntaxError";
  /** Byte offset of the problem (stream offset from the codec, payload offset from a body decoder). */
  readonly offset: number;
  /** The {@link ErrorCode} to send: 1 bad magic, 2 too large, 3 bad CRC, 6 bad payload. */
  readonly code: number;
  /** Whether the connection must be closed after reporting the error. */
  readonly fatal: boolean;
  /** The seq from the header of the frame in error, when it was read. */
  readonly seq: number | undefined;
  /** The flags of the frame in error, when its header was read. */
  readonly flags: number | undefined;

  /** Creates the error; `message` should say what was expected and what was found. */
  constructor(message: string, options: FrameSyntaxErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.offset = options.offset;
    this.code = options.code;
    this.fatal = options.fatal ?? false;
    this.seq = options.seq;
    this.flags = options.flags;
  }
}

/** Shorthand for a non-fatal bad-body error at `offset` within the payload. */
function badBody(what: string, message: string, offset: number, cause?: unknown): FrameSyntaxError {
  return new FrameSyntaxError(`Cannot decode ${what}: ${message}`, {
    offset,
    code: ErrorCode.BAD_PAYLOAD,
    cause,
  });
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/** One FBP/1 frame, without magic, length and CRC (those are computed/checked by the codec). */
export interface Frame {
  /** Frame type byte; usually a {@link FrameType}, but decoders pass unknown types through. */
  type: number;
  /** Flags byte; bit 0 is {@link FLAG_ACK_REQUESTED}, the others must be 0. */
  flags: number;
  /** Sequence number, an unsigned 32-bit integer. */
  seq: number;
  /** The frame body, decoded by the `decodeXxx` function for its type. */
  payload: Uint8Array;
}

function checkUint(value: number, bits: 8 | 16 | 32, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 2 ** bits - 1) {
    throw new RangeError(`Cannot encode ${what}: ${value} is not an unsigned ${bits}-bit integer`);
  }
}

/**
 * Encodes a complete frame: header, payload and CRC-32 trailer.
 *
 * @throws {RangeError} If `type`, `flags` or `seq` do not fit their fields.
 * @throws {TypeError} If `payload` is not a `Uint8Array`.
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameType } from "./frame.ts";
 * const bytes = encodeFrame({ type: FrameType.PING, flags: 0, seq: 7, payload: new Uint8Array() });
 * const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
 * if (hex !== "12345678000000002000000000079fc8da70") throw new Error(hex);
 * ```
 */
export function encodeFrame(frame: Frame): Uint8Array {
  const payload = frame.payload;
  if (!(payload instanceof Uint8Array)) {
    throw new TypeError("Cannot encode frame: payload is not a Uint8Array");
  }
  const bytes = new Uint8Array(HEADER_SIZE + payload.length + TRAILER_SIZE);
  encodeFrameInto(bytes, frame.type, frame.flags, frame.seq, payload);
  return bytes;
}

/**
 * Encodes a frame into `out`, which must be exactly `HEADER_SIZE + payload.length +
 * TRAILER_SIZE` bytes (a writer's reserved bytes: no buffer of its own per frame).
 *
 * @throws {RangeError} If `type`, `flags` or `seq` do not fit their fields, or `out` has the
 * wrong size.
 *
 * @example
 * ```ts
 * import { encodeFrame, encodeFrameInto, FrameType, HEADER_SIZE, TRAILER_SIZE } from "./frame.ts";
 * const out = new Uint8Array(HEADER_SIZE + 1 + TRAILER_SIZE);
 * encodeFrameInto(out, FrameType.ACK, 0, 5, new Uint8Array([0]));
 * const same = encodeFrame({ type: FrameType.ACK, flags: 0, seq: 5, payload: new Uint8Array([0]) });
 * if (out.join() !== same.join()) throw new Error("differs");
 * ```
 */
export function encodeFrameInto(
  out: Uint8Array,
  type: number,
  flags: number,
  seq: number,
  payload: Uint8Array,
): void {
  checkUint(type, 8, "frame type");
  checkUint(flags, 8, "frame flags");
  checkUint(seq, 32, "frame seq");
  const length = payload.length;
  checkUint(length, 32, "payload length");
  const end = HEADER_SIZE + length;
  if (out.length !== end + TRAILER_SIZE) {
    throw new RangeError(
      `Cannot encode frame: ${out.length} bytes given for a frame of ${end + TRAILER_SIZE}`,
    );
  }
  writeU32(out, 0, MAGIC);
  writeU32(out, 4, length);
  out[8] = type;
  out[9] = flags;
  writeU32(out, 10, seq);
  if (length === 1) out[HEADER_SIZE] = payload[0]; // an ACK: no subarray and set call
  else out.set(payload, HEADER_SIZE);
  writeU32(out, end, crc32Range(out, 0, end));
}

function writeU32(out: Uint8Array, at: number, v: number): void {
  out[at] = v >>> 24;
  out[at + 1] = (v >>> 16) & 0xff;
  out[at + 2] = (v >>> 8) & 0xff;
  out[at + 3] = v & 0xff;
}

// ---------------------------------------------------------------------------------------------
// Body helpers
// ---------------------------------------------------------------------------------------------

const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Bit sets of the allowed ASCII bytes for ids, channels and command names. */
const ID_CHARS = asciiSet("A-Za-z0-9._:-"); // [FBP-4.1-1]
const CHANNEL_CHARS = asciiSet("a-z0-9_-"); // [FBP-4.3-1]
const NAME_CHARS = asciiSet("A-Za-z0-9._-"); // [FBP-4.6-1]

function asciiSet(spec: string): Uint8Array {
  const set = new Uint8Array(128);
  for (let i = 0; i < spec.length; i++) {
    if (spec[i + 1] === "-" && i + 2 < spec.length) {
      for (let c = spec.charCodeAt(i); c <= spec.charCodeAt(i + 2); c++) set[c] = 1;
      i += 2;
    } else {
      set[spec.charCodeAt(i)] = 1;
    }
  }
  return set;
}

/** Index of the first byte of `bytes[start, end)` not in `set`, or -1. */
function firstBadByte(bytes: Uint8Array, start: number, end: number, set: Uint8Array): number {
  for (let i = start; i < end; i++) if (bytes[i] > 0x7f || !set[bytes[i]]) return i;
  return -1;
}

/** Validates an ASCII name for encoding and returns its bytes. */
function encodeName(
  value: string,
  set: Uint8Array,
  min: number,
  what: string,
  allowed: string,
): Uint8Array {
  if (typeof value !== "string") throw new TypeError(`Cannot encode ${what}: not a string`);
  const bytes = encoder.encode(value);
  if (bytes.length < min || bytes.length > MAX_NAME) {
    throw new RangeError(
      `Cannot encode ${what}: length ${bytes.length} is outside ${min}..${MAX_NAME}`,
    );
  }
  if (firstBadByte(bytes, 0, bytes.length, set) !== -1) {
    throw new RangeError(`Cannot encode ${what}: ${JSON.stringify(value)} is not ${allowed}`);
  }
  return bytes;
}

/** Decodes `bytes[start, start + len)` known to be ASCII. */
function ascii(bytes: Uint8Array, start: number, len: number): string {
  let s = "";
  for (let i = start, end = start + len; i < end; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

/**
 * Reads a `u8 len, name` field at `at` and checks length and alphabet.
 * Returns the name and the offset after it.
 */
function decodeName(
  payload: Uint8Array,
  at: number,
  set: Uint8Array,
  min: number,
  what: string,
  field: string,
): [string, number] {
  if (payload.length < at + 1) {
    throw badBody(what, `body ends before the ${field} length`, payload.length);
  }
  const len = payload[at];
  if (len < min || len > MAX_NAME) {
    throw badBody(what, `${field} length ${len} is outside ${min}..${MAX_NAME}`, at);
  }
  if (payload.length < at + 1 + len) {
    throw badBody(
      what,
      `${field} length ${len} runs past the end of the ${payload.length} byte body`,
      at,
    );
  }
  const bad = firstBadByte(payload, at + 1, at + 1 + len, set);
  if (bad !== -1) {
    throw badBody(
      what,
      `${field} byte 0x${payload[bad].toString(16).padStart(2, "0")} is not allowed`,
      bad,
    );
  }
  return [ascii(payload, at + 1, len), at + 1 + len];
}

function expectLength(payload: Uint8Array, length: number, what: string): void {
  if (payload.length !== length) {
    throw badBody(
      what,
      `body is ${payload.length} bytes, expected ${length}`,
      Math.min(payload.length, length),
    );
  }
}

function readU16(bytes: Uint8Array, at: number): number {
  return (bytes[at] << 8) | bytes[at + 1];
}

function writeU16(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value >>> 8;
  bytes[at + 1] = value & 0xff;
}

function checkEnum(value: number, values: Record<string, number>, what: string): void {
  if (!Object.values(values).includes(value)) {
    throw new RangeError(`Cannot encode ${what}: ${value} is not a known value`);
  }
}

// ---------------------------------------------------------------------------------------------
// HELLO (0x01)
// ---------------------------------------------------------------------------------------------

/** Body of a HELLO frame: `u8 idLen, id, u8 tokenLen, token, u16 keepAliveSec`. */
export interface HelloBody {
  /** Device id: 1..64 characters of `[A-Za-z0-9._:-]`. */
  id: string;
  /** Credential; its UTF-8 encoding is 0..255 bytes. */
  token: string;
  /** Requested keepalive in seconds, 0..65535; 0 asks for the gateway default. */
  keepAlive: number;
}

/**
 * Encodes a HELLO body.
 *
 * @throws {RangeError} If the id, token or keepalive is out of range.
 *
 * @example
 * ```ts
 * import { decodeHello, encodeHello } from "./frame.ts";
 * const hello = decodeHello(encodeHello({ id: "sensor-1", token: "secret", keepAlive: 30 }));
 * if (hello.id !== "sensor-1" || hello.token !== "secret" || hello.keepAlive !== 30) {
 *   throw new Error("round trip failed");
 * }
 * ```
 */
export function encodeHello(body: HelloBody): Uint8Array {
  const id = encodeName(body.id, ID_CHARS, 1, "HELLO id", "1..64 of [A-Za-z0-9._:-]");
  if (typeof body.token !== "string") {
    throw new TypeError("Cannot encode HELLO token: not a string");
  }
  const token = encoder.encode(body.token);
  if (token.length > 255) {
    throw new RangeError(`Cannot encode HELLO token: ${token.length} bytes exceed 255`);
  }
  checkUint(body.keepAlive, 16, "HELLO keepalive");
  const out = new Uint8Array(1 + id.length + 1 + token.length + 2);
  out[0] = id.length;
  out.set(id, 1);
  out[1 + id.length] = token.length;
  out.set(token, 2 + id.length);
  writeU16(out, out.length - 2, body.keepAlive);
  return out;
}

/**
 * Decodes a HELLO body.
 *
 * @throws {FrameSyntaxError} (code 6) If the id is empty, longer than 64 bytes or has a byte
 * outside `[A-Za-z0-9._:-]`, if the token is not valid UTF-8, or if the body is not exactly
 * `1 + idLen + 1 + tokenLen + 2` bytes. The gateway answers a bad id with HELLO_ACK status 2 and
 * other faults with ERROR 6. [FBP-4.1-4]
 *
 * @example
 * ```ts
 * import { decodeHello } from "./frame.ts";
 * const hello = decodeHello(new Uint8Array([1, 0x61, 0, 0, 30]));
 * if (hello.id !== "a" || hello.token !== "" || hello.keepAlive !== 30) throw new Error("bad");
 * ```
 */
export function decodeHello(payload: Uint8Array): HelloBody {
  const what = "HELLO body";
  const [id, at] = decodeName(payload, 0, ID_CHARS, 1, what, "id"); // [FBP-4.1-1]
  if (payload.length < at + 1) throw badBody(what, "body ends before the token length", at);
  const tokenLen = payload[at];
  const end = at + 1 + tokenLen;
  // [FBP-4.1-3] exact length: idLen, id, tokenLen, token, keepAlive and nothing else.
  if (payload.length !== end + 2) {
    throw badBody(
      what,
      `body is ${payload.length} bytes, expected ${end + 2} for a ${id.length} byte id and a ` +
        `${tokenLen} byte token`,
      Math.min(payload.length, end),
    );
  }
  let token: string;
  try {
    token = utf8.decode(payload.subarray(at + 1, end)); // [FBP-4.1-2]
  } catch (err) {
    throw badBody(what, "token is not valid UTF-8", at + 1, err);
  }
  return { id, token, keepAlive: readU16(payload, end) };
}

// ---------------------------------------------------------------------------------------------
// HELLO_ACK (0x02)
// ---------------------------------------------------------------------------------------------

/** Body of a HELLO_ACK frame: `u8 status, u16 keepAliveSec`. */
export interface HelloAckBody {
  /** A {@link HelloStatus}. */
  status: number;
  /** Granted keepalive in seconds (0 when `status` is not OK). */
  keepAlive: number;
}

/**
 * Encodes a HELLO_ACK body.
 *
 * @throws {RangeError} If `status` is not a {@link HelloStatus} or `keepAlive` is not a u16.
 *
 * @example
 * ```ts
 * import { decodeHelloAck, encodeHelloAck, HelloStatus } from "./frame.ts";
 * const ack = decodeHelloAck(encodeHelloAck({ status: HelloStatus.OK, keepAlive: 30 }));
 * if (ack.status !== 0 || ack.keepAlive !== 30) throw new Error("round trip failed");
 * ```
 */
export function encodeHelloAck(body: HelloAckBody): Uint8Array {
  checkEnum(body.status, HelloStatus, "HELLO_ACK status");
  checkUint(body.keepAlive, 16, "HELLO_ACK keepalive");
  const out = new Uint8Array(3);
  out[0] = body.status;
  writeU16(out, 1, body.keepAlive);
  return out;
}

/**
 * Decodes a HELLO_ACK body.
 *
 * @throws {FrameSyntaxError} (code 6) If the body is not exactly 3 bytes or the status is not a
 * {@link HelloStatus}. [FBP-4.2-1]
 *
 * @example
 * ```ts
 * import { decodeHelloAck } from "./frame.ts";
 * const ack = decodeHelloAck(new Uint8Array([1, 0, 0]));
 * if (ack.status !== 1 || ack.keepAlive !== 0) throw new Error("bad");
 * ```
 */
export function decodeHelloAck(payload: Uint8Array): HelloAckBody {
  expectLength(payload, 3, "HELLO_ACK body"); // [FBP-4.2-1]
  const status = payload[0];
  if (status > HelloStatus.UNAVAILABLE) {
    throw badBody("HELLO_ACK body", `status ${status} is not defined`, 0);
  }
  return { status, keepAlive: readU16(payload, 1) };
}

// ---------------------------------------------------------------------------------------------
// TELEMETRY (0x10)
// ---------------------------------------------------------------------------------------------

/** Body of a TELEMETRY frame: `u8 chanLen, channel, data…`. */
export interface TelemetryBody {
  /** Channel: 0..64 characters of `[a-z0-9_-]`; empty means the device's main telemetry topic. */
  channel: string;
  /** Opaque message bytes. From {@link decodeTelemetry} this is a view into the payload. */
  data: Uint8Array;
}

/**
 * Encodes a TELEMETRY body.
 *
 * @throws {RangeError} If the channel is longer than 64 bytes or has a character outside
 * `[a-z0-9_-]`.
 *
 * @example
 * ```ts
 * import { decodeTelemetry, encodeTelemetry } from "./frame.ts";
 * const data = new TextEncoder().encode('{"c":21.5}');
 * const t = decodeTelemetry(encodeTelemetry({ channel: "temp", data }));
 * if (t.channel !== "temp" || new TextDecoder().decode(t.data) !== '{"c":21.5}') {
 *   throw new Error("round trip failed");
 * }
 * ```
 */
export function encodeTelemetry(body: TelemetryBody): Uint8Array {
  const channel = encodeName(
    body.channel,
    CHANNEL_CHARS,
    0,
    "TELEMETRY channel",
    "0..64 of [a-z0-9_-]",
  );
  return namedBody(channel, body.data, "TELEMETRY");
}

/**
 * Decodes a TELEMETRY body.
 *
 * The returned `data` is a `subarray` view of `payload`, not a copy: it shares (and keeps alive)
 * the payload's memory, which the codec already allocates per frame at its exact size. Copy it
 * with `slice()` if the payload buffer will be reused.
 *
 * @throws {FrameSyntaxError} (code 6) If the channel length exceeds 64 or the body, or the channel
 * has a byte outside `[a-z0-9_-]`. [FBP-4.3-1]
 *
 * @example
 * ```ts
 * import { decodeTelemetry } from "./frame.ts";
 * const t = decodeTelemetry(new Uint8Array([0, 42]));
 * if (t.channel !== "" || t.data.length !== 1 || t.data[0] !== 42) throw new Error("bad");
 * ```
 */
export function decodeTelemetry(payload: Uint8Array): TelemetryBody {
  if (payload.length > 0 && payload[0] === 0) return { channel: "", data: payload.subarray(1) };
  const [channel, at] = decodeName(payload, 0, CHANNEL_CHARS, 0, "TELEMETRY body", "channel");
  return { channel, data: payload.subarray(at) };
}

// ---------------------------------------------------------------------------------------------
// ACK (0x11)
// ---------------------------------------------------------------------------------------------

/**
 * Encodes an ACK body: `u8 status`.
 *
 * @throws {RangeError} If `status` is not an {@link AckStatus}.
 *
 * @example
 * ```ts
 * import { AckStatus, decodeAck, encodeAck } from "./frame.ts";
 * if (decodeAck(encodeAck(AckStatus.OVERLOADED)) !== 3) throw new Error("round trip failed");
 * ```
 */
export function encodeAck(status: number): Uint8Array {
  checkEnum(status, AckStatus, "ACK status");
  return new Uint8Array([status]);
}

/**
 * Decodes an ACK body and returns its {@link AckStatus}.
 *
 * @throws {FrameSyntaxError} (code 6) If the body is not exactly 1 byte or the status is not
 * defined. [FBP-4.4-1]
 *
 * @example
 * ```ts
 * import { decodeAck } from "./frame.ts";
 * if (decodeAck(new Uint8Array([0])) !== 0) throw new Error("bad");
 * ```
 */
export function decodeAck(payload: Uint8Array): number {
  expectLength(payload, 1, "ACK body"); // [FBP-4.4-1]
  if (payload[0] > AckStatus.BAD_PAYLOAD) {
    throw badBody("ACK body", `status ${payload[0]} is not defined`, 0);
  }
  return payload[0];
}

// ---------------------------------------------------------------------------------------------
// COMMAND (0x30)
// ---------------------------------------------------------------------------------------------

/** Body of a COMMAND frame: `u8 nameLen, name, data…`. */
export interface CommandBody {
  /** Command name: 1..64 characters of `[A-Za-z0-9._-]` (safe as one MQTT topic level). */
  name: string;
  /** Opaque argument bytes. From {@link decodeCommand} this is a view into the payload. */
  data: Uint8Array;
}

/**
 * Encodes a COMMAND body.
 *
 * @throws {RangeError} If the name is empty, longer than 64 bytes or has a character outside
 * `[A-Za-z0-9._-]`.
 *
 * @example
 * ```ts
 * import { decodeCommand, encodeCommand } from "./frame.ts";
 * const c = decodeCommand(encodeCommand({ name: "reboot", data: new Uint8Array() }));
 * if (c.name !== "reboot" || c.data.length !== 0) throw new Error("round trip failed");
 * ```
 */
export function encodeCommand(body: CommandBody): Uint8Array {
  const name = encodeName(body.name, NAME_CHARS, 1, "COMMAND name", "1..64 of [A-Za-z0-9._-]");
  return namedBody(name, body.data, "COMMAND");
}

/** `u8 nameLen, name, data…`: the layout TELEMETRY and COMMAND bodies share. */
function namedBody(name: Uint8Array, data: Uint8Array, what: string): Uint8Array {
  if (!(data instanceof Uint8Array)) {
    throw new TypeError(`Cannot encode ${what} data: not a Uint8Array`);
  }
  const out = new Uint8Array(1 + name.length + data.length);
  out[0] = name.length;
  out.set(name, 1);
  out.set(data, 1 + name.length);
  return out;
}

/**
 * Decodes a COMMAND body.
 *
 * The returned `data` is a `subarray` view of `payload`, not a copy (see {@link decodeTelemetry}).
 *
 * @throws {FrameSyntaxError} (code 6) If the name is empty, longer than 64 bytes or the body, or
 * has a byte outside `[A-Za-z0-9._-]`. [FBP-4.6-1]
 *
 * @example
 * ```ts
 * import { decodeCommand } from "./frame.ts";
 * const c = decodeCommand(new Uint8Array([2, 0x67, 0x6f, 1]));
 * if (c.name !== "go" || c.data[0] !== 1) throw new Error("bad");
 * ```
 */
export function decodeCommand(payload: Uint8Array): CommandBody {
  const [name, at] = decodeName(payload, 0, NAME_CHARS, 1, "COMMAND body", "name");
  return { name, data: payload.subarray(at) };
}

// ---------------------------------------------------------------------------------------------
// BYE (0x40)
// ---------------------------------------------------------------------------------------------

/**
 * Encodes a BYE body: `u16 reason` (0 = normal close).
 *
 * @throws {RangeError} If `reason` is not a u16.
 *
 * @example
 * ```ts
 * import { decodeBye, encodeBye } from "./frame.ts";
 * if (decodeBye(encodeBye(513)) !== 513) throw new Error("round trip failed");
 * ```
 */
export function encodeBye(reason: number): Uint8Array {
  checkUint(reason, 16, "BYE reason");
  const out = new Uint8Array(2);
  writeU16(out, 0, reason);
  return out;
}

/**
 * Decodes a BYE body and returns its reason.
 *
 * @throws {FrameSyntaxError} (code 6) If the body is not exactly 2 bytes. [FBP-4.7-1]
 *
 * @example
 * ```ts
 * import { decodeBye } from "./frame.ts";
 * if (decodeBye(new Uint8Array([0, 0])) !== 0) throw new Error("bad");
 * ```
 */
export function decodeBye(payload: Uint8Array): number {
  expectLength(payload, 2, "BYE body"); // [FBP-4.7-1]
  return readU16(payload, 0);
}

// ---------------------------------------------------------------------------------------------
// ERROR (0x7F)
// ---------------------------------------------------------------------------------------------

/** Body of an ERROR frame: `u16 code, reason (UTF-8, rest of the body)`. */
export interface ErrorBody {
  /** An {@link ErrorCode}; decoders accept any u16 so newer codes still reach the device. */
  code: number;
  /** Human-readable reason, for logs. Keep it short (the gateway sends at most 200 characters). */
  reason: string;
}

/**
 * Encodes an ERROR body.
 *
 * @throws {RangeError} If `code` is not a u16.
 *
 * @example
 * ```ts
 * import { decodeError, encodeError, ErrorCode } from "./frame.ts";
 * const e = decodeError(encodeError({ code: ErrorCode.BAD_CRC, reason: "bad crc" }));
 * if (e.code !== 3 || e.reason !== "bad crc") throw new Error("round trip failed");
 * ```
 */
export function encodeError(body: ErrorBody): Uint8Array {
  checkUint(body.code, 16, "ERROR code");
  if (typeof body.reason !== "string") {
    throw new TypeError("Cannot encode ERROR reason: not a string");
  }
  const reason = encoder.encode(body.reason);
  const out = new Uint8Array(2 + reason.length);
  writeU16(out, 0, body.code);
  out.set(reason, 2);
  return out;
}

/**
 * Decodes an ERROR body.
 *
 * @throws {FrameSyntaxError} (code 6) If the body is shorter than 2 bytes or the reason is not
 * valid UTF-8. [FBP-4.8-1]
 *
 * @example
 * ```ts
 * import { decodeError } from "./frame.ts";
 * const e = decodeError(new Uint8Array([0, 9, 0x62, 0x79, 0x65]));
 * if (e.code !== 9 || e.reason !== "bye") throw new Error("bad");
 * ```
 */
export function decodeError(payload: Uint8Array): ErrorBody {
  if (payload.length < 2) {
    throw badBody("ERROR body", `body is ${payload.length} bytes, expected at least 2`, 0);
  }
  let reason: string;
  try {
    reason = utf8.decode(payload.subarray(2)); // [FBP-4.8-1]
  } catch (err) {
    throw badBody("ERROR body", "reason is not valid UTF-8", 2, err);
  }
  return { code: readU16(payload, 0), reason };
}
