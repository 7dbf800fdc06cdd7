/**
 * The northbound service as the gateway runs it: opens the spool in the data directory, installs
 * the core's accept hook (a forwarded message is acknowledged to its device only once committed
 * to the spool partition of every bridge that forwards it), runs one {@link Bridge} per configured
 * upstream, exports the metrics, reloads the bridges live ({@link Northbound.reload}) and exposes
 * the dead letters ({@link Northbound.listDeadLetters} and friends).
 *
 * Refusals are typed (`RefusedError` from `src/core/refusal.ts`): `quota` when a partition or a
 * device's quota is full, `too_large` for a message no upstream of it can ever take, `failed`
 * when the commit failed (disk full, I/O error). Repeated refusals and commit failures are logged
 * once per 10 s with counts, not once each.
 *
 * @module
 */

import { join } from "node:path";
import type { Clock, TimerHandle } from "../core/clock.ts";
import type { Core } from "../core/core.ts";
import type { Logger } from "../core/logger.ts";
import type { Message } from "../core/message.ts";
import { RefusedError } from "../core/refusal.ts";
import { Bridge, BRIDGE_STATES, type BridgeState } from "./bridge.ts";
import { LogSummary } from "./log_summary.ts";
import { publishSize } from "./mqtt_client.ts";
import {
  type NorthboundConfig,
  type ResolvedNorthboundOptions,
  resolveNorthboundList,
} from "./options.ts";
import { type DeadLetter, Spool, type SpoolPartition } from "./spool.ts";
import { TopicMap } from "./topic_map.ts";

/** Extra wiring of {@link startNorthbound} (tests). */
export interface StartNorthboundOptions {
  /** Time source. @default core.clock */
  clock?: Clock;
  /** Logger. @default core.log.child("northbound") */
  log?: Logger;
  /** Random source of the backoff jitter. */
  random?: () => number;
}

interface Target {
  bridge: Bridge;
  part: SpoolPartition;
  map: TopicMap;
  maxPacketSize: number;
  version: 4 | 5;
  qos: 1 | 2;
}

const utf8 = new TextEncoder();

/**
 * The running northbound bridges with their spool.
 *
 * Close it after the core (`await core.close(); await northbound.close()`): the pipeline drain
 * may still append to the spool.
 */
export class Northbound implements AsyncDisposable {
  /** The spool. */
  readonly spool: Spool;
  #core: Core;
  #log: Logger;
  #clock: Clock;
  #extra: StartNorthboundOptions;
  #bridges = new Map<string, { bridge: Bridge; options: ResolvedNorthboundOptions }>();
  #targets: Target[] = [];
  #closed: Promise<void> | undefined;
  #houseTimer: TimerHandle | undefined;
  #housekeeping: Promise<void> | undefined;
  #housekeepingMs = 5000;
  #reloading: Promise<unknown> = Promise.resolve();
  #refusals: LogSummary;
  #writeErrors: LogSummary;
  #refused: (reason: string) => void;

  /** Use {@link startNorthbound}. */
  constructor(
    core: Core,
    spool: Spool,
    wiring: {
      log: Logger;
      clock: Clock;
      dataDir: string;
      extra: StartNorthboundOptions;
      refusals: LogSummary;
      writeErrors: LogSummary;
      refused: (reason: string) => void;
    },
  ) {
    this.#core = core;
    this.spool = spool;
    this.#log = wiring.log;
    this.#clock = wiring.clock;
    this.#extra = wiring.extra;
    this.#refusals = wiring.refusals;
    this.#writeErrors = wiring.writeErrors;
    this.#refused = wiring.refused;
  }

