/**
 * Pending downlink of HTTP devices: a bounded per-device list of commands
 * (`devices/{id}/commands/{name}`) kept until the device acknowledges them or their time to live
 * runs out, plus the listeners (long-polls, SSE streams) to wake when one arrives. Every command
 * gets a server-wide increasing `seq`, the cursor of long-polls (`?after=`) and the SSE event id
 * (`Last-Event-ID`), so a client that reconnects resumes without gaps.
 *
 * @module
 */

import type { Clock } from "../../core/clock.ts";
import { type Message, ownPayload } from "../../core/message.ts";

/** One pending command. */
export interface PendingCommand {
  /** Server-wide increasing id. */
  seq: number;
  /** Command name (last topic level). */
  name: string;
  /** The command message. */
  msg: Message;
  /** Dropped after this (clock ms). */
  expiresAt: number;
}

/** Why a command was dropped unacknowledged. */
export type CommandDropReason = "queue_full" | "expired" | "too_many_devices";

/** Tunables of {@link CommandQueue}. */
export interface CommandQueueOptions {
  /** Time source. */
  clock: Clock;
  /** Commands kept per device; the oldest is dropped past it. */
  maxPerDevice: number;
  /** Time to live (a message's own earlier `expiresAt` wins). */
  ttlMs: number;
  /** Devices with pending commands at once. */
  maxDevices: number;
  /** Listeners per device at once. */
  maxListenersPerDevice: number;
  /** Called for every command dropped unacknowledged. */
  onDrop?: (deviceId: string, reason: CommandDropReason) => void;
}

/** Called (synchronously, must not throw) for each command queued for the device. */
export type CommandListener = (cmd: PendingCommand) => void;

/**
 * Per-device bounded command lists with listeners.
 *
 * @example
 * ```ts
 * import { FakeClock } from "../../core/clock.ts";
 * import { createMessage } from "../../core/message.ts";
 * import { CommandQueue } from "./command_queue.ts";
 * const clock = new FakeClock();
 * const q = new CommandQueue({ clock, maxPerDevice: 2, ttlMs: 1000, maxDevices: 10, maxListenersPerDevice: 1 });
 * const woke: string[] = [];
 * const stop = q.listen("d1", (c) => woke.push(c.name));
 * q.push("d1", "reboot", createMessage({ topic: "devices/d1/commands/reboot", payload: new Uint8Array() }));
 * if (woke[0] !== "reboot" || q.pending("d1").length !== 1) throw new Error();
 * q.ack("d1", "reboot");
 * if (q.pending("d1").length !== 0) throw new Error("not removed by the ack");
 * stop?.();
 * ```
 */
export class CommandQueue {
  #opts: CommandQueueOptions;
  #queues = new Map<string, PendingCommand[]>();
  #listeners = new Map<string, Set<CommandListener>>();
  #seq = 0;

  /** Creates empty queues. */
  constructor(options: CommandQueueOptions) {
    this.#opts = options;
  }

  /** Devices with pending commands. */
  get devices(): number {
    return this.#queues.size;
  }

  /** The last `seq` handed out (commands queued so far). */
  get lastSeq(): number {
    return this.#seq;
  }

  /** Queues a command and wakes the device's listeners; `undefined` when refused. */
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
      this.#opts.onDrop?.(deviceId, "queue_full");
    }
    const ttlAt = clock.now() + ttlMs;
    const exp = msg.properties?.expiresAt;
    const cmd: PendingCommand = {
      seq: ++this.#seq,
      name,
      msg: ownPayload(msg),
      expiresAt: exp !== undefined && exp < ttlAt ? exp : ttlAt,
    };
    q.push(cmd);
    const ls = this.#listeners.get(deviceId);
    if (ls) { for (const l of [...ls]) l(cmd); }
    return cmd;
  }

  /** Live commands of a device with `seq > after`, oldest first. */
  pending(deviceId: string, after = 0): PendingCommand[] {
    const q = this.#queues.get(deviceId);
    if (!q) return [];
    this.#purge(deviceId, q);
    if (q.length === 0) {
      this.#queues.delete(deviceId);
      return [];
    }
    return after > 0 ? q.filter((c) => c.seq > after) : [...q];
  }

  /**
   * Removes an acknowledged command: the one with `seq` if given (and named `name`), else the
   * oldest pending one named `name`. Returns it, or `undefined` when nothing matched.
   */
  ack(deviceId: string, name: string, seq?: number): PendingCommand | undefined {
    const q = this.#queues.get(deviceId);
    if (!q) return undefined;
    const i = q.findIndex((c) => c.name === name && (seq === undefined || c.seq === seq));
    if (i < 0) return undefined;
    const [cmd] = q.splice(i, 1);
    if (q.length === 0) this.#queues.delete(deviceId);
    return cmd;
  }

  /** Listeners of a device now. */
  listeners(deviceId: string): number {
    return this.#listeners.get(deviceId)?.size ?? 0;
  }

  /**
   * Adds a listener for a device's new commands; returns the function that removes it, or
   * `undefined` when the device already has `maxListenersPerDevice` listeners.
   */
  listen(deviceId: string, fn: CommandListener): (() => void) | undefined {
    let ls = this.#listeners.get(deviceId);
    if (!ls) this.#listeners.set(deviceId, ls = new Set());
    if (ls.size >= this.#opts.maxListenersPerDevice) return undefined;
    ls.add(fn);
    return () => {
      ls.delete(fn);
      if (ls.size === 0 && this.#listeners.get(deviceId) === ls) this.#listeners.delete(deviceId);
    };
  }

  /** Drops every command and listener. */
  clear(): void {
    this.#queues.clear();
    this.#listeners.clear();
  }

  #purge(deviceId: string, q: PendingCommand[]): void {
    const now = this.#opts.clock.now();
    for (let i = q.length - 1; i >= 0; i--) {
      if (q[i].expiresAt <= now) {
        q.splice(i, 1);
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
