/**
 * The northbound bridge: keeps one MQTT connection to the upstream broker and moves the spool
 * through it.
 *
 * State machine (visible in `/metrics` as `ferry_northbound_state{state}` and in the logs):
 *
 * ```
 * idle → connecting ─ok→ replaying ─caught up→ live
 *          ↑  │fail          │lost              │lost
 *          │  ↓              ↓                  ↓
 *          └─ backing_off ←──┴──────────────────┘        (close() → closed from any state)
 * ```
 *
 * - Backoff: full-jitter exponential ({@link Backoff}), capped, reset once a connection stayed up
 *   for `stableAfterMs`.
 * - Uplink: spool rows in id order, published at QoS 1 with at most `inflight` unacknowledged;
 *   a row leaves the spool only when its PUBACK arrived. After a reconnect the rows still in the
 *   spool are sent again from the head (in-flight ones with DUP and, when the broker resumed the
 *   session, their original packet ids [MQTT-4.4.0-1]), so per-device order holds; duplicates
 *   are possible (at-least-once) and counted (`ferry_northbound_resent_total`).
 * - Replay: while the spool holds a backlog after a (re)connect, sending is paced by a token bucket
 *   (`replayRatePerSec`); it starts as soon as the link is up, without waiting for new traffic.
 * - Downlink: `{prefix}/devices/+/commands/#` is subscribed upstream; each command is published
 *   into the core as `devices/{id}/commands/{name}` (protocol `upstream`), which delivers it to the
 *   device on whatever protocol it speaks. The upstream PUBACK is sent once the core accepted it,
 *   in arrival order. Device acks (`devices/{id}/acks/{name}`) travel back with the uplink.
 *
 * @module
 */

import { Backoff } from "../core/backoff.ts";
import type { Clock, TimerHandle } from "../core/clock.ts";
import type { Core } from "../core/core.ts";
import type { Logger } from "../core/logger.ts";
import { createMessage } from "../core/message.ts";
import type { Counter, Gauge } from "../core/metrics.ts";
import { MqttClient, type MqttClientOptions } from "./mqtt_client.ts";
import type { Spool } from "./spool.ts";
import { TokenBucket } from "./token_bucket.ts";
import type { TopicMap } from "./topic_map.ts";

/** States of the upstream link. */
export const BRIDGE_STATES = [
  "idle",
  "connecting",
  "replaying",
  "live",
  "backing_off",
  "closed",
] as const;
/** One of {@link BRIDGE_STATES}. */
export type BridgeState = typeof BRIDGE_STATES[number];

/** Resolved settings of {@link Bridge}. */
export interface BridgeOptions {
  /** How to reach the broker (clock is filled in by the bridge). */
  connection: MqttClientOptions;
  /** Upstream URL for logs (no credentials). */
  displayUrl: string;
  /** Unacknowledged upstream publishes at most (1..65535). */
  inflight: number;
  /** Replay pace in messages per second; 0 = unpaced. */
  replayRatePerSec: number;
  /** First backoff ceiling, ms. */
  backoffBaseMs: number;
  /** Largest backoff ceiling, ms. */
  backoffCapMs: number;
  /** A connection up this long resets the backoff, ms. */
  stableAfterMs: number;
  /** Interval of TTL expiry and file compaction, ms. */
  housekeepingMs: number;
  /** Compact once the spool drained and its free pages exceed this many bytes. */
  compactAboveBytes: number;
  /** Time source. */
  clock: Clock;
  /** Logger. */
  log: Logger;
  /** Random source of the backoff jitter. @default Math.random */
  random?: () => number;
  /** Connection factory (tests). @default MqttClient.connect */
  connect?: (options: MqttClientOptions) => Promise<MqttClient>;
  /** Retained gateway presence topic upstream (`online` on connect, `offline` as will). */
  statusTopic?: string;
}

