/**
 * The protocol-agnostic heart of the gateway. A protocol adapter asks for a port
 * (`core.port({ name })`, see `device_port.ts`) and goes through it for everything: login,
 * publishing, sessions and presence, commands, subscriptions. The gateway wires the rest here:
 * credentials, the durable stage (accept hook), sinks, retained persistence. The pipeline handler
 * stores retained messages, fans each message out to matching subscribers, and hands it to sinks
 * (the northbound bridge) in per-device order.
 *
 * @module
 */

import type { DeviceAclRules } from "./acl.ts";
import { Admission, type AdmissionOptions } from "./admission.ts";
import { type Clock, systemClock } from "./clock.ts";
import {
  CommandStore,
  type CommandStoreLimits,
  defaultCommandStoreLimits,
} from "./command_store.ts";
import { RateLimiter } from "./rate_limiter.ts";
import { DeadlineQueue } from "./deadline_queue.ts";
import { BoundPort, type DevicePort, type PortHost, type ProtocolSpec } from "./device_port.ts";
import { Logger } from "./logger.ts";
import { LogThrottle } from "./log_throttle.ts";
import { LoginGate } from "./login.ts";
import { createMessage, type Message, type Protocol } from "./message.ts";
import { MetricsRegistry } from "./metrics.ts";
import { FlowGate } from "./flow_gate.ts";
import { PayloadBudget } from "./payload_budget.ts";
import { defaultLimits } from "./options.ts";
import { Pipeline } from "./pipeline.ts";
import { type CoreMetrics, coreMetrics, ProtocolStats } from "./protocol_stats.ts";
import { type DeviceCredential, DeviceRegistry, type ServiceAccount } from "./registry.ts";
import { SessionDirectory } from "./session_directory.ts";
import { Supervisor } from "./supervisor.ts";
import { type RetainedPersistence, RetainedStore } from "./retained_store.ts";
import { TopicRouter } from "./topic_router.ts";
import { parseTopic, statusTopic } from "./topics.ts";

/** The protocol label of what the core itself publishes (presence, `$SYS` statistics). */
const SYSTEM = "system";

/** Topics under `$SYS` are statistics of this run: never kept on disk. */
const isSys = (topic: string) => topic.startsWith("$SYS/");

/** Presence payloads, shared by every device's retained status (payloads are read-only). */
const ONLINE = new TextEncoder().encode("online");
const OFFLINE = new TextEncoder().encode("offline");

export type { Subscriber } from "./device_port.ts";
import type { Subscriber } from "./device_port.ts";

/** Processes every accepted message after fan-out, in per-device order (e.g. northbound). */
export type Sink = (msg: Message) => void | Promise<void>;

/**
 * Runs before a message is accepted (e.g. the northbound spool's durable append). `publish`
 * resolves, and the device is acknowledged, only after it resolves: acknowledged means durable.
 * Calls for one device come one at a time, in order. Throwing refuses the message.
 */
export type AcceptHook = (msg: Message) => void | Promise<void>;

