/**
 * The gateway's one store of pending commands. Commands are the messages published on
 * `devices/{id}/commands/{name}`; the store subscribes once to `devices/+/commands/+` (while some
 * adapter uses it) and keeps, per device, a bounded list of the commands not yet delivered, each
 * with a gateway-wide increasing `seq` and an expiry (`ttlMs`, or the message's own `expiresAt`
 * when earlier). It knows no protocol: adapters take commands from it.
 *
 * Delivery is once per command, on whichever protocol the device uses:
 *
 * - An adapter that hands a command to the device **claims** it for its protocol. A claimed
 *   command is invisible to the other protocols, so a device that talks two protocols at once does
 *   not get it twice.
 * - The command **leaves** the store when the adapter says it was delivered: on the device's
 *   acknowledgement ({@link CommandStore.ack}, {@link CommandStore.remove}) or, for protocols
 *   without one, once it was handed over.
 * - An adapter that could not deliver a claimed command **releases** it; the listeners hear of it
 *   again, so another protocol may deliver it.
 *
 * Devices whose protocol delivers commands itself (its sessions subscribe to their own command
 * topics, as MQTT's do) are left alone: see {@link CommandStoreOptions.deliversOwnCommands}.
 *
 * @module
 */

import type { Clock } from "./clock.ts";
import { defaults, type Infer } from "../config/schema.ts";
import { commandsOptionsSchema } from "./options.ts";
import { type Message, ownPayload, type Protocol } from "./message.ts";
import { parseTopic } from "./topics.ts";

/** One pending command. */
export interface PendingCommand {
  /** Gateway-wide increasing id. */
  readonly seq: number;
  /** The device it is for. */
  readonly deviceId: string;
  /** Command name (last topic level). */
  readonly name: string;
  /** The command message. */
  readonly msg: Message;
  /** Dropped after this (clock ms). */
  readonly expiresAt: number;
  /** The protocol that handed it to the device and awaits its acknowledgement, if any. */
  claimedBy: Protocol | undefined;
}

/** Why a command was dropped undelivered (`ferry_dropped_total{reason="command_<reason>"}`). */
export type CommandDropReason = "queue_full" | "expired" | "too_many_devices";

/** The limits of a {@link CommandStore}. */
export type CommandStoreLimits = Infer<typeof commandsOptionsSchema>;

/** Tunables of {@link CommandStore}. */
export interface CommandStoreOptions extends CommandStoreLimits {
  /** Time source. */
  clock: Clock;
  /** Subscribes to the bus (the core's `subscribe`); needed by {@link CommandStore.open}. */
  subscribe?: (filter: string, sub: { id: string; deliver(msg: Message): void }) => () => void;
  /** The protocol a device was last seen on (the registry's), for {@link deliversOwnCommands}. */
  protocolOf?: (deviceId: string) => Protocol | undefined;
  /**
   * True for protocols whose devices subscribe to their commands themselves (registered so by
   * their adapter); commands for a device last seen on one of them are not kept. @default none
   */
  deliversOwnCommands?: (protocol: Protocol) => boolean;
  /** Called for every command dropped undelivered. */
  onDrop?: (deviceId: string, reason: CommandDropReason) => void;
}

/** Defaults of the limits. */
export const defaultCommandStoreLimits: Readonly<CommandStoreLimits> = Object.freeze(
  defaults(commandsOptionsSchema),
);

/** Called (synchronously, must not throw) when a command becomes available: new or released. */
export type CommandListener = (cmd: PendingCommand) => void;

/** Which commands {@link CommandStore.pending} lists. */
export interface PendingQuery {
  /** Only commands with a larger `seq`. @default 0 */
  after?: number;
  /** Only commands unclaimed or claimed by this protocol; every command when absent. */
  via?: Protocol;
}

/**
 * Per-device bounded lists of pending commands, with claims and listeners.
 *
 * @example
 * ```ts
 * import { FakeClock } from "./clock.ts";
 * import { createMessage } from "./message.ts";
 * import { CommandStore } from "./command_store.ts";
 * const store = new CommandStore({ clock: new FakeClock(), maxPerDevice: 2, ttlMs: 1000, maxDevices: 10 });
 * const cmd = store.accept(createMessage({ topic: "devices/d1/commands/reboot", payload: new Uint8Array() }))!;
 * if (!store.claim(cmd, "http")) throw new Error("not claimed");
 * if (store.pending("d1", { via: "coap" }).length !== 0) throw new Error("claimed by http");
 * store.ack("d1", "reboot");
 * if (store.count("d1") !== 0) throw new Error("not removed by the ack");
 * ```
 */
