/**
 * The configuration of rules: the `rules` section's schema fragment ({@link rulesField}), the
 * validated {@link RuleConfig}, its per-rule defaults, the engine's own tunables
 * ({@link defaultRuleEngineLimits}), and {@link resolveRules}, which fills the defaults that
 * depend on the rule's name and refuses duplicate names, bad filters and loops.
 *
 * @module
 */

import { validateFilter } from "../core/topic_router.ts";
import { ConfigError, type Field } from "../config/schema.ts";
import { findRuleLoop } from "./rule_graph.ts";

/** What happens to a message a rule failed on (threw, timed out, too large). */
export type RuleOnError = "drop" | "pass" | "dead-letter";

/** Where a rule's outputs go unless an output says otherwise. */
export type RuleRoute = "core" | "northbound";

/** One validated entry of the `rules` section. */
export interface RuleConfig {
  /** Unique name (metrics label, state key, log field). */
  name: string;
  /** Topic filters of the messages the rule sees. */
  from: string[];
  /** Module path, relative to the config file's directory. */
  module: string;
  /** Default route of outputs. @default "core" */
  to: RuleRoute;
  /**
   * Filters outputs into the core must match (the rule's ACL); also what loop detection
   * assumes the rule may publish. @default [`rules/{name}/#`] (none when `to` is "northbound")
   */
  publish: string[];
  /** Time budget per message, ms; a rule over it is stopped and restarted. @default 1000 */
  timeoutMs: number;
  /** Largest message in or out (topic + payload), bytes. @default 262144 */
  maxMessageBytes: number;
  /** Run the rule. @default true */
  enabled: boolean;
  /** A failed message is dropped, passed on unchanged (northbound rules) or dead-lettered. @default "drop" */
  onError: RuleOnError;
  /** Errors in a row (no success between) before the worker is restarted. @default 10 */
  errorsBeforeRestart: number;
  /** Restarts within `restartWindowMs` before the rule is disabled. @default 5 */
  restartsBeforeDisable: number;
}

/** The per-rule defaults. */
export const defaultRuleOptions = Object.freeze({
  to: "core" as RuleRoute,
  timeoutMs: 1000,
  maxMessageBytes: 262_144,
  enabled: true,
  onError: "drop" as RuleOnError,
  errorsBeforeRestart: 10,
  restartsBeforeDisable: 5,
});

/** Tunables of the rule engine as a whole (not in the config file). */
export interface RuleEngineLimits {
  /** Items sent to a worker in one postMessage at most. @default 2048 */
  batchSize: number;
  /** Batches sent to a worker and not yet answered, at most. @default 16 */
  batchesInFlight: number;
  /**
   * Messages queued or in flight per rule before the caller waits (backpressure). Large, because
   * results come back only between event-loop turns, and one turn of a busy gateway reads tens of
   * thousands of messages. @default 65536
   */
  maxInFlight: number;
  /** Bytes (topics + payloads) queued or in flight per rule before the caller waits. @default 16777216 */
  maxInFlightBytes: number;
  /**
   * Outputs waiting to be accepted (for the accept hook, i.e. the northbound spool, or an async
   * northbound route) per rule before more are dropped. @default 65536
   */
  maxPendingOutputs: number;
  /** Largest state of one rule, bytes of JSON. @default 65536 */
  maxStateBytes: number;
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
  stateFlushMs: 1000,
  restartWindowMs: 60_000,
  loadTimeoutMs: 10_000,
  logEveryMs: 10_000,
});

const filters = (doc: string, optional = false): Field => ({
  type: "array",
  items: { type: "string", doc: "filter" },
  doc,
  ...(optional ? { optional: true } : {}),
});

const d = defaultRuleOptions;

/** Schema of one rule. */
export const ruleField: Field = {
  type: "object",
  doc: "A rule: a TypeScript/JavaScript module run on matching messages in a sandboxed worker",
  fields: {
    name: {
      type: "string",
      pattern: /^[A-Za-z0-9._-]{1,64}$/,
      doc: "Unique name (metrics label, state key)",
    },
    from: filters("Topic filters of the messages the rule sees"),
    module: { type: "string", doc: "Module path, relative to the config file" },
    to: {
      type: "enum",
      values: ["core", "northbound"],
      default: d.to,
      doc: "Default route of outputs: back into the gateway, or straight to the northbound",
    },
    publish: filters(
      "Filters outputs into the core must match (default rules/{name}/#; none for to: northbound)",
      true,
    ),
    timeoutMs: {
      type: "integer",
      min: 1,
      max: 600_000,
      default: d.timeoutMs,
      doc: "Time budget per message; over it the worker is stopped and restarted",
    },
    maxMessageBytes: {
      type: "integer",
      min: 64,
      max: 64 * 1024 * 1024,
      default: d.maxMessageBytes,
      doc: "Largest message into or out of the rule (topic + payload), bytes",
    },
    enabled: { type: "boolean", default: d.enabled, doc: "Run the rule" },
    onError: {
      type: "enum",
      values: ["drop", "pass", "dead-letter"],
      default: d.onError,
      doc:
        "A message the rule failed on is dropped, passed on unchanged (to: northbound only) or dead-lettered",
    },
    errorsBeforeRestart: {
      type: "integer",
      min: 1,
      max: 1_000_000,
      default: d.errorsBeforeRestart,
      doc: "Errors in a row before the rule's worker is restarted",
    },
    restartsBeforeDisable: {
      type: "integer",
      min: 1,
      max: 1_000_000,
      default: d.restartsBeforeDisable,
      doc: "Restarts within a minute before the rule is disabled",
    },
  },
};

/** Schema of the `rules` section. */
export const rulesField: Field = {
  type: "array",
  items: ruleField,
  default: [],
  doc: "Rules run at the edge, each in a sandboxed worker (docs/rules.md)",
};

/** A `rules` entry as the schema validated it (`publish` not yet defaulted). */
export type RuleConfigInput = Omit<RuleConfig, "publish"> & { publish?: string[] };

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
 *   onError: "drop", errorsBeforeRestart: 10, restartsBeforeDisable: 5 } as const;
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
