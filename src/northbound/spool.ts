/**
 * The durable store-and-forward spool of the northbound bridges: an embedded SQLite file (Deno's
 * built-in `node:sqlite`, no server) holding every message bound upstream until the upstream
 * broker acknowledged it, one **partition** per bridge (one bridge's backlog never blocks
 * another's reads).
 *
 * - **Off the main thread**: the `DatabaseSync` lives in a Worker (`_spool_host.ts`); this side
 *   keeps the accounting, the quotas and an in-memory tail of recent rows, so appends, reads of
 *   the live stream and acknowledgements never wait for SQL.
 * - **Group commit**: every append made while a commit is in flight joins the next one; one
 *   transaction and one fsync carry all of them, across all connections and partitions, in id
 *   order. {@link Spool.append} resolves only once its transaction committed, so a device may
 *   have many appends in flight, committed in order.
 * - **Order**: ids are assigned here at append time, increasing, never reused.
 * - **Durability**: `journal_mode=WAL` with `synchronous=FULL` by default: every commit fsyncs the
 *   WAL. Deletions (upstream PUBACKs) ride with the next commit, or go after 20 ms in a
 *   transaction without an fsync of its own (losing one means a duplicate, never a loss).
 * - **Integrity**: a CRC-32 per row, verified whenever a row is read back from the file: a bad row
 *   is quarantined to the dead letters (reason `checksum`) and counted, never forwarded. A
 *   high-water mark file beside the spool (`<file>.hwm`: the highest committed id, written and
 *   fdatasynced after the commits, off their path, trailing them by at most one fsync) lets a
 *   start that finds fewer rows than were acknowledged say so: {@link Spool.lostOnOpen}. The WAL
 *   is checkpointed every 500 pages (2 MiB) to keep the part of the data that lives only in the
 *   WAL small.
 * - **Quotas**: per partition by bytes (`maxBytes`) and per device within it
 *   (`maxBytesPerDevice`). Policy `refuse-new` (default) refuses with a `RefusedError("quota")`;
 *   `drop-oldest` (opt-in, **loses acknowledged data**) deletes the oldest rows of the partition,
 *   or of the device over its quota. A message that can never fit is refused as `too_large`.
 * - **TTL**: rows past their expiry are deleted and counted, never sent.
 * - **Dead letters**: rows that cannot be delivered (too large for the upstream, refused by it,
 *   dropping the link repeatedly, failing their checksum) move to a `dead_letters` table in the
 *   same file, bounded by bytes; they can be listed, retried (appended again at the tail of their
 *   partition) or deleted.
 * - **Corruption vs. failing disk**: a corrupt file raises {@link SpoolCorruptError} and is left in
 *   place, or set aside only when asked (`onCorrupt: "set-aside"`); a full or failing disk raises
 *   {@link SpoolIoError} and the file is never touched.
 *
 * @module
 */

import { type Clock, systemClock } from "../core/clock.ts";
import type { Message, QoS } from "../core/message.ts";
import { RefusedError } from "../core/refusal.ts";
import { describeIoFailure, setAside, SqliteFileError } from "../persistence/sqlite_file.ts";
import { inlineHost, StoreFailure, type StoreHost, workerHost } from "./_spool_host.ts";
import type {
  CommitResult,
  DeadMove,
  DeadRow,
  Evict,
  OpenResult,
  ReadResult,
  ReadRows,
  Removed,
  RowBatch,
  WriteBatch,
} from "./_spool_store.ts";

/** What to do when an append would exceed a quota. */
export type SpoolFullPolicy = "drop-oldest" | "refuse-new";

/** Limits of one partition. */
export interface SpoolPartitionOptions {
  /** Largest sum of stored message sizes (topic + payload + 32 bytes each). @default 268435456 */
  maxBytes?: number;
  /** Largest sum one device may hold in the partition. @default maxBytes / 4 */
  maxBytesPerDevice?: number;
  /** Seconds a message may wait for the upstream before it is dropped. @default 604800 */
  ttlSec?: number;
  /** Policy when a quota is reached. @default "refuse-new" */
  fullPolicy?: SpoolFullPolicy;
}

/** Tunables of {@link Spool}. The partition options here are the default partition's. */
export interface SpoolOptions extends SpoolPartitionOptions {
  /** SQLite `synchronous` level: `full` survives power loss, `normal` only crashes. @default "full" */
  synchronous?: "full" | "normal";
  /** On a corrupt file: `fail` (leave it, throw) or `set-aside` (rename it, start empty). @default "fail" */
  onCorrupt?: "fail" | "set-aside";
  /** Partitions to open, by name. @default { default: the options above } */
  partitions?: Record<string, SpoolPartitionOptions>;
  /** Run SQLite in a Worker (`false`: on the main thread). @default true */
  worker?: boolean;
  /** Largest sum of dead-letter sizes kept; the oldest go first. @default 16777216 */
  deadLetterMaxBytes?: number;
  /** WAL pages after which SQLite checkpoints. @default 500 */
  autoCheckpointPages?: number;
  /** Time source for `ts`/`expires` and ages. @default systemClock */
  clock?: Clock;
  /** Called after each drop with the reason, count and partition (metrics). */
  onDrop?: (reason: SpoolDropReason, count: number, partition: string) => void;
  /** Called when rows become dead letters (metrics, logs). */
  onDead?: (reason: string, count: number, partition: string) => void;
  /** Called when a commit failed (the appends of that batch were refused). */
  onWriteError?: (err: SpoolWriteError, refused: number) => void;
}

/** Why messages left the spool without being acknowledged upstream. */
export type SpoolDropReason = "full" | "ttl";

/** One stored message. */
export interface SpoolRecord {
  /** Global order, never reused. */
  id: number;
  /** Local topic. */
  topic: string;
  /** Payload bytes. */
  payload: Uint8Array;
  /** QoS the device published with. */
  qos: QoS;
  /** Retain flag. */
  retain: boolean;
  /** Publishing device, if any. */
  deviceId?: string;
  /** Accepted at (clock ms). */
  ts: number;
  /** Dropped after (clock ms). */
  expires: number;
  /** QoS 2 upstream: the packet id the row was sent with, kept in the spool. */
  pid?: number;
  /** QoS 2 upstream: 1 PUBLISH sent, 2 PUBREC received (PUBREL sent). */
  qos2?: 1 | 2;
}

