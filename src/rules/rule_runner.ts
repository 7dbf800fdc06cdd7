/**
 * One rule running in its sandbox: a `Worker` with no permissions, fed in batches.
 *
 * - **Batching.** Messages queue in arrival order and go to the worker in batches (one transferred
 *   buffer of payloads, see `_wire.ts`): at once when the worker is idle, otherwise when the batch
 *   in flight comes back or the next one is full (two batches in flight at most, so the worker
 *   never waits for the gateway).
 * - **Order.** One worker per rule runs items one at a time in queue order, and results are applied
 *   in that order: one device's messages (which the pipeline hands over in order) come out in order.
 * - **Backpressure.** The runner is a subscriber of the core (through the engine's port): at
 *   `maxInFlight` messages (or `maxInFlightBytes`) queued or in flight it holds delivery (the
 *   pipeline fills and producers stop reading) until results come back; room frees independently
 *   of publishing the outputs, so the hold is bounded by the time budget. The core lets a holder go
 *   after its hold bound: the runner then queues up to twice the bound and fails what comes past it
 *   as `overloaded` (its `onError` applies).
 * - **Budgets.** A watchdog reads two counters the worker keeps in shared memory (items started,
 *   items finished) every `timeoutMs` while work is in flight: an item still running at two
 *   readings in a row has run at least `timeoutMs` (at most twice that), and the worker is
 *   terminated. The item is failed as a timeout; the items after it, and those before it whose
 *   results the dead worker never sent (their state changes were lost with it too), are run again
 *   on a new worker, in order. Errors in a row past `errorsBeforeRestart` also restart it; past
 *   `restartsBeforeDisable` restarts within `restartWindowMs` the rule is disabled.
 * - **Failures.** Every failed message is counted, logged (rate limited) and then dropped, passed
 *   on to the northbound unchanged, or dead-lettered, per the rule's `onError`.
 *
 * @module
 */

import type { Clock } from "../core/clock.ts";
import type { Draft, PublishResult } from "../core/device_port.ts";
import type { Logger } from "../core/logger.ts";
import type { Message } from "../core/message.ts";
import type { Refusal } from "../core/refusal.ts";
import { validateTopic } from "../core/topic_router.ts";
import type { DeadLetterSink, RuleFailureKind } from "./dead_letter.ts";
import type { LoadedRuleModule } from "./module_loader.ts";
import { RuleLoadError } from "./module_loader.ts";
import type { RuleConfig, RuleEngineLimits } from "./options.ts";
import type { RuleMeter, RuleMetrics } from "./rule_metrics.ts";
import type { RuleStateStore } from "./state_store.ts";
import type { LogLimiter } from "./_log_limiter.ts";
import {
  BatchBuilder,
  type BatchRequest,
  type BatchResult,
  F_TICK,
  itemAt,
  O_CORE,
  O_NORTHBOUND,
  O_QOS_SET,
  O_RETAIN,
  payloadAt,
  S_DROPPED,
  S_ERROR,
  type WorkerReply,
} from "./_wire.ts";

const WORKER_URL = new URL("./_worker.ts", import.meta.url);

/** The protocol label of the rules' port: what outputs carry as their `protocol`. */
export const RULES_PROTOCOL = "rules";

/**
 * Publishes a rule's output into the core (the rules port, under the rule's principal speaking for
 * `deviceId`): accepted or refused, at once or later (the runner counts it pending until then).
 */
export type RuleSend = (
  draft: Draft,
  deviceId: string | undefined,
) => PublishResult | Promise<PublishResult>;

/** Hands a rule's output to the northbound; may be async (pending until it settles). */
export type RuleNorthbound = (output: Message) => void | Promise<void>;

