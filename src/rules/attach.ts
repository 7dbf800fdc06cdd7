/**
 * Wires a {@link RuleEngine} into a {@link Core} as an adapter of its own: it asks the core for the
 * `rules` port (and calls nothing else on it). Each rule subscribes to its `from` filters through
 * the port (so it sees every accepted message after fan-out, in per-device order, and a saturated
 * rule holds delivery: backpressure), and publishes its outputs through the port under a service
 * identity the port gives out: the rule's principal (its `publish` filters are its ACL) speaking
 * for the device whose message the output derives from; the port admits such derived messages at
 * once. Outputs routed northbound are appended to the bridge's spool (sent upstream under its
 * prefix), and the modules and the config file are watched for hot reload.
 *
 * @module
 */

import { dirname, resolve } from "../core/path.ts";
import type { Core, DevicePort, Identity } from "../core/mod.ts";
import type { Logger } from "../core/logger.ts";
import type { MetricsRegistry } from "../core/metrics.ts";
import type { DeadLetterSink } from "./dead_letter.ts";
import { RuleEngine } from "./engine.ts";
import type { RuleConfig, RuleConfigInput, RuleEngineLimits } from "./options.ts";
import { type RuleNorthbound, RULES_PROTOCOL, type RuleSend } from "./rule_runner.ts";
import { FileWatcher } from "./watcher.ts";

/** Options of {@link attachRules}. */
export interface AttachRulesOptions {
  /** The rules (validated again by the engine). */
  rules: readonly RuleConfigInput[];
  /** Module paths are relative to this directory. @default the config file's, else the CWD */
  baseDir?: string;
  /** The config file (its directory is the default `baseDir`; watched when `readRules` is given). */
  configFile?: string;
  /** Reads the `rules` of the config file again, for hot reload of the config. */
  readRules?: () => Promise<readonly RuleConfigInput[]>;
  /** Watch the modules (and the config file) and reload on change. @default true */
  watch?: boolean;
  /** Data directory: the rules' state is kept in `rules-state.json` there. */
  dataDir?: string;
  /** Outputs routed northbound (the bridge's spool append); absent: dropped and counted. */
  northbound?: RuleNorthbound;
  /** Dead letters. @default logged and counted */
  deadLetters?: DeadLetterSink;
  /** Where the rules' metrics go (the gateway's registry). @default a registry of their own */
  metrics?: MetricsRegistry;
  /** Engine tunables. */
  limits?: Partial<RuleEngineLimits>;
  /** Logger. @default the port's */
  log?: Logger;
}

/** Rules attached to a core. */
export interface AttachedRules extends AsyncDisposable {
  /** The engine (list, enable, disable: docs/rules.md, "Operating rules"). */
  readonly engine: RuleEngine;
  /**
   * Stops watching, finishes the rules' work, stops their workers. Idempotent. Outputs still
   * need the pipeline: call it before `core.close()` once the listeners stopped, after waiting
   * for the pipeline and {@link RuleEngine.drain} to be quiet (the gateway does).
   */
  close(): Promise<void>;
}

/**
 * The outlet of rules on `port`: for each (version of a) rule, the function its outputs go into
 * the core with, the port's publish under the rule's service identity speaking for the output's
 * device (one identity per device, kept).
 */
export function portOutlet(port: DevicePort): (rule: RuleConfig) => RuleSend {
  return (rule) => {
    const spec = { name: rule.name, publish: rule.publish };
    const ids = new Map<string | undefined, Identity>();
    let lastDevice: string | undefined;
    let last: Identity | undefined;
    return (draft, deviceId) => {
      let who = deviceId === lastDevice ? last : undefined;
      if (who === undefined) {
        who = ids.get(deviceId);
        if (who === undefined) {
          if (ids.size >= 65_536) ids.clear();
          ids.set(deviceId, who = port.service(spec, deviceId));
        }
        lastDevice = deviceId;
        last = who;
      }
      return port.publish(who, draft);
    };
  };
}

