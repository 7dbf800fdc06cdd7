/**
 * Hand-written encoders and decoders for the packets on the hot path (PUBLISH without properties,
 * the four acknowledgements, PINGREQ/PINGRESP, a plain 3.1.1 CONNECT), with the same checks as the
 * general path. Anything else (other CONNECTs, SUBSCRIBE, v5 properties, reason codes) goes through
 * mqtt-packet.
 *
 * @module
 */

import type { Packet } from "mqtt-packet";
import { Buffer } from "node:buffer";
import { MqttMalformedError } from "./errors.ts";

// ignoreBOM: a leading U+FEFF is part of the string and must not be stripped ([MQTT-1.5.3-3]).
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const textEncoder = new TextEncoder();

// Devices publish to the same few topics over and over: remember the last decoded topic.
let lastTopicBytes = new Uint8Array(0);
let lastTopic = "";

function decodeTopic(bytes: Uint8Array): string {
  const n = bytes.length;
  if (n === lastTopicBytes.length && n > 0) {
    let same = true;
    for (let k = 0; k < n; k++) {
      if (bytes[k] !== lastTopicBytes[k]) {
        same = false;
        break;
      }
    }
    if (same) return lastTopic;
  }
  let topic: string;
  try {
    topic = utf8.decode(bytes);
  } catch {
    throw new MqttMalformedError("Cannot decode PUBLISH: topic is not UTF-8 [MQTT-1.5.4-1]");
  }
  if (topic.includes("\u0000")) {
    throw new MqttMalformedError("Cannot decode PUBLISH: topic contains U+0000 [MQTT-1.5.4-2]");
  }
  if (n <= 256) {
    lastTopicBytes = bytes.slice();
    lastTopic = topic;
  }
  return topic;
}

const ACK_CMDS = ["", "", "", "", "puback", "pubrec", "pubrel", "pubcomp"] as const;

/**
 * Decodes a hot-path frame, or returns `undefined` to fall back to mqtt-packet. Throws
 * {@link MqttMalformedError} for a frame that breaks a rule checked here.
 */
export function fastDecode(frame: Uint8Array, version: number | undefined): Packet | undefined {
  const h = frame[0];
  const type = h >> 4;
  // Remaining Length is already validated by the framer; find where the body starts.
  let i = 1;
  while (frame[i] & 0x80) i++;
  i++;
  const len = frame.length - i;
  if (type === 3) {
    if (version === undefined) return undefined;
    const qos = (h >> 1) & 3;
    if (qos === 3) throw new MqttMalformedError("Cannot decode PUBLISH: QoS 3 [MQTT-3.3.1-4]");
    if (len < 2) throw new MqttMalformedError("Cannot decode PUBLISH: too short");
    const tlen = (frame[i] << 8) | frame[i + 1];
    let p = i + 2 + tlen;
    if (p > frame.length) throw new MqttMalformedError("Cannot decode PUBLISH: topic overruns");
    const topic = decodeTopic(frame.subarray(i + 2, p));
    let messageId: number | undefined;
    if (qos > 0) {
      if (p + 2 > frame.length) throw new MqttMalformedError("Cannot decode PUBLISH: no packet id");
      messageId = (frame[p] << 8) | frame[p + 1];
      p += 2;
    }
    if (version === 5) {
      if (p >= frame.length) throw new MqttMalformedError("Cannot decode PUBLISH: no properties");
      if (frame[p] !== 0) return undefined; // properties: general path
      p++;
    }
    return {
      cmd: "publish",
      retain: (h & 1) === 1,
      qos: qos as 0 | 1 | 2,
      dup: (h & 8) === 8,
      length: len,
      topic,
      payload: Buffer.from(frame.buffer, frame.byteOffset + p, frame.length - p),
      messageId,
    } as Packet;
  }
  if (type >= 4 && type <= 7) {
    if (len !== 2) {
      // 3.1/3.1.1 acknowledgements are exactly a packet id (MQTT 3.1.1 §3.4.1 .. §3.7.1).
      if (version === 3 || version === 4) {
        throw new MqttMalformedError(`Cannot decode ${ACK_CMDS[type]}: remaining length ${len}`);
      }
      return undefined; // v5 reason code / properties, or malformed: general path
    }
    if ((h & 0xf) !== (type === 6 ? 2 : 0)) return undefined; // [MQTT-3.6.1-1] etc.: general path
    return { cmd: ACK_CMDS[type], messageId: (frame[i] << 8) | frame[i + 1] } as Packet;
  }
  if (type === 12 && h === 0xc0 && len === 0) return { cmd: "pingreq" } as Packet;
  return undefined;
}

