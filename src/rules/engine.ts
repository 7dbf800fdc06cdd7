/**
 * The rule engine: the set of configured rules, each a {@link RuleRunner} (one sandboxed worker),
 * and the routing of messages to them by their `from` filters. Its input is the core's
 * {@link Message}s through {@link RuleEngine.handle}, which fits an async pipeline sink; its
 * outputs leave through injected functions (`publish` into the core, `northbound`, a dead-letter
 * sink), so it knows nothing of adapters or of how the core is wired.
 *
 * Hot reload ({@link RuleEngine.update}, {@link RuleEngine.reload}): the new version of a changed
 * rule is loaded first (a version that fails to load leaves the old one running and the error is
 * returned); then new messages go to it, the old version finishes what it was handed, and only then
 * does the new one start, with the state the old one left: nothing is lost or reordered.
 *
 * @module
 */

import { resolve } from "node:path";
import { type Clock, systemClock } from "../core/clock.ts";
import { Logger } from "../core/logger.ts";
import type { Message } from "../core/message.ts";
import { MetricsRegistry } from "../core/metrics.ts";
import { TopicRouter } from "../core/topic_router.ts";
import { type DeadLetterSink, loggingDeadLetterSink } from "./dead_letter.ts";
import { loadRuleModule, RuleLoadError } from "./module_loader.ts";
import {
  defaultRuleEngineLimits,
  resolveRules,
  type RuleConfig,
  type RuleConfigInput,
  type RuleEngineLimits,
} from "./options.ts";
import { RuleMetrics } from "./rule_metrics.ts";
import { type RulePublish, RuleRunner, type RuleRunnerStatus } from "./rule_runner.ts";
import { RuleStateStore } from "./state_store.ts";
import { LogLimiter } from "./_log_limiter.ts";

/** Options of {@link RuleEngine.start}. */
export interface RuleEngineOptions {
  /** The rules (validated: {@link resolveRules}). */
  rules: readonly RuleConfigInput[];
  /** Directory module paths are relative to (the config file's); imports must stay inside it. */
  baseDir: string;
  /** Publishes an output into the core (may be async; it is never awaited by the caller). */
  publish: RulePublish;
  /** Hands an output to the northbound; absent: northbound outputs are dropped and counted. */
  northbound?: RulePublish;
  /** Where dead letters go. @default logged and counted ({@link loggingDeadLetterSink}) */
  deadLetters?: DeadLetterSink;
  /** JSON file of the rules' persisted state; absent: state is kept in memory only. */
  stateFile?: string;
  /** Time source (batches, budgets, ticks, state writes). @default systemClock */
  clock?: Clock;
  /** Logger; the engine logs as component `rules`. */
  log?: Logger;
  /** Metrics registry. */
  metrics?: MetricsRegistry;
  /** Engine tunables. */
  limits?: Partial<RuleEngineLimits>;
}

/** What {@link RuleEngine.list} says of a rule. */
export interface RuleInfo {
  /** Name. */
  name: string;
  /** `off` when `enabled: false` in the config. */
  status: RuleRunnerStatus | "off";
  /** The module's path. */
  module: string;
  /** Messages queued or in flight. */
  inFlight: number;
}

/** What a reload changed. */
export interface RuleReloadReport {
  /** Rules started anew. */
  added: string[];
  /** Rules replaced by a new version (module or config changed). */
  replaced: string[];
  /** Rules stopped. */
  removed: string[];
}

/**
 * Runs rules on messages.
 *
 * @example
 * ```ts
 * import { RuleEngine } from "./engine.ts";
 * import { resolveRules } from "./options.ts";
 * import { createMessage, type Message } from "../core/message.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/double.ts`,
 *   'export default (m) => ({ topic: "rules/double/x", payload: String(2 * Number(new TextDecoder().decode(m.payload))) });');
 * const out: Message[] = [];
 * const engine = await RuleEngine.start({
 *   rules: resolveRules([{ name: "double", from: ["devices/+/telemetry"], module: "double.ts", to: "core",
 *     timeoutMs: 1000, maxMessageBytes: 1024, enabled: true, onError: "drop", errorsBeforeRestart: 10,
 *     restartsBeforeDisable: 5 }]),
 *   baseDir: dir,
 *   publish: (m) => { out.push(m); },
 * });
 * await engine.handle(createMessage({ topic: "devices/a/telemetry", payload: new TextEncoder().encode("21") }));
 * await engine.drain();
 * await engine.close();
 * await Deno.remove(dir, { recursive: true });
 * if (new TextDecoder().decode(out[0].payload) !== "42") throw new Error();
 * ```
 */
