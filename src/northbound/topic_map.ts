/**
 * Topic mapping between the gateway's namespace and the upstream broker's (rewrite rules, when
 * configured, come first; see `topic_rewrite.ts`):
 *
 * | local                            | upstream                                  |
 * |----------------------------------|-------------------------------------------|
 * | `devices/{id}/…` (forwarded)     | `{prefix}/devices/{id}/…`                 |
 * | `devices/{id}/commands/{name}`   | ← `{prefix}/devices/{id}/commands/{name}` |
 *
 * `prefix` defaults to `ferry/{gatewayId}`.
 *
 * @module
 */

import { topicMatches, validateFilter, validateTopic } from "../core/topic_router.ts";
import { parseTopic } from "../core/topics.ts";
import { checkRewrite, Rewriter, type RewriteRule } from "./topic_rewrite.ts";

/** Tunables of {@link TopicMap}. */
export interface TopicMapOptions {
  /** The gateway's id, substituted for `{gatewayId}` in `prefix`. */
  gatewayId: string;
  /** Upstream topic prefix. @default "ferry/{gatewayId}" */
  prefix?: string;
  /** Local filters forwarded upstream. @default ["devices/#"] */
  forward?: string[];
  /** Local filters never forwarded (they come from upstream). @default ["devices/+/commands/#"] */
  exclude?: string[];
  /** Rewrite rules, both directions (`{gatewayId}` substituted in templates). @default [] */
  rewrite?: RewriteRule[];
}

/**
 * Maps topics both ways.
 *
 * @example
 * ```ts
 * import { TopicMap } from "./topic_map.ts";
 * const m = new TopicMap({ gatewayId: "gw1" });
 * if (!m.forwards("devices/s1/telemetry/temp")) throw new Error();
 * if (m.forwards("devices/s1/commands/reboot")) throw new Error("commands come from upstream");
 * if (m.toUpstream("devices/s1/telemetry") !== "ferry/gw1/devices/s1/telemetry") throw new Error();
 * if (m.fromUpstream("ferry/gw1/devices/s1/commands/reboot") !== "devices/s1/commands/reboot") {
 *   throw new Error();
 * }
 * if (m.fromUpstream("ferry/gw1/devices/s1/telemetry") !== undefined) throw new Error();
 * ```
 */
export class TopicMap {
  /** The resolved upstream prefix (no trailing `/`). */
  readonly prefix: string;
  /** Upstream filter subscribed to for downlink commands. */
  readonly downlinkFilter: string;
  /** Every upstream filter to subscribe to: the default one and the downlink rules'. */
  readonly downlinkFilters: string[];
  #forward: string[];
  #exclude: string[];
  #up: Rewriter;
  #down: Rewriter;

  /** Validates the filters and resolves the prefix. */
  constructor(options: TopicMapOptions) {
    const prefix = (options.prefix ?? "ferry/{gatewayId}").replaceAll(
      "{gatewayId}",
      options.gatewayId,
    ).replace(/\/+$/, "");
    if (!prefix || validateTopic(prefix) !== undefined || /[+#]/.test(prefix)) {
      throw new TypeError(`Cannot map topics: prefix "${prefix}" must be non-empty, no wildcards`);
    }
    this.prefix = prefix;
    this.downlinkFilter = `${prefix}/devices/+/commands/#`;
    this.#forward = options.forward ?? ["devices/#"];
    this.#exclude = options.exclude ?? ["devices/+/commands/#"];
    for (const f of [...this.#forward, ...this.#exclude]) {
      const err = validateFilter(f);
      if (err) throw new TypeError(`Cannot map topics: filter "${f}": ${err}`);
    }
    const rules = (options.rewrite ?? []).map((r) => ({
      ...r,
      to: r.to.replaceAll("{gatewayId}", options.gatewayId),
      from: r.from.replaceAll("{gatewayId}", options.gatewayId),
    }));
    checkRewrite(rules, {
      forward: this.#forward,
      exclude: this.#exclude,
      downlinkFilter: this.downlinkFilter,
    });
    this.#up = new Rewriter(rules, "up");
    this.#down = new Rewriter(rules, "down");
    this.downlinkFilters = [this.downlinkFilter, ...this.#down.filters];
  }

  /** True when a local message on `topic` goes upstream. */
  forwards(topic: string): boolean {
    let hit = false;
    for (const f of this.#forward) {
      if (topicMatches(f, topic)) {
        hit = true;
        break;
      }
    }
    if (!hit) return false;
    for (const f of this.#exclude) if (topicMatches(f, topic)) return false;
    return true;
  }

  /** The upstream topic of a local one (an uplink rule's, or under the prefix). */
  toUpstream(topic: string): string {
    return this.#up.apply(topic) ?? `${this.prefix}/${topic}`;
  }

  /** The local command topic of an upstream one, or `undefined` when it is not a command. */
  fromUpstream(topic: string): string | undefined {
    const rewritten = this.#down.apply(topic);
    if (rewritten !== undefined) {
      return parseTopic(rewritten).kind === "command" ? rewritten : undefined;
    }
    if (!topic.startsWith(this.prefix + "/")) return undefined;
    const local = topic.slice(this.prefix.length + 1);
    return parseTopic(local).kind === "command" ? local : undefined;
  }
}
