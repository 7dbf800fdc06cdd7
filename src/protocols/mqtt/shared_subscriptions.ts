/**
 * MQTT 5 shared subscriptions (`$share/{ShareName}/{filter}`, MQTT 5 §4.8.2), also accepted from
 * 3.1.1 clients as mosquitto does. Each group is one core subscriber; every message is given to one
 * member session, round robin, preferring members that are connected.
 *
 * @module
 */

import type { DevicePort, QoS } from "../../core/mod.ts";
import type { MqttSession, SubscriptionOptions } from "./session.ts";

/** A parsed `$share/{group}/{filter}`. */
export interface SharedFilter {
  /** Share name. */
  group: string;
  /** The topic filter shared. */
  filter: string;
}

/**
 * Parses a shared subscription filter; returns `undefined` for an ordinary filter and an error
 * string for a malformed shared one ([MQTT-4.8.2-1], [MQTT-4.8.2-2]).
 *
 * @example
 * ```ts
 * import { parseSharedFilter } from "./shared_subscriptions.ts";
 * const s = parseSharedFilter("$share/g1/devices/+/telemetry");
 * if (typeof s !== "object" || s.group !== "g1" || s.filter !== "devices/+/telemetry") throw new Error();
 * if (typeof parseSharedFilter("$share/g+/x") !== "string") throw new Error();
 * ```
 */
export function parseSharedFilter(full: string): SharedFilter | string | undefined {
  if (!full.startsWith("$share/")) return undefined;
  const rest = full.slice(7);
  const slash = rest.indexOf("/");
  if (slash <= 0) return "a shared subscription needs a share name and a filter";
  const group = rest.slice(0, slash);
  if (group.includes("+") || group.includes("#")) return "the share name contains a wildcard";
  const filter = rest.slice(slash + 1);
  if (!filter) return "the shared filter is empty";
  return { group, filter };
}

interface Group {
  members: Map<MqttSession, SubscriptionOptions>;
  cursor: number;
  off: () => void;
}

/**
 * Every shared subscription group of a server.
 *
 * @example
 * ```ts
 * import { Core, createMessage } from "../../core/mod.ts";
 * import { MqttSession } from "./session.ts";
 * import { SharedSubscriptions } from "./shared_subscriptions.ts";
 * import { MQTT } from "./server.ts";
 * const core = new Core({ anonymous: true });
 * const port = core.port(MQTT);
 * const shared = new SharedSubscriptions(port);
 * const opts = { qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 } as const;
 * const a = new MqttSession("a", port, { maxQueued: 9, dropPolicy: "oldest", maxInflight: 9 });
 * const b = new MqttSession("b", port, { maxQueued: 9, dropPolicy: "oldest", maxInflight: 9 });
 * shared.join({ group: "g", filter: "t" }, a, opts);
 * shared.join({ group: "g", filter: "t" }, b, opts);
 * for (let i = 0; i < 4; i++) {
 *   await core.publish(createMessage({ topic: "t", payload: new Uint8Array([i]), qos: 1 }));
 * }
 * await core.close();
 * if (a.queued !== 2 || b.queued !== 2) throw new Error("not balanced");
 * ```
 */
export class SharedSubscriptions {
  #port: DevicePort;
  #groups = new Map<string, Group>();

  /** Creates the registry of groups. */
  constructor(port: DevicePort) {
    this.#port = port;
  }

  /** Number of groups. */
  get size(): number {
    return this.#groups.size;
  }

  /** Adds (or updates) a member; returns whether it was already a member. */
  join(s: SharedFilter, session: MqttSession, opts: SubscriptionOptions): boolean {
    const key = `${s.group}\u0000${s.filter}`;
    let g = this.#groups.get(key);
    if (!g) {
      const group: Group = { members: new Map(), cursor: 0, off: () => {} };
      group.off = this.#port.subscribe(s.filter, {
        id: `$share/${s.group}`,
        deliver: (msg) => {
          const members = [...group.members];
          if (!members.length) return;
          // Round robin, preferring a connected member (MQTT 5 §4.8.2).
          let pick = -1;
          for (let i = 0; i < members.length; i++) {
            const j = (group.cursor + i) % members.length;
            if (members[j][0].online) {
              pick = j;
              break;
            }
          }
          if (pick < 0) pick = group.cursor % members.length;
          group.cursor = pick + 1;
          const [member, o] = members[pick];
          try {
            member.enqueue({
              msg,
              qos: Math.min(o.qos, msg.qos) as QoS,
              retain: o.retainAsPublished && msg.retain,
              subIds: o.identifier !== undefined ? [o.identifier] : undefined,
            });
          } catch (err) {
            // Never let one member's failure stop the core's fan-out.
            this.#port.log.error("shared delivery failed", { group: s.group, error: err });
          }
        },
      });
      this.#groups.set(key, g = group);
    }
    const existed = g.members.has(session);
    g.members.set(session, opts);
    return existed;
  }

  /** Removes a member; returns whether it was one. */
  leave(s: SharedFilter, session: MqttSession): boolean {
    const key = `${s.group}\u0000${s.filter}`;
    const g = this.#groups.get(key);
    if (!g || !g.members.delete(session)) return false;
    if (g.members.size === 0) {
      g.off();
      this.#groups.delete(key);
    }
    return true;
  }
}
