/**
 * The strict scan of one raw MQTT frame: what `mqtt-packet` does not check, or reads wrongly. It
 * walks every field of the frame up to and through each MQTT 5 property section with bounds checks
 * and decodes the properties itself, because mqtt-packet reads a property past the end of its
 * section (a Message Expiry cut off inside a one-byte section takes four bytes of the payload), a
 * missing string as `"null"`, a flag as a boolean (so 2 reads as `true`) and a repeated property
 * whose first value is 0 as a single one. The codec replaces mqtt-packet's properties (and a
 * PUBLISH's payload) with what this scan read. It also checks what the spec fixes about a frame's
 * length: a CONNECT carries exactly the fields its flags announce ([MQTT-3.1.2-18]/[MQTT-3.1.2-20]
 * in 3.1.1, [MQTT-3.1.2-16]/[MQTT-3.1.2-18] in 5.0), an MQTT 5 acknowledgement has at least a packet
 * identifier and nothing after its properties, PINGREQ and a 3.1.1 DISCONNECT have no body.
 *
 * Only frames off the hot path are scanned: every MQTT 5 frame that goes to mqtt-packet (a PUBLISH
 * with properties, acknowledgements with a reason code, SUBSCRIBE, …) and every CONNECT; a QoS 0
 * PUBLISH without properties never comes here.
 *
 * Malformed (MQTT 5 §2.2.2.1, §4.13, reason code 0x81): a section or a value that runs past its
 * end, an unknown property identifier, a property not valid in its packet (§2.2.2.2), ill-formed
 * UTF-8 or U+0000 in a string property ([MQTT-1.5.4-1], [MQTT-1.5.4-2]), a Variable Byte Integer of
 * more than four bytes or not minimally encoded ([MQTT-1.5.5-1]). Protocol Error (0x82): a property
 * other than User Property (and Subscription Identifier in a server's PUBLISH) given twice, or a 0/1
 * property with another value (e.g. §3.1.2.11.7).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { MqttMalformedError, MqttProtocolError } from "./errors.ts";

/** Value kinds of the properties (MQTT 5 §2.2.2.2, §1.5). */
const enum Kind {
  Flag, // one byte, 0 or 1; a boolean (as mqtt-packet gives it)
  FlagNumber, // one byte, 0 or 1; a number (Maximum QoS)
  Two,
  Four,
  VarInt,
  Text, // UTF-8 Encoded String
  Binary, // Binary Data
  Pair, // UTF-8 String Pair
}

// Where a property may appear: bit n is packet type n (MQTT 5 §2.1.2); bit 0 is a will.
const WILL = 1 << 0;
const CONNECT = 1 << 1;
const CONNACK = 1 << 2;
const PUBLISH = 1 << 3;
const PUBACK = 1 << 4;
const PUBREC = 1 << 5;
const PUBREL = 1 << 6;
const PUBCOMP = 1 << 7;
const SUBSCRIBE = 1 << 8;
const SUBACK = 1 << 9;
const UNSUBSCRIBE = 1 << 10;
const UNSUBACK = 1 << 11;
const DISCONNECT = 1 << 14;
const AUTH = 1 << 15;
const REPLY = PUBACK | PUBREC | PUBREL | PUBCOMP | SUBACK | UNSUBACK | DISCONNECT | AUTH;
const MESSAGE = PUBLISH | WILL;
const EVERY = CONNECT | CONNACK | MESSAGE | REPLY | SUBSCRIBE | UNSUBSCRIBE;

interface Def {
  /** mqtt-packet's name, so the rest of the adapter reads the same object shape. */
  name: string;
  kind: Kind;
  /** Where it is valid. */
  where: number;
  /** Where it may appear more than once. */
  repeat: number;
}

