/**
 * A WebSocket (RFC 6455) seen as a byte stream: the server side of the framing over an accepted
 * TCP or TLS connection, so a stream protocol (MQTT, OASIS MQTT 5.0 §6) reads and writes the bytes
 * of binary messages as if the socket were plain TCP. It is a translator and nothing more: it owns
 * frames, masking, control frames and the closing handshake, and knows no MQTT.
 *
 * Reading is a streaming state machine over the caller's buffer: a frame's payload is unmasked and
 * handed on as its bytes arrive, never buffered whole, so frame boundaries mean nothing to the
 * reader (a packet may span frames and a frame may hold several packets, MQTT 5.0 §6.0 /
 * [MQTT-6.0.0-2]), a frame costs no memory whatever its size, and an idle connection holds only a
 * few numbers and at most 13 bytes of a split frame header. The caller's read is the socket read:
 * a reader that stops reading stops the socket (backpressure). Writes wrap each buffer in one
 * binary frame, in order with the control frames the connection answers itself.
 *
 * Every frame is checked before its payload is taken, and a bad one closes the connection with the
 * code RFC 6455 §7.4.1 gives ({@link WsFrameError}): reserved bits, an unmasked client frame, an
 * unknown opcode, a fragmented or long control frame, a continuation with nothing to continue or a
 * new message inside a fragmented one (1002), a text frame (1003, [MQTT-6.0.0-1]), a frame longer
 * than `maxFrameSize` (1009). Closing follows §7: our Close frame, then the write side is shut
 * (`closeWrite`: the peer reads the Close before any reset) and the peer's Close or end of stream
 * is awaited for at most `closeTimeoutMs` before the socket is closed; a peer's Close is answered
 * with the same code and the socket closed.
 *
 * @module
 */

import { type Clock, systemClock, type TimerHandle } from "../core/clock.ts";
import type { CloseReason } from "../core/registry.ts";
import { isClosedError } from "./closed_error.ts";
import type { StreamConn, TransportCredentials } from "./stream_conn.ts";

/** Close codes of RFC 6455 §7.4.1 used here. */
export const WsCloseCode = Object.freeze({
  /** The purpose of the connection is fulfilled. */
  Normal: 1000,
  /** The server is going down. */
  GoingAway: 1001,
  /** A protocol error. */
  ProtocolError: 1002,
  /** A type of data the endpoint cannot accept (a text frame for MQTT). */
  UnsupportedData: 1003,
  /** Data inconsistent with its type (a Close reason that is not UTF-8). */
  InvalidPayload: 1007,
  /** A message that violates the endpoint's policy. */
  PolicyViolation: 1008,
  /** A message too big to process. */
  MessageTooBig: 1009,
  /** An unexpected condition on the server. */
  InternalError: 1011,
});

/**
 * A frame the connection refuses: `code` is the RFC 6455 close code sent, `offset` the byte
 * offset of the frame in the stream (counted from the first byte after the handshake).
 */
export class WsFrameError extends SyntaxError {
  override name = "WsFrameError";
  /** Close code sent to the peer. */
  readonly code: number;
  /** Stream offset of the refused frame. */
  readonly offset: number;
  /** Creates the error. */
  constructor(message: string, code: number, offset: number) {
    super(message);
    this.code = code;
    this.offset = offset;
  }
}

/**
 * The close code for a connection closed for `reason` (no reason: the protocol ended normally, a
 * DISCONNECT or a refused CONNECT whose reason the protocol itself sent).
 *
 * @example
 * ```ts
 * import { wsCloseCode } from "./ws_conn.ts";
 * if (wsCloseCode({ code: "shutting_down", message: "" }) !== 1001) throw new Error();
 * if (wsCloseCode() !== 1000) throw new Error();
 * ```
 */
export function wsCloseCode(reason?: CloseReason): number {
  switch (reason?.code) {
    case undefined:
    case "taken_over":
    case "keepalive_timeout":
    case "administrative":
      return WsCloseCode.Normal;
    case "shutting_down":
      return WsCloseCode.GoingAway;
    case "protocol_error":
      return WsCloseCode.ProtocolError;
    case "slow_consumer":
    case "removed":
      return WsCloseCode.PolicyViolation;
  }
}