/** Tunables of {@link Core}. */
export interface CoreOptions {
  /** Time source. @default systemClock */
  clock?: Clock;
  /** Root logger. */
  log?: Logger;
  /** Metrics registry. */
  metrics?: MetricsRegistry;
  /** Queue capacity of the pipeline. @default 1024 */
  queueCapacity?: number;
  /** Handler pool size. @default 16 */
  concurrency?: number;
  /** Device credentials. */
  devices?: DeviceCredential[];
  /** Service accounts. */
  services?: ServiceAccount[];
  /** Let unknown devices in. @default false */
  anonymous?: boolean;
  /** ACL rules for devices with credentials (`{id}` substituted); built-in rules when absent. */
  deviceAcl?: DeviceAclRules;
  /** Deadline resolution of the supervisor. @default 50 */
  timerResolutionMs?: number;
  /** Per-address connection cap. */
  admission?: AdmissionOptions;
  /** Failed logins per identity and address per minute before it is throttled (0 = off). @default 20 */
  authFailuresPerMinute?: number;
  /** Per-device message rate (token bucket); 0 = unlimited. @default 0 */
  deviceRatePerSec?: number;
  /** Per-device burst. @default 2 × deviceRatePerSec */
  deviceBurst?: number;
  /**
   * Longest a slow subscriber may hold back delivery (and so, through the full pipeline, the
   * publishers) before it is let go to its own slow-consumer policy, ms. @default 1000
   */
  subscriberHoldMs?: number;
  /** Limits of the pending-command store ({@link Core.commands}). */
  commands?: Partial<CommandStoreLimits>;
  /**
   * Payload bytes held in flight across every protocol (queued messages, large packets being
   * received) before producers wait or are refused. @default 67108864 (64 MiB)
   */
  payloadBudgetBytes?: number;
  /**
   * Publishes one stream connection may have waiting (durable stage, room) while it reads on
   * ({@link DevicePort.lane}). @default 64
   */
  publishWindow?: number;
}

export type { CoreMetrics };

/**
 * Wires registry, router, retained store, pipeline and supervisor together.
 *
 * @example
 * ```ts
 * import { Core } from "./core.ts";
 * import { createMessage } from "./message.ts";
 * const core = new Core({ anonymous: true });
 * const got: string[] = [];
 * core.subscribe("devices/+/telemetry/#", { id: "t", deliver: (m) => got.push(m.topic) });
 * await core.publish(createMessage({ topic: "devices/a/telemetry", payload: new Uint8Array() }));
 * await core.close();
 * if (got[0] !== "devices/a/telemetry") throw new Error();
 * ```
 */
export class Core implements AsyncDisposable {
  /** Time source. */
  readonly clock: Clock;
  /** Root logger. */
  readonly log: Logger;
  /** Metrics registry. */
  readonly metrics: MetricsRegistry;
  /** Shared metric handles. */
  readonly stats: CoreMetrics;
  /** Devices, credentials, presence. */
  readonly registry: DeviceRegistry;
  /** Retained messages. */
  readonly retained: RetainedStore;
  /** Subscriptions. */
  readonly router: TopicRouter<Subscriber> = new TopicRouter();
  /** The ingest pipeline. */
  readonly pipeline: Pipeline;
  /** Backpressure from slow subscribers to publishers. */
  readonly flow: FlowGate;
  /** One timer heap for every keepalive and idle deadline. */
  readonly deadlines: DeadlineQueue;
  /** The descriptor budget and per-address connection caps, for every listener. */
  readonly admission: Admission;
  /** Login for every protocol: authentication and the failed-login throttle. */
  readonly logins: LoginGate;
  /** Keepalives of sessions, idle presence of sessionless devices. */
  readonly supervisor: Supervisor;
  /** Payload bytes in flight, across every protocol. */
  readonly budget: PayloadBudget;
  /** Per-device message rate limits, for every protocol. */
  readonly rates: RateLimiter;
  /**
   * Pending commands of devices that do not subscribe themselves, delivered once on whichever
   * protocol the device uses. Adapters that deliver commands hold it open (`commands.open()`).
   */
  readonly commands: CommandStore;
  /** Client sessions of the adapters that keep them (by client id), for management. */
  readonly sessions: SessionDirectory = new SessionDirectory();
  #sinks: Sink[] = [];
  #accept: AcceptHook | undefined;
  #closing = false;
  #coreLog: Logger;
  #ports = new Map<Protocol, BoundPort>();
  #ownCommands = new Set<Protocol>();
  #host: PortHost;
  #publishWindow: number;

