/**
 * The `retained` table of the state file: the {@link RetainedPersistence} the gateway gives the
 * core's retained store (`core.persistRetained`), so retained messages survive a restart.
 *
 * @module
 */

import type { Message, Protocol, QoS } from "../core/message.ts";
import type { RetainedPersistence } from "../core/retained_store.ts";
import { decodeProps, encodeProps } from "./message_props.ts";
import type { StateDb } from "./state_db.ts";

interface Row {
  topic: string;
  payload: Uint8Array;
  qos: number;
  ts: number;
  protocol: string;
  device: string | null;
  props: string | null;
}

/** The table of retained messages, one row per topic. */
const RETAINED_TABLE = `
CREATE TABLE IF NOT EXISTS retained (
  topic TEXT PRIMARY KEY,
  payload BLOB NOT NULL,
  qos INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  protocol TEXT NOT NULL,
  device TEXT,
  props TEXT
) WITHOUT ROWID;
`;

/**
 * Retained messages in the state file (writes go with the next group commit).
 *
 * @example
 * ```ts
 * import { createMessage } from "../core/message.ts";
 * import { RetainedTable } from "./retained_table.ts";
 * import { StateDb } from "./state_db.ts";
 * const dir = await Deno.makeTempDir();
 * const db = StateDb.open(`${dir}/state.db`);
 * new RetainedTable(db).set(createMessage({ topic: "a/b", payload: new Uint8Array([7]), retain: true }));
 * db.close();
 * const again = StateDb.open(`${dir}/state.db`);
 * const [m] = new RetainedTable(again).load();
 * if (m.topic !== "a/b" || m.payload[0] !== 7 || !m.retain) throw new Error();
 * again.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class RetainedTable implements RetainedPersistence {
  #db: StateDb;
  #put;
  #del;

  /** Uses the `retained` table of `db`. */
  constructor(db: StateDb) {
    this.#db = db;
    db.define(RETAINED_TABLE);
    const d = db.database;
    this.#put = d.prepare("INSERT OR REPLACE INTO retained VALUES (?,?,?,?,?,?,?)");
    this.#del = d.prepare("DELETE FROM retained WHERE topic = ?");
  }

  /** Every retained message on disk. */
  load(): Message[] {
    const rows = this.#db.database.prepare("SELECT * FROM retained").all() as unknown as Row[];
    return rows.map((r) => ({
      topic: r.topic,
      payload: new Uint8Array(r.payload),
      qos: r.qos as QoS,
      retain: true,
      ts: r.ts,
      protocol: r.protocol as Protocol,
      deviceId: r.device ?? undefined,
      properties: decodeProps(r.props),
    }));
  }

  /** Queues `msg` as its topic's retained message. */
  set(msg: Message): void {
    this.#db.write(this.#put, [
      msg.topic,
      msg.payload,
      msg.qos,
      msg.ts,
      msg.protocol,
      msg.deviceId ?? null,
      encodeProps(msg.properties),
    ]);
  }

  /** Queues the removal of `topic`'s retained message. */
  delete(topic: string): void {
    this.#db.write(this.#del, [topic]);
  }
}
