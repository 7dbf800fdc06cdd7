/**
 * MQTT over WebSocket on the HTTP listener (`mqtt.websocket.httpListener`): one route for the
 * HTTP server's route hook that upgrades requests to the MQTT path with Deno's WebSocket and hands
 * them, adapted to bytes ({@link WebSocketConn}), to the {@link MqttServer}. The same admission,
 * upgrade policy (subprotocol, origins, credentials) and refusals as the WebSocket listener; the
 * framing is Deno's, with the limits `websocket_conn.ts` states, so the listener's own port is the
 * one to expose to untrusted networks.
 *
 * @module
 */

import type { DevicePort } from "../../core/mod.ts";
import type { StreamConn } from "../../net/stream_conn.ts";
import { WebSocketConn, type WebSocketConnOptions } from "../../net/websocket_conn.ts";
import { checkUpgrade, WsHandshakeError } from "../../net/ws_handshake.ts";
import { checkMqttUpgrade, type MqttUpgradePolicy } from "./ws_upgrade.ts";

/** What the route needs of the MQTT server (`MqttServer` is one). */
export interface MqttRouteSink {
  /** MQTT's port on the core (log, counters). */
  readonly devicePort: DevicePort;
  /** Takes a connection slot for `address` (counted opened); false when refused (counted, logged). */
  admit(address: string): boolean;
  /** Gives back the slot of a connection that will not be served. */
  release(address: string): void;
  /** Serves an admitted connection. */
  serve(conn: StreamConn): void;
}

/** Options of {@link mqttWsRoute}. */
export interface MqttWsRouteOptions extends MqttUpgradePolicy {
  /** Unread bytes a peer may queue before it is closed (1008). @default 1048576 */
  maxQueuedBytes?: number;
}

function refusal(err: WsHandshakeError): Response {
  return new Response(err.message + "\n", {
    status: err.status,
    headers: { "content-type": "text/plain; charset=utf-8", ...err.headers },
  });
}

/**
 * A route serving MQTT over WebSocket at `options.path`; other paths fall through (`undefined`).
 *
 * @example
 * ```ts
 * import { Core } from "../../core/mod.ts";
 * import { MqttServer } from "./server.ts";
 * import { mqttWsRoute } from "./ws_route.ts";
 * const core = new Core({ anonymous: true });
 * const server = new MqttServer(core, { hostname: "127.0.0.1", port: 0 });
 * const route = mqttWsRoute(server, { path: "/mqtt", allowedOrigins: ["*"] });
 * const info = { remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 } } as Deno.ServeHandlerInfo;
 * const res = await route(new Request("http://gw/mqtt"), new URL("http://gw/mqtt"), info);
 * if (res?.status !== 426) throw new Error(); // a plain GET: WebSocket only
 * if (route(new Request("http://gw/x"), new URL("http://gw/x"), info) !== undefined) throw new Error();
 * await core.close();
 * ```
 */
export function mqttWsRoute(
  server: MqttRouteSink,
  options: MqttWsRouteOptions,
): (req: Request, url: URL, info: Deno.ServeHandlerInfo) => Response | undefined {
  const port = server.devicePort;
  const log = port.log;
  const connOptions: WebSocketConnOptions = {
    maxQueuedBytes: options.maxQueuedBytes,
    onRefused: (why, code, conn) => {
      port.stats.error("ws_frame");
      const a = conn.remoteAddr as Deno.NetAddr;
      log.warn("closing WebSocket: message refused", {
        peer: `${a.hostname}:${a.port}`,
        closeCode: code,
        why,
        listener: "http",
      });
    },
  };
  return (req, url, info) => {
    if (url.pathname !== options.path) return undefined;
    const addr = info.remoteAddr as Deno.NetAddr;
    const peer = `${addr.hostname}:${addr.port}`;
    let up;
    try {
      checkUpgrade({ method: req.method, target: url.pathname, headers: req.headers }); // (Deno answers)
      up = checkMqttUpgrade(url, req.headers, options);
    } catch (err) {
      if (!(err instanceof WsHandshakeError)) throw err;
      port.stats.error("ws_handshake");
      log.warn("WebSocket upgrade refused", {
        peer,
        status: err.status,
        why: err.message,
        listener: "http",
      });
      return refusal(err);
    }
    if (!server.admit(addr.hostname)) {
      return refusal(new WsHandshakeError(503, "Cannot upgrade: connection limit reached"));
    }
    // idleTimeout 0: MQTT's keepalive watches the connection, not Deno's pings.
    const { socket, response } = Deno.upgradeWebSocket(req, {
      protocol: up.protocol,
      idleTimeout: 0,
    });
    let opened = false;
    socket.onopen = () => {
      opened = true;
      server.serve(
        new WebSocketConn(socket, addr, { ...connOptions, credentials: up.credentials }),
      );
    };
    socket.onclose = () => {
      if (!opened) server.release(addr.hostname); // never opened: the slot goes back
    };
    log.debug("WebSocket upgraded", { peer, path: url.pathname, protocol: up.protocol });
    return response;
  };
}