/** One dead letter. */
export interface DeadLetter {
  /** The id it had in the spool. */
  id: number;
  /** Partition (bridge) it was bound for. */
  bridge: string;
  /** Local topic. */
  topic: string;
  /** Payload bytes. */
  payload: Uint8Array;
  /** QoS the device published with. */
  qos: QoS;
  /** Retain flag. */
  retain: boolean;
  /** Publishing device, if any. */
  deviceId?: string;
  /** Accepted at (clock ms). */
  ts: number;
  /** Why: `too_large`, `link_dropped`, `rejected`, `checksum`. */
  reason: string;
  /** Detail (limit, reason code…). */
  detail?: string;
  /** Moved at (clock ms). */
  deadAt: number;
}

/** An append refused because a quota is reached (partition or device) under `refuse-new`. */
export class SpoolFullError extends RefusedError {
  override name = "SpoolFullError";
  /** Creates the error (reason `quota`). */
  constructor(message: string) {
    super("quota", message, { retryAfterMs: 5000 });
  }
}

/** An append refused because the message can never fit (`too_large`). */
export class SpoolTooLargeError extends RefusedError {
  override name = "SpoolTooLargeError";
  /** Creates the error (reason `too_large`). */
  constructor(message: string) {
    super("too_large", message);
  }
}

/** The spool file is corrupt (the bytes are bad). */
export class SpoolCorruptError extends SqliteFileError {
  override name = "SpoolCorruptError";
  /** Creates the error (kind `corrupt`). */
  constructor(message: string, path: string, options?: ErrorOptions) {
    super("corrupt", path, message, options);
  }
}

/** The spool file cannot be used because the disk is full or failing, or permissions. */
export class SpoolIoError extends SqliteFileError {
  override name = "SpoolIoError";
  /** Creates the error (kind `io`). */
  constructor(message: string, path: string, options?: ErrorOptions) {
    super("io", path, message, options);
  }
}

/** A commit failed (disk full, I/O error): the appends of that batch are not durable. */
export class SpoolWriteError extends RefusedError {
  override name = "SpoolWriteError";
  /** Creates the error (reason `failed`). */
  constructor(message: string, options?: { cause?: unknown }) {
    super("failed", message, { retryAfterMs: 5000, cause: options?.cause });
  }
}

/** The spool was closed. */
export class SpoolClosedError extends RefusedError {
  override name = "SpoolClosedError";
  /** Creates the error (reason `shutting_down`). */
  constructor() {
    super("shutting_down", "Cannot append: the spool is closed");
  }
}

const OVERHEAD = 32;
const RECENT_MAX_ROWS = 65_536;
const RECENT_MAX_BYTES = 32 * 1024 * 1024;
const ACK_FLUSH_MS = 20;
const READ_LIMIT = 4096;
const encoder = new TextEncoder();

/** Size of a record as counted against the quotas. */
export function recordSize(topic: string, payload: Uint8Array): number {
  return encoder.encode(topic).length + payload.length + OVERHEAD;
}

interface Row {
  part: SpoolPartition;
  id: number;
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  device: string | null;
  ts: number;
  expires: number;
  size: number;
}

interface Waiter {
  rows: number;
  firstId: number;
  resolve: (id: number) => void;
  reject: (e: unknown) => void;
}

type TailRow = SpoolRecord & { size: number };

function resolved(o: SpoolPartitionOptions, d: Required<SpoolPartitionOptions>) {
  const maxBytes = o.maxBytes ?? d.maxBytes;
  const r = {
    maxBytes,
    maxBytesPerDevice: o.maxBytesPerDevice ?? Math.max(1, Math.floor(maxBytes / 4)),
    ttlMs: (o.ttlSec ?? d.ttlSec) * 1000,
    policy: o.fullPolicy ?? d.fullPolicy,
  };
  if (!(r.maxBytes > 0)) throw new RangeError("Cannot open spool: maxBytes must be > 0");
  if (!(r.maxBytesPerDevice > 0)) {
    throw new RangeError("Cannot open spool: maxBytesPerDevice must be > 0");
  }
  if (!(r.ttlMs > 0)) throw new RangeError("Cannot open spool: ttlSec must be > 0");
  if (r.policy !== "drop-oldest" && r.policy !== "refuse-new") {
    throw new RangeError(`Cannot open spool: unknown fullPolicy "${r.policy}"`);
  }
  return r;
}

/**
 * One bridge's share of the spool: its rows, byte and per-device accounting, and the in-memory
 * tail of its recently committed rows (the live stream is read without SQL).
 */
export class SpoolPartition {
  /** Partition (bridge) name. */
  readonly name: string;
  /** Byte bound. */
  maxBytes = 0;
  /** Per-device byte bound. */
  maxBytesPerDevice = 0;
  /** Age bound, ms. */
  ttlMs = 0;
  /** Quota policy. */
  policy: SpoolFullPolicy = "refuse-new";
  /** Rows committed and not yet removed. */
  depth = 0;
  /** Bytes committed and not yet removed. */
  bytes = 0;
  /** Bytes of appends waiting for their commit. */
  pendingBytes = 0;
  /** Appends waiting for their commit. */
  pendingRows = 0;
  #spool: Spool;
  #devices = new Map<string, number>();
  #recent: TailRow[] = [];
  #head = 0;
  #recentBytes = 0;
  #hidden = new Set<number>();
  #memFrom: number;
  #listeners = new Set<(added: number) => void>();

  /** Created by the {@link Spool}. */
  constructor(spool: Spool, name: string, memFrom: number) {
    this.#spool = spool;
    this.name = name;
    this.#memFrom = memFrom;
  }

  /** Bytes a device holds here (committed and pending). */
  deviceBytes(device: string | undefined): number {
    return this.#devices.get(device ?? "") ?? 0;
  }

