/**
 * Rules at the edge: users' TypeScript/JavaScript transforms and routes, each run in a `Worker`
 * with no permissions, fed in batches, bounded in time and size, hot reloaded. The gateway side:
 * {@link RuleEngine} (the set of rules, a pipeline sink), {@link attachRules} (wiring into the
 * core), the config fragment, the state store, dead letters, and `ferry rule test`. Rule authors
 * import `ferry/rules` (`sdk.ts`) instead. See `docs/rules.md`.
 *
 * Workers with permission options need `--unstable-worker-options` (set in `deno.json`'s tasks).
 *
 * @module
 */

export * from "./attach.ts";
export * from "./dead_letter.ts";
export * from "./engine.ts";
export * from "./module_loader.ts";
export * from "./options.ts";
export * from "./rule_graph.ts";
export * from "./rule_metrics.ts";
export * from "./rule_runner.ts";
export * from "./state_store.ts";
export * from "./test_command.ts";
export * from "./watcher.ts";
