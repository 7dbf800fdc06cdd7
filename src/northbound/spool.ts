/**
 * The durable store-and-forward spool of the northbound bridge: an embedded SQLite file (Deno's
 * built-in `node:sqlite`, no server) holding every message bound upstream until the upstream
 * broker acknowledged it.
 *
 * - **Order**: the `INTEGER PRIMARY KEY AUTOINCREMENT` id is the global order (ids are never
 *   reused, so a late PUBACK can never delete a newer row that took a dropped row's id).
 * - **Durability**: `journal_mode=WAL` with `synchronous=FULL` by default: every commit fsyncs the
 *   WAL, so a transaction that returned survives power loss, not only a process crash. (With
 *   `NORMAL` a WAL commit is only fsynced at checkpoints: it survives `kill -9` but the last
 *   transactions may roll back on power loss, which would break "acknowledged means durable".)
 * - **Group commit**: {@link Spool.append} queues the row and resolves only after the transaction
 *   holding it committed; every append that arrives before the next macrotask shares one
 *   transaction and one fsync.
 * - **Bounds**: by bytes (`maxBytes`, with the `drop-oldest` or `refuse-new` policy) and age
 *   (`ttlSec`); every drop is counted by reason.
 * - **Shrinking**: `auto_vacuum=INCREMENTAL`; once a backlog drained the free pages are returned
 *   and the WAL truncated ({@link Spool.compact}).
 * - **Corruption**: the file is checked (`PRAGMA quick_check`) on open; a corrupt or unreadable
 *   file raises {@link SpoolCorruptError} and is left in place, or, only when asked
 *   (`onCorrupt: "set-aside"`), renamed to `<file>.corrupt-<time>` before starting empty.
 *
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";
import { openSqlite, setAside } from "../persistence/sqlite_file.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import type { Message, QoS } from "../core/message.ts";
import { RefusedError } from "../core/refusal.ts";

/** What to do when an append would exceed `maxBytes`. */
export type SpoolFullPolicy = "drop-oldest" | "refuse-new";

/** Tunables of {@link Spool}. */
export interface SpoolOptions {
  /** Largest sum of stored message sizes (topic + payload + 32 bytes each). @default 268435456 */
  maxBytes?: number;
  /** Seconds a message may wait for the upstream before it is dropped. @default 604800 */
  ttlSec?: number;
  /** Policy when full. @default "drop-oldest" */
  fullPolicy?: SpoolFullPolicy;
  /** SQLite `synchronous` level: `full` survives power loss, `normal` only crashes. @default "full" */
  synchronous?: "full" | "normal";
  /** On a corrupt file: `fail` (leave it, throw) or `set-aside` (rename it, start empty). @default "fail" */
  onCorrupt?: "fail" | "set-aside";
  /** Time source for `ts`/`expires` and ages. @default systemClock */
  clock?: Clock;
  /** Called after each drop with the reason and count (metrics). */
  onDrop?: (reason: SpoolDropReason, count: number) => void;
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
}

/** An append refused because the spool is full and the policy is `refuse-new`. */
export class SpoolFullError extends RefusedError {
  override name = "SpoolFullError";
  /** Creates the error. */
  constructor(message: string) {
    super("quota", message);
  }
}

/** The spool file is corrupt or unreadable. */
export class SpoolCorruptError extends Error {
  override name = "SpoolCorruptError";
  /** The file concerned. */
  readonly path: string;
  /** Creates the error. */
  constructor(message: string, path: string, options?: ErrorOptions) {
    super(message, options);
    this.path = path;
  }
}

/** A commit failed (disk full, I/O error): the appends of that batch are not durable. */
export class SpoolWriteError extends Error {
  override name = "SpoolWriteError";
}

/** The spool was closed. */
export class SpoolClosedError extends Error {
  override name = "SpoolClosedError";
  /** Creates the error. */
  constructor() {
    super("Cannot append: the spool is closed");
  }
}

