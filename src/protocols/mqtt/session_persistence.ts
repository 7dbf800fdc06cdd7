/**
 * Persistent MQTT sessions in the state file (`src/persistence/state_db.ts`): the
 * {@link SessionJournal} of every session that outlives its connection (3.1.1 clean session 0, v5
 * Session Expiry > 0), and the loader that gives them back after a restart.
 *
 * - `mqtt_sessions`: one row per session: client id, protocol version, Session Expiry, time of
 *   disconnect (`NULL` while connected), next packet id, subscriptions with their options (v5
 *   subscription identifiers, shared `$share/…` filters included) and the QoS 2 packet ids
 *   received and not yet released, as JSON.
 * - `mqtt_messages`: one row per QoS 1/2 delivery queued or in flight, ordered by a per-session
 *   sequence number; `packet_id`/`state` are set once it is in flight (`publish` until
 *   PUBACK/PUBREC, `pubrel` until PUBCOMP). A delivery completed before its row was committed
 *   never reaches the disk (the pending insert is cancelled).
 * - Clean sessions, and sessions with expiry 0, are never written.
 * - Writes share the state file's group commit (one transaction per event-loop turn).
 * - Bounded by the session limits: at most `maxQueuedMessages` + `maxInflight` rows per session,
 *   `maxSessions` sessions.
 * - Wills are not kept: a will belongs to the connection, and every connection died with the
 *   process; like mosquitto, Ferry does not publish wills of connections that were open at a
 *   crash when it starts again (see `docs/mqtt.md`).
 *
 * @module
 */

import type { Message, Protocol, QoS } from "../../core/mod.ts";
import { decodeProps, encodeProps } from "../../persistence/message_props.ts";
import type { StateDb, StateOp } from "../../persistence/state_db.ts";
import type {
  InflightEntry,
  MqttSession,
  Outgoing,
  SessionJournal,
  SessionState,
  SubscriptionOptions,
} from "./session.ts";

/** A persistent session per row, and its queued and in-flight messages, one row each. */
const SESSION_TABLES = `
CREATE TABLE IF NOT EXISTS mqtt_sessions (
  client_id TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  expiry_sec INTEGER NOT NULL,
  disconnected_at INTEGER,
  next_id INTEGER NOT NULL,
  subs TEXT NOT NULL,
  inbound TEXT NOT NULL,
  owner TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mqtt_messages (
  client_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  packet_id INTEGER,
  state TEXT,
  qos INTEGER NOT NULL,
  retain INTEGER NOT NULL,
  sub_ids TEXT,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  msg_qos INTEGER NOT NULL,
  msg_retain INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  protocol TEXT NOT NULL,
  device TEXT,
  props TEXT,
  PRIMARY KEY (client_id, seq)
) WITHOUT ROWID;
`;

/** A session as found in the state file. */
export interface StoredSession {
  /** Client identifier. */
  clientId: string;
  /** Protocol level of its last connection (3, 4 or 5). */
  version: number;
  /** Session Expiry Interval, seconds (0xFFFFFFFF: never). */
  expirySec: number;
  /** When its connection ended (clock ms); `undefined` if it was connected when the process died. */
  disconnectedAt?: number;
  /** Subscriptions, queue, in-flight window, QoS 2 ids, next packet id. */
  state: SessionState;
  /** Highest journal sequence number used. */
  lastSeq: number;
  /** The identity that owns it (`Identity.key`), when recorded. */
  owner?: string;
}

interface SessionRow {
  client_id: string;
  version: number;
  expiry_sec: number;
  disconnected_at: number | null;
  next_id: number;
  subs: string;
  inbound: string;
  owner: string | null;
}

interface MessageRow {
  client_id: string;
  seq: number;
  packet_id: number | null;
  state: string | null;
  qos: number;
  retain: number;
  sub_ids: string | null;
  topic: string;
  payload: Uint8Array;
  msg_qos: number;
  msg_retain: number;
  ts: number;
  protocol: string;
  device: string | null;
  props: string | null;
}

interface SubsJson {
  s: Array<[string, SubscriptionOptions]>;
  sh: Array<[string, SubscriptionOptions]>;
}