/** Tunables of {@link WsConn}, shared by every connection of a listener. */
export interface WsConnOptions {
  /** Longest data frame accepted, bytes; a longer one is refused with 1009. @default 268435460 */
  maxFrameSize?: number;
  /** How long to wait for the peer's Close after ours before closing the socket. @default 3000 */
  closeTimeoutMs?: number;
  /** Time source of the close timeout. @default systemClock */
  clock?: Clock;
  /** Called when a frame is refused (for the log), before the Close frame goes out. */
  onFrameError?: (err: WsFrameError, conn: WsConn) => void;
  /** Called once the socket is closed. */
  onClosed?: (conn: WsConn) => void;
}

/** What a connection starts with besides its socket. */
export interface WsConnInit {
  /** Shared tunables. */
  options: WsConnOptions;
  /** Bytes read past the handshake (the first frames, if the client sent them at once). */
  head?: Uint8Array;
  /** Credentials the upgrade request carried. */
  credentials?: TransportCredentials;
}

const OPEN = 0; // frames flow both ways
const CLOSING = 1; // our Close is sent; waiting for the peer's Close or end of stream
const CLOSED = 2; // the closing handshake is done (or the socket failed): the socket is closed

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

/** Largest frame payload the MQTT remaining-length can carry, plus its fixed header. */
const MAX_FRAME = 268_435_460;
/** A payload up to this is copied after its header (one write); a larger one is written apart. */
const COPY_MAX = 65_536;
/** Scratch buffer of the drain after our Close. */
const DRAIN_BUFFER = 512;

const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Throws the {@link WsFrameError} refusing the frame at stream offset `at`. */
function fail(at: number, why: string, code: number = WsCloseCode.ProtocolError): never {
  throw new WsFrameError(`Cannot accept frame: ${why}`, code, at);
}

/** `x` rotated left by `bytes` bytes (the mask key of the byte `bytes` further on). */
function rotateMask(x: number, bytes: number): number {
  const s = (bytes & 3) * 8;
  return s === 0 ? x : ((x << s) | (x >>> (32 - s))) >>> 0;
}

/** A DataView of the last buffer unmasked (reads reuse their buffer: one view per buffer). */
let wordsOf: ArrayBufferLike | undefined;
let words: DataView | undefined;

/**
 * Unmasks `n` bytes at `from` into `to` (`to <= from`, same buffer) with `mask` (the key of the
 * first byte in its top byte); returns the mask for the byte after. Four bytes at a time (a
 * big-endian word XOR the mask, unaligned through a DataView), the tail byte by byte: half the
 * time of the byte loop for MQTT-sized frames.
 */
function unmaskMove(buf: Uint8Array, from: number, to: number, n: number, mask: number): number {
  const end4 = from + (n & ~3);
  let i = from, o = to;
  if (n >= 8) {
    const b = buf.buffer;
    if (wordsOf !== b) {
      wordsOf = b;
      words = new DataView(b);
    }
    const w = words!;
    const base = buf.byteOffset;
    for (; i < end4; i += 4, o += 4) w.setUint32(base + o, w.getUint32(base + i) ^ mask);
  } else {
    const k0 = mask >>> 24, k1 = (mask >>> 16) & 255, k2 = (mask >>> 8) & 255, k3 = mask & 255;
    for (; i < end4; i += 4, o += 4) {
      buf[o] = buf[i] ^ k0;
      buf[o + 1] = buf[i + 1] ^ k1;
      buf[o + 2] = buf[i + 2] ^ k2;
      buf[o + 3] = buf[i + 3] ^ k3;
    }
  }
  const rest = n & 3;
  if (rest > 0) buf[o] = buf[i] ^ (mask >>> 24);
  if (rest > 1) buf[o + 1] = buf[i + 1] ^ ((mask >>> 16) & 255);
  if (rest > 2) buf[o + 2] = buf[i + 2] ^ ((mask >>> 8) & 255);
  return rotateMask(mask, n);
}

/** The header of a server frame (unmasked, FIN set) carrying `length` bytes. */
function frameHeader(op: number, length: number): Uint8Array {
  if (length < 126) return new Uint8Array([0x80 | op, length]);
  if (length < 65_536) return new Uint8Array([0x80 | op, 126, length >>> 8, length & 255]);
  const h = new Uint8Array(10);
  h[0] = 0x80 | op;
  h[1] = 127;
  new DataView(h.buffer).setBigUint64(2, BigInt(length));
  return h;
}