/** MQTT 5 §2.2.2.2 table 2-4, by identifier. */
const DEFS: Array<Def | undefined> = [];
function def(id: number, name: string, kind: Kind, where: number, repeat = 0): void {
  DEFS[id] = { name, kind, where, repeat };
}
def(0x01, "payloadFormatIndicator", Kind.Flag, MESSAGE);
def(0x02, "messageExpiryInterval", Kind.Four, MESSAGE);
def(0x03, "contentType", Kind.Text, MESSAGE);
def(0x08, "responseTopic", Kind.Text, MESSAGE);
def(0x09, "correlationData", Kind.Binary, MESSAGE);
// Several in a server's PUBLISH ([MQTT-3.3.4-3]); a client's PUBLISH may carry none
// ([MQTT-3.3.4-6], checked by the PUBLISH handler); once in SUBSCRIBE (§3.8.2.1.2).
def(0x0b, "subscriptionIdentifier", Kind.VarInt, PUBLISH | SUBSCRIBE, PUBLISH);
def(0x11, "sessionExpiryInterval", Kind.Four, CONNECT | CONNACK | DISCONNECT);
def(0x12, "assignedClientIdentifier", Kind.Text, CONNACK);
def(0x13, "serverKeepAlive", Kind.Two, CONNACK);
def(0x15, "authenticationMethod", Kind.Text, CONNECT | CONNACK | AUTH);
def(0x16, "authenticationData", Kind.Binary, CONNECT | CONNACK | AUTH);
def(0x17, "requestProblemInformation", Kind.Flag, CONNECT);
def(0x18, "willDelayInterval", Kind.Four, WILL);
def(0x19, "requestResponseInformation", Kind.Flag, CONNECT);
def(0x1a, "responseInformation", Kind.Text, CONNACK);
def(0x1c, "serverReference", Kind.Text, CONNACK | DISCONNECT);
def(0x1f, "reasonString", Kind.Text, CONNACK | REPLY);
def(0x21, "receiveMaximum", Kind.Two, CONNECT | CONNACK);
def(0x22, "topicAliasMaximum", Kind.Two, CONNECT | CONNACK);
def(0x23, "topicAlias", Kind.Two, PUBLISH);
def(0x24, "maximumQoS", Kind.FlagNumber, CONNACK);
def(0x25, "retainAvailable", Kind.Flag, CONNACK);
def(0x26, "userProperties", Kind.Pair, EVERY, EVERY);
def(0x27, "maximumPacketSize", Kind.Four, CONNECT | CONNACK);
def(0x28, "wildcardSubscriptionAvailable", Kind.Flag, CONNACK);
def(0x29, "subscriptionIdentifiersAvailable", Kind.Flag, CONNACK);
def(0x2a, "sharedSubscriptionAvailable", Kind.Flag, CONNACK);

const NAMES = [
  "reserved packet",
  "CONNECT",
  "CONNACK",
  "PUBLISH",
  "PUBACK",
  "PUBREC",
  "PUBREL",
  "PUBCOMP",
  "SUBSCRIBE",
  "SUBACK",
  "UNSUBSCRIBE",
  "UNSUBACK",
  "PINGREQ",
  "PINGRESP",
  "DISCONNECT",
  "AUTH",
];

// ignoreBOM: a leading U+FEFF is part of the string ([MQTT-1.5.4-3]).
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

const hex = (n: number): string => `0x${n.toString(16).padStart(2, "0")}`;

/** Properties as mqtt-packet shapes them (User Properties as name → value or values). */
export type ScannedProperties = Record<string, unknown>;

/** What the scan read of a frame. */
export interface ScanResult {
  /** The packet's properties (MQTT 5), absent when its section is empty. */
  properties?: ScannedProperties;
  /** A CONNECT's will properties (MQTT 5), absent when empty. */
  willProperties?: ScannedProperties;
  /** A PUBLISH's payload offset in the frame (MQTT 5). */
  payloadOffset?: number;
}

/** A cursor over one frame; every read is bounded by `limit` (the packet, or the section). */
class Reader {
  readonly b: Uint8Array;
  readonly packet: string;
  at: number;
  limit: number;
  /** What `limit` is the end of, for messages. */
  within = "the packet";

  constructor(b: Uint8Array, at: number, packet: string) {
    this.b = b;
    this.at = at;
    this.limit = b.length;
    this.packet = packet;
  }

  malformed(why: string): MqttMalformedError {
    return new MqttMalformedError(`Cannot decode ${this.packet}: ${why}`);
  }

