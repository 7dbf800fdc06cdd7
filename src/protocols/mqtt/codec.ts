/**
 * The MQTT codec of one connection. {@link MqttFrameDecoder} is the synchronous parser: framing
 * (fixed header, Remaining Length) is an explicit state machine, so the size cap applies before
 * anything is buffered; each complete frame is then decoded by `npm:mqtt-packet` (or the fast path
 * for the hot packets and a plain 3.1.1 CONNECT), and checked for the rules mqtt-packet does not enforce (UTF-8, duplicate
 * and misplaced properties). A connection hands it each read's bytes and handles the packets in the
 * same step (`src/net/chunk_reader.ts` says why MQTT takes no stream step per read). Packets out
 * are encoded with {@link encodePacket} or the fast encoder straight into the connection's writer.
 *
 * `npm:mqtt-packet` (and the Node compatibility layer it brings, about a third of the gateway's
 * start-up CPU) is imported by {@link loadCodec}, not at start: a connection loads it before it
 * decodes anything but a plain 3.1.1 CONNECT (clean session, no will), whose CONNACK is encoded
 * here too (docs/operations.md, "Start-up").
 *
 * @module
 */

import type { Packet } from "mqtt-packet";
import { Buffer } from "node:buffer";
import { MqttMalformedError, MqttProtocolError } from "./errors.ts";
import { ReasonCode } from "./reason_codes.ts";
import { checkPacketStrings } from "./utf8.ts";
import { fastConnect, fastDecode } from "./_fast_codec.ts";
import { connectLevel, type ScanResult, strictScan } from "./_strict_scan.ts";

type MqttPacket = Pick<typeof import("mqtt-packet"), "parser" | "generate">;

let mqttPacket: MqttPacket | undefined;
let loading: Promise<void> | undefined;

/**
 * Imports `npm:mqtt-packet` (once); until it has resolved, only a plain 3.1.1 CONNECT can be
 * decoded and only a 3.1/3.1.1 CONNACK, PUBLISH without properties, the acks and PINGRESP encoded.
 *
 * @example
 * ```ts
 * import { codecLoaded, loadCodec } from "./codec.ts";
 * await loadCodec();
 * if (!codecLoaded()) throw new Error();
 * ```
 */
export function loadCodec(): Promise<void> {
  return loading ??= import("mqtt-packet").then((m) => {
    // A CommonJS package: its exports are the default export.
    mqttPacket = (m as unknown as { default: MqttPacket }).default;
    // The first parser and the first encode load more of Node's compatibility layer (streams):
    // done here, not in the first SUBSCRIBE after start-up (it took 60-150 ms there).
    sharedParser();
    mqttPacket.generate({ cmd: "pingresp" } as Packet);
  }, (err) => {
    loading = undefined; // a later call tries again
    throw err;
  });
}

/** Whether {@link loadCodec} has resolved. */
export function codecLoaded(): boolean {
  return mqttPacket !== undefined;
}

function codec(): MqttPacket {
  if (mqttPacket === undefined) {
    throw new Error("Cannot use the MQTT codec: npm:mqtt-packet is not loaded (await loadCodec())");
  }
  return mqttPacket;
}

/** MQTT protocol levels: 3 = 3.1, 4 = 3.1.1, 5 = 5.0. */
export type ProtocolVersion = 3 | 4 | 5;

/** Tunables of {@link MqttFrameDecoder}. */
export interface MqttDecoderOptions {
  /** Largest whole packet accepted, bytes. @default 268435455 */
  maxPacketSize?: number;
  /** Protocol level before a CONNECT is seen (clients decoding server packets). */
  protocolVersion?: ProtocolVersion;
  /**
   * The gateway's payload budget: a packet larger than `reserveAbove` takes its size from it before
   * a byte of it is buffered, and gives it back once whole. A packet that does not fit is refused
   * (0x97 Quota exceeded) rather than buffered.
   */
  budget?: { tryTake(n: number): boolean; give(n: number): void };
  /** Packets above this size are reserved in `budget`, bytes. @default 16384 */
  reserveAbove?: number;
}

const enum State {
  Header,
  Length,
  Body,
}