/**
 * A frame of `op` with `payload`, as the bytes to write (one buffer up to {@link COPY_MAX}).
 *
 * @example
 * ```ts
 * import { encodeFrame } from "./ws_conn.ts";
 * const [f] = encodeFrame(0x2, new Uint8Array([0xc0, 0x00])); // a binary frame holding PINGREQ
 * if (f.join() !== "130,2,192,0") throw new Error(f.join());
 * ```
 */
export function encodeFrame(op: number, payload: Uint8Array): Uint8Array[] {
  const n = payload.length;
  if (n >= COPY_MAX) return [frameHeader(op, n), payload];
  // One allocation: the header written in place before the payload.
  const h = n < 126 ? 2 : 4;
  const out = new Uint8Array(h + n);
  out[0] = 0x80 | op;
  if (h === 2) out[1] = n;
  else {
    out[1] = 126;
    out[2] = n >>> 8;
    out[3] = n & 255;
  }
  out.set(payload, h);
  return [out];
}

/**
 * The payload of a Close frame: `code`, then `reason` cut to the 123 bytes a control frame leaves
 * (at a character boundary).
 */
function closePayload(code: number, reason: string): Uint8Array {
  let text = encoder.encode(reason);
  if (text.length > 123) {
    let end = 123;
    while (end > 0 && (text[end] & 0xc0) === 0x80) end--; // not inside a UTF-8 sequence
    text = text.subarray(0, end);
  }
  const out = new Uint8Array(2 + text.length);
  out[0] = code >>> 8;
  out[1] = code & 255;
  out.set(text, 2);
  return out;
}

/** RFC 6455 §7.4: codes a peer may send in a Close frame. */
function validPeerCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/**
 * A WebSocket over `conn`, after a successful opening handshake, as a {@link StreamConn} of the
 * bytes of its binary messages.
 *
 * @example
 * ```ts
 * import { WsConn } from "./ws_conn.ts";
 * // A masked binary frame "hi" (mask 1,2,3,4), then the socket ends.
 * const bytes = [new Uint8Array([0x82, 0x82, 1, 2, 3, 4, 0x68 ^ 1, 0x69 ^ 2])];
 * const tcp = {
 *   remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 } as Deno.NetAddr,
 *   read: (p: Uint8Array) => {
 *     const b = bytes.shift();
 *     if (!b) return Promise.resolve(null);
 *     p.set(b);
 *     return Promise.resolve(b.length);
 *   },
 *   write: (p: Uint8Array) => Promise.resolve(p.length),
 *   close: () => {},
 * };
 * const ws = new WsConn(tcp, { options: {} });
 * const buf = new Uint8Array(64);
 * const n = await ws.read(buf);
 * if (new TextDecoder().decode(buf.subarray(0, n!)) !== "hi") throw new Error();
 * if (await ws.read(buf) !== null) throw new Error("not ended");
 * ```
 */
export class WsConn implements StreamConn {
  #tcp: StreamConn;
  #opts: WsConnOptions;
  #credentials: TransportCredentials | undefined;
  #state = OPEN;
  // Read state (a frame's payload streams through; only a split header is kept).
  #head: Uint8Array | undefined; // bytes to parse before reading the socket again
  #headSplit = false; // `#head` is an incomplete frame header: read more after it
  #remaining = 0; // payload bytes of the current frame not yet read
  #mask = 0; // masking key of the next payload byte (in the top byte)
  #fragmented = false; // a data message is open (its last frame not seen)
  #control: Uint8Array | undefined; // payload of the control frame being read
  #controlOp = 0;
  #controlAt = 0;
  #offset = 0; // stream offset of the byte at index 0 of the buffer being parsed
  #reading = false;
  #draining = false;
  /** Bytes the last read took from the socket (what sizes the reader's next buffer). */
  lastReadSize = 0;
  // Write state.
  #writing: Promise<void> | undefined; // the last write in flight (writes are chained)
  #closeTimer: TimerHandle | undefined;
  #destroyed = false;

  /** Wraps `conn`, whose opening handshake has completed. */
  constructor(conn: StreamConn, init: WsConnInit) {
    this.#tcp = conn;
    this.#opts = init.options;
    this.#credentials = init.credentials;
    if (init.head && init.head.length > 0) this.#head = init.head;
  }

  /** The peer's address (the TCP peer's). */
  get remoteAddr(): Deno.Addr {
    return this.#tcp.remoteAddr;
  }

