/**
 * A scan of the raw MQTT 5 property sections of one frame, for what `mqtt-packet` hides once it has
 * decoded them: it turns one-byte flags into booleans (so a value of 2 reads as `true`) and misses
 * a repeated property whose first value is 0 or false. Only frames that went through mqtt-packet
 * are scanned (CONNECT and its will, PUBLISH with properties, acks with properties, SUBSCRIBE,
 * UNSUBSCRIBE, DISCONNECT, AUTH); the frame has already been decoded, so its structure is sound.
 *
 * @module
 */

/** Value kinds of the properties (MQTT 5 §2.2.2.2): bytes to skip, or how to read the length. */
const enum Kind {
  Flag, // one byte, 0 or 1
  Byte,
  Two,
  Four,
  VarInt,
  Bytes, // two-byte length, then data (UTF-8 string or binary data)
  Pair, // two strings
}

const KINDS: Record<number, Kind> = {
  0x01: Kind.Flag, // Payload Format Indicator
  0x02: Kind.Four, // Message Expiry Interval
  0x03: Kind.Bytes, // Content Type
  0x08: Kind.Bytes, // Response Topic
  0x09: Kind.Bytes, // Correlation Data
  0x0b: Kind.VarInt, // Subscription Identifier
  0x11: Kind.Four, // Session Expiry Interval
  0x12: Kind.Bytes, // Assigned Client Identifier
  0x13: Kind.Two, // Server Keep Alive
  0x15: Kind.Bytes, // Authentication Method
  0x16: Kind.Bytes, // Authentication Data
  0x17: Kind.Flag, // Request Problem Information
  0x18: Kind.Four, // Will Delay Interval
  0x19: Kind.Flag, // Request Response Information
  0x1a: Kind.Bytes, // Response Information
  0x1c: Kind.Bytes, // Server Reference
  0x1f: Kind.Bytes, // Reason String
  0x21: Kind.Two, // Receive Maximum
  0x22: Kind.Two, // Topic Alias Maximum
  0x23: Kind.Two, // Topic Alias
  0x24: Kind.Flag, // Maximum QoS
  0x25: Kind.Flag, // Retain Available
  0x26: Kind.Pair, // User Property
  0x27: Kind.Four, // Maximum Packet Size
  0x28: Kind.Flag, // Wildcard Subscription Available
  0x29: Kind.Flag, // Subscription Identifier Available
  0x2a: Kind.Flag, // Shared Subscription Available
};

/** Reads a Variable Byte Integer at `i`: [value, next offset]. */
function varInt(b: Uint8Array, i: number): [number, number] {
  let v = 0;
  let mul = 1;
  for (let k = 0; k < 4 && i < b.length; k++) {
    const x = b[i++];
    v += (x & 0x7f) * mul;
    mul *= 128;
    if (!(x & 0x80)) break;
  }
  return [v, i];
}

function u16(b: Uint8Array, i: number): number {
  return (b[i] << 8) | b[i + 1];
}

/**
 * Checks one property section starting at `i` (its length); returns the problem or `undefined`,
 * and the offset after the section.
 */
function scanSection(b: Uint8Array, i: number): [string | undefined, number] {
  const [len, start] = varInt(b, i);
  const end = Math.min(b.length, start + len);
  const seen = new Set<number>();
  let at = start;
  while (at < end) {
    const id = b[at++];
    const kind = KINDS[id];
    if (kind === undefined) return [undefined, end]; // mqtt-packet refuses unknown ids
    // MQTT 5 §2.2.2.2, §3.x.2.x: "It is a Protocol Error to include X more than once"; only User
    // Property may repeat (Subscription Identifier only in a server's PUBLISH).
    if (id !== 0x26) {
      if (seen.has(id)) {
        return [`property 0x${id.toString(16).padStart(2, "0")} appears more than once`, end];
      }
      seen.add(id);
    }
    switch (kind) {
      case Kind.Flag:
        // e.g. §3.1.2.11.7 "a value other than 0 or 1" is a Protocol Error.
        if (b[at] > 1) {
          return [
            `property 0x${id.toString(16).padStart(2, "0")} has the value ${b[at]}, not 0 or 1`,
            end,
          ];
        }
        at += 1;
        break;
      case Kind.Byte:
        at += 1;
        break;
      case Kind.Two:
        at += 2;
        break;
      case Kind.Four:
        at += 4;
        break;
      case Kind.VarInt:
        at = varInt(b, at)[1];
        break;
      case Kind.Bytes:
        at += 2 + u16(b, at);
        break;
      case Kind.Pair:
        at += 2 + u16(b, at);
        at += 2 + u16(b, at);
        break;
    }
  }
  return [undefined, end];
}

/**
 * Returns why the property sections of a decoded MQTT 5 frame are a Protocol Error (a property
 * repeated, or a 0/1 property with another value), or `undefined` when they are fine.
 *
 * @example
 * ```ts
 * import { propertyProblem } from "./_property_scan.ts";
 * // SUBSCRIBE id 1, properties: User Property "a"="b" twice (allowed); filter "t" QoS 0
 * const sub = [0x82, 21, 0, 1, 14, 0x26, 0, 1, 97, 0, 1, 98, 0x26, 0, 1, 97, 0, 1, 98, 0, 1, 116, 0];
 * // DISCONNECT 0x00, properties: Session Expiry Interval twice
 * const dup = [0xe0, 12, 0, 10, 0x11, 0, 0, 0, 0, 0x11, 0, 0, 0, 1];
 * if (propertyProblem(Uint8Array.from(sub)) !== undefined) throw new Error();
 * if (!propertyProblem(Uint8Array.from(dup))) throw new Error();
 * ```
 */
export function propertyProblem(frame: Uint8Array): string | undefined {
  const type = frame[0] >> 4;
  let [rl, i] = varInt(frame, 1);
  const end = Math.min(frame.length, i + rl);
  rl = end - i;
  switch (type) {
    case 1: { // CONNECT: name, level, flags, keepalive, properties, client id, will properties
      i += 2 + u16(frame, i);
      const flags = frame[i + 1];
      const [why, after] = scanSection(frame, i + 4);
      if (why || !(flags & 0x04)) return why;
      return scanSection(frame, after + 2 + u16(frame, after))[0];
    }
    case 3: { // PUBLISH: topic, packet id when QoS > 0, properties
      i += 2 + u16(frame, i);
      if (frame[0] & 0x06) i += 2;
      return scanSection(frame, i)[0];
    }
    case 4:
    case 5:
    case 6:
    case 7: // acks: packet id, reason code, properties
      return rl > 3 ? scanSection(frame, i + 3)[0] : undefined;
    case 8:
    case 10: // SUBSCRIBE, UNSUBSCRIBE: packet id, properties
      return scanSection(frame, i + 2)[0];
    case 14:
    case 15: // DISCONNECT, AUTH: reason code, properties
      return rl > 1 ? scanSection(frame, i + 1)[0] : undefined;
    default:
      return undefined;
  }
}