/**
 * The fixed-header flags 3.1.1 and 5.0 require for each packet type other than PUBLISH
 * ([MQTT-2.2.2-1]); mqtt-packet enforces them for every level.
 */
const REQUIRED_FLAGS = [0, 0, 0, 0, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0];

/**
 * An MQTT 3.1 frame as mqtt-packet accepts it. MQTT 3.1 (§2, §3) says the DUP, QoS and RETAIN bits
 * of packets other than PUBLISH are "not used" (and a PUBREL, SUBSCRIBE or UNSUBSCRIBE sent again
 * carries DUP 1), and bit 0 of the CONNECT flags is reserved without a rule: 3.1.1's
 * [MQTT-2.2.2-2] and [MQTT-3.1.2-3] do not apply, so those bits are ignored (on a copy).
 */
function as31(frame: Uint8Array, type: number): Uint8Array {
  let head = 1;
  while (frame[head] & 0x80) head++;
  head++;
  const flagsAt = head + 2 + 6 + 1; // CONNECT: "MQIsdp", level, flags
  const headerOk = (frame[0] & 0x0f) === REQUIRED_FLAGS[type];
  const connectOk = type !== 1 || !(frame[flagsAt] & 0x01);
  if (headerOk && connectOk) return frame;
  const copy = frame.slice();
  copy[0] = (type << 4) | REQUIRED_FLAGS[type];
  if (type === 1) copy[flagsAt] &= 0xfe;
  return copy;
}

/**
 * One mqtt-packet parser for every connection. Each call hands it exactly one complete frame and
 * resets it first, so no state crosses frames or connections; this keeps an idle connection free
 * of mqtt-packet's per-parser buffer-list stream (about 3 KB of heap each).
 */
interface SharedParser {
  parser: ReturnType<MqttPacket["parser"]> & {
    settings: { protocolVersion?: number };
    packet: unknown;
    error: Error | null;
    _list: { length: number; consume(n: number): void };
    _stateCounter: number;
    _pos: number;
  };
  newPacket: () => unknown;
  got: Packet | undefined;
  err: Error | undefined;
}

let shared: SharedParser | undefined;

/**
 * Puts the shared parser back to its initial state without `_resetState`, which allocates a new
 * buffer-list stream each time; `_pos` is reset too (`_resetState` leaves it, and a failed frame
 * can leave it anywhere: found by the fuzz test).
 */
function reset(s: SharedParser): void {
  const p = s.parser;
  if (p._list.length) p._list.consume(p._list.length);
  p.packet = s.newPacket();
  p.error = null;
  p._stateCounter = 0;
  p._pos = 0;
}

function sharedParser(): SharedParser {
  if (!shared) {
    const parser = codec().parser() as SharedParser["parser"];
    const Ctor = (parser.packet as { constructor: new () => unknown }).constructor;
    const s: SharedParser = { parser, newPacket: () => new Ctor(), got: undefined, err: undefined };
    parser.on("packet", (p: Packet) => s.got = p);
    parser.on("error", (e: Error) => s.err = e);
    shared = s;
  }
  return shared;
}

function parseFrame(
  frame: Uint8Array,
  version: ProtocolVersion | undefined,
): { packet?: Packet; error?: Error } {
  const s = sharedParser();
  s.got = undefined;
  s.err = undefined;
  reset(s);
  s.parser.settings = version ? { protocolVersion: version } : {};
  try {
    s.parser.parse(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength));
  } catch (err) {
    s.err = err instanceof Error ? err : new Error(String(err));
  }
  const out = { packet: s.got, error: s.err };
  s.got = undefined;
  s.err = undefined;
  reset(s); // drop references to the frame
  return out;
}

/**
 * A synchronous MQTT frame decoder: feed it chunks, get whole packets. A connection runs it on
 * each read; the fuzz tests run it directly.
 *
 * @example
 * ```ts
 * import { loadCodec, MqttFrameDecoder } from "./codec.ts";
 * await loadCodec();
 * const d = new MqttFrameDecoder({ protocolVersion: 4 });
 * const got = d.push(new Uint8Array([0xc0, 0x00, 0xc0])); // PINGREQ and half of another
 * if (got.length !== 1 || got[0].cmd !== "pingreq") throw new Error();
 * if (d.push(new Uint8Array([0x00])).length !== 1) throw new Error();
 * ```
 */
