/**
 * Last-known-value store for retained messages (MQTT retain, device presence). Bounded in count;
 * an empty payload clears a topic ([MQTT-3.3.1-10]). Optionally durable: {@link RetainedStore.persist}
 * loads the messages a {@link RetainedPersistence} kept and tells it every change from then on (the
 * store knows no storage; the gateway gives it the SQLite table of `src/persistence/`).
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
 * Where retained messages are kept across restarts. Calls are synchronous: an implementation
 * queues the write (group commit) and must not throw.
 */
export interface RetainedPersistence {
  /** Every message kept, in any order. */
  load(): Message[];
  /** Keeps `msg` as the retained message of its topic. */
  set(msg: Message): void;
  /** Forgets the retained message of `topic`. */
  delete(topic: string): void;
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
  #persist: RetainedPersistence | undefined;

  /** Creates an empty store. */
  constructor(options: RetainedStoreOptions = {}) {
    this.#max = options.maxTopics ?? 100_000;
  }

  /**
   * Loads what `persistence` kept (expired messages are dropped, and forgotten there) and reports
   * every later change to it; returns the number of messages loaded.
   */
  persist(persistence: RetainedPersistence, now = Date.now()): number {
    this.#persist = persistence;
    let n = 0;
    for (const m of persistence.load()) {
      const exp = m.properties?.expiresAt;
      if (m.payload.length === 0 || (exp !== undefined && exp <= now)) {
        persistence.delete(m.topic);
        continue;
      }
      if (!this.#byTopic.has(m.topic) && this.#byTopic.size >= this.#max) continue;
      this.#byTopic.set(m.topic, m);
      n++;
    }
    return n;
  }

  /** Topics held. */
  get size(): number {
    return this.#byTopic.size;
  }

  /** Stores (or clears, for an empty payload) the retained message of its topic. */
  set(msg: Message): boolean {
    if (msg.payload.length === 0) {
      if (this.#byTopic.delete(msg.topic)) this.#persist?.delete(msg.topic);
      return true;
    }
    if (!this.#byTopic.has(msg.topic) && this.#byTopic.size >= this.#max) return false;
    this.#byTopic.set(msg.topic, ownPayload(msg));
    this.#persist?.set(msg);
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
        this.#persist?.delete(m.topic);
        return false;
      }
      return true;
    });
  }
}
