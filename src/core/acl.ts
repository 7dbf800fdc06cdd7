/**
 * Who may publish and subscribe where. By default a device may publish only its own telemetry
 * (`devices/{its id}/telemetry[/{channel}]`) and its acknowledgements of commands
 * (`devices/{its id}/acks/{name}`), exactly as the namespace spells them (its commands and status
 * belong to the gateway; nothing else under its id exists), and subscribe only inside its own
 * subtree. Configured device rules (`auth.deviceAcl`, with `{id}` substituted) replace
 * that default. A service account gets the filters its config lists; the anonymous principal
 * exists only when the configuration allows it.
 *
 * Topics starting with `$` (`$SYS/…`, the gateway's own statistics) are the server's: a wildcard
 * in the first level of an ACL filter does not reach them, as it does not match them
 * ([MQTT-4.7.2-1]), and anonymous clients may neither publish nor subscribe under `$SYS`. Only an
 * account whose ACL names them (`$SYS/#`) reads them.
 *
 * @module
 */

import { topicMatches } from "./topic_router.ts";
import { CHANNEL_RE, COMMAND_NAME_RE, parseTopic } from "./topics.ts";

/** A named channel: the namespace's channel grammar, not empty (the default channel has no level). */
const CHANNEL_OK = new RegExp(CHANNEL_RE.source.replace("{0,64}", "{1,64}"));

/** An authenticated party. */
export type Principal =
  | {
    kind: "device";
    id: string;
    /** Filters it may publish to ({id} already substituted); default rules when absent. */
    publish?: string[];
    /** Filters it may subscribe to ({id} already substituted); default rules when absent. */
    subscribe?: string[];
  }
  | { kind: "service"; name: string; publish: string[]; subscribe: string[] }
  | { kind: "anonymous"; id?: string };

/**
 * True when every topic matched by `requested` is also matched by `allowed`.
 *
 * @example
 * ```ts
 * import { filterCovers } from "./acl.ts";
 * if (!filterCovers("devices/+/telemetry/#", "devices/a/telemetry/x")) throw new Error();
 * if (filterCovers("devices/+/telemetry", "devices/#")) throw new Error();
 * if (filterCovers("#", "$SYS/#") || !filterCovers("$SYS/#", "$SYS/broker/uptime")) throw new Error();
 * ```
 */
export function filterCovers(allowed: string, requested: string): boolean {
  const a = allowed.split("/");
  const r = requested.split("/");
  // [MQTT-4.7.2-1] a leading wildcard does not match `$` topics: nor does it cover them.
  if (requested.startsWith("$") && (a[0] === "#" || a[0] === "+")) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === "#") return true;
    if (i >= r.length) return false;
    if (r[i] === "#") return false;
    if (a[i] === "+") continue;
    if (r[i] !== a[i]) return false;
  }
  return a.length === r.length;
}

/** True for `$SYS` and the topics and filters under it. */
function isSysTopic(topicOrFilter: string): boolean {
  return topicOrFilter === "$SYS" || topicOrFilter.startsWith("$SYS/");
}

/** True when `p` may publish to `topic`. */
export function canPublish(p: Principal, topic: string): boolean {
  switch (p.kind) {
    case "anonymous":
      return !isSysTopic(topic); // the server's statistics: nobody anonymous writes them
    case "service":
      return p.publish.some((f) => topicMatches(f, topic));
    case "device": {
      if (p.publish) return p.publish.some((f) => topicMatches(f, topic));
      const t = parseTopic(topic);
      if (t.kind === "telemetry") {
        return t.deviceId === p.id && (t.channel === undefined || CHANNEL_OK.test(t.channel));
      }
      return t.kind === "ack" && t.deviceId === p.id && COMMAND_NAME_RE.test(t.name);
    }
  }
}

/** True when `p` may subscribe to `filter`. */
export function canSubscribe(p: Principal, filter: string): boolean {
  switch (p.kind) {
    case "anonymous":
      return !isSysTopic(filter);
    case "service":
      return p.subscribe.some((f) => filterCovers(f, filter));
    case "device":
      if (p.subscribe) return p.subscribe.some((f) => filterCovers(f, filter));
      return filterCovers(`devices/${p.id}/#`, filter);
  }
}

/** Device ACL rules from the configuration; `{id}` stands for the device's id. */
export interface DeviceAclRules {
  /** Filters a device may publish to. */
  publish: string[];
  /** Filters a device may subscribe to. */
  subscribe: string[];
}

/**
 * The device principal for `id` under `rules` (or the built-in default rules without them).
 *
 * @example
 * ```ts
 * import { canPublish, devicePrincipal } from "./acl.ts";
 * const p = devicePrincipal("d1", { publish: ["devices/{id}/telemetry/#"], subscribe: [] });
 * if (!canPublish(p, "devices/d1/telemetry/x") || canPublish(p, "devices/d1/acks/x")) throw new Error();
 * ```
 */
export function devicePrincipal(id: string, rules?: DeviceAclRules): Principal {
  if (!rules) return { kind: "device", id };
  const sub = (f: string) => f.replaceAll("{id}", id);
  return {
    kind: "device",
    id,
    publish: rules.publish.map(sub),
    subscribe: rules.subscribe.map(sub),
  };
}
