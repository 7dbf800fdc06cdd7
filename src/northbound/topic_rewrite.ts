/**
 * Topic rewrite rules of a bridge, both ways, in the style of EMQX's topic rewrite: a rule has an
 * MQTT filter `from` and a template `to` whose `{1}`, `{2}`, … stand for what the filter's
 * wildcards (`+`, `#`, in order) matched; each `{n}` fills whole topic levels.
 *
 * ```
 * up:   { from: "devices/+/telemetry/#", to: "site7/{1}/t/{2}" }
 *       devices/s1/telemetry/temp  →  site7/s1/t/temp
 * down: { from: "cloud/cmd/+/+",         to: "devices/{1}/commands/{2}" }
 *       cloud/cmd/s1/reboot        →  devices/s1/commands/reboot
 * ```
 *
 * Checked when the configuration loads ({@link checkRewrite}): rules of one direction whose
 * filters can match the same topic are **ambiguous**; an uplink rule whose output the bridge's
 * downlink subscription would receive back, or a downlink rule whose output the bridge would
 * forward up again, is a **loop**; a downlink rule must produce a command topic.
 *
 * @module
 */

import { topicMatches, validateFilter } from "../core/topic_router.ts";

/** One rewrite rule. */
export interface RewriteRule {
  /** `up`: local → upstream; `down`: upstream → local command. */
  direction: "up" | "down";
  /** MQTT filter matched against the source topic. */
  from: string;
  /** Template of the new topic; `{n}` is the n-th wildcard's match. */
  to: string;
}

/**
 * Matches `topic` against `filter`; returns what each wildcard matched, in order (`#`: the rest,
 * levels joined by `/`, possibly empty), or `undefined` when it does not match.
 *
 * @example
 * ```ts
 * import { captures } from "./topic_rewrite.ts";
 * if (captures("a/+/c/#", "a/b/c/d/e")?.join() !== "b,d/e") throw new Error();
 * if (captures("a/+", "x/y") !== undefined) throw new Error();
 * ```
 */
export function captures(filter: string, topic: string): string[] | undefined {
  if (!topicMatches(filter, topic)) return undefined;
  const f = filter.split("/");
  const t = topic.split("/");
  const out: string[] = [];
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") {
      out.push(t.slice(i).join("/"));
      break;
    }
    if (f[i] === "+") out.push(t[i]);
  }
  return out;
}

/** Fills a template's `{n}` levels with captures (an empty `#` capture drops its level). */
export function fill(template: string, caps: string[]): string {
  const out: string[] = [];
  for (const level of template.split("/")) {
    const m = /^\{(\d+)\}$/.exec(level);
    if (!m) {
      out.push(level);
      continue;
    }
    const v = caps[Number(m[1]) - 1] ?? "";
    if (v !== "") out.push(v);
  }
  return out.join("/");
}

/**
 * True when some topic matches both filters.
 *
 * @example
 * ```ts
 * import { filtersOverlap } from "./topic_rewrite.ts";
 * if (!filtersOverlap("a/+/c", "a/b/#")) throw new Error();
 * if (filtersOverlap("a/b", "a/c/#")) throw new Error();
 * ```
 */
export function filtersOverlap(a: string, b: string): boolean {
  const x = a.split("/");
  const y = b.split("/");
  for (let i = 0;; i++) {
    if (x[i] === "#" || y[i] === "#") return true;
    if (i === x.length || i === y.length) {
      if (i === x.length && i === y.length) return true;
      return (i === x.length ? y[i] : x[i]) === "#";
    }
    if (x[i] !== "+" && y[i] !== "+" && x[i] !== y[i]) return false;
  }
}

/**
 * True when every topic matching `inner` also matches `outer`.
 *
 * @example
 * ```ts
 * import { filterCovers } from "./topic_rewrite.ts";
 * if (!filterCovers("devices/+/commands/#", "devices/+/commands/+")) throw new Error();
 * if (filterCovers("devices/+/commands/+", "devices/#")) throw new Error();
 * ```
 */
export function filterCovers(outer: string, inner: string): boolean {
  const o = outer.split("/");
  const n = inner.split("/");
  for (let i = 0;; i++) {
    if (o[i] === "#") return true;
    if (i === o.length) return i === n.length;
    if (i === n.length) return false;
    if (n[i] === "#") return false;
    if (o[i] === "+") continue;
    if (n[i] === "+" || n[i] !== o[i]) return false;
  }
}

/** The filter every output of a rule matches (`{n}` → `+`, or `#` for a `#` capture). */
export function outputFilter(rule: RewriteRule): string {
  const kinds = rule.from.split("/").filter((l) => l === "+" || l === "#");
  return rule.to.split("/").map((level) => {
    const m = /^\{(\d+)\}$/.exec(level);
    return m ? (kinds[Number(m[1]) - 1] === "#" ? "#" : "+") : level;
  }).join("/");
}

