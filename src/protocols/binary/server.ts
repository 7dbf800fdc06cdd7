/**
 * The FBP/1 listener: accepts TCP connections with `Deno.listen` and runs a
 * {@link BinarySession} for each.
 *
 * @module
 */

import type { Core } from "../../core/core.ts";
import type { Logger } from "../../core/logger.ts";
import type { ListenAddress, Listener } from "../listener.ts";
import { TcpListener } from "../../net/tcp_listener.ts";
import { type BinaryServerOptions, defaultBinaryServerOptions } from "./options.ts";
import { BinarySession, type BinarySessionHost, IDLE_READ_BUFFER } from "./session.ts";

/** Label set of every byte count (the same object each time: its metric key is cached). */
const LABELS = Object.freeze({ protocol: "binary" });
import { encodeError, encodeFrame, ErrorCode, FrameType } from "./frame.ts";

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
  #core: Core;
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
    this.#core = core;
    this.#opts = { ...defaultBinaryServerOptions, ...options };
    this.#log = core.log.child("binary");
    const stats = core.stats;
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
        clock: core.clock,
        onBytes: (n) => stats.bytesOut.inc(LABELS, n),
        onStall: (reason, session) => {
          stats.errors.inc({ protocol: "binary", code: "slow_consumer" });
          session.close({ code: "slow_consumer", message: reason });
        },
      },
      burstOptions: { minBuffer: IDLE_READ_BUFFER },
      onClosed: (session) => {
        if (!this.#sessions.delete(session)) return;
        core.admission.release(session.address);
        stats.connections.inc(LABELS, -1);
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
    const commands = this.#core.commands;
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
    this.#accepting = this.#acceptLoop(l);
    return Promise.resolve({ hostname: l.hostname, port: l.port });
  }

  async #acceptLoop(listener: TcpListener): Promise<void> {
    const labels = { protocol: "binary" };
    const stats = this.#core.stats;
    for (;;) {
      let conn: Deno.Conn | null;
      try {
        conn = await listener.accept();
        if (conn === null) return;
      } catch (err) {
        if (this.#closed) return;
        // EMFILE and friends: log, back off briefly, keep serving the others.
        this.#log.error("accept failed", { error: err });
        stats.errors.inc({ protocol: "binary", code: "accept_failed" });
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      if (this.#closed) {
        conn.close();
        return;
      }
      if (this.#sessions.size >= this.#opts.maxConnections) {
        stats.drops.inc({ protocol: "binary", reason: "max_connections" });
        this.#log.warn("connection refused: limit reached", { limit: this.#opts.maxConnections });
        refuse(conn, `connection limit ${this.#opts.maxConnections} reached`);
        continue;
      }
      const address = (conn.remoteAddr as Deno.NetAddr).hostname;
      if (!this.#core.admission.admit(address)) {
        stats.drops.inc({ protocol: "binary", reason: "address_limit" });
        this.#log.warn("connection refused: per-address limit reached", { address });
        refuse(conn, `too many connections from ${address}`);
        continue;
      }
      try {
        (conn as Deno.TcpConn).setNoDelay?.(true);
      } catch { /* not fatal */ }
      stats.connectionsAccepted.inc(labels);
      stats.connections.inc(labels);
      const session = new BinarySession(this.#core, conn, this.#opts, this.#host);
      this.#sessions.add(session);
    }
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
