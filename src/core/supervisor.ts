/**
 * The heartbeat supervisor: every keepalive and every idle deadline on one timer heap. A session
 * (a connection) is closed with `keepalive_timeout` unless it is touched in time; a sessionless
 * device (CoAP, HTTP) that is `seen` goes online and, after `idleMs` without being seen again,
 * offline.
 *
 * @module
 */

import type { DeadlineEntry, DeadlineQueue } from "./deadline_queue.ts";
import type { Logger } from "./logger.ts";
import type { Counter } from "./metrics.ts";
import type { Protocol } from "./message.ts";
import type { DeviceRegistry, SessionHandle } from "./registry.ts";

/** What the supervisor needs. */
export interface SupervisorOptions {
  /** The shared timer heap. */
  deadlines: DeadlineQueue;
  /** Presence of devices. */
  registry: DeviceRegistry;
  /** Sessions closed for a missed keepalive, by protocol. */
  reaped: Counter;
  /** Logger. */
  log: Logger;
}

/**
 * Watches keepalives and idle devices.
 *
 * @example
 * ```ts
 * import { FakeClock } from "./clock.ts";
 * import { DeadlineQueue } from "./deadline_queue.ts";
 * import { silentLogger } from "./logger.ts";
 * import { MetricsRegistry } from "./metrics.ts";
 * import { DeviceRegistry } from "./registry.ts";
 * import { Supervisor } from "./supervisor.ts";
 * const clock = new FakeClock();
 * const registry = new DeviceRegistry({ anonymous: true, now: () => clock.now() });
 * const sup = new Supervisor({
 *   deadlines: new DeadlineQueue({ clock, resolutionMs: 10 }),
 *   registry,
 *   reaped: new MetricsRegistry().counter("reaped", "r"),
 *   log: silentLogger,
 * });
 * sup.seen("d1", "coap", 1000);
 * if (registry.get("d1")?.state !== "online") throw new Error("not online");
 * clock.tick(1100);
 * if (registry.get("d1")?.state !== "offline") throw new Error("still online");
 * ```
 */
export class Supervisor {
  #deadlines: DeadlineQueue;
  #registry: DeviceRegistry;
  #reapedTotal: Counter;
  #log: Logger;
  #idle = new Map<string, DeadlineEntry>();
  #stopped = false;

  /** Creates the supervisor. */
  constructor(options: SupervisorOptions) {
    this.#deadlines = options.deadlines;
    this.#registry = options.registry;
    this.#reapedTotal = options.reaped;
    this.#log = options.log;
  }

  /**
   * Watches a session's keepalive: unless `touch`ed within `timeoutMs`, the session is closed
   * with `keepalive_timeout`. Callers pass 1.5x the keepalive.
   */
  supervise(session: SessionHandle, timeoutMs: number): DeadlineEntry {
    // One callback for every session (the entry carries the session): no closure per session.
    return this.#deadlines.add(timeoutMs, this.#reap, session);
  }

  #reap = (session: SessionHandle, entry: DeadlineEntry): void => {
    const timeoutMs = entry.timeoutMs;
    this.#reapedTotal.inc({ protocol: session.protocol });
    this.#log.info("keepalive expired", {
      session: session.sessionId,
      protocol: session.protocol,
      timeoutMs,
    });
    session.close({ code: "keepalive_timeout", message: `no frame for ${timeoutMs} ms` });
  };

  /**
   * Marks a sessionless device seen (from `address`, when known); it goes offline after `idleMs`
   * without another call.
   */
  seen(deviceId: string, protocol: Protocol, idleMs: number, address?: string): void {
    if (this.#stopped) return; // shutting down: presence no longer changes
    this.#registry.touch(deviceId, protocol, address);
    const e = this.#idle.get(deviceId);
    if (e?.active) return e.touch(idleMs);
    this.#idle.set(deviceId, this.#deadlines.add(idleMs, this.#idleExpired, deviceId));
  }

  #idleExpired = (deviceId: string): void => {
    this.#idle.delete(deviceId);
    this.#registry.markIdle(deviceId);
  };

  /** Presence no longer changes (the gateway is shutting down). */
  stop(): void {
    this.#stopped = true;
  }
}