  need(n: number, what: string): void {
    if (this.at + n > this.limit) {
      throw this.malformed(`${what} runs past the end of ${this.within} (MQTT 5 §2.2.2.1)`);
    }
  }

  u8(what: string): number {
    this.need(1, what);
    return this.b[this.at++];
  }

  u16(what: string): number {
    this.need(2, what);
    const v = (this.b[this.at] << 8) | this.b[this.at + 1];
    this.at += 2;
    return v;
  }

  u32(what: string): number {
    this.need(4, what);
    const b = this.b;
    const i = this.at;
    this.at += 4;
    return ((b[i] << 24) >>> 0) + ((b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]);
  }

  /** A Variable Byte Integer (MQTT 5 §1.5.5): at most four bytes, minimally encoded. */
  varInt(what: string): number {
    let v = 0;
    let mul = 1;
    for (let k = 0; k < 4; k++) {
      const x = this.u8(what);
      v += (x & 0x7f) * mul;
      if (!(x & 0x80)) {
        if (x === 0 && k > 0) {
          throw this.malformed(`${what} is not minimally encoded [MQTT-1.5.5-1]`);
        }
        return v;
      }
      mul *= 128;
    }
    throw this.malformed(`${what} is longer than four bytes (MQTT 5 §1.5.5)`);
  }

  /** Skips a two-byte length and its bytes; returns the offset of the bytes. */
  skip(what: string): number {
    const n = this.u16(what);
    this.need(n, what);
    const start = this.at;
    this.at += n;
    return start;
  }

  /** A UTF-8 Encoded String ([MQTT-1.5.4-1], [MQTT-1.5.4-2]). */
  text(what: string): string {
    const start = this.skip(what);
    let s: string;
    try {
      s = utf8.decode(this.b.subarray(start, this.at));
    } catch {
      throw this.malformed(`${what} is not well-formed UTF-8 [MQTT-1.5.4-1]`);
    }
    if (s.includes("\u0000")) throw this.malformed(`${what} contains U+0000 [MQTT-1.5.4-2]`);
    return s;
  }

  /** Binary Data, copied (the frame is a view into a socket read). */
  binary(what: string): Buffer {
    const start = this.skip(what);
    return Buffer.from(this.b.subarray(start, this.at));
  }

  /** Nothing may follow: the frame ends here. */
  end(what: string): void {
    if (this.at !== this.b.length) {
      throw this.malformed(`${this.b.length - this.at} bytes after ${what}`);
    }
  }

  /**
   * One property section (MQTT 5 §2.2.2): its length, then properties valid in `where`, read
   * within the section. Returns the properties, or `undefined` when the section is empty.
   */
  section(where: number): ScannedProperties | undefined {
    const len = this.varInt("the property length");
    this.need(len, `a property section of ${len} bytes`);
    if (len === 0) return undefined;
    const outer = this.limit;
    const outerWithin = this.within;
    const end = this.at + len;
    this.limit = end;
    this.within = "its property section";
    const out: ScannedProperties = {};
    let seenLow = 0; // identifiers 0..31
    let seenHigh = 0; // identifiers 32..63
    while (this.at < end) {
      const id = this.u8("a property identifier");
      const d = id < 0x80 ? DEFS[id] : undefined;
      if (d === undefined) {
        // §2.2.2.2: an identifier not defined (an identifier is a Variable Byte Integer, and
        // every defined one fits in one byte).
        throw this.malformed(`unknown property identifier ${hex(id)} (MQTT 5 §2.2.2.2)`);
      }
      const name = `property ${d.name} (${hex(id)})`;
      if (!(d.where & where)) {
        throw this.malformed(`${name} is not valid ${where === WILL ? "in a will" : "here"}`);
      }
      const bit = id < 32 ? 1 << id : 1 << (id - 32);
      const seen = id < 32 ? seenLow & bit : seenHigh & bit;
      if (seen && !(d.repeat & where)) {
        // §2.2.2.2 and §3.x.2.x: "It is a Protocol Error to include X more than once".
        throw new MqttProtocolError(`Cannot accept ${this.packet}: ${name} appears more than once`);
      }
      if (id < 32) seenLow |= bit;
      else seenHigh |= bit;
      let value: unknown;
      switch (d.kind) {
        case Kind.Flag:
        case Kind.FlagNumber: {
          const v = this.u8(name);
          if (v > 1) {
            // e.g. §3.1.2.11.7: "a value other than 0 or 1" is a Protocol Error.
            throw new MqttProtocolError(
              `Cannot accept ${this.packet}: ${name} has the value ${v}, not 0 or 1`,
            );
          }
          value = d.kind === Kind.Flag ? v === 1 : v;
          break;
        }
        case Kind.Two:
          value = this.u16(name);
          break;
        case Kind.Four:
          value = this.u32(name);
          break;
        case Kind.VarInt:
          value = this.varInt(name);
          break;
        case Kind.Text:
          value = this.text(name);
          break;
        case Kind.Binary:
          value = this.binary(name);
          break;
        case Kind.Pair: {
          const k = this.text(`the name of a ${name}`);
          const v = this.text(`the value of a ${name}`);
          const up = (out.userProperties ??= Object.create(null)) as Record<
            string,
            string | string[]
          >;
          const cur = up[k];
          up[k] = cur === undefined ? v : Array.isArray(cur) ? [...cur, v] : [cur, v];
          continue;
        }
      }
      const cur = out[d.name];
      out[d.name] = cur === undefined ? value : Array.isArray(cur) ? [...cur, value] : [cur, value];
    }
    this.limit = outer;
    this.within = outerWithin;
    return out;
  }
}

