/**
 * The configuration of rules: the `rules` section's schema fragment ({@link rulesOptionsSchema},
 * composed into the file's schema by `src/config/config.ts`), the {@link RuleConfig} type inferred
 * from it, its per-rule defaults, the engine's own tunables ({@link defaultRuleEngineLimits}), and
 * {@link resolveRules}, which fills the defaults that depend on the rule's name and refuses
 * duplicate names, bad filters and loops.
 *
 * @module
 */

import { validateFilter } from "../core/topic_router.ts";
import {
  bool,
  ConfigError,
  defaults,
  type Infer,
  int,
  list,
  obj,
  oneOf,
  optional,
  str,
} from "../config/schema.ts";
import { findRuleLoop } from "./rule_graph.ts";

/** What happens to a message a rule failed on (threw, timed out, too large). */
export type RuleOnError = "drop" | "pass" | "dead-letter";

/** Where a rule's outputs go unless an output says otherwise. */
export type RuleRoute = "core" | "northbound";

const filters = (doc: string) => list(str("filter"), doc);

/** Schema of one rule (`rules[]`): keys, bounds, defaults and docs, written once. */
export const ruleOptionsSchema = obj(
  "A rule: a TypeScript/JavaScript module run on matching messages in a sandboxed worker",
  {
    name: str("Unique name (metrics label, state key)", { pattern: /^[A-Za-z0-9._-]{1,64}$/ }),
    from: filters("Topic filters of the messages the rule sees"),
    module: str("Module path, relative to the config file"),
    to: oneOf(
      ["core", "northbound"],
      "Default route of outputs: back into the gateway, or straight to the northbound",
      { default: "core" },
    ),
    publish: optional(filters(
      "Filters outputs into the core must match: the rule principal's ACL (default rules/{name}/#; none for to: northbound)",
    )),
    timeoutMs: int("Time budget per message; over it the worker is stopped and restarted", {
      min: 1,
      max: 600_000,
      default: 1000,
    }),
    maxMessageBytes: int("Largest message into or out of the rule (topic + payload), bytes", {
      min: 64,
      max: 64 * 1024 * 1024,
      default: 262_144,
    }),
    maxHeapBytes: int(
      "JavaScript heap the rule's worker may keep between batches, bytes; over it the worker is restarted (module-level data is lost, ctx.state kept)",
      { min: 4 * 1024 * 1024, max: 4 * 1024 * 1024 * 1024, default: 64 * 1024 * 1024 },
    ),
    enabled: bool("Run the rule", { default: true }),
    onError: oneOf(
      ["drop", "pass", "dead-letter"],
      "A message the rule failed on is dropped, passed on unchanged (to: northbound only) or dead-lettered",
      { default: "drop" },
    ),
    errorsBeforeRestart: int("Errors in a row before the rule's worker is restarted", {
      min: 1,
      max: 1_000_000,
      default: 10,
    }),
    restartsBeforeDisable: int("Restarts within a minute before the rule is disabled", {
      min: 1,
      max: 1_000_000,
      default: 5,
    }),
  },
);

/** Schema of the `rules` section. */
export const rulesOptionsSchema = list(
  ruleOptionsSchema,
  "Rules run at the edge, each in a sandboxed worker (docs/rules.md)",
  { default: [] },
);

/** A `rules` entry as the schema validates it (`publish` not yet defaulted). */
export type RuleConfigInput = Infer<typeof ruleOptionsSchema>;

/** One resolved entry of the `rules` section ({@link resolveRules}): `publish` filled in. */
export type RuleConfig = RuleConfigInput & { publish: string[] };

/** The per-rule defaults (from the schema). */
export const defaultRuleOptions: Readonly<
  Omit<RuleConfigInput, "name" | "from" | "module" | "publish">
> = Object.freeze((() => {
  const { name: _n, from: _f, module: _m, ...rest } = ruleOptionsSchema.fields;
  return defaults(obj("", rest));
})());

