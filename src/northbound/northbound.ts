/**
 * The northbound service as the gateway runs it: opens the spool in the data directory, installs
 * the core's accept hook (a forwarded message is acknowledged to its device only once committed
 * to the spool), exports the spool metrics, and runs the {@link Bridge}.
 *
 * @module
 */

import { join } from "node:path";
import type { Clock } from "../core/clock.ts";
import type { Core } from "../core/core.ts";
import type { Logger } from "../core/logger.ts";
import type { Message } from "../core/message.ts";
import { Bridge, type BridgeState } from "./bridge.ts";
import { type NorthboundOptions, resolveNorthboundOptions } from "./options.ts";
import { Spool } from "./spool.ts";
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

/**
 * A running northbound bridge with its spool.
 *
 * Close it after the core (`await core.close(); await northbound.close()`): the pipeline drain
 * may still append to the spool.
 */
export class Northbound implements AsyncDisposable {
  /** The spool. */
  readonly spool: Spool;
  /** The bridge. */
  readonly bridge: Bridge;
  /** The topic mapping. */
  readonly map: TopicMap;
  #core: Core;
  #closed: Promise<void> | undefined;

  /** Use {@link startNorthbound}. */
  constructor(core: Core, spool: Spool, bridge: Bridge, map: TopicMap) {
    this.#core = core;
    this.spool = spool;
    this.bridge = bridge;
    this.map = map;
  }

  /** Current link state. */
  get state(): BridgeState {
    return this.bridge.state;
  }

  /** Stops the bridge (DISCONNECT upstream), commits and closes the spool. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.bridge.close();
      this.#core.setAcceptHook(undefined);
      this.spool.close();
    })();
    return this.#closed;
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Opens the spool under `dataDir`, hooks it into the core and starts the bridge. Throws
 * {@link SpoolCorruptError} (from `./spool.ts`) when the spool file is corrupt and
 * `spool.onCorrupt` is not `set-aside`; `TypeError`/`RangeError` for bad options.
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
  options: NorthboundOptions,
  dataDir: string,
  extra: StartNorthboundOptions = {},
): Promise<Northbound> {
  const o = resolveNorthboundOptions(options);
  const clock = extra.clock ?? core.clock;
  const log = extra.log ?? core.log.child("northbound");
  const map = new TopicMap({
    gatewayId: o.gatewayId,
    prefix: o.prefix,
    forward: o.forward,
    exclude: o.exclude,
  });
  const read = (f?: string) => f === undefined ? undefined : Deno.readTextFile(f);
  const [ca, cert, key] = await Promise.all([read(o.caFile), read(o.certFile), read(o.keyFile)]);
  await Deno.mkdir(dataDir, { recursive: true });
  const path = o.spool.file.startsWith("/") ? o.spool.file : join(dataDir, o.spool.file);
  const m = core.metrics;
  const dropped = m.counter(
    "ferry_spool_dropped_total",
    "Messages dropped from or refused by the spool, by reason (full, ttl, refused)",
  );
  const spool = Spool.open(path, {
    maxBytes: o.spool.maxBytes,
    ttlSec: o.spool.ttlSec,
    fullPolicy: o.spool.fullPolicy,
    synchronous: o.spool.synchronous,
    onCorrupt: o.spool.onCorrupt,
    clock,
    onDrop: (reason, n) => dropped.inc({ reason }, n),
  });
  if (spool.setAside) {
    log.error("spool file was corrupt: set aside, starting with an empty spool", {
      file: path,
      setAside: spool.setAside,
    });
  }
  log.info("spool opened", {
    file: path,
    depth: spool.depth,
    bytes: spool.bytes,
    maxBytes: o.spool.maxBytes,
    fullPolicy: o.spool.fullPolicy,
    synchronous: o.spool.synchronous,
  });
  const appended = m.counter("ferry_spool_appended_total", "Messages committed to the spool");
  const commits = m.counter("ferry_spool_commits_total", "Spool transactions (group commits)");
  const commitSeconds = m.histogram(
    "ferry_spool_commit_seconds",
    "Duration of a spool transaction, including fsync",
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5],
  );
  spool.onCommit((added, ms) => {
    commits.inc();
    appended.inc(undefined, added);
    commitSeconds.observe(ms / 1000);
  });
  m.gauge("ferry_spool_depth", "Messages in the spool awaiting upstream PUBACK", () => spool.depth);
  m.gauge("ferry_spool_bytes", "Bytes in the spool (as counted against max)", () => spool.bytes);
  m.gauge("ferry_spool_max_bytes", "Spool byte bound", () => spool.maxBytes);
  m.gauge("ferry_spool_file_bytes", "Spool file + WAL size on disk", () => spool.fileBytes());
  m.gauge("ferry_spool_oldest_age_seconds", "Age of the oldest spooled message", () => {
    const ts = spool.oldestTs();
    return ts === undefined ? 0 : Math.max(0, (clock.now() - ts) / 1000);
  });
  const bridge = new Bridge(core, spool, map, {
    connection: {
      hostname: o.hostname,
      port: o.port,
      tls: o.tls,
      caCerts: ca === undefined ? undefined : [ca],
      cert,
      key,
      clientId: o.clientId,
      username: o.username,
      password: o.password,
      keepAliveSec: o.keepAliveSec,
      protocolVersion: o.protocolVersion,
      clean: o.cleanSession,
      sessionExpirySec: o.sessionExpirySec,
      connectTimeoutMs: o.connectTimeoutMs,
    },
    displayUrl: o.displayUrl,
    inflight: o.inflight,
    replayRatePerSec: o.replayRatePerSec,
    backoffBaseMs: o.backoffBaseMs,
    backoffCapMs: o.backoffCapMs,
    stableAfterMs: o.stableAfterMs,
    housekeepingMs: o.housekeepingMs,
    compactAboveBytes: o.compactAboveBytes,
    clock,
    log,
    random: extra.random,
    statusTopic: o.presence ? `${map.prefix}/status` : undefined,
  });
  core.setAcceptHook(function spoolHook(msg: Message): Promise<void> | undefined {
    if (msg.protocol === "upstream" || !map.forwards(msg.topic)) return undefined;
    const p = spool.append(msg);
    if (msg.qos === 0) { // at most once: the device is not waiting for an acknowledgement
      p.catch((err) => {
        dropped.inc({ reason: "refused" });
        log.debug("QoS 0 message not spooled", { topic: msg.topic, error: err });
      });
      return undefined;
    }
    return p.then(() => undefined, (err) => {
      dropped.inc({ reason: "refused" });
      throw err;
    });
  });
  bridge.start();
  return new Northbound(core, spool, bridge, map);
}