/**
 * The protocol level of a CONNECT frame (`MQTT` 4/5, `MQIsdp` 3, the bridge bit ignored), or
 * `undefined` when its name or level is not one Ferry speaks (mqtt-packet then reports it, so an
 * unsupported level still gets its CONNACK).
 *
 * @example
 * ```ts
 * import { connectLevel } from "./_strict_scan.ts";
 * // CONNECT "MQTT" level 5 …
 * const f = Uint8Array.from([0x10, 10, 0, 4, 0x4d, 0x51, 0x54, 0x54, 5, 2, 0, 0, 0]);
 * if (connectLevel(f) !== 5) throw new Error();
 * ```
 */
export function connectLevel(frame: Uint8Array): 3 | 4 | 5 | undefined {
  let i = 1;
  while (i < frame.length && frame[i] & 0x80) i++;
  i++;
  if (i + 2 > frame.length) return undefined;
  const n = (frame[i] << 8) | frame[i + 1];
  const at = i + 2 + n;
  if (at >= frame.length) return undefined;
  const level = frame[at] & 0x7f;
  const name = n === 4 ? "MQTT" : n === 6 ? "MQIsdp" : "";
  for (let k = 0; k < n && name; k++) if (frame[i + 2 + k] !== name.charCodeAt(k)) return undefined;
  if (name === "MQTT" && (level === 4 || level === 5)) return level;
  if (name === "MQIsdp" && level === 3) return 3;
  return undefined;
}

/**
 * Scans one whole frame of protocol level `version` (for a CONNECT, the level it carries, see
 * {@link connectLevel}). Throws {@link MqttMalformedError} or {@link MqttProtocolError}; returns
 * the properties read.
 *
 * @example
 * ```ts
 * import { strictScan } from "./_strict_scan.ts";
 * // The issue's PUBLISH: QoS 1, id 0x1234, a 1-byte property section holding a Message Expiry
 * // Interval (4 bytes) that runs into the payload.
 * const te = new TextEncoder();
 * const pub = Uint8Array.from([0x32, 0x12, 0, 5, ...te.encode("topic"), 0x12, 0x34, 1, 2, ...te.encode("payload")]);
 * let threw = false;
 * try { strictScan(pub, 5); } catch (e) { threw = (e as Error).name === "MqttMalformedError"; }
 * if (!threw) throw new Error("overrun accepted");
 * // A user property "a" = "b": read by the scan, not by mqtt-packet.
 * const ok = Uint8Array.from([0x30, 13, 0, 1, 0x74, 7, 0x26, 0, 1, 0x61, 0, 1, 0x62, 0x78, 0x79]);
 * const r = strictScan(ok, 5);
 * if ((r.properties?.userProperties as Record<string, string>).a !== "b" || r.payloadOffset !== 13) {
 *   throw new Error();
 * }
 * ```
 */