export class MqttFrameDecoder {
  #max: number;
  #version: ProtocolVersion | undefined;
  #state = State.Header;
  #header = 0;
  #len = 0;
  #mul = 1;
  #lenBytes = 0;
  #frame: Uint8Array | undefined;
  #filled = 0;
  #offset = 0; // bytes of the input consumed before the current frame
  #budget: MqttDecoderOptions["budget"];
  #reserveAbove: number;
  #reserved = 0; // bytes of the frame being assembled, taken from the budget

  /** Creates a decoder. */
  constructor(options: MqttDecoderOptions = {}) {
    this.#max = options.maxPacketSize ?? 268_435_455;
    this.#version = options.protocolVersion;
    this.#budget = options.budget;
    this.#reserveAbove = options.reserveAbove ?? 16_384;
  }

  /** Largest whole packet accepted, bytes (may be raised after CONNECT). */
  get maxPacketSize(): number {
    return this.#max;
  }

  set maxPacketSize(n: number) {
    this.#max = n;
  }

  /** Bytes held for a partial packet. */
  get buffered(): number {
    if (this.#state === State.Header) return 0;
    return this.#state === State.Length ? 1 + this.#lenBytes : this.#filled;
  }

  /** Decodes every complete packet in `chunk` (plus what was buffered); throws on a bad one. */
  push(chunk: Uint8Array): Packet[] {
    const out: Packet[] = [];
    this.parse(chunk, (p) => out.push(p));
    return out;
  }

  /**
   * Decodes every complete packet in `chunk` (plus what was buffered) to `emit`, in order; a bad
   * packet throws, after the packets before it were emitted. When `emit` returns `true`, decoding
   * stops right after that packet: the return value is the count of bytes of `chunk` consumed (the
   * rest is decoded by passing `chunk.subarray(count)` later), else `chunk.length`. A connection
   * thus decodes each packet only when it is about to handle it, and a connection that has to wait
   * holds its read's bytes, not a batch of decoded packets.
   */
  parse(chunk: Uint8Array, emit: (packet: Packet) => unknown): number {
    let i = 0;
    while (i < chunk.length) {
      if (this.#state === State.Header) {
        this.#header = chunk[i++];
        this.#len = 0;
        this.#mul = 1;
        this.#lenBytes = 0;
        this.#state = State.Length;
        continue;
      }
      if (this.#state === State.Length) {
        const b = chunk[i++];
        this.#len += (b & 0x7f) * this.#mul;
        this.#mul *= 128;
        this.#lenBytes++;
        if (b & 0x80) {
          // MQTT 5 §1.5.5: at most four bytes.
          if (this.#lenBytes === 4) {
            throw this.#malformed("Remaining Length is longer than four bytes");
          }
          continue;
        }
        if (b === 0 && this.#lenBytes > 1) {
          // [MQTT-1.5.5-1] the minimum number of bytes must be used.
          throw this.#malformed("Remaining Length is not minimally encoded");
        }
        const size = 1 + this.#lenBytes + this.#len;
        if (size > this.#max) {
          throw new MqttMalformedError(
            `Cannot accept packet: size ${size} exceeds the ${this.#max} byte limit`,
            { offset: this.#offset, reasonCode: ReasonCode.PacketTooLarge },
          );
        }
        const headLen = 1 + this.#lenBytes;
        const start = i - headLen;
        if (start >= 0 && chunk.length - i >= this.#len) {
          // Whole frame inside this chunk: decode a view, no copy.
          const p = this.#decode(chunk.subarray(start, i + this.#len));
          i += this.#len;
          if (emit(p) === true) return i;
          continue;
        }
        if (this.#budget && size > this.#reserveAbove) {
          if (!this.#budget.tryTake(size)) {
            throw new MqttProtocolError(
              `Cannot accept packet: its ${size} bytes exceed the gateway's free payload budget`,
              { reasonCode: ReasonCode.QuotaExceeded },
            );
          }
          this.#reserved = size;
        }
        const frame = new Uint8Array(size);
        frame[0] = this.#header;
        let v = this.#len;
        for (let k = 1; k < headLen; k++) {
          frame[k] = (v & 0x7f) | (k < headLen - 1 ? 0x80 : 0);
          v = Math.floor(v / 128);
        }
        this.#frame = frame;
        this.#filled = headLen;
        this.#state = State.Body;
        if (this.#len === 0 && emit(this.#finish()) === true) return i;
        continue;
      }
      const frame = this.#frame!;
      const n = Math.min(frame.length - this.#filled, chunk.length - i);
      frame.set(chunk.subarray(i, i + n), this.#filled);
      this.#filled += n;
      i += n;
      if (this.#filled === frame.length && emit(this.#finish()) === true) return i;
    }
    return i;
  }

  /** The input ended: throws when it ended inside a packet. */
  end(): void {
    if (this.buffered > 0) {
      throw this.#malformed("connection ended inside a packet");
    }
  }

  #finish(): Packet {
    const frame = this.#frame!;
    this.#frame = undefined;
    this.release();
    return this.#decode(frame);
  }

  /** Gives back what a packet being assembled took from the budget (also when the connection ends). */
  release(): void {
    if (this.#reserved === 0) return;
    this.#budget?.give(this.#reserved);
    this.#reserved = 0;
  }

  #malformed(why: string): MqttMalformedError {
    return new MqttMalformedError(`Cannot decode packet: ${why}`, { offset: this.#offset });
  }

  #decode(frame: Uint8Array): Packet {
    this.#state = State.Header;
    let fast: Packet | undefined;
    try {
      fast = fastDecode(frame, this.#version);
    } catch (err) {
      throw this.#malformed((err as Error).message);
    }
    if (fast) {
      this.#offset += frame.length;
      return fast;
    }
    const cmdType = frame[0] >> 4;
    // The strict scan reads what mqtt-packet must not be trusted with (see _strict_scan.ts).
    const level = cmdType === 1 ? connectLevel(frame) : this.#version;
    let scan: ScanResult | undefined;
    if (level !== undefined && (level === 5 || cmdType === 1 || cmdType >= 12)) {
      try {
        scan = strictScan(frame, level);
      } catch (err) {
        if (!(err instanceof MqttMalformedError)) throw err;
        throw new MqttMalformedError(err.message, { offset: this.#offset });
      }
    }
    if (level === 3 && cmdType !== 3) frame = as31(frame, cmdType);
    const connect = cmdType === 1 && level === 4 ? fastConnect(frame) : undefined;
    const { packet: p, error: err } = connect
      ? { packet: connect, error: undefined }
      : parseFrame(frame, this.#version);
    if (err) {
      // An unknown protocol name is malformed: closed without CONNACK ([MQTT-3.1.2-1] MAY).
      if (cmdType === 1 && /protocol ?version/i.test(err.message)) {
        // [MQTT-3.1.2-2] unsupported protocol level: CONNACK 0x84 / return code 1.
        throw new MqttProtocolError(`Cannot accept CONNECT: ${err.message}`, {
          reasonCode: ReasonCode.UnsupportedProtocolVersion,
        });
      }
      if (cmdType === 8 && /retain handling/i.test(err.message)) {
        // MQTT 5 §3.8.3.1: Retain Handling 3 is a Protocol Error, not a malformed packet.
        throw new MqttProtocolError(`Cannot accept SUBSCRIBE: ${err.message}`);
      }
      throw this.#malformed(err.message);
    }
    if (!p) throw this.#malformed("packet is truncated");
    if (p.cmd === "connect") this.#version = p.protocolVersion as ProtocolVersion;
    if (level === 5 && scan) {
      // Properties as the scan read them, never as mqtt-packet did.
      const a = p as { properties?: unknown; will?: { properties?: unknown }; payload?: unknown };
      if (scan.properties) a.properties = scan.properties;
      else delete a.properties;
      if (a.will) {
        if (scan.willProperties) a.will.properties = scan.willProperties;
        else delete a.will.properties;
      }
      if (scan.payloadOffset !== undefined) {
        const at = scan.payloadOffset;
        a.payload = Buffer.from(frame.buffer, frame.byteOffset + at, frame.length - at);
      }
    }
    const why = checkPacketStrings(p, frame);
    if (why) throw this.#malformed(why);
    this.#offset += frame.length;
    return p;
  }
}

/**
 * Encodes one packet for a protocol level.
 *
 * @example
 * ```ts
 * import { encodePacket, loadCodec } from "./codec.ts";
 * await loadCodec();
 * const b = encodePacket({ cmd: "pingresp" }, 4);
 * if (b[0] !== 0xd0 || b[1] !== 0) throw new Error();
 * ```
 */
export function encodePacket(packet: Packet, version: ProtocolVersion): Uint8Array {
  const p = packet as { cmd: string; messageId?: number; qos?: number };
  if (WITH_ID.has(p.cmd) || (p.cmd === "publish" && (p.qos ?? 0) > 0)) {
    checkPacketId(p.cmd, p.messageId);
  }
  const bytes = encodeConnack(packet, version) ??
    codec().generate(packet, { protocolVersion: version });
  // An outgoing packet is always whole (mqtt-packet can stop half way through a packet it cannot
  // encode and still return the bytes written so far): its Remaining Length is what follows.
  if (!isWholePacket(bytes)) {
    throw new RangeError(`Cannot encode ${p.cmd}: the encoder did not produce a whole packet`);
  }
  return bytes;
}

/**
 * A 3.1/3.1.1 CONNACK (return code, session present), as mqtt-packet writes it; `undefined` for
 * anything else.
 */
function encodeConnack(packet: Packet, version: ProtocolVersion): Uint8Array | undefined {
  if (packet.cmd !== "connack" || version === 5) return undefined;
  const p = packet as { returnCode?: number; sessionPresent?: boolean; reasonCode?: number };
  const rc = p.returnCode;
  if (
    p.reasonCode !== undefined || rc === undefined || !Number.isInteger(rc) || rc < 0 || rc > 255
  ) {
    return undefined;
  }
  return new Uint8Array([0x20, 0x02, p.sessionPresent ? 1 : 0, rc]);
}

/** Packet types that carry a packet identifier (MQTT 3.1.1 §2.3.1, MQTT 5 §2.2.1). */
const WITH_ID = new Set([
  "puback",
  "pubrec",
  "pubrel",
  "pubcomp",
  "subscribe",
  "suback",
  "unsubscribe",
  "unsuback",
]);

/**
 * Throws a `RangeError` unless `id` is a packet identifier: an integer 1..65535 ([MQTT-2.3.1-1],
 * MQTT 5 [MQTT-2.2.1-3]).
 *
 * @example
 * ```ts
 * import { checkPacketId } from "./codec.ts";
 * checkPacketId("puback", 1);
 * let threw = false;
 * try { checkPacketId("puback", -1); } catch (e) { threw = e instanceof RangeError; }
 * if (!threw) throw new Error();
 * ```
 */
export function checkPacketId(cmd: string, id: number | undefined): void {
  if (!Number.isInteger(id) || id! < 1 || id! > 65535) {
    throw new RangeError(`Cannot encode ${cmd}: packet identifier ${id} is not in 1..65535`);
  }
}

/**
 * True when `bytes` are exactly one whole packet: a fixed header whose Remaining Length (at most
 * four bytes, MQTT 5 §1.5.5) counts every byte after it.
 *
 * @example
 * ```ts
 * import { isWholePacket } from "./codec.ts";
 * if (!isWholePacket(new Uint8Array([0x40, 2, 0, 1]))) throw new Error();
 * if (isWholePacket(new Uint8Array([0x62, 4]))) throw new Error("a header without its body");
 * ```
 */
export function isWholePacket(bytes: Uint8Array): boolean {
  let len = 0;
  let mul = 1;
  let i = 1;
  for (;;) {
    if (i >= bytes.length || i > 4) return false;
    const b = bytes[i++];
    len += (b & 0x7f) * mul;
    mul *= 128;
    if (!(b & 0x80)) break;
  }
  return i + len === bytes.length;
}
