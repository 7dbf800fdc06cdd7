/**
 * A strict reader of what an MQTT server sends, written from the OASIS texts and sharing no code with
 * Ferry's codec or mqtt-packet: it frames a whole receive stream and checks every packet (fixed
 * header flags, Remaining Length, every field within it, packet identifiers, reason codes, each
 * MQTT 5 property section), and a stream that ends inside a packet. The raw test client runs every
 * byte it receives through it, so every test that uses one checks that Ferry never writes a
 * truncated or malformed packet (issue #14: a v5 PUBREC `50 00` was once answered `62 04` with no
 * body).
 *
 * @module
 */

/** Reason codes a server may put in each packet (MQTT 5 §2.4 and the packet sections). */
const PUBACK_CODES = [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_CODES = [0x00, 0x92];
const SUBACK_CODES = [0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2];
const UNSUBACK_CODES = [0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91];
const CONNACK_CODES = [
  0x00,
  0x80,
  0x81,
  0x82,
  0x83,
  0x84,
  0x85,
  0x86,
  0x87,
  0x88,
  0x89,
  0x8a,
  0x8c,
  0x90,
  0x95,
  0x97,
  0x99,
  0x9a,
  0x9b,
  0x9c,
  0x9d,
  0x9f,
];
const DISCONNECT_CODES = [
  0x00,
  0x04,
  0x80,
  0x81,
  0x82,
  0x83,
  0x87,
  0x89,
  0x8b,
  0x8d,
  0x8e,
  0x8f,
  0x90,
  0x93,
  0x94,
  0x95,
  0x96,
  0x97,
  0x98,
  0x99,
  0x9a,
  0x9b,
  0x9c,
  0x9d,
  0x9e,
  0x9f,
  0xa0,
  0xa1,
  0xa2,
];

// Property kinds: 1/2/4 fixed bytes, "v" Variable Byte Integer, "s" string, "b" binary, "p" pair.
type PropKind = 1 | 2 | 4 | "v" | "s" | "b" | "p";
/** [kind, packet types a server may send it in] (MQTT 5 §2.2.2.2, table 2-4). */
const PROPS: Record<number, [PropKind, number[]]> = {
  0x01: [1, [3]],
  0x02: [4, [3]],
  0x03: ["s", [3]],
  0x08: ["s", [3]],
  0x09: ["b", [3]],
  0x0b: ["v", [3]],
  0x11: [4, [2, 14]],
  0x12: ["s", [2]],
  0x13: [2, [2]],
  0x15: ["s", [2, 15]],
  0x16: ["b", [2, 15]],
  0x1a: ["s", [2]],
  0x1c: ["s", [2, 14]],
  0x1f: ["s", [2, 4, 5, 6, 7, 9, 11, 14, 15]],
  0x21: [2, [2]],
  0x22: [2, [2]],
  0x23: [2, [3]],
  0x24: [1, [2]],
  0x25: [1, [2]],
  0x26: ["p", [2, 3, 4, 5, 6, 7, 9, 11, 14, 15]],
  0x27: [4, [2]],
  0x28: [1, [2]],
  0x29: [1, [2]],
  0x2a: [1, [2]],
};

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");

class Bad extends Error {}

/** A bounded cursor: every read past `end` is a problem. */
class Cursor {
  constructor(readonly b: Uint8Array, public at: number, public end: number) {}
  need(n: number, what: string) {
    if (this.at + n > this.end) throw new Bad(`${what} runs past its end`);
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
  vbi(what: string): number {
    let v = 0;
    for (let k = 0, mul = 1; k < 4; k++, mul *= 128) {
      const x = this.u8(what);
      v += (x & 0x7f) * mul;
      if (!(x & 0x80)) {
        if (x === 0 && k > 0) throw new Bad(`${what} is not minimally encoded`);
        return v;
      }
    }
    throw new Bad(`${what} is longer than four bytes`);
  }
  bytes(what: string): Uint8Array {
    const n = this.u16(what);
    this.need(n, what);
    const out = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  text(what: string): string {
    let s: string;
    try {
      s = utf8.decode(this.bytes(what));
    } catch (e) {
      if (e instanceof Bad) throw e;
      throw new Bad(`${what} is not UTF-8`);
    }
    if (s.includes("\u0000")) throw new Bad(`${what} contains U+0000`);
    return s;
  }
  /** A property section valid for a server's packet of `type`. */
  props(type: number): Map<number, unknown[]> {
    const len = this.vbi("property length");
    this.need(len, "property section");
    const end = this.at + len;
    const outer = this.end;
    this.end = end;
    const seen = new Map<number, unknown[]>();
    while (this.at < end) {
      const id = this.u8("property id");
      const def = PROPS[id];
      if (!def) throw new Bad(`unknown property 0x${id.toString(16)}`);
      if (!def[1].includes(type)) throw new Bad(`property 0x${id.toString(16)} not valid here`);
      if (seen.has(id) && id !== 0x26 && !(id === 0x0b && type === 3)) {
        throw new Bad(`property 0x${id.toString(16)} twice`);
      }
      const k = def[0];
      const v = k === 1
        ? this.u8("property")
        : k === 2
        ? this.u16("property")
        : k === 4
        ? (this.need(4, "property"), this.at += 4)
        : k === "v"
        ? this.vbi("property")
        : k === "s"
        ? this.text("property")
        : k === "b"
        ? this.bytes("property")
        : [this.text("property name"), this.text("property value")];
      seen.set(id, [...(seen.get(id) ?? []), v]);
    }
    this.end = outer;
    return seen;
  }
  done(what: string) {
    if (this.at !== this.end) throw new Bad(`${this.end - this.at} bytes after ${what}`);
  }
}

/**
 * Why one whole frame is not a packet a server of protocol level `version` may send, or
 * `undefined` when it is one.
 *
 * @example
 * ```ts
 * import { checkServerPacket } from "./_mqtt_wire.ts";
 * if (checkServerPacket(Uint8Array.from([0x62, 2, 0, 1]), 5) !== undefined) throw new Error();
 * if (!checkServerPacket(Uint8Array.from([0x40, 2, 0, 0]), 4)) throw new Error("id 0 passed");
 * // v5 PUBACK whose Reason String runs past its property section
 * if (!checkServerPacket(Uint8Array.from([0x40, 7, 0, 1, 0x80, 3, 0x1f, 0, 5]), 5)) throw new Error();
 * ```
 */
export function checkServerPacket(f: Uint8Array, version: 3 | 4 | 5): string | undefined {
  const type = f[0] >> 4;
  const flags = f[0] & 0x0f;
  let i = 1;
  while (f[i] & 0x80) i++;
  i++;
  const c = new Cursor(f, i, f.length);
  const rl = f.length - i;
  const v5 = version === 5;
  const id = (what: string) => {
    const n = c.u16(what);
    if (n === 0) throw new Bad("packet identifier 0");
    return n;
  };
  try {
    if (type !== 3 && flags !== (type === 6 ? 2 : 0)) throw new Bad(`fixed-header flags ${flags}`);
    switch (type) {
      case 2: {
        const ack = c.u8("acknowledge flags");
        if (ack & 0xfe) throw new Bad("reserved acknowledge flags");
        const rc = c.u8("return code");
        if (!v5) {
          if (rc > 5) throw new Bad(`return code ${rc}`);
        } else {
          if (!CONNACK_CODES.includes(rc)) throw new Bad(`CONNACK reason 0x${rc.toString(16)}`);
          c.props(2);
        }
        if (rc !== 0 && ack) throw new Bad("session present with a refusal [MQTT-3.2.2-4]");
        c.done("CONNACK");
        return undefined;
      }
      case 3: {
        const qos = (flags >> 1) & 3;
        if (qos === 3) throw new Bad("QoS 3");
        if (qos === 0 && flags & 8) throw new Bad("DUP on QoS 0");
        const topic = c.text("topic");
        if (topic.includes("+") || topic.includes("#")) throw new Bad("wildcard in a topic");
        if (qos > 0) id("packet id");
        if (v5) {
          const p = c.props(3);
          if (topic === "" && !p.has(0x23)) throw new Bad("empty topic without a topic alias");
        } else if (topic === "") throw new Bad("empty topic");
        return undefined;
      }
      case 4:
      case 5:
      case 6:
      case 7: {
        if (!v5 && rl !== 2) throw new Bad(`remaining length ${rl}`);
        id("packet id");
        if (rl >= 3) {
          const rc = c.u8("reason code");
          const ok = type === 4 || type === 5 ? PUBACK_CODES : PUBREL_CODES;
          if (!ok.includes(rc)) throw new Bad(`reason 0x${rc.toString(16)}`);
        }
        if (rl >= 4) c.props(type);
        c.done("the acknowledgement");
        return undefined;
      }
      case 9:
      case 11: {
        id("packet id");
        if (!v5 && type === 11) {
          c.done("UNSUBACK");
          return undefined;
        }
        if (v5) c.props(type);
        if (c.at >= c.end) throw new Bad("no reason codes");
        while (c.at < c.end) {
          const rc = c.u8("reason code");
          const ok = type === 11 ? UNSUBACK_CODES : v5 ? SUBACK_CODES : [0, 1, 2, 0x80];
          if (!ok.includes(rc)) throw new Bad(`reason 0x${rc.toString(16)}`);
        }
        return undefined;
      }
      case 13:
        c.done("PINGRESP");
        return undefined;
      case 14:
      case 15: {
        if (!v5) throw new Bad(`${type === 14 ? "DISCONNECT" : "AUTH"} from a 3.1.1 server`);
        if (rl === 0) return undefined;
        const rc = c.u8("reason code");
        if (type === 14 && !DISCONNECT_CODES.includes(rc)) {
          throw new Bad(`DISCONNECT reason 0x${rc.toString(16)}`);
        }
        if (rl >= 2) c.props(type);
        c.done("the properties");
        return undefined;
      }
      default:
        throw new Bad(`packet type ${type} is not sent by a server`);
    }
  } catch (e) {
    if (e instanceof Bad) return `${e.message} in ${hex(f)}`;
    throw e;
  }
}

/**
 * Frames a server's whole receive stream and checks every packet with {@link checkServerPacket};
 * what is wrong is collected in {@link ServerStream.problems}.
 *
 * @example
 * ```ts
 * import { ServerStream } from "./_mqtt_wire.ts";
 * const s = new ServerStream(5);
 * s.push(Uint8Array.from([0x20, 3, 0, 0, 0, 0x62, 0x04])); // CONNACK, then a bodiless PUBREL
 * s.end();
 * if (s.frames.length !== 1 || s.problems[0] !== "the stream ended inside a packet: 62 04") {
 *   throw new Error(s.problems.join());
 * }
 * ```
 */
export class ServerStream {
  /** Whole frames received, in order. */
  readonly frames: Uint8Array[] = [];
  /** What is wrong with the stream, in order. */
  readonly problems: string[] = [];
  #buf = new Uint8Array(0);

  /** Checks packets of protocol level `version`. */
  constructor(readonly version: 3 | 4 | 5) {}

  /** Takes the next bytes received. */
  push(bytes: Uint8Array): void {
    const b = new Uint8Array(this.#buf.length + bytes.length);
    b.set(this.#buf);
    b.set(bytes, this.#buf.length);
    let at = 0;
    for (;;) {
      if (b.length - at < 2) break;
      let len = 0;
      let i = at + 1;
      let ok = false;
      for (let k = 0, mul = 1; k < 4 && i < b.length; k++, mul *= 128) {
        const x = b[i++];
        len += (x & 0x7f) * mul;
        if (!(x & 0x80)) {
          ok = true;
          break;
        }
      }
      if (!ok) {
        if (i - at - 1 >= 4) {
          this.problems.push(`Remaining Length longer than four bytes: ${hex(b.subarray(at))}`);
          this.#buf = new Uint8Array(0);
          return;
        }
        break;
      }
      if (b.length < i + len) break;
      const frame = b.slice(at, i + len);
      this.frames.push(frame);
      const why = checkServerPacket(frame, this.version);
      if (why) this.problems.push(why);
      at = i + len;
    }
    this.#buf = b.slice(at);
  }

  /** The stream ended: bytes of an unfinished packet are a truncated packet. */
  end(): void {
    if (this.#buf.length) {
      this.problems.push(`the stream ended inside a packet: ${hex(this.#buf)}`);
      this.#buf = new Uint8Array(0);
    }
  }
}
