/**
 * FBP/1 frames for the benchmark's load generator and floor server, written from the spec
 * (`docs/binary-protocol.md` §2, §4) so the benchmark talks to Ferry only over the wire: a frame
 * encoder, HELLO and TELEMETRY bodies, and a frame scanner that checks magic and CRC-32.
 *
 * @module
 */

/** Frame types (§4). */
export const FrameType = {
  HELLO: 0x01,
  HELLO_ACK: 0x02,
  TELEMETRY: 0x10,
  ACK: 0x11,
  BYE: 0x40,
} as const;

/** Flags bit 0 (§3.1). */
export const ACK_REQUESTED = 1;

const HEADER = 14;
const MAGIC = 0x12345678;
const encoder = new TextEncoder();

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * CRC-32/IEEE of `b[start, end)` (zlib's `crc32`, [FBP-2-3]).
 *
 * @example
 * ```ts
 * import { crc32 } from "./_fbp_wire.ts";
 * if (crc32(new TextEncoder().encode("123456789")) !== 0xcbf43926) throw new Error();
 * ```
 */
export function crc32(b: Uint8Array, start = 0, end = b.length): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * One frame: header, payload, CRC (§2).
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameType } from "./_fbp_wire.ts";
 * const f = encodeFrame(FrameType.ACK, 0, 7, new Uint8Array([0]));
 * if (f.length !== 14 + 1 + 4 || f[8] !== 0x11 || f[13] !== 7) throw new Error();
 * ```
 */
export function encodeFrame(type: number, flags: number, seq: number, payload: Uint8Array) {
  const f = new Uint8Array(HEADER + payload.length + 4);
  const v = new DataView(f.buffer);
  v.setUint32(0, MAGIC);
  v.setUint32(4, payload.length);
  f[8] = type;
  f[9] = flags;
  v.setUint32(10, seq >>> 0);
  f.set(payload, HEADER);
  v.setUint32(HEADER + payload.length, crc32(f, 0, HEADER + payload.length));
  return f;
}

/** Re-stamps `seq` and the CRC of a frame in place (a template sent many times). */
export function restamp(frame: Uint8Array, seq: number): void {
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  v.setUint32(10, seq >>> 0);
  v.setUint32(frame.length - 4, crc32(frame, 0, frame.length - 4));
}

/** BYE, reason 0 (§4.7): the receiver closes the connection (§5.4). */
export const BYE_FRAME: Uint8Array = encodeFrame(FrameType.BYE, 0, 0, new Uint8Array(2));

/** HELLO body (§4.1): id, token, keepalive. */
export function helloBody(id: string, token: string, keepAlive: number): Uint8Array {
  const i = encoder.encode(id);
  const t = encoder.encode(token);
  const b = new Uint8Array(1 + i.length + 1 + t.length + 2);
  b[0] = i.length;
  b.set(i, 1);
  b[1 + i.length] = t.length;
  b.set(t, 2 + i.length);
  b[b.length - 2] = keepAlive >> 8;
  b[b.length - 1] = keepAlive & 0xff;
  return b;
}

/** TELEMETRY body (§4.3) on the empty channel (`devices/{id}/telemetry`). */
export function telemetryBody(data: Uint8Array): Uint8Array {
  const b = new Uint8Array(1 + data.length);
  b.set(data, 1);
  return b;
}

/** Called for each complete frame with a good magic and CRC. */
export type FbpFrameHandler = (
  type: number,
  flags: number,
  seq: number,
  buf: Uint8Array,
  payloadStart: number,
  payloadEnd: number,
) => void;

/**
 * Calls `onFrame` for every complete frame in `buf[start, end)` whose CRC matches; returns where
 * the first incomplete frame starts. A bad magic throws a `SyntaxError` ([FBP-2-1]).
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameType, scanFbp } from "./_fbp_wire.ts";
 * const f = encodeFrame(FrameType.ACK, 0, 9, new Uint8Array([0]));
 * const seqs: number[] = [];
 * if (scanFbp(f, 0, f.length, (_t, _f, seq) => seqs.push(seq)) !== f.length) throw new Error();
 * if (seqs[0] !== 9) throw new Error();
 * ```
 */
export function scanFbp(
  buf: Uint8Array,
  start: number,
  end: number,
  onFrame: FbpFrameHandler,
  checkCrc = true,
): number {
  let i = start;
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  while (end - i >= HEADER + 4) {
    if (v.getUint32(i) !== MAGIC) throw new SyntaxError(`Cannot read frame at ${i}: bad magic`);
    const len = v.getUint32(i + 4);
    const total = HEADER + len + 4;
    if (end - i < total) break;
    if (!checkCrc || crc32(buf, i, i + HEADER + len) === v.getUint32(i + HEADER + len)) {
      onFrame(buf[i + 8], buf[i + 9], v.getUint32(i + 10), buf, i + HEADER, i + HEADER + len);
    }
    i += total;
  }
  return i;
}