const OVERHEAD = 32;
const RECENT_MAX_ROWS = 65_536;
const ACK_FLUSH_MS = 20;
const RECENT_MAX_BYTES = 32 * 1024 * 1024;
const encoder = new TextEncoder();

interface Pending {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  deviceId: string | null;
  ts: number;
  expires: number;
  size: number;
  resolve: (id: number) => void;
  reject: (e: unknown) => void;
}

/** Sizes of a record as counted against `maxBytes`. */
export function recordSize(topic: string, payload: Uint8Array): number {
  return encoder.encode(topic).length + payload.length + OVERHEAD;
}

/**
 * A durable, bounded, ordered message spool on SQLite.
 *
 * @example
 * ```ts
 * import { Spool } from "./spool.ts";
 * import { createMessage } from "../core/message.ts";
 * const dir = await Deno.makeTempDir();
 * const spool = Spool.open(`${dir}/spool.db`);
 * const id = await spool.append(createMessage({ topic: "devices/a/telemetry", payload: new Uint8Array([1]) }));
 * const [rec] = spool.read(0, 10);
 * if (rec.id !== id || rec.payload[0] !== 1 || spool.depth !== 1) throw new Error();
 * spool.ack(id);
 * spool.flush();
 * if (spool.read(0, 10).length !== 0) throw new Error();
 * spool.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class Spool implements Disposable {
  /** The file. */
  readonly path: string;
  #db: DatabaseSync;
  #clock: Clock;
  #maxBytes: number;
  #ttlMs: number;
  #policy: SpoolFullPolicy;
  #onDrop?: (reason: SpoolDropReason, count: number) => void;
  #insert: StatementSync;
  #delete: StatementSync;
  #readAfter: StatementSync;
  #head: StatementSync;
  #pending: Pending[] = [];
  #pendingBytes = 0;
  #acked: number[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerIsLazy = false;
  #sync: "FULL" | "NORMAL";
  #depth = 0;
  #bytes = 0;
  #closed = false;
  #listeners = new Set<(added: number, ms: number) => void>();
  #setAside: string | undefined;
  // Recently committed rows, in id order: every live row with id >= #memFrom is here, so the
  // bridge reads a live stream without SQL. Bounded; dropped (and #memFrom raised) from the front.
  #recent: Array<SpoolRecord & { size: number }> = [];
  #recentHead = 0;
  #recentBytes = 0;
  #recentAcked = new Set<number>();
  #memFrom = 0;
  /** Counters since open. */
  readonly stats = {
    appended: 0,
    acked: 0,
    refused: 0,
    droppedFull: 0,
    droppedTtl: 0,
    commits: 0,
    lastCommitMs: 0,
  };

  private constructor(path: string, db: DatabaseSync, options: SpoolOptions) {
    this.path = path;
    this.#db = db;
    this.#clock = options.clock ?? systemClock;
    this.#maxBytes = options.maxBytes ?? 256 * 1024 * 1024;
    this.#ttlMs = (options.ttlSec ?? 604_800) * 1000;
    this.#policy = options.fullPolicy ?? "drop-oldest";
    this.#onDrop = options.onDrop;
    this.#sync = options.synchronous === "normal" ? "NORMAL" : "FULL";
    if (!(this.#maxBytes > 0)) throw new RangeError("Cannot open spool: maxBytes must be > 0");
    if (!(this.#ttlMs > 0)) throw new RangeError("Cannot open spool: ttlSec must be > 0");
    if (this.#policy !== "drop-oldest" && this.#policy !== "refuse-new") {
      throw new RangeError(`Cannot open spool: unknown fullPolicy "${this.#policy}"`);
    }
    this.#insert = db.prepare(
      "INSERT INTO spool(topic, payload, qos, retain, device, ts, expires, size) VALUES (?,?,?,?,?,?,?,?)",
    );
    this.#delete = db.prepare("DELETE FROM spool WHERE id = ? RETURNING size");
    this.#readAfter = db.prepare(
      "SELECT id, topic, payload, qos, retain, device, ts, expires FROM spool WHERE id > ? ORDER BY id LIMIT ?",
    );
    this.#head = db.prepare("SELECT id, size, expires, ts FROM spool ORDER BY id LIMIT ?");
    const row = db.prepare("SELECT count(*) AS n, coalesce(sum(size), 0) AS b FROM spool")
      .get() as {
        n: number;
        b: number;
      };
    this.#depth = row.n;
    this.#bytes = row.b;
    const seq = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'spool'").get() as
      | { seq: number }
      | undefined;
    this.#memFrom = (seq?.seq ?? 0) + 1;
  }

  /**
   * Opens (or creates) the spool at `path`, checking its integrity. Throws
   * {@link SpoolCorruptError} for a corrupt or unreadable file unless `onCorrupt` is `set-aside`.
   */
  static open(path: string, options: SpoolOptions = {}): Spool {
    try {
      return new Spool(path, openChecked(path, options), options);
    } catch (err) {
      if (!(err instanceof SpoolCorruptError) || options.onCorrupt !== "set-aside") throw err;
      const aside = setAside(path);
      const fresh = new Spool(path, openChecked(path, options), options);
      fresh.#setAside = aside;
      return fresh;
    }
  }

  /** Where a corrupt file was moved, when `onCorrupt: "set-aside"` had to act. */
  get setAside(): string | undefined {
    return this.#setAside;
  }

  /** Messages stored (committed, not yet acknowledged upstream). */
  get depth(): number {
    return this.#depth;
  }

  /** Bytes stored, as counted against `maxBytes`. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The configured byte bound. */
  get maxBytes(): number {
    return this.#maxBytes;
  }

  /** Appends waiting for the next group commit. */
  get pendingCount(): number {
    return this.#pending.length;
  }

  /** Accept time of the oldest stored message, or `undefined` when empty. */
  oldestTs(): number | undefined {
    if (this.#closed || this.#depth === 0) return undefined;
    const r = this.#head.all(1)[0] as { ts: number } | undefined;
    return r?.ts;
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
  freeBytes(): number {
    if (this.#closed) return 0;
    const f = this.#db.prepare("PRAGMA freelist_count").get() as { freelist_count: number };
    const p = this.#db.prepare("PRAGMA page_size").get() as { page_size: number };
    return f.freelist_count * p.page_size;
  }

  /**
   * Calls `fn(added, ms)` after every commit (rows added, time the transaction took); returns the
   * function that stops it.
   */
  onCommit(fn: (added: number, ms: number) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /**
   * Stores a message durably; resolves with its id once the transaction holding it committed.
   * Rejects with {@link SpoolFullError} when full under `refuse-new`, {@link SpoolWriteError}
   * when the commit failed.
   */
  append(msg: Message): Promise<number> {
    if (this.#closed) return Promise.reject(new SpoolClosedError());
    const size = recordSize(msg.topic, msg.payload);
    if (size > this.#maxBytes) {
      this.stats.refused++;
      return Promise.reject(
        new SpoolFullError(
          `Cannot spool message: ${size} bytes exceed the spool's ${this.#maxBytes} byte limit`,
        ),
      );
    }
    if (
      this.#policy === "refuse-new" && this.#bytes + this.#pendingBytes + size > this.#maxBytes
    ) {
      this.stats.refused++;
      return Promise.reject(
        new SpoolFullError(
          `Cannot spool message: the spool is full (${this.#bytes} of ${this.#maxBytes} bytes, policy refuse-new)`,
        ),
      );
    }
    const now = this.#clock.now();
    const exp = msg.properties?.expiresAt;
    return new Promise<number>((resolve, reject) => {
      this.#pending.push({
        topic: msg.topic,
        payload: msg.payload,
        qos: msg.qos,
        retain: msg.retain,
        deviceId: msg.deviceId ?? null,
        ts: msg.ts || now,
        expires: Math.min(now + this.#ttlMs, exp ?? Infinity),
        size,
        resolve,
        reject,
      });
      this.#pendingBytes += size;
      this.#schedule();
    });
  }

  /** Marks a message acknowledged upstream; it is deleted with the next commit. */
  ack(id: number): void {
    if (this.#closed) return;
    this.#acked.push(id);
    // The in-memory tail skips it at once; the row itself goes with the next commit.
    if (id >= this.#memFrom) this.#recentAcked.add(id);
    if (this.#pending.length === 0) this.#scheduleAcks();
  }

  #schedule(): void {
    // The next macrotask: appends from every socket read in this turn share one transaction.
    if (this.#timer !== undefined && this.#timerIsLazy) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#timerIsLazy = false;
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.flush();
    }, 0);
  }

  #scheduleAcks(): void {
    // Deletions need no fsync of their own (losing one only means a duplicate after a crash):
    // they ride along with the next append commit, or go after ACK_FLUSH_MS on their own.
    if (this.#timer !== undefined) return;
    this.#timerIsLazy = true;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.flush();
    }, ACK_FLUSH_MS);
  }

  /** Commits pending appends and acknowledgements now (normally done by the group commit). */
  flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#timerIsLazy = false;
    if (this.#closed || (this.#pending.length === 0 && this.#acked.length === 0)) return;
    const batch = this.#pending;
    const acked = this.#acked;
    this.#pending = [];
    this.#acked = [];
    this.#pendingBytes = 0;
    const ids: number[] = new Array(batch.length);
    let freed = 0;
    let removed = 0;
    let droppedFull = 0;
    let freedFull = 0;
    const t0 = performance.now();
    // An ack-only transaction needs no fsync: a later FULL commit's fsync covers its WAL frames,
    // and losing it in a power cut only means those rows are sent again.
    const ackOnly = batch.length === 0 && this.#sync === "FULL";
    try {
      if (ackOnly) this.#db.exec("PRAGMA synchronous = NORMAL");
      this.#db.exec("BEGIN IMMEDIATE");
      for (const id of acked) {
        const r = this.#delete.get(id) as { size: number } | undefined;
        if (r) {
          freed += r.size;
          removed++;
          if (id >= this.#memFrom) this.#recentAcked.add(id);
        }
      }
      let added = 0;
      for (let i = 0; i < batch.length; i++) {
        const p = batch[i];
        const r = this.#insert.run(
          p.topic,
          p.payload,
          p.qos,
          p.retain ? 1 : 0,
          p.deviceId,
          p.ts,
          p.expires,
          p.size,
        );
        ids[i] = Number(r.lastInsertRowid);
        added += p.size;
      }
      let bytes = this.#bytes - freed + added;
      if (bytes > this.#maxBytes) { // drop-oldest (refuse-new never gets here)
        while (bytes > this.#maxBytes) {
          const rows = this.#head.all(256) as Array<{ id: number; size: number }>;
          if (rows.length === 0) break;
          for (const r of rows) {
            if (bytes <= this.#maxBytes) break;
            this.#delete.get(r.id);
            bytes -= r.size;
            freedFull += r.size;
            droppedFull++;
          }
        }
      }
      this.#db.exec("COMMIT");
      if (ackOnly) this.#db.exec("PRAGMA synchronous = FULL");
    } catch (err) {
      try {
        this.#db.exec("ROLLBACK");
      } catch { /* no transaction left */ }
      if (ackOnly) this.#db.exec("PRAGMA synchronous = FULL");
      this.#forgetRecent();
      const e = new SpoolWriteError(`Cannot commit to spool ${this.path}: ${errMessage(err)}`, {
        cause: err,
      });
      for (const p of batch) p.reject(e);
      // Acks are only an optimisation: the rows will be resent (duplicates, never losses).
      return;
    }
    this.stats.commits++;
    this.stats.lastCommitMs = performance.now() - t0;
    this.stats.acked += removed;
    this.stats.appended += batch.length;
    let added = 0;
    for (const p of batch) added += p.size;
    this.#depth += batch.length - removed - droppedFull;
    this.#bytes += added - freed - freedFull;
    if (droppedFull) {
      this.stats.droppedFull += droppedFull;
      this.#onDrop?.("full", droppedFull);
    }
    if (droppedFull) {
      this.#forgetRecent();
      if (ids.length) this.#memFrom = Math.max(this.#memFrom, ids[ids.length - 1] + 1);
    }
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i];
      if (!droppedFull) {
        this.#recent.push({
          id: ids[i],
          topic: p.topic,
          payload: p.payload,
          qos: p.qos,
          retain: p.retain,
          deviceId: p.deviceId ?? undefined,
          ts: p.ts,
          expires: p.expires,
          size: p.size,
        });
        this.#recentBytes += p.size;
      }
      p.resolve(ids[i]);
    }
    this.#trimRecent();
    for (const fn of this.#listeners) fn(batch.length, this.stats.lastCommitMs);
  }

  #forgetRecent(): void {
    // Rows were deleted behind the cache's back (drop-oldest, TTL): read from SQL from now on.
    const last = this.#recent.at(-1);
    if (last && last.id >= this.#memFrom) this.#memFrom = last.id + 1;
    this.#recent = [];
    this.#recentHead = 0;
    this.#recentBytes = 0;
    this.#recentAcked.clear();
  }

  #trimRecent(): void {
    const r = this.#recent;
    // Acknowledged rows at the front leave first.
    while (this.#recentHead < r.length && this.#recentAcked.has(r[this.#recentHead].id)) {
      this.#recentAcked.delete(r[this.#recentHead].id);
      this.#recentBytes -= r[this.#recentHead].size;
      this.#recentHead++;
    }
    while (
      this.#recentHead < r.length &&
      (r.length - this.#recentHead > RECENT_MAX_ROWS || this.#recentBytes > RECENT_MAX_BYTES)
    ) {
      const x = r[this.#recentHead++];
      this.#recentBytes -= x.size;
      this.#recentAcked.delete(x.id);
      this.#memFrom = x.id + 1;
    }
    if (this.#recentHead === r.length) {
      this.#recent = [];
      this.#recentHead = 0;
    } else if (this.#recentHead > 4096 && this.#recentHead * 2 > r.length) {
      this.#recent = r.slice(this.#recentHead);
      this.#recentHead = 0;
    }
  }

  #readRecent(afterId: number, limit: number, now: number): SpoolRecord[] | undefined {
    if (afterId + 1 < this.#memFrom) return undefined;
    const r = this.#recent;
    let lo = this.#recentHead;
    let hi = r.length;
    while (lo < hi) { // first index with id > afterId
      const mid = (lo + hi) >>> 1;
      if (r[mid].id <= afterId) lo = mid + 1;
      else hi = mid;
    }
    const out: SpoolRecord[] = [];
    for (let i = lo; i < r.length && out.length < limit; i++) {
      const x = r[i];
      if (this.#recentAcked.has(x.id)) continue;
      if (x.expires <= now) return undefined; // let the SQL path drop and count it
      out.push(x);
    }
    return out;
  }

  /**
   * Up to `limit` stored messages with an id above `afterId`, oldest first, never one already
   * acknowledged. Expired ones met on the way are deleted and counted (reason `ttl`).
   */
  read(afterId: number, limit: number): SpoolRecord[] {
    if (this.#closed) return [];
    const now = this.#clock.now();
    const mem = this.#readRecent(afterId, limit, now);
    if (mem) return mem;
    if (this.#acked.length) this.flush(); // SQL must not see acknowledged rows again
    const rows = this.#readAfter.all(afterId, limit) as Array<{
      id: number;
      topic: string;
      payload: Uint8Array;
      qos: number;
      retain: number;
      device: string | null;
      ts: number;
      expires: number;
    }>;
    const out: SpoolRecord[] = [];
    let expired: number[] | undefined;
    for (const r of rows) {
      if (r.expires <= now) {
        (expired ??= []).push(r.id);
        continue;
      }
      out.push({
        id: r.id,
        topic: r.topic,
        payload: r.payload,
        qos: r.qos as QoS,
        retain: r.retain === 1,
        deviceId: r.device ?? undefined,
        ts: r.ts,
        expires: r.expires,
      });
    }
    if (expired) this.#dropExpired(expired);
    return out;
  }

  #dropExpired(ids: number[]): void {
    let n = 0;
    let freed = 0;
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      for (const id of ids) {
        const r = this.#delete.get(id) as { size: number } | undefined;
        if (r) {
          n++;
          freed += r.size;
        }
      }
      this.#db.exec("COMMIT");
    } catch (err) {
      try {
        this.#db.exec("ROLLBACK");
      } catch { /* none */ }
      throw err;
    }
    this.#depth -= n;
    this.#bytes -= freed;
    if (n) {
      this.#forgetRecent();
      this.stats.droppedTtl += n;
      this.#onDrop?.("ttl", n);
    }
  }

  /**
   * Deletes expired messages from the head of the spool (ids grow with accept time, so the
   * expired ones are at the head; a message with its own shorter expiry further in is dropped
   * when {@link read} meets it). Returns how many were dropped.
   */
  expire(): number {
    if (this.#closed) return 0;
    const now = this.#clock.now();
    let total = 0;
    for (let round = 0; round < 1000; round++) {
      const rows = this.#head.all(1024) as Array<{ id: number; expires: number }>;
      const ids: number[] = [];
      for (const r of rows) {
        if (r.expires > now) break;
        ids.push(r.id);
      }
      if (ids.length === 0) break;
      this.#dropExpired(ids);
      total += ids.length;
      if (ids.length < rows.length) break;
    }
    return total;
  }

  /**
   * Gives free pages back to the file system and truncates the WAL, when the spool is empty (a
   * backlog drained). Returns true when it compacted.
   */
  compact(): boolean {
    if (this.#closed || this.#depth !== 0 || this.#pending.length) return false;
    this.flush();
    this.#db.prepare("PRAGMA incremental_vacuum").all();
    this.#db.prepare("PRAGMA wal_checkpoint(TRUNCATE)").all();
    return true;
  }

  /** Commits what is pending and closes the file. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.flush();
    this.#closed = true;
    for (const p of this.#pending.splice(0)) p.reject(new SpoolClosedError());
    this.#listeners.clear();
    try {
      this.#db.prepare("PRAGMA wal_checkpoint(TRUNCATE)").all();
    } catch { /* best effort */ }
    this.#db.close();
  }

  /** Same as {@link close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function openChecked(path: string, options: SpoolOptions): DatabaseSync {
  let db: DatabaseSync | undefined;
  try {
    db = openSqlite(path, {
      synchronous: options.synchronous,
      // auto_vacuum only takes effect on a new file, before the first table: set it first.
      first: ["PRAGMA auto_vacuum = INCREMENTAL"],
    });
    db.exec(`CREATE TABLE IF NOT EXISTS spool (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      topic TEXT NOT NULL,
      payload BLOB NOT NULL,
      qos INTEGER NOT NULL,
      retain INTEGER NOT NULL,
      device TEXT,
      ts INTEGER NOT NULL,
      expires INTEGER NOT NULL,
      size INTEGER NOT NULL
    )`);
    const cols = db.prepare("PRAGMA table_info(spool)").all() as Array<{ name: string }>;
    const want = ["id", "topic", "payload", "qos", "retain", "device", "ts", "expires", "size"];
    if (cols.map((c) => c.name).join() !== want.join()) {
      throw new Error(`table spool has columns ${cols.map((c) => c.name).join(", ")}`);
    }
    return db;
  } catch (err) {
    try {
      db?.close();
    } catch { /* not open */ }
    if (err instanceof Deno.errors.PermissionDenied) throw err;
    throw new SpoolCorruptError(
      `Cannot open spool ${path}: the file is corrupt or unreadable (${
        errMessage(err)
      }); it was left in place. Move it aside to keep it for recovery, or start with spool.onCorrupt "set-aside" to rename it and start with an empty spool.`,
      path,
      { cause: err },
    );
  }
}
