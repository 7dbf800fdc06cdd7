/**
 * Stream codec for FBP/1: bytes ⇄ {@link Frame}s.
 *
 * - {@link FrameParser} is the synchronous core: an explicit HEADER → BODY state machine that takes
 *   chunks split at any byte boundary, with many frames per chunk, and enforces the payload cap as
 *   soon as the length field is read, before buffering a single payload byte.
 * - {@link FrameDecoder} wraps it as a `TransformStream<Uint8Array, Frame[]>`: the device client
 *   pipes its socket through it. The gateway's sessions call the parser on each read directly
 *   (`src/net/chunk_reader.ts` says why). Outgoing frames are encoded straight into the
 *   connection's writer (`encodeFrameInto`): no stream step per frame on the way out.
 *
 * The codec checks framing only (magic, length cap, CRC). Unknown types, reserved flags and body
 * syntax are the session's business (ERROR 4/6, see `docs/binary-protocol.md`), so the decoder
 * emits frames of any type and flags.
 *
 * @module
 */

import { ParserStream } from "../../net/parser_stream.ts";
import { crc32, crc32Range } from "./crc32.ts";
import {
  ErrorCode,
  type Frame,
  FrameSyntaxError,
  HEADER_SIZE,
  MAGIC,
  TRAILER_SIZE,
} from "./frame.ts";

export { FrameSyntaxError };
export type { FrameSyntaxErrorOptions } from "./frame.ts";

/** Default payload cap in bytes (64 KiB). [FBP-2-2] */
export const DEFAULT_MAX_PAYLOAD = 65_536;

/** The magic as bytes, for checking it one byte at a time. */
const MAGIC_BYTES = new Uint8Array([
  MAGIC >>> 24,
  (MAGIC >>> 16) & 0xff,
  (MAGIC >>> 8) & 0xff,
  MAGIC & 0xff,
]);

/** Tunables of {@link FrameParser}. */
export interface FrameParserOptions {
  /**
   * Largest accepted payload in bytes, an integer in `0..0xFFFFFFFF`. A frame declaring more is
   * rejected (ERROR 2, fatal) as soon as its length field is read. [FBP-2-2]
   * @default 65536
   */
  maxPayload?: number;
  /**
   * Called for each non-fatal error (a frame with a bad CRC, code 3) after the frame was consumed
   * and dropped; parsing continues with the next frame. It runs synchronously while the chunk is
   * parsed, in stream order with the `onFrame` calls of {@link FrameParser.parse}.
   * @default ignore the error
   */
  onError?: (err: FrameSyntaxError) => void;
  /**
   * The gateway's payload budget: a frame larger than `reserveAbove` that arrives over several
   * reads takes its size from it before its payload is buffered, and gives it back once whole. A
   * frame that does not fit is read and dropped unbuffered and reported to `onError` with code 11
   * (OVERLOADED, non-fatal). [FBP-2-7]
   */
  budget?: { tryTake(n: number): boolean; give(n: number): void };
  /** Frames above this payload size are reserved in `budget`, bytes. @default 16384 */
  reserveAbove?: number;
  /**
   * Stream offset of the first byte this parser sees (a parser that takes over at a frame
   * boundary from an earlier one reports the same offsets), bytes. @default 0
   */
  offset?: number;
}

/** Tunables of {@link FrameDecoder}. */
export interface FrameDecoderOptions {
  /**
   * The parser to run (its state, a partial frame, carries over from earlier reads).
   * @default a new parser with `maxPayload`
   */
  parser?: FrameParser;
  /**
   * Largest accepted payload in bytes, an integer in `0..0xFFFFFFFF`. A frame declaring more
   * errors the stream (ERROR 2, fatal) as soon as its length field is read. [FBP-2-2]
   * @default 65536
   */
  maxPayload?: number;
  /**
   * Called for each dropped frame with a bad CRC (code 3, non-fatal), in stream order: after the
   * reader has read every frame that preceded the bad one, before the next frame is delivered.
   * @default ignore the error
   */
  onError?: (err: FrameSyntaxError) => void;
}

/** Shared empty payload (never written to). */
const EMPTY = new Uint8Array(0);

/** Parser states. */
const HEADER = 0;
const BODY = 1;

