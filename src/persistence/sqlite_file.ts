/**
 * How Ferry opens its SQLite files (the northbound spool, the MQTT state file): one busy
 * timeout, WAL journal, the chosen `synchronous` level, a WAL cut back to 8 MiB after checkpoints,
 * and a `quick_check` before anything is trusted; how a failure to open is classified; and how a
 * corrupt file is set aside.
 *
 * A failure is one of two kinds, and they are never confused:
 *
 * - **corrupt** (`SQLITE_CORRUPT` "database disk image is malformed", `SQLITE_NOTADB` "file is not
 *   a database", a failing `quick_check`, a foreign schema): the bytes on disk are bad. Such a file
 *   may be set aside (renamed, kept for recovery) when the owner's policy allows.
 * - **io** (everything else: `SQLITE_FULL`, `SQLITE_IOERR`, `SQLITE_CANTOPEN`, `SQLITE_READONLY`,
 *   `ENOSPC`, `EACCES`, …): the disk or its permissions fail, the file may be perfectly healthy. It
 *   is never moved; the owner refuses to start and says which file and why.
 *
 * Deno's `node:sqlite` reports only SQLite's message text (no code), so the classification reads
 * SQLite's fixed English messages (`sqlite3ErrStr`); anything not positively corrupt is `io`.
 *
 * @module
 */

import { dirname } from "../core/path.ts";
import { DatabaseSync } from "node:sqlite";

/** Settings of {@link openSqlite}. */
export interface SqliteFileOptions {
  /** `full` survives power loss; `normal` survives a crash of the process. @default "full" */
  synchronous?: "full" | "normal";
  /** Statements run first, before the journal mode (e.g. `PRAGMA auto_vacuum`, new files only). */
  first?: string[];
  /** WAL pages after which SQLite checkpoints on its own (`wal_autocheckpoint`). @default 1000 */
  autoCheckpointPages?: number;
}

/** The kind of a failure to open or use a SQLite file. */
export type SqliteFailureKind = "corrupt" | "io";

/** A file could not be opened (or checked): {@link SqliteFileError.kind} says whose fault. */
export class SqliteFileError extends Error {
  override name = "SqliteFileError";
  /** `corrupt`: the bytes are bad; `io`: the disk, space or permissions fail. */
  readonly kind: SqliteFailureKind;
  /** The file concerned. */
  readonly path: string;
  /** Creates the error. */
  constructor(kind: SqliteFailureKind, path: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
    this.path = path;
  }
}

const CORRUPT_MESSAGES = [
  "database disk image is malformed", // SQLITE_CORRUPT
  "file is not a database", // SQLITE_NOTADB
  "integrity check failed", // our quick_check
  "not a Ferry", // our schema checks
  "malformed database schema",
];

/**
 * Classifies an error from SQLite or the file system: `corrupt` only for errors that say the
 * bytes are bad; anything else (disk full, I/O error, permission, unknown) is `io`.
 *
 * @example
 * ```ts
 * import { classifySqliteError } from "./sqlite_file.ts";
 * if (classifySqliteError(new Error("database or disk is full")) !== "io") throw new Error();
 * if (classifySqliteError(new Error("file is not a database")) !== "corrupt") throw new Error();
 * if (classifySqliteError(new Error("something odd")) !== "io") throw new Error("unknown is io");
 * ```
 */
export function classifySqliteError(err: unknown): SqliteFailureKind {
  if (err instanceof SqliteFileError) return err.kind;
  const msg = err instanceof Error ? err.message : String(err);
  return CORRUPT_MESSAGES.some((m) => msg.includes(m)) ? "corrupt" : "io";
}

/**
 * True when the directory of `path` has no room for 64 KiB (SQLite often reports a full disk as
 * "disk I/O error" when it cannot grow its `-shm` file): writes and removes a probe file.
 */
export function diskFull(path: string): boolean {
  const dir = dirname(path);
  const probe = `${dir}/.ferry-space-probe-${Deno.pid}`;
  try {
    Deno.writeFileSync(probe, new Uint8Array(65536));
    return false;
  } catch (err) {
    return /No space left|os error 28|ENOSPC|quota/i.test((err as Error).message);
  } finally {
    try {
      Deno.removeSync(probe);
    } catch { /* not created */ }
  }
}

