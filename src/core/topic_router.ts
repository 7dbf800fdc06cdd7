/**
 * A topic trie with MQTT filter semantics: `+` matches one level, `#` matches the rest (including
 * the parent level), and topics starting with `$` are not matched by a wildcard in the first level
 * ([MQTT-4.7.2-1]). Used by the core for every subscription, whatever the protocol.
 *
 * @module
 */

// Collections are created on first use: with one command subscription per connected device,
// most nodes are leaves (no children) or inner nodes (no values), and an empty Map/Set costs
// a few hundred bytes each.
interface TrieNode<T> {
  children?: Map<string, TrieNode<T>>;
  values?: Set<T>;
}

function node<T>(): TrieNode<T> {
  return {};
}

/**
 * Checks a topic filter: non-empty, `#` only last and alone in its level, `+` alone in its level
 * ([MQTT-4.7.1-2], [MQTT-4.7.1-3]). Returns an error message or `undefined`.
 */
export function validateFilter(filter: string): string | undefined {
  if (filter.length === 0) return "topic filter is empty";
  if (filter.includes("\u0000")) return "topic filter contains U+0000";
  const levels = filter.split("/");
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i];
    if (l.includes("#") && (l !== "#" || i !== levels.length - 1)) {
      return "'#' must be the last level and alone in it";
    }
    if (l.includes("+") && l !== "+") return "'+' must be alone in its level";
  }
  return undefined;
}

/** Checks a topic name to publish to: non-empty, no wildcards, no U+0000 ([MQTT-3.3.2-2]). */
export function validateTopic(topic: string): string | undefined {
  if (topic.length === 0) return "topic is empty";
  if (topic.includes("+") || topic.includes("#")) return "topic contains a wildcard";
  if (topic.includes("\u0000")) return "topic contains U+0000";
  return undefined;
}

/**
 * True when `topic` matches `filter`.
 *
 * @example
 * ```ts
 * import { topicMatches } from "./topic_router.ts";
 * if (!topicMatches("devices/+/telemetry/#", "devices/a/telemetry")) throw new Error();
 * if (topicMatches("#", "$SYS/x")) throw new Error("$ topics are not matched by #");
 * ```
 */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split("/");
  const t = topic.split("/");
  if (topic.startsWith("$") && (f[0] === "+" || f[0] === "#")) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

const NONE: readonly never[] = Object.freeze([]);
/** Topics whose matches are cached. */
const MATCH_CACHE_SIZE = 4096;

/**
 * Maps topic filters to values and finds every value whose filter matches a topic.
 *
 * @example
 * ```ts
 * import { TopicRouter } from "./topic_router.ts";
 * const r = new TopicRouter<string>();
 * r.add("devices/+/telemetry/#", "all-telemetry");
 * r.add("devices/a/status", "a-status");
 * const hits = r.match("devices/a/telemetry/temp");
 * if (hits.length !== 1 || hits[0] !== "all-telemetry") throw new Error();
 * ```
 */
export class TopicRouter<T> {
  #root: TrieNode<T> = node();
  #size = 0;
  // Matches of recent topics: devices publish to the same few topics again and again. Any change
  // of the subscriptions clears it; bounded by clearing when full.
  #cache = new Map<string, readonly T[]>();

  /** Number of (filter, value) pairs. */
  get size(): number {
    return this.#size;
  }

  /** Adds `value` under `filter`; adding the same pair twice is a no-op. */
  add(filter: string, value: T): void {
    const err = validateFilter(filter);
    if (err) throw new TypeError(`Cannot add topic filter "${filter}": ${err}`);
    let n = this.#root;
    for (const level of filter.split("/")) {
      n.children ??= new Map();
      let c = n.children.get(level);
      if (!c) n.children.set(level, c = node());
      n = c;
    }
    n.values ??= new Set();
    if (!n.values.has(value)) {
      n.values.add(value);
      this.#size++;
      if (this.#cache.size) this.#cache.clear();
    }
  }

  /** Removes `value` from `filter`; returns whether it was there. */
  remove(filter: string, value: T): boolean {
    const path: Array<[TrieNode<T>, string]> = [];
    let n: TrieNode<T> | undefined = this.#root;
    for (const level of filter.split("/")) {
      path.push([n, level]);
      n = n.children?.get(level);
      if (!n) return false;
    }
    if (!n.values?.delete(value)) return false;
    if (n.values.size === 0) n.values = undefined;
    this.#size--;
    if (this.#cache.size) this.#cache.clear();
    for (let i = path.length - 1; i >= 0; i--) { // prune empty branches
      const [parent, level] = path[i];
      const child = parent.children!.get(level)!;
      if (child.values || child.children) break;
      parent.children!.delete(level);
      if (parent.children!.size === 0) parent.children = undefined;
    }
    return true;
  }

  /** Every value whose filter matches `topic` (a value under two matching filters appears twice). */
  match(topic: string): T[] {
    const out: T[] = [];
    this.forEachMatch(topic, (v) => out.push(v));
    return out;
  }

  /**
   * Calls `fn` for every value whose filter matches `topic`. The matches of a topic are computed
   * once and cached until the subscriptions change, so a hot topic costs one map lookup.
   */
  forEachMatch(topic: string, fn: (value: T) => void): void {
    const hits = this.matches(topic);
    for (let i = 0; i < hits.length; i++) fn(hits[i]);
  }

  /**
   * The values whose filters match `topic`, as a cached array that must not be changed (valid
   * until the subscriptions change): the per-message path iterates it without a callback.
   */
  matches(topic: string): readonly T[] {
    let hits = this.#cache.get(topic);
    if (hits === undefined) {
      const found: T[] = [];
      this.#walk(topic, (v) => found.push(v));
      hits = found.length ? found : NONE as readonly T[];
      if (this.#cache.size >= MATCH_CACHE_SIZE) this.#cache.clear();
      this.#cache.set(topic, hits);
    }
    return hits;
  }

  #walk(topic: string, fn: (value: T) => void): void {
    const levels = topic.split("/");
    const dollar = topic.startsWith("$");
    const walk = (n: TrieNode<T>, i: number) => {
      const skipWild = dollar && i === 0;
      const children = n.children;
      if (!skipWild && children) {
        const hash = children.get("#");
        if (hash?.values) { for (const v of hash.values) fn(v); }
      }
      if (i === levels.length) {
        if (n.values) { for (const v of n.values) fn(v); }
        return;
      }
      if (!children) return;
      const exact = children.get(levels[i]);
      if (exact) walk(exact, i + 1);
      if (!skipWild) {
        const plus = children.get("+");
        if (plus) walk(plus, i + 1);
      }
    };
    walk(this.#root, 0);
  }
}
