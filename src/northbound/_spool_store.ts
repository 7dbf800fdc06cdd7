/**
 * The SQL side of the spool: everything that touches the SQLite file, as one synchronous object
 * that runs either in a Worker (the default: fsync and SQL off the main thread) or inline.
 *
 * {@link spoolStoreFactory} is self-contained on purpose: the worker is started from its source
 * text (`fn.toString()`), so it works the same from `deno run`, `deno compile` and `deno bundle`
 * output. It may reference types from outside, never values.
 *
 * Per row: a CRC-32 over its fields, verified whenever a row is read back from the file (a bad
 * row is moved to `dead_letters` with reason `checksum`, and counted). Beside the file, a small
 * high-water-mark file (`<spool>.hwm`, written and fdatasynced after the commits that added rows,
 * off their path) records the highest id ever committed: a start that finds the file's ids below
 * it reports the acknowledged messages that went missing (a damaged or deleted WAL).
 *
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";

/** Rows to insert, column by column; payloads packed into one buffer. */
export interface RowBatch {
  ids: number[];
  bridges: string[];
  topics: string[];
  /** All payloads, back to back. */
  payloads: Uint8Array;
  /** End offset of each payload in `payloads`. */
  ends: number[];
  qos: number[];
  retain: number[];
  devices: (string | null)[];
  ts: number[];
  expires: number[];
  sizes: number[];
}

/**
 * Rows to insert as posted to the writer: numbers and bytes in transferable typed arrays (no
 * per-row objects to clone on the main thread).
 */
export interface WriteBatch {
  /** Rows. */
  n: number;
  /** Per row: id, qos, retain, ts, expires, size, device string length (-1: none). */
  nums: Float64Array;
  /** Per row: index into `bridgeNames`. */
  parts: Uint16Array;
  /** Partition names. */
  bridgeNames: string[];
  /** Per row: end of its topic, of its device, of its payload in `bytes` (UTF-8; back to back). */
  ends: Uint32Array;
  /** Topic, device, payload of every row. */
  bytes: Uint8Array;
}

/** Rows that left the spool, column by column. */
export interface Removed {
  ids: number[];
  bridges: string[];
  devices: (string | null)[];
  sizes: number[];
}

/** Rows read back, column by column (payloads packed). */
export interface ReadRows {
  /** QoS 2 packet id and state (0: none). */
  pids: number[];
  states: number[];
  ids: number[];
  topics: string[];
  payloads: Uint8Array;
  ends: number[];
  qos: number[];
  retain: number[];
  devices: (string | null)[];
  ts: number[];
  expires: number[];
  sizes: number[];
}

/** A row to move to the dead letters. */
export interface DeadMove {
  id: number;
  reason: string;
  detail: string;
}

/** Keep a partition (or one device's rows in it) within `maxBytes` by deleting its oldest rows. */
export interface Evict {
  bridge: string;
  device: string | null;
  maxBytes: number;
}

/** One dead letter as listed. */
export interface DeadRow {
  id: number;
  bridge: string;
  topic: string;
  payload: Uint8Array;
  qos: number;
  retain: boolean;
  device: string | null;
  ts: number;
  reason: string;
  detail: string | null;
  deadAt: number;
  size: number;
}

/** Requests the store answers. */
export type StoreRequest =
  | {
    op: "open";
    path: string;
    synchronous: "full" | "normal";
    autoCheckpointPages: number;
    deadMaxBytes: number;
    /** More than one partition: index rows by (bridge, id). */
    partitioned: boolean;
  }
  | {
    op: "commit";
    rows: WriteBatch | null;
    acks: number[];
    dead: DeadMove[];
    evict: Evict[];
    /** QoS 2 state: [id, packet id, state] triples, flattened. */
    marks: number[];
    durable: boolean;
    now: number;
  }
  | { op: "read"; bridge: string; afterId: number; limit: number; now: number }
  | { op: "expire"; now: number; limit: number }
  | { op: "deadList"; bridge: string | null; afterId: number; limit: number }
  | {
    op: "deadRetry";
    ids: number[];
    firstId: number;
    bridges: string[];
    ttlMs: Record<string, number>;
    now: number;
  }
  | { op: "deadDelete"; ids: number[] }
  | { op: "deadAdd"; letters: DeadRow[] }
  | { op: "compact" }
  | { op: "freeBytes" }
  | { op: "oldest" }
  | { op: "reserve" }
  | { op: "index" }
  | { op: "close" };

/** What `open` reports. */
export interface OpenResult {
  /** Per partition: rows and bytes; per device within it: bytes. */
  partitions: Array<{ bridge: string; depth: number; bytes: number; devices: [string, number][] }>;
  /** First id to assign. */
  nextId: number;
  /** Highest id the high-water mark says was committed (0: none). */
  hwm: number;
  /** Highest id found in the file. */
  found: number;
  /** Dead letters: rows and bytes. */
  deadCount: number;
  deadBytes: number;
  /** Columns were added to an older file. */
  migrated: boolean;
}

