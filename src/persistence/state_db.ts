/**
 * The gateway's durable state file (`mqtt.persistence.file` in the data directory): an embedded
 * SQLite database (Deno's built-in `node:sqlite`) holding what must survive a restart besides the
 * northbound spool. It knows none of its contents: each owner (the retained messages' table, a
 * protocol's session journal) defines its own tables ({@link StateDb.define}), prepares its
 * statements on it and queues writes with {@link StateDb.write}; every write queued before the
 * next macrotask shares one transaction and one fsync (group commit, as the spool does).
 *
 * - `journal_mode=WAL`, `synchronous=FULL` by default: a commit that returned survives a crash
 *   and a power cut.
 * - {@link StateDb.pending} / {@link StateDb.flushed}: an adapter that must not acknowledge a
 *   message before the state it caused is on disk waits for the commit (nothing is pending while
 *   only clean sessions are served, so they never wait).
 * - Corruption: `PRAGMA quick_check` and a schema version check on open; a corrupt or foreign
 *   file raises {@link StateDbCorruptError}. {@link StateDb.openOrSetAside} renames it to
 *   `<file>.corrupt-<time>` (with its `-wal`, `-shm`) and starts empty instead. A file that
 *   cannot be used because the disk is full or failing (or permissions) raises a
 *   `SqliteFileError` of kind `io` and is never moved: the file may be healthy.
 * - The file is created with mode 0600: it holds message payloads.
 *
 * @module
 */

import type { DatabaseSync, SQLInputValue, StatementSync } from "node:sqlite";
import {
  asFileError,
  describeIoFailure,
  openSqlite,
  setAside,
  SqliteFileError,
} from "./sqlite_file.ts";

/** Version of the schema this code writes (`PRAGMA user_version`). */
export const STATE_SCHEMA_VERSION = 1;

/** The state file is corrupt, unreadable or not a Ferry state file. */
export class StateDbCorruptError extends SqliteFileError {
  override name = "StateDbCorruptError";
  /** Creates the error (kind `corrupt`). */
  constructor(message: string, path: string, options?: ErrorOptions) {
    super("corrupt", path, message, options);
  }
}

/** A commit failed (disk full, I/O error): the writes of that batch are not durable. */
export class StateDbWriteError extends Error {
  override name = "StateDbWriteError";
}

/** Tunables of {@link StateDb}. */
export interface StateDbOptions {
  /** SQLite `synchronous` level: `full` survives power loss, `normal` only crashes. @default "full" */
  synchronous?: "full" | "normal";
  /** Called when a commit fails (the batch is lost; the in-memory state goes on). */
  onWriteError?: (err: StateDbWriteError) => void;
}

/** One queued write; `dead` ones are skipped (cancelled before their commit). */
export interface StateOp {
  /** The statement. */
  stmt: StatementSync;
  /** Its arguments. */
  args: SQLInputValue[];
  /** Cancelled: not run. */
  dead?: boolean;
  /** Commit generation the op belongs to ({@link StateDb.generation} while it is pending). */
  gen: number;
}

