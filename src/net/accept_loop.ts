/**
 * The accept loop every TCP listener runs: take a connection, refuse it before reading a byte when
 * the listener is full or its address is over its cap (the core's admission, through the port),
 * and hand it to the protocol otherwise. An accept error (descriptors exhausted: EMFILE) never ends
 * the loop or the process: it backs off briefly and keeps serving. Refusals are counted and logged
 * at most once per address and interval.
 *
 * @module
 */

import type { DevicePort } from "../core/mod.ts";

/** What the loop needs of its listener and protocol. */
export interface AcceptLoopOptions {
  /** Where connections come from; `null` once it is closed. */
  listener: { accept(): Promise<Deno.Conn | null> };
  /** The protocol's port: admission, counters, rate-limited log. */
  port: DevicePort;
  /** Connections the listener may hold. */
  maxConnections: number;
  /** Connections it holds now. */
  open(): number;
  /** True once the listener is closing: connections still accepted are closed at once. */
  closing(): boolean;
  /** Tells a refused peer why, in the protocol's words, then closes it. @default closes it */
  refuse?(conn: Deno.Conn, reason: string): void;
  /** Serves an admitted connection (its address slot is the protocol's to release). */
  serve(conn: Deno.Conn, address: string): void;
}

/** Wait after a failed accept before the next, ms. */
const ACCEPT_BACKOFF_MS = 100;

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* closed */ }
}

/**
 * Accepts until the listener closes; resolves then.
 *
 * @example
 * ```ts ignore
 * await acceptLoop({ listener, port, maxConnections: 1000,
 *   open: () => sessions.size, closing: () => closed, serve: (conn) => start(conn) });
 * ```
 */
export async function acceptLoop(o: AcceptLoopOptions): Promise<void> {
  const { port } = o;
  const throttled = port.throttled;
  const stats = port.stats;
  for (;;) {
    let conn: Deno.Conn | null;
    try {
      conn = await o.listener.accept();
      if (conn === null) return;
    } catch (err) {
      if (o.closing() || err instanceof Deno.errors.BadResource) return;
      // EMFILE and friends: count, log (throttled), back off, keep serving the others.
      stats.error("accept_failed");
      throttled.error("accept_failed", "accept failed", { error: err });
      await new Promise((r) => setTimeout(r, ACCEPT_BACKOFF_MS));
      continue;
    }
    if (o.closing()) {
      close(conn);
      continue;
    }
    if (o.open() >= o.maxConnections) {
      // Refused before reading anything: a flood must not exhaust memory or descriptors.
      stats.drop("connection_limit");
      throttled.warn("connection_limit", "connection refused: limit reached", {
        limit: o.maxConnections,
      });
      o.refuse ? o.refuse(conn, `connection limit ${o.maxConnections} reached`) : close(conn);
      continue;
    }
    const address = (conn.remoteAddr as Deno.NetAddr).hostname;
    if (!port.admit(address)) {
      stats.drop("address_limit");
      throttled.warn(`address_limit:${address}`, "connection refused: per-address limit", {
        address,
      });
      o.refuse ? o.refuse(conn, `too many connections from ${address}`) : close(conn);
      continue;
    }
    try {
      (conn as Deno.TcpConn).setNoDelay?.(true);
    } catch { /* not fatal */ }
    stats.opened();
    o.serve(conn, address);
  }
}