export class CommandStore {
  #opts: CommandStoreOptions;
  #queues = new Map<string, PendingCommand[]>();
  #listeners = new Map<string, Set<CommandListener>>();
  #watchers = new Set<CommandListener>();
  #seq = 0;
  #size = 0;
  #users = 0;
  #unsubscribe: (() => void) | undefined;

  /** Creates an empty store. */
  constructor(options: CommandStoreOptions) {
    for (const k of ["maxPerDevice", "ttlMs", "maxDevices"] as const) {
      const v = options[k];
      if (!Number.isSafeInteger(v) || v < 1) {
        throw new RangeError(`Cannot create the command store: ${k} must be an integer >= 1`);
      }
    }
    this.#opts = options;
  }

  /** The limits in force. */
  get limits(): Readonly<CommandStoreLimits> {
    const { maxPerDevice, ttlMs, maxDevices } = this.#opts;
    return { maxPerDevice, ttlMs, maxDevices };
  }

  /** Devices with pending commands. */
  get devices(): number {
    return this.#queues.size;
  }

  /** Pending commands of every device (expired ones included until they are next looked at). */
  get size(): number {
    return this.#size;
  }

  /** The last `seq` handed out. */
  get lastSeq(): number {
    return this.#seq;
  }

  /** True while subscribed to the bus (some adapter holds it open). */
  get subscribed(): boolean {
    return this.#unsubscribe !== undefined;
  }