/** Validates one rule's syntax; returns a message or `undefined`. */
function ruleError(r: RewriteRule): string | undefined {
  if (r.direction !== "up" && r.direction !== "down") return `direction must be "up" or "down"`;
  const fe = validateFilter(r.from);
  if (fe) return `filter "${r.from}": ${fe}`;
  const wild = r.from.split("/").filter((l) => l === "+" || l === "#");
  const levels = r.to.split("/");
  if (!r.to || levels.some((l) => l === "")) return `template "${r.to}" has an empty level`;
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i];
    if (/[+#]/.test(l)) return `template "${r.to}" must not contain wildcards`;
    if (l.includes("{") || l.includes("}")) {
      const m = /^\{(\d+)\}$/.exec(l);
      if (!m) return `template "${r.to}": {n} must fill a whole level`;
      const n = Number(m[1]);
      if (n < 1 || n > wild.length) {
        return `template "${r.to}": {${n}} but the filter has ${wild.length} wildcard(s)`;
      }
      if (wild[n - 1] === "#" && i !== levels.length - 1) {
        return `template "${r.to}": {${n}} stands for a # and must be the last level`;
      }
    }
  }
  return undefined;
}

/** What {@link checkRewrite} needs to know about the bridge. */
export interface RewriteContext {
  /** Local filters forwarded upstream. */
  forward: string[];
  /** Local filters never forwarded. */
  exclude: string[];
  /** The bridge's default downlink subscription (`{prefix}/devices/+/commands/#`). */
  downlinkFilter: string;
}

/**
 * Validates rules: syntax, ambiguity (two rules of one direction whose filters overlap), loops
 * (an uplink output that the bridge's downlink subscriptions receive back; a downlink output that
 * is forwarded up again) and that downlink rules produce command topics. Throws `TypeError`.
 *
 * @example
 * ```ts
 * import { checkRewrite } from "./topic_rewrite.ts";
 * const ctx = { forward: ["devices/#"], exclude: ["devices/+/commands/#"], downlinkFilter: "ferry/gw/devices/+/commands/#" };
 * checkRewrite([{ direction: "up", from: "devices/+/telemetry", to: "t/{1}" }], ctx);
 * let refused = false;
 * try {
 *   checkRewrite([{ direction: "up", from: "devices/+/telemetry", to: "ferry/gw/devices/{1}/commands/x" }], ctx);
 * } catch { refused = true; }
 * if (!refused) throw new Error("a looping rule was accepted");
 * ```
 */
export function checkRewrite(rules: RewriteRule[], ctx: RewriteContext): void {
  rules.forEach((r, i) => {
    const e = ruleError(r);
    if (e) throw new TypeError(`Invalid rewrite rule ${i}: ${e}`);
  });
  for (let i = 0; i < rules.length; i++) {
    for (let j = i + 1; j < rules.length; j++) {
      const a = rules[i];
      const b = rules[j];
      if (a.direction === b.direction && filtersOverlap(a.from, b.from)) {
        throw new TypeError(
          `Invalid rewrite rules ${i} and ${j}: ambiguous, "${a.from}" and "${b.from}" can match the same ${a.direction}link topic`,
        );
      }
    }
  }
  const downFilters = [
    ctx.downlinkFilter,
    ...rules.filter((r) => r.direction === "down").map((r) => r.from),
  ];
  rules.forEach((r, i) => {
    const out = outputFilter(r);
    if (r.direction === "up") {
      const back = downFilters.find((f) => filtersOverlap(f, out));
      if (back) {
        throw new TypeError(
          `Invalid rewrite rule ${i}: loop, its output "${r.to}" is received back by the downlink subscription "${back}"`,
        );
      }
      return;
    }
    const levels = out.split("/");
    if (
      levels.length < 4 || levels[0] !== "devices" || levels[2] !== "commands" ||
      levels[1] === "#"
    ) {
      throw new TypeError(
        `Invalid rewrite rule ${i}: a downlink rule must produce devices/{id}/commands/{name}, not "${r.to}"`,
      );
    }
    const up = ctx.forward.find((f) =>
      filtersOverlap(f, out) && !ctx.exclude.some((x) => filterCovers(x, out))
    );
    if (up) {
      throw new TypeError(
        `Invalid rewrite rule ${i}: loop, its output "${r.to}" is forwarded upstream again by "${up}" (exclude it)`,
      );
    }
  });
}

/**
 * Applies the rules of one direction: the first (and, once checked, only) rule whose filter
 * matches.
 *
 * @example
 * ```ts
 * import { Rewriter } from "./topic_rewrite.ts";
 * const r = new Rewriter([{ direction: "up", from: "devices/+/telemetry/#", to: "site/{1}/{2}" }], "up");
 * if (r.apply("devices/s1/telemetry/temp") !== "site/s1/temp") throw new Error();
 * if (r.apply("devices/s1/status") !== undefined) throw new Error();
 * ```
 */
export class Rewriter {
  #rules: RewriteRule[];

  /** Keeps the rules of `direction`. */
  constructor(rules: RewriteRule[], direction: "up" | "down") {
    this.#rules = rules.filter((r) => r.direction === direction);
  }

  /** Filters of the rules (the downlink ones are subscribed upstream). */
  get filters(): string[] {
    return this.#rules.map((r) => r.from);
  }

  /** The rewritten topic, or `undefined` when no rule matches. */
  apply(topic: string): string | undefined {
    for (const r of this.#rules) {
      const caps = captures(r.from, topic);
      if (caps) return fill(r.to, caps);
    }
    return undefined;
  }
}
