/**
 * The FBP/1 listener: accepts TCP connections with `Deno.listen` and runs a
 * {@link BinarySession} for each.
 *
 * @module
 */

import type { Core, DevicePort, Logger, ProtocolSpec } from "../../core/mod.ts";
import type { ListenAddress, Listener } from "../listener.ts";
import { acceptLoop } from "../../net/accept_loop.ts";
import { TcpListener } from "../../net/tcp_listener.ts";
import { type BinaryServerOptions, defaultBinaryServerOptions } from "./options.ts";
import { BinarySession, type BinarySessionHost, IDLE_READ_BUFFER } from "./session.ts";

import { encodeError, encodeFrame, ErrorCode, FrameType } from "./frame.ts";

/** FBP/1 as the core knows it: the label of its messages, presence and metrics. */
export const FBP: ProtocolSpec = Object.freeze({ name: "binary" });

/**
 * Serves FBP/1 devices.
 *
 * @example
 * ```ts
 * import { Core } from "../../core/core.ts";
 * import { silentLogger } from "../../core/logger.ts";
 * import { BinaryServer } from "./server.ts";
 * const core = new Core({ anonymous: true, log: silentLogger });
 * const server = new BinaryServer(core, { port: 0 });
 * const { port } = await server.listen();
 * if (port === 0) throw new Error("no port");
 * await server.close();
 * await core.close();
 * ```
 */
export class BinaryServer implements Listener {
  /** Listener name. */
  readonly name = "binary";
  #port: DevicePort;
  #opts: BinaryServerOptions;
  #log: Logger;
  #listener: TcpListener | undefined;
  #sessions = new Set<BinarySession>();
  #allClosed: PromiseWithResolvers<void> | undefined; // while closing
  #accepting: Promise<void> | undefined;
  #closed = false;
  /** Live sessions by device id, for command delivery. */
  #byDevice = new Map<string, BinarySession>();
  #releaseCommands: (() => void) | undefined;
  #stopWatching: (() => void) | undefined;
  #host: BinarySessionHost;

  /** Creates the server; call {@link listen} to start. */
  constructor(core: Core, options: Partial<BinaryServerOptions> = {}) {
    const port = this.#port = core.port(FBP);
    this.#opts = { ...defaultBinaryServerOptions, ...options };
    this.#log = port.log;
    const stats = port.stats;
    const o = this.#opts;
    // One host object for every session: callbacks that get the session, no closures per session.
    this.#host = {
      log: this.#log,
      attachCommands: (id, session) => this.#byDevice.set(id, session),
      detachCommands: (id, session) => {
        if (this.#byDevice.get(id) === session) this.#byDevice.delete(id);
      },
      writerOptions: {
        maxPendingBytes: o.maxPendingBytes,
        drainTimeoutMs: o.drainTimeoutMs,
        clock: port.clock,
        onBytes: (n) => stats.bytesOut(n),
        onStall: (reason, session) => {
          stats.error("slow_consumer");
          session.close({ code: "slow_consumer", message: reason });
        },
      },
      readOptions: { minBuffer: IDLE_READ_BUFFER },
      onClosed: (session) => {
        if (!this.#sessions.delete(session)) return;
        port.release(session.address);
        stats.closed();
        if (this.#sessions.size === 0) this.#allClosed?.resolve();
      },
    };
  }

  /** Connections open now. */
  get connections(): number {
    return this.#sessions.size;
  }

  /** Binds and starts accepting. */
  listen(): Promise<ListenAddress> {
    if (this.#listener) throw new TypeError("Cannot listen: already listening");
    // Commands come from the core's store (one subscription for every device), dispatched by id:
    // a connected device gets each at once; one that is offline gets them on its next HELLO.
    const commands = this.#port.commands;
    this.#releaseCommands = commands.open();
    this.#stopWatching = commands.watch((cmd) => this.#byDevice.get(cmd.deviceId)?.offer(cmd));
    const l = this.#listener = new TcpListener({
      hostname: this.#opts.hostname,
      port: this.#opts.port,
      tls: this.#opts.tls,
      onReload: () => this.#log.info("TLS certificate reloaded"),
      onReloadError: (error) =>
        this.#log.error("TLS certificate not reloaded; the previous one stays", { error }),
    });
    this.#accepting = acceptLoop({
      listener: l,
      port: this.#port,
      maxConnections: this.#opts.maxConnections,
      open: () => this.#sessions.size,
      closing: () => this.#closed,
      refuse,
      serve: (conn) => {
        this.#sessions.add(new BinarySession(this.#port, conn, this.#opts, this.#host));
      },
    });
    return Promise.resolve({ hostname: l.hostname, port: l.port });
  }

  /** Stops accepting, sends ERROR 9 to every device, closes them, waits for all to end. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#listener?.close();
      for (const s of this.#sessions) {
        s.close({ code: "shutting_down", message: "gateway is shutting down" });
      }
    }
    await this.#accepting;
    await this.#listener?.closed();
    if (this.#sessions.size) {
      this.#allClosed ??= Promise.withResolvers();
      await this.#allClosed.promise;
    }
    this.#stopWatching?.();
    this.#releaseCommands?.();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function refuse(conn: Deno.Conn, reason: string): void {
  const frame = encodeFrame({
    type: FrameType.ERROR,
    flags: 0,
    seq: 0,
    payload: encodeError({ code: ErrorCode.SHUTTING_DOWN, reason }),
  });
  conn.write(frame).catch(() => {}).finally(() => {
    try {
      conn.close();
    } catch { /* gone */ }
  });
}
