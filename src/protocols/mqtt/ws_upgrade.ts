/**
 * MQTT's policy for a WebSocket upgrade, the same whichever listener received it: the path, the
 * `mqtt` subprotocol (MQTT 5.0 §6 / 3.1.1 §6, [MQTT-6.0.0-3], [MQTT-6.0.0-4]), the allowed
 * origins, and the credentials a browser may put in the upgrade request because it cannot set
 * them before connecting: `?access_token=` (RFC 6750 §2.3), `Authorization: Bearer` (RFC 6750
 * §2.1) or `Authorization: Basic` (RFC 7617). A refusal is an HTTP status with a message that says
 * why ({@link WsHandshakeError}); nothing here logs the credentials.
 *
 * @module
 */

import type { TransportCredentials } from "../../net/stream_conn.ts";
import { WsHandshakeError } from "../../net/ws_handshake.ts";

/**
 * Subprotocols served, in order of preference: `mqtt` (3.1.1 and 5.0, [MQTT-6.0.0-3]) and
 * `mqttv3.1`, which MQTT 3.1 clients (old Paho JavaScript) offer.
 */
export const MQTT_SUBPROTOCOLS: readonly string[] = Object.freeze(["mqtt", "mqttv3.1"]);

/** What the policy needs of the listener's options. */
export interface MqttUpgradePolicy {
  /** Path of the endpoint. */
  readonly path: string;
  /** Allowed origins, `*` for any. */
  readonly allowedOrigins: readonly string[];
}

/** An accepted upgrade. */
export interface MqttUpgrade {
  /** The subprotocol selected, to echo in `Sec-WebSocket-Protocol` ([MQTT-6.0.0-4]). */
  protocol: string;
  /** Credentials the request carried, for CONNECT. */
  credentials: TransportCredentials | undefined;
}

/**
 * Decides on an upgrade request to `url` (its path and query) with `headers`; throws
 * {@link WsHandshakeError}: 404 for another path, 403 for an origin not allowed, 400 for no
 * `mqtt` subprotocol, two credentials, or an unusable `Authorization`.
 *
 * @example
 * ```ts
 * import { checkMqttUpgrade } from "./ws_upgrade.ts";
 * const u = checkMqttUpgrade(
 *   new URL("http://gw/mqtt?access_token=t"),
 *   new Headers({ "sec-websocket-protocol": "mqtt" }),
 *   { path: "/mqtt", allowedOrigins: ["*"] },
 * );
 * if (u.protocol !== "mqtt" || u.credentials?.secret !== "t") throw new Error();
 * ```
 */
export function checkMqttUpgrade(
  url: URL,
  headers: Headers,
  policy: MqttUpgradePolicy,
): MqttUpgrade {
  if (url.pathname !== policy.path) {
    throw new WsHandshakeError(
      404,
      `Cannot upgrade: no MQTT endpoint at ${url.pathname} (it is at ${policy.path})`,
    );
  }
  const origin = headers.get("origin");
  if (origin !== null && !originAllowed(origin, policy.allowedOrigins)) {
    throw new WsHandshakeError(
      403,
      `Cannot upgrade: origin ${origin.slice(0, 200)} is not in mqtt.websocket.allowedOrigins`,
    );
  }
  const offered = (headers.get("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim());
  const protocol = MQTT_SUBPROTOCOLS.find((p) => offered.includes(p));
  if (!protocol) {
    throw new WsHandshakeError(
      400,
      `Cannot upgrade: the client must offer the "mqtt" WebSocket subprotocol [MQTT-6.0.0-3]${
        offered[0] ? `, it offered ${offered.join(", ").slice(0, 200)}` : ""
      }`,
    );
  }
  return { protocol, credentials: credentialsOf(url, headers) };
}

/** True when `origin` may connect. Origins compare as browsers serialise them (lower case). */
function originAllowed(origin: string, allowed: readonly string[]): boolean {
  const o = origin.toLowerCase();
  return allowed.some((a) => a === "*" || a.toLowerCase() === o);
}

/** The credentials in the query or the `Authorization` header, if any (never both). */
function credentialsOf(url: URL, headers: Headers): TransportCredentials | undefined {
  const tokens = url.searchParams.getAll("access_token");
  const auth = headers.get("authorization");
  if (tokens.length > 1 || (tokens.length === 1 && auth !== null)) {
    // RFC 6750 §2: a client must not use more than one way to send the token in a request.
    throw new WsHandshakeError(400, "Cannot upgrade: credentials sent more than once");
  }
  if (tokens.length === 1) {
    if (tokens[0] === "") throw new WsHandshakeError(400, "Cannot upgrade: empty access_token");
    return { secret: tokens[0] };
  }
  if (auth === null) return undefined;
  const space = auth.indexOf(" ");
  const scheme = (space < 0 ? auth : auth.slice(0, space)).toLowerCase();
  const value = space < 0 ? "" : auth.slice(space + 1).trim();
  if (value === "") {
    throw new WsHandshakeError(400, "Cannot upgrade: Authorization has no credentials");
  }
  if (scheme === "bearer") return { secret: value };
  if (scheme === "basic") {
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(
        Uint8Array.from(atob(value), (c) => c.charCodeAt(0)),
      );
    } catch {
      throw new WsHandshakeError(400, "Cannot upgrade: Authorization Basic is not base64 of UTF-8");
    }
    const colon = text.indexOf(":");
    if (colon <= 0) {
      throw new WsHandshakeError(400, "Cannot upgrade: Authorization Basic needs user:password");
    }
    return { user: text.slice(0, colon), secret: text.slice(colon + 1) };
  }
  throw new WsHandshakeError(
    400,
    `Cannot upgrade: Authorization scheme ${scheme.slice(0, 40)} is not Bearer or Basic`,
  );
}
