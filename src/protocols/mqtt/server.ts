/**
 * The MQTT listener: accepts TCP connections, serves each with an {@link MqttConnection}, owns the
 * session table and shared subscription groups, and shuts down gracefully (v5 clients get
 * DISCONNECT 0x8B Server shutting down). Other sources of connections (the WebSocket listener,
 * `ws_listener.ts`, and the route on the HTTP listener, `ws_route.ts`) hand theirs over through
 * {@link MqttServer.serve}: one session table, one set of limits, whatever the transport.
 *
 * @module
 */

import type { Core, DevicePort, Logger, ProtocolSpec } from "../../core/mod.ts";
import type { StreamConn } from "../../net/stream_conn.ts";
import type { ListenAddress, Listener } from "../listener.ts";
import { acceptLoop } from "../../net/accept_loop.ts";
import { TcpListener, type TlsFiles } from "../../net/tcp_listener.ts";
import { type ConnectionContext, MqttConnection } from "./connection.ts";
import { type MqttServerOptions, resolveMqttServerOptions } from "./options.ts";
import { SessionStore } from "./session_store.ts";
import type { SessionPersistence } from "./session_persistence.ts";
import { SharedSubscriptions } from "./shared_subscriptions.ts";
import { MqttWsListener } from "./ws_listener.ts";
import { type MqttWsOptions, resolveMqttWsOptions } from "./ws_options.ts";

/**
 * MQTT as the core knows it: the label of its messages, presence and metrics; its sessions
 * subscribe to their own command topics, so the core's command store keeps none for them.
 */
export const MQTT: ProtocolSpec = Object.freeze({ name: "mqtt", deliversOwnCommands: true });

/**
 * An MQTT 3.1/3.1.1/5.0 broker endpoint on the core.
 *
 * @example
 * ```ts
 * import { Core } from "../../core/mod.ts";
 * import { MqttServer } from "./server.ts";
 * const core = new Core({ anonymous: true });
 * const server = new MqttServer(core, { hostname: "127.0.0.1", port: 0 });
 * const { port } = await server.listen();
 * if (port === 0) throw new Error("no port");
 * await server.close();
 * await core.close();
 * ```
 */
export class MqttServer implements Listener {
  /** Listener name for logs and metrics. */
  readonly name = "mqtt";
  #port: DevicePort;
  #options: Required<MqttServerOptions>;
  #log: Logger;
  #listener: TcpListener | undefined;
  #tls: TlsFiles | undefined;
  #connections = new Set<MqttConnection>();
  #allClosed: PromiseWithResolvers<void> | undefined; // while closing
  #store: SessionStore;
  #shared: SharedSubscriptions;
  #accepting: Promise<void> | undefined;
  #ctx: ConnectionContext;
  #closing: Promise<void> | undefined;
  #persistence: SessionPersistence | undefined;
  #admitted = 0; // admitted by another source, not yet served (WebSocket handshakes)
  #ws: MqttWsListener | undefined;
  #wsAddress: ListenAddress | undefined;
  #withdrawSessions: () => void;