  /** Calls `fn(added)` after each commit that added rows here; returns the unsubscriber. */
  onCommit(fn: (added: number) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** @internal Checks the quotas for one more row; throws a refusal. */
  check(size: number, device: string | null): void {
    if (size > this.maxBytes || (this.policy === "drop-oldest" && size > this.maxBytesPerDevice)) {
      throw new SpoolTooLargeError(
        `Cannot spool message: ${size} bytes exceed the spool's ${
          Math.min(this.maxBytes, this.maxBytesPerDevice)
        } byte limit`,
      );
    }
    if (this.policy !== "refuse-new") return;
    if (this.bytes + this.pendingBytes + size > this.maxBytes) {
      throw new SpoolFullError(
        `Cannot spool message: the spool is full (${this.bytes} of ${this.maxBytes} bytes for ${this.name})`,
      );
    }
    const held = this.#devices.get(device ?? "") ?? 0;
    if (held + size > this.maxBytesPerDevice) {
      throw new SpoolFullError(
        `Cannot spool message: device ${
          device ?? "(none)"
        } holds ${held} of its ${this.maxBytesPerDevice} byte quota`,
      );
    }
  }

  /** @internal */
  reserve(size: number, device: string | null): void {
    this.pendingBytes += size;
    this.pendingRows++;
    const k = device ?? "";
    this.#devices.set(k, (this.#devices.get(k) ?? 0) + size);
  }

  /** @internal An append failed: its reservation goes back. */
  release(size: number, device: string | null): void {
    this.pendingBytes -= size;
    this.pendingRows--;
    this.#unaccount(device, size);
  }

  #unaccount(device: string | null, size: number): void {
    const k = device ?? "";
    const v = (this.#devices.get(k) ?? 0) - size;
    if (v <= 0) this.#devices.delete(k);
    else this.#devices.set(k, v);
  }

  /** @internal Rows committed (in id order). */
  committed(rows: Row[]): void {
    for (const r of rows) {
      this.pendingBytes -= r.size;
      this.pendingRows--;
      this.depth++;
      this.bytes += r.size;
      this.#recent.push({
        id: r.id,
        topic: r.topic,
        payload: r.payload,
        qos: r.qos,
        retain: r.retain,
        deviceId: r.device ?? undefined,
        ts: r.ts,
        expires: r.expires,
        size: r.size,
      });
      this.#recentBytes += r.size;
    }
    this.#trim();
    for (const fn of this.#listeners) fn(rows.length);
  }

  /** @internal Rows added by a dead-letter retry (not reserved before). */
  restored(rows: Row[]): void {
    for (const r of rows) {
      this.pendingBytes += r.size;
      this.pendingRows++;
      const k = r.device ?? "";
      this.#devices.set(k, (this.#devices.get(k) ?? 0) + r.size);
    }
    this.committed(rows);
  }

