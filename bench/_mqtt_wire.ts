/**
 * The MQTT side of the load generators: a light 3.1.1 client over a raw socket that encodes with
 * npm `mqtt-packet` (CONNECT, SUBSCRIBE) or byte templates (PUBLISH, patched per message), and
 * reads with a frame scanner that never decodes what it only counts. It talks to any broker from
 * outside; nothing here comes from Ferry's source.
 *
 * @module
 */

import mqttPacket from "mqtt-packet";

const encoder = new TextEncoder();

/** MQTT control packet types (MQTT 3.1.1 §2.2.1). */
export const PacketType = {
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  SUBACK: 9,
  PINGRESP: 13,
} as const;

/** Called for each complete frame: type, flags, and where its body lies in `buf`. */
export type FrameHandler = (
  type: number,
  flags: number,
  buf: Uint8Array,
  bodyStart: number,
  bodyEnd: number,
) => void;

/**
 * Calls `onFrame` for every complete frame in `buf[start, end)`; returns where the first
 * incomplete frame starts (`end` when none is left over). Remaining Length is read as in MQTT
 * 3.1.1 §2.2.3 (at most 4 bytes); a longer one throws a `SyntaxError`.
 *
 * @example
 * ```ts
 * import { scanFrames } from "./_mqtt_wire.ts";
 * const b = new Uint8Array([0xd0, 0, 0x40, 2, 0, 7, 0x20]); // PINGRESP, PUBACK 7, half a CONNACK
 * const seen: number[] = [];
 * const rest = scanFrames(b, 0, b.length, (t) => seen.push(t));
 * if (rest !== 6 || seen.join() !== "13,4") throw new Error();
 * ```
 */
export function scanFrames(buf: Uint8Array, start: number, end: number, onFrame: FrameHandler) {
  let i = start;
  while (i < end) {
    let len = 0;
    let mul = 1;
    let j = i + 1;
    let complete = false;
    while (j < end) {
      const b = buf[j++];
      len += (b & 0x7f) * mul;
      if (!(b & 0x80)) {
        complete = true;
        break;
      }
      mul *= 128;
      if (mul > 128 ** 3) throw new SyntaxError(`Cannot read frame at ${i}: Remaining Length > 4`);
    }
    if (!complete || j + len > end) break;
    onFrame(buf[i] >> 4, buf[i] & 0x0f, buf, j, j + len);
    i = j + len;
  }
  return i;
}

/** The 16-bit packet identifier at the start of a PUBACK body. */
export function packetId(buf: Uint8Array, bodyStart: number): number {
  return (buf[bodyStart] << 8) | buf[bodyStart + 1];
}

/**
 * Whether a PUBLISH body's topic ends with `suffix` (bytes).
 *
 * @example
 * ```ts
 * import { publishTemplate, topicEndsWith } from "./_mqtt_wire.ts";
 * const t = publishTemplate("devices/a/telemetry", 4, 0);
 * const body = 2; // fixed header byte + 1-byte Remaining Length
 * const suffix = new TextEncoder().encode("/telemetry");
 * if (!topicEndsWith(t.bytes, body, suffix)) throw new Error();
 * ```
 */
export function topicEndsWith(buf: Uint8Array, bodyStart: number, suffix: Uint8Array): boolean {
  const tl = (buf[bodyStart] << 8) | buf[bodyStart + 1];
  if (tl < suffix.length) return false;
  const from = bodyStart + 2 + tl - suffix.length;
  for (let k = 0; k < suffix.length; k++) if (buf[from + k] !== suffix[k]) return false;
  return true;
}

/** Where the payload of a PUBLISH body starts (after the topic and, for QoS > 0, the id). */
export function publishPayloadStart(buf: Uint8Array, bodyStart: number, flags: number): number {
  const tl = (buf[bodyStart] << 8) | buf[bodyStart + 1];
  return bodyStart + 2 + tl + ((flags >> 1) & 3 ? 2 : 0);
}

