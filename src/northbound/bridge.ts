/**
 * One northbound bridge: keeps one MQTT connection to an upstream broker (failing over along an
 * ordered URL list) and moves its spool partition through it.
 *
 * State machine (visible in `/metrics` as `ferry_northbound_state{bridge,state}` and the logs):
 *
 * ```
 * idle → connecting ─ok→ replaying ─caught up→ live
 *          ↑  │fail          │lost              │lost
 *          │  ↓              ↓                  ↓
 *          └─ backing_off ←──┴──────────────────┘        (close() → closed from any state)
 * ```
 *
 * - **Backoff and failover**: full-jitter exponential ({@link Backoff}), capped, reset once a
 *   connection stayed up for `stableAfterMs`; each failed attempt moves to the next upstream URL.
 *   While on a secondary the primary is tried every `primaryReturnMs`; once it answers, the bridge
 *   moves back (the rows in flight are sent again there).
 * - **Uplink**: partition rows in id order, at the bridge's QoS (1, or 2: PUBLISH → PUBREC →
 *   PUBREL → PUBCOMP), with at most `min(inflight, broker's Receive Maximum)` unacknowledged; a
 *   row leaves the spool only when its PUBACK (PUBCOMP) arrived. After a reconnect the rows still
 *   in the spool are sent again from the head (in-flight ones with DUP and, when the broker
 *   resumed the session, their packet ids; QoS 2 ones that got PUBREC with PUBREL
 *   [MQTT-4.4.0-1]), so per-device order holds; duplicates are possible at QoS 1 and counted.
 * - **Flow control**: the broker's Maximum Packet Size (and `maxPacketSize`) is honoured: a larger
 *   message goes to the dead letters (`too_large`) and the rest flows on; long topics use MQTT 5
 *   topic aliases up to the broker's Topic Alias Maximum.
 * - **Poison messages**: a message refused by the broker (v5 reason ≥ 0x80) goes to the dead
 *   letters (`rejected`); one that was the oldest in flight each time the link dropped,
 *   `maxLinkDrops` times in a row, too (`link_dropped`): after a drop the oldest row is sent alone
 *   until it is acknowledged, so the culprit is known.
 * - **Replay**: while the partition holds a backlog after a (re)connect, sending is paced by a
 *   token bucket (`replayRatePerSec`); it starts as soon as the link is up.
 * - **Downlink**: `{prefix}/devices/+/commands/#` (and the downlink rewrite rules' filters) are
 *   subscribed upstream; each command is published into the core as `devices/{id}/commands/{name}`
 *   (protocol `upstream`). The upstream PUBACK is sent once the core accepted it, in order.
 *
 * @module
 */

import { Backoff } from "../core/backoff.ts";
import type { Clock, TimerHandle } from "../core/clock.ts";
import type { Core } from "../core/core.ts";
import type { Logger } from "../core/logger.ts";
import { createMessage } from "../core/message.ts";
import type { Counter } from "../core/metrics.ts";
import { MqttClient, type MqttClientOptions, publishSize } from "./mqtt_client.ts";
import type { Spool, SpoolPartition, SpoolRecord } from "./spool.ts";
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
  /** Bridge name (metrics label, logs). @default "default" */
  name?: string;
  /** How to reach the primary broker (clock is filled in by the bridge). */
  connection: MqttClientOptions;
  /** Failover list: connection settings per upstream, primary first. @default [connection] */
  upstreams?: Array<{ connection: MqttClientOptions; displayUrl: string }>;
  /** Upstream URL for logs (no credentials). */
  displayUrl: string;
  /** While on a secondary, try the primary every this many ms (0: never). @default 60000 */
  primaryReturnMs?: number;
  /** The spool partition moved by this bridge. @default spool.main */
  partition?: SpoolPartition;
  /** Upstream QoS. @default 1 */
  qos?: 1 | 2;
  /** Unacknowledged upstream publishes at most (1..65535). */
  inflight: number;
  /** Largest packet sent (0: the broker's limit only). @default 0 */
  maxPacketSize?: number;
  /** Use MQTT 5 topic aliases when allowed. @default true */
  topicAliases?: boolean;
  /** Link drops with a message oldest in flight before it is dead-lettered. @default 3 */
  maxLinkDrops?: number;
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
  /** Run the spool's housekeeping (TTL, compaction) from this bridge. @default true */
  housekeeping?: boolean;
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
  /** Messages the upstream refused with an MQTT 5 error reason (dead-lettered). */
  rejected: number;
  /** Messages moved to the dead letters by this bridge (any reason). */
  deadLettered: number;
  /** Switches to another upstream URL. */
  failovers: number;
  /** Commands received from upstream and accepted by the core. */
  downlink: number;
  /** Upstream messages that were not a command topic, or not accepted. */
  downlinkDropped: number;
}