  /** Creates the core. */
  constructor(options: CoreOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.#publishWindow = options.publishWindow ?? defaultLimits.publishWindow;
    this.log = options.log ?? new Logger();
    this.#coreLog = this.log.child("core");
    this.metrics = options.metrics ?? new MetricsRegistry();
    this.retained = new RetainedStore();
    const refusals = new LogThrottle(this.#coreLog, { clock: this.clock });
    this.admission = new Admission({
      ...options.admission,
      onRefuse: (reason, address) => {
        this.stats.refusedConnections.inc({ reason });
        refusals.warn(
          `admission:${reason}`,
          reason === "descriptors"
            ? "connection refused: the descriptor budget is spent"
            : "connection refused: per-address limit reached",
          { reason, address, budget: this.admission.budget, open: this.admission.total },
        );
      },
    });

    this.rates = new RateLimiter({
      ratePerSec: options.deviceRatePerSec,
      burst: options.deviceBurst,
      now: () => this.clock.now(),
    });
    this.deadlines = new DeadlineQueue({
      clock: this.clock,
      resolutionMs: options.timerResolutionMs,
    });
    this.registry = new DeviceRegistry({
      devices: options.devices,
      services: options.services,
      anonymous: options.anonymous,
      deviceAcl: options.deviceAcl,
      now: () => this.clock.now(),
      onPresence: (id, state, protocol, reason) => this.#presence(id, state, protocol, reason),
    });
    this.logins = new LoginGate(this.registry, {
      failuresPerMinute: options.authFailuresPerMinute,
      now: () => this.clock.now(),
    });
    this.flow = new FlowGate({
      clock: this.clock,
      maxHoldMs: options.subscriberHoldMs ?? defaultLimits.subscriberHoldMs,
      onEvict: () => {
        this.stats.drops.inc({ protocol: "system", reason: "subscriber_hold_expired" });
        this.#coreLog.warn("a slow subscriber held delivery too long: no longer waiting for it", {
          holdMs: options.subscriberHoldMs ?? defaultLimits.subscriberHoldMs,
        });
      },
    });
    this.budget = new PayloadBudget(
      options.payloadBudgetBytes ?? defaultLimits.payloadBudgetBytes,
    );
    this.pipeline = new Pipeline((m) => this.#handle(m), {
      budget: this.budget,
      gate: this.flow, // a subscriber is behind: nothing is dispatched, the queue fills
      capacity: options.queueCapacity,
      concurrency: options.concurrency,
      onError: (err, msg) => {
        this.stats.errors.inc({ protocol: msg.protocol, code: "handler_failed" });
        this.#coreLog.error("message handler failed", { topic: msg.topic, error: err });
      },
    });
    this.commands = new CommandStore({
      ...defaultCommandStoreLimits,
      ...options.commands,
      clock: this.clock,
      subscribe: (filter, sub) => this.subscribe(filter, sub),
      protocolOf: (id) => this.registry.get(id)?.protocol,
      deliversOwnCommands: (p) => this.#ownCommands.has(p),
      onDrop: (device, reason) => {
        this.stats.drops.inc({ protocol: "system", reason: `command_${reason}` });
        this.#coreLog.debug("command dropped", { device, reason });
      },
    });
    const m = this.metrics;
    this.stats = coreMetrics(m);
    this.supervisor = new Supervisor({
      deadlines: this.deadlines,
      registry: this.registry,
      reaped: this.stats.reaped,
      log: this.#coreLog,
    });
    this.#host = this.#portHost();
    m.gauge(
      "ferry_pipeline_queue_depth",
      "Messages waiting in the pipeline",
      () => this.pipeline.depth,
    );
    m.gauge(
      "ferry_pipeline_queue_capacity",
      "Pipeline queue capacity",
      () => this.pipeline.capacity,
    );
    m.gauge(
      "ferry_pipeline_handlers_in_use",
      "Handler pool permits in use",
      () => this.pipeline.inUse,
    );
    m.gauge("ferry_pipeline_handlers", "Handler pool size", () => this.pipeline.concurrency);
    m.gauge(
      "ferry_payload_budget_used_bytes",
      "Payload bytes held in flight (queued messages, large packets being received)",
      () => this.budget.used,
    );
    m.gauge(
      "ferry_payload_budget_bytes",
      "Payload bytes the gateway may hold in flight",
      () => this.budget.total,
    );
    m.gauge(
      "ferry_pipeline_waiting_producers",
      "Producers blocked on a full queue",
      () => this.pipeline.waiting,
    );
    m.gauge(
      "ferry_devices_online",
      "Devices online by protocol",
      () => [...this.registry.onlineByProtocol()].map(([p, n]) => [{ protocol: p }, n]),
    );
    m.gauge("ferry_subscriptions", "Active subscriptions", () => this.router.size);
    m.gauge(
      "ferry_flow_held_by",
      "Subscribers holding delivery back until their send buffer drains",
      () => this.flow.holders,
    );
    m.gauge("ferry_retained_messages", "Retained topics", () => this.retained.size);
    m.gauge("ferry_pending_commands", "Commands kept for devices", () => this.commands.size);
    m.gauge(
      "ferry_connection_budget",
      "Connections all listeners together may hold (open-file limit minus the reserve)",
      () => Number.isFinite(this.admission.budget) ? this.admission.budget : -1,
    );
    m.gauge(
      "ferry_connections_admitted",
      "Connections holding a slot of the budget, every listener",
      () => this.admission.total,
    );
  }

  /** True once `close()` started. */
  get closing(): boolean {
    return this.#closing;
  }

  /** Adds a sink that sees every accepted message after fan-out. */
  addSink(sink: Sink): void {
    this.#sinks.push(sink);
  }

  /** Sets the hook every message passes before it is accepted (one hook; `undefined` clears). */
  setAcceptHook(hook: AcceptHook | undefined): void {
    this.#accept = hook;
  }

  /**
   * Makes retained messages durable: loads what `persistence` kept and reports every change to it
   * (call before any listener accepts). Presence is special: every device is offline after a
   * restart, so a status is always kept as `offline` (a device going online writes nothing once
   * its `offline` is on disk) and a stale `online` found on disk is loaded as `offline`. Returns
   * the number of retained messages loaded.
   */
  persistRetained(persistence: RetainedPersistence): number {
    const offlineOnDisk = new Set<string>();
    const isStatus = (topic: string) => parseTopic(topic).kind === "status";
    return this.retained.persist({
      load: () =>
        persistence.load().filter((m) => !isSys(m.topic)).map((m) => {
          if (!isStatus(m.topic)) return m;
          offlineOnDisk.add(m.topic);
          return { ...m, payload: OFFLINE };
        }),
      set: (msg) => {
        if (isSys(msg.topic)) return;
        if (!isStatus(msg.topic)) return persistence.set(msg);
        if (offlineOnDisk.has(msg.topic)) return;
        offlineOnDisk.add(msg.topic);
        persistence.set({ ...msg, payload: OFFLINE });
      },
      delete: (topic) => {
        if (isSys(topic)) return;
        offlineOnDisk.delete(topic);
        persistence.delete(topic);
      },
    }, this.clock.now());
  }

  /** Subscribes; returns the function that unsubscribes. */
  subscribe(filter: string, sub: Subscriber): () => void {
    this.router.add(filter, sub);
    return () => this.router.remove(filter, sub);
  }

  /**
   * Accepts a message, waiting while the pipeline is full. Resolves once accepted: this is the
   * moment a device may be acknowledged.
   */
  async publish(msg: Message, signal?: AbortSignal): Promise<void> {
    if (this.#accept) await this.#accept(msg);
    await this.pipeline.submit(msg, signal);
    this.#host.accepted(msg);
  }

  /**
   * The port of protocol `spec.name`, made on first use: the one thing a protocol adapter calls.
   * Asking again for the same name returns the same port.
   */
  port(spec: ProtocolSpec): DevicePort {
    let p = this.#ports.get(spec.name);
    if (!p) {
      p = new BoundPort(this.#host, spec.name, new ProtocolStats(this.stats, spec.name));
      this.#ports.set(spec.name, p);
    }
    if (spec.deliversOwnCommands) this.#ownCommands.add(spec.name);
    return p;
  }

  /** What every port works with: the core's parts, with live views of its state. */
  #portHost(): PortHost {
    // deno-lint-ignore no-this-alias
    const core = this;
    const labels = new Map<Protocol, Readonly<{ protocol: Protocol }>>();
    return {
      clock: this.clock,
      log: this.log,
      registry: this.registry,
      logins: this.logins,
      rates: this.rates,
      pipeline: this.pipeline,
      supervisor: this.supervisor,
      deadlines: this.deadlines,
      flow: this.flow,
      retained: this.retained,
      store: this.commands,
      sessions: this.sessions,
      budget: this.budget,
      publishWindow: this.#publishWindow,
      get closing() {
        return core.#closing;
      },
      admit: (address) => this.admission.admit(address),
      release: (address) => this.admission.release(address),
      get acceptHook() {
        return core.#accept;
      },
      subscribe: (filter, sub) => this.subscribe(filter, sub),
      accepted: (msg, derived) => {
        // What the core publishes itself (presence, `$SYS`) is no message a client sent.
        if (msg.protocol === SYSTEM) return;
        let l = labels.get(msg.protocol);
        if (!l) labels.set(msg.protocol, l = Object.freeze({ protocol: msg.protocol }));
        this.stats.messagesIn.inc(l);
        // A derived message (a rule's output) speaks for its source's device but is not its
        // traffic. Otherwise its last-seen time moves with its traffic, whatever the protocol (an
        // MQTT device's would otherwise stay at its connect time). No record is made here: a
        // device has one from its login or presence, and an anonymous tool that speaks for none
        // is no device.
        const rec = msg.deviceId !== undefined && !derived
          ? this.registry.get(msg.deviceId)
          : undefined;
        if (rec !== undefined) {
          rec.messagesIn++;
          rec.lastSeen = msg.ts;
        }
      },
    };
  }

  #presence(id: string, state: "online" | "offline", protocol?: Protocol, reason?: string): void {
    this.#coreLog.info(`device ${state}`, { device: id, protocol, reason });
    const msg = createMessage({
      topic: statusTopic(id),
      payload: state === "online" ? ONLINE : OFFLINE, // shared: one buffer for every device
      qos: 1,
      retain: true,
      ts: this.clock.now(),
      protocol: SYSTEM,
      deviceId: id,
    });
    if (this.#closing) { // the pipeline no longer takes messages: record the last value directly
      this.retained.set(msg);
      return;
    }
    this.publish(msg).catch(() => this.retained.set(msg));
  }

  #handle(msg: Message): void | Promise<void> {
    // A subscriber is behind: deliver once it caught up (bounded), holding this handler's slot
    // meanwhile, so the queue fills and producers stop reading.
    if (!this.flow.open) return this.flow.wait().then(() => this.#deliver(msg));
    return this.#deliver(msg);
  }

  #deliver(msg: Message): void | Promise<void> {
    if (msg.retain) this.retained.set(msg);
    const exp = msg.properties?.expiresAt;
    if (exp === undefined || exp > this.clock.now()) {
      // (A subscriber that unsubscribes during delivery replaces the cached array, not this one.)
      const subs = this.router.matches(msg.topic);
      for (let i = 0; i < subs.length; i++) subs[i].deliver(msg);
    }
    // Synchronous unless a sink is async: the pipeline then skips its promise chain.
    if (this.#sinks.length) return this.#runSinks(msg);
  }

  async #runSinks(msg: Message): Promise<void> {
    for (const sink of this.#sinks) await sink(msg);
  }

  /** Drains the pipeline and stops the supervisor. Idempotent. */
  async close(): Promise<void> {
    this.#closing = true;
    this.supervisor.stop();
    this.flow.close(); // shutting down: deliver what is queued without waiting for anyone
    await this.pipeline.close();
    this.deadlines.close();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