/**
 * Decodes a whole CONNECT frame when it is a plain MQTT 3.1.1 one: protocol name "MQTT", level 4,
 * clean session, no will, the reserved bit clear, a password only with a user name, UTF-8 strings,
 * nothing after the last field. The packet is the one mqtt-packet makes of it (the caller runs the
 * same strict scan and string checks after either). Anything else: `undefined` (the general path).
 *
 * @example
 * ```ts
 * import { fastConnect } from "./_fast_codec.ts";
 * // CONNECT: "MQTT" level 4, clean session, keepalive 60, client id "a"
 * const f = new Uint8Array([0x10, 13, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 60, 0, 1, 0x61]);
 * const p = fastConnect(f) as { clientId?: string; keepalive?: number };
 * if (p?.clientId !== "a" || p.keepalive !== 60) throw new Error();
 * f[9] = 0x06; // a will: the general path's
 * if (fastConnect(f) !== undefined) throw new Error();
 * ```
 */
export function fastConnect(frame: Uint8Array): Packet | undefined {
  if (frame[0] !== 0x10) return undefined;
  let i = 1;
  let len = 0;
  let mul = 1;
  for (;;) {
    if (i > 4 || i >= frame.length) return undefined;
    const b = frame[i++];
    len += (b & 0x7f) * mul;
    mul *= 128;
    if (!(b & 0x80)) break;
  }
  if (i + len !== frame.length || len < 12) return undefined;
  if (
    frame[i] !== 0 || frame[i + 1] !== 4 || frame[i + 2] !== 0x4d || frame[i + 3] !== 0x51 ||
    frame[i + 4] !== 0x54 || frame[i + 5] !== 0x54 || frame[i + 6] !== 4
  ) return undefined;
  const flags = frame[i + 7];
  // Clean session set; reserved bit, will flag, will QoS and will retain clear.
  if ((flags & 0x3f) !== 0x02) return undefined;
  const hasUser = (flags & 0x80) !== 0;
  const hasPassword = (flags & 0x40) !== 0;
  if (hasPassword && !hasUser) return undefined;
  const keepalive = (frame[i + 8] << 8) | frame[i + 9];
  let at = i + 10;
  const field = (): Uint8Array | undefined => {
    if (at + 2 > frame.length) return undefined;
    const n = (frame[at] << 8) | frame[at + 1];
    if (at + 2 + n > frame.length) return undefined;
    const f = frame.subarray(at + 2, at + 2 + n);
    at += 2 + n;
    return f;
  };
  const text = (): string | undefined => {
    const f = field();
    if (f === undefined) return undefined;
    try {
      return utf8.decode(f);
    } catch {
      return undefined;
    }
  };
  const clientId = text();
  if (clientId === undefined) return undefined;
  const username = hasUser ? text() : undefined;
  if (hasUser && username === undefined) return undefined;
  const password = hasPassword ? field() : undefined;
  if (hasPassword && password === undefined) return undefined;
  if (at !== frame.length) return undefined;
  const p: Record<string, unknown> = {
    cmd: "connect",
    retain: false,
    qos: 0,
    dup: false,
    length: len,
    topic: null,
    payload: null,
    protocolId: "MQTT",
    protocolVersion: 4,
    clean: true,
    keepalive,
    clientId,
  };
  if (hasUser) p.username = username;
  if (hasPassword) p.password = Buffer.from(password!); // a copy: the read buffer is reused
  return p as unknown as Packet;
}

