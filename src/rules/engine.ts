/**
 * The rule engine: the set of configured rules, each a {@link RuleRunner} (one sandboxed worker).
 * To the core it is an adapter like the protocols (see `attach.ts`): each rule is a subscriber of
 * its `from` filters on the engine's {@link RuleInput} (the rules port), holds delivery back when it
 * is saturated, and publishes its outputs through the {@link RuleEngineOptions.outlet} (the port,
 * under the rule's service identity). Without an input it routes {@link RuleEngine.handle}'s
 * messages itself (tests, `ferry rule test`). Its northbound route and dead letters are injected
 * too, so it knows nothing of how the gateway is wired.
 *
 * Hot reload ({@link RuleEngine.update}, {@link RuleEngine.reload}): the new version of a changed
 * rule is loaded first (a version that fails to load leaves the old one running and the error is
 * returned); then new messages go to it, the old version finishes what it was handed, and only then
 * does the new one start, with the state the old one left: nothing is lost or reordered.
 *
 * @module
 */

import { resolve } from "../core/path.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import type { Subscriber } from "../core/device_port.ts";
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
import { type RuleCounters, type RuleLatency, RuleMetrics } from "./rule_metrics.ts";
import {
  type RuleNorthbound,
  RuleRunner,
  type RuleRunnerDeps,
  type RuleRunnerStatus,
  type RuleSend,
} from "./rule_runner.ts";
import { RuleStateStore } from "./state_store.ts";
import { LogLimiter } from "./_log_limiter.ts";

/**
 * Where rules get their messages from: subscriptions, and holding delivery back while a rule is
 * saturated (a `DevicePort` is one).
 */
export interface RuleInput {
  /** Subscribes `sub` to `filter`; returns the function that unsubscribes. */
  subscribe(filter: string, sub: Subscriber): () => void;
  /** Holds delivery (and so the publishers) for `holder` until {@link unhold}; bounded by the core. */
  hold(holder: object): void;
  /** Lets go of `holder`'s hold. */
  unhold(holder: object): void;
}