/** Tunables of the rule engine as a whole (not in the config file). */
export interface RuleEngineLimits {
  /** Items sent to a worker in one postMessage at most. @default 2048 */
  batchSize: number;
  /** Batches sent to a worker and not yet answered, at most. @default 16 */
  batchesInFlight: number;
  /**
   * Messages queued or in flight per rule before it holds delivery (backpressure: the pipeline
   * fills and producers stop reading). Large, because results come back only between event-loop
   * turns, and one turn of a busy gateway reads tens of thousands of messages. @default 65536
   */
  maxInFlight: number;
  /** Bytes (topics + payloads) queued or in flight per rule before it holds delivery. @default 16777216 */
  maxInFlightBytes: number;
  /**
   * Outputs waiting to be accepted (for the accept hook, i.e. the northbound spool, or an async
   * northbound route) per rule before more are dropped. @default 65536
   */
  maxPendingOutputs: number;
  /** Largest state of one rule, bytes of JSON. @default 65536 */
  maxStateBytes: number;
  /**
   * Most outputs one message may produce; a result with more fails the message (RangeError),
   * so a rule cannot flood the gateway. @default 64
   */
  maxOutputsPerMessage: number;
  /**
   * The output payloads of one message together may be this many times the rule's
   * `maxMessageBytes` at most; more fails the message (RangeError). @default 4
   */
  outputBytesFactor: number;
  /** Persisted state is written at most this often, ms. @default 1000 */
  stateFlushMs: number;
  /** Window in which restarts count towards `restartsBeforeDisable`, ms. @default 60000 */
  restartWindowMs: number;
  /** Time a module has to load (its top-level code) in its worker, ms. @default 10000 */
  loadTimeoutMs: number;
  /** A rule's repeated failures are logged at most once per this many ms. @default 10000 */
  logEveryMs: number;
}

/** Defaults of {@link RuleEngineLimits}. */
export const defaultRuleEngineLimits: Readonly<RuleEngineLimits> = Object.freeze({
  batchSize: 2048,
  batchesInFlight: 16,
  maxInFlight: 65536,
  maxInFlightBytes: 16 * 1024 * 1024,
  maxPendingOutputs: 65536,
  maxStateBytes: 65_536,
  maxOutputsPerMessage: 64,
  outputBytesFactor: 4,
  stateFlushMs: 1000,
  restartWindowMs: 60_000,
  loadTimeoutMs: 10_000,
  logEveryMs: 10_000,
});

/**
 * Fills `publish` defaults and checks what the schema cannot: unique names, valid filters,
 * `onError: "pass"` only with `to: "northbound"`, and no loops. Throws {@link ConfigError}
 * naming the key.
 *
 * @example
 * ```ts
 * import { resolveRules } from "./options.ts";
 * import { ConfigError } from "../config/schema.ts";
 * const base = { module: "r.ts", to: "core", timeoutMs: 1000, maxMessageBytes: 1024, enabled: true,
 *   onError: "drop", errorsBeforeRestart: 10, restartsBeforeDisable: 5, maxHeapBytes: 1 << 26 } as const;
 * const [r] = resolveRules([{ ...base, name: "c", from: ["devices/+/telemetry/#"] }]);
 * if (r.publish[0] !== "rules/c/#") throw new Error();
 * let err: unknown;
 * try { resolveRules([{ ...base, name: "l", from: ["#"] }]); } catch (e) { err = e; }
 * if (!(err instanceof ConfigError) || !err.message.includes("loop")) throw new Error(String(err));
 * ```
 */
export function resolveRules(rules: readonly RuleConfigInput[], key = "rules"): RuleConfig[] {
  const names = new Set<string>();
  const out = rules.map((r, i): RuleConfig => {
    const at = `${key}[${i}]`;
    if (names.has(r.name)) throw new ConfigError(`${at}.name`, `duplicate rule name "${r.name}"`);
    names.add(r.name);
    if (r.from.length === 0) throw new ConfigError(`${at}.from`, "needs at least one filter");
    const publish = r.publish ?? (r.to === "northbound" ? [] : [`rules/${r.name}/#`]);
    for (const [field, list] of [["from", r.from], ["publish", publish]] as const) {
      list.forEach((f, j) => {
        const err = validateFilter(f);
        if (err) throw new ConfigError(`${at}.${field}[${j}]`, `"${f}": ${err}`);
      });
    }
    if (r.onError === "pass" && r.to !== "northbound") {
      throw new ConfigError(
        `${at}.onError`,
        `"pass" needs to: "northbound" (a message in the core was already delivered; use "drop" or "dead-letter")`,
      );
    }
    return { ...r, from: [...r.from], publish };
  });
  const loop = findRuleLoop(out);
  if (loop) {
    throw new ConfigError(
      key,
      loop.length === 2
        ? `rule "${loop[0]}" would consume its own outputs (a loop): its publish filters ${
          JSON.stringify(out.find((r) => r.name === loop[0])!.publish)
        } overlap its from filters`
        : `rules form a loop: ${
          loop.join(" → ")
        } (each one's publish filters overlap the next one's from filters)`,
    );
  }
  return out;
}