/**
 * The journal of persistent sessions, on the state file.
 *
 * @example
 * ```ts
 * import { Core } from "../../core/mod.ts";
 * import { StateDb } from "../../persistence/state_db.ts";
 * import { MqttSession } from "./session.ts";
 * import { SessionPersistence } from "./session_persistence.ts";
 * import { MQTT } from "./server.ts";
 * const dir = await Deno.makeTempDir();
 * const db = StateDb.open(`${dir}/state.db`);
 * const core = new Core({ anonymous: true });
 * const s = new MqttSession("c1", core.port(MQTT), { maxQueued: 10, dropPolicy: "oldest", maxInflight: 4 });
 * s.expirySec = 60;
 * new SessionPersistence(db).track(s, 4);
 * s.subscribe("a/#", { qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 });
 * db.close();
 * const again = StateDb.open(`${dir}/state.db`);
 * const [stored] = new SessionPersistence(again).load();
 * if (stored.clientId !== "c1" || stored.state.subscriptions[0][0] !== "a/#") throw new Error();
 * again.close();
 * s.destroy();
 * await core.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SessionPersistence implements SessionJournal {
  #db: StateDb;
  #upsert;
  #update;
  #insertMsg;
  #sentMsg;
  #releasedMsg;
  #deleteMsg;
  #deleteSession;
  #deleteMessages;
  #changes = new WeakMap<MqttSession, StateOp>();

  /** Uses (and creates) the `mqtt_sessions` and `mqtt_messages` tables of `db`. */
  constructor(db: StateDb) {
    this.#db = db;
    db.define(SESSION_TABLES);
    const d = db.database;
    // Files written before sessions recorded their owner get the column (empty: unknown owner).
    const columns = d.prepare("PRAGMA table_info(mqtt_sessions)").all() as Array<{ name: string }>;
    if (!columns.some((c) => c.name === "owner")) {
      d.exec("ALTER TABLE mqtt_sessions ADD COLUMN owner TEXT");
    }
    this.#upsert = d.prepare(
      "INSERT OR REPLACE INTO mqtt_sessions " +
        "(client_id, version, expiry_sec, disconnected_at, next_id, subs, inbound, owner) " +
        "VALUES (?,?,?,?,?,?,?,?)",
    );
    this.#update = d.prepare(
      "UPDATE mqtt_sessions SET subs = ?, inbound = ?, next_id = ? WHERE client_id = ?",
    );
    this.#insertMsg = d.prepare(
      "INSERT OR REPLACE INTO mqtt_messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    );
    this.#sentMsg = d.prepare(
      "UPDATE mqtt_messages SET packet_id = ?, state = 'publish' WHERE client_id = ? AND seq = ?",
    );
    this.#releasedMsg = d.prepare(
      "UPDATE mqtt_messages SET state = 'pubrel' WHERE client_id = ? AND seq = ?",
    );
    this.#deleteMsg = d.prepare("DELETE FROM mqtt_messages WHERE client_id = ? AND seq = ?");
    this.#deleteSession = d.prepare("DELETE FROM mqtt_sessions WHERE client_id = ?");
    this.#deleteMessages = d.prepare("DELETE FROM mqtt_messages WHERE client_id = ?");
  }

  /** The state file's pending-writes view (for acknowledging only once state is durable). */
  get db(): StateDb {
    return this.#db;
  }

  /** Every stored session with its queue and in-flight window, in journal order. */
  load(): StoredSession[] {
    const d = this.#db.database;
    const sessions = new Map<string, StoredSession>();
    for (const r of d.prepare("SELECT * FROM mqtt_sessions").all() as unknown as SessionRow[]) {
      const subs = JSON.parse(r.subs) as SubsJson;
      sessions.set(r.client_id, {
        clientId: r.client_id,
        version: r.version,
        expirySec: r.expiry_sec,
        disconnectedAt: r.disconnected_at ?? undefined,
        lastSeq: 0,
        owner: r.owner ?? undefined,
        state: {
          subscriptions: subs.s,
          shared: subs.sh,
          inbound: JSON.parse(r.inbound) as number[],
          nextId: r.next_id,
          queue: [],
          inflight: [],
        },
      });
    }
    const orphans = new Set<string>();
    const rows = d.prepare("SELECT * FROM mqtt_messages ORDER BY client_id, seq")
      .all() as unknown as MessageRow[];
    for (const r of rows) {
      const s = sessions.get(r.client_id);
      if (!s) {
        orphans.add(r.client_id);
        continue;
      }
      s.lastSeq = r.seq;
      const msg: Message = {
        topic: r.topic,
        payload: new Uint8Array(r.payload),
        qos: r.msg_qos as QoS,
        retain: r.msg_retain === 1,
        ts: r.ts,
        protocol: r.protocol as Protocol,
        deviceId: r.device ?? undefined,
        properties: decodeProps(r.props),
      };
      const out: Outgoing = {
        msg,
        qos: r.qos as QoS,
        retain: r.retain === 1,
        subIds: r.sub_ids ? JSON.parse(r.sub_ids) as number[] : undefined,
        seq: r.seq,
      };
      if (r.packet_id === null) s.state.queue.push(out);
      else {
        s.state.inflight.push({
          ...out,
          packetId: r.packet_id,
          state: r.state === "pubrel" ? "pubrel" : "publish",
        });
      }
    }
    for (const id of orphans) this.#db.write(this.#deleteMessages, [id]);
    return [...sessions.values()];
  }

  /**
   * Starts journaling `s` (a session that outlives its connection): writes its row and whatever
   * it already holds, and makes this its journal.
   */
  track(s: MqttSession, version: number): void {
    const snap = s.snapshot();
    s.journal = this;
    this.save(s, version, undefined);
    for (const out of snap.inflight) this.added(s, out);
    for (const out of snap.queue) this.added(s, out);
  }

  /** Writes the session row: expiry, version, time of disconnect (`undefined`: connected). */
  save(s: MqttSession, version: number, disconnectedAt: number | undefined): void {
    const snap = s.snapshot(false);
    this.#changes.delete(s);
    this.#db.write(this.#upsert, [
      s.clientId,
      version,
      s.expirySec,
      disconnectedAt ?? null,
      snap.nextId,
      JSON.stringify({ s: snap.subscriptions, sh: snap.shared } satisfies SubsJson),
      JSON.stringify(snap.inbound),
      s.owner ?? null,
    ]);
  }

  /** Forgets a session (ended, expired, or no longer outliving its connection). */
  forget(s: MqttSession): void {
    if (s.journal === this) s.journal = undefined;
    this.#changes.delete(s);
    this.forgetId(s.clientId);
  }

  /** Forgets the stored session of `clientId`. */
  forgetId(clientId: string): void {
    this.#db.write(this.#deleteMessages, [clientId]);
    this.#db.write(this.#deleteSession, [clientId]);
  }

  /** {@inheritDoc SessionJournal.added} */
  added(s: MqttSession, out: Outgoing): void {
    const seq = out.seq = ++s.seq;
    const m = out.msg;
    const e = out as Partial<InflightEntry>;
    out.op = this.#db.write(this.#insertMsg, [
      s.clientId,
      seq,
      e.packetId ?? null,
      e.state ?? null,
      out.qos,
      out.retain ? 1 : 0,
      out.subIds ? JSON.stringify(out.subIds) : null,
      m.topic,
      m.payload,
      m.qos,
      m.retain ? 1 : 0,
      m.ts,
      m.protocol,
      m.deviceId ?? null,
      encodeProps(m.properties),
    ]);
  }

  /** {@inheritDoc SessionJournal.sent} */
  sent(s: MqttSession, e: InflightEntry): void {
    const op = e.op as StateOp | undefined;
    if (this.#db.isPending(op) && op.stmt === this.#insertMsg) {
      op.args[2] = e.packetId;
      op.args[3] = "publish";
      return;
    }
    e.op = this.#db.write(this.#sentMsg, [e.packetId, s.clientId, e.seq!]);
  }

  /** {@inheritDoc SessionJournal.released} */
  released(s: MqttSession, e: InflightEntry): void {
    const op = e.op as StateOp | undefined;
    if (this.#db.isPending(op) && op.stmt === this.#insertMsg) {
      op.args[3] = "pubrel";
      return;
    }
    this.#db.write(this.#releasedMsg, [s.clientId, e.seq!]);
  }

  /** {@inheritDoc SessionJournal.removed} */
  removed(s: MqttSession, out: Outgoing): void {
    const op = out.op as StateOp | undefined;
    if (this.#db.isPending(op) && op.stmt === this.#insertMsg) {
      op.dead = true; // never written: nothing to delete
      return;
    }
    this.#db.write(this.#deleteMsg, [s.clientId, out.seq!]);
  }

  /** {@inheritDoc SessionJournal.changed} */
  changed(s: MqttSession): void {
    const snap = s.snapshot(false);
    const args = [
      JSON.stringify({ s: snap.subscriptions, sh: snap.shared } satisfies SubsJson),
      JSON.stringify(snap.inbound),
      snap.nextId,
      s.clientId,
    ];
    const op = this.#changes.get(s);
    if (this.#db.isPending(op)) {
      op.args = args;
      return;
    }
    this.#changes.set(s, this.#db.write(this.#update, args));
  }
}