/** Options of {@link RuleEngine.start}. */
export interface RuleEngineOptions {
  /** The rules (validated by the engine: {@link resolveRules}). */
  rules: readonly RuleConfigInput[];
  /** Directory module paths are relative to (the config file's); imports must stay inside it. */
  baseDir: string;
  /** Where rules get their messages. @default the engine's own router, fed by {@link RuleEngine.handle} */
  input?: RuleInput;
  /**
   * Opens the way into the core of one (version of a) rule: the function its outputs are
   * published with (attach.ts: the rules port, under the rule's service identity speaking for the
   * source's device, which checks the rule's `publish` filters).
   */
  outlet: (rule: RuleConfig) => RuleSend;
  /** Hands an output to the northbound; absent: northbound outputs are dropped and counted. */
  northbound?: RuleNorthbound;
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

/** What {@link RuleEngine.list} says of a rule (the admin API's view). */
export interface RuleInfo {
  /** Name. */
  name: string;
  /**
   * `running`; `loading`/`restarting` (a new worker is starting); `disabled` (by failures or
   * {@link RuleEngine.disable}: its messages get its `onError`); `off` (`enabled: false` in the
   * config: not loaded, {@link RuleEngine.enable} refuses it).
   */
  status: RuleRunnerStatus | "off";
  /** The module's path, as configured. */
  module: string;
  /** Its `from` filters. */
  from: string[];
  /** Its default route. */
  to: RuleConfig["to"];
  /** What happens to a message it failed on. */
  onError: RuleConfig["onError"];
  /** Its `publish` filters (its principal's ACL). */
  publish: string[];
  /** Messages queued or in flight. */
  inFlight: number;
  /** Totals since the gateway started, over every version of the rule. */
  counters: Readonly<RuleCounters>;
  /** Latency from a message handed to the rule to its results back, seconds. */
  latency: RuleLatency;
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
 * import { createMessage } from "../core/message.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/double.ts`,
 *   'export default (m) => ({ topic: "rules/double/x", payload: String(2 * Number(new TextDecoder().decode(m.payload))) });');
 * const out: string[] = [];
 * const engine = await RuleEngine.start({
 *   rules: resolveRules([{ name: "double", from: ["devices/+/telemetry"], module: "double.ts", to: "core",
 *     timeoutMs: 1000, maxMessageBytes: 1024, enabled: true, onError: "drop", errorsBeforeRestart: 10,
 *     restartsBeforeDisable: 5, maxHeapBytes: 1 << 26 }]),
 *   baseDir: dir,
 *   // Each rule's outputs go to its outlet (in the gateway: the rules port, under its identity).
 *   outlet: () => (draft) => {
 *     out.push(new TextDecoder().decode(draft.payload));
 *     return { ok: true };
 *   },
 * });
 * await engine.handle(createMessage({ topic: "devices/a/telemetry", payload: new TextEncoder().encode("21") }));
 * await engine.drain();
 * await engine.close();
 * await Deno.remove(dir, { recursive: true });
 * if (out[0] !== "42") throw new Error(String(out));
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
  #slots = new Map<string, RuleSlot>();
  #input: RuleInput;
  #local: LocalInput | undefined;
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
    this.#input = options.input ?? (this.#local = new LocalInput());
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
   * Hands `msg` to every enabled rule whose `from` matches it, for an engine without an input
   * (tests, `ferry rule test`); an engine on a port gets its messages as a subscriber. Returns a
   * promise, to await before the next message, while a rule holds delivery back.
   */
  handle(msg: Message): void | Promise<void> {
    const local = this.#local;
    if (!local) throw new TypeError("Cannot handle: this engine receives through its input");
    if (this.#closed) return;
    local.router.forEachMatch(msg.topic, (s) => s.deliver(msg));
    if (local.held) return local.wait();
  }

  /** Every file the rules' modules were read from (to watch for changes). */
  get files(): string[] {
    return [...new Set([...this.#runners.values()].flatMap((r) => r.module.files))];
  }

  /** The configured rules, in config order, with their status and counters. */
  list(): RuleInfo[] {
    return this.#configs.map((c) => {
      const r = this.#runners.get(c.name);
      const meter = this.metrics.forRule(c.name);
      return {
        name: c.name,
        status: r ? r.status : "off",
        module: c.module,
        from: [...c.from],
        to: c.to,
        onError: c.onError,
        publish: [...c.publish],
        inFlight: r?.inFlight ?? 0,
        counters: { ...meter.counters },
        latency: meter.latencySummary(),
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
        const runner = new RuleRunner(c, module, this.#deps(c));
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
    // New messages go to the new versions from here on (they queue until the old ones drained).
    for (const [name, runner] of next) {
      const slot = this.#slots.get(name);
      if (slot) slot.switchTo(runner, this.#input);
      else this.#slots.set(name, new RuleSlot(runner, this.#input));
    }
    for (const [name, slot] of this.#slots) {
      if (next.has(name)) continue;
      slot.unsubscribe();
      this.#slots.delete(name);
    }
    if (report.added.length + report.replaced.length + report.removed.length) {
      this.#log.info("rules loaded", { ...report });
    }
    return report;
  }

  #deps(rule: RuleConfig): RuleRunnerDeps {
    const input = this.#input;
    return {
      clock: this.#clock,
      log: this.#log,
      metrics: this.metrics,
      limits: this.#limits,
      state: this.#state,
      send: this.#options.outlet(rule),
      northbound: this.#options.northbound,
      deadLetters: this.#deadLetters,
      limiter: this.#limiter,
      hold: (h) => input.hold(h),
      unhold: (h) => input.unhold(h),
    };
  }

  /** Re-enables a rule that was disabled (by failures or {@link disable}). */
  async enable(name: string): Promise<void> {
    await this.#runner(name).enable();
  }

  /**
   * Disables a rule until {@link enable} or a reload: its messages get its `onError`. `reason`
   * goes to the log line.
   */
  disable(name: string, reason?: string): void {
    this.#runner(name).disable(reason);
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
      for (const slot of this.#slots.values()) slot.unsubscribe();
      this.#slots.clear();
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

/**
 * A rule as its input sees it: one subscriber (id `rule:{name}`) under its `from` filters, which
 * hands each message to the rule's running version (switched on reload without unsubscribing).
 */
class RuleSlot implements Subscriber {
  readonly id: string;
  #runner: RuleRunner;
  #subscribed = new Map<string, () => void>(); // filter → its unsubscribe
  #overlapping = false;
  #last: Message | undefined;

  constructor(runner: RuleRunner, input: RuleInput) {
    this.id = `rule:${runner.name}`;
    this.#runner = runner;
    this.#subscribe(runner.config.from, input);
  }

  deliver(msg: Message): void {
    // Two filters of the rule may match one topic: the rule still gets the message once (the
    // matches of one message are delivered before any other message).
    if (this.#overlapping) {
      if (msg === this.#last) return;
      this.#last = msg;
    }
    this.#runner.push(msg);
  }

  /** Hands new messages to `runner` (a new version), resubscribing if its filters changed. */
  switchTo(runner: RuleRunner, input: RuleInput): void {
    this.#runner = runner;
    this.#subscribe(runner.config.from, input);
  }

  /** Subscribes the filters in `from` it lacks, then unsubscribes those not in `from`. */
  #subscribe(from: readonly string[], input: RuleInput): void {
    const want = new Set(from);
    for (const f of want) {
      if (!this.#subscribed.has(f)) this.#subscribed.set(f, input.subscribe(f, this));
    }
    for (const [f, unsubscribe] of this.#subscribed) {
      if (want.has(f)) continue;
      unsubscribe();
      this.#subscribed.delete(f);
    }
    this.#overlapping = want.size > 1;
    this.#last = undefined;
  }

  unsubscribe(): void {
    for (const u of this.#subscribed.values()) u();
    this.#subscribed.clear();
    this.#last = undefined;
  }
}

/** The input of an engine that routes {@link RuleEngine.handle}'s messages itself. */
class LocalInput implements RuleInput {
  readonly router = new TopicRouter<Subscriber>();
  #holders = new Set<object>();
  #waiters: Array<() => void> = [];

  subscribe(filter: string, sub: Subscriber): () => void {
    this.router.add(filter, sub);
    return () => this.router.remove(filter, sub);
  }

  get held(): boolean {
    return this.#holders.size > 0;
  }

  /** Resolves once no rule holds delivery. */
  wait(): Promise<void> {
    return this.held ? new Promise((r) => this.#waiters.push(r)) : Promise.resolve();
  }

  hold(holder: object): void {
    this.#holders.add(holder);
  }

  unhold(holder: object): void {
    if (!this.#holders.delete(holder) || this.#holders.size) return;
    for (const w of this.#waiters.splice(0)) w();
  }
}