  /** True once closing has begun (ours or the peer's Close, an error, or the socket's end). */
  get closing(): boolean {
    return this.#state !== OPEN;
  }

  /** Hands over the upgrade's credentials, once. */
  takeCredentials(): TransportCredentials | undefined {
    const c = this.#credentials;
    this.#credentials = undefined;
    return c;
  }

  /**
   * Reads the next bytes of binary messages into `p` (at least 14 bytes long, the largest frame
   * header); `null` once the WebSocket is closing or closed.
   */
  async read(p: Uint8Array): Promise<number | null> {
    if (this.#state !== OPEN || this.#reading) return null;
    if (p.length < 14) {
      throw new RangeError(`Cannot read a WebSocket into ${p.length} bytes: 14 at least`);
    }
    this.#reading = true;
    try {
      for (;;) {
        // One async frame while idle: the socket read is awaited here, not in a helper.
        let len = this.#takeHead(p);
        if (len < 0) {
          len = ~len;
          let n: number | null;
          try {
            n = await this.#tcp.read(len === 0 ? p : p.subarray(len));
          } catch (err) {
            if (!isClosedError(err)) throw err;
            n = null;
          }
          if (n === null) return this.#ended();
          len += n;
        }
        this.lastReadSize = len;
        const out = this.#parse(p, len);
        if (this.#state === OPEN) {
          if (out > 0) return out;
          continue;
        }
        // Closing: the bytes before the Close (or the bad frame) still go to the reader; the
        // drain waits for the peer's Close from here on.
        this.#reading = false;
        this.#startDrain();
        return out > 0 ? out : null;
      }
    } finally {
      this.#reading = false;
    }
  }

  /**
   * Moves saved bytes to the front of `p`: their count, or its complement (`~count`, negative)
   * when the socket must be read after them (nothing saved, or only a split frame header).
   */
  #takeHead(p: Uint8Array): number {
    const head = this.#head;
    if (!head) return ~0;
    const len = Math.min(head.length, p.length);
    p.set(head.subarray(0, len));
    this.#head = len < head.length ? head.subarray(len) : undefined;
    const split = this.#headSplit;
    this.#headSplit = false;
    return split ? ~len : len; // whole frames saved by the handshake: parse them first
  }

