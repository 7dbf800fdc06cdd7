/**
 * MQTT over WebSocket on a port of its own (`ws://` or, with TLS files, `wss://`, reloaded like
 * every listener's certificate): accepts TCP, takes a connection slot from the {@link MqttServer}
 * before reading a byte (its `maxConnections`, the core's per-address caps), runs the opening
 * handshake under a deadline and a size cap with MQTT's upgrade policy (`ws_upgrade.ts`), and
 * hands the WebSocket, adapted to bytes ({@link WsConn}), to the server: from there it is an MQTT
 * connection like any other (one session table, takeover across transports, the same limits,
 * backpressure and keepalive). Owned by the server, which starts and closes it.
 *
 * A refused upgrade gets an HTTP status and a one-line reason, and a warning in the log that never
 * includes the request's query or `Authorization` (where tokens travel).
 *
 * @module
 */

import type { DevicePort, Logger } from "../../core/mod.ts";
import { acceptLoop } from "../../net/accept_loop.ts";
import { isClosedError } from "../../net/closed_error.ts";
import { TcpListener } from "../../net/tcp_listener.ts";
import { WsConn, type WsConnOptions } from "../../net/ws_conn.ts";
import {
  checkUpgrade,
  readUpgradeRequest,
  refusalResponse,
  switchingProtocols,
  writeAll,
  WsHandshakeError,
} from "../../net/ws_handshake.ts";
import type { ListenAddress } from "../listener.ts";
import { checkMqttUpgrade } from "./ws_upgrade.ts";
import type { MqttWsOptions } from "./ws_options.ts";

/**
 * The WebSocket listener could not bind (its port in use, say): `cause` is the bind error, `port`
 * the port asked for, so the gateway can name the right listener and port.
 */
export class WebSocketListenError extends Error {
  override name = "WebSocketListenError";
  /** The port the listener was to bind. */
  readonly port: number;
  /** Wraps `cause`. */
  constructor(port: number, cause: unknown) {
    super(`Cannot listen for MQTT over WebSocket on port ${port}: ${(cause as Error)?.message}`, {
      cause,
    });
    this.port = port;
  }
}

/** What the listener needs of the MQTT server it feeds (`MqttServer` is one). */
export interface MqttConnectionSink {
  /** MQTT's port on the core (admission, log, timers, counters). */
  readonly devicePort: DevicePort;
  /** Its options: `maxConnections` bounds TCP and WebSocket connections together. */
  readonly options: { readonly maxConnections: number };
  /** Connections open and admitted: what `maxConnections` bounds. */
  readonly load: number;
  /** A connection was admitted here and is in its handshake. */
  admitted(): void;
  /** Gives back the slot of a connection that will not be served. */
  release(address: string): void;
  /** Serves an admitted connection. */
  serve(conn: WsConn): void;
}

/**
 * The WebSocket listener of an MQTT server.
 *
 * @example
 * ```ts
 * import { Core } from "../../core/mod.ts";
 * import { MqttServer } from "./server.ts";
 * const core = new Core({ anonymous: true });
 * const server = new MqttServer(core, {
 *   hostname: "127.0.0.1", port: 0, websocket: { hostname: "127.0.0.1", port: 0 },
 * });
 * await server.listen();
 * if (!(server.webSocketAddress!.port > 0)) throw new Error();
 * await server.close();
 * await core.close();
 * ```
 */
export class MqttWsListener {
  #sink: MqttConnectionSink;
  #port: DevicePort;
  #log: Logger;
  #options: MqttWsOptions;
  #wsOptions: WsConnOptions;
  #listener: TcpListener | undefined;
  #accepting: Promise<void> | undefined;
  #handshakes = new Set<Deno.Conn>(); // sockets in their opening handshake
  #sockets = new Set<WsConn>(); // WebSockets whose socket is open
  #idle: PromiseWithResolvers<void> | undefined; // while closing: both sets are empty
  #closing: Promise<void> | undefined;

