/**
 * Test harness of the rule engine: an engine on a fake clock over the fixture rules in
 * `tests/rules_fixtures/`, fed directly (`engine.handle`), its outputs published through a real
 * core's rules port (which checks each rule's publish filters) and collected, with dead letters and
 * bounded waits.
 *
 * @module
 */

import { FakeClock } from "../src/core/clock.ts";
import { Core } from "../src/core/core.ts";
import { createMessage, type Message } from "../src/core/message.ts";
import { MetricsRegistry } from "../src/core/metrics.ts";
import type { DeadLetter } from "../src/rules/dead_letter.ts";
import { RuleEngine, type RuleEngineOptions } from "../src/rules/engine.ts";
import { portOutlet, settleRules } from "../src/rules/attach.ts";
import { RULES_PROTOCOL } from "../src/rules/rule_runner.ts";
import {
  defaultRuleOptions,
  resolveRules,
  type RuleConfig,
  type RuleConfigInput,
} from "../src/rules/options.ts";
import { memoryLogger, waitFor } from "./_harness.ts";

/** The directory of the fixture rules. */
export const FIXTURES = new URL("./rules_fixtures/", import.meta.url).pathname;

/** A rule config with defaults: `name`, `from` and `module` are enough. */
export function rule(
  r: Pick<RuleConfigInput, "name" | "from" | "module"> & Partial<RuleConfigInput>,
): RuleConfigInput {
  return { ...defaultRuleOptions, ...r };
}

/** Resolves rule configs as the config loader would. */
export function rules(...r: RuleConfigInput[]): RuleConfig[] {
  return resolveRules(r);
}

/** An engine under test. */
export interface EngineHarness extends AsyncDisposable {
  engine: RuleEngine;
  clock: FakeClock;
  metrics: MetricsRegistry;
  /** Outputs published into the core, in order. */
  out: Message[];
  /** Outputs handed to the northbound, in order. */
  north: Message[];
  /** Dead letters, in order. */
  dead: DeadLetter[];
  /** Log lines. */
  lines: string[];
  /** Outputs as `topic payload` text. */
  texts(): string[];
  /** Value of a rule counter (e.g. `ferry_rule_errors_total` with `{ rule, kind }`). */
  counter(name: string, labels: Record<string, string>): number;
}

/** Starts an engine over the fixtures on a fake clock. */
export async function startEngine(
  config: RuleConfig[],
  options: Partial<Omit<RuleEngineOptions, "northbound">> & { northbound?: boolean } = {},
): Promise<EngineHarness> {
  const clock = new FakeClock(1_000_000);
  const metrics = new MetricsRegistry();
  const { log, lines } = memoryLogger();
  const core = new Core({ clock, log, anonymous: true });
  const out: Message[] = [];
  const north: Message[] = [];
  const dead: DeadLetter[] = [];
  core.subscribe("#", {
    id: "harness",
    deliver: (m) => void (m.protocol === RULES_PROTOCOL && out.push(m)),
  });
  const { northbound, ...rest } = options;
  let engine: RuleEngine;
  try {
    engine = await RuleEngine.start({
      rules: config,
      baseDir: FIXTURES,
      outlet: portOutlet(core.port({ name: RULES_PROTOCOL })),
      northbound: northbound ? (m) => void north.push(m) : undefined,
      deadLetters: { deadLetter: (l) => void dead.push(l) },
      clock,
      log,
      metrics,
      ...rest,
    });
  } catch (err) {
    await core.close();
    throw err;
  }
  const dec = new TextDecoder();
  return {
    engine,
    clock,
    metrics,
    out,
    north,
    dead,
    lines,
    texts: () => out.map((m) => `${m.topic} ${dec.decode(m.payload)}`),
    counter: (name, labels) => {
      const m = metrics.find(name);
      return m && m.type !== "histogram" ? m.get(labels) : 0;
    },
    [Symbol.asyncDispose]: async () => {
      await engine.close();
      await core.close();
    },
  };
}

/** A message from a device at the fake clock's time. */
export function deviceMessage(
  clock: FakeClock,
  device: string,
  topic: string,
  payload: string,
): Message {
  return createMessage({
    topic,
    payload: new TextEncoder().encode(payload),
    deviceId: device,
    protocol: "mqtt",
    ts: clock.now(),
  });
}

/** Hands `msgs` to the engine in order (awaiting backpressure) and waits until it is idle. */
export async function feed(engine: RuleEngine, msgs: Message[]): Promise<void> {
  for (const m of msgs) await engine.handle(m);
  await engine.drain();
}

export { waitFor };

/**
 * Waits until `core`'s pipeline and `engine` are quiet (outputs re-enter the pipeline), as the
 * gateway does before it closes the core.
 */
export function settle(core: Core, engine: RuleEngine): Promise<void> {
  return settleRules(core, engine);
}