/**
 * Starts the rules of `options` on `core` (an engine with no rule costs nothing per message: it
 * has no subscription).
 *
 * @example
 * ```ts
 * import { attachRules } from "./attach.ts";
 * import { Core, type Identity, type Message } from "../core/mod.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/r.ts`, 'export default (m) => ({ topic: "rules/r/seen", payload: m.payload });');
 * const core = new Core({ anonymous: true });
 * const got: Message[] = [];
 * core.subscribe("rules/#", { id: "t", deliver: (m) => got.push(m) });
 * const rules = await attachRules(core, {
 *   rules: [{ name: "r", from: ["devices/#"], module: "r.ts", to: "core", timeoutMs: 1000,
 *     maxMessageBytes: 1024, enabled: true, onError: "drop", errorsBeforeRestart: 10, restartsBeforeDisable: 5, maxHeapBytes: 1 << 26 }],
 *   baseDir: dir,
 *   watch: false,
 * });
 * const port = core.port({ name: "example" });
 * const device = port.login({ user: "a" }, "127.0.0.1") as Identity;
 * port.publish(device, { topic: "devices/a/telemetry", payload: new Uint8Array([7]), qos: 0, retain: false });
 * await rules.engine.drain();
 * await rules.close();
 * await core.close();
 * await Deno.remove(dir, { recursive: true });
 * if (got[0]?.topic !== "rules/r/seen" || got[0].payload[0] !== 7 || got[0].deviceId !== "a") throw new Error();
 * ```
 */
export async function attachRules(core: Core, options: AttachRulesOptions): Promise<AttachedRules> {
  const port = core.port({ name: RULES_PROTOCOL });
  const log = options.log?.child("rules") ?? port.log;
  const baseDir = resolve(
    options.baseDir ?? (options.configFile ? dirname(options.configFile) : "."),
  );
  if (options.dataDir) await Deno.mkdir(options.dataDir, { recursive: true });
  const engine = await RuleEngine.start({
    rules: options.rules,
    baseDir,
    input: port,
    outlet: portOutlet(port),
    northbound: options.northbound,
    deadLetters: options.deadLetters,
    stateFile: options.dataDir
      ? `${options.dataDir.replace(/\/+$/, "")}/rules-state.json`
      : undefined,
    clock: port.clock,
    log,
    metrics: options.metrics,
    limits: options.limits,
  });

  let watcher: FileWatcher | undefined;
  if (options.watch ?? true) {
    const configFile = options.configFile && options.readRules
      ? resolve(options.configFile)
      : undefined;
    const watched = () => [...engine.files, ...(configFile ? [configFile] : [])];
    watcher = new FileWatcher(async (paths) => {
      try {
        const report = configFile && paths.includes(configFile)
          ? await engine.update(await options.readRules!())
          : await engine.reload();
        log.info("rules reloaded", { changed: paths, ...report });
      } catch (err) {
        log.error("rules not reloaded: keeping the running versions", {
          changed: paths,
          error: err,
        });
      }
      watcher?.watch(watched());
    }, {
      onError: (err) => log.warn("cannot watch rule files; hot reload is off", { error: err }),
    });
    watcher.watch(watched());
  }

  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      await watcher?.close();
      await engine.close();
    })();
  return { engine, close, [Symbol.asyncDispose]: close };
}

/**
 * Waits until `core`'s pipeline and `engine` are quiet: rule outputs re-enter the pipeline, so
 * both are drained in turn until two rounds in a row find nothing queued, waiting or newly
 * handled (the drain loop itself holds one permit while it waits for the queue). Bounded.
 */
export async function settleRules(core: Core, engine: RuleEngine): Promise<void> {
  const p = core.pipeline;
  let last = -1;
  for (let quiet = 0, round = 0; quiet < 2 && round < 10_000; round++) {
    await engine.drain();
    await new Promise((r) => setTimeout(r, 0));
    const handled = p.stats.handled + p.stats.failed;
    const idle = p.depth === 0 && p.waiting === 0 && p.inUse <= 1 && handled === last;
    quiet = idle ? quiet + 1 : 0;
    last = handled;
  }
}