  /** Creates the listener; nothing is bound until {@link listen}. */
  constructor(sink: MqttConnectionSink, options: MqttWsOptions) {
    this.#sink = sink;
    this.#port = sink.devicePort;
    this.#log = this.#port.log;
    this.#options = options;
    const log = this.#log;
    this.#wsOptions = {
      maxFrameSize: options.maxFrameSize,
      closeTimeoutMs: options.closeTimeoutMs,
      clock: this.#port.clock,
      onFrameError: (err, conn) => {
        this.#port.stats.error("ws_frame");
        const a = conn.remoteAddr as Deno.NetAddr;
        log.warn("closing WebSocket: frame refused", {
          peer: `${a.hostname}:${a.port}`,
          closeCode: err.code,
          why: err.message,
          offset: err.offset,
        });
      },
      onClosed: (conn) => {
        this.#sockets.delete(conn);
        this.#checkIdle();
      },
    };
  }

  /** Binds and starts accepting. */
  listen(): Promise<ListenAddress> {
    if (this.#listener || this.#closing) {
      throw new TypeError("Cannot listen: the MQTT WebSocket listener was started before");
    }
    let l: TcpListener;
    try {
      l = new TcpListener({
        hostname: this.#options.hostname,
        port: this.#options.port,
        tls: this.#options.tls,
        onReload: () => this.#log.info("WebSocket TLS certificate reloaded"),
        onReloadError: (error) =>
          this.#log.error("WebSocket TLS certificate not reloaded; the previous one stays", {
            error,
          }),
      });
    } catch (err) {
      throw new WebSocketListenError(this.#options.port, err);
    }
    this.#listener = l;
    // The accept loop of every TCP listener: the slot is taken (maxConnections shared with TCP,
    // the core's per-address cap) before a byte is read.
    this.#accepting = acceptLoop({
      listener: l,
      port: this.#port,
      maxConnections: this.#sink.options.maxConnections,
      open: () => this.#sink.load,
      closing: () => this.#closing !== undefined,
      serve: (conn, address) => {
        this.#sink.admitted();
        this.#handshake(conn, address);
      },
    });
    this.#log.debug("WebSocket listening", { // the gateway logs the one info line per listener
      hostname: l.hostname,
      port: l.port,
      tls: l.tls,
      path: this.#options.path,
    });
    return Promise.resolve({ hostname: l.hostname, port: l.port });
  }

  /** Runs the opening handshake of an admitted socket; serves it or gives its slot back. */
  async #handshake(conn: Deno.Conn, address: string): Promise<void> {
    const o = this.#options;
    const peer = `${address}:${(conn.remoteAddr as Deno.NetAddr).port}`;
    let timedOut = false;
    const deadline = this.#port.deadlines.add(o.handshakeTimeoutMs, () => {
      timedOut = true;
      const refusal = new WsHandshakeError(
        408,
        `Cannot upgrade: no complete request within ${o.handshakeTimeoutMs} ms`,
      );
      // A few bytes into an idle socket's empty send buffer: the write does not wait.
      conn.write(refusalResponse(refusal)).catch(() => {}).finally(() => {
        try {
          conn.close(); // ends the pending read
        } catch { /* closed */ }
      });
    });
    this.#handshakes.add(conn);
    let ws: WsConn | undefined;
    try {
      const read = await readUpgradeRequest(conn, o.maxHandshakeBytes);
      if (read !== null) {
        const { request, rest } = read;
        let url: URL;
        try {
          url = new URL(request.target, "http://mqtt.invalid");
        } catch {
          throw new WsHandshakeError(400, "Cannot upgrade: the request target is not a path");
        }
        const key = checkUpgrade(request);
        const up = checkMqttUpgrade(url, request.headers, o);
        await writeAll(conn, await switchingProtocols(key, up.protocol));
        ws = new WsConn(conn, {
          options: this.#wsOptions,
          head: rest,
          credentials: up.credentials,
        });
        this.#log.debug("WebSocket upgraded", { peer, path: url.pathname, protocol: up.protocol });
      }
    } catch (err) {
      if (timedOut) {
        this.#port.stats.error("ws_handshake_timeout");
        this.#log.warn("WebSocket upgrade timed out", { peer, timeoutMs: o.handshakeTimeoutMs });
      } else if (err instanceof WsHandshakeError) {
        this.#port.stats.error("ws_handshake");
        this.#log.warn("WebSocket upgrade refused", { peer, status: err.status, why: err.message });
        try {
          await writeAll(conn, refusalResponse(err));
        } catch { /* gone */ }
      } else if (!isClosedError(err)) {
        this.#log.warn("WebSocket upgrade failed", { peer, error: err });
      }
    } finally {
      deadline.cancel();
      this.#handshakes.delete(conn);
    }
    if (!ws) {
      try {
        conn.close();
      } catch { /* closed */ }
      this.#sink.release(address);
      this.#checkIdle();
      return;
    }
    this.#sockets.add(ws);
    this.#sink.serve(ws);
  }

  #checkIdle(): void {
    if (this.#idle && this.#handshakes.size === 0 && this.#sockets.size === 0) this.#idle.resolve();
  }

  /**
   * Stops accepting and ends the handshakes in progress, then resolves once every WebSocket's
   * socket has closed: the server closes their MQTT connections (v5: DISCONNECT 0x8B), each
   * WebSocket then closes with 1001, and its socket within `closeTimeoutMs`. Idempotent.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      this.#listener?.close();
      await this.#accepting;
      await this.#listener?.closed();
      for (const c of this.#handshakes) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      this.#idle = Promise.withResolvers();
      this.#checkIdle();
      await this.#idle.promise;
    })();
  }
}