/** A PUBLISH frame as bytes, with the offsets to patch per message. */
export interface PublishTemplate {
  /** The frame. */
  bytes: Uint8Array;
  /** Offset of the packet identifier (QoS 1), or -1. */
  idOffset: number;
  /** Offset of the payload. */
  payloadOffset: number;
}

/**
 * A PUBLISH frame (QoS 0 or 1, no DUP, no RETAIN) with a zero payload of `payloadBytes`.
 *
 * @example
 * ```ts
 * import { publishTemplate } from "./_mqtt_wire.ts";
 * const t = publishTemplate("a/b", 64, 1);
 * if (t.bytes[0] !== 0x32 || t.bytes.length !== 2 + 2 + 3 + 2 + 64) throw new Error();
 * if (t.idOffset !== 7 || t.payloadOffset !== 9) throw new Error();
 * ```
 */
export function publishTemplate(topic: string, payloadBytes: number, qos: 0 | 1): PublishTemplate {
  const t = encoder.encode(topic);
  const rl = 2 + t.length + (qos ? 2 : 0) + payloadBytes;
  const rlBytes: number[] = [];
  let x = rl;
  do {
    let b = x % 128;
    x = Math.floor(x / 128);
    if (x > 0) b |= 0x80;
    rlBytes.push(b);
  } while (x > 0);
  const bytes = new Uint8Array(1 + rlBytes.length + rl);
  bytes[0] = 0x30 | (qos << 1);
  bytes.set(rlBytes, 1);
  let o = 1 + rlBytes.length;
  bytes[o++] = t.length >> 8;
  bytes[o++] = t.length & 0xff;
  bytes.set(t, o);
  o += t.length;
  const idOffset = qos ? o : -1;
  if (qos) o += 2;
  return { bytes, idOffset, payloadOffset: o };
}

/** PINGREQ. */
export const PINGREQ: Uint8Array = new Uint8Array([0xc0, 0]);
/** DISCONNECT. */
export const DISCONNECT: Uint8Array = new Uint8Array([0xe0, 0]);

/**
 * Sends DISCONNECT on every connection at once, waits until the server has closed them all (one
 * bound for all), then closes what is left. The server closing first leaves each TIME_WAIT on its
 * side, so the client's ephemeral ports are free for the next run (tens of thousands of
 * client-side TIME_WAITs make every later `connect` slow).
 */
export async function disconnectAll(
  conns: Array<MqttConn | undefined>,
  timeoutMs = 15_000,
): Promise<void> {
  const live = conns.filter((c): c is MqttConn => c !== undefined && !c.isClosed);
  for (const c of live) c.write(DISCONNECT).catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.all(live.map((c) => c.closed)),
    new Promise((r) => timer = setTimeout(r, timeoutMs)),
  ]).finally(() => clearTimeout(timer));
  for (const c of live) c.close();
}

/** Options of {@link MqttConn.open}. */
export interface OpenOptions {
  /** Keepalive asked for, seconds (0 = none). @default 0 */
  keepalive?: number;
  /** First read buffer size; it grows while reads come back full. @default 256 */
  readBytes?: number;
  /** Largest read buffer. @default 262144 */
  maxReadBytes?: number;
  /** Bound on TCP connect plus CONNACK. @default 15000 */
  timeoutMs?: number;
}

/**
 * A client connection: CONNECT (3.1.1, clean session) on open, then a read loop that hands every
 * frame to {@link MqttConn.onFrame}. Writes are queued so concurrent callers never interleave.
 */
export class MqttConn {
  /** The socket. */
  readonly conn: Deno.TcpConn;
  /** Called for each frame read after the CONNACK. */
  onFrame: FrameHandler = () => {};
  /** Resolves when the read loop ends (peer closed, error, or {@link close}). */
  readonly closed: Promise<void>;
  #connack = Promise.withResolvers<number>();
  #chain: Promise<unknown> = Promise.resolve();
  #readBytes: number;
  #maxReadBytes: number;
  #gotConnack = false;
  #isClosed = false;