/**
 * Encodes PUBACK/PUBREC/PUBREL/PUBCOMP with success (no reason code, as v5 allows). Throws a
 * `RangeError` for an id outside 1..65535: a packet is never written with a made-up identifier.
 */
export function encodeAck(cmd: "puback" | "pubrec" | "pubrel" | "pubcomp", id: number): Uint8Array {
  if (!(id >= 1 && id <= 65535 && (id | 0) === id)) {
    throw new RangeError(`Cannot encode ${cmd}: packet identifier ${id} is not in 1..65535`);
  }
  const b = new Uint8Array(4); // (not from an array literal: that is the slow path)
  b[0] = cmd === "puback" ? 0x40 : cmd === "pubrec" ? 0x50 : cmd === "pubrel" ? 0x62 : 0x70;
  b[1] = 2;
  b[2] = id >> 8;
  b[3] = id & 0xff;
  return b;
}

const topicCache = new Map<string, Uint8Array>();

/** UTF-8 bytes of a topic, cached for hot topics (bounded). */
function topicBytes(topic: string): Uint8Array {
  let b = topicCache.get(topic);
  if (!b) {
    b = textEncoder.encode(topic);
    if (topicCache.size >= 4096) topicCache.clear();
    topicCache.set(topic, b);
  }
  return b;
}

const allocate = (n: number): Uint8Array => new Uint8Array(n);

/** The fixed fields of a PUBLISH without properties. */
export interface PublishFields {
  /** Topic name. */
  topic: string;
  /** Payload bytes. */
  payload: Uint8Array;
  /** QoS 0..2. */
  qos: number;
  /** RETAIN flag. */
  retain: boolean;
  /** DUP flag. */
  dup: boolean;
  /** Packet identifier (QoS 1/2). */
  messageId?: number;
}

/**
 * Encodes a PUBLISH without properties (3.1/3.1.1, or v5 with an empty property list) into the
 * bytes `alloc` gives for its size (a new buffer by default; a connection writer's reserved space
 * on the hot path), or returns `undefined`, writing nothing, when `alloc` refuses the size.
 */
export function encodePublish(
  p: PublishFields,
  v5: boolean,
): Uint8Array;
export function encodePublish(
  p: PublishFields,
  v5: boolean,
  alloc: (n: number) => Uint8Array | undefined,
): Uint8Array | undefined;
export function encodePublish(
  p: PublishFields,
  v5: boolean,
  alloc: (n: number) => Uint8Array | undefined = allocate,
): Uint8Array | undefined {
  if (p.qos > 0 && !(p.messageId! >= 1 && p.messageId! <= 65535)) {
    throw new RangeError(
      `Cannot encode PUBLISH: packet identifier ${p.messageId} is not in 1..65535`,
    );
  }
  const t = topicBytes(p.topic);
  const rl = 2 + t.length + (p.qos > 0 ? 2 : 0) + (v5 ? 1 : 0) + p.payload.length;
  let lenBytes = 1;
  for (let x = rl; x >= 128; x = Math.floor(x / 128)) lenBytes++;
  const out = alloc(1 + lenBytes + rl);
  if (out === undefined) return undefined;
  out[0] = 0x30 | (p.dup ? 8 : 0) | (p.qos << 1) | (p.retain ? 1 : 0);
  let o = 1;
  let x = rl;
  do {
    let b = x % 128;
    x = Math.floor(x / 128);
    if (x > 0) b |= 0x80;
    out[o++] = b;
  } while (x > 0);
  out[o++] = t.length >> 8;
  out[o++] = t.length & 0xff;
  out.set(t, o);
  o += t.length;
  if (p.qos > 0) {
    out[o++] = p.messageId! >> 8;
    out[o++] = p.messageId! & 0xff;
  }
  if (v5) out[o++] = 0;
  out.set(p.payload, o);
  return out;
}