/** What `commit` reports. */
export interface CommitResult {
  ms: number;
  /** Dead letters after the commit: count, bytes. */
  deadTotals: [number, number];
  acked: Removed;
  evicted: Removed;
  dead: Removed;
  deadReasons: string[];
  deadDropped: number;
}

/** What `read` reports. */
export interface ReadResult {
  deadTotals: [number, number];
  rows: ReadRows;
  expired: Removed;
  quarantined: Removed;
}

/** Store failure as sent across the worker boundary. */
export interface StoreError {
  message: string;
  kind: "corrupt" | "io";
}

/** The synchronous store (see {@link spoolStoreFactory}). */
export interface SpoolStore {
  /** Answers a request (a promise only for `close`). */
  handle(req: StoreRequest): unknown;
}

/**
 * Returns the store class, given `DatabaseSync`. Self-contained: see the module doc.
 *
 * @example
 * ```ts
 * import { DatabaseSync } from "node:sqlite";
 * import { spoolStoreFactory } from "./_spool_store.ts";
 * const dir = Deno.makeTempDirSync();
 * const store = spoolStoreFactory(DatabaseSync)();
 * const o = store.handle({
 *   op: "open", path: `${dir}/s.db`, synchronous: "normal", autoCheckpointPages: 1000,
 *   deadMaxBytes: 1 << 20, partitioned: false,
 * }) as { nextId: number };
 * if (o.nextId !== 1) throw new Error(String(o.nextId));
 * await store.handle({ op: "close" });
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function spoolStoreFactory(
  DB: typeof DatabaseSync,
): () => SpoolStore {
  const utf8 = new TextEncoder();
  const CRC_TABLE = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    CRC_TABLE[n] = c;
  }
  function crcUpdate(crc: number, b: Uint8Array): number {
    for (let i = 0; i < b.length; i++) crc = CRC_TABLE[(crc ^ b[i]) & 0xff] ^ (crc >>> 8);
    return crc;
  }
  const meta = new DataView(new ArrayBuffer(34));
  const metaBytes = new Uint8Array(meta.buffer);
  /** CRC-32 of a row's fields (all but `size`, which is derived), from their UTF-8 bytes. */
  function rowCrcBytes(
    id: number,
    bridge: Uint8Array,
    topic: Uint8Array,
    payload: Uint8Array,
    qos: number,
    retain: number,
    deviceLength: number, // JS string length, -1 for none
    device: Uint8Array | null,
    ts: number,
    expires: number,
  ): number {
    meta.setFloat64(0, id);
    meta.setFloat64(8, ts);
    meta.setFloat64(16, expires);
    meta.setUint8(24, qos);
    meta.setUint8(25, retain);
    meta.setUint32(26, payload.length);
    meta.setUint32(30, deviceLength < 0 ? 0xffffffff : deviceLength);
    let c = -1;
    c = crcUpdate(c, metaBytes);
    c = crcUpdate(c, bridge);
    c = crcUpdate(c, topic);
    if (device !== null) c = crcUpdate(c, device);
    c = crcUpdate(c, payload);
    return (c ^ -1) >>> 0;
  }
  /** {@link rowCrcBytes} from strings. */
  function rowCrc(
    id: number,
    bridge: string,
    topic: string,
    payload: Uint8Array,
    qos: number,
    retain: number,
    device: string | null,
    ts: number,
    expires: number,
  ): number {
    return rowCrcBytes(
      id,
      utf8.encode(bridge),
      utf8.encode(topic),
      payload,
      qos,
      retain,
      device === null ? -1 : device.length,
      device === null ? null : utf8.encode(device),
      ts,
      expires,
    );
  }
  const utf8d = new TextDecoder();

  const CORRUPT = [
    "database disk image is malformed",
    "file is not a database",
    "integrity check failed",
    "not a Ferry",
    "malformed database schema",
  ];
  function fail(err: unknown): StoreError {
    const message = err instanceof Error ? err.message : String(err);
    return { message, kind: CORRUPT.some((m) => message.includes(m)) ? "corrupt" : "io" };
  }

  function emptyRemoved(): Removed {
    return { ids: [], bridges: [], devices: [], sizes: [] };
  }

  function pack(list: Uint8Array[]): { payloads: Uint8Array; ends: number[] } {
    let total = 0;
    for (const p of list) total += p.length;
    const payloads = new Uint8Array(total);
    const ends: number[] = new Array(list.length);
    let o = 0;
    for (let i = 0; i < list.length; i++) {
      payloads.set(list[i], o);
      o += list[i].length;
      ends[i] = o;
    }
    return { payloads, ends };
  }

  const COLUMNS = "id,topic,payload,qos,retain,device,ts,expires,size";
  const HWM_MAGIC = 0x46485731; // "FHW1"
  const HWM_EVERY_MS = 100;
  const RESERVE_BYTES = 1 << 20;

  class Store implements SpoolStore {
    db: DatabaseSync | undefined;
    path = "";
    durable = true;
    deadMaxBytes = 0;
    hwmFile: Deno.FsFile | undefined;
    hwmValue = 0;
    hwmQueued = 0;
    hwmWriting: Promise<void> | undefined;
    hwmTimer: ReturnType<typeof setTimeout> | undefined;
    hwmLast = 0;
    bridgeBytes = new Map<string, number>();
    deviceBytes = new Map<string, number>();
    deadBytes = 0;
    deadCount = 0;
    st: Record<string, StatementSync> = {};

    handle(req: StoreRequest): unknown {
      switch (req.op) {
        case "open":
          return this.open(req);
        case "commit":
          return this.commit(req);
        case "read":
          return this.read(req.bridge, req.afterId, req.limit, req.now);
        case "expire":
          return this.expire(req.now, req.limit);
        case "deadList":
          return this.deadList(req.bridge, req.afterId, req.limit);
        case "deadRetry":
          return this.deadRetry(req);
        case "deadDelete":
          return this.deadDelete(req.ids);
        case "deadAdd":
          return this.deadAdd(req.letters);
        case "compact":
          return this.compact();
        case "freeBytes": {
          const f = this.db!.prepare("PRAGMA freelist_count").get() as { freelist_count: number };
          const p = this.db!.prepare("PRAGMA page_size").get() as { page_size: number };
          return f.freelist_count * p.page_size;
        }
        case "reserve":
          return this.makeReserve();
        case "index":
          this.db!.exec("CREATE INDEX IF NOT EXISTS spool_bridge_id ON spool(bridge, id)");
          return true;
        case "oldest": {
          const r = this.db!.prepare("SELECT min(ts) AS ts FROM spool").get() as {
            ts: number | null;
          };
          return r.ts;
        }
        case "close":
          return this.close();
      }
    }

    open(req: Extract<StoreRequest, { op: "open" }>): OpenResult {
      this.path = req.path;
      this.durable = req.synchronous === "full";
      this.deadMaxBytes = req.deadMaxBytes;
      let db: DatabaseSync | undefined;
      try {
        try {
          // Created 0600 before SQLite opens it: the file holds message payloads.
          Deno.openSync(req.path, { create: true, createNew: true, write: true, mode: 0o600 })
            .close();
        } catch (err) {
          if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
        }
        db = new DB(req.path);
        db.exec("PRAGMA busy_timeout = 5000");
        // auto_vacuum only takes effect on a new file, before the first table: set it first.
        db.exec("PRAGMA auto_vacuum = INCREMENTAL");
        const mode = db.prepare("PRAGMA journal_mode = WAL").get() as { journal_mode: string };
        if (mode.journal_mode !== "wal") throw new Error(`journal_mode is ${mode.journal_mode}`);
        db.exec(`PRAGMA synchronous = ${this.durable ? "FULL" : "NORMAL"}`);
        db.exec("PRAGMA journal_size_limit = 8388608");
        db.exec(`PRAGMA wal_autocheckpoint = ${req.autoCheckpointPages}`);
        const check = db.prepare("PRAGMA quick_check").all() as Array<{ quick_check: string }>;
        if (check.length !== 1 || check[0].quick_check !== "ok") {
          throw new Error(`integrity check failed: ${check.map((r) => r.quick_check).join("; ")}`);
        }
        const migrated = this.schema(db, req.partitioned);
        // A write probe: a full or failing disk shows here, at start-up, as an I/O error.
        db.exec("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v) WITHOUT ROWID");
        db.prepare("INSERT OR REPLACE INTO meta VALUES ('opened_at', ?)").run(Date.now());
        this.db = db;
        this.prepare(db);
        const parts = new Map<string, OpenResult["partitions"][number]>();
        const rows = db.prepare(
          "SELECT bridge, device, count(*) AS n, sum(size) AS b FROM spool GROUP BY bridge, device",
        ).all() as Array<{ bridge: string; device: string | null; n: number; b: number }>;
        for (const r of rows) {
          let p = parts.get(r.bridge);
          if (!p) parts.set(r.bridge, p = { bridge: r.bridge, depth: 0, bytes: 0, devices: [] });
          p.depth += r.n;
          p.bytes += r.b;
          p.devices.push([r.device ?? "", r.b]);
          this.bridgeBytes.set(r.bridge, (this.bridgeBytes.get(r.bridge) ?? 0) + r.b);
          this.deviceBytes.set(`${r.bridge}\0${r.device ?? ""}`, r.b);
        }
        const seq = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'spool'").get() as
          | { seq: number }
          | undefined;
        const maxId = db.prepare("SELECT max(id) AS m FROM spool").get() as { m: number | null };
        const maxDead = db.prepare("SELECT max(id) AS m FROM dead_letters").get() as {
          m: number | null;
        };
        const dead = db.prepare(
          "SELECT count(*) AS n, coalesce(sum(size), 0) AS b FROM dead_letters",
        ).get() as { n: number; b: number };
        this.deadBytes = dead.b;
        this.deadCount = dead.n;
        const found = Math.max(seq?.seq ?? 0, maxId.m ?? 0, maxDead.m ?? 0);
        const hwm = this.openHwm(req.path + ".hwm");
        this.makeReserve();
        return {
          partitions: [...parts.values()],
          nextId: Math.max(found, hwm) + 1,
          hwm,
          found,
          deadCount: dead.n,
          deadBytes: dead.b,
          migrated,
        };
      } catch (err) {
        try {
          db?.close();
        } catch { /* not open */ }
        this.db = undefined;
        throw fail(err);
      }
    }

    schema(db: DatabaseSync, partitioned: boolean): boolean {
      const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
        .all() as Array<{ name: string }>;
      const names = new Set(tables.map((t) => t.name));
      let migrated = false;
      if (!names.has("spool")) {
        const foreign = [...names].filter((n) =>
          !n.startsWith("sqlite_") && n !== "dead_letters" && n !== "meta"
        );
        if (foreign.length) throw new Error(`not a Ferry spool (tables ${foreign.join(", ")})`);
        db.exec(`CREATE TABLE spool (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          topic TEXT NOT NULL,
          payload BLOB NOT NULL,
          qos INTEGER NOT NULL,
          retain INTEGER NOT NULL,
          device TEXT,
          ts INTEGER NOT NULL,
          expires INTEGER NOT NULL,
          size INTEGER NOT NULL,
          bridge TEXT NOT NULL DEFAULT 'default',
          crc INTEGER,
          pid INTEGER,
          st INTEGER
        )`);
      } else {
        const cols = (db.prepare("PRAGMA table_info(spool)").all() as Array<{ name: string }>)
          .map((c) => c.name).join();
        if (cols === COLUMNS) {
          // A spool written before partitions and checksums: its rows belong to the first bridge.
          db.exec("ALTER TABLE spool ADD COLUMN bridge TEXT NOT NULL DEFAULT 'default'");
          db.exec("ALTER TABLE spool ADD COLUMN crc INTEGER");
          migrated = true;
        }
        if (cols === COLUMNS || cols === `${COLUMNS},bridge,crc`) {
          // QoS 2 state: the packet id and how far the exchange got (1 sent, 2 released).
          db.exec("ALTER TABLE spool ADD COLUMN pid INTEGER");
          db.exec("ALTER TABLE spool ADD COLUMN st INTEGER");
          migrated = true;
        } else if (cols !== `${COLUMNS},bridge,crc,pid,st`) {
          throw new Error(`not a Ferry spool (table spool has columns ${cols})`);
        }
      }
      if (!names.has("dead_letters")) {
        db.exec(`CREATE TABLE dead_letters (
          id INTEGER PRIMARY KEY,
          bridge TEXT NOT NULL,
          topic TEXT NOT NULL,
          payload BLOB NOT NULL,
          qos INTEGER NOT NULL,
          retain INTEGER NOT NULL,
          device TEXT,
          ts INTEGER NOT NULL,
          reason TEXT NOT NULL,
          detail TEXT,
          dead_at INTEGER NOT NULL,
          size INTEGER NOT NULL
        )`);
      }
      // With one partition the primary key serves its reads; the index (an extra B-tree write per
      // row) is made once a second partition exists, and kept.
      const idx = db.prepare(
        "SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = 'spool_bridge_id'",
      ).get();
      if (!idx && partitioned) db.exec("CREATE INDEX spool_bridge_id ON spool(bridge, id)");
      return migrated;
    }

    prepare(db: DatabaseSync): void {
      this.st = {
        insert: db.prepare(
          "INSERT INTO spool(id, topic, payload, qos, retain, device, ts, expires, size, bridge, crc) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        ),
        delete: db.prepare("DELETE FROM spool WHERE id = ? RETURNING bridge, device, size"),
        read: db.prepare(
          "SELECT id, topic, payload, qos, retain, device, ts, expires, size, crc, pid, st FROM spool WHERE bridge = ? AND id > ? ORDER BY id LIMIT ?",
        ),
        mark: db.prepare("UPDATE spool SET pid = ?, st = ? WHERE id = ?"),
        head: db.prepare(
          "SELECT id FROM spool WHERE bridge = ? AND id > ? ORDER BY id LIMIT 256",
        ),
        headDevice: db.prepare(
          "SELECT id FROM spool WHERE bridge = ? AND id > ? AND device IS ? ORDER BY id LIMIT 256",
        ),
        toDead: db.prepare(
          "INSERT OR REPLACE INTO dead_letters(id, bridge, topic, payload, qos, retain, device, ts, reason, detail, dead_at, size) SELECT id, bridge, topic, payload, qos, retain, device, ts, ?, ?, ?, size FROM spool WHERE id = ?",
        ),
        expired: db.prepare("SELECT id FROM spool WHERE expires <= ? ORDER BY id LIMIT ?"),
        deadList: db.prepare(
          "SELECT id, bridge, topic, payload, qos, retain, device, ts, reason, detail, dead_at, size FROM dead_letters WHERE id > ? AND (? IS NULL OR bridge = ?) ORDER BY id LIMIT ?",
        ),
        deadGet: db.prepare(
          "SELECT id, bridge, topic, payload, qos, retain, device, ts, size FROM dead_letters WHERE id = ?",
        ),
        deadDelete: db.prepare("DELETE FROM dead_letters WHERE id = ? RETURNING size"),
        deadInsert: db.prepare(
          "INSERT INTO dead_letters(id, bridge, topic, payload, qos, retain, device, ts, reason, detail, dead_at, size) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        ),
        deadOldest: db.prepare("SELECT id FROM dead_letters ORDER BY dead_at, id LIMIT 64"),
      };
    }

    /**
     * Keeps `<spool>.reserve` (1 MiB) beside the file: when the disk fills, it is given back so
     * that acknowledged rows can still be deleted (a delete needs WAL space too) and the spool
     * drains instead of resending forever. Returns true when the reserve is in place.
     */
    makeReserve(): boolean {
      const path = this.path + ".reserve";
      try {
        if (Deno.statSync(path).size === RESERVE_BYTES) return true;
      } catch { /* absent */ }
      try {
        Deno.writeFileSync(path, new Uint8Array(RESERVE_BYTES), { mode: 0o600 });
        return true;
      } catch {
        try {
          Deno.removeSync(path);
        } catch { /* not created */ }
        return false;
      }
    }

    /** Gives the reserve back to the disk; true when there was one. */
    releaseReserve(): boolean {
      try {
        Deno.removeSync(this.path + ".reserve");
        return true;
      } catch {
        return false;
      }
    }

    openHwm(path: string): number {
      this.hwmFile = Deno.openSync(path, { read: true, write: true, create: true, mode: 0o600 });
      const buf = new Uint8Array(16);
      let n = 0;
      for (let i = 0; i < 4 && n < 16; i++) {
        const r = this.hwmFile.readSync(buf.subarray(n));
        if (r === null) break;
        n += r;
      }
      if (n < 16) return this.hwmValue = 0;
      const v = new DataView(buf.buffer);
      if (v.getUint32(0) !== HWM_MAGIC) return this.hwmValue = 0;
      const value = v.getFloat64(4);
      if (crcUpdate(-1, buf.subarray(0, 12)) !== v.getInt32(12)) return this.hwmValue = 0;
      this.hwmQueued = value;
      return this.hwmValue = value;
    }

    /**
     * Records `value` in the high-water-mark file, off the commit path: at most every
     * `HWM_EVERY_MS`, the write and its fdatasync run as async file operations (on the runtime's
     * I/O threads) while SQLite goes on committing. An fsync of its own per commit would double
     * the commit's cost (two journal commits of the file system each time); so the mark trails
     * the commits by at most that interval plus one fsync.
     */
    writeHwm(value: number): void {
      if (!this.hwmFile || value <= this.hwmQueued) return;
      this.hwmQueued = value;
      if (this.hwmWriting || this.hwmTimer !== undefined) return;
      const wait = Math.max(0, this.hwmLast + HWM_EVERY_MS - performance.now());
      this.hwmTimer = setTimeout(() => {
        this.hwmTimer = undefined;
        this.hwmWriting = this.flushHwm();
      }, wait);
    }

    async flushHwm(): Promise<void> {
      const file = this.hwmFile;
      try {
        while (file && this.hwmQueued > this.hwmValue) {
          const v = this.hwmQueued;
          const buf = new Uint8Array(16);
          const view = new DataView(buf.buffer);
          view.setUint32(0, HWM_MAGIC);
          view.setFloat64(4, v);
          view.setInt32(12, crcUpdate(-1, buf.subarray(0, 12)));
          await file.seek(0, Deno.SeekMode.Start);
          let o = 0;
          while (o < 16) o += await file.write(buf.subarray(o));
          if (this.durable) await file.syncData();
          this.hwmValue = v;
          this.hwmLast = performance.now();
        }
      } catch { /* closed, or the disk failed: the commits say so */ }
      this.hwmWriting = undefined;
    }

    remove(id: number, out: Removed): boolean {
      const r = this.st.delete.get(id) as
        | { bridge: string; device: string | null; size: number }
        | undefined;
      if (!r) return false;
      out.ids.push(id);
      out.bridges.push(r.bridge);
      out.devices.push(r.device);
      out.sizes.push(r.size);
      this.bridgeBytes.set(r.bridge, (this.bridgeBytes.get(r.bridge) ?? 0) - r.size);
      const k = `${r.bridge}\0${r.device ?? ""}`;
      this.deviceBytes.set(k, (this.deviceBytes.get(k) ?? 0) - r.size);
      return true;
    }

    moveToDead(id: number, reason: string, detail: string, now: number, out: Removed): boolean {
      this.st.toDead.run(reason, detail, now, id);
      const before = out.sizes.length;
      if (!this.remove(id, out)) return false;
      this.deadBytes += out.sizes[before];
      this.deadCount++;
      return true;
    }

    trimDead(): number {
      let dropped = 0;
      while (this.deadBytes > this.deadMaxBytes) {
        const rows = this.st.deadOldest.all() as Array<{ id: number }>;
        if (rows.length === 0) break;
        for (const r of rows) {
          if (this.deadBytes <= this.deadMaxBytes) break;
          const d = this.st.deadDelete.get(r.id) as { size: number } | undefined;
          if (d) {
            this.deadBytes -= d.size;
            this.deadCount--;
            dropped++;
          }
        }
      }
      return dropped;
    }

    commit(req: Extract<StoreRequest, { op: "commit" }>): CommitResult {
      const db = this.db!;
      const t0 = performance.now();
      const acked = emptyRemoved();
      const evicted = emptyRemoved();
      const dead = emptyRemoved();
      const deadReasons: string[] = [];
      let deadDropped = 0;
      const lazy = !req.durable && this.durable;
      try {
        if (lazy) db.exec("PRAGMA synchronous = NORMAL");
        db.exec("BEGIN IMMEDIATE");
        for (const id of req.acks) this.remove(id, acked);
        for (const d of req.dead) {
          if (this.moveToDead(d.id, d.reason, d.detail, req.now, dead)) deadReasons.push(d.reason);
        }
        const w = req.rows;
        let lastId = 0;
        if (w) {
          const ins = this.st.insert;
          const names = w.bridgeNames.map((b) => utf8.encode(b));
          let start = 0;
          for (let i = 0; i < w.n; i++) {
            const id = w.nums[i * 7];
            const qos = w.nums[i * 7 + 1];
            const retain = w.nums[i * 7 + 2];
            const ts = w.nums[i * 7 + 3];
            const expires = w.nums[i * 7 + 4];
            const size = w.nums[i * 7 + 5];
            const deviceLength = w.nums[i * 7 + 6];
            const topicB = w.bytes.subarray(start, w.ends[i * 3]);
            const deviceB = deviceLength < 0
              ? null
              : w.bytes.subarray(w.ends[i * 3], w.ends[i * 3 + 1]);
            const payload = w.bytes.subarray(w.ends[i * 3 + 1], w.ends[i * 3 + 2]);
            start = w.ends[i * 3 + 2];
            const bridge = w.bridgeNames[w.parts[i]];
            const topic = utf8d.decode(topicB);
            const device = deviceB === null ? null : utf8d.decode(deviceB);
            const crc = rowCrcBytes(
              id,
              names[w.parts[i]],
              topicB,
              payload,
              qos,
              retain,
              deviceLength,
              deviceB,
              ts,
              expires,
            );
            ins.run(id, topic, payload, qos, retain, device, ts, expires, size, bridge, crc);
            this.bridgeBytes.set(bridge, (this.bridgeBytes.get(bridge) ?? 0) + size);
            const k = `${bridge}\0${device ?? ""}`;
            this.deviceBytes.set(k, (this.deviceBytes.get(k) ?? 0) + size);
            lastId = id;
          }
        }
        for (const e of req.evict) this.evict(e, evicted);
        const m = req.marks;
        for (let i = 0; i + 2 < m.length; i += 3) this.st.mark.run(m[i + 1], m[i + 2], m[i]);
        deadDropped = this.trimDead();
        db.exec("COMMIT");
        if (lazy) db.exec("PRAGMA synchronous = FULL");
        // Only now, with the rows durable, may the mark say they exist (before any device hears).
        if (lastId) this.writeHwm(lastId);
      } catch (err) {
        try {
          db.exec("ROLLBACK");
        } catch { /* no transaction left */ }
        if (lazy) {
          try {
            db.exec("PRAGMA synchronous = FULL");
          } catch { /* closed */ }
        }
        this.recount();
        const e = fail(err);
        if (e.kind === "io" && this.releaseReserve()) e.message += " (spool reserve released)";
        throw e;
      }
      return {
        ms: performance.now() - t0,
        deadTotals: [this.deadCount, this.deadBytes],
        acked,
        evicted,
        dead,
        deadReasons,
        deadDropped,
      };
    }

    recount(): void {
      // After a rollback the byte maps may have counted rows that are not there: read them again.
      this.bridgeBytes.clear();
      this.deviceBytes.clear();
      try {
        const rows = this.db!.prepare(
          "SELECT bridge, device, sum(size) AS b FROM spool GROUP BY bridge, device",
        ).all() as Array<{ bridge: string; device: string | null; b: number }>;
        for (const r of rows) {
          this.bridgeBytes.set(r.bridge, (this.bridgeBytes.get(r.bridge) ?? 0) + r.b);
          this.deviceBytes.set(`${r.bridge}\0${r.device ?? ""}`, r.b);
        }
        const d = this.db!.prepare(
          "SELECT count(*) AS n, coalesce(sum(size), 0) AS b FROM dead_letters",
        ).get() as { n: number; b: number };
        this.deadBytes = d.b;
        this.deadCount = d.n;
      } catch { /* the next commit tries again */ }
    }

    evict(e: Evict, out: Removed): void {
      const key = e.device === null ? undefined : `${e.bridge}\0${e.device}`;
      const current = () =>
        key === undefined ? this.bridgeBytes.get(e.bridge) ?? 0 : this.deviceBytes.get(key) ?? 0;
      let after = 0;
      for (let round = 0; round < 100_000 && current() > e.maxBytes; round++) {
        const rows = (key === undefined
          ? this.st.head.all(e.bridge, after)
          : this.st.headDevice.all(e.bridge, after, e.device === "" ? null : e.device)) as Array<
            { id: number }
          >;
        if (rows.length === 0) {
          break;
        }
        for (const r of rows) {
          if (current() <= e.maxBytes) {
            break;
          }
          this.remove(r.id, out);
          after = r.id;
        }
      }
    }

    read(bridge: string, afterId: number, limit: number, now: number): ReadResult {
      const rows = this.st.read.all(bridge, afterId, limit) as Array<{
        id: number;
        topic: string;
        payload: Uint8Array;
        qos: number;
        retain: number;
        device: string | null;
        ts: number;
        expires: number;
        size: number;
        crc: number | null;
        pid: number | null;
        st: number | null;
      }>;
      const expired = emptyRemoved();
      const quarantined = emptyRemoved();
      const out: ReadRows = {
        pids: [],
        states: [],
        ids: [],
        topics: [],
        payloads: new Uint8Array(0),
        ends: [],
        qos: [],
        retain: [],
        devices: [],
        ts: [],
        expires: [],
        sizes: [],
      };
      const payloads: Uint8Array[] = [];
      const bad: number[] = [];
      const old: number[] = [];
      for (const r of rows) {
        if (
          r.crc !== null &&
          rowCrc(r.id, bridge, r.topic, r.payload, r.qos, r.retain, r.device, r.ts, r.expires) !==
            r.crc
        ) {
          bad.push(r.id);
          continue;
        }
        if (r.expires <= now) {
          old.push(r.id);
          continue;
        }
        out.ids.push(r.id);
        out.topics.push(r.topic);
        payloads.push(r.payload);
        out.qos.push(r.qos);
        out.retain.push(r.retain);
        out.devices.push(r.device);
        out.ts.push(r.ts);
        out.expires.push(r.expires);
        out.sizes.push(r.size);
        out.pids.push(r.pid ?? 0);
        out.states.push(r.st ?? 0);
      }
      const packed = pack(payloads);
      out.payloads = packed.payloads;
      out.ends = packed.ends;
      if (bad.length || old.length) {
        const db = this.db!;
        db.exec("BEGIN IMMEDIATE");
        try {
          for (const id of bad) {
            this.moveToDead(id, "checksum", "stored row failed its CRC-32 check", now, quarantined);
          }
          for (const id of old) this.remove(id, expired);
          this.trimDead();
          db.exec("COMMIT");
        } catch (err) {
          try {
            db.exec("ROLLBACK");
          } catch { /* none */ }
          this.recount();
          throw fail(err);
        }
      }
      return { deadTotals: [this.deadCount, this.deadBytes], rows: out, expired, quarantined };
    }

    expire(now: number, limit: number): Removed {
      const out = emptyRemoved();
      const ids = (this.st.expired.all(now, limit) as Array<{ id: number }>).map((r) => r.id);
      if (ids.length === 0) return out;
      const db = this.db!;
      db.exec("BEGIN IMMEDIATE");
      try {
        for (const id of ids) this.remove(id, out);
        db.exec("COMMIT");
      } catch (err) {
        try {
          db.exec("ROLLBACK");
        } catch { /* none */ }
        this.recount();
        throw fail(err);
      }
      return out;
    }

    deadList(bridge: string | null, afterId: number, limit: number): DeadRow[] {
      const rows = this.st.deadList.all(afterId, bridge, bridge, limit) as Array<{
        id: number;
        bridge: string;
        topic: string;
        payload: Uint8Array;
        qos: number;
        retain: number;
        device: string | null;
        ts: number;
        reason: string;
        detail: string | null;
        dead_at: number;
        size: number;
      }>;
      return rows.map((r) => ({
        id: r.id,
        bridge: r.bridge,
        topic: r.topic,
        payload: r.payload,
        qos: r.qos,
        retain: r.retain === 1,
        device: r.device,
        ts: r.ts,
        reason: r.reason,
        detail: r.detail,
        deadAt: r.dead_at,
        size: r.size,
      }));
    }

    deadRetry(req: Extract<StoreRequest, { op: "deadRetry" }>): {
      rows: RowBatch;
      skipped: number;
      deadTotals: [number, number];
    } {
      const db = this.db!;
      const rows: RowBatch = {
        ids: [],
        bridges: [],
        topics: [],
        payloads: new Uint8Array(0),
        ends: [],
        qos: [],
        retain: [],
        devices: [],
        ts: [],
        expires: [],
        sizes: [],
      };
      const payloads: Uint8Array[] = [];
      let skipped = 0;
      let next = req.firstId;
      const known = new Set(req.bridges);
      db.exec("BEGIN IMMEDIATE");
      try {
        for (const id of req.ids) {
          const d = this.st.deadGet.get(id) as
            | {
              id: number;
              bridge: string;
              topic: string;
              payload: Uint8Array;
              qos: number;
              retain: number;
              device: string | null;
              ts: number;
              size: number;
            }
            | undefined;
          if (!d) continue;
          if (!known.has(d.bridge)) {
            skipped++;
            continue;
          }
          const newId = next++;
          const expires = req.now + (req.ttlMs[d.bridge] ?? 604_800_000);
          const crc = rowCrc(
            newId,
            d.bridge,
            d.topic,
            d.payload,
            d.qos,
            d.retain,
            d.device,
            d.ts,
            expires,
          );
          this.st.insert.run(
            newId,
            d.topic,
            d.payload,
            d.qos,
            d.retain,
            d.device,
            d.ts,
            expires,
            d.size,
            d.bridge,
            crc,
          );
          this.st.deadDelete.get(id);
          this.deadBytes -= d.size;
          this.deadCount--;
          this.bridgeBytes.set(d.bridge, (this.bridgeBytes.get(d.bridge) ?? 0) + d.size);
          const k = `${d.bridge}\0${d.device ?? ""}`;
          this.deviceBytes.set(k, (this.deviceBytes.get(k) ?? 0) + d.size);
          rows.ids.push(newId);
          rows.bridges.push(d.bridge);
          rows.topics.push(d.topic);
          payloads.push(d.payload);
          rows.qos.push(d.qos);
          rows.retain.push(d.retain);
          rows.devices.push(d.device);
          rows.ts.push(d.ts);
          rows.expires.push(expires);
          rows.sizes.push(d.size);
        }
        db.exec("COMMIT");
        if (rows.ids.length) this.writeHwm(rows.ids[rows.ids.length - 1]);
      } catch (err) {
        try {
          db.exec("ROLLBACK");
        } catch { /* none */ }
        this.recount();
        throw fail(err);
      }
      const packed = pack(payloads);
      rows.payloads = packed.payloads;
      rows.ends = packed.ends;
      return { rows, skipped, deadTotals: [this.deadCount, this.deadBytes] };
    }

    /**
     * Inserts letters straight into the dead letters (messages that never were spooled: a rule
     * failed on them), in one transaction; the oldest letters go past the byte bound.
     */
    deadAdd(letters: DeadRow[]): { dropped: number; deadTotals: [number, number] } {
      const db = this.db!;
      let dropped = 0;
      db.exec("BEGIN IMMEDIATE");
      try {
        for (const d of letters) {
          this.st.deadInsert.run(
            d.id,
            d.bridge,
            d.topic,
            d.payload,
            d.qos,
            d.retain ? 1 : 0,
            d.device,
            d.ts,
            d.reason,
            d.detail,
            d.deadAt,
            d.size,
          );
          this.deadBytes += d.size;
          this.deadCount++;
        }
        dropped = this.trimDead();
        db.exec("COMMIT");
      } catch (err) {
        try {
          db.exec("ROLLBACK");
        } catch { /* none */ }
        this.recount();
        throw fail(err);
      }
      return { dropped, deadTotals: [this.deadCount, this.deadBytes] };
    }

    deadDelete(ids: number[]): { deleted: number; deadTotals: [number, number] } {
      const db = this.db!;
      let n = 0;
      db.exec("BEGIN IMMEDIATE");
      try {
        for (const id of ids) {
          const d = this.st.deadDelete.get(id) as { size: number } | undefined;
          if (d) {
            n++;
            this.deadBytes -= d.size;
            this.deadCount--;
          }
        }
        db.exec("COMMIT");
      } catch (err) {
        try {
          db.exec("ROLLBACK");
        } catch { /* none */ }
        throw fail(err);
      }
      return { deleted: n, deadTotals: [this.deadCount, this.deadBytes] };
    }

    compact(): boolean {
      const db = this.db!;
      db.prepare("PRAGMA incremental_vacuum").all();
      db.prepare("PRAGMA wal_checkpoint(TRUNCATE)").all();
      return true;
    }

    async close(): Promise<boolean> {
      if (!this.db) return false;
      if (this.hwmTimer !== undefined) clearTimeout(this.hwmTimer);
      this.hwmTimer = undefined;
      await this.hwmWriting;
      await this.flushHwm();
      try {
        this.db.prepare("PRAGMA wal_checkpoint(TRUNCATE)").all();
      } catch { /* best effort */ }
      this.db.close();
      this.db = undefined;
      try {
        this.hwmFile?.close();
      } catch { /* closed */ }
      this.hwmFile = undefined;
      return true;
    }
  }

  return () => new Store();
}
