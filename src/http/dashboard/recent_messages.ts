/**
 * A bounded ring of the most recent messages, for the dashboard's device detail view. Payloads
 * are cut to a preview; the ring holds at most `capacity` messages whatever the device count.
 *
 * @module
 */

import type { Message } from "../../core/message.ts";

/** A message as the dashboard shows it. */
export interface MessagePreview {
  /** Topic. */
  topic: string;
  /** Device id, if any. */
  deviceId?: string;
  /** Protocol. */
  protocol: string;
  /** Accepted at (ms). */
  ts: number;
  /** Payload size, bytes. */
  size: number;
  /** Start of the payload as text (UTF-8, replacement characters for bad bytes). */
  preview: string;
}

const decoder = new TextDecoder();

/**
 * Keeps the last `capacity` messages.
 *
 * @example
 * ```ts
 * import { RecentMessages } from "./recent_messages.ts";
 * import { createMessage } from "../../core/message.ts";
 * const r = new RecentMessages(2);
 * for (const n of [1, 2, 3]) r.add(createMessage({ topic: `t/${n}`, payload: new Uint8Array(), deviceId: "a" }));
 * if (r.forDevice("a").map((m) => m.topic).join() !== "t/3,t/2") throw new Error();
 * ```
 */
interface Entry {
  topic: string;
  deviceId: string | undefined;
  protocol: string;
  ts: number;
  size: number;
  /** Bytes of the payload's head kept in the ring's arena, decoded only when viewed. */
  kept: number;
}

export class RecentMessages {
  // Every message to devices/# passes here, so recording one allocates nothing: entries are
  // reused in place and payload heads are copied into one arena (slot i at i × previewBytes).
  // A copy per message (a new Uint8Array each) cost more than the rest of the QoS 0 path
  // together in the ingest benchmark's profile.
  #ring: Entry[];
  #arena: Uint8Array;
  #next = 0;
  #size = 0;

  /** Creates a ring of `capacity` messages. */
  constructor(readonly capacity = 1000, readonly previewBytes = 256) {
    this.#ring = Array.from({ length: capacity }, () => ({
      topic: "",
      deviceId: undefined,
      protocol: "",
      ts: 0,
      size: 0,
      kept: 0,
    }));
    this.#arena = new Uint8Array(capacity * previewBytes);
  }

  /** Records a message. */
  add(msg: Message): void {
    const slot = this.#next;
    const e = this.#ring[slot];
    const payload = msg.payload;
    const kept = Math.min(payload.length, this.previewBytes);
    e.topic = msg.topic;
    e.deviceId = msg.deviceId;
    e.protocol = msg.protocol;
    e.ts = msg.ts;
    e.size = payload.length;
    e.kept = kept;
    const at = slot * this.previewBytes;
    if (kept <= 64) { // a short head: a loop, not a subarray object per message
      const arena = this.#arena;
      for (let k = 0; k < kept; k++) arena[at + k] = payload[k];
    } else this.#arena.set(payload.subarray(0, kept), at);
    this.#next = (slot + 1) % this.capacity;
    if (this.#size < this.capacity) this.#size++;
  }

  /** Recent messages of a device (by `deviceId` or topic prefix), newest first. */
  forDevice(id: string, limit = 50): MessagePreview[] {
    const out: MessagePreview[] = [];
    const prefix = `devices/${id}/`;
    for (let i = 1; i <= this.#size && out.length < limit; i++) {
      const m = this.#ring[(this.#next - i + this.capacity) % this.capacity];
      if (m.deviceId === id || m.topic.startsWith(prefix)) {
        const at = ((this.#next - i + this.capacity) % this.capacity) * this.previewBytes;
        out.push({
          topic: m.topic,
          ...(m.deviceId === undefined ? {} : { deviceId: m.deviceId }),
          protocol: m.protocol,
          ts: m.ts,
          size: m.size,
          preview: decoder.decode(this.#arena.subarray(at, at + m.kept)),
        });
      }
    }
    return out;
  }
}