export class RuleEngine implements AsyncDisposable {
  /** The rules' metric handles. */
  readonly metrics: RuleMetrics;
  #options: RuleEngineOptions;
  #limits: RuleEngineLimits;
  #clock: Clock;
  #log: Logger;
  #state: RuleStateStore;
  #deadLetters: DeadLetterSink;
  #limiter: LogLimiter;
  #configs: RuleConfig[] = [];
  #runners = new Map<string, RuleRunner>();
  #retiring = new Set<Promise<void>>();
  #router = new TopicRouter<RuleRunner>();
  // The distinct rules of recent topics (devices publish to the same few topics again and again).
  #byTopic = new Map<string, readonly RuleRunner[]>();
  #updating: Promise<unknown> = Promise.resolve();
  #closed: Promise<void> | undefined;

  private constructor(
    options: RuleEngineOptions,
    state: RuleStateStore,
    registry: MetricsRegistry,
  ) {
    this.#options = options;
    this.#limits = { ...defaultRuleEngineLimits, ...options.limits };
    this.#clock = options.clock ?? systemClock;
    this.#log = (options.log ?? new Logger()).child("rules");
    this.#state = state;
    this.metrics = new RuleMetrics(registry);
    this.#deadLetters = options.deadLetters ??
      loggingDeadLetterSink(this.#log, this.#clock, this.#limits.logEveryMs);
    this.#limiter = new LogLimiter(this.#clock, this.#limits.logEveryMs);
    registry.gauge(
      "ferry_rule_enabled",
      "1 while a rule runs, 0 when disabled or off",
      () => this.list().map((r) => [{ rule: r.name }, r.status === "running" ? 1 : 0]),
    );
    registry.gauge(
      "ferry_rule_in_flight",
      "Messages queued or in flight per rule",
      () => this.list().map((r) => [{ rule: r.name }, r.inFlight]),
    );
  }

  /**
   * Opens the state file and loads every enabled rule. Throws {@link RuleLoadError} (a module that
   * cannot be loaded) or a `ConfigError` (a loop, a duplicate name) and starts nothing.
   */
  static async start(options: RuleEngineOptions): Promise<RuleEngine> {
    const clock = options.clock ?? systemClock;
    const state = await RuleStateStore.open(options.stateFile, {
      clock,
      flushMs: options.limits?.stateFlushMs ?? defaultRuleEngineLimits.stateFlushMs,
      log: options.log?.child("rules"),
    });
    const engine = new RuleEngine(options, state, options.metrics ?? new MetricsRegistry());
    try {
      await engine.update(options.rules);
    } catch (err) {
      await engine.close();
      throw err;
    }
    return engine;
  }

  /**
   * Hands `msg` to every enabled rule whose `from` matches it. Returns a promise only when a rule
   * is saturated (backpressure): the caller awaits it before handing over the device's next
   * message. Never rejects. Use as a pipeline sink: `core.addSink(engine.handle)`.
   */
  handle = (msg: Message): void | Promise<void> => {
    if (this.#closed) return;
    let hits = this.#byTopic.get(msg.topic);
    if (hits === undefined) {
      hits = [...new Set(this.#router.match(msg.topic))]; // a rule two of whose filters match: once
      if (this.#byTopic.size >= 4096) this.#byTopic.clear();
      this.#byTopic.set(msg.topic, hits);
    }
    if (hits.length === 1) return hits[0].push(msg);
    let waits: Array<void | Promise<void>> | undefined;
    for (const r of hits) {
      const p = r.push(msg);
      if (p) (waits ??= []).push(p);
    }
    if (!waits) return;
    return Promise.all(waits).then(() => {});
  };

  /** Every file the rules' modules were read from (to watch for changes). */
  get files(): string[] {
    return [...new Set([...this.#runners.values()].flatMap((r) => r.module.files))];
  }

  /** The configured rules with their status. */
  list(): RuleInfo[] {
    return this.#configs.map((c) => {
      const r = this.#runners.get(c.name);
      return {
        name: c.name,
        status: r ? r.status : "off",
        module: c.module,
        inFlight: r?.inFlight ?? 0,
      };
    });
  }

  /**
   * Applies a new set of rules (the config changed): unchanged rules keep running; changed and new
   * ones are loaded first, and if any fails to load nothing changes and the error is thrown;
   * then new messages go to the new versions while the old ones finish theirs.
   */
  update(rules: readonly RuleConfigInput[]): Promise<RuleReloadReport> {
    const run = this.#updating.then(() => this.#update(rules));
    this.#updating = run.catch(() => {});
    return run;
  }

  /** Re-reads every rule's module (a file changed) and replaces the rules whose code changed. */
  reload(): Promise<RuleReloadReport> {
    return this.update(this.#configs);
  }

  async #update(input: readonly RuleConfigInput[]): Promise<RuleReloadReport> {
    if (this.#closed) throw new Error("Cannot update rules: the engine is closed");
    const rules = resolveRules(input);
    const fresh: RuleRunner[] = [];
    const gates = new Map<string, PromiseWithResolvers<void>>();
    const report: RuleReloadReport = { added: [], replaced: [], removed: [] };
    const next = new Map<string, RuleRunner>();
    try {
      for (const c of rules) {
        if (!c.enabled) continue;
        const old = this.#runners.get(c.name);
        const module = await loadRuleModule(resolve(this.#options.baseDir, c.module), {
          root: this.#options.baseDir,
        });
        if (old && old.module.url === module.url && sameConfig(old.config, c)) {
          next.set(c.name, old);
          continue;
        }
        const runner = new RuleRunner(c, module, this.#deps());
        const gate = Promise.withResolvers<void>();
        gates.set(c.name, gate);
        fresh.push(runner);
        await runner.start(old ? gate.promise : undefined);
        next.set(c.name, runner);
        (old ? report.replaced : report.added).push(c.name);
      }
    } catch (err) {
      for (const r of fresh) await r.close();
      if (!(err instanceof RuleLoadError)) throw err;
      this.#log.error(
        this.#runners.size
          ? "rules not reloaded: keeping the running versions"
          : "rules not loaded",
        { error: err },
      );
      throw err;
    }
    for (const [name, old] of this.#runners) {
      if (next.get(name) === old) continue;
      if (!gates.has(name)) report.removed.push(name);
      const retired: Promise<void> = old.close().finally(() => {
        this.#retiring.delete(retired);
        gates.get(name)?.resolve();
      });
      this.#retiring.add(retired);
    }
    this.#runners = next;
    this.#configs = rules;
    const router = new TopicRouter<RuleRunner>();
    for (const r of next.values()) for (const f of r.config.from) router.add(f, r);
    this.#router = router;
    this.#byTopic = new Map();
    if (report.added.length + report.replaced.length + report.removed.length) {
      this.#log.info("rules loaded", { ...report });
    }
    return report;
  }

  #deps() {
    return {
      clock: this.#clock,
      log: this.#log,
      metrics: this.metrics,
      limits: this.#limits,
      state: this.#state,
      publish: this.#options.publish,
      northbound: this.#options.northbound,
      deadLetters: this.#deadLetters,
      limiter: this.#limiter,
    };
  }

  /** Re-enables a rule that was disabled (by failures or {@link disable}). */
  async enable(name: string): Promise<void> {
    await this.#runner(name).enable();
  }

  /** Disables a rule until {@link enable} or a reload: its messages get its `onError`. */
  disable(name: string): void {
    this.#runner(name).disable();
  }

  #runner(name: string): RuleRunner {
    const r = this.#runners.get(name);
    if (!r) throw new RangeError(`Unknown rule "${name}" (or enabled: false in the config)`);
    return r;
  }

  /** Resolves once every rule has finished what it was handed and its outputs were published. */
  async drain(): Promise<void> {
    await Promise.all([...this.#retiring]);
    await Promise.all([...this.#runners.values()].map((r) => r.drain()));
  }

  /** Finishes what the rules were handed, stops every worker, writes the state. Idempotent. */
  close(): Promise<void> {
    return this.#closed ??= (async () => {
      await this.#updating;
      await Promise.all([...this.#retiring]);
      await Promise.all([...this.#runners.values()].map((r) => r.close()));
      await this.#state.close();
    })();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function sameConfig(a: RuleConfig, b: RuleConfig): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
