/**
 * The protocol-agnostic heart of the gateway. Adapters authenticate devices against the registry,
 * `publish` what devices send (waiting when the pipeline is full: backpressure), `subscribe` to
 * what they should receive, and ask the supervisor to watch their keepalive. The pipeline handler
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
import { type DeadlineEntry, DeadlineQueue } from "./deadline_queue.ts";
import { Logger } from "./logger.ts";
import { createMessage, type Message, type Protocol } from "./message.ts";
import { type Counter, type Gauge, MetricsRegistry } from "./metrics.ts";
import { FlowGate } from "./flow_gate.ts";
import { defaultLimits } from "./options.ts";
import { Pipeline } from "./pipeline.ts";
import {
  type DeviceCredential,
  DeviceRegistry,
  type ServiceAccount,
  type SessionHandle,
} from "./registry.ts";
import { type RetainedPersistence, RetainedStore } from "./retained_store.ts";
import { TopicRouter } from "./topic_router.ts";
import { parseTopic, statusTopic } from "./topics.ts";

/** Presence payloads, shared by every device's retained status (payloads are read-only). */
const ONLINE = new TextEncoder().encode("online");
const OFFLINE = new TextEncoder().encode("offline");

const LABELS_BY_PROTOCOL = new Map<Protocol, Readonly<{ protocol: Protocol }>>();

/** The shared, frozen `{ protocol }` label set of a protocol (metric keys are cached per object). */
export function protocolLabels(protocol: Protocol): Readonly<{ protocol: Protocol }> {
  let l = LABELS_BY_PROTOCOL.get(protocol);
  if (!l) LABELS_BY_PROTOCOL.set(protocol, l = Object.freeze({ protocol }));
  return l;
}

/** Receives messages whose topic matches a subscription. Must not throw or block. */
export interface Subscriber {
  /** Identifier of the subscribing session (compared with `Message.origin` for no-local). */
  readonly id: string;
  /** Takes one message; the subscriber queues it and applies its own slow-consumer policy. */
  deliver(msg: Message): void;
}

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
  /** Per-address connection cap and failed-auth throttling. */
  admission?: AdmissionOptions;
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
}

