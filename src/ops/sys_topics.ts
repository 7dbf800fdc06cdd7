/**
 * `$SYS` broker statistics, as mosquitto publishes them (`man mosquitto`, BROKER STATUS): every
 * `intervalSec` the gateway publishes its counters on `$SYS/broker/…`, retained, each topic only
 * when its value changed (the uptime changes every time), so a new subscriber gets every value at
 * once and an idle gateway sends little.
 *
 * The publisher is a service of the gateway itself: it takes the core's port under the `system`
 * label (the core's own messages, not counted as messages received) and publishes as a service
 * identity whose ACL is `$SYS/broker/#`, through the same ACL, pipeline, retained store and router
 * as any client. Who reads them is the ACL's business (`acl.ts`): an account whose subscribe
 * filters name `$SYS` (`$SYS/#`); not devices, not anonymous clients, and a `#` subscription does
 * not match them ([MQTT-4.7.2-1]). They are never written to the state file.
 *
 * | topic                                    | value                                               |
 * |------------------------------------------|-----------------------------------------------------|
 * | `$SYS/broker/version`                    | `ferry 0.1.0`                                       |
 * | `$SYS/broker/uptime`                     | `N seconds`                                         |
 * | `$SYS/broker/clients/connected`          | open connections, every protocol                    |
 * | `$SYS/broker/clients/maximum`            | most connections open at once (sampled)             |
 * | `$SYS/broker/devices/online`             | devices online, every protocol (Ferry's own)        |
 * | `$SYS/broker/messages/received`, `/sent` | frames/packets/datagrams received and sent          |
 * | `$SYS/broker/publish/messages/received`  | messages accepted from clients                      |
 * | `$SYS/broker/publish/messages/sent`      | messages delivered to clients                       |
 * | `$SYS/broker/publish/messages/dropped`   | messages or frames dropped (refused, overflowed)    |
 * | `$SYS/broker/bytes/received`, `/sent`    | bytes received from and sent to clients             |
 * | `$SYS/broker/retained messages/count`    | retained topics                                     |
 * | `$SYS/broker/subscriptions/count`        | subscriptions                                       |
 * | `$SYS/broker/heap/current`               | V8 heap in use, bytes                               |
 *
 * @module
 */

import {
  type Core,
  type DevicePort,
  Identity,
  type PublishResult,
  type TimerHandle,
} from "../core/mod.ts";
import { VERSION } from "../version.ts";
import { defaultSysOptions, type SysOptions } from "./options.ts";

/** The prefix of every statistic. */
export const SYS_PREFIX = "$SYS/broker/";

/** What the publisher publishes as: the gateway's own service, allowed `$SYS/broker/#` only. */
const SYS_IDENTITY_ACL = Object.freeze({ publish: ["$SYS/broker/#"], subscribe: [] as string[] });

const encoder = new TextEncoder();

/**
 * The current statistics of `core`, by topic (without publishing them).
 *
 * @example
 * ```ts
 * import { Core } from "../core/mod.ts";
 * import { sysStatistics } from "./sys_topics.ts";
 * const core = new Core();
 * const s = sysStatistics(core, core.clock.now() - 5000);
 * await core.close();
 * if (s.get("$SYS/broker/uptime") !== "5 seconds") throw new Error(s.get("$SYS/broker/uptime"));
 * if (!s.get("$SYS/broker/version")?.startsWith("ferry ")) throw new Error();
 * ```
 */
export function sysStatistics(core: Core, startedAt: number, maxClients = 0): Map<string, string> {
  const s = core.stats;
  const connected = s.connections.total();
  let online = 0;
  for (const n of core.registry.onlineByProtocol().values()) online += n;
  const out = new Map<string, string>();
  const put = (topic: string, v: number | string) => out.set(SYS_PREFIX + topic, String(v));
  put("version", `ferry ${VERSION}`);
  put("uptime", `${Math.max(0, Math.floor((core.clock.now() - startedAt) / 1000))} seconds`);
  put("clients/connected", connected);
  put("clients/maximum", Math.max(maxClients, connected));
  put("devices/online", online);
  put("messages/received", s.framesIn.total());
  put("messages/sent", s.framesOut.total());
  put("publish/messages/received", s.messagesIn.total());
  put("publish/messages/sent", s.messagesOut.total());
  put("publish/messages/dropped", s.drops.total());
  put("bytes/received", s.bytesIn.total());
  put("bytes/sent", s.bytesOut.total());
  put("retained messages/count", core.retained.size);
  put("subscriptions/count", core.router.size);
  put("heap/current", Deno.memoryUsage().heapUsed);
  return out;
}