  /** @internal A row left the file. */
  removed(id: number, device: string | null, size: number): void {
    this.depth--;
    this.bytes -= size;
    this.#unaccount(device, size);
    if (id >= this.#memFrom) this.#hidden.add(id);
  }

  /** @internal Hidden from reads at once (acknowledged, or bound for the dead letters). */
  hide(id: number): void {
    if (id >= this.#memFrom) this.#hidden.add(id);
    this.#spool.hiddenIds.add(id);
  }

  #trim(): void {
    const r = this.#recent;
    while (this.#head < r.length && this.#hidden.has(r[this.#head].id)) {
      this.#hidden.delete(r[this.#head].id);
      this.#recentBytes -= r[this.#head].size;
      this.#head++;
    }
    while (
      this.#head < r.length &&
      (r.length - this.#head > RECENT_MAX_ROWS || this.#recentBytes > RECENT_MAX_BYTES)
    ) {
      const x = r[this.#head++];
      this.#recentBytes -= x.size;
      this.#hidden.delete(x.id);
      this.#memFrom = x.id + 1;
    }
    if (this.#head === r.length) {
      this.#recent = [];
      this.#head = 0;
    } else if (this.#head > 4096 && this.#head * 2 > r.length) {
      this.#recent = r.slice(this.#head);
      this.#head = 0;
    }
  }

  #fromTail(afterId: number, limit: number, now: number, out: SpoolRecord[]): void {
    const r = this.#recent;
    let lo = this.#head;
    let hi = r.length;
    while (lo < hi) { // first index with id > afterId
      const mid = (lo + hi) >>> 1;
      if (r[mid].id <= afterId) lo = mid + 1;
      else hi = mid;
    }
    const hidden = this.#spool.hiddenIds;
    for (let i = lo; i < r.length && out.length < limit; i++) {
      const x = r[i];
      if (this.#hidden.has(x.id) || hidden.has(x.id)) continue;
      if (x.expires <= now) continue; // housekeeping deletes and counts it
      out.push(x);
    }
  }

  /**
   * Up to `limit` stored messages with an id above `afterId`, oldest first, never one already
   * acknowledged. From the in-memory tail when it covers `afterId` (synchronous), else from the
   * file (a promise; rows failing their checksum are quarantined, expired ones dropped).
   */
  read(afterId: number, limit: number): SpoolRecord[] | Promise<SpoolRecord[]> {
    const now = this.#spool.now();
    if (afterId + 1 >= this.#memFrom) {
      const out: SpoolRecord[] = [];
      this.#fromTail(afterId, limit, now, out);
      return out;
    }
    return this.#spool.readFile(this, afterId, Math.min(limit, READ_LIMIT), now).then((rows) => {
      if (rows.length < limit) {
        const last = rows.length ? rows[rows.length - 1].id : afterId;
        if (last + 1 >= this.#memFrom) this.#fromTail(last, limit, now, rows);
        else if (rows.length === 0) {
          // Nothing left below the tail: continue from it.
          this.#fromTail(Math.max(afterId, this.#memFrom - 1), limit, now, rows);
        }
      }
      return rows;
    });
  }

  /** Marks a message acknowledged upstream; it is deleted with the next commit. */
  ack(id: number): void {
    this.hide(id);
    this.#spool.queueAck(id);
  }

  /**
   * Records a row's QoS 2 state (packet id; 1: PUBLISH sent, 2: PUBREC received) durably;
   * resolves once committed, so the exchange can go on knowing a restart resumes it.
   */
  mark(row: SpoolRecord, pid: number, state: 1 | 2): Promise<void> {
    row.pid = pid;
    row.qos2 = state;
    return this.#spool.queueMark(row.id, pid, state);
  }

  /** Moves a message to the dead letters (with the next commit). */
  deadLetter(id: number, reason: string, detail: string): void {
    this.hide(id);
    this.#spool.queueDead({ id, reason, detail });
  }
}

/**
 * A durable, bounded, ordered, partitioned message spool on SQLite.
 *
 * @example
 * ```ts
 * import { Spool } from "./spool.ts";
 * import { createMessage } from "../core/message.ts";
 * const dir = await Deno.makeTempDir();
 * const spool = await Spool.open(`${dir}/spool.db`);
 * const id = await spool.append(createMessage({ topic: "devices/a/telemetry", payload: new Uint8Array([1]) }));
 * const [rec] = await spool.read(0, 10);
 * if (rec.id !== id || rec.payload[0] !== 1) throw new Error();
 * const before = spool.depth;
 * spool.ack(id);
 * await spool.flush();
 * if (before !== 1 || spool.depth !== 0 || (await spool.read(0, 10)).length !== 0) throw new Error();
 * await spool.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class Spool implements AsyncDisposable {
  /** The file. */
  readonly path: string;
  /** @internal Ids acknowledged or bound for the dead letters whose deletion is not committed. */
  readonly hiddenIds = new Set<number>();
  #host: StoreHost;
  #clock: Clock;
  #defaults: Required<SpoolPartitionOptions>;
  #onDrop?: SpoolOptions["onDrop"];
  #onDead?: SpoolOptions["onDead"];
  #onWriteError?: SpoolOptions["onWriteError"];
  #partitions = new Map<string, SpoolPartition>();
  #nextId: number;
  #rows: Row[] = [];
  #waiters: Waiter[] = [];
  #acks: number[] = [];
  #dead: DeadMove[] = [];
  #marks: number[] = [];
  #markWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  #committing: Promise<void> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #listeners = new Set<(added: number, ms: number) => void>();
  #setAside: string | undefined;
  #deadCount: number;
  #deadBytes: number;
  #lost: { from: number; to: number } | undefined;
  #lowSpace = false;
  /** Counters since open. */
  readonly stats = {
    appended: 0,
    acked: 0,
    refused: 0,
    droppedFull: 0,
    droppedTtl: 0,
    dead: 0,
    quarantined: 0,
    commits: 0,
    commitFailures: 0,
    lastCommitMs: 0,
  };

  private constructor(
    path: string,
    host: StoreHost,
    o: OpenResult,
    options: SpoolOptions,
    defaults: Required<SpoolPartitionOptions>,
  ) {
    this.path = path;
    this.#host = host;
    this.#clock = options.clock ?? systemClock;
    this.#defaults = defaults;
    this.#onDrop = options.onDrop;
    this.#onDead = options.onDead;
    this.#onWriteError = options.onWriteError;
    this.#nextId = o.nextId;
    this.#deadCount = o.deadCount;
    this.#deadBytes = o.deadBytes;
    if (o.hwm > o.found) this.#lost = { from: o.found + 1, to: o.hwm };
    const parts = options.partitions ?? { default: options };
    for (const [name, p] of Object.entries(parts)) this.configure(name, p);
    for (const p of o.partitions) {
      const part = this.configure(p.bridge, parts[p.bridge] ?? {});
      part.depth = p.depth;
      part.bytes = p.bytes;
      for (const [d, b] of p.devices) part.reserve(b, d === "" ? null : d);
      part.pendingBytes = 0;
      part.pendingRows = 0;
    }
  }

  /**
   * Opens (or creates) the spool at `path`, checking its integrity. Throws
   * {@link SpoolCorruptError} for a corrupt file unless `onCorrupt` is `set-aside`, and
   * {@link SpoolIoError} when the disk is full or failing (the file is never moved for that).
   */
  static async open(path: string, options: SpoolOptions = {}): Promise<Spool> {
    const defaults: Required<SpoolPartitionOptions> = {
      maxBytes: options.maxBytes ?? 256 * 1024 * 1024,
      maxBytesPerDevice: options.maxBytesPerDevice ?? 0,
      ttlSec: options.ttlSec ?? 604_800,
      fullPolicy: options.fullPolicy ?? "refuse-new",
    };
    resolved(options, defaults); // validates
    const req = {
      op: "open" as const,
      path,
      synchronous: options.synchronous ?? "full",
      autoCheckpointPages: options.autoCheckpointPages ?? 500,
      deadMaxBytes: options.deadLetterMaxBytes ?? 16 * 1024 * 1024,
      partitioned: Object.keys(options.partitions ?? {}).length > 1,
    };
    const attempt = async () => {
      const host = options.worker === false ? inlineHost() : workerHost();
      try {
        return { host, o: await host.call<OpenResult>(req) };
      } catch (err) {
        host.terminate();
        throw err;
      }
    };
    let setAsidePath: string | undefined;
    let r: { host: StoreHost; o: OpenResult };
    try {
      r = await attempt();
    } catch (err) {
      const e = openError(path, err);
      if (!(e instanceof SpoolCorruptError) || options.onCorrupt !== "set-aside") throw e;
      setAsidePath = setAside(path);
      try {
        Deno.removeSync(path + ".hwm"); // the mark belonged to the file set aside
      } catch { /* none */ }
      try {
        r = await attempt();
      } catch (err2) {
        throw openError(path, err2);
      }
    }
    const spool = new Spool(path, r.host, r.o, options, defaults);
    spool.#setAside = setAsidePath;
    return spool;
  }

  /** Where a corrupt file was moved, when `onCorrupt: "set-aside"` had to act. */
  get setAside(): string | undefined {
    return this.#setAside;
  }

  /**
   * Ids the high-water mark says were committed (acknowledged to devices) but the file no longer
   * has: a damaged or deleted WAL, say. `undefined` when the file holds everything it should.
   */
  get lostOnOpen(): { from: number; to: number; count: number } | undefined {
    return this.#lost && { ...this.#lost, count: this.#lost.to - this.#lost.from + 1 };
  }

  /** @internal The clock's now. */
  now(): number {
    return this.#clock.now();
  }

  /**
   * Adds a partition or changes its limits (live reload); returns it. A partition keeps its rows
   * when its bridge goes away.
   */
  configure(name: string, options: SpoolPartitionOptions = {}): SpoolPartition {
    const r = resolved(options, this.#defaults);
    let p = this.#partitions.get(name);
    if (!p) {
      this.#partitions.set(name, p = new SpoolPartition(this, name, this.#nextId));
      // A second partition: its reads need the (bridge, id) index (made once, in the writer).
      if (this.#partitions.size === 2 && this.#host) {
        this.#host.call({ op: "index" }).catch(() => {});
      }
    }
    p.maxBytes = r.maxBytes;
    p.maxBytesPerDevice = r.maxBytesPerDevice;
    p.ttlMs = r.ttlMs;
    p.policy = r.policy;
    return p;
  }

  /** A partition by name. */
  partition(name: string): SpoolPartition | undefined {
    return this.#partitions.get(name);
  }

  /** Every partition, including those found in the file with no bridge configured. */
  get partitions(): SpoolPartition[] {
    return [...this.#partitions.values()];
  }

  /** The first partition (the single bridge's). */
  get main(): SpoolPartition {
    return this.#partitions.values().next().value!;
  }

  /** Messages stored (committed, not yet acknowledged upstream), all partitions. */
  get depth(): number {
    let n = 0;
    for (const p of this.#partitions.values()) n += p.depth;
    return n;
  }

  /** Bytes stored, as counted against the quotas, all partitions. */
  get bytes(): number {
    let n = 0;
    for (const p of this.#partitions.values()) n += p.bytes;
    return n;
  }

  /** The byte bounds of all partitions, summed. */
  get maxBytes(): number {
    let n = 0;
    for (const p of this.#partitions.values()) n += p.maxBytes;
    return n;
  }

  /** Appends waiting for a commit. */
  get pendingCount(): number {
    return this.#rows.length;
  }

  /** Dead letters held. */
  get deadLetterCount(): number {
    return this.#deadCount;
  }

  /** Bytes of dead letters held. */
  get deadLetterBytes(): number {
    return this.#deadBytes;
  }

  /**
   * Accept time of the oldest stored message as of the last {@link refreshOldest}, or
   * `undefined` when the spool was empty then.
   */
  oldestTs(): number | undefined {
    return this.depth === 0 ? undefined : this.#oldest;
  }

  #oldest: number | undefined;

  /** Reads the accept time of the oldest stored message again (housekeeping does). */
  async refreshOldest(): Promise<number | undefined> {
    if (this.#closed) return undefined;
    this.#oldest = (await this.#host.call<number | null>({ op: "oldest" })) ?? undefined;
    return this.#oldest;
  }

  /** True while a full disk keeps the spool from taking new messages. */
  get lowSpace(): boolean {
    return this.#lowSpace;
  }

  /**
   * After a full disk: tries to put the reserve back; when it fits, the spool takes new messages
   * again. Returns true when the spool is writable.
   */
  async checkSpace(): Promise<boolean> {
    if (!this.#lowSpace || this.#closed) return !this.#lowSpace;
    await this.flush().catch(() => {});
    // Give the pages freed by deletions back to the disk (the file does not shrink by itself).
    await this.#host.call({ op: "compact" }).catch(() => {});
    if (await this.#host.call<boolean>({ op: "reserve" })) this.#lowSpace = false;
    return !this.#lowSpace;
  }

  /** Size of the file and its WAL on disk. */
  fileBytes(): number {
    let n = 0;
    for (const s of ["", "-wal"]) {
      try {
        n += Deno.statSync(this.path + s).size;
      } catch { /* absent */ }
    }
    return n;
  }

  /** Bytes of free pages inside the file (what {@link compact} would give back). */
  async freeBytes(): Promise<number> {
    if (this.#closed) return 0;
    return await this.#host.call<number>({ op: "freeBytes" });
  }

  /**
   * Calls `fn(added, ms)` after every commit (rows added, time the transaction took in the
   * store); returns the function that stops it.
   */
  onCommit(fn: (added: number, ms: number) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /**
   * Stores a message durably in each of `partitions` (default: the first); resolves with the id
   * of its first row once the transaction holding it committed. Rejects with a `RefusedError`:
   * {@link SpoolFullError} (`quota`), {@link SpoolTooLargeError} (`too_large`),
   * {@link SpoolWriteError} (`failed`: the commit failed), {@link SpoolClosedError}.
   */
  append(msg: Message, partitions?: readonly SpoolPartition[]): Promise<number> {
    if (this.#closed) return Promise.reject(new SpoolClosedError());
    if (this.#lowSpace) {
      this.stats.refused++;
      return Promise.reject(
        new SpoolWriteError(
          `Cannot spool message: the disk of ${this.path} is full; only acknowledged rows are deleted until space comes back`,
        ),
      );
    }
    const parts = partitions ?? [this.main];
    const size = recordSize(msg.topic, msg.payload);
    const device = msg.deviceId ?? null;
    try {
      for (const p of parts) p.check(size, device);
    } catch (err) {
      this.stats.refused++;
      return Promise.reject(err);
    }
    const now = this.#clock.now();
    const exp = msg.properties?.expiresAt;
    const firstId = this.#nextId;
    for (const p of parts) {
      p.reserve(size, device);
      this.#rows.push({
        part: p,
        id: this.#nextId++,
        topic: msg.topic,
        payload: msg.payload,
        qos: msg.qos,
        retain: msg.retain,
        device,
        ts: msg.ts || now,
        expires: Math.min(now + p.ttlMs, exp ?? Infinity),
        size,
      });
    }
    const p = new Promise<number>((resolve, reject) => {
      this.#waiters.push({ rows: parts.length, firstId, resolve, reject });
    });
    this.#schedule();
    return p;
  }

  /** Acknowledges a message of the first partition (see {@link SpoolPartition.ack}). */
  ack(id: number): void {
    this.main.ack(id);
  }

  /** Reads the first partition (see {@link SpoolPartition.read}). */
  read(afterId: number, limit: number): SpoolRecord[] | Promise<SpoolRecord[]> {
    return this.main.read(afterId, limit);
  }

  /** @internal */
  queueAck(id: number): void {
    if (this.#closed) return;
    this.#acks.push(id);
    this.#scheduleLazy();
  }

  /** @internal */
  queueMark(id: number, pid: number, state: number): Promise<void> {
    if (this.#closed) return Promise.reject(new SpoolClosedError());
    this.#marks.push(id, pid, state);
    const p = new Promise<void>((resolve, reject) => this.#markWaiters.push({ resolve, reject }));
    this.#schedule();
    return p;
  }

  /** @internal */
  queueDead(d: DeadMove): void {
    if (this.#closed) return;
    this.#dead.push(d);
    this.#scheduleLazy();
  }

  #schedule(): void {
    // Appends from every socket read of this turn join; while a commit is in flight they wait
    // for it and form the next group.
    if (this.#committing) return;
    if (this.#timer !== undefined) {
      if (this.#timerLazy) {
        clearTimeout(this.#timer);
        this.#timer = undefined;
      } else return;
    }
    this.#timerLazy = false;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#commit();
    }, 0);
  }

  #timerLazy = false;

  #scheduleLazy(): void {
    // Deletions need no fsync of their own: they ride along with the next append commit, or go
    // after ACK_FLUSH_MS on their own.
    if (this.#committing || this.#timer !== undefined) return;
    this.#timerLazy = true;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#commit();
    }, ACK_FLUSH_MS);
  }

  /** Commits pending appends and acknowledgements now, and waits for every commit in flight. */
  async flush(): Promise<void> {
    for (let i = 0; i < 1000; i++) {
      if (this.#timer !== undefined) {
        clearTimeout(this.#timer);
        this.#timer = undefined;
      }
      if (this.#committing) {
        await this.#committing;
        continue;
      }
      if (
        this.#rows.length === 0 && this.#acks.length === 0 && this.#dead.length === 0 &&
        this.#marks.length === 0
      ) return;
      this.#commit();
    }
  }

  #commit(): void {
    if (this.#committing) return;
    const rows = this.#rows;
    const waiters = this.#waiters;
    const acks = this.#acks;
    const dead = this.#dead;
    const marks = this.#marks;
    const markWaiters = this.#markWaiters;
    if (rows.length === 0 && acks.length === 0 && dead.length === 0 && marks.length === 0) return;
    this.#rows = [];
    this.#waiters = [];
    this.#acks = [];
    this.#dead = [];
    this.#marks = [];
    this.#markWaiters = [];
    let batch: WriteBatch | null = null;
    const transfer: Transferable[] = [];
    const evict: Evict[] = [];
    if (rows.length) {
      // Numbers and bytes in typed arrays (no per-row objects to clone); the tail
      // keeps views into the batch's own copy of the payloads (an adapter's payload may be a
      // view into a socket read buffer that is reused once the message was accepted).
      const built = toWriteBatch(rows);
      batch = built.batch;
      // Measured: transferring small buffers costs more than copying them (a detach per buffer).
      if (batch.bytes.length > 256 * 1024) {
        transfer.push(
          batch.nums.buffer as ArrayBuffer,
          batch.parts.buffer as ArrayBuffer,
          batch.ends.buffer as ArrayBuffer,
          batch.bytes.buffer as ArrayBuffer,
        );
      }
      const seen = new Set<string>();
      for (const r of rows) {
        const p = r.part;
        if (p.policy !== "drop-oldest") continue;
        if (!seen.has(p.name)) {
          seen.add(p.name);
          evict.push({ bridge: p.name, device: null, maxBytes: p.maxBytes });
        }
        const k = `${p.name}\0${r.device ?? ""}`;
        if (!seen.has(k)) {
          seen.add(k);
          evict.push({ bridge: p.name, device: r.device ?? "", maxBytes: p.maxBytesPerDevice });
        }
      }
    }
    const req = {
      op: "commit" as const,
      rows: batch,
      acks,
      dead,
      evict,
      marks,
      durable: rows.length > 0 || marks.length > 0,
      now: this.#clock.now(),
    };
    this.#committing = this.#host.call<CommitResult>(req, transfer).then(
      (res) => {
        this.#applyCommit(res, rows, waiters, acks);
        for (const d of dead) this.hiddenIds.delete(d.id); // moved, or already gone
        for (const w of markWaiters) w.resolve();
      },
      (err) => {
        this.#failCommit(err, rows, waiters, acks, dead);
        for (const w of markWaiters) w.reject(err);
      },
    ).finally(() => {
      this.#committing = undefined;
      if (this.#closed) return;
      // The next group: after this turn, so every producer woken by this commit (each device's
      // next message) joins it.
      if (this.#rows.length || this.#marks.length) this.#schedule();
      else if (this.#acks.length || this.#dead.length) this.#scheduleLazy();
    });
  }

  #applyCommit(res: CommitResult, rows: Row[], waiters: Waiter[], acks: number[]): void {
    this.stats.commits++;
    this.stats.lastCommitMs = res.ms;
    this.stats.appended += rows.length;
    for (const id of acks) this.hiddenIds.delete(id);
    this.stats.acked += res.acked.ids.length;
    this.#applyRemoved(res.acked);
    this.#applyRemoved(res.evicted, "full");
    this.#applyRemoved(res.dead);
    this.#countDead(res.dead, res.deadReasons);
    [this.#deadCount, this.#deadBytes] = res.deadTotals;
    // Rows per partition, each group in id order.
    const groups = new Map<SpoolPartition, Row[]>();
    for (const r of rows) {
      const g = groups.get(r.part);
      if (g) g.push(r);
      else groups.set(r.part, [r]);
    }
    for (const [p, g] of groups) p.committed(g);
    for (const w of waiters) w.resolve(w.firstId);
    for (const fn of this.#listeners) fn(rows.length, res.ms);
  }

  #applyRemoved(r: Removed, drop?: SpoolDropReason): void {
    if (r.ids.length === 0) return;
    const counts = new Map<string, number>();
    for (let i = 0; i < r.ids.length; i++) {
      const p = this.#partitions.get(r.bridges[i]) ?? this.configure(r.bridges[i]);
      p.removed(r.ids[i], r.devices[i], r.sizes[i]);
      counts.set(p.name, (counts.get(p.name) ?? 0) + 1);
    }
    if (!drop) return;
    for (const [name, n] of counts) {
      if (drop === "full") this.stats.droppedFull += n;
      else this.stats.droppedTtl += n;
      this.#onDrop?.(drop, n, name);
    }
  }

  #countDead(r: Removed, reasons: string[]): void {
    if (r.ids.length === 0) return;
    const counts = new Map<string, number>();
    for (let i = 0; i < r.ids.length; i++) {
      const k = `${r.bridges[i]}\0${reasons[i]}`;
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    this.stats.dead += r.ids.length;
    for (const [k, n] of counts) {
      const [bridge, reason] = k.split("\0");
      if (reason === "checksum") this.stats.quarantined += n;
      this.#onDead?.(reason, n, bridge);
    }
  }

  #failCommit(
    err: unknown,
    rows: Row[],
    waiters: Waiter[],
    acks: number[],
    dead: DeadMove[],
  ): void {
    this.stats.commitFailures++;
    for (const r of rows) r.part.release(r.size, r.device);
    const e = new SpoolWriteError(
      `Cannot commit to spool ${this.path}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
    for (const w of waiters) w.reject(e);
    this.stats.refused += waiters.length;
    // Acknowledgements and dead-letter moves are tried again with the next commit.
    this.#acks = acks.concat(this.#acks);
    this.#dead = dead.concat(this.#dead);
    // A full disk: stop trying to append (each attempt would fail the same way) and let the
    // deletions use the released reserve, until housekeeping finds space again.
    if (/full|I\/O error|reserve released/i.test(e.message)) this.#lowSpace = true;
    this.#onWriteError?.(e, waiters.length);
  }

  /** @internal Reads a partition's rows from the file. */
  async readFile(
    part: SpoolPartition,
    afterId: number,
    limit: number,
    now: number,
  ): Promise<SpoolRecord[]> {
    if (this.#closed) return [];
    const res = await this.#host.call<ReadResult>({
      op: "read",
      bridge: part.name,
      afterId,
      limit,
      now,
    });
    this.#applyRemoved(res.expired, "ttl");
    this.#applyRemoved(res.quarantined);
    this.#countDead(res.quarantined, res.quarantined.ids.map(() => "checksum"));
    [this.#deadCount, this.#deadBytes] = res.deadTotals;
    const out = unpack(res.rows);
    return out.filter((r) => !this.hiddenIds.has(r.id));
  }

  /**
   * Deletes expired messages (the TTL, or an earlier message expiry). Returns how many were
   * dropped.
   */
  async expire(): Promise<number> {
    if (this.#closed) return 0;
    let total = 0;
    for (let round = 0; round < 100; round++) {
      const r = await this.#host.call<Removed>({
        op: "expire",
        now: this.#clock.now(),
        limit: 10_000,
      });
      this.#applyRemoved(r, "ttl");
      total += r.ids.length;
      if (r.ids.length < 10_000) break;
    }
    return total;
  }

  /**
   * Gives free pages back to the file system and truncates the WAL, when the spool is empty (a
   * backlog drained). Returns true when it compacted.
   */
  async compact(): Promise<boolean> {
    if (this.#closed || this.depth !== 0 || this.#rows.length) return false;
    await this.flush();
    return await this.#host.call<boolean>({ op: "compact" });
  }

  /** Lists dead letters (oldest first), of one bridge or all. */
  async listDeadLetters(
    options: { bridge?: string; afterId?: number; limit?: number } = {},
  ): Promise<DeadLetter[]> {
    if (this.#closed) return [];
    await this.#deadAdding;
    await this.flush();
    const rows = await this.#host.call<DeadRow[]>({
      op: "deadList",
      bridge: options.bridge ?? null,
      afterId: options.afterId ?? 0,
      limit: Math.min(options.limit ?? 100, 10_000),
    });
    return rows.map((r) => ({
      id: r.id,
      bridge: r.bridge,
      topic: r.topic,
      payload: r.payload,
      qos: r.qos as QoS,
      retain: r.retain,
      deviceId: r.device ?? undefined,
      ts: r.ts,
      reason: r.reason,
      detail: r.detail ?? undefined,
      deadAt: r.deadAt,
    }));
  }

  /**
   * Puts dead letters back at the tail of their partition (with new ids; quotas are not applied:
   * this is an operator's decision). Letters of a partition that no longer exists stay. Returns
   * how many went back.
   */
  async retryDeadLetters(ids: number[]): Promise<number> {
    if (this.#closed || ids.length === 0) return 0;
    await this.flush();
    const firstId = this.#nextId;
    this.#nextId += ids.length;
    const ttlMs: Record<string, number> = {};
    for (const p of this.#partitions.values()) ttlMs[p.name] = p.ttlMs;
    const res = await this.#host.call<
      { rows: RowBatch; skipped: number; deadTotals: [number, number] }
    >({
      op: "deadRetry",
      ids,
      firstId,
      bridges: [...this.#partitions.keys()],
      ttlMs,
      now: this.#clock.now(),
    });
    [this.#deadCount, this.#deadBytes] = res.deadTotals;
    const recs = unpack(res.rows);
    const byPart = new Map<SpoolPartition, Row[]>();
    for (let i = 0; i < recs.length; i++) {
      const p = this.#partitions.get(res.rows.bridges[i])!;
      const list = byPart.get(p) ?? [];
      byPart.set(p, list);
      const r = recs[i];
      list.push({
        part: p,
        id: r.id,
        topic: r.topic,
        payload: r.payload,
        qos: r.qos,
        retain: r.retain,
        device: r.deviceId ?? null,
        ts: r.ts,
        expires: r.expires,
        size: res.rows.sizes[i],
      });
    }
    for (const [p, list] of byPart) p.restored(list);
    return recs.length;
  }

  /** Deletes dead letters for good; returns how many were deleted. */
  async deleteDeadLetters(ids: number[]): Promise<number> {
    if (this.#closed || ids.length === 0) return 0;
    const r = await this.#host.call<{ deleted: number; deadTotals: [number, number] }>({
      op: "deadDelete",
      ids,
    });
    [this.#deadCount, this.#deadBytes] = r.deadTotals;
    return r.deleted;
  }

  /**
   * Adds messages that were never spooled (a rule failed on them) to the dead letters, under
   * `bridge` (a name of the caller's choosing: `rule:{name}` for rules; a letter whose bridge is
   * no partition is listed and deleted like any other, and a retry leaves it). Letters of one
   * event-loop turn share one transaction; at most 10,000 wait at once (more are refused with a
   * RangeError). Resolves to the letter's id once it is committed.
   */
  addDeadLetter(letter: {
    bridge: string;
    message: Message;
    reason: string;
    detail?: string;
  }): Promise<number> {
    if (this.#closed) return Promise.reject(new SpoolClosedError());
    if (this.#deadNew.length >= 10_000) {
      return Promise.reject(
        new RangeError("Cannot add a dead letter: 10000 are already waiting for their commit"),
      );
    }
    const m = letter.message;
    const id = this.#nextId++;
    const { promise, resolve, reject } = Promise.withResolvers<number>();
    this.#deadNew.push({
      row: {
        id,
        bridge: letter.bridge,
        topic: m.topic,
        payload: m.payload.slice(),
        qos: m.qos,
        retain: m.retain,
        device: m.deviceId ?? null,
        ts: m.ts,
        reason: letter.reason,
        detail: letter.detail ?? null,
        deadAt: this.#clock.now(),
        size: recordSize(m.topic, m.payload),
      },
      resolve,
      reject,
    });
    if (this.#deadNew.length === 1) {
      setTimeout(() => {
        this.#deadAdding = this.#deadAdding.then(() => this.#addDead());
      }, 0);
    }
    return promise;
  }

  #deadAdding: Promise<void> = Promise.resolve();
  #deadNew: Array<{ row: DeadRow; resolve: (id: number) => void; reject: (e: unknown) => void }> =
    [];

  async #addDead(): Promise<void> {
    const batch = this.#deadNew;
    this.#deadNew = [];
    if (batch.length === 0) return;
    try {
      const r = await this.#host.call<{ dropped: number; deadTotals: [number, number] }>({
        op: "deadAdd",
        letters: batch.map((b) => b.row),
      });
      [this.#deadCount, this.#deadBytes] = r.deadTotals;
      this.stats.dead += batch.length;
      const counts = new Map<string, number>();
      for (const { row } of batch) {
        const k = `${row.bridge}\0${row.reason}`;
        counts.set(k, (counts.get(k) ?? 0) + 1);
      }
      for (const [k, n] of counts) {
        const [bridge, reason] = k.split("\0");
        this.#onDead?.(reason, n, bridge);
      }
      for (const b of batch) b.resolve(b.row.id);
    } catch (err) {
      for (const b of batch) b.reject(err);
    }
  }

  /** Commits what is pending and closes the file. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return await this.#closing;
    this.#closing = (async () => {
      await this.#deadAdding;
      await this.#addDead();
      try {
        await this.flush();
      } catch { /* reported per batch */ }
      this.#closed = true;
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      this.#timer = undefined;
      for (const w of this.#waiters.splice(0)) w.reject(new SpoolClosedError());
      this.#listeners.clear();
      try {
        await this.#host.call({ op: "close" });
      } catch { /* best effort */ }
      this.#host.terminate();
    })();
    this.#closed = true;
    await this.#closing;
  }

  #closing: Promise<void> | undefined;

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

const utf8 = new TextEncoder();

/**
 * The rows of one commit as a {@link WriteBatch}; each row's payload is replaced by a view into
 * a copy the spool owns (the batch's bytes are transferred to the writer).
 */
function toWriteBatch(rows: Row[]): { batch: WriteBatch } {
  const n = rows.length;
  let cap = 0;
  for (const r of rows) cap += r.topic.length * 3 + (r.device?.length ?? 0) * 3 + r.payload.length;
  const bytes = new Uint8Array(cap);
  const own = new Uint8Array(rows.reduce((a, r) => a + r.payload.length, 0));
  const nums = new Float64Array(n * 7);
  const parts = new Uint16Array(n);
  const ends = new Uint32Array(n * 3);
  const names: string[] = [];
  const index = new Map<SpoolPartition, number>();
  let o = 0;
  let p = 0;
  for (let i = 0; i < n; i++) {
    const r = rows[i];
    let k = index.get(r.part);
    if (k === undefined) {
      index.set(r.part, k = names.length);
      names.push(r.part.name);
    }
    parts[i] = k;
    nums[i * 7] = r.id;
    nums[i * 7 + 1] = r.qos;
    nums[i * 7 + 2] = r.retain ? 1 : 0;
    nums[i * 7 + 3] = r.ts;
    nums[i * 7 + 4] = r.expires;
    nums[i * 7 + 5] = r.size;
    nums[i * 7 + 6] = r.device === null ? -1 : r.device.length;
    o += utf8.encodeInto(r.topic, bytes.subarray(o)).written;
    ends[i * 3] = o;
    if (r.device !== null) o += utf8.encodeInto(r.device, bytes.subarray(o)).written;
    ends[i * 3 + 1] = o;
    bytes.set(r.payload, o);
    o += r.payload.length;
    ends[i * 3 + 2] = o;
    own.set(r.payload, p);
    r.payload = own.subarray(p, p + r.payload.length);
    p += r.payload.length;
  }
  return { batch: { n, nums, parts, bridgeNames: names, ends, bytes } };
}

function unpack(r: ReadRows | RowBatch): SpoolRecord[] {
  const out: SpoolRecord[] = new Array(r.ids.length);
  const pids = "pids" in r ? r.pids : undefined;
  const states = "states" in r ? r.states : undefined;
  let start = 0;
  for (let i = 0; i < r.ids.length; i++) {
    const pid = pids?.[i] || undefined;
    out[i] = {
      ...(pid ? { pid, qos2: states![i] as 1 | 2 } : {}),
      id: r.ids[i],
      topic: r.topics[i],
      payload: r.payloads.slice(start, r.ends[i]),
      qos: r.qos[i] as QoS,
      retain: r.retain[i] === 1,
      deviceId: r.devices[i] ?? undefined,
      ts: r.ts[i],
      expires: r.expires[i],
    };
    start = r.ends[i];
  }
  return out;
}

function openError(path: string, err: unknown): Error {
  const kind = err instanceof StoreFailure ? err.kind : "io";
  const detail = err instanceof Error ? err.message : String(err);
  if (kind === "corrupt") {
    return new SpoolCorruptError(
      `Cannot open spool ${path}: the file is corrupt (${detail}); it was left in place. Move it aside to keep it for recovery, or start with spool.onCorrupt "set-aside" to rename it and start with an empty spool.`,
      path,
      { cause: err },
    );
  }
  return new SpoolIoError(
    `Cannot open spool ${path}: ${
      describeIoFailure(err, path)
    } (${detail}); the file was left untouched. Free space or fix the disk or its permissions, then start again.`,
    path,
    { cause: err },
  );
}