  /**
   * Creates the server; nothing is bound until {@link listen}. With `persistence`, sessions that
   * outlive their connection are journaled to the state file and restored by {@link listen}
   * before it accepts; the caller owns the state file and closes it after the core. With
   * `websocket`, MQTT over WebSocket is served on a port of its own too (`ws_listener.ts`).
   */
  constructor(
    core: Core,
    options: MqttServerOptions & {
      tls?: TlsFiles;
      persistence?: SessionPersistence;
      websocket?: Partial<MqttWsOptions>;
    } = {},
  ) {
    const { tls, persistence, websocket, ...rest } = options;
    this.#tls = tls;
    this.#persistence = persistence;
    options = rest;
    const port = this.#port = core.port(MQTT);
    this.#options = resolveMqttServerOptions(options);
    this.#log = port.log;
    this.#shared = new SharedSubscriptions(port);
    this.#store = new SessionStore(port, this.#shared, this.#options, this.#log);
    // The gateway's management lists, describes and drops sessions through the port.
    this.#withdrawSessions = port.provideSessions(this.#store.provider());
    // One context object shared by every connection (nothing per connection but the connection).
    this.#ctx = {
      port,
      options: this.#options,
      log: this.#log,
      store: this.#store,
      shared: this.#shared,
      durable: persistence?.db,
      onClosed: (c) => {
        if (!this.#connections.delete(c)) return;
        port.release(c.address);
        port.stats.closed();
        if (this.#connections.size === 0) this.#allClosed?.resolve();
      },
    };
    if (websocket) this.#ws = new MqttWsListener(this, resolveMqttWsOptions(websocket));
  }

  /** Resolved options. */
  get options(): Readonly<Required<MqttServerOptions>> {
    return this.#options;
  }

  /** Open connections. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Sessions held (connected or persistent). */
  get sessionCount(): number {
    return this.#store.size;
  }

  /** The WebSocket listener's address, once listening (when configured). */
  get webSocketAddress(): ListenAddress | undefined {
    return this.#wsAddress;
  }

  /** The core, through MQTT's port (for another source of connections: its log and timers). */
  get devicePort(): DevicePort {
    return this.#port;
  }

  /** Connections open plus those admitted and not yet served: what `maxConnections` bounds. */
  get load(): number {
    return this.#connections.size + this.#admitted;
  }

  /**
   * A connection another source admitted through the core's admission (its address slot taken,
   * counted opened, as `acceptLoop` does) is not served yet (a WebSocket handshake): it counts
   * against `maxConnections` until it is {@link serve}d or {@link release}d.
   */
  admitted(): void {
    this.#admitted++;
  }

  /**
   * Admission for a source with no accept loop of its own (the route on the HTTP listener): false,
   * counted and logged, when the server is closing or full or the address is at its cap; otherwise
   * as {@link admitted}.
   */
  admit(address: string): boolean {
    if (this.#closing) return false;
    const { stats, throttled } = this.#port;
    if (this.load >= this.#options.maxConnections) {
      stats.drop("connection_limit");
      throttled.warn("connection_limit", "connection refused: limit reached", {
        limit: this.#options.maxConnections,
      });
      return false;
    }
    if (!this.#port.admit(address)) {
      stats.drop("address_limit");
      throttled.warn(`address_limit:${address}`, "connection refused: per-address limit", {
        address,
      });
      return false;
    }
    stats.opened();
    this.#admitted++;
    return true;
  }

  /** An admitted connection will not be served (its handshake failed): its slot goes back. */
  release(address: string): void {
    this.#admitted--;
    this.#port.release(address);
    this.#port.stats.closed();
  }

  /**
   * Serves an admitted connection from another source, a transport adapted to bytes (a
   * WebSocket): an MQTT connection like a TCP one from then on. Closed at once, with the shutdown
   * reason, when the server is closing.
   */
  serve(conn: StreamConn): void {
    this.#admitted--;
    if (this.#closing) {
      this.#port.release((conn.remoteAddr as Deno.NetAddr).hostname);
      this.#port.stats.closed();
      try {
        conn.close({ code: "shutting_down", message: "the gateway is shutting down" });
      } catch { /* closed */ }
      return;
    }
    const c = new MqttConnection(this.#ctx, conn);
    this.#connections.add(c);
    c.run(); // never rejects; ends with onClosed
  }

  /** Binds and starts accepting (TCP, and WebSocket when configured). */
  async listen(): Promise<ListenAddress> {
    if (this.#listener) throw new TypeError("Cannot listen: the MQTT server is already listening");
    if (this.#closing) throw new TypeError("Cannot listen: the MQTT server is closed");
    if (this.#persistence) {
      // Before the first connection: a reconnecting client must find its session.
      const r = this.#store.persist(this.#persistence);
      this.#log.info("sessions restored", { file: this.#persistence.db.path, ...r });
    }
    const l = new TcpListener({
      hostname: this.#options.hostname,
      port: this.#options.port,
      tls: this.#tls,
      onReload: () => this.#log.info("TLS certificate reloaded"),
      onReloadError: (error) =>
        this.#log.error("TLS certificate not reloaded; the previous one stays", { error }),
    });
    this.#listener = l;
    this.#accepting = acceptLoop({
      listener: l,
      port: this.#port,
      maxConnections: this.#options.maxConnections,
      open: () => this.load,
      closing: () => this.#closing !== undefined,
      serve: (conn) => {
        const c = new MqttConnection(this.#ctx, conn);
        this.#connections.add(c);
        c.run(); // never rejects; ends with onClosed
      },
    });
    // (debug: the gateway logs the one info line per listener)
    this.#log.debug("listening", { hostname: l.hostname, port: l.port, tls: l.tls });
    try {
      this.#wsAddress = await this.#ws?.listen();
    } catch (err) {
      await this.close();
      throw err;
    }
    return { hostname: l.hostname, port: l.port };
  }

  /**
   * Stops accepting, sends v5 clients DISCONNECT 0x8B, closes every connection, and resolves when
   * every session has ended. Idempotent.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      this.#listener?.close();
      const wsClosed = this.#ws?.close(); // stops accepting now; resolves once its sockets closed
      await this.#accepting;
      await this.#listener?.closed();
      this.#allClosed = Promise.withResolvers();
      if (this.#connections.size === 0) this.#allClosed.resolve();
      for (const c of this.#connections) {
        c.close({ code: "shutting_down", message: "the gateway is shutting down" });
      }
      await this.#allClosed.promise;
      await wsClosed;
      this.#withdrawSessions();
      this.#store.close();
      this.#log.info("closed");
    })();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
