/**
 * Loop detection over a set of rules. A rule may publish (its `publish` filters, which its outputs
 * into the core are held to) onto topics another rule consumes (its `from` filters); that makes an
 * edge. A rule whose outputs can match its own `from`, or a cycle of such edges, would feed
 * messages around forever, so the set is refused at load.
 *
 * @module
 */

/** What loop detection needs of a rule. */
export interface RuleEdgeSpec {
  /** Rule name. */
  name: string;
  /** Filters it consumes. */
  from: readonly string[];
  /** Filters its outputs into the core may match (empty when it only routes northbound). */
  publish: readonly string[];
}

/**
 * True when some topic matches both filters.
 *
 * @example
 * ```ts
 * import { filtersOverlap } from "./rule_graph.ts";
 * if (!filtersOverlap("devices/+/telemetry/#", "devices/a/#")) throw new Error();
 * if (!filtersOverlap("a/#", "a")) throw new Error("# matches its parent level");
 * if (filtersOverlap("rules/x/#", "devices/#")) throw new Error();
 * ```
 */
export function filtersOverlap(a: string, b: string): boolean {
  const x = a.split("/");
  const y = b.split("/");
  for (let i = 0;; i++) {
    if (x[i] === "#" || y[i] === "#") return true;
    if (i === x.length || i === y.length) return x.length === y.length;
    if (x[i] !== "+" && y[i] !== "+" && x[i] !== y[i]) return false;
  }
}

/**
 * The first loop in `rules` as a list of names (`["a", "a"]` for a rule that consumes its own
 * output, `["a", "b", "a"]` for a cycle), or undefined.
 *
 * @example
 * ```ts
 * import { findRuleLoop } from "./rule_graph.ts";
 * const loop = findRuleLoop([
 *   { name: "a", from: ["devices/#"], publish: ["rules/a/#"] },
 *   { name: "b", from: ["rules/a/#"], publish: ["devices/x/telemetry"] },
 * ]);
 * if (loop?.join(" → ") !== "a → b → a") throw new Error(String(loop));
 * ```
 */
export function findRuleLoop(rules: readonly RuleEdgeSpec[]): string[] | undefined {
  const feeds = (p: RuleEdgeSpec, c: RuleEdgeSpec) =>
    p.publish.some((o) => c.from.some((f) => filtersOverlap(o, f)));
  const state = new Map<string, "visiting" | "done">();
  const stack: string[] = [];
  const visit = (r: RuleEdgeSpec): string[] | undefined => {
    state.set(r.name, "visiting");
    stack.push(r.name);
    for (const next of rules) {
      if (!feeds(r, next)) continue;
      const s = state.get(next.name);
      if (s === "visiting") return [...stack.slice(stack.indexOf(next.name)), next.name];
      if (s === undefined) {
        const loop = visit(next);
        if (loop) return loop;
      }
    }
    stack.pop();
    state.set(r.name, "done");
    return undefined;
  };
  for (const r of rules) {
    if (state.has(r.name)) continue;
    const loop = visit(r);
    if (loop) return loop;
  }
  return undefined;
}