  /**
   * The socket ended: after our Close it is the peer's answer; before, the peer went away without
   * one (RFC 6455 §7.1.5: 1006, nothing to send). Closes it.
   */
  #ended(): null {
    this.#destroy();
    return null;
  }

  /**
   * Parses `len` bytes of `p`: the payload of data frames is unmasked and moved to the front of
   * `p`; returns its length. Control frames are answered here. A refused frame starts our Close.
   */
  #parse(p: Uint8Array, len: number): number {
    let i = 0;
    let out = 0;
    try {
      while (i < len) {
        if (this.#remaining > 0) {
          const k = Math.min(this.#remaining, len - i);
          const control = this.#control;
          if (control) {
            this.#mask = unmaskMove(p, i, i, k, this.#mask);
            control.set(p.subarray(i, i + k), this.#controlAt);
            this.#controlAt += k;
          } else if (this.#state === OPEN) {
            this.#mask = unmaskMove(p, i, out, k, this.#mask);
            out += k;
          } else this.#mask = rotateMask(this.#mask, k); // closing: data is dropped
          i += k;
          this.#remaining -= k;
          if (this.#remaining === 0 && control) this.#controlDone();
          continue;
        }
        const h = this.#header(p, i, len);
        if (h === 0) break; // split header: saved for the next read
        i += h;
        if (this.#remaining === 0 && this.#control) this.#controlDone(); // empty control frame
      }
    } catch (err) {
      if (!(err instanceof WsFrameError)) throw err;
      this.#refuse(err);
      i = len;
    }
    this.#offset += i;
    return out;
  }

  /**
   * Reads and checks the frame header at `i`; returns its length, or 0 when it is not all there
   * yet (the bytes are saved). Throws {@link WsFrameError} for a frame to refuse.
   */
  #header(p: Uint8Array, i: number, len: number): number {
    const avail = len - i;
    const at = this.#offset + i;
    if (avail >= 2) {
      const b0 = p[i], b1 = p[i + 1];
      const fin = (b0 & 0x80) !== 0;
      const op = b0 & 0x0f;
      const len7 = b1 & 0x7f;
      if ((b0 & 0x70) !== 0) {
        fail(at, "reserved bits set with no extension negotiated (RFC 6455 §5.2)");
      }
      if ((b1 & 0x80) === 0) fail(at, "a client frame must be masked (RFC 6455 §5.1)");
      const isControl = (op & 0x08) !== 0;
      if (isControl) {
        if (op !== OP_CLOSE && op !== OP_PING && op !== OP_PONG) fail(at, `unknown opcode ${op}`);
        if (!fin) fail(at, "a control frame must not be fragmented (RFC 6455 §5.5)");
        if (len7 > 125) {
          fail(at, `control frame payload of ${len7} bytes exceeds 125 (RFC 6455 §5.5)`);
        }
      } else if (op === OP_TEXT) {
        fail(
          at,
          "MQTT over WebSocket takes binary frames only, got a text frame [MQTT-6.0.0-1]",
          WsCloseCode.UnsupportedData,
        );
      } else if (op === OP_CONTINUATION) {
        if (!this.#fragmented) fail(at, "a continuation frame with no message to continue (§5.4)");
      } else if (op === OP_BINARY) {
        if (this.#fragmented) fail(at, "a new message inside a fragmented one (RFC 6455 §5.4)");
      } else fail(at, `unknown opcode ${op}`);
      const ext = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
      const size = 2 + ext + 4;
      if (avail >= size) {
        let length = len7;
        if (ext === 2) length = (p[i + 2] << 8) | p[i + 3];
        else if (ext === 8) {
          const hi = ((p[i + 2] << 24) | (p[i + 3] << 16) | (p[i + 4] << 8) | p[i + 5]) >>> 0;
          const lo = ((p[i + 6] << 24) | (p[i + 7] << 16) | (p[i + 8] << 8) | p[i + 9]) >>> 0;
          if (hi >= 0x80000000) fail(at, "64-bit length with its top bit set (RFC 6455 §5.2)");
          length = hi * 0x1_0000_0000 + lo;
        }
        const max = this.#opts.maxFrameSize ?? MAX_FRAME;
        if (length > max) {
          fail(at, `length ${length} exceeds the ${max} byte limit`, WsCloseCode.MessageTooBig);
        }
        const m = i + 2 + ext;
        this.#mask = ((p[m] << 24) | (p[m + 1] << 16) | (p[m + 2] << 8) | p[m + 3]) >>> 0;
        this.#remaining = length;
        if (isControl) {
          this.#controlOp = op;
          this.#control = new Uint8Array(length);
          this.#controlAt = 0;
        } else this.#fragmented = !fin;
        return size;
      }
    }
    // Not all there: keep it (at most 13 bytes) in front of what comes next.
    const part = p.slice(i, len);
    if (this.#head) { // more saved bytes follow (a handshake's head larger than the buffer)
      const joined = new Uint8Array(part.length + this.#head.length);
      joined.set(part);
      joined.set(this.#head, part.length);
      this.#head = joined;
    } else {
      this.#head = part;
      this.#headSplit = true;
    }
    return 0;
  }

  /** A whole control frame was read: answer a Ping, finish on a Close. */
  #controlDone(): void {
    const payload = this.#control!;
    const op = this.#controlOp;
    this.#control = undefined;
    if (op === OP_PING) {
      if (this.#state === OPEN) this.#send(OP_PONG, payload).catch(() => this.#destroy());
      return;
    }
    if (op !== OP_CLOSE) return; // Pong: nothing to do
    if (this.#state === CLOSING) { // the answer to our Close: done
      this.#destroy();
      return;
    }
    // The peer closes: answer with its code (RFC 6455 §5.5.1), then close the socket.
    let code: number = WsCloseCode.Normal;
    let reply: Uint8Array = new Uint8Array(0);
    if (payload.length === 1) {
      code = WsCloseCode.ProtocolError;
      reply = closePayload(code, "Cannot accept Close: a 1-byte payload (RFC 6455 §5.5.1)");
    } else if (payload.length >= 2) {
      code = (payload[0] << 8) | payload[1];
      let ok = validPeerCode(code);
      if (ok) {
        try {
          strictUtf8.decode(payload.subarray(2));
        } catch {
          ok = false;
          code = WsCloseCode.InvalidPayload;
          reply = closePayload(code, "Cannot accept Close: its reason is not UTF-8");
        }
      } else {
        reply = closePayload(
          WsCloseCode.ProtocolError,
          `Cannot accept Close: code ${code} is not one a peer may send (RFC 6455 §7.4)`,
        );
        code = WsCloseCode.ProtocolError;
      }
      if (ok) reply = closePayload(code, "");
    }
    this.#state = CLOSED;
    this.#send(OP_CLOSE, reply).then(() => this.#destroy(), () => this.#destroy());
    this.#armCloseTimer(); // a peer that does not read our answer: bounded
  }

  /** Refuses a frame: tells the owner (the log), then closes with the error's code. */
  #refuse(err: WsFrameError): void {
    if (this.#state !== OPEN) return;
    this.#opts.onFrameError?.(err, this);
    this.#startClose(err.code, err.message);
  }

  /** Writes `p` as one binary frame; resolves to its length once written. */
  write(p: Uint8Array): Promise<number> {
    if (this.#state !== OPEN) {
      return Promise.reject(new Deno.errors.BadResource("Cannot write: the WebSocket is closing"));
    }
    return this.#send(OP_BINARY, p).then(() => p.length);
  }

  /** Queues a frame after the write in flight (frames never interleave on the socket). */
  #send(op: number, payload: Uint8Array): Promise<void> {
    const parts = encodeFrame(op, payload);
    const prev = this.#writing;
    const run = prev ? prev.then(() => this.#writeAll(parts)) : this.#writeAll(parts);
    const settled: Promise<void> = run.then(() => {}, () => {});
    this.#writing = settled;
    settled.then(() => {
      if (this.#writing === settled) this.#writing = undefined;
    });
    return run;
  }

  async #writeAll(parts: Uint8Array[]): Promise<void> {
    for (const b of parts) {
      let off = 0;
      while (off < b.length) off += await this.#tcp.write(off === 0 ? b : b.subarray(off));
    }
  }

  /**
   * Starts the closing handshake (RFC 6455 §7.1.2): a Close frame with the code for `reason`
   * (see {@link wsCloseCode}) and its message. Idempotent; the socket closes once the peer answers
   * or after `closeTimeoutMs`.
   */
  close(reason?: CloseReason): void {
    if (this.#state !== OPEN) return;
    this.#startClose(wsCloseCode(reason), reason?.message ?? "");
  }

  #startClose(code: number, why: string): void {
    this.#state = CLOSING;
    this.#armCloseTimer();
    this.#send(OP_CLOSE, closePayload(code, why)).then(() => {
      // Our Close is out: shut the write side so the peer reads it, and not a reset, even when
      // it still has data in flight towards us.
      try {
        // A promise on Deno (rejected when the socket closed meanwhile), void on others.
        const done = (this.#tcp as { closeWrite?(): Promise<void> | void }).closeWrite?.();
        done?.catch(() => {});
      } catch { /* closed */ }
    }, () => this.#destroy());
    if (!this.#reading) this.#startDrain();
  }

  #armCloseTimer(): void {
    if (this.#closeTimer !== undefined) return;
    const clock = this.#opts.clock ?? systemClock;
    this.#closeTimer = clock.setTimeout(() => {
      this.#closeTimer = undefined;
      this.#destroy();
    }, this.#opts.closeTimeoutMs ?? 3000);
  }

  /** Reads (and drops) what the peer still sends until its Close or end of stream. */
  #startDrain(): void {
    if (this.#draining || this.#state !== CLOSING) return;
    this.#draining = true;
    (async () => {
      const buf = new Uint8Array(DRAIN_BUFFER);
      try {
        while (this.#state === CLOSING) {
          let len = this.#takeHead(buf);
          if (len < 0) {
            len = ~len;
            const n = await this.#tcp.read(buf.subarray(len));
            if (n === null) return void this.#ended();
            len += n;
          }
          this.#parse(buf, len);
        }
      } catch {
        this.#destroy();
      }
    })();
  }

  /** Closes the socket now (idempotent); the connection is over. */
  #destroy(): void {
    this.#state = CLOSED;
    if (this.#closeTimer !== undefined) {
      (this.#opts.clock ?? systemClock).clearTimeout(this.#closeTimer);
      this.#closeTimer = undefined;
    }
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#head = undefined;
    this.#control = undefined;
    try {
      this.#tcp.close();
    } catch { /* already closed */ }
    this.#opts.onClosed?.(this);
  }
}