export function strictScan(frame: Uint8Array, version: 3 | 4 | 5): ScanResult {
  const type = frame[0] >> 4;
  let i = 1;
  while (frame[i] & 0x80) i++;
  i++;
  const r = new Reader(frame, i, NAMES[type]);
  const v5 = version === 5;
  const rl = frame.length - i;
  switch (type) {
    case 1: { // CONNECT: name, level, flags, keep alive, [properties], client id, will, user, password
      r.text("the protocol name");
      r.u8("the protocol level");
      const flags = r.u8("the connect flags");
      r.u16("the keep alive");
      const out: ScanResult = {};
      if (v5) out.properties = r.section(CONNECT);
      r.text("the client identifier");
      if (flags & 0x04) {
        if (v5) out.willProperties = r.section(WILL);
        r.text("the will topic");
        r.skip("the will payload");
      }
      if (flags & 0x80) r.text("the user name");
      if (flags & 0x40) r.skip("the password");
      if (r.at !== frame.length) {
        // The flags say what is there: a field whose flag is 0 MUST NOT be present.
        const why = !(flags & 0x80)
          ? `a user name is present but the User Name Flag is 0 ${
            v5 ? "[MQTT-3.1.2-16]" : "[MQTT-3.1.2-18]"
          }`
          : !(flags & 0x40)
          ? `a password is present but the Password Flag is 0 ${
            v5 ? "[MQTT-3.1.2-18]" : "[MQTT-3.1.2-20]"
          }`
          : undefined;
        const n = frame.length - r.at;
        throw r.malformed(`${n} bytes after the last field${why ? `: ${why}` : ""} [MQTT-3.1.4-1]`);
      }
      return out;
    }
    case 12:
    case 13: // PINGREQ, PINGRESP: no variable header, no payload (§3.12, §3.13)
      if (rl !== 0) throw r.malformed(`remaining length ${rl}, not 0`);
      return {};
  }
  if (!v5) {
    // 3.1/3.1.1 DISCONNECT has no body (3.1.1 §3.14); the rest is mqtt-packet's and the fast path's.
    if (type === 14 && rl !== 0) throw r.malformed(`remaining length ${rl}, not 0`);
    return {};
  }
  switch (type) {
    case 2: { // CONNACK: flags, reason code, properties
      r.u8("the acknowledge flags");
      r.u8("the reason code");
      const properties = r.section(CONNACK);
      r.end("the properties");
      return { properties };
    }
    case 3: { // PUBLISH: topic, packet id when QoS > 0, properties, payload
      r.skip("the topic name");
      if (frame[0] & 0x06) r.u16("the packet identifier");
      const properties = r.section(PUBLISH);
      return { properties, payloadOffset: r.at };
    }
    case 4:
    case 5:
    case 6:
    case 7: { // acks: packet id, then a reason code and properties when the length allows (§3.4.2)
      if (rl < 2) {
        throw r.malformed(`remaining length ${rl}: the packet identifier takes 2 bytes (§3.4.2)`);
      }
      r.u16("the packet identifier");
      if (rl === 2) return {};
      r.u8("the reason code");
      if (rl === 3) return {};
      const properties = r.section(1 << type);
      r.end("the properties");
      return { properties };
    }
    case 8:
    case 10: { // SUBSCRIBE, UNSUBSCRIBE: packet id, properties, topic filters (with options)
      r.u16("the packet identifier");
      const properties = r.section(1 << type);
      while (r.at < frame.length) {
        r.skip("a topic filter");
        if (type === 8) r.u8("the subscription options");
      }
      return { properties };
    }
    case 9:
    case 11: { // SUBACK, UNSUBACK: packet id, properties, reason codes
      r.u16("the packet identifier");
      return { properties: r.section(1 << type) };
    }
    case 14:
    case 15: { // DISCONNECT, AUTH: nothing, a reason code, or a reason code and properties
      if (rl === 0) return {};
      r.u8("the reason code");
      if (rl === 1) return {};
      const properties = r.section(1 << type);
      r.end("the properties");
      return { properties };
    }
  }
  return {};
}