  /**
   * Starts keeping commands: the first call subscribes to `devices/+/commands/+`. Returns the
   * function that gives the use back; when the last user does, the store unsubscribes and forgets
   * every command and listener. Each adapter that delivers commands holds it open while it runs.
   */
  open(): () => void {
    if (this.#users++ === 0) {
      const subscribe = this.#opts.subscribe;
      if (!subscribe) throw new TypeError("Cannot open the command store: no subscribe function");
      this.#unsubscribe = subscribe("devices/+/commands/+", {
        id: "core:commands",
        deliver: (msg) => void this.accept(msg),
      });
    }
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.#users > 0) return;
      this.#unsubscribe?.();
      this.#unsubscribe = undefined;
      this.clear();
    };
  }

  /**
   * Keeps a command message (topic `devices/{id}/commands/{name}`) unless its device delivers
   * commands itself; returns it, or `undefined` when not kept.
   */
  accept(msg: Message): PendingCommand | undefined {
    const t = parseTopic(msg.topic);
    if (t.kind !== "command") return undefined;
    const p = this.#opts.protocolOf?.(t.deviceId);
    if (p !== undefined && this.#opts.deliversOwnCommands?.(p)) return undefined;
    return this.push(t.deviceId, t.name, msg);
  }

  /** Queues a command and tells the listeners; `undefined` when refused (too many devices). */
  push(deviceId: string, name: string, msg: Message): PendingCommand | undefined {
    const { clock, maxPerDevice, ttlMs, maxDevices } = this.#opts;
    let q = this.#queues.get(deviceId);
    if (q) this.#purge(deviceId, q);
    if (!q) {
      if (this.#queues.size >= maxDevices) this.#sweep();
      if (this.#queues.size >= maxDevices) {
        this.#opts.onDrop?.(deviceId, "too_many_devices");
        return undefined;
      }
      q = [];
      this.#queues.set(deviceId, q);
    }
    while (q.length >= maxPerDevice) {
      q.shift();
      this.#size--;
      this.#opts.onDrop?.(deviceId, "queue_full");
    }
    const ttlAt = clock.now() + ttlMs;
    const exp = msg.properties?.expiresAt;
    const cmd: PendingCommand = {
      seq: ++this.#seq,
      deviceId,
      name,
      msg: ownPayload(msg),
      expiresAt: exp !== undefined && exp < ttlAt ? exp : ttlAt,
      claimedBy: undefined,
    };
    q.push(cmd);
    this.#size++;
    this.#announce(cmd);
    return cmd;
  }

  /** Live commands of a device, oldest first (see {@link PendingQuery}). */
  pending(deviceId: string, query: PendingQuery = {}): PendingCommand[] {
    const q = this.#live(deviceId);
    if (!q) return [];
    const after = query.after ?? 0;
    const via = query.via;
    return q.filter((c) =>
      c.seq > after && (via === undefined || c.claimedBy === undefined || c.claimedBy === via)
    );
  }

  /** The oldest live command of a device that protocol `via` may deliver. */
  next(deviceId: string, via: Protocol): PendingCommand | undefined {
    const q = this.#live(deviceId);
    return q?.find((c) => c.claimedBy === undefined || c.claimedBy === via);
  }

  /** Live commands of a device, claimed or not. */
  count(deviceId: string): number {
    return this.#live(deviceId)?.length ?? 0;
  }

  /**
   * Claims a command for the protocol about to hand it to the device: true when it is still
   * pending and not claimed by another protocol.
   */
  claim(cmd: PendingCommand, via: Protocol): boolean {
    if (cmd.claimedBy !== undefined && cmd.claimedBy !== via) return false;
    if (!this.#has(cmd) || cmd.expiresAt <= this.#opts.clock.now()) return false;
    cmd.claimedBy = via;
    return true;
  }

  /** Gives a claim back (the device did not take it); the listeners hear of the command again. */
  release(cmd: PendingCommand, via: Protocol): void {
    if (cmd.claimedBy !== via) return;
    cmd.claimedBy = undefined;
    if (this.#has(cmd)) this.#announce(cmd);
  }

  /** Removes command `seq` of a device (delivered); returns it, or `undefined` when not pending. */
  remove(deviceId: string, seq: number): PendingCommand | undefined {
    return this.#take(deviceId, (c) => c.seq === seq);
  }

  /**
   * Removes a command the device acknowledged: the one with `seq` if given (and named `name`),
   * else the oldest pending one named `name`. Returns it, or `undefined` when nothing matched.
   */
  ack(deviceId: string, name: string, seq?: number): PendingCommand | undefined {
    return this.#take(deviceId, (c) => c.name === name && (seq === undefined || c.seq === seq));
  }

  /** Listeners of one device now. */
  listeners(deviceId: string): number {
    return this.#listeners.get(deviceId)?.size ?? 0;
  }

  /** Calls `fn` for each command of `deviceId` that becomes available; returns the remover. */
  listen(deviceId: string, fn: CommandListener): () => void {
    let ls = this.#listeners.get(deviceId);
    if (!ls) this.#listeners.set(deviceId, ls = new Set());
    ls.add(fn);
    return () => {
      ls.delete(fn);
      if (ls.size === 0 && this.#listeners.get(deviceId) === ls) this.#listeners.delete(deviceId);
    };
  }

  /** Calls `fn` for each command of any device that becomes available; returns the remover. */
  watch(fn: CommandListener): () => void {
    this.#watchers.add(fn);
    return () => void this.#watchers.delete(fn);
  }

  /** Drops every command and listener. */
  clear(): void {
    this.#queues.clear();
    this.#listeners.clear();
    this.#watchers.clear();
    this.#size = 0;
  }

  #announce(cmd: PendingCommand): void {
    // Each listener may deliver it; once one claimed or removed it, the others need not look.
    for (const fn of [...this.#watchers]) {
      fn(cmd);
      if (cmd.claimedBy !== undefined || !this.#has(cmd)) return;
    }
    const ls = this.#listeners.get(cmd.deviceId);
    if (!ls) return;
    for (const fn of [...ls]) {
      fn(cmd);
      if (cmd.claimedBy !== undefined || !this.#has(cmd)) return;
    }
  }

  #has(cmd: PendingCommand): boolean {
    return this.#queues.get(cmd.deviceId)?.includes(cmd) ?? false;
  }

  #take(deviceId: string, match: (c: PendingCommand) => boolean): PendingCommand | undefined {
    const q = this.#queues.get(deviceId);
    if (!q) return undefined;
    const i = q.findIndex(match);
    if (i < 0) return undefined;
    const [cmd] = q.splice(i, 1);
    this.#size--;
    if (q.length === 0) this.#queues.delete(deviceId);
    return cmd;
  }

  #live(deviceId: string): PendingCommand[] | undefined {
    const q = this.#queues.get(deviceId);
    if (!q) return undefined;
    this.#purge(deviceId, q);
    if (q.length === 0) {
      this.#queues.delete(deviceId);
      return undefined;
    }
    return q;
  }

  #purge(deviceId: string, q: PendingCommand[]): void {
    const now = this.#opts.clock.now();
    for (let i = q.length - 1; i >= 0; i--) {
      if (q[i].expiresAt <= now) {
        q.splice(i, 1);
        this.#size--;
        this.#opts.onDrop?.(deviceId, "expired");
      }
    }
  }

  #sweep(): void {
    for (const [id, q] of this.#queues) {
      this.#purge(id, q);
      if (q.length === 0) this.#queues.delete(id);
    }
  }
}