/** Metric handles shared by every adapter (labels: `protocol`, plus `reason`/`code`). */
export interface CoreMetrics {
  /** Open connections by protocol. */
  connections: Gauge;
  /** Connections accepted. */
  connectionsAccepted: Counter;
  /** Frames/packets/datagrams received. */
  framesIn: Counter;
  /** Frames/packets/datagrams sent. */
  framesOut: Counter;
  /** Bytes received. */
  bytesIn: Counter;
  /** Bytes sent. */
  bytesOut: Counter;
  /** Messages published into the pipeline. */
  messagesIn: Counter;
  /** Messages delivered to subscribers/devices. */
  messagesOut: Counter;
  /** Messages or frames dropped, by reason. */
  drops: Counter;
  /** Protocol errors, by code. */
  errors: Counter;
  /** Sessions closed by the supervisor. */
  reaped: Counter;
}

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
  /** Per-address connection caps and failed-auth throttling, for every listener. */
  readonly admission: Admission;
  /** Per-device message rate limits, for every protocol. */
  readonly rates: RateLimiter;
  /**
   * Pending commands of devices that do not subscribe themselves, delivered once on whichever
   * protocol the device uses. Adapters that deliver commands hold it open (`commands.open()`).
   */
  readonly commands: CommandStore;
  #sinks: Sink[] = [];
  #accept: AcceptHook | undefined;
  #idle = new Map<string, DeadlineEntry>();
  #closing = false;
  #coreLog: Logger;

  /** Creates the core. */
  constructor(options: CoreOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? new Logger();
    this.#coreLog = this.log.child("core");
    this.metrics = options.metrics ?? new MetricsRegistry();
    this.retained = new RetainedStore();
    this.admission = new Admission({ now: () => this.clock.now(), ...options.admission });
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
      onPresence: (id, state, protocol) => this.#presence(id, state, protocol),
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
    this.pipeline = new Pipeline((m) => this.#handle(m), {
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
      onDrop: (device, reason) => {
        this.stats.drops.inc({ protocol: "system", reason: `command_${reason}` });
        this.#coreLog.debug("command dropped", { device, reason });
      },
    });
    const m = this.metrics;
    this.stats = {
      connections: m.gauge("ferry_connections", "Open device connections by protocol"),
      connectionsAccepted: m.counter(
        "ferry_connections_accepted_total",
        "Connections accepted by protocol",
      ),
      framesIn: m.counter("ferry_frames_received_total", "Frames/packets received"),
      framesOut: m.counter("ferry_frames_sent_total", "Frames/packets sent"),
      bytesIn: m.counter("ferry_received_bytes_total", "Bytes received from devices"),
      bytesOut: m.counter("ferry_sent_bytes_total", "Bytes sent to devices"),
      messagesIn: m.counter("ferry_messages_received_total", "Messages accepted into the pipeline"),
      messagesOut: m.counter("ferry_messages_delivered_total", "Messages delivered to devices"),
      drops: m.counter("ferry_dropped_total", "Messages or frames dropped, by reason"),
      errors: m.counter("ferry_errors_total", "Protocol errors by code"),
      reaped: m.counter("ferry_sessions_reaped_total", "Sessions closed for keepalive timeout"),
    };
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
  }

  /** True once `close()` started. */
  get closing(): boolean {
    return this.#closing;
  }

  /** Adds a sink that sees every accepted message after fan-out. */
  addSink(sink: Sink): void {
    this.#sinks.push(sink);
  }

  /** True when an accept hook (a durable spool) must run before messages are accepted. */
  get hasAcceptHook(): boolean {
    return this.#accept !== undefined;
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
        persistence.load().map((m) => {
          if (!isStatus(m.topic)) return m;
          offlineOnDisk.add(m.topic);
          return { ...m, payload: OFFLINE };
        }),
      set: (msg) => {
        if (!isStatus(msg.topic)) return persistence.set(msg);
        if (offlineOnDisk.has(msg.topic)) return;
        offlineOnDisk.add(msg.topic);
        persistence.set({ ...msg, payload: OFFLINE });
      },
      delete: (topic) => {
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
    this.stats.messagesIn.inc(protocolLabels(msg.protocol));
  }

  /**
   * Accepts a message only if there is room now (UDP/HTTP refuse instead of waiting). Without an
   * accept hook the answer is immediate; with one (a spool), use {@link publishIfRoom}.
   */
  tryPublish(msg: Message): boolean {
    if (this.#accept) {
      throw new TypeError("Cannot tryPublish with an accept hook set: use publishIfRoom");
    }
    const ok = this.pipeline.offer(msg);
    if (ok) this.stats.messagesIn.inc(protocolLabels(msg.protocol));
    else this.stats.drops.inc({ protocol: msg.protocol, reason: "overloaded" });
    return ok;
  }

  /**
   * Accepts a message if the pipeline has room now, after the accept hook (durable append) ran;
   * resolves false, accepting nothing, when it is full. For producers that must refuse rather
   * than wait (UDP, HTTP). Resolves true only once the message is accepted.
   */
  async publishIfRoom(msg: Message): Promise<boolean> {
    if (!this.pipeline.hasRoom) {
      this.stats.drops.inc({ protocol: msg.protocol, reason: "overloaded" });
      return false;
    }
    if (this.#accept) await this.#accept(msg);
    // Room was checked before the hook ran; if it filled meanwhile, wait briefly (bounded by the
    // number of concurrent producers) rather than lose a message already made durable.
    await this.pipeline.submit(msg);
    this.stats.messagesIn.inc(protocolLabels(msg.protocol));
    return true;
  }

  /**
   * Watches a session's keepalive: unless `touch`ed within `timeoutMs`, the session is closed
   * with `keepalive_timeout`. Callers pass 1.5x the keepalive.
   */
  supervise(session: SessionHandle, timeoutMs: number): DeadlineEntry {
    // One callback for every session (the entry carries the session): no closure per session.
    return this.deadlines.add(timeoutMs, this.#reap, session);
  }

  #reap = (session: SessionHandle, entry: DeadlineEntry): void => {
    const timeoutMs = entry.timeoutMs;
    this.stats.reaped.inc({ protocol: session.protocol });
    this.#coreLog.info("keepalive expired", {
      session: session.sessionId,
      protocol: session.protocol,
      timeoutMs,
    });
    session.close({ code: "keepalive_timeout", message: `no frame for ${timeoutMs} ms` });
  };

  /** Marks a sessionless device seen; it goes offline after `idleMs` without another call. */
  seen(deviceId: string, protocol: Protocol, idleMs: number): void {
    if (this.#closing) return; // shutting down: presence no longer changes
    this.registry.touch(deviceId, protocol);
    const e = this.#idle.get(deviceId);
    if (e?.active) return e.touch(idleMs);
    this.#idle.set(deviceId, this.deadlines.add(idleMs, this.#idleExpired, deviceId));
  }

  #idleExpired = (deviceId: string): void => {
    this.#idle.delete(deviceId);
    this.registry.markIdle(deviceId);
  };

  #presence(id: string, state: "online" | "offline", protocol?: Protocol): void {
    this.#coreLog.info(`device ${state}`, { device: id, protocol });
    const msg = createMessage({
      topic: statusTopic(id),
      payload: state === "online" ? ONLINE : OFFLINE, // shared: one buffer for every device
      qos: 1,
      retain: true,
      ts: this.clock.now(),
      protocol: "system",
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
      this.router.forEachMatch(msg.topic, (s) => s.deliver(msg));
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
    this.flow.close(); // shutting down: deliver what is queued without waiting for anyone
    await this.pipeline.close();
    this.deadlines.close();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