/** Counters of a bridge since it started. */
export interface BridgeStats {
  /** Connection attempts. */
  attempts: number;
  /** Failed connection attempts. */
  failures: number;
  /** Successful connections. */
  connects: number;
  /** Connections after the first. */
  reconnects: number;
  /** Established connections that were lost. */
  disconnects: number;
  /** Messages acknowledged by the upstream (left the spool). */
  published: number;
  /** Messages sent again after a reconnect. */
  resent: number;
  /** Messages the upstream refused with an MQTT 5 error reason (dropped). */
  rejected: number;
  /** Commands received from upstream and accepted by the core. */
  downlink: number;
  /** Upstream messages that were not a command topic, or not accepted. */
  downlinkDropped: number;
}

/**
 * Connects the spool to the upstream broker and the upstream commands to the core.
 *
 * @example
 * ```ts
 * import { Bridge } from "./bridge.ts";
 * import { Spool } from "./spool.ts";
 * import { TopicMap } from "./topic_map.ts";
 * import { Core } from "../core/core.ts";
 * import { FakeClock } from "../core/clock.ts";
 * import { silentLogger } from "../core/logger.ts";
 * const dir = await Deno.makeTempDir();
 * const core = new Core();
 * const spool = Spool.open(`${dir}/s.db`);
 * const clock = new FakeClock();
 * const bridge = new Bridge(core, spool, new TopicMap({ gatewayId: "gw" }), {
 *   connection: { hostname: "127.0.0.1", port: 1, clientId: "gw" }, displayUrl: "mqtt://x",
 *   inflight: 10, replayRatePerSec: 0, backoffBaseMs: 100, backoffCapMs: 1000,
 *   stableAfterMs: 1000, housekeepingMs: 1000, compactAboveBytes: 1 << 20, clock,
 *   log: silentLogger, connect: () => Promise.reject(new Error("refused")),
 *   random: () => 0.5, // a fixed jitter: the retry is 50 ms away, not possibly 0
 * });
 * bridge.start();
 * await clock.tickAsync(0);
 * if (bridge.state !== "backing_off" || bridge.stats.failures !== 1) throw new Error(bridge.state);
 * await bridge.close();
 * spool.close();
 * await core.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class Bridge implements AsyncDisposable {
  #core: Core;
  #spool: Spool;
  #map: TopicMap;
  #o: BridgeOptions;
  #log: Logger;
  #clock: Clock;
  #backoff: Backoff;
  #bucket: TokenBucket;
  #state: BridgeState = "idle";
  #client: MqttClient | undefined;
  #cursor = 0;
  #pidByRow = new Map<number, number>();
  #rowByPid = new Map<number, number>();
  #nextPid = 1;
  #pumpTimer: TimerHandle | undefined;
  #houseTimer: TimerHandle | undefined;
  #stableTimer: TimerHandle | undefined;
  #sleep: { timer: TimerHandle; wake: () => void } | undefined;
  #run: Promise<void> | undefined;
  #closing = false;
  #pumping = false;
  #resend = new Set<number>();
  #pumpQueued = false;
  #downChain: Promise<void> = Promise.resolve();
  #unlisten: () => void;
  #lastDelay = 0;
  #maxDepthSinceCompact = 0;
  /** Counters since start. */
  readonly stats: BridgeStats = {
    attempts: 0,
    failures: 0,
    connects: 0,
    reconnects: 0,
    disconnects: 0,
    published: 0,
    resent: 0,
    rejected: 0,
    downlink: 0,
    downlinkDropped: 0,
  };
  #m: {
    published: Counter;
    resent: Counter;
    attempts: Counter;
    failures: Counter;
    reconnects: Counter;
    disconnects: Counter;
    rejected: Counter;
    downlink: Counter;
    downlinkDropped: Counter;
    transitions: Counter;
    state: Gauge;
  };

  /** Creates the bridge; {@link start} connects. */
  constructor(core: Core, spool: Spool, map: TopicMap, options: BridgeOptions) {
    if (!Number.isInteger(options.inflight) || options.inflight < 1 || options.inflight > 65535) {
      throw new RangeError(
        `Cannot create bridge: inflight must be 1..65535, got ${options.inflight}`,
      );
    }
    this.#core = core;
    this.#spool = spool;
    this.#map = map;
    this.#o = options;
    this.#log = options.log;
    this.#clock = options.clock;
    this.#backoff = new Backoff({
      baseMs: options.backoffBaseMs,
      capMs: options.backoffCapMs,
      random: options.random,
    });
    this.#bucket = new TokenBucket({
      ratePerSec: options.replayRatePerSec,
      burst: Math.min(options.inflight, Math.max(1, Math.ceil(options.replayRatePerSec / 20))),
      clock: options.clock,
    });
    const m = core.metrics;
    this.#m = {
      published: m.counter(
        "ferry_northbound_published_total",
        "Messages acknowledged by the upstream broker (removed from the spool)",
      ),
      resent: m.counter(
        "ferry_northbound_resent_total",
        "Messages sent upstream again after a reconnect (possible duplicates)",
      ),
      attempts: m.counter(
        "ferry_northbound_connect_attempts_total",
        "Upstream connection attempts",
      ),
      failures: m.counter(
        "ferry_northbound_connect_failures_total",
        "Upstream connection attempts that failed",
      ),
      reconnects: m.counter(
        "ferry_northbound_reconnects_total",
        "Upstream connections established after the first",
      ),
      disconnects: m.counter(
        "ferry_northbound_disconnects_total",
        "Established upstream connections that were lost",
      ),
      rejected: m.counter(
        "ferry_northbound_rejected_total",
        "Messages the upstream refused with an MQTT 5 error reason (dropped)",
      ),
      downlink: m.counter(
        "ferry_northbound_downlink_total",
        "Commands received from upstream and handed to the core",
      ),
      downlinkDropped: m.counter(
        "ferry_northbound_downlink_dropped_total",
        "Upstream messages dropped (not a command topic, or not accepted)",
      ),
      transitions: m.counter(
        "ferry_northbound_state_transitions_total",
        "Upstream link state changes, by new state",
      ),
      state: m.gauge(
        "ferry_northbound_state",
        "Upstream link state (1 for the current state)",
        () => BRIDGE_STATES.map((s) => [{ state: s }, s === this.#state ? 1 : 0]),
      ),
    };
    m.gauge(
      "ferry_northbound_connected",
      "1 while the upstream link is up",
      () => this.#state === "live" || this.#state === "replaying" ? 1 : 0,
    );
    m.gauge(
      "ferry_northbound_inflight",
      "Upstream publishes awaiting PUBACK",
      () => this.#rowByPid.size,
    );
    m.gauge("ferry_northbound_backoff_ms", "Last backoff delay chosen, ms", () => this.#lastDelay);
    this.#unlisten = spool.onCommit((added) => {
      if (added > 0) this.#pumpSoon();
    });
  }

  /** Current link state. */
  get state(): BridgeState {
    return this.#state;
  }

  /** Upstream publishes awaiting PUBACK. */
  get inflight(): number {
    return this.#rowByPid.size;
  }

  /** Starts connecting (idempotent). */
  start(): void {
    if (this.#run || this.#closing) return;
    this.#run = this.#loop();
    this.#scheduleHousekeeping();
  }

  #setState(s: BridgeState, fields: Record<string, unknown> = {}): void {
    if (this.#state === s) return;
    const from = this.#state;
    this.#state = s;
    this.#m.transitions.inc({ state: s });
    this.#log.info(`upstream ${s.replace("_", " ")}`, { from, to: s, ...fields });
  }

  async #loop(): Promise<void> {
    const connect = this.#o.connect ?? MqttClient.connect;
    while (!this.#closing) {
      this.#setState("connecting", { url: this.#o.displayUrl, attempt: this.#backoff.attempt + 1 });
      this.stats.attempts++;
      this.#m.attempts.inc();
      let client: MqttClient;
      try {
        client = await connect({
          ...this.#o.connection,
          clock: this.#clock,
          will: this.#o.statusTopic
            ? {
              topic: this.#o.statusTopic,
              payload: new TextEncoder().encode("offline"),
              qos: 1,
              retain: true,
            }
            : undefined,
        });
      } catch (err) {
        this.stats.failures++;
        this.#m.failures.inc();
        if (this.#closing) break;
        const delay = this.#backoff.next();
        this.#lastDelay = delay;
        this.#setState("backing_off", { error: err, retryInMs: delay });
        this.#log.warn("upstream connection failed", {
          url: this.#o.displayUrl,
          error: err,
          attempt: this.#backoff.attempt,
          retryInMs: delay,
        });
        await this.#wait(delay);
        continue;
      }
      if (this.#closing) {
        await client.close();
        break;
      }
      await this.#session(client);
      if (this.#closing) break;
      const delay = this.#backoff.next();
      this.#lastDelay = delay;
      this.#setState("backing_off", { error: client.error, retryInMs: delay });
      await this.#wait(delay);
    }
    this.#setState("closed");
  }

  async #session(client: MqttClient): Promise<void> {
    this.#client = client;
    this.stats.connects++;
    if (this.stats.connects > 1) {
      this.stats.reconnects++;
      this.#m.reconnects.inc();
    }
    if (!client.sessionPresent) {
      // The broker forgot our packet ids: everything unacknowledged is resent with new ones.
      this.#pidByRow.clear();
      this.#rowByPid.clear();
    }
    // Rows in flight when the link dropped are resent first, with their packet ids.
    this.#resend = new Set(this.#pidByRow.keys());
    this.#cursor = 0;
    client.onPuback = (pid, reason) => this.#onPuback(pid, reason);
    client.onPublish = (m) => this.#onDownlink(client, m);
    this.#stableTimer = this.#clock.setTimeout(() => {
      this.#stableTimer = undefined;
      this.#backoff.reset();
    }, this.#o.stableAfterMs);
    const backlog = this.#spool.depth;
    this.#setState(backlog > 0 ? "replaying" : "live", {
      url: this.#o.displayUrl,
      sessionPresent: client.sessionPresent,
      backlog,
      reconnects: this.stats.reconnects,
    });
    if (this.#o.statusTopic) {
      client.publish({
        topic: this.#o.statusTopic,
        payload: new TextEncoder().encode("online"),
        qos: 0,
        retain: true,
      });
    }
    client.subscribe([{ topic: this.#map.downlinkFilter, qos: 1 }]).then((granted) => {
      if (granted[0] >= 0x80) {
        this.#log.warn("upstream refused the command subscription", {
          filter: this.#map.downlinkFilter,
          code: granted[0],
        });
      }
    }).catch(() => {});
    this.#pump();
    const err = await client.closed;
    if (this.#stableTimer !== undefined) this.#clock.clearTimeout(this.#stableTimer);
    this.#stableTimer = undefined;
    if (this.#pumpTimer !== undefined) this.#clock.clearTimeout(this.#pumpTimer);
    this.#pumpTimer = undefined;
    this.#client = undefined;
    if (err) {
      this.stats.disconnects++;
      this.#m.disconnects.inc();
      this.#log.warn("upstream connection lost", {
        url: this.#o.displayUrl,
        error: err,
        inflight: this.#rowByPid.size,
        backlog: this.#spool.depth,
      });
    }
  }

  #wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        this.#sleep = undefined;
        resolve();
      };
      this.#sleep = { timer: this.#clock.setTimeout(wake, ms), wake };
    });
  }

  #allocPid(): number {
    for (let i = 0; i < 65535; i++) {
      const pid = this.#nextPid;
      this.#nextPid = this.#nextPid % 65535 + 1;
      if (!this.#rowByPid.has(pid)) return pid;
    }
    throw new RangeError("Cannot publish upstream: no free packet id");
  }

  /** Pumps once after the current burst (every PUBACK parsed from one socket read, say). */
  #pumpSoon(): void {
    if (this.#pumpQueued) return;
    this.#pumpQueued = true;
    queueMicrotask(() => {
      this.#pumpQueued = false;
      this.#pump();
    });
  }

  /** Sends spool rows while the window and (when replaying) the token bucket allow. */
  #pump(): void {
    // Not re-entrant: reading the spool commits pending acks, whose listener calls back here.
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      this.#pumpOnce();
    } finally {
      this.#pumping = false;
    }
  }

  #pumpOnce(): void {
    const client = this.#client;
    if (!client || client.isClosed || this.#pumpTimer !== undefined) return;
    // Bounded: each round sends at least one row or stops; at most `inflight` rounds.
    for (let round = 0; round < 64; round++) {
      let want = this.#o.inflight - this.#rowByPid.size;
      // After a reconnect the in-flight rows are resent first: they are at the head.
      if (want <= 0 && this.#resend.size === 0) return;
      if (want <= 0) want = this.#resend.size;
      if (this.#state === "replaying" && !this.#bucket.unlimited) {
        const tokens = this.#bucket.available();
        if (tokens <= 0) {
          this.#pumpTimer = this.#clock.setTimeout(() => {
            this.#pumpTimer = undefined;
            this.#pump();
          }, Math.max(1, this.#bucket.msUntil(1)));
          return;
        }
        want = Math.min(want, tokens);
      }
      const rows = this.#spool.read(this.#cursor, Math.min(want, 4096));
      if (this.#state === "replaying") this.#bucket.spend(rows.length);
      for (const row of rows) {
        let pid = this.#pidByRow.get(row.id);
        const dup = pid !== undefined;
        if (pid === undefined) {
          pid = this.#allocPid();
          this.#pidByRow.set(row.id, pid);
          this.#rowByPid.set(pid, row.id);
        } else {
          this.stats.resent++;
          this.#m.resent.inc();
        }
        client.publish({
          topic: this.#map.toUpstream(row.topic),
          payload: row.payload,
          qos: 1,
          retain: row.retain,
          dup,
          messageId: pid,
        });
        this.#cursor = row.id;
        if (dup) this.#resend.delete(row.id);
      }
      if (this.#resend.size) this.#releaseGone(rows.length < want);
      if (rows.length < want) {
        if (this.#state === "replaying" && this.#spool.pendingCount === 0) {
          this.#setState("live", { url: this.#o.displayUrl });
        }
        return;
      }
    }
    // Still more to send: continue on the next turn so sockets and timers get a go.
    this.#pumpTimer = this.#clock.setTimeout(() => {
      this.#pumpTimer = undefined;
      this.#pump();
    }, 0);
  }

  /**
   * Frees the packet ids of in-flight rows that were not met again while resending (dropped by
   * the full policy or TTL meanwhile): rows come in id order, so one the cursor passed is gone.
   */
  #releaseGone(caughtUp: boolean): void {
    for (const row of this.#resend) {
      if (!caughtUp && row > this.#cursor) continue;
      this.#resend.delete(row);
      const pid = this.#pidByRow.get(row);
      this.#pidByRow.delete(row);
      if (pid !== undefined) this.#rowByPid.delete(pid);
    }
  }

  #onPuback(pid: number, reason: number): void {
    const row = this.#rowByPid.get(pid);
    if (row === undefined) return; // stale (from before a reset session)
    this.#rowByPid.delete(pid);
    this.#pidByRow.delete(row);
    this.#resend.delete(row);
    if (reason >= 0x80) {
      this.stats.rejected++;
      this.#m.rejected.inc({ reason: String(reason) });
      this.#log.warn("upstream refused a message; dropping it", { reason, row });
    } else {
      this.stats.published++;
      this.#m.published.inc();
    }
    this.#spool.ack(row);
    const depth = this.#spool.depth;
    if (depth > this.#maxDepthSinceCompact) this.#maxDepthSinceCompact = depth;
    this.#pumpSoon();
  }

  #onDownlink(
    client: MqttClient,
    m: { topic: string; payload: Uint8Array; qos: 0 | 1 | 2; messageId?: number },
  ): void {
    const local = this.#map.fromUpstream(m.topic);
    const ack = () => {
      if (m.qos > 0 && m.messageId !== undefined) client.puback(m.messageId);
    };
    if (!local) {
      this.stats.downlinkDropped++;
      this.#m.downlinkDropped.inc({ reason: "not_a_command" });
      this.#log.warn("upstream message is not a command topic; dropped", { topic: m.topic });
      this.#downChain = this.#downChain.then(ack);
      return;
    }
    const accepted = this.#core.publish(createMessage({
      topic: local,
      payload: m.payload,
      qos: m.qos > 0 ? 1 : 0,
      ts: this.#clock.now(),
      protocol: "upstream",
      origin: "northbound",
    })).then(() => true, (err) => {
      this.#log.warn("command from upstream not accepted", { topic: local, error: err });
      return false;
    });
    // PUBACKs go out in the order the PUBLISHes came [MQTT-4.6.0-2]; an unaccepted command is
    // not acknowledged, so the broker sends it again on the next connection.
    this.#downChain = this.#downChain.then(() => accepted).then((ok) => {
      if (ok) {
        this.stats.downlink++;
        this.#m.downlink.inc();
        ack();
      } else {
        this.stats.downlinkDropped++;
        this.#m.downlinkDropped.inc({ reason: "not_accepted" });
      }
    });
  }

  #scheduleHousekeeping(): void {
    this.#houseTimer = this.#clock.setTimeout(() => {
      this.#houseTimer = undefined;
      if (this.#closing) return;
      try {
        this.housekeeping();
      } catch (err) {
        this.#log.error("spool housekeeping failed", { error: err });
      }
      this.#scheduleHousekeeping();
    }, this.#o.housekeepingMs);
    this.#clock.unref?.(this.#houseTimer);
  }

  /** Drops expired messages and compacts a drained spool (runs every `housekeepingMs`). */
  housekeeping(): void {
    const expired = this.#spool.expire();
    if (expired) this.#log.warn("spool messages expired (TTL)", { dropped: expired });
    const depth = this.#spool.depth;
    if (depth > this.#maxDepthSinceCompact) this.#maxDepthSinceCompact = depth;
    // Only when a drained backlog left free pages worth giving back: compacting (a TRUNCATE
    // checkpoint) under steady traffic would stall the event loop for nothing.
    if (depth === 0 && this.#spool.freeBytes() > this.#o.compactAboveBytes) {
      const before = this.#spool.fileBytes();
      if (this.#spool.compact()) {
        this.#log.info("spool compacted after drain", {
          beforeBytes: before,
          afterBytes: this.#spool.fileBytes(),
          backlogPeak: this.#maxDepthSinceCompact,
        });
        this.#maxDepthSinceCompact = 0;
      }
    }
    if (this.#state === "replaying" || this.#state === "live") this.#pump();
  }

  /** Disconnects from upstream (DISCONNECT, so no will) and stops. Idempotent. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#unlisten();
    for (const t of [this.#pumpTimer, this.#houseTimer, this.#stableTimer]) {
      if (t !== undefined) this.#clock.clearTimeout(t);
    }
    this.#pumpTimer = this.#houseTimer = this.#stableTimer = undefined;
    if (this.#sleep) {
      this.#clock.clearTimeout(this.#sleep.timer);
      this.#sleep.wake();
    }
    const client = this.#client;
    if (client && !client.isClosed && this.#o.statusTopic) {
      // A graceful DISCONNECT suppresses the will: say "offline" ourselves.
      client.publish({
        topic: this.#o.statusTopic,
        payload: new TextEncoder().encode("offline"),
        qos: 0,
        retain: true,
      });
    }
    await client?.close();
    await this.#run;
    await this.#downChain;
    this.#setState("closed");
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