  private constructor(conn: Deno.TcpConn, o: OpenOptions) {
    this.conn = conn;
    this.#readBytes = o.readBytes ?? 256;
    this.#maxReadBytes = o.maxReadBytes ?? 262_144;
    this.closed = this.#read();
  }

  /** Connects, sends CONNECT and waits for CONNACK 0 (bounded); throws on a refusal. */
  static async open(port: number, clientId: string, o: OpenOptions = {}): Promise<MqttConn> {
    const timeoutMs = o.timeoutMs ?? 15_000;
    const signal = AbortSignal.timeout(timeoutMs);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port, signal });
    conn.setNoDelay(true);
    const c = new MqttConn(conn, o);
    try {
      await c.write(
        mqttPacket.generate({
          cmd: "connect",
          protocolId: "MQTT",
          protocolVersion: 4,
          clientId,
          clean: true,
          keepalive: o.keepalive ?? 0,
        }),
      );
      let timer: ReturnType<typeof setTimeout> | undefined;
      const rc = await Promise.race([
        c.#connack.promise,
        new Promise<number>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no CONNACK for ${clientId} within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]).finally(() => clearTimeout(timer));
      if (rc !== 0) throw new Error(`CONNACK return code ${rc} for ${clientId}`);
      return c;
    } catch (err) {
      c.close();
      throw err;
    }
  }

  /** Writes `bytes` after every earlier write; rejects if the socket fails. */
  write(bytes: Uint8Array): Promise<void> {
    const p = this.#chain.then(async () => {
      let o = 0;
      while (o < bytes.length) o += await this.conn.write(bytes.subarray(o));
    });
    this.#chain = p.catch(() => {});
    return p;
  }

  /** SUBSCRIBE to `filter` and wait for the SUBACK (bounded). */
  async subscribe(filter: string, qos: 0 | 1, timeoutMs = 10_000): Promise<void> {
    const got = Promise.withResolvers<void>();
    const prev = this.onFrame;
    this.onFrame = (type, flags, buf, s, e) => {
      if (type === PacketType.SUBACK) got.resolve();
      else prev(type, flags, buf, s, e);
    };
    await this.write(
      mqttPacket.generate({
        cmd: "subscribe",
        messageId: 1,
        subscriptions: [{ topic: filter, qos }],
      }),
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      got.promise,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no SUBACK for ${filter}`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    this.onFrame = prev;
  }

  async #read(): Promise<void> {
    let buf = new Uint8Array(this.#readBytes);
    let start = 0;
    let end = 0;
    const handle: FrameHandler = (type, flags, b, s, e) => {
      if (!this.#gotConnack && type === PacketType.CONNACK) {
        this.#gotConnack = true;
        this.#connack.resolve(b[s + 1]);
        return;
      }
      this.onFrame(type, flags, b, s, e);
    };
    try {
      for (;;) {
        if (end === buf.length) {
          if (start > 0) {
            buf.copyWithin(0, start, end);
            end -= start;
            start = 0;
          } else {
            const bigger = new Uint8Array(Math.min(this.#maxReadBytes * 64, buf.length * 4));
            bigger.set(buf.subarray(0, end));
            buf = bigger;
          }
        }
        const n = await this.conn.read(buf.subarray(end));
        if (n === null) break;
        const full = end + n === buf.length;
        end += n;
        start = scanFrames(buf, start, end, handle);
        if (start === end) {
          start = end = 0;
          // Grow while reads come back full (a busy subscriber), up to the cap.
          if (full && buf.length < this.#maxReadBytes) buf = new Uint8Array(buf.length * 4);
        }
      }
    } catch { /* closed */ }
    this.#isClosed = true;
    this.#connack.reject(new Error("connection closed before CONNACK"));
    this.#connack.promise.catch(() => {});
  }

  /** Whether the read loop has ended. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Closes the socket (idempotent). */
  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}
