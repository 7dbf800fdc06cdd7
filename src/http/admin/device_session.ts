/**
 * A device's live session as the management API's device detail shows it: what every protocol's
 * session says of itself through the core's `SessionHandle.describe` (remote address, protocol
 * version, keepalive, connected since, client id, subscriptions with their QoS), `null` where a
 * protocol has no such thing (FBP/1 has no subscriptions; CoAP and HTTP devices have no session).
 *
 * @module
 */

import type { SessionHandle } from "../../core/registry.ts";
import type { SubscriptionInfo } from "../../core/session_directory.ts";

/** The `session` object of a device detail. */
export interface SessionView {
  /** The connection's id. */
  id: string;
  /** Its protocol. */
  protocol: string;
  /** The peer's `host:port`. */
  remoteAddress: string | null;
  /** Protocol version (`5`, `3.1.1`, `1`). */
  protocolVersion: string | null;
  /** Keepalive in effect, seconds (0: none). */
  keepAliveSec: number | null;
  /** Connected since (ms since the epoch). */
  connectedAt: number | null;
  /** The client id, when the protocol has one apart from the device id. */
  clientId: string | null;
  /** Its subscriptions; null when the protocol has none. */
  subscriptions: SubscriptionInfo[] | null;
}

/**
 * The view of `s`.
 *
 * @example
 * ```ts
 * import { sessionView } from "./device_session.ts";
 * const v = sessionView({ sessionId: "x", protocol: "p", close() {}, describe: () => ({ keepAliveSec: 30 }) });
 * if (v.keepAliveSec !== 30 || v.remoteAddress !== null) throw new Error();
 * ```
 */
export function sessionView(s: SessionHandle): SessionView {
  const d = s.describe?.() ?? {};
  return {
    id: s.sessionId,
    protocol: s.protocol,
    remoteAddress: d.remoteAddress ?? null,
    protocolVersion: d.protocolVersion ?? null,
    keepAliveSec: d.keepAliveSec ?? null,
    connectedAt: d.connectedAt ?? null,
    clientId: d.clientId ?? null,
    subscriptions: d.subscriptions ?? null,
  };
}