/**
 * The state file, with group commit.
 *
 * @example
 * ```ts
 * import { StateDb } from "./state_db.ts";
 * const dir = await Deno.makeTempDir();
 * const db = StateDb.open(`${dir}/state.db`);
 * db.define("CREATE TABLE IF NOT EXISTS notes (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID");
 * const put = db.database.prepare("INSERT INTO notes VALUES (?,?)");
 * db.write(put, ["a", new Uint8Array([1])]);
 * if (!db.pending) throw new Error("not queued");
 * await db.flushed();
 * const n = db.database.prepare("SELECT count(*) AS n FROM notes").get() as { n: number };
 * if (n.n !== 1) throw new Error("not committed");
 * db.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class StateDb implements Disposable {
  /** The file. */
  readonly path: string;
  #db: DatabaseSync;
  #ops: StateOp[] = [];
  #gen = 1;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #waiters: Array<(committed: boolean) => void> = [];
  #closed = false;
  #onWriteError?: (err: StateDbWriteError) => void;
  #setAside: string | undefined;
  /** Counters since open. */
  readonly stats = { commits: 0, writes: 0, failures: 0, lastCommitMs: 0 };

  private constructor(path: string, db: DatabaseSync, options: StateDbOptions) {
    this.path = path;
    this.#db = db;
    this.#onWriteError = options.onWriteError;
  }

  /**
   * Opens (or creates) the file; throws {@link StateDbCorruptError} when it is corrupt, a
   * `SqliteFileError` of kind `io` when the disk is full or failing.
   */
  static open(path: string, options: StateDbOptions = {}): StateDb {
    return new StateDb(path, openChecked(path, options), options);
  }

  /**
   * Opens the file; when it is corrupt, renames it (and its `-wal`, `-shm`) to
   * `<file>.corrupt-<time>` and starts with an empty one ({@link StateDb.setAside} says where). A
   * full or failing disk is never a reason to move the file: that error is thrown.
   */
  static openOrSetAside(path: string, options: StateDbOptions = {}): StateDb {
    try {
      return StateDb.open(path, options);
    } catch (err) {
      if (!(err instanceof StateDbCorruptError)) throw err;
      const aside = setAside(path);
      const fresh = StateDb.open(path, options);
      fresh.#setAside = aside;
      return fresh;
    }
  }

  /** Where a corrupt file was moved, when {@link openOrSetAside} had to act. */
  get setAside(): string | undefined {
    return this.#setAside;
  }

  /** Creates an owner's tables (statements with `IF NOT EXISTS`), before it prepares its statements. */
  define(ddl: string): void {
    // One transaction: on a new file each CREATE would otherwise be a commit of its own, with
    // its own fsync (12 at a fresh start, a third of the time to the first CONNACK on a slow disk).
    // Deferred: tables that exist already take no write lock (another process may hold it).
    this.#db.exec("BEGIN");
    try {
      this.#db.exec(ddl);
      this.#db.exec("COMMIT");
    } catch (err) {
      try {
        this.#db.exec("ROLLBACK");
      } catch { /* no transaction left */ }
      throw err;
    }
  }

  /** The database, for owners to prepare statements and read at start-up. */
  get database(): DatabaseSync {
    return this.#db;
  }

  /** Generation of the commit the next queued write will be part of. */
  get generation(): number {
    return this.#gen;
  }

  /** True while writes wait for the next commit. */
  get pending(): boolean {
    return this.#ops.length !== 0;
  }

  /** Queues a write for the next group commit; returns it (it may be cancelled or amended). */
  write(stmt: StatementSync, args: SQLInputValue[]): StateOp {
    const op: StateOp = { stmt, args, gen: this.#gen };
    if (this.#closed) return op;
    this.#ops.push(op);
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.flush();
    }, 0);
    return op;
  }

  /** True while `op` has not been committed yet (it can still be amended or cancelled). */
  isPending(op: StateOp | undefined): op is StateOp {
    return op !== undefined && op.gen === this.#gen && !op.dead && !this.#closed;
  }

  /**
   * Resolves once every write queued so far was committed (`true`), or its commit failed (`false`,
   * reported to `onWriteError`): what depends on those writes must then not be acknowledged.
   */
  flushed(): Promise<boolean> {
    if (this.#ops.length === 0) return Promise.resolve(true);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Commits the queued writes now (normally done by the group commit). */
  flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const ops = this.#ops;
    const waiters = this.#waiters;
    this.#ops = [];
    this.#waiters = [];
    this.#gen++;
    if (this.#closed || ops.length === 0) {
      for (const w of waiters) w(!this.#closed);
      return;
    }
    let committed = false;
    const t0 = performance.now();
    try {
      this.#db.exec("BEGIN IMMEDIATE");
      for (const op of ops) if (!op.dead) op.stmt.run(...op.args);
      this.#db.exec("COMMIT");
      this.stats.commits++;
      this.stats.writes += ops.length;
      this.stats.lastCommitMs = performance.now() - t0;
      committed = true;
    } catch (err) {
      try {
        this.#db.exec("ROLLBACK");
      } catch { /* no transaction left */ }
      this.stats.failures++;
      this.#onWriteError?.(
        new StateDbWriteError(`Cannot commit to state file ${this.path}: ${errMessage(err)}`, {
          cause: err,
        }),
      );
    }
    for (const w of waiters) w(committed);
  }

  /** Commits what is queued and closes the file. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.flush();
    this.#closed = true;
    try {
      this.#db.close();
    } catch { /* closed */ }
  }

  /** Same as {@link close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function openChecked(path: string, options: StateDbOptions): DatabaseSync {
  let db: DatabaseSync | undefined;
  try {
    try {
      // Created 0600 before SQLite opens it: the file holds message payloads.
      Deno.openSync(path, { create: true, createNew: true, write: true, mode: 0o600 }).close();
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
    }
    db = openSqlite(path, { synchronous: options.synchronous });
    const v = (db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version;
    const tables = db.prepare("SELECT count(*) AS n FROM sqlite_schema").get() as { n: number };
    if (v === 0 && tables.n !== 0) throw new Error("not a Ferry state file (foreign tables)");
    if (v !== 0 && v !== STATE_SCHEMA_VERSION) {
      throw new Error(
        `not a Ferry state file of this version (schema ${v}, expected ${STATE_SCHEMA_VERSION})`,
      );
    }
    // Also a write probe: a full or failing disk is found here, classified as such (never as
    // corruption), and the gateway refuses to start naming the file. Owners define their tables.
    db.exec(`PRAGMA user_version = ${STATE_SCHEMA_VERSION}`);
    return db;
  } catch (err) {
    try {
      db?.close();
    } catch { /* not open */ }
    const e = asFileError(path, err);
    if (e.kind === "io") {
      throw new SqliteFileError(
        "io",
        path,
        `Cannot open state file ${path}: ${describeIoFailure(err, path)} (${
          errMessage(err)
        }); the file was left untouched`,
        { cause: err },
      );
    }
    throw new StateDbCorruptError(
      `Cannot open state file ${path}: the file is corrupt or not a Ferry state file (${
        errMessage(err)
      })`,
      path,
      { cause: err },
    );
  }
}
