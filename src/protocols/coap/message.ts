/**
 * The CoAP message model of RFC 7252 §3: type, code, message ID, token, options and payload, with
 * the code registry of §12.1 and small helpers to build responses.
 *
 * @module
 */

/** Message types, RFC 7252 §3 (T field). */
export const CoapType = {
  /** Confirmable. */
  CON: 0,
  /** Non-confirmable. */
  NON: 1,
  /** Acknowledgement. */
  ACK: 2,
  /** Reset. */
  RST: 3,
} as const;
/** One of {@link CoapType}. */
export type CoapType = typeof CoapType[keyof typeof CoapType];

/** Builds a code byte from class and detail (`c.dd`), RFC 7252 §3. */
export function code(cls: number, detail: number): number {
  return (cls << 5) | detail;
}

/** Codes used by Ferry, RFC 7252 §12.1, RFC 7959 §2.9 (2.31, 4.08), RFC 8516 (4.29). */
export const Code = {
  EMPTY: 0,
  GET: code(0, 1),
  POST: code(0, 2),
  PUT: code(0, 3),
  DELETE: code(0, 4),
  CREATED: code(2, 1),
  DELETED: code(2, 2),
  VALID: code(2, 3),
  CHANGED: code(2, 4),
  CONTENT: code(2, 5),
  CONTINUE: code(2, 31),
  BAD_REQUEST: code(4, 0),
  UNAUTHORIZED: code(4, 1),
  BAD_OPTION: code(4, 2),
  FORBIDDEN: code(4, 3),
  NOT_FOUND: code(4, 4),
  METHOD_NOT_ALLOWED: code(4, 5),
  NOT_ACCEPTABLE: code(4, 6),
  REQUEST_ENTITY_INCOMPLETE: code(4, 8),
  PRECONDITION_FAILED: code(4, 12),
  REQUEST_ENTITY_TOO_LARGE: code(4, 13),
  UNSUPPORTED_CONTENT_FORMAT: code(4, 15),
  /** RFC 8516: Too Many Requests, with Max-Age saying when to retry. */
  TOO_MANY_REQUESTS: code(4, 29),
  INTERNAL_SERVER_ERROR: code(5, 0),
  NOT_IMPLEMENTED: code(5, 1),
  SERVICE_UNAVAILABLE: code(5, 3),
  PROXYING_NOT_SUPPORTED: code(5, 5),
} as const;

/** Content-Format identifiers used here, RFC 7252 §12.3, RFC 6690 §7.2. */
export const ContentFormat = {
  TEXT: 0,
  LINK_FORMAT: 40,
  XML: 41,
  OCTET_STREAM: 42,
  EXI: 47,
  JSON: 50,
} as const;

/** One option instance: its number and raw value bytes. */
export interface CoapOption {
  /** Option number (RFC 7252 §5.10). */
  number: number;
  /** Raw value. */
  value: Uint8Array;
}

/** A decoded or to-be-encoded CoAP message (RFC 7252 §3). */
export interface CoapMessage {
  /** CON, NON, ACK or RST. */
  type: CoapType;
  /** Code byte (class << 5 | detail). */
  code: number;
  /** 16-bit message ID. */
  messageId: number;
  /** 0..8 byte token. */
  token: Uint8Array;
  /** Options in ascending number order (repeats keep their order). */
  options: CoapOption[];
  /** Payload (empty when none). */
  payload: Uint8Array;
}

/** Class of a code (`c` of `c.dd`). */
export function codeClass(c: number): number {
  return c >> 5;
}

/** Detail of a code (`dd` of `c.dd`). */
export function codeDetail(c: number): number {
  return c & 0x1f;
}

/**
 * Human form of a code, `c.dd`.
 *
 * @example
 * ```ts
 * import { Code, codeString } from "./message.ts";
 * if (codeString(Code.CONTENT) !== "2.05") throw new Error();
 * ```
 */
export function codeString(c: number): string {
  return `${codeClass(c)}.${String(codeDetail(c)).padStart(2, "0")}`;
}

/** True for request codes 0.01..0.31 (RFC 7252 §5.8). */
export function isRequestCode(c: number): boolean {
  return codeClass(c) === 0 && c !== 0;
}

/** True for response codes 2.xx, 4.xx, 5.xx (RFC 7252 §5.9). */
export function isResponseCode(c: number): boolean {
  const k = codeClass(c);
  return k === 2 || k === 4 || k === 5;
}

const EMPTY = new Uint8Array(0);

/**
 * An Empty message (code 0.00, no token, options or payload): an empty ACK, RST or ping.
 * RFC 7252 §4.1.
 *
 * @example
 * ```ts
 * import { CoapType, emptyMessage } from "./message.ts";
 * const rst = emptyMessage(CoapType.RST, 7);
 * if (rst.code !== 0 || rst.token.length !== 0 || rst.messageId !== 7) throw new Error();
 * ```
 */
export function emptyMessage(type: CoapType, messageId: number): CoapMessage {
  return { type, code: 0, messageId, token: EMPTY, options: [], payload: EMPTY };
}

/** Values of all instances of option `number`, in order. */
export function optionValues(msg: CoapMessage, number: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const o of msg.options) if (o.number === number) out.push(o.value);
  return out;
}

/** First value of option `number`, if present. */
export function optionValue(msg: CoapMessage, number: number): Uint8Array | undefined {
  for (const o of msg.options) if (o.number === number) return o.value;
  return undefined;
}
