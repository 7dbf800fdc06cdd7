/**
 * The MQTT listener: accepts TCP connections, serves each with an {@link MqttConnection}, owns the
 * session table and shared subscription groups, and shuts down gracefully (v5 clients get
 * DISCONNECT 0x8B Server shutting down).
 *
 * @module
 */

import type { Core, DevicePort, Logger, ProtocolSpec } from "../../core/mod.ts";
import type { ListenAddress, Listener } from "../listener.ts";
import { acceptLoop } from "../../net/accept_loop.ts";
import { TcpListener, type TlsFiles } from "../../net/tcp_listener.ts";
import { type ConnectionContext, MqttConnection } from "./connection.ts";
import { type MqttServerOptions, resolveMqttServerOptions } from "./options.ts";
import { SessionStore } from "./session_store.ts";
import type { SessionPersistence } from "./session_persistence.ts";
import { SharedSubscriptions } from "./shared_subscriptions.ts";

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

  /**
   * Creates the server; nothing is bound until {@link listen}. With `persistence`, sessions that
   * outlive their connection are journaled to the state file and restored by {@link listen}
   * before it accepts; the caller owns the state file and closes it after the core.
   */
  constructor(
    core: Core,
    options: MqttServerOptions & { tls?: TlsFiles; persistence?: SessionPersistence } = {},
  ) {
    const { tls, persistence, ...rest } = options;
    this.#tls = tls;
    this.#persistence = persistence;
    options = rest;
    const port = this.#port = core.port(MQTT);
    this.#options = resolveMqttServerOptions(options);
    this.#log = port.log;
    this.#shared = new SharedSubscriptions(port);
    this.#store = new SessionStore(port, this.#shared, this.#options, this.#log);
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

  /** Binds and starts accepting. */
  listen(): Promise<ListenAddress> {
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
      open: () => this.#connections.size,
      closing: () => this.#closing !== undefined,
      serve: (conn) => {
        const c = new MqttConnection(this.#ctx, conn);
        this.#connections.add(c);
        c.run(); // never rejects; ends with onClosed
      },
    });
    this.#log.info("listening", { hostname: l.hostname, port: l.port, tls: l.tls });
    return Promise.resolve({ hostname: l.hostname, port: l.port });
  }

  /**
   * Stops accepting, sends v5 clients DISCONNECT 0x8B, closes every connection, and resolves when
   * every session has ended. Idempotent.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      this.#listener?.close();
      await this.#accepting;
      await this.#listener?.closed();
      this.#allClosed = Promise.withResolvers();
      if (this.#connections.size === 0) this.#allClosed.resolve();
      for (const c of this.#connections) {
        c.close({ code: "shutting_down", message: "the gateway is shutting down" });
      }
      await this.#allClosed.promise;
      this.#store.close();
      this.#log.info("closed");
    })();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