/**
 * Synchronous FBP/1 frame parser: feed it chunks, get frames.
 *
 * State machine:
 * - HEADER: collect the 14 header bytes. Each magic byte is checked as it arrives (bad magic is
 *   fatal); the length is checked against `maxPayload` as soon as its 4 bytes are in (too large is
 *   fatal). Then allocate the payload buffer at its exact size and go to BODY.
 * - BODY: collect payload and CRC, check the CRC over header + payload; emit the frame or report
 *   a non-fatal bad CRC through `onError`; go back to HEADER.
 *
 * A frame that lies wholly inside one chunk is parsed in place and its payload copied out once
 * (so frames do not pin the reader's larger chunk buffer); a frame split across chunks is
 * assembled straight into its own payload buffer. Besides that buffer, the parser holds at most 18
 * bytes (header and trailer scratch), so memory per connection is bounded by
 * `HEADER_SIZE + maxPayload + TRAILER_SIZE`.
 *
 * After a fatal error the parser is finished: every later call rethrows the same error.
 *
 * @example
 * ```ts
 * import { FrameParser } from "./codec.ts";
 * import { encodeFrame, FrameType } from "./frame.ts";
 * const bytes = encodeFrame({ type: FrameType.PING, flags: 0, seq: 1, payload: new Uint8Array() });
 * const parser = new FrameParser();
 * const first = parser.push(bytes.subarray(0, 5));
 * const rest = parser.push(bytes.subarray(5));
 * if (first.length !== 0 || rest.length !== 1 || rest[0].seq !== 1) throw new Error("bad");
 * parser.end();
 * ```
 */
export class FrameParser {
  #maxPayload: number;
  #onError: ((err: FrameSyntaxError) => void) | undefined;
  #callOnError: ((err: FrameSyntaxError) => void) | undefined; // given to the current parse()

  #state: typeof HEADER | typeof BODY = HEADER;
  /** Header scratch for a header split across chunks. */
  #header: Uint8Array | undefined; // scratch for a header split across chunks (made when needed)
  /** Trailer scratch for a CRC split across chunks. */
  #trailer: Uint8Array | undefined;
  /** Bytes of the current state's unit collected so far (header, or payload + trailer). */
  #have = 0;
  #length = 0;
  #type = 0;
  #flags = 0;
  #seq = 0;
  #payload: Uint8Array = EMPTY;
  /** Stream offset of the next byte to consume, and of the current frame's first byte. */
  #offset = 0;
  #frameStart = 0;
  #failed: FrameSyntaxError | undefined;
  #budget: FrameParserOptions["budget"];
  #reserveAbove: number;
  #reserved = 0; // payload bytes of the frame being assembled, taken from the budget
  #dropping = false; // the frame being read did not fit the budget: its bytes are skipped

  /** Creates a parser. @throws {RangeError} If `maxPayload` is not an integer in range. */
  constructor(options: FrameParserOptions = {}) {
    const maxPayload = options.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    if (!Number.isInteger(maxPayload) || maxPayload < 0 || maxPayload > 0xffffffff) {
      throw new RangeError(
        `Cannot create frame parser: maxPayload ${maxPayload} is not an integer in 0..0xFFFFFFFF`,
      );
    }
    this.#maxPayload = maxPayload;
    this.#onError = options.onError;
    this.#budget = options.budget;
    this.#reserveAbove = options.reserveAbove ?? 16_384;
    this.#offset = this.#frameStart = options.offset ?? 0;
  }

