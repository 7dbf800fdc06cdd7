/**
 * Pending downlink for sleepy CoAP devices: a bounded per-device FIFO of command messages
 * (`devices/{id}/commands/{name}`) with a time to live, so a device that wakes and asks
 * `GET /d/{id}/commands` (or observes it) receives what was published while it slept.
 *
 * @module
 */

import type { Clock } from "../../core/clock.ts";
import { type Message, ownPayload } from "../../core/message.ts";

/** One queued command. */
export interface PendingCommand {
  /** Server-wide increasing number (sent as the ETag so devices can spot repeats). */
  seq: number;
  /** Command name (last topic level). */
  name: string;
  /** The command message. */
  msg: Message;
  /** Dropped after this (clock ms). */
  expiresAt: number;
}

/** Tunables of {@link CommandQueue}. */
export interface CommandQueueOptions {
  /** Time source. */
  clock: Clock;
  /** Commands kept per device; the oldest is dropped past it. */
  maxPerDevice: number;
  /** Time to live of a queued command (a message's own `expiresAt` wins when earlier). */
  ttlMs: number;
  /** Devices with a queue at once; commands for further devices are refused. */
  maxDevices: number;
  /** Called for each command dropped (full queue, expiry, too many devices). */
  onDrop?: (deviceId: string, reason: "queue_full" | "expired" | "too_many_devices") => void;
}

/**
 * Per-device bounded command queues.
 *
 * @example
 * ```ts
 * import { FakeClock } from "../../core/clock.ts";
 * import { createMessage } from "../../core/message.ts";
 * import { CommandQueue } from "./command_queue.ts";
 * const clock = new FakeClock();
 * const q = new CommandQueue({ clock, maxPerDevice: 2, ttlMs: 1000, maxDevices: 10 });
 * q.push("s1", "reboot", createMessage({ topic: "devices/s1/commands/reboot", payload: new Uint8Array() }));
 * if (q.head("s1")?.name !== "reboot") throw new Error();
 * clock.tick(1000);
 * if (q.head("s1")) throw new Error("not expired");
 * ```
 */
export class CommandQueue {
  #opts: CommandQueueOptions;
  #queues = new Map<string, PendingCommand[]>();
  #seq = 0;

  /** Creates empty queues. */
  constructor(options: CommandQueueOptions) {
    this.#opts = options;
  }

  /** Devices with pending commands. */
  get devices(): number {
    return this.#queues.size;
  }

  /** Queues a command; false when refused (too many devices). */
  push(deviceId: string, name: string, msg: Message): boolean {
    const { clock, maxPerDevice, ttlMs, maxDevices } = this.#opts;
    let q = this.#queues.get(deviceId);
    if (q) this.#purge(deviceId, q);
    if (!q) {
      if (this.#queues.size >= maxDevices) {
        this.#opts.onDrop?.(deviceId, "too_many_devices");
        return false;
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
    q.push({
      seq: ++this.#seq,
      name,
      msg: ownPayload(msg),
      expiresAt: exp !== undefined && exp < ttlAt ? exp : ttlAt,
    });
    return true;
  }

  /** The oldest live command of a device. */
  head(deviceId: string): PendingCommand | undefined {
    const q = this.#queues.get(deviceId);
    if (!q) return undefined;
    this.#purge(deviceId, q);
    if (q.length === 0) this.#queues.delete(deviceId);
    return q[0];
  }

  /** Removes command `seq` (after delivery); true if it was queued. */
  remove(deviceId: string, seq: number): boolean {
    const q = this.#queues.get(deviceId);
    if (!q) return false;
    const i = q.findIndex((c) => c.seq === seq);
    if (i < 0) return false;
    q.splice(i, 1);
    if (q.length === 0) this.#queues.delete(deviceId);
    return true;
  }

  /** Pending commands of a device. */
  count(deviceId: string): number {
    return this.#queues.get(deviceId)?.length ?? 0;
  }

  /** Drops everything. */
  clear(): void {
    this.#queues.clear();
  }

  #purge(deviceId: string, q: PendingCommand[]): void {
    const now = this.#opts.clock.now();
    while (q.length > 0 && q[0].expiresAt <= now) {
      q.shift();
      this.#opts.onDrop?.(deviceId, "expired");
    }
  }
}
