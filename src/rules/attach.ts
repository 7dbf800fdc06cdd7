/**
 * Wires a {@link RuleEngine} into today's {@link Core}: the engine is a pipeline sink
 * (`core.addSink`, so rules see every accepted message after fan-out, in per-device order, and a
 * saturated rule holds the handler's permit: backpressure), outputs re-enter through
 * `core.publish` (the accept hook, i.e. the spool, and the pipeline, like any message), outputs
 * routed northbound are appended to the bridge's spool (sent upstream under its prefix), and the
 * modules and the config file are watched for hot reload. A thin layer: when adapters move to the
 * device port, only this file changes.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import type { Core } from "../core/core.ts";
import type { Logger } from "../core/logger.ts";
import type { Message } from "../core/message.ts";
import type { Northbound } from "../northbound/northbound.ts";
import type { DeadLetterSink } from "./dead_letter.ts";
import { RuleEngine } from "./engine.ts";
import type { RuleConfigInput, RuleEngineLimits } from "./options.ts";
import { FileWatcher } from "./watcher.ts";

/** Options of {@link attachRules}. */
export interface AttachRulesOptions {
  /** The rules (validated). */
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
  /** The northbound bridge, for outputs routed northbound. */
  northbound?: Northbound;
  /** Dead letters. @default logged and counted */
  deadLetters?: DeadLetterSink;
  /** Engine tunables. */
  limits?: Partial<RuleEngineLimits>;
  /** Logger. @default core.log */
  log?: Logger;
}

/** Rules attached to a core. */
export interface AttachedRules extends AsyncDisposable {
  /** The engine. */
  readonly engine: RuleEngine;
  /**
   * Waits until the pipeline is empty and the rules have finished (call after the listeners
   * stopped, before `core.close()`: outputs still need the pipeline).
   */
  settle(): Promise<void>;
  /** Stops watching, finishes the rules' work, stops their workers. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts the rules of `options` on `core`.
 *
 * @example
 * ```ts
 * import { attachRules } from "./attach.ts";
 * import { resolveRules } from "./options.ts";
 * import { Core } from "../core/core.ts";
 * import { createMessage, type Message } from "../core/message.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/r.ts`, 'export default (m) => ({ topic: "rules/r/seen", payload: m.payload });');
 * const core = new Core({ anonymous: true });
 * const got: Message[] = [];
 * core.subscribe("rules/#", { id: "t", deliver: (m) => got.push(m) });
 * const rules = await attachRules(core, {
 *   rules: resolveRules([{ name: "r", from: ["devices/#"], module: "r.ts", to: "core", timeoutMs: 1000,
 *     maxMessageBytes: 1024, enabled: true, onError: "drop", errorsBeforeRestart: 10, restartsBeforeDisable: 5 }]),
 *   baseDir: dir,
 *   watch: false,
 * });
 * await core.publish(createMessage({ topic: "devices/a/telemetry", payload: new Uint8Array([7]) }));
 * await rules.settle();
 * await core.close();
 * await rules.close();
 * await Deno.remove(dir, { recursive: true });
 * if (got[0]?.topic !== "rules/r/seen" || got[0].payload[0] !== 7) throw new Error();
 * ```
 */
export async function attachRules(core: Core, options: AttachRulesOptions): Promise<AttachedRules> {
  const log = (options.log ?? core.log).child("rules");
  const baseDir = resolve(
    options.baseDir ?? (options.configFile ? dirname(options.configFile) : "."),
  );
  const nb = options.northbound;
  if (options.dataDir) await Deno.mkdir(options.dataDir, { recursive: true });
  // Outputs re-enter through core.publish (the accept hook, i.e. the spool, then the pipeline,
  // waiting for room), one after the other so that they stay in order.
  let tail: Promise<void> | undefined;
  const publish = (out: Message): Promise<void> => {
    const p: Promise<void> = (tail ?? Promise.resolve()).then(() => core.publish(out)).finally(
      () => {
        if (tail === p) tail = undefined;
      },
    );
    return tail = p;
  };
  const engine = await RuleEngine.start({
    rules: options.rules,
    baseDir,
    publish,
    northbound: nb ? (out) => nb.spool.append(out).then(() => {}) : undefined,
    deadLetters: options.deadLetters,
    stateFile: options.dataDir
      ? `${options.dataDir.replace(/\/+$/, "")}/rules-state.json`
      : undefined,
    clock: core.clock,
    log: options.log ?? core.log,
    metrics: core.metrics,
    limits: options.limits,
  });
  let attached = true;
  core.addSink((msg) => attached ? engine.handle(msg) : undefined);

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

  const settle = async () => {
    // Messages in the pipeline may produce outputs that enter it again: wait until both are quiet
    // (nothing queued or waiting, no message handled in a whole round; the drain loop itself
    // holds one permit while it waits for the queue).
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
  };
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      await watcher?.close();
      await engine.close();
      attached = false;
    })();
  return { engine, settle, close, [Symbol.asyncDispose]: close };
}
