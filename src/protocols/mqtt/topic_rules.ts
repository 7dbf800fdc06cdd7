/**
 * The MQTT listener's own topic rules, on top of the core's (`validateTopic`, `validateFilter`:
 * non-empty, wildcards, U+0000): a bound on topic levels, and topic names starting with `$` kept
 * for the server.
 *
 * - **Levels**: a topic name or filter with more than {@link MAX_TOPIC_SEPARATORS} `/` is refused,
 *   as mosquitto refuses it (`TOPIC_HIERARCHY_LIMIT`). MQTT sets no bound; every level is a node
 *   of the core's topic trie, so a filter of 30,000 levels would cost a gateway that much memory
 *   per subscription.
 * - **`$` topics**: MQTT 5 §4.7.2 (3.1.1 §4.7.2): "The Server SHOULD prevent Clients from using such
 *   Topic Names to exchange messages with other Clients." A client's PUBLISH or will to a topic
 *   starting with `$` is refused as not authorized (v5 0x87; 3.1.1 PUBLISH acknowledged and
 *   dropped, will: CONNACK 5). mosquitto 2.0.11 refuses `$SYS/…` and `$share/…` only (docs/mqtt.md).
 *
 * @module
 */

import { validateFilter, validateTopic } from "../../core/mod.ts";

/** Most `/` separators in a topic name or filter (mosquitto's `TOPIC_HIERARCHY_LIMIT`). */
export const MAX_TOPIC_SEPARATORS = 200;

function tooDeep(t: string): boolean {
  if (t.length <= MAX_TOPIC_SEPARATORS) return false;
  let n = 0;
  for (let i = t.indexOf("/"); i !== -1; i = t.indexOf("/", i + 1)) {
    if (++n > MAX_TOPIC_SEPARATORS) return true;
  }
  return false;
}

/**
 * Why `topic` cannot be published to over MQTT, or `undefined`.
 *
 * @example
 * ```ts
 * import { topicNameProblem } from "./topic_rules.ts";
 * if (topicNameProblem("a/b") || !topicNameProblem("a/+") || !topicNameProblem("/".repeat(201))) {
 *   throw new Error();
 * }
 * ```
 */
export function topicNameProblem(topic: string): string | undefined {
  const err = validateTopic(topic);
  if (err) return err;
  if (tooDeep(topic)) return `topic has more than ${MAX_TOPIC_SEPARATORS + 1} levels`;
  return undefined;
}

/**
 * Why `filter` cannot be subscribed to over MQTT, or `undefined`.
 *
 * @example
 * ```ts
 * import { topicFilterProblem } from "./topic_rules.ts";
 * if (topicFilterProblem("a/#") || !topicFilterProblem("") || !topicFilterProblem("a/#/b")) {
 *   throw new Error();
 * }
 * ```
 */
export function topicFilterProblem(filter: string): string | undefined {
  const err = validateFilter(filter);
  if (err) return err;
  if (tooDeep(filter)) return `topic filter has more than ${MAX_TOPIC_SEPARATORS + 1} levels`;
  return undefined;
}

/**
 * True when `topic` is kept for the server (it starts with `$`, MQTT §4.7.2).
 *
 * @example
 * ```ts
 * import { isServerTopic } from "./topic_rules.ts";
 * if (!isServerTopic("$SYS/x") || isServerTopic("a/$b")) throw new Error();
 * ```
 */
export function isServerTopic(topic: string): boolean {
  return topic.charCodeAt(0) === 36; // "$"
}
