/**
 * How Ferry opens its SQLite files (the northbound spool, the MQTT state file): one busy
 * timeout, WAL journal, the chosen `synchronous` level, a WAL cut back to 8 MiB after checkpoints,
 * and a `quick_check` before anything is trusted; and how a corrupt file is set aside.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";

/** Settings of {@link openSqlite}. */
export interface SqliteFileOptions {
  /** `full` survives power loss; `normal` survives a crash of the process. @default "full" */
  synchronous?: "full" | "normal";
  /** Statements run first, before the journal mode (e.g. `PRAGMA auto_vacuum`, new files only). */
  first?: string[];
}

/**
 * Opens `path` and checks it. Throws the underlying error (closing what was opened) when the file
 * is unusable; callers turn it into their own "corrupt or unreadable" error.
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
    db.exec("PRAGMA busy_timeout = 5000");
    for (const sql of options.first ?? []) db.exec(sql);
    const mode = db.prepare("PRAGMA journal_mode = WAL").get() as { journal_mode: string };
    if (mode.journal_mode !== "wal") throw new Error(`journal_mode is ${mode.journal_mode}`);
    db.exec(`PRAGMA synchronous = ${options.synchronous === "normal" ? "NORMAL" : "FULL"}`);
    // After a checkpoint the WAL is cut back to 8 MiB instead of keeping its high-water size.
    db.exec("PRAGMA journal_size_limit = 8388608");
    const check = db.prepare("PRAGMA quick_check").all() as Array<{ quick_check: string }>;
    if (check.length !== 1 || check[0].quick_check !== "ok") {
      throw new Error(`integrity check failed: ${check.map((r) => r.quick_check).join("; ")}`);
    }
    return db;
  } catch (err) {
    try {
      db?.close();
    } catch { /* not open */ }
    throw err;
  }
}

/**
 * Renames a corrupt file and its `-wal` and `-shm` companions to `<path>.corrupt-<time>` (kept
 * for recovery); returns that path.
 */
export function setAside(path: string): string {
  const aside = `${path}.corrupt-${new Date().toISOString().replaceAll(":", "-")}`;
  for (const suffix of ["", "-wal", "-shm"]) {
    try {
      Deno.renameSync(path + suffix, aside + suffix);
    } catch { /* that part did not exist */ }
  }
  return aside;
}
