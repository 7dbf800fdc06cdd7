/**
 * Last-known-value store for retained messages (MQTT retain, device presence). Bounded in count;
 * an empty payload clears a topic ([MQTT-3.3.1-10]).
 *
 * @module
 */

import { type Message, ownPayload } from "./message.ts";
import { topicMatches } from "./topic_router.ts";

/** Tunables of {@link RetainedStore}. */
export interface RetainedStoreOptions {
  /** Most topics kept; a new topic past it is refused (`set` returns false). @default 100000 */
  maxTopics?: number;
}

/**
 * Keeps the last retained message per topic.
 *
 * @example
 * ```ts
 * import { RetainedStore } from "./retained_store.ts";
 * import { createMessage } from "./message.ts";
 * const s = new RetainedStore();
 * s.set(createMessage({ topic: "devices/a/status", payload: new TextEncoder().encode("online") }));
 * if (s.match("devices/+/status").length !== 1) throw new Error();
 * s.set(createMessage({ topic: "devices/a/status", payload: new Uint8Array() }));
 * if (s.size !== 0) throw new Error("empty payload must clear");
 * ```
 */
export class RetainedStore {
  #byTopic = new Map<string, Message>();
  #max: number;

  /** Creates an empty store. */
  constructor(options: RetainedStoreOptions = {}) {
    this.#max = options.maxTopics ?? 100_000;
  }

  /** Topics held. */
  get size(): number {
    return this.#byTopic.size;
  }

  /** Stores (or clears, for an empty payload) the retained message of its topic. */
  set(msg: Message): boolean {
    if (msg.payload.length === 0) {
      this.#byTopic.delete(msg.topic);
      return true;
    }
    if (!this.#byTopic.has(msg.topic) && this.#byTopic.size >= this.#max) return false;
    this.#byTopic.set(msg.topic, ownPayload(msg));
    return true;
  }

  /** The retained message of a topic. */
  get(topic: string): Message | undefined {
    return this.#byTopic.get(topic);
  }

  /** Retained messages whose topic matches `filter`, dropping expired ones. */
  match(filter: string, now = Date.now()): Message[] {
    const out: Message[] = [];
    const exact = !filter.includes("+") && !filter.includes("#");
    if (exact) {
      const m = this.#byTopic.get(filter);
      if (m) out.push(m);
    } else {
      for (const m of this.#byTopic.values()) if (topicMatches(filter, m.topic)) out.push(m);
    }
    return out.filter((m) => {
      const exp = m.properties?.expiresAt;
      if (exp !== undefined && exp <= now) {
        this.#byTopic.delete(m.topic);
        return false;
      }
      return true;
    });
  }
}