interface InFlight {
  row: number;
  pid: number;
  /** QoS 2: PUBREC received and PUBREL sent. */
  released: boolean;
  /** The record (QoS 2 marks its state on it). */
  rec: SpoolRecord;
}

/**
 * Connects a spool partition to the upstream broker and the upstream commands to the core.
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
 * const spool = await Spool.open(`${dir}/s.db`);
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
 * await spool.close();
 * await core.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class Bridge implements AsyncDisposable {
  /** Bridge name. */
  readonly name: string;
  #core: Core;
  #spool: Spool;
  #part: SpoolPartition;
  #map: TopicMap;
  #o: BridgeOptions;
  #log: Logger;
  #clock: Clock;
  #backoff: Backoff;
  #bucket: TokenBucket;
  #upstreams: Array<{ connection: MqttClientOptions; displayUrl: string }>;
  #upIndex = 0;
  #preferred: MqttClient | undefined;
  #primaryTimer: TimerHandle | undefined;
  #state: BridgeState = "idle";
  #client: MqttClient | undefined;
  #cursor = 0;
  #byRow = new Map<number, InFlight>();
  #byPid = new Map<number, InFlight>();
  #nextPid = 1;
  #pumpTimer: TimerHandle | undefined;
  #houseTimer: TimerHandle | undefined;
  #stableTimer: TimerHandle | undefined;
  #sleep: { timer: TimerHandle; wake: () => void } | undefined;
  #run: Promise<void> | undefined;
  #closing = false;
  #pumping = false;
  #reading = false;
  #resend = new Set<number>();
  #pumpQueued = false;
  #downChain: Promise<void> = Promise.resolve();
  #unlisten: () => void;
  #lastDelay = 0;
  #maxDepthSinceCompact = 0;
  #housekeeping: Promise<void> | undefined;
  #aliases = new Map<string, number>();
  #suspect: { row: number; strikes: number } | undefined;
  #probing = false;
  #probeSent = false;
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
    deadLettered: 0,
    failovers: 0,
    downlink: 0,
    downlinkDropped: 0,
  };
  #labels: { bridge: string };
  #m: Record<
    | "published"
    | "resent"
    | "attempts"
    | "failures"
    | "reconnects"
    | "disconnects"
    | "rejected"
    | "failovers"
    | "downlink"
    | "downlinkDropped"
    | "transitions",
    Counter
  >;

  /** Creates the bridge; {@link start} connects. */
  constructor(core: Core, spool: Spool, map: TopicMap, options: BridgeOptions) {
    if (!Number.isInteger(options.inflight) || options.inflight < 1 || options.inflight > 65535) {
      throw new RangeError(
        `Cannot create bridge: inflight must be 1..65535, got ${options.inflight}`,
      );
    }
    this.name = options.name ?? "default";
    this.#core = core;
    this.#spool = spool;
    this.#part = options.partition ?? spool.main;
    this.#map = map;
    this.#o = options;
    this.#log = options.log;
    this.#clock = options.clock;
    this.#upstreams = options.upstreams?.length
      ? options.upstreams
      : [{ connection: options.connection, displayUrl: options.displayUrl }];
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
    this.#labels = { bridge: this.name };
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
        "Messages the upstream refused with an MQTT 5 error reason (dead-lettered)",
      ),
      failovers: m.counter(
        "ferry_northbound_failovers_total",
        "Switches to another upstream URL of the bridge's list",
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
    };
    this.#unlisten = this.#part.onCommit((added) => {
      if (added > 0) this.#pumpSoon();
    });
  }

  /** Current link state. */
  get state(): BridgeState {
    return this.#state;
  }

  /** Upstream publishes awaiting acknowledgement. */
  get inflight(): number {
    return this.#byPid.size;
  }

  /** The spool partition of this bridge. */
  get partition(): SpoolPartition {
    return this.#part;
  }

  /** The upstream URL in use (or tried last), without credentials. */
  get url(): string {
    return this.#upstreams[this.#upIndex].displayUrl;
  }

  /** Last backoff delay chosen, ms. */
  get lastBackoffMs(): number {
    return this.#lastDelay;
  }

  /** True while the link is up. */
  get connected(): boolean {
    return this.#state === "live" || this.#state === "replaying";
  }

  /** The topic mapping. */
  get map(): TopicMap {
    return this.#map;
  }

  /** Lets the bridge send what is waiting (after housekeeping, say). */
  kick(): void {
    if (this.connected) this.#pump();
  }

  /** Starts connecting (idempotent). */
  start(): void {
    if (this.#run || this.#closing) return;
    this.#run = this.#loop();
    if (this.#o.housekeeping !== false) this.#scheduleHousekeeping();
  }

  #setState(s: BridgeState, fields: Record<string, unknown> = {}): void {
    if (this.#state === s) return;
    const from = this.#state;
    this.#state = s;
    this.#m.transitions.inc({ ...this.#labels, state: s });
    this.#log.info(`upstream ${s.replace("_", " ")}`, {
      bridge: this.name,
      from,
      to: s,
      ...fields,
    });
  }

  #connectOptions(i: number): MqttClientOptions {
    return {
      ...this.#upstreams[i].connection,
      clock: this.#clock,
      will: this.#o.statusTopic
        ? {
          topic: this.#o.statusTopic,
          payload: new TextEncoder().encode("offline"),
          qos: 1,
          retain: true,
        }
        : undefined,
    };
  }

  async #loop(): Promise<void> {
    const connect = this.#o.connect ?? MqttClient.connect;
    while (!this.#closing) {
      let client = this.#preferred;
      this.#preferred = undefined;
      if (!client) {
        this.#setState("connecting", { url: this.url, attempt: this.#backoff.attempt + 1 });
        this.stats.attempts++;
        this.#m.attempts.inc(this.#labels);
        try {
          client = await connect(this.#connectOptions(this.#upIndex));
        } catch (err) {
          this.stats.failures++;
          this.#m.failures.inc(this.#labels);
          if (this.#closing) break;
          const delay = this.#backoff.next();
          this.#lastDelay = delay;
          const failed = this.url;
          if (this.#upstreams.length > 1) {
            this.#upIndex = (this.#upIndex + 1) % this.#upstreams.length;
            this.stats.failovers++;
            this.#m.failovers.inc(this.#labels);
          }
          this.#setState("backing_off", { error: err, retryInMs: delay });
          this.#log.warn("upstream connection failed", {
            bridge: this.name,
            url: failed,
            next: this.url,
            error: err,
            attempt: this.#backoff.attempt,
            retryInMs: delay,
          });
          await this.#wait(delay);
          continue;
        }
      }
      if (this.#closing) {
        await client.close();
        break;
      }
      await this.#session(client);
      if (this.#closing) break;
      if (this.#preferred) continue; // moving back to the primary: no backoff
      const delay = this.#backoff.next();
      this.#lastDelay = delay;
      this.#setState("backing_off", { error: client.error, retryInMs: delay });
      await this.#wait(delay);
    }
    this.#setState("closed");
  }

  #schedulePrimaryProbe(): void {
    const every = this.#o.primaryReturnMs ?? 60_000;
    if (this.#upIndex === 0 || every <= 0 || this.#closing) return;
    this.#primaryTimer = this.#clock.setTimeout(async () => {
      this.#primaryTimer = undefined;
      const current = this.#client;
      if (this.#closing || !current || current.isClosed || this.#upIndex === 0) return;
      const connect = this.#o.connect ?? MqttClient.connect;
      let primary: MqttClient;
      try {
        primary = await connect(this.#connectOptions(0));
      } catch (err) {
        this.#log.info("primary upstream still unavailable", {
          bridge: this.name,
          url: this.#upstreams[0].displayUrl,
          error: err,
        });
        this.#schedulePrimaryProbe();
        return;
      }
      if (this.#closing || this.#client !== current) {
        await primary.close();
        return;
      }
      this.#log.info("primary upstream is back: moving to it", {
        bridge: this.name,
        from: this.url,
        to: this.#upstreams[0].displayUrl,
      });
      this.#preferred = primary;
      this.#upIndex = 0;
      this.stats.failovers++;
      this.#m.failovers.inc(this.#labels);
      await current.close();
    }, every);
  }

  async #session(client: MqttClient): Promise<void> {
    this.#client = client;
    this.stats.connects++;
    if (this.stats.connects > 1) {
      this.stats.reconnects++;
      this.#m.reconnects.inc(this.#labels);
    }
    if (!client.sessionPresent) {
      // The broker forgot our packet ids: everything unacknowledged is resent with new ones.
      this.#byRow.clear();
      this.#byPid.clear();
    }
    this.#aliases.clear();
    this.#probeSent = false;
    // Rows in flight when the link dropped are resent first, with their packet ids.
    this.#resend = new Set(this.#byRow.keys());
    this.#cursor = 0;
    client.onPuback = (pid, reason) => this.#onAck(pid, reason);
    client.onPubrec = (pid, reason) => this.#onPubrec(client, pid, reason);
    client.onPubcomp = (pid, reason) => this.#onAck(pid, reason);
    client.onPublish = (m) => this.#onDownlink(client, m);
    this.#stableTimer = this.#clock.setTimeout(() => {
      this.#stableTimer = undefined;
      this.#backoff.reset();
    }, this.#o.stableAfterMs);
    const backlog = this.#part.depth;
    this.#setState(backlog > 0 ? "replaying" : "live", {
      url: this.url,
      sessionPresent: client.sessionPresent,
      backlog,
      reconnects: this.stats.reconnects,
      receiveMaximum: client.limits.receiveMaximum,
      maximumPacketSize: client.limits.maximumPacketSize,
      topicAliasMaximum: client.limits.topicAliasMaximum,
    });
    if (this.#o.statusTopic) {
      client.publish({
        topic: this.#o.statusTopic,
        payload: new TextEncoder().encode("online"),
        qos: 0,
        retain: true,
      });
    }
    client.subscribe(this.#map.downlinkFilters.map((topic) => ({ topic, qos: 1 }))).then(
      (granted) => {
        granted.forEach((g, i) => {
          if (g >= 0x80) {
            this.#log.warn("upstream refused a command subscription", {
              bridge: this.name,
              filter: this.#map.downlinkFilters[i],
              code: g,
            });
          }
        });
      },
    ).catch(() => {});
    this.#schedulePrimaryProbe();
    this.#pump();
    const err = await client.closed;
    for (const t of [this.#stableTimer, this.#pumpTimer, this.#primaryTimer]) {
      if (t !== undefined) this.#clock.clearTimeout(t);
    }
    this.#stableTimer = this.#pumpTimer = this.#primaryTimer = undefined;
    this.#client = undefined;
    if (err) {
      this.stats.disconnects++;
      this.#m.disconnects.inc(this.#labels);
      this.#log.warn("upstream connection lost", {
        bridge: this.name,
        url: this.url,
        error: err,
        inflight: this.#byPid.size,
        backlog: this.#part.depth,
      });
      this.#blame();
    }
  }

  /** After a lost link: the oldest row in flight is suspected; sent alone next time. */
  #blame(): void {
    let oldest: number | undefined;
    for (const row of this.#byRow.keys()) if (oldest === undefined || row < oldest) oldest = row;
    if (oldest === undefined) {
      this.#suspect = undefined;
      this.#probing = false;
      return;
    }
    const strikes = this.#suspect?.row === oldest ? this.#suspect.strikes + 1 : 1;
    this.#suspect = { row: oldest, strikes };
    this.#probing = true;
    if (strikes < (this.#o.maxLinkDrops ?? 3)) return;
    const f = this.#byRow.get(oldest)!;
    this.#byRow.delete(oldest);
    this.#byPid.delete(f.pid);
    this.#suspect = undefined;
    this.#probing = false;
    this.#deadLetter(
      oldest,
      "link_dropped",
      `the upstream link dropped ${strikes} times while it was the oldest in flight`,
    );
  }

  #deadLetter(row: number, reason: string, detail: string): void {
    this.stats.deadLettered++;
    this.#part.deadLetter(row, reason, detail);
    this.#log.warn("message moved to the dead letters", {
      bridge: this.name,
      id: row,
      reason,
      detail,
    });
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
      if (!this.#byPid.has(pid)) return pid;
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
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      this.#pumpOnce();
    } finally {
      this.#pumping = false;
    }
  }

  #window(client: MqttClient): number {
    if (this.#probing) return 1;
    return Math.max(1, Math.min(this.#o.inflight, client.limits.receiveMaximum));
  }

  #pumpOnce(): void {
    const client = this.#client;
    if (!client || client.isClosed || this.#pumpTimer !== undefined || this.#reading) return;
    // Bounded: each round sends at least one row or stops.
    for (let round = 0; round < 64; round++) {
      let want = this.#window(client) - this.#byPid.size;
      // After a reconnect the in-flight rows are resent first: they are at the head.
      if (want <= 0 && this.#resend.size === 0) return;
      if (want <= 0) want = this.#probing ? 1 : this.#resend.size;
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
      const got = this.#part.read(this.#cursor, Math.min(want, 4096));
      if (got instanceof Promise) {
        this.#reading = true;
        got.then((rows) => {
          this.#reading = false;
          if (this.#client !== client || client.isClosed) return this.#pumpSoon();
          const more = this.#sendRows(client, rows, want);
          if (more) this.#nextTurn();
          else this.#pumpSoon();
        }, (err) => {
          this.#reading = false;
          this.#log.error("spool read failed", { bridge: this.name, error: err });
          this.#pumpTimer = this.#clock.setTimeout(() => {
            this.#pumpTimer = undefined;
            this.#pump();
          }, 1000);
        });
        return;
      }
      if (!this.#sendRows(client, got, want)) return;
    }
    this.#nextTurn();
  }

  /** Continues on the next turn so sockets and timers get a go. */
  #nextTurn(): void {
    if (this.#pumpTimer !== undefined) return;
    this.#pumpTimer = this.#clock.setTimeout(() => {
      this.#pumpTimer = undefined;
      this.#pump();
    }, 0);
  }

  /** Sends rows; returns true when more may be waiting. */
  #sendRows(client: MqttClient, rows: SpoolRecord[], want: number): boolean {
    if (this.#state === "replaying") this.#bucket.spend(rows.length);
    let n = 0;
    const qos2 = this.#o.qos === 2;
    let toMark: InFlight[] | undefined;
    for (const row of rows) {
      if (row.id <= this.#cursor && !this.#resend.has(row.id)) continue;
      // After a lost link the oldest row goes alone until acknowledged (the culprit is known).
      if (this.#probing && this.#probeSent) return false;
      const f = this.#byRow.get(row.id);
      this.#cursor = Math.max(this.#cursor, row.id);
      if (f) {
        f.rec = row;
        this.#resend.delete(row.id);
        this.stats.resent++;
        this.#m.resent.inc(this.#labels);
        if (f.released) client.pubrel(f.pid); // QoS 2: the broker has it; finish [MQTT-4.4.0-1]
        else this.#publish(client, row, f.pid, true);
        this.#probeSent = this.#probing;
        n++;
        continue;
      }
      if (!this.#fits(client, row)) continue;
      if (qos2 && row.pid && row.qos2 && client.sessionPresent && !this.#byPid.has(row.pid)) {
        // Stored QoS 2 state from before a restart, and the broker kept the session: go on
        // where the exchange stopped (PUBREL after PUBREC, else the PUBLISH again with DUP).
        const entry: InFlight = { row: row.id, pid: row.pid, released: row.qos2 === 2, rec: row };
        this.#byRow.set(row.id, entry);
        this.#byPid.set(row.pid, entry);
        this.stats.resent++;
        this.#m.resent.inc(this.#labels);
        if (entry.released) client.pubrel(entry.pid);
        else this.#publish(client, row, entry.pid, true);
        this.#probeSent = this.#probing;
        n++;
        continue;
      }
      const pid = this.#allocPid();
      const entry: InFlight = { row: row.id, pid, released: false, rec: row };
      this.#byRow.set(row.id, entry);
      this.#byPid.set(pid, entry);
      if (qos2) (toMark ??= []).push(entry);
      else this.#publish(client, row, pid, false);
      this.#probeSent = this.#probing;
      n++;
    }
    if (toMark) this.#publishWhenMarked(client, toMark);
    if (this.#resend.size) this.#releaseGone(rows.length < want);
    if (rows.length < want) {
      if (this.#state === "replaying" && this.#part.pendingRows === 0) {
        this.#setState("live", { url: this.url });
      }
      return false;
    }
    return n > 0 || rows.length > 0;
  }

  /**
   * QoS 2: a PUBLISH goes out only once its packet id is in the spool, so that after a restart
   * the exchange resumes with the same id instead of a second PUBLISH the broker would deliver
   * again.
   */
  #publishWhenMarked(client: MqttClient, entries: InFlight[]): void {
    Promise.all(entries.map((e) => this.#part.mark(e.rec, e.pid, 1))).then(() => {
      if (this.#client !== client || client.isClosed) return; // resent on the next link
      for (const e of entries) {
        if (this.#byPid.get(e.pid) === e) this.#publish(client, e.rec, e.pid, false);
      }
    }, (err) => {
      // Not durable: not sent; dropped from the window, read again after the next link loss.
      this.#log.warn("QoS 2 state not stored; not sent yet", { bridge: this.name, error: err });
      for (const e of entries) {
        if (this.#byPid.get(e.pid) === e) {
          this.#byPid.delete(e.pid);
          this.#byRow.delete(e.row);
        }
      }
    });
  }

  #maxPacket(client: MqttClient): number {
    const own = this.#o.maxPacketSize ?? 0;
    const theirs = client.limits.maximumPacketSize;
    return own > 0 ? Math.min(own, theirs) : theirs;
  }

  /** False (and dead-lettered) when the row can never be sent to this broker. */
  #fits(client: MqttClient, row: SpoolRecord): boolean {
    const max = this.#maxPacket(client);
    const topic = this.#map.toUpstream(row.topic);
    // Cheap bound first: a UTF-16 code unit is at most 3 UTF-8 bytes.
    if (topic.length * 3 + row.payload.length + 16 <= max) return true;
    const size = publishSize(
      this.#o.connection.protocolVersion ?? 4,
      new TextEncoder().encode(topic).length,
      row.payload.length,
      this.#o.qos ?? 1,
    );
    if (size <= max) return true;
    this.#deadLetter(row.id, "too_large", `${size} byte packet, the upstream takes ${max}`);
    return false;
  }

  #publish(client: MqttClient, row: SpoolRecord, pid: number, dup: boolean): void {
    const topic = this.#map.toUpstream(row.topic);
    let topicAlias: number | undefined;
    let name = topic;
    const max = client.limits.topicAliasMaximum;
    if (max > 0 && this.#o.topicAliases !== false && topic.length > 8) {
      const known = this.#aliases.get(topic);
      if (known !== undefined) {
        topicAlias = known;
        name = "";
      } else if (this.#aliases.size < max) {
        topicAlias = this.#aliases.size + 1;
        this.#aliases.set(topic, topicAlias);
      }
    }
    client.publish({
      topic: name,
      payload: row.payload,
      qos: this.#o.qos ?? 1,
      retain: row.retain,
      dup,
      messageId: pid,
      topicAlias,
    });
  }

  /**
   * Frees the packet ids of in-flight rows that were not met again while resending (acknowledged,
   * dropped or expired meanwhile): rows come in id order, so one the cursor passed is gone.
   */
  #releaseGone(caughtUp: boolean): void {
    for (const row of this.#resend) {
      if (!caughtUp && row > this.#cursor) continue;
      this.#resend.delete(row);
      const f = this.#byRow.get(row);
      this.#byRow.delete(row);
      if (f) this.#byPid.delete(f.pid);
    }
  }

  #onPubrec(client: MqttClient, pid: number, reason: number): void {
    const f = this.#byPid.get(pid);
    if (!f) return;
    if (reason >= 0x80) return this.#onAck(pid, reason); // refused: no PUBREL [MQTT-4.3.3]
    if (f.released) return client.pubrel(pid); // a PUBREC again (after a resend)
    f.released = true;
    // The broker has it: remember that before releasing it, so a restart sends PUBREL, never
    // the PUBLISH again.
    this.#part.mark(f.rec, pid, 2).then(
      () => {
        if (this.#client === client && !client.isClosed && this.#byPid.get(pid) === f) {
          client.pubrel(pid);
        }
      },
      () => {/* sent with the next link: released rows get PUBREL */},
    );
  }

  #onAck(pid: number, reason: number): void {
    const f = this.#byPid.get(pid);
    if (f === undefined) return; // stale (from before a reset session)
    const row = f.row;
    this.#byPid.delete(pid);
    this.#byRow.delete(row);
    this.#resend.delete(row);
    // The probe went through: the link carries messages again.
    this.#probing = false;
    if (this.#suspect?.row === row) this.#suspect = undefined;
    if (reason >= 0x80) {
      this.stats.rejected++;
      this.#m.rejected.inc({ ...this.#labels, reason: String(reason) });
      this.#deadLetter(row, "rejected", `upstream reason code 0x${reason.toString(16)}`);
    } else {
      this.stats.published++;
      this.#m.published.inc(this.#labels);
      this.#part.ack(row);
    }
    const depth = this.#part.depth;
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
      this.#m.downlinkDropped.inc({ ...this.#labels, reason: "not_a_command" });
      this.#log.warn("upstream message is not a command topic; dropped", {
        bridge: this.name,
        topic: m.topic,
      });
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
      this.#log.warn("command from upstream not accepted", {
        bridge: this.name,
        topic: local,
        error: err,
      });
      return false;
    });
    // PUBACKs go out in the order the PUBLISHes came [MQTT-4.6.0-2]; an unaccepted command is
    // not acknowledged, so the broker sends it again on the next connection.
    this.#downChain = this.#downChain.then(() => accepted).then((ok) => {
      if (ok) {
        this.stats.downlink++;
        this.#m.downlink.inc(this.#labels);
        ack();
      } else {
        this.stats.downlinkDropped++;
        this.#m.downlinkDropped.inc({ ...this.#labels, reason: "not_accepted" });
      }
    });
  }

  #scheduleHousekeeping(): void {
    this.#houseTimer = this.#clock.setTimeout(() => {
      this.#houseTimer = undefined;
      if (this.#closing) return;
      this.#housekeeping = this.housekeeping().catch((err) => {
        this.#log.error("spool housekeeping failed", { bridge: this.name, error: err });
      }).finally(() => {
        this.#housekeeping = undefined;
        if (!this.#closing) this.#scheduleHousekeeping();
      });
    }, this.#o.housekeepingMs);
    this.#clock.unref?.(this.#houseTimer);
  }

  /** Drops expired messages and compacts a drained spool (runs every `housekeepingMs`). */
  async housekeeping(): Promise<void> {
    const expired = await this.#spool.expire();
    if (expired) {
      this.#log.warn("spool messages expired (TTL)", { bridge: this.name, dropped: expired });
    }
    const depth = this.#spool.depth;
    if (depth > this.#maxDepthSinceCompact) this.#maxDepthSinceCompact = depth;
    // Only when a drained backlog left free pages worth giving back: compacting (a TRUNCATE
    // checkpoint) under steady traffic would stall the writer for nothing.
    if (depth === 0 && await this.#spool.freeBytes() > this.#o.compactAboveBytes) {
      const before = this.#spool.fileBytes();
      if (await this.#spool.compact()) {
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
    for (const t of [this.#pumpTimer, this.#houseTimer, this.#stableTimer, this.#primaryTimer]) {
      if (t !== undefined) this.#clock.clearTimeout(t);
    }
    this.#pumpTimer =
      this.#houseTimer =
      this.#stableTimer =
      this.#primaryTimer =
        undefined;
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
    await this.#preferred?.close();
    await this.#run;
    await this.#downChain;
    await this.#housekeeping;
    this.#setState("closed");
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
