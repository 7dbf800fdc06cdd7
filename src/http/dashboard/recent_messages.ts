/**
 * A bounded ring of the most recent messages, for the dashboard's device detail view. Payloads
 * are cut to a preview; the ring holds at most `capacity` messages whatever the device count.
 *
 * @module
 */

import { type Message, ownBytes } from "../../core/message.ts";

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
  deviceId?: string;
  protocol: string;
  ts: number;
  size: number;
  head: Uint8Array; // a copy of the first bytes, decoded only when viewed
}

export class RecentMessages {
  #ring: Entry[];
  #next = 0;
  #size = 0;

  /** Creates a ring of `capacity` messages. */
  constructor(readonly capacity = 1000, readonly previewBytes = 256) {
    this.#ring = new Array(capacity);
  }

  /** Records a message. */
  add(msg: Message): void {
    this.#ring[this.#next] = {
      topic: msg.topic,
      deviceId: msg.deviceId,
      protocol: msg.protocol,
      ts: msg.ts,
      size: msg.payload.length,
      head: ownBytes(msg.payload.subarray(0, this.previewBytes)), // (Buffer#slice is a view)
    };
    this.#next = (this.#next + 1) % this.capacity;
    this.#size = Math.min(this.#size + 1, this.capacity);
  }

  /** Recent messages of a device (by `deviceId` or topic prefix), newest first. */
  forDevice(id: string, limit = 50): MessagePreview[] {
    const out: MessagePreview[] = [];
    const prefix = `devices/${id}/`;
    for (let i = 1; i <= this.#size && out.length < limit; i++) {
      const m = this.#ring[(this.#next - i + this.capacity) % this.capacity];
      if (m.deviceId === id || m.topic.startsWith(prefix)) {
        const { head, ...rest } = m;
        out.push({ ...rest, preview: decoder.decode(head) });
      }
    }
    return out;
  }
}
