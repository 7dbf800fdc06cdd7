/**
 * UTF-8 and string rules of MQTT (3.1.1 §1.5.3, 5.0 §1.5.4) checked on decoded packets. mqtt-packet
 * decodes strings leniently (ill-formed bytes become U+FFFD), so a decoded string holding U+FFFD
 * is only accepted when the raw packet really carries the encoded U+FFFD (EF BF BD).
 *
 * @module
 */

import type { Packet } from "mqtt-packet";

const REPLACEMENT = "\uFFFD";

function hasEncodedReplacement(frame: Uint8Array): boolean {
  for (let i = 0; i + 2 < frame.length; i++) {
    if (frame[i] === 0xef && frame[i + 1] === 0xbf && frame[i + 2] === 0xbd) return true;
  }
  return false;
}

function collect(value: unknown, out: string[]): void {
  if (typeof value === "string") out.push(value);
  else if (Array.isArray(value)) { for (const v of value) collect(v, out); }
  else if (value && typeof value === "object" && !(value instanceof Uint8Array)) {
    for (const [k, v] of Object.entries(value)) {
      out.push(k);
      collect(v, out);
    }
  }
}

/**
 * Strings of a packet that MQTT requires to be well-formed UTF-8 (not payloads or passwords). The
 * strings of MQTT 5 properties are not here: the strict scan (`_strict_scan.ts`) decodes those from
 * the raw bytes itself.
 */
function packetStrings(p: Packet): string[] {
  const out: string[] = [];
  const a = p as unknown as Record<string, unknown>;
  for (const k of ["topic", "clientId", "username", "protocolId"]) collect(a[k], out);
  if (p.cmd === "subscribe") { for (const s of p.subscriptions) out.push(s.topic); }
  if (p.cmd === "unsubscribe") collect(p.unsubscriptions, out);
  if (p.cmd === "connect" && p.will) out.push(p.will.topic);
  return out;
}

/**
 * Returns why the strings of `packet` break the UTF-8 rules, or `undefined`:
 * ill-formed UTF-8 [MQTT-1.5.4-1] and U+0000 [MQTT-1.5.4-2].
 *
 * @example
 * ```ts
 * import { checkPacketStrings } from "./utf8.ts";
 * const p = { cmd: "unsubscribe", messageId: 1, unsubscriptions: ["a\u0000b"] } as const;
 * if (!checkPacketStrings(p as never, new Uint8Array())) throw new Error("U+0000 accepted");
 * ```
 */
export function checkPacketStrings(packet: Packet, frame: Uint8Array): string | undefined {
  let replacement: boolean | undefined;
  for (const s of packetStrings(packet)) {
    if (s.includes("\u0000")) return "a string contains U+0000 [MQTT-1.5.4-2]";
    if (s.includes(REPLACEMENT)) {
      replacement ??= hasEncodedReplacement(frame);
      if (!replacement) return "a string is not well-formed UTF-8 [MQTT-1.5.4-1]";
    }
  }
  return undefined;
}

const fatal = new TextDecoder("utf-8", { fatal: true });

/**
 * True when `bytes` are well-formed UTF-8 (payload format indicator 1, MQTT 5 §3.3.2.3.2).
 *
 * @example
 * ```ts
 * import { isWellFormedUtf8 } from "./utf8.ts";
 * if (!isWellFormedUtf8(new Uint8Array([0x68, 0xc3, 0xa9])) || isWellFormedUtf8(new Uint8Array([0xff]))) {
 *   throw new Error();
 * }
 * ```
 */
export function isWellFormedUtf8(bytes: Uint8Array): boolean {
  try {
    fatal.decode(bytes);
    return true;
  } catch {
    return false;
  }
}