  /** The bridges, in configuration order. */
  get bridges(): Bridge[] {
    return [...this.#bridges.values()].map((b) => b.bridge);
  }

  /** The first bridge. */
  get bridge(): Bridge {
    return this.bridges[0];
  }

  /** The first bridge's topic mapping. */
  get map(): TopicMap {
    return this.bridge.map;
  }

  /** The first bridge's link state. */
  get state(): BridgeState {
    return this.bridge?.state ?? "closed";
  }

  /** A bridge by name. */
  bridgeNamed(name: string): Bridge | undefined {
    return this.#bridges.get(name)?.bridge;
  }

  /** @internal Starts the bridges of `list` (at start-up). */
  async init(list: ResolvedNorthboundOptions[]): Promise<void> {
    for (const o of list) await this.#add(o);
    this.#rebuildTargets();
    this.#housekeepingMs = Math.min(...list.map((o) => o.housekeepingMs));
    this.#scheduleHousekeeping();
  }

  async #add(o: ResolvedNorthboundOptions): Promise<Bridge> {
    const part = this.spool.configure(o.name, {
      maxBytes: o.spool.maxBytes,
      maxBytesPerDevice: o.spool.maxBytesPerDevice || undefined,
      ttlSec: o.spool.ttlSec,
      fullPolicy: o.spool.fullPolicy,
    });
    const map = new TopicMap({
      gatewayId: o.gatewayId,
      prefix: o.prefix,
      forward: o.forward,
      exclude: o.exclude,
      rewrite: o.rewrite,
    });
    const read = (f?: string) => f === undefined ? undefined : Deno.readTextFile(f);
    const [ca, cert, key] = await Promise.all([read(o.caFile), read(o.certFile), read(o.keyFile)]);
    const connection = (u: ResolvedNorthboundOptions["upstreams"][number]) => ({
      hostname: u.hostname,
      port: u.port,
      tls: u.tls,
      caCerts: ca === undefined ? undefined : [ca],
      cert,
      key,
      clientId: o.clientId,
      username: o.username ?? u.username,
      password: o.password ?? u.password,
      keepAliveSec: o.keepAliveSec,
      protocolVersion: o.protocolVersion,
      clean: o.cleanSession,
      sessionExpirySec: o.sessionExpirySec,
      connectTimeoutMs: o.connectTimeoutMs,
    });
    const bridge = new Bridge(this.#core, this.spool, map, {
      name: o.name,
      partition: part,
      connection: connection(o.upstreams[0]),
      upstreams: o.upstreams.map((u) => ({ connection: connection(u), displayUrl: u.displayUrl })),
      displayUrl: o.displayUrl,
      primaryReturnMs: o.primaryReturnSec * 1000,
      qos: o.qos,
      inflight: o.inflight,
      maxPacketSize: o.maxPacketSize,
      topicAliases: o.topicAliases,
      maxLinkDrops: o.maxLinkDrops,
      replayRatePerSec: o.replayRatePerSec,
      backoffBaseMs: o.backoffBaseMs,
      backoffCapMs: o.backoffCapMs,
      stableAfterMs: o.stableAfterMs,
      housekeepingMs: o.housekeepingMs,
      compactAboveBytes: o.compactAboveBytes,
      housekeeping: false,
      clock: this.#clock,
      log: this.#log,
      random: this.#extra.random,
      statusTopic: o.presence ? `${map.prefix}/status` : undefined,
    });
    this.#bridges.set(o.name, { bridge, options: o });
    bridge.start();
    this.#log.info("bridge started", {
      bridge: o.name,
      urls: o.upstreams.map((u) => u.displayUrl),
      backlog: part.depth,
      qos: o.qos,
    });
    return bridge;
  }

  #rebuildTargets(): void {
    this.#targets = [...this.#bridges.values()].map(({ bridge, options }) => ({
      bridge,
      part: bridge.partition,
      map: bridge.map,
      maxPacketSize: options.maxPacketSize,
      version: options.protocolVersion,
      qos: options.qos,
    }));
  }

  /**
   * The accept hook: stores `msg` in the partition of every bridge that forwards it; resolves
   * once committed. Throws (rejects with) a `RefusedError`.
   */
  accept(msg: Message): Promise<void> | undefined {
    if (msg.protocol === "upstream") return undefined;
    let parts: SpoolPartition[] | undefined;
    const targets = this.#targets;
    for (let i = 0; i < targets.length; i++) {
      const t = targets[i];
      if (!t.map.forwards(msg.topic)) continue;
      if (t.maxPacketSize > 0) {
        const size = publishSize(
          t.version,
          utf8.encode(t.map.toUpstream(msg.topic)).length,
          msg.payload.length,
          t.qos,
        );
        if (size > t.maxPacketSize) {
          const err = new RefusedError(
            "too_large",
            `Cannot forward message: a ${size} byte packet exceeds bridge ${t.bridge.name}'s maxPacketSize ${t.maxPacketSize}`,
          );
          return this.#refuse(msg, err);
        }
      }
      (parts ??= []).push(t.part);
    }
    if (!parts) return undefined;
    const p = this.spool.append(msg, parts);
    if (msg.qos === 0) { // at most once: the device is not waiting for an acknowledgement
      p.catch((err) => this.#refuse(msg, err).catch(() => {}));
      return undefined;
    }
    return p.then(() => undefined, (err) => this.#refuse(msg, err));
  }

  #refuse(msg: Message, err: unknown): Promise<never> {
    const reason = err instanceof RefusedError ? err.reason : "failed";
    this.#refused(reason);
    if (reason !== "failed") {
      this.#refusals.note(reason, {
        topic: msg.topic,
        device: msg.deviceId,
        error: err instanceof Error ? err.message : String(err),
      });
    }
    return Promise.reject(
      err instanceof RefusedError
        ? err
        : new RefusedError("failed", String((err as Error)?.message ?? err), { cause: err }),
    );
  }

  /** @internal A commit failed: summarised. */
  writeError(err: Error, refused: number): void {
    this.#writeErrors.note("failed", { file: this.spool.path, error: err.message, refused });
  }

  /**
   * Applies a new `northbound` section live: bridges added are started, removed ones stopped
   * (their spooled messages stay in the file, counted, and flow again if the bridge comes back),
   * changed ones restarted on the same partition. Nothing spooled is lost. Settings of the spool
   * file itself (`file`, `synchronous`, …) need a restart; a change to them is logged. Throws
   * `TypeError`/`RangeError` for a bad section, leaving the running bridges as they were.
   */
  reload(
    config: NorthboundConfig,
  ): Promise<{ added: string[]; removed: string[]; changed: string[] }> {
    const run = this.#reloading.then(() => this.#reload(config));
    this.#reloading = run.catch(() => {});
    return run;
  }

  async #reload(
    config: NorthboundConfig,
  ): Promise<{ added: string[]; removed: string[]; changed: string[] }> {
    const list = resolveNorthboundList(config);
    const result = { added: [] as string[], removed: [] as string[], changed: [] as string[] };
    const first = [...this.#bridges.values()][0]?.options.spool;
    if (first) {
      for (const k of ["file", "synchronous", "onCorrupt", "worker"] as const) {
        if (list[0].spool[k] !== first[k]) {
          this.#log.warn("spool file settings change only at restart; kept as they were", {
            key: `spool.${k}`,
            running: first[k],
            configured: list[0].spool[k],
          });
        }
      }
    }
    const wanted = new Map(list.map((o) => [o.name, o]));
    for (const [name, { bridge }] of [...this.#bridges]) {
      if (wanted.has(name)) continue;
      await bridge.close();
      this.#bridges.delete(name);
      result.removed.push(name);
      this.#log.warn("bridge removed; its spooled messages stay in the spool", {
        bridge: name,
        kept: bridge.partition.depth,
      });
    }
    this.#rebuildTargets();
    const next = new Map<string, { bridge: Bridge; options: ResolvedNorthboundOptions }>();
    for (const o of list) {
      const cur = this.#bridges.get(o.name);
      if (cur && JSON.stringify(cur.options) === JSON.stringify(o)) {
        next.set(o.name, cur);
        continue;
      }
      if (cur) {
        await cur.bridge.close();
        this.#bridges.delete(o.name);
        result.changed.push(o.name);
      } else result.added.push(o.name);
      await this.#add(o);
      next.set(o.name, this.#bridges.get(o.name)!);
    }
    this.#bridges = next;
    this.#rebuildTargets();
    this.#log.info("bridges reloaded", result);
    return result;
  }

  #scheduleHousekeeping(): void {
    this.#houseTimer = this.#clock.setTimeout(() => {
      this.#houseTimer = undefined;
      if (this.#closed) return;
      this.#housekeeping = this.housekeeping().catch((err) => {
        this.#log.error("spool housekeeping failed", { error: err });
      }).finally(() => {
        this.#housekeeping = undefined;
        if (!this.#closed) this.#scheduleHousekeeping();
      });
    }, this.#housekeepingMs);
    this.#clock.unref?.(this.#houseTimer);
  }

  /** Drops expired messages, compacts a drained spool, lets every bridge send. */
  async housekeeping(): Promise<void> {
    if (this.spool.lowSpace && await this.spool.checkSpace()) {
      this.#log.warn("spool has disk space again; taking messages", { file: this.spool.path });
    }
    const b = this.bridge;
    if (b) await b.housekeeping();
    await this.spool.refreshOldest();
    for (const x of this.bridges) x.kick();
  }

  /** Dead letters, oldest first (of one bridge, or all). */
  listDeadLetters(
    options: { bridge?: string; afterId?: number; limit?: number } = {},
  ): Promise<DeadLetter[]> {
    return this.spool.listDeadLetters(options);
  }

  /** Puts dead letters back at the tail of their bridge's partition; returns how many. */
  retryDeadLetters(ids: number[]): Promise<number> {
    return this.spool.retryDeadLetters(ids);
  }

  /**
   * Adds a message that was never spooled (a rule failed on it) to the dead letters under
   * `bridge` (`rule:{name}`); resolves to its id once committed. See {@link Spool.addDeadLetter}.
   */
  addDeadLetter(
    letter: { bridge: string; message: Message; reason: string; detail?: string },
  ): Promise<number> {
    return this.spool.addDeadLetter(letter);
  }

  /** Deletes dead letters; returns how many. */
  deleteDeadLetters(ids: number[]): Promise<number> {
    return this.spool.deleteDeadLetters(ids);
  }

  /** Stops the bridges (DISCONNECT upstream), commits and closes the spool. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      if (this.#houseTimer !== undefined) this.#clock.clearTimeout(this.#houseTimer);
      await this.#reloading;
      await Promise.all(this.bridges.map((b) => b.close()));
      await this.#housekeeping;
      this.#core.setAcceptHook(undefined);
      await this.spool.close();
      this.#refusals.close();
      this.#writeErrors.close();
    })();
    return this.#closed;
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Opens the spool under `dataDir`, hooks it into the core and starts the bridges. Throws
 * `SpoolCorruptError` (from `./spool.ts`) when the spool file is corrupt and `spool.onCorrupt`
 * is not `set-aside`, `SpoolIoError` when the disk is full or failing (the file is never moved
 * for that); `TypeError`/`RangeError` for bad options.
 *
 * @example
 * ```ts
 * import { startNorthbound } from "./northbound.ts";
 * import { Core } from "../core/core.ts";
 * import { silentLogger } from "../core/logger.ts";
 * import { createMessage } from "../core/message.ts";
 * const dir = await Deno.makeTempDir();
 * const core = new Core({ log: silentLogger });
 * // Nothing listens on port 1: the bridge backs off while the spool keeps what devices send.
 * const nb = await startNorthbound(core, { url: "mqtt://127.0.0.1:1", gatewayId: "gw1" }, dir);
 * await core.publish(createMessage({ topic: "devices/d1/telemetry", payload: new Uint8Array([7]), qos: 1 }));
 * if (nb.spool.depth !== 1) throw new Error("acknowledged means spooled");
 * await core.close();
 * await nb.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function startNorthbound(
  core: Core,
  options: NorthboundConfig,
  dataDir: string,
  extra: StartNorthboundOptions = {},
): Promise<Northbound> {
  const list = resolveNorthboundList(options);
  const clock = extra.clock ?? core.clock;
  const log = extra.log ?? core.log.child("northbound");
  const s = list[0].spool;
  await Deno.mkdir(dataDir, { recursive: true });
  const path = s.file.startsWith("/") ? s.file : join(dataDir, s.file);
  const m = core.metrics;
  const dropped = m.counter(
    "ferry_spool_dropped_total",
    "Messages dropped from or refused by the spool, by reason (full, ttl, refused)",
  );
  const refusedBy = m.counter(
    "ferry_spool_refused_total",
    "Messages refused at the spool, by reason (quota, too_large, failed)",
  );
  const deadTotal = m.counter(
    "ferry_dead_letters_total",
    "Messages moved to the dead letters, by bridge and reason",
  );
  const quarantined = m.counter(
    "ferry_spool_quarantined_total",
    "Stored rows that failed their checksum (moved to the dead letters, never forwarded)",
  );
  const ref: { nb?: Northbound } = {};
  const spool = await Spool.open(path, {
    synchronous: s.synchronous,
    onCorrupt: s.onCorrupt,
    worker: s.worker,
    deadLetterMaxBytes: s.deadLetterMaxBytes,
    partitions: Object.fromEntries(list.map((o) => [o.name, {
      maxBytes: o.spool.maxBytes,
      maxBytesPerDevice: o.spool.maxBytesPerDevice || undefined,
      ttlSec: o.spool.ttlSec,
      fullPolicy: o.spool.fullPolicy,
    }])),
    clock,
    onDrop: (reason, n, bridge) => dropped.inc({ reason, bridge }, n),
    onDead: (reason, n, bridge) => {
      deadTotal.inc({ bridge, reason }, n);
      if (reason === "checksum") {
        quarantined.inc({ bridge }, n);
        log.error("spooled messages failed their checksum: quarantined to the dead letters", {
          file: path,
          bridge,
          count: n,
        });
      }
    },
    onWriteError: (err, n) => ref.nb?.writeError(err, n),
  });
  if (spool.setAside) {
    log.error("spool file was corrupt: set aside, starting with an empty spool", {
      file: path,
      setAside: spool.setAside,
    });
  }
  const lost = spool.lostOnOpen;
  if (lost) {
    log.error(
      "spool lost acknowledged messages: the file holds fewer than its high-water mark says were committed (damaged or deleted WAL?)",
      { file: path, missingIds: `${lost.from}..${lost.to}`, upTo: lost.count },
    );
  }
  m.gauge(
    "ferry_spool_lost_on_start",
    "Acknowledged messages (at most) missing from the spool when it was opened (high-water mark)",
    () => lost?.count ?? 0,
  );
  log.info("spool opened", {
    file: path,
    depth: spool.depth,
    bytes: spool.bytes,
    deadLetters: spool.deadLetterCount,
    synchronous: s.synchronous,
    worker: s.worker,
  });
  for (const o of list) {
    if (o.spool.fullPolicy === "drop-oldest") {
      log.warn(
        "spool.fullPolicy drop-oldest: when a quota is reached, acknowledged messages are deleted to make room (data loss by design)",
        { bridge: o.name },
      );
    }
  }
  for (const p of spool.partitions) {
    if (!list.some((o) => o.name === p.name) && p.depth > 0) {
      log.warn("spool holds messages of a bridge that is not configured; they wait for it", {
        bridge: p.name,
        messages: p.depth,
      });
    }
  }
  const appended = m.counter("ferry_spool_appended_total", "Messages committed to the spool");
  const commits = m.counter("ferry_spool_commits_total", "Spool transactions (group commits)");
  const commitSeconds = m.histogram(
    "ferry_spool_commit_seconds",
    "Duration of a spool transaction in the writer, including fsync",
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5],
  );
  spool.onCommit((added, ms) => {
    commits.inc();
    appended.inc(undefined, added);
    commitSeconds.observe(ms / 1000);
  });
  m.gauge("ferry_spool_depth", "Messages in the spool awaiting upstream PUBACK", () => spool.depth);
  m.gauge("ferry_spool_bytes", "Bytes in the spool (as counted against max)", () => spool.bytes);
  m.gauge("ferry_spool_max_bytes", "Spool byte bounds, summed", () => spool.maxBytes);
  m.gauge("ferry_spool_file_bytes", "Spool file + WAL size on disk", () => spool.fileBytes());
  m.gauge(
    "ferry_spool_partition_depth",
    "Messages in each bridge's spool partition",
    () => spool.partitions.map((p) => [{ bridge: p.name }, p.depth]),
  );
  m.gauge(
    "ferry_spool_partition_bytes",
    "Bytes in each bridge's spool partition",
    () => spool.partitions.map((p) => [{ bridge: p.name }, p.bytes]),
  );
  m.gauge("ferry_dead_letters", "Dead letters held", () => spool.deadLetterCount);
  m.gauge("ferry_dead_letter_bytes", "Bytes of dead letters held", () => spool.deadLetterBytes);
  m.gauge("ferry_spool_oldest_age_seconds", "Age of the oldest spooled message", () => {
    const ts = spool.oldestTs();
    return ts === undefined ? 0 : Math.max(0, (clock.now() - ts) / 1000);
  });
  m.gauge(
    "ferry_northbound_state",
    "Upstream link state per bridge (1 for the current state)",
    () =>
      (ref.nb?.bridges ?? []).flatMap((b) =>
        BRIDGE_STATES.map((st) => [{ bridge: b.name, state: st }, st === b.state ? 1 : 0])
      ) as Array<[Record<string, string>, number]>,
  );
  m.gauge(
    "ferry_northbound_connected",
    "1 while every bridge's upstream link is up",
    () =>
      (ref.nb?.bridges ?? []).every((b) => b.connected) && (ref.nb?.bridges.length ?? 0) > 0
        ? 1
        : 0,
  );
  m.gauge(
    "ferry_northbound_bridge_connected",
    "1 while the bridge's link is up, labelled with the upstream URL in use",
    () => (ref.nb?.bridges ?? []).map((b) => [{ bridge: b.name, url: b.url }, b.connected ? 1 : 0]),
  );
  m.gauge(
    "ferry_northbound_inflight",
    "Upstream publishes awaiting acknowledgement, per bridge",
    () => (ref.nb?.bridges ?? []).map((b) => [{ bridge: b.name }, b.inflight]),
  );
  m.gauge(
    "ferry_northbound_backoff_ms",
    "Last backoff delay chosen, ms, per bridge",
    () => (ref.nb?.bridges ?? []).map((b) => [{ bridge: b.name }, b.lastBackoffMs]),
  );
  const refusals = new LogSummary(log, "spool refused messages", { clock });
  const writeErrors = new LogSummary(log, "spool commit failed; messages refused", {
    clock,
    level: "error",
  });
  const nb = ref.nb = new Northbound(core, spool, {
    log,
    clock,
    dataDir,
    extra,
    refusals,
    writeErrors,
    refused: (reason) => {
      dropped.inc({ reason: "refused" });
      refusedBy.inc({ reason });
    },
  });
  try {
    await nb.init(list);
  } catch (err) {
    await nb.close();
    throw err;
  }
  const running = nb;
  core.setAcceptHook(function spoolHook(msg: Message) {
    return running.accept(msg);
  });
  return nb;
}