/** Tunables of {@link SysTopics}. */
export type SysTopicsOptions = Partial<SysOptions>;

/**
 * Publishes the `$SYS` statistics of a core on an interval.
 *
 * @example
 * ```ts
 * import { Core, type Message } from "../core/mod.ts";
 * import { SysTopics } from "./sys_topics.ts";
 * const core = new Core();
 * const got: Message[] = [];
 * core.subscribe("$SYS/#", { id: "ops", deliver: (m) => got.push(m) });
 * const sys = new SysTopics(core, { intervalSec: 10 });
 * sys.start(); // publishes once now, then every 10 s
 * await sys.close();
 * await core.close(); // drains the pipeline: the first round is delivered
 * const version = got.find((m) => m.topic === "$SYS/broker/version");
 * if (!version?.retain) throw new Error("not published");
 * ```
 */
export class SysTopics implements AsyncDisposable {
  #core: Core;
  #port: DevicePort;
  #who: Identity;
  #intervalMs: number;
  #startedAt: number;
  #last = new Map<string, string>();
  #maxClients = 0;
  #timer: TimerHandle | undefined;
  #closed = false;

  /** Binds the publisher to `core`; nothing is published before {@link start}. */
  constructor(core: Core, options: SysTopicsOptions = {}) {
    this.#core = core;
    this.#port = core.port({ name: "system" });
    this.#who = new Identity({ kind: "service", name: "$SYS", ...SYS_IDENTITY_ACL });
    this.#intervalMs = (options.intervalSec ?? defaultSysOptions.intervalSec) * 1000;
    this.#startedAt = core.clock.now();
  }

  /** Publishes now, then every interval (no-op when the interval is 0). */
  start(): void {
    if (this.#intervalMs <= 0 || this.#closed || this.#timer !== undefined) return;
    this.publish();
    this.#arm();
  }

  #arm(): void {
    const clock = this.#core.clock;
    this.#timer = clock.setTimeout(() => {
      this.#timer = undefined;
      if (this.#closed) return;
      this.publish();
      this.#arm();
    }, this.#intervalMs);
    clock.unref?.(this.#timer);
  }

  /**
   * Publishes the statistics whose value changed since the last round; returns how many were
   * published. A full pipeline refuses them: they are tried again next round.
   */
  publish(): number {
    const core = this.#core;
    if (core.closing) return 0;
    this.#maxClients = Math.max(this.#maxClients, core.stats.connections.total());
    let n = 0;
    for (const [topic, value] of sysStatistics(core, this.#startedAt, this.#maxClients)) {
      if (this.#last.get(topic) === value) continue;
      const r = this.#port.publish(this.#who, {
        topic,
        payload: encoder.encode(value),
        qos: 0,
        retain: true,
      });
      if (r instanceof Promise) { // a bridge forwards `$SYS` (northbound.forward): its spool first
        r.then((a) => this.#settled(topic, value, a), () => {});
        continue;
      }
      if (this.#settled(topic, value, r)) n++;
    }
    return n;
  }

  #settled(topic: string, value: string, r: PublishResult): boolean {
    if (r.ok) {
      this.#last.set(topic, value);
      return true;
    }
    if (r.reason !== "shutting_down") {
      this.#port.throttled.warn(
        "sys_refused",
        "$SYS statistics not published; next round tries again",
        {
          topic,
          reason: r.reason,
        },
      );
    }
    return false;
  }

  /** Stops publishing. Idempotent. */
  close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) this.#core.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    return Promise.resolve();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
