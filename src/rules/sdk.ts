/**
 * What a rule module imports: the contract's types and the helpers, in one place. Rule authors
 * import it as `ferry/rules` (an import-map entry in Ferry's `deno.json`; in a project of your own,
 * map `ferry/rules` to this file); the gateway resolves that specifier itself when it loads a rule
 * into its sandbox (`docs/rules.md`, "Imports").
 *
 * @example
 * ```ts
 * import { json, type RuleFunction } from "./sdk.ts";
 * const rule: RuleFunction = (msg) => ({ topic: "out", payload: json.stringify(json.parse(msg)) });
 * const msg = { topic: "in", payload: new TextEncoder().encode("[1]") } as never;
 * const out = rule(msg, {} as never) as { payload: string };
 * if (out.payload !== "[1]") throw new Error();
 * ```
 *
 * @module
 */

export type * from "./types.ts";
export * from "./helpers.ts";