/** What a runner needs from its engine. */
export interface RuleRunnerDeps {
  /** Time source (batches' `now`, watchdog, ticks). */
  clock: Clock;
  /** Logger (component `rules`). */
  log: Logger;
  /** Metric handles. */
  metrics: RuleMetrics;
  /** Engine tunables. */
  limits: RuleEngineLimits;
  /** Persisted state. */
  state: RuleStateStore;
  /** Outputs into the core. */
  send: RuleSend;
  /** Outputs to the northbound; undefined: there is none (such outputs are dropped). */
  northbound: RuleNorthbound | undefined;
  /** Holds delivery of new messages for `holder` (backpressure). */
  hold(holder: object): void;
  /** Lets go of `holder`'s hold. */
  unhold(holder: object): void;
  /** Dead letters. */
  deadLetters: DeadLetterSink;
  /** Rate limiter of repeated log lines. */
  limiter: LogLimiter;
  /** No periodic ticks: only {@link RuleRunner.tick} (`ferry rule test`). @default false */
  manualTicks?: boolean;
}

/** Where a runner is in its life. */
export type RuleRunnerStatus = "loading" | "running" | "restarting" | "disabled" | "closed";

/** A message, or undefined for a tick. */
type Item = Message | undefined;

interface Batch {
  batch: BatchRequest;
  /** Bytes of its topics and payloads (for the in-flight byte bound). */
  bytes: number;
  /** Index of its first item among everything sent to the current worker (once sent). */
  first: number;
  /** performance.now() when its first item was queued (its latency is measured from there). */
  at: number;
}

/** Bytes a queued item counts for. */
function sizeOf(item: Item): number {
  return item ? item.payload.byteLength + item.topic.length : 0;
}

/** Runs one version of one rule. Created and driven by the engine. */
export class RuleRunner {
  /** The rule's configuration. */
  readonly config: RuleConfig;
  /** The loaded module (its URL identifies the version). */
  readonly module: LoadedRuleModule;
  #d: RuleRunnerDeps;
  #status: RuleRunnerStatus = "loading";
  #active = false; // activated: state sent, batches may flow
  #worker: Worker | undefined;
  #workerReady = false;
  #progress: Int32Array<ArrayBufferLike> = new Int32Array(2);
  #ready: PromiseWithResolvers<{ hasTick: boolean; tickMs: number }> | undefined;
  #loadTimer: number | undefined;
  #staging = new BatchBuilder(); // items being packed
  #stagingAt = 0; // performance.now() when its first item was queued
  #packed: Batch[] = []; // packed, waiting for room in the worker's pipeline
  #sent: Batch[] = []; // sent, results not back yet
  #sentTotal = 0;
  #inFlight = 0;
  #inFlightBytes = 0;
  #holding = false; // holding delivery: at maxInFlight
  #flushQueued = false;
  #watchdog: number | undefined;
  #seen = [-1, -1];
  #tick: { ms: number; timer: number | undefined } | undefined;
  #hasTick = false;
  #errorsInRow = 0;
  #restarts: number[] = [];
  #pendingOutputs = 0;
  #accepted = 0; // outputs of the batch being applied accepted at once (counted once per batch)
  #recount = 0; // messages staged again after a restart: counted in already
  #idle: Array<() => void> = [];
  #validTopics = new Map<string, boolean>();
  #m: RuleMeter;
  #origin: string;
  #lastTopic = ""; // the last topic #validTopic looked at, and its answer
  #lastValid = false;
  #ruleLog: Logger;

  /** Creates the runner; call {@link start}. */
  constructor(config: RuleConfig, module: LoadedRuleModule, deps: RuleRunnerDeps) {
    this.config = config;
    this.module = module;
    this.#d = deps;
    this.#m = deps.metrics.forRule(config.name);
    this.#origin = `rule:${config.name}`;
    this.#ruleLog = deps.log;
  }

  /** The rule's name. */
  get name(): string {
    return this.config.name;
  }

  /** Where it is in its life. */
  get status(): RuleRunnerStatus {
    return this.#status;
  }