/**
 * A human reason for an `io` failure, for the refusal to start (`path`: the file, to check its
 * disk for space).
 */
export function describeIoFailure(err: unknown, path?: string): string {
  const msg = err instanceof Error ? err.message : String(err);
  if (/disk is full|No space left|ENOSPC|os error 28/i.test(msg)) return "the disk is full";
  if (path !== undefined && diskFull(path)) return "the disk is full";
  if (err instanceof Deno.errors.PermissionDenied || /permission|EACCES|readonly/i.test(msg)) {
    return "permission denied";
  }
  if (/disk I\/O error|EIO/i.test(msg)) return "the disk reports an I/O error";
  if (/unable to open/i.test(msg)) return "the file cannot be opened";
  return "the file cannot be read or written";
}

/**
 * Opens `path` and checks it. Throws a {@link SqliteFileError} (closing what was opened) when the
 * file is unusable, with `kind` telling a corrupt file from a failing disk.
 *
 * @example
 * ```ts
 * import { openSqlite } from "./sqlite_file.ts";
 * const dir = Deno.makeTempDirSync();
 * const db = openSqlite(`${dir}/x.db`, { synchronous: "normal" });
 * const mode = db.prepare("PRAGMA journal_mode").get() as { journal_mode: string };
 * db.close();
 * Deno.removeSync(dir, { recursive: true });
 * if (mode.journal_mode !== "wal") throw new Error(mode.journal_mode);
 * ```
 */
export function openSqlite(path: string, options: SqliteFileOptions = {}): DatabaseSync {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(path);
    configureSqlite(db, options);
    return db;
  } catch (err) {
    try {
      db?.close();
    } catch { /* not open */ }
    throw asFileError(path, err);
  }
}

/**
 * Applies Ferry's settings to an open connection and runs `quick_check` (what {@link openSqlite}
 * does after opening). Throws the underlying error.
 */
export function configureSqlite(db: DatabaseSync, options: SqliteFileOptions = {}): void {
  db.exec("PRAGMA busy_timeout = 5000");
  for (const sql of options.first ?? []) db.exec(sql);
  const mode = db.prepare("PRAGMA journal_mode = WAL").get() as { journal_mode: string };
  if (mode.journal_mode !== "wal") throw new Error(`journal_mode is ${mode.journal_mode}`);
  db.exec(`PRAGMA synchronous = ${options.synchronous === "normal" ? "NORMAL" : "FULL"}`);
  // After a checkpoint the WAL is cut back to 8 MiB instead of keeping its high-water size.
  db.exec("PRAGMA journal_size_limit = 8388608");
  if (options.autoCheckpointPages !== undefined) {
    db.exec(`PRAGMA wal_autocheckpoint = ${Math.max(1, Math.floor(options.autoCheckpointPages))}`);
  }
  const check = db.prepare("PRAGMA quick_check").all() as Array<{ quick_check: string }>;
  if (check.length !== 1 || check[0].quick_check !== "ok") {
    throw new Error(`integrity check failed: ${check.map((r) => r.quick_check).join("; ")}`);
  }
}

/** Wraps any error met while opening `path` as a classified {@link SqliteFileError}. */
export function asFileError(path: string, err: unknown): SqliteFileError {
  if (err instanceof SqliteFileError) return err;
  const kind = classifySqliteError(err);
  const detail = err instanceof Error ? err.message : String(err);
  return new SqliteFileError(
    kind,
    path,
    kind === "corrupt"
      ? `${path} is corrupt (${detail})`
      : `${path} cannot be used: ${describeIoFailure(err, path)} (${detail})`,
    { cause: err },
  );
}

/**
 * Renames a corrupt file and its `-wal` and `-shm` companions to `<path>.corrupt-<time>` (kept
 * for recovery); returns that path. Callers log it. Throws when the main file cannot be renamed
 * (then nothing was moved).
 */
export function setAside(path: string): string {
  const aside = `${path}.corrupt-${new Date().toISOString().replaceAll(":", "-")}`;
  Deno.renameSync(path, aside);
  for (const suffix of ["-wal", "-shm"]) {
    try {
      Deno.renameSync(path + suffix, aside + suffix);
    } catch { /* that part did not exist */ }
  }
  return aside;
}