  /** Header and trailer scratch, made for a frame split across chunks and dropped after it. */
  #scratch(): Uint8Array {
    if (!this.#header) {
      const scratch = new Uint8Array(HEADER_SIZE + TRAILER_SIZE);
      this.#header = scratch.subarray(0, HEADER_SIZE);
      this.#trailer = scratch.subarray(HEADER_SIZE);
    }
    return this.#header;
  }

  /** Stream bytes consumed so far (including those of a partial frame). */
  get offset(): number {
    return this.#offset;
  }

  /** Bytes of a partial frame currently held; 0 at a frame boundary. */
  get buffered(): number {
    return this.#state === HEADER ? this.#have : HEADER_SIZE + this.#have;
  }

  /**
   * Parses `chunk` and returns the frames it completes, in order.
   *
   * If a fatal error occurs, frames completed earlier in the same chunk are discarded; use
   * {@link FrameParser.parse} to receive them before the error is thrown.
   *
   * @throws {FrameSyntaxError} On bad magic (code 1) or a too-large frame (code 2), both fatal.
   */
  push(chunk: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    this.parse(chunk, (frame) => frames.push(frame));
    return frames;
  }

  /**
   * Parses `chunk`, calling `onFrame` for each completed frame in order (and `onError` for each
   * dropped frame with a bad CRC, in stream order too). Frames before a fatal error are delivered
   * before the error is thrown.
   *
   * Emitted payloads never alias `chunk`: each frame owns an exact-size payload buffer.
   *
   * `onError`, when given, takes this call's CRC errors instead of the constructor's `onError`.
   *
   * @throws {FrameSyntaxError} On bad magic (code 1) or a too-large frame (code 2), both fatal.
   */
  parse(
    chunk: Uint8Array,
    onFrame: (frame: Frame) => void,
    onError?: (err: FrameSyntaxError) => void,
  ): void {
    this.#callOnError = onError;
    try {
      this.#parse(chunk, onFrame);
    } finally {
      this.#callOnError = undefined;
    }
  }

  #parse(chunk: Uint8Array, onFrame: (frame: Frame) => void): void {
    if (this.#failed) throw this.#failed;
    const end = chunk.length;
    let pos = 0;
    while (pos < end) {
      if (this.#state === HEADER) {
        // Fast path: a whole frame inside the chunk is parsed in place.
        if (this.#have === 0 && end - pos >= HEADER_SIZE + TRAILER_SIZE) {
          this.#frameStart = this.#offset;
          this.#checkMagic(chunk, pos, 0, 4);
          const length = readU32(chunk, pos + 4);
          this.#checkLength(length);
          const total = HEADER_SIZE + length + TRAILER_SIZE;
          if (end - pos >= total) {
            const bodyEnd = pos + HEADER_SIZE + length;
            this.#type = chunk[pos + 8];
            this.#flags = chunk[pos + 9];
            this.#seq = readU32(chunk, pos + 10);
            this.#length = length;
            const crc = crc32Range(chunk, pos, bodyEnd);
            const start = pos;
            pos += total;
            this.#offset += total;
            if (crc === readU32(chunk, bodyEnd)) {
              const payload = chunk.slice(start + HEADER_SIZE, bodyEnd);
              onFrame({ type: this.#type, flags: this.#flags, seq: this.#seq, payload });
            } else this.#badCrc(crc, readU32(chunk, bodyEnd));
            continue;
          }
        }
        // Slow path: collect the header byte-wise across chunks.
        if (this.#have === 0) this.#frameStart = this.#offset;
        const before = this.#have;
        const n = Math.min(HEADER_SIZE - before, end - pos);
        const header = this.#scratch();
        header.set(chunk.subarray(pos, pos + n), before);
        this.#have += n;
        this.#offset += n;
        pos += n;
        if (before < 4) this.#checkMagic(header, 0, before, Math.min(this.#have, 4));
        if (before < 8 && this.#have >= 8) this.#checkLength(readU32(header, 4));
        if (this.#have < HEADER_SIZE) break;
        this.#length = readU32(header, 4);
        this.#type = header[8];
        this.#flags = header[9];
        this.#seq = readU32(header, 10);
        this.#dropping = false;
        if (this.#budget && this.#length > this.#reserveAbove) {
          if (this.#budget.tryTake(this.#length)) this.#reserved = this.#length;
          else this.#dropping = true; // [FBP-2-7] read and dropped, nothing buffered
        }
        this.#payload = this.#dropping ? EMPTY : new Uint8Array(this.#length);
        this.#have = 0;
        this.#state = BODY;
      } else {
        // BODY: payload bytes, then the 4 CRC bytes.
        const length = this.#length;
        if (this.#have < length) {
          const n = Math.min(length - this.#have, end - pos);
          if (!this.#dropping) this.#payload.set(chunk.subarray(pos, pos + n), this.#have);
          this.#have += n;
          this.#offset += n;
          pos += n;
          continue;
        }
        const got = this.#have - length;
        const n = Math.min(TRAILER_SIZE - got, end - pos);
        this.#trailer!.set(chunk.subarray(pos, pos + n), got);
        this.#have += n;
        this.#offset += n;
        pos += n;
        if (got + n < TRAILER_SIZE) break;
        const payload = this.#payload;
        this.#state = HEADER;
        this.#have = 0;
        this.#payload = EMPTY;
        this.release();
        if (this.#dropping) {
          this.#dropping = false;
          this.#header = this.#trailer = undefined;
          this.#report(
            new FrameSyntaxError(
              `Cannot take frame seq ${this.#seq}: its ${length} bytes exceed the gateway's free payload budget`,
              {
                offset: this.#frameStart,
                code: ErrorCode.OVERLOADED,
                seq: this.#seq,
                flags: this.#flags,
              },
            ),
          );
          continue;
        }
        const crc = crc32(payload, crc32(this.#header!));
        const expected = readU32(this.#trailer!, 0);
        this.#header = this.#trailer = undefined; // an idle connection keeps no scratch
        if (crc === expected) {
          onFrame({ type: this.#type, flags: this.#flags, seq: this.#seq, payload });
        } else this.#badCrc(crc, expected);
      }
    }
  }

  /**
   * Declares the end of the stream.
   *
   * @throws {FrameSyntaxError} (code 6, fatal) If the stream ended inside a frame. [FBP-2-6]
   */
  end(): void {
    if (this.#failed) throw this.#failed;
    const held = this.buffered;
    if (held === 0) return;
    const total = this.#state === BODY ? HEADER_SIZE + this.#length + TRAILER_SIZE : undefined;
    throw this.#fail(
      new FrameSyntaxError(
        `Cannot decode frame: stream ended ${held} bytes into a ${
          total === undefined ? "frame" : `${total} byte frame`
        }`,
        {
          offset: this.#offset,
          code: ErrorCode.BAD_PAYLOAD,
          fatal: true,
          seq: this.#state === BODY ? this.#seq : undefined,
        },
      ),
    );
  }

  /** Reports the current frame's bad CRC; the frame is dropped. [FBP-2-3] */
  #badCrc(computed: number, received: number): void {
    // [FBP-2-3] bad CRC: the whole frame is consumed; drop it and carry on with the next one.
    this.#report(
      new FrameSyntaxError(
        `Cannot accept frame: CRC 0x${hex32(received)} does not match the computed 0x${
          hex32(computed)
        }`,
        {
          offset: this.#frameStart + HEADER_SIZE + this.#length,
          code: ErrorCode.BAD_CRC,
          seq: this.#seq,
        },
      ),
    );
  }

  /** Reports a non-fatal error to this call's or the constructor's `onError`. */
  #report(err: FrameSyntaxError): void {
    (this.#callOnError ?? this.#onError)?.(err);
  }

  /** Gives back what a frame being assembled took from the budget (also when the connection ends). */
  release(): void {
    if (this.#reserved === 0) return;
    this.#budget?.give(this.#reserved);
    this.#reserved = 0;
  }

  /** [FBP-2-1] Checks `bytes[at + from, at + to)` against magic bytes `from..to`. */
  #checkMagic(bytes: Uint8Array, at: number, from: number, to: number): void {
    for (let i = from; i < to; i++) {
      if (bytes[at + i] !== MAGIC_BYTES[i]) {
        throw this.#fail(
          new FrameSyntaxError(
            `Cannot decode frame: byte 0x${bytes[at + i].toString(16).padStart(2, "0")} at ` +
              `offset ${this.#frameStart + i} does not match the magic 0x${hex32(MAGIC)}`,
            { offset: this.#frameStart + i, code: ErrorCode.BAD_MAGIC, fatal: true },
          ),
        );
      }
    }
  }

  /** [FBP-2-2] Rejects a declared length over the cap before any payload byte is buffered. */
  #checkLength(length: number): void {
    if (length > this.#maxPayload) {
      throw this.#fail(
        new FrameSyntaxError(
          `Cannot accept frame: length ${length} exceeds the ${this.#maxPayload} byte limit`,
          { offset: this.#frameStart + 4, code: ErrorCode.FRAME_TOO_LARGE, fatal: true },
        ),
      );
    }
  }

  #fail(err: FrameSyntaxError): FrameSyntaxError {
    this.#failed = err;
    this.#payload = EMPTY;
    return err;
  }
}

function readU32(bytes: Uint8Array, at: number): number {
  return ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, "0");
}

/**
 * Decodes a byte stream into batches of {@link Frame}s: one batch per chunk that completes any
 * (one stream step per read), in order. The device client (`client.ts`) pipes its socket through
 * it; it is built from a {@link FrameParser} (optionally one the caller keeps).
 *
 * Framing errors: bad magic and a too-large frame error the stream with a fatal
 * {@link FrameSyntaxError} (send ERROR `err.code`, then close); a frame with a bad CRC is dropped,
 * reported to `onError` (send ERROR 3, keep the connection) and decoding goes on. A stream that
 * ends inside a frame errors with a fatal `FrameSyntaxError` of code 6. Errors keep their place in
 * the stream (see `src/net/parser_stream.ts`): frames before an error are read first, then
 * `onError` runs or the readable errors; the writable errors with the same fatal error once the
 * reader has reached it.
 *
 * @example
 * ```ts
 * import { FrameDecoder } from "./codec.ts";
 * import { encodeFrame, FrameType } from "./frame.ts";
 * const ping = encodeFrame({ type: FrameType.PING, flags: 0, seq: 9, payload: new Uint8Array() });
 * const batches = await Array.fromAsync(
 *   ReadableStream.from([ping.subarray(0, 3), ping.subarray(3)]).pipeThrough(new FrameDecoder()),
 * );
 * const frames = batches.flat();
 * if (frames.length !== 1 || frames[0].type !== FrameType.PING || frames[0].seq !== 9) {
 *   throw new Error("bad");
 * }
 * ```
 */
export class FrameDecoder extends ParserStream<Frame, FrameSyntaxError> {
  /** Creates a decoder. @throws {RangeError} If `maxPayload` is out of range. */
  constructor(options: FrameDecoderOptions = {}) {
    super(options.parser ?? new FrameParser({ maxPayload: options.maxPayload }), {
      onError: options.onError,
      isParseError: (err) => err instanceof FrameSyntaxError,
    });
  }
}