  /** Messages queued or in flight. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Loads the module in a new worker; resolves once it is loaded, rejects with
   * {@link RuleLoadError} when it cannot be. Messages flow after `after` resolves (the previous
   * version has drained: hot reload keeps order and hands over the state).
   */
  async start(after?: Promise<unknown>): Promise<void> {
    const ready = await this.#spawn();
    const activate = () => {
      if (this.#status === "loading") this.#activate(ready);
    };
    if (after) after.then(activate, activate);
    else activate();
  }

  /**
   * Takes a message (in the caller's order). At `maxInFlight` messages queued or in flight the
   * runner holds delivery until results come back; past twice that (the core let the hold go) the
   * message fails as `overloaded`. A disabled rule applies its `onError` to the message at once.
   */
  push(msg: Message): void {
    if (this.#status === "disabled" || this.#status === "closed") {
      this.#failed(msg, this.#status === "closed" ? "shutdown" : "disabled", {
        name: "Error",
        message: `rule ${this.name} is ${this.#status}`,
      });
      return;
    }
    const size = msg.payload.byteLength + msg.topic.length;
    if (size > this.config.maxMessageBytes) {
      this.#m.in();
      this.#failed(msg, "too_large", {
        name: "RangeError",
        message:
          `message of ${size} bytes exceeds the rule's ${this.config.maxMessageBytes} byte limit`,
      });
      return;
    }
    const l = this.#d.limits;
    if (this.#inFlight >= 2 * l.maxInFlight || this.#inFlightBytes >= 2 * l.maxInFlightBytes) {
      this.#m.in();
      this.#failed(msg, "overloaded", {
        name: "Error",
        message: `rule ${this.name} has ${this.#inFlight} messages queued or in flight`,
      });
      return;
    }
    this.#enqueue(msg);
    if (!this.#holding && this.#full()) {
      this.#holding = true;
      this.#d.hold(this);
    }
  }

  /** Queues a call of the module's `tick` export now (if it has one). */
  tick(): void {
    if (this.#hasTick && this.#status !== "disabled" && this.#status !== "closed") {
      this.#enqueue(undefined);
    }
  }

  /** Resolves once nothing is queued, in flight or being published. */
  drain(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Re-enables a disabled rule (a new worker, counters reset). */
  async enable(): Promise<void> {
    if (this.#status !== "disabled") return;
    this.#status = "loading";
    this.#restarts = [];
    this.#errorsInRow = 0;
    this.#active = false;
    await this.start();
  }

  /** Disables the rule now: its worker is stopped and queued messages get their `onError`. */
  disable(reason = "disabled by the operator"): void {
    if (this.#status === "disabled" || this.#status === "closed") return;
    this.#ruleLog.error("rule disabled", { rule: this.name, reason });
    this.#stopWorker();
    this.#status = "disabled";
    this.#failAll("disabled", reason);
  }

  /**
   * Finishes what was handed over (bounded by the time budget), then stops the worker. New
   * messages are refused (`onError` as `shutdown`). Idempotent.
   */
  async close(): Promise<void> {
    if (this.#status === "closed") return;
    if (this.#status === "running" || this.#status === "restarting") await this.drain();
    else if (this.#status === "loading") this.#failAll("shutdown", "closed before it was running");
    this.#stopWorker();
    this.#status = "closed";
    await this.drain(); // outputs still being published
    this.#release(true);
  }

  // ---- worker lifecycle ----

  #spawn(): Promise<{ hasTick: boolean; tickMs: number }> {
    const progress = new SharedArrayBuffer(8);
    this.#progress = new Int32Array(progress);
    this.#seen = [-1, -1];
    this.#sentTotal = 0;
    const w = new Worker(WORKER_URL, {
      type: "module",
      name: `rule ${this.name}`,
      deno: { permissions: "none" },
    });
    this.#worker = w;
    this.#workerReady = false;
    const ready = this.#ready = Promise.withResolvers();
    w.onmessage = (e: MessageEvent<WorkerReply>) => {
      if (w === this.#worker) this.#onReply(e.data);
    };
    w.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      if (w === this.#worker) this.#onCrash(e.message);
    };
    w.onmessageerror = () => {
      if (w === this.#worker) this.#onCrash("a message from the worker could not be read");
    };
    w.postMessage({
      t: "init",
      url: this.module.url,
      rule: this.name,
      progress,
      maxMessageBytes: this.config.maxMessageBytes,
      maxStateBytes: this.#d.limits.maxStateBytes,
      maxOutputs: this.#d.limits.maxOutputsPerMessage,
      maxOutputBytes: this.config.maxMessageBytes * this.#d.limits.outputBytesFactor,
      names: this.module.names,
    });
    return ready.promise.finally(() => {
      if (this.#loadTimer !== undefined) this.#d.clock.clearTimeout(this.#loadTimer);
      this.#loadTimer = undefined;
    }).catch((err) => {
      this.#stopWorker();
      throw err;
    });
  }

  #activate(ready: { hasTick: boolean; tickMs: number }): void {
    this.#status = "running";
    this.#active = true;
    this.#worker!.postMessage({ t: "state", entries: this.#d.state.entries(this.name) });
    this.#hasTick = ready.hasTick;
    if (ready.hasTick && !this.#d.manualTicks) {
      this.#tick = { ms: ready.tickMs, timer: undefined };
      this.#armTick();
    }
    this.#flush();
  }

  #stopWorker(): void {
    this.#worker?.terminate();
    this.#worker = undefined;
    if (this.#watchdog !== undefined) this.#d.clock.clearTimeout(this.#watchdog);
    this.#watchdog = undefined;
    if (this.#tick?.timer !== undefined) this.#d.clock.clearTimeout(this.#tick.timer);
    this.#tick = undefined;
    if (this.#loadTimer !== undefined) this.#d.clock.clearTimeout(this.#loadTimer);
    this.#loadTimer = undefined;
    this.#active = false;
  }

  /**
   * Replaces the worker: the in-flight items go back to the front of the queue, in order, except
   * `culprit` (an index among everything sent to the old worker), which fails as `kind`.
   */
  #restart(why: string, culprit?: { index: number; kind: RuleFailureKind; message: string }): void {
    this.#stopWorker();
    const again: Item[] = [];
    for (const b of this.#sent) {
      for (let j = 0; j < b.batch.flags.length; j++) {
        const item = itemAt(b.batch, j) as Item;
        if (culprit && b.first + j === culprit.index) {
          this.#inFlight--;
          this.#inFlightBytes -= sizeOf(item);
          this.#failed(item, culprit.kind, { name: "Error", message: culprit.message });
        } else again.push(item);
      }
    }
    again.push(...this.#takeQueued());
    this.#sent = [];
    for (const item of again) {
      if (item) this.#recount++;
      this.#stage(item);
    }
    this.#errorsInRow = 0;
    const now = this.#d.clock.now();
    this.#restarts = this.#restarts.filter((t) => now - t < this.#d.limits.restartWindowMs);
    if (this.#restarts.length >= this.config.restartsBeforeDisable) {
      this.disable(
        `${
          this.#restarts.length + 1
        } failures needing a restart within ${this.#d.limits.restartWindowMs} ms (last: ${why})`,
      );
      return;
    }
    this.#restarts.push(now);
    this.#m.restart();
    this.#ruleLog.warn("rule restarted", { rule: this.name, reason: why });
    this.#status = "restarting";
    this.#spawn().then((ready) => {
      if (this.#status === "restarting") this.#activate(ready);
    }, (err) => {
      if (this.#status !== "restarting") return;
      this.#m.error("load");
      this.#restart(`cannot reload: ${(err as Error).message}`);
    });
    this.#release();
  }

  #onCrash(message: string): void {
    this.#m.error("crash");
    if (!this.#workerReady) { // the spawn in progress fails (and restarts or reports it)
      this.#ready?.reject(new RuleLoadError(`Cannot load rule ${this.name}: ${message}`));
      return;
    }
    this.#restart(`worker crashed: ${message}`);
  }

  #onReply(r: WorkerReply): void {
    switch (r.t) {
      case "host": // the host is up: the rule's module now has loadTimeoutMs to load
        this.#loadTimer = this.#d.clock.setTimeout(() => {
          this.#loadTimer = undefined;
          this.#ready?.reject(
            new RuleLoadError(
              `Cannot load rule ${this.name}: its module did not finish loading within ${this.#d.limits.loadTimeoutMs} ms`,
            ),
          );
        }, this.#d.limits.loadTimeoutMs);
        return;
      case "ready":
        this.#workerReady = true;
        this.#ready?.resolve(r);
        return;
      case "fail":
        this.#ready?.reject(
          new RuleLoadError(
            `Cannot load rule ${this.name} (${this.module.files[0]}): ${r.name}: ${r.message}`,
          ),
        );
        return;
      case "uncaught":
        this.#m.error("uncaught");
        this.#logLimited("uncaught", "rule failed outside a message (unawaited promise or timer)", {
          error: `${r.name}: ${r.message}`,
        });
        return;
      case "done":
        this.#onDone(r);
        return;
    }
  }

  // ---- batching ----

  #enqueue(item: Item): void {
    this.#inFlight++;
    this.#inFlightBytes += sizeOf(item);
    this.#stage(item);
    this.#schedule();
  }

  /** Packs `item` into the staging batch (sealed into `#ready` when full). */
  #stage(item: Item): void {
    if (this.#staging.length === 0) this.#stagingAt = performance.now();
    this.#staging.add(item, item ? 0 : this.#d.clock.now());
    if (this.#staging.length >= this.#d.limits.batchSize) this.#seal();
  }

  #seal(): void {
    if (this.#staging.length === 0) return;
    const s = this.#staging; // reused: its buffers stay grown (build() copies out of them)
    let n = s.messages;
    if (this.#recount) { // run again after a restart: counted when first sealed
      const k = Math.min(this.#recount, n);
      this.#recount -= k;
      n -= k;
    }
    if (n) this.#m.in(n); // once per batch
    this.#packed.push({ batch: s.build(), bytes: s.bytes, first: 0, at: this.#stagingAt });
    s.reset();
  }

  /** Everything packed and not sent, as items, in order (emptied). */
  #takeQueued(): Item[] {
    this.#seal();
    const items: Item[] = [];
    for (const b of this.#packed) {
      for (let j = 0; j < b.batch.flags.length; j++) items.push(itemAt(b.batch, j) as Item);
    }
    this.#packed = [];
    return items;
  }

  #schedule(): void {
    if (!this.#active) return;
    if (this.#sent.length === 0) {
      // Idle worker: send at the end of this turn (what arrives meanwhile shares the batch).
      if (!this.#flushQueued) {
        this.#flushQueued = true;
        queueMicrotask(() => {
          this.#flushQueued = false;
          this.#flush();
        });
      }
    } else if (this.#packed.length && this.#sent.length < this.#d.limits.batchesInFlight) {
      this.#flush();
    }
  }

  /** Sends packed batches and what is staged while the worker has room. */
  #flush(): void {
    // Outputs waiting for room in the pipeline: no more work for the worker until half of them
    // went in (the outputs respect the pipeline's capacity; this keeps their number bounded).
    if (this.#pendingOutputs >= this.#d.limits.maxPendingOutputs / 2) return;
    while (this.#active && this.#sent.length < this.#d.limits.batchesInFlight) {
      if (this.#packed.length === 0) this.#seal();
      const b = this.#packed.shift();
      if (!b) break;
      b.first = this.#sentTotal;
      b.batch.now = this.#d.clock.now();
      this.#sent.push(b);
      this.#sentTotal += b.batch.flags.length;
      this.#worker!.postMessage(b.batch); // cloned (a memcpy): kept to run again after a restart
    }
    if (this.#sent.length && this.#watchdog === undefined) this.#armWatchdog();
  }

  #armWatchdog(): void {
    this.#watchdog = this.#d.clock.setTimeout(() => this.#watch(), this.config.timeoutMs);
    this.#d.clock.unref?.(this.#watchdog);
  }

  #watch(): void {
    this.#watchdog = undefined;
    if (!this.#active || this.#sent.length === 0) return;
    const started = Atomics.load(this.#progress, 0);
    const finished = Atomics.load(this.#progress, 1);
    if (started > finished && started === this.#seen[0] && finished === this.#seen[1]) {
      this.#m.timeout();
      this.#restart(`a message ran over the ${this.config.timeoutMs} ms budget`, {
        index: finished,
        kind: "timeout",
        message: `rule ${this.name} ran over its ${this.config.timeoutMs} ms budget`,
      });
      return;
    }
    this.#seen = [started, finished];
    this.#armWatchdog();
  }

  #armTick(): void {
    const t = this.#tick;
    if (!t) return;
    t.timer = this.#d.clock.setTimeout(() => {
      t.timer = undefined;
      if (this.#tick !== t) return;
      // A tick when the rule is saturated is skipped: the next one flushes what this one would.
      if (!this.#full()) this.#enqueue(undefined);
      this.#armTick();
    }, t.ms);
    this.#d.clock.unref?.(t.timer);
  }

  #onDone(r: BatchResult): void {
    const sent = this.#sent.shift();
    if (!sent) return;
    const batch = sent.batch;
    if (r.state) this.#d.state.apply(this.name, r.state);
    let o = 0;
    let e = 0;
    let filtered = 0;
    let messages = 0;
    // Errors in a row are counted across the batch: a run that reached the threshold restarts
    // the worker even when a later message of the same batch succeeded (batching must not
    // change what "in a row" means).
    let longestRun = 0;
    const n = batch.flags.length;
    const outs = r.outItem;
    this.#accepted = 0;
    for (let i = 0; i < n; i++) {
      const flags = batch.flags[i];
      const tick = (flags & F_TICK) !== 0;
      if (!tick) messages++;
      const status = r.status[i];
      if (status === S_ERROR) {
        const [, name, message] = r.errors[e++];
        longestRun = Math.max(longestRun, ++this.#errorsInRow);
        this.#failed(itemAt(batch, i) as Item, "throw", { name, message });
      } else {
        this.#errorsInRow = 0;
        if (status === S_DROPPED && !tick) filtered++;
      }
      if (o < outs.length && outs[o] === i) {
        // The source's device and QoS, read from the batch (no message object rebuilt).
        const dev = tick ? 0 : batch.devices[i];
        const deviceId = dev === 0 ? undefined : batch.strings[dev - 1];
        const qos = (flags & 3) as 0 | 1 | 2;
        for (; o < outs.length && outs[o] === i; o++) this.#emit(r, o, deviceId, qos);
      }
    }
    const m = this.#m;
    // One latency per batch, from when its first message was queued: an upper bound for the rest
    // (a clock read per message costs more than the rest of the bookkeeping).
    if (messages) m.latency((performance.now() - sent.at) / 1000, messages);
    if (filtered) m.dropped("filtered", filtered);
    if (this.#accepted) m.out("core", this.#accepted);
    this.#inFlight -= n;
    this.#inFlightBytes -= sent.bytes;
    this.#release();
    if (longestRun >= this.config.errorsBeforeRestart) {
      this.#restart(`${longestRun} errors in a row`);
      this.#checkIdle();
      return;
    }
    if (r.heap > this.config.maxHeapBytes) {
      m.error("memory");
      this.#restart(
        `its heap grew to ${mib(r.heap)} MiB, over its ${mib(this.config.maxHeapBytes)} MiB limit`,
      );
      this.#checkIdle();
      return;
    }
    if (this.#sent.length === 0 && this.#watchdog !== undefined) {
      this.#d.clock.clearTimeout(this.#watchdog);
      this.#watchdog = undefined;
    }
    this.#flush();
    this.#checkIdle();
  }

  /** True when new messages should wait (too many messages or bytes queued or in flight). */
  #full(): boolean {
    const l = this.#d.limits;
    return this.#inFlight >= l.maxInFlight || this.#inFlightBytes >= l.maxInFlightBytes;
  }

  /** Lets go of the hold on delivery once there is room (at once when `always`). */
  #release(always = false): void {
    if (this.#holding && (always || !this.#full())) {
      this.#holding = false;
      this.#d.unhold(this);
    }
  }

  // ---- outputs and failures ----

  #emit(r: BatchResult, o: number, deviceId: string | undefined, qosIn: 0 | 1 | 2): void {
    const flags = r.outFlags[o];
    const topic = r.outTopics[o];
    const route = flags & O_NORTHBOUND ? "northbound" : flags & O_CORE ? "core" : this.config.to;
    const props = r.outProps.length ? r.outProps.find(([j]) => j === o)?.[1] : undefined;
    const payload = payloadAt(r.outPayload, r.outEnds, o);
    const qos = (flags & O_QOS_SET ? flags & 3 : qosIn) as 0 | 1 | 2;
    const retain = (flags & O_RETAIN) !== 0;
    if (route !== "core") {
      const out: Message = {
        topic,
        payload,
        qos,
        retain,
        ts: this.#d.clock.now(),
        protocol: RULES_PROTOCOL,
        deviceId,
        origin: this.#origin,
      };
      if (props) out.properties = { userProperties: props };
      this.#toNorthbound(out);
      return;
    }
    if (!this.#validTopic(topic)) {
      this.#m.error("topic");
      this.#m.dropped("bad_topic");
      this.#logLimited("topic", "rule output refused: not a valid topic", {
        topic,
        why: validateTopic(topic),
      });
      return;
    }
    const draft: Draft = { topic, payload, qos, retain, origin: this.#origin };
    if (props) draft.properties = { userProperties: props };
    this.#publish(draft, deviceId);
  }

  /** A topic an output may have (no wildcards, not empty): cached, devices repeat topics. */
  #validTopic(topic: string): boolean {
    if (topic === this.#lastTopic) return this.#lastValid;
    let ok = this.#validTopics.get(topic);
    if (ok === undefined) {
      ok = validateTopic(topic) === undefined;
      if (this.#validTopics.size >= 4096) this.#validTopics.clear();
      this.#validTopics.set(topic, ok);
    }
    this.#lastTopic = topic;
    return this.#lastValid = ok;
  }

  /** Into the core through the port (which checks the rule's publish filters). */
  #publish(draft: Draft, deviceId: string | undefined): void {
    if (this.#pendingOutputs >= this.#d.limits.maxPendingOutputs) {
      this.#overloaded();
      return;
    }
    let r: PublishResult | Promise<PublishResult>;
    try {
      r = this.#d.send(draft, deviceId);
    } catch (err) {
      this.#notPublished(draft.topic, err);
      return;
    }
    if (!(r instanceof Promise)) {
      if (r.ok) this.#accepted++;
      else this.#refused(draft.topic, r);
      return;
    }
    this.#pendingOutputs++;
    // One promise per waiting output (no .finally: an output waits for room in a full pipeline).
    r.then((res) => {
      if (res.ok) this.#m.out("core");
      else this.#refused(draft.topic, res);
      this.#outputSettled();
    }, (err) => {
      this.#notPublished(draft.topic, err);
      this.#outputSettled();
    });
  }

  /** An output that waited went in (or was refused). */
  #outputSettled(): void {
    // Below half the bound again: the worker gets work again (#flush stopped at it).
    if (this.#pendingOutputs-- === this.#d.limits.maxPendingOutputs / 2 && this.#active) {
      this.#flush();
    }
    this.#checkIdle();
  }

  #refused(topic: string, r: Refusal<string>): void {
    const m = this.#m;
    m.dropped(r.reason);
    if (r.reason === "not_authorized") {
      m.error("acl");
      this.#logLimited("acl", "rule output refused: topic outside its publish filters", {
        topic,
        publish: this.config.publish,
      });
    } else {
      this.#logLimited(r.reason, "rule output refused", {
        topic,
        reason: r.reason,
        why: r.message,
      });
    }
  }

  #notPublished(topic: string, error: unknown): void {
    this.#m.dropped("publish_failed");
    this.#logLimited("publish", "rule output not published", { topic, error });
  }

  #overloaded(): void {
    this.#m.dropped("overloaded");
    this.#logLimited("overloaded", "rule output dropped: too many outputs waiting to publish", {
      pending: this.#pendingOutputs,
    });
  }

  #toNorthbound(out: Message): void {
    const nb = this.#d.northbound;
    const m = this.#m;
    if (!nb) {
      m.dropped("no_northbound");
      this.#logLimited(
        "no_northbound",
        "rule output for the northbound dropped: none is configured",
        {
          topic: out.topic,
        },
      );
      return;
    }
    if (this.#pendingOutputs >= this.#d.limits.maxPendingOutputs) {
      this.#overloaded();
      return;
    }
    let p: void | Promise<void>;
    try {
      p = nb(out);
    } catch (err) {
      this.#notPublished(out.topic, err);
      return;
    }
    if (!(p instanceof Promise)) {
      m.out("northbound");
      return;
    }
    this.#pendingOutputs++;
    p.then(() => m.out("northbound"), (err) => this.#notPublished(out.topic, err))
      .finally(() => {
        this.#pendingOutputs--;
        this.#checkIdle();
      });
  }

  /** Counts, logs and applies `onError` to a message the rule failed on. */
  #failed(msg: Item, kind: RuleFailureKind, error: { name: string; message: string }): void {
    const m = this.#m;
    if (kind !== "disabled" && kind !== "shutdown") {
      m.error(kind);
      this.#logLimited(kind, "rule failed on a message", {
        kind,
        topic: msg?.topic,
        device: msg?.deviceId,
        error: `${error.name}: ${error.message}`,
      });
    }
    if (!msg) return; // a tick
    switch (this.config.onError) {
      case "drop":
        m.dropped(kind);
        return;
      case "pass":
        this.#toNorthbound({ ...msg, origin: this.#origin });
        return;
      case "dead-letter": {
        m.deadLetter();
        const at = this.#d.clock.now();
        try {
          const p = this.#d.deadLetters.deadLetter({
            rule: this.name,
            kind,
            error,
            message: msg,
            at,
          });
          if (p instanceof Promise) {
            p.catch((err) =>
              this.#logLimited("dead_letter", "dead letter not stored", { error: err })
            );
          }
        } catch (err) {
          this.#logLimited("dead_letter", "dead letter not stored", { error: err });
        }
      }
    }
  }

  #failAll(kind: RuleFailureKind, reason: string): void {
    const items: Item[] = [];
    for (const b of this.#sent) {
      for (let j = 0; j < b.batch.flags.length; j++) items.push(itemAt(b.batch, j) as Item);
    }
    this.#sent = [];
    items.push(...this.#takeQueued());
    for (const item of items) this.#failed(item, kind, { name: "Error", message: reason });
    this.#inFlight -= items.length;
    for (const item of items) this.#inFlightBytes -= sizeOf(item);
    this.#release();
    this.#checkIdle();
  }

  #logLimited(key: string, msg: string, fields: Record<string, unknown>): void {
    const suppressed = this.#d.limiter.take(`${this.name}\u0000${key}`);
    if (suppressed === undefined) return;
    this.#ruleLog.warn(msg, { rule: this.name, ...fields, suppressed });
  }

  #isIdle(): boolean {
    return this.#inFlight === 0 && this.#pendingOutputs === 0;
  }

  #checkIdle(): void {
    if (!this.#isIdle() || this.#idle.length === 0) return;
    for (const resolve of this.#idle.splice(0)) resolve();
  }
}

/** Bytes as MiB with one decimal. */
function mib(bytes: number): string {
  return (bytes / 1048576).toFixed(1);
}
