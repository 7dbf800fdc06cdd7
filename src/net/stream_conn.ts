/**
 * What a stream protocol's connection needs of its transport: a TCP or TLS `Deno.Conn` is one,
 * and so is a WebSocket adapted to bytes (MQTT over WebSocket). Reads and writes are bytes; the
 * remote address is what admission and logs use.
 *
 * @module
 */

import type { ByteReader } from "./burst_source.ts";
import type { ByteWriter } from "./conn_writer.ts";

/** A byte-stream transport of one connection. */
export interface StreamConn extends ByteReader, ByteWriter {
  /** The peer's address (a `Deno.NetAddr` for TCP, and for a WebSocket the HTTP peer's). */
  readonly remoteAddr: Deno.Addr;
  /** Closes the transport; a pending read then ends. Throws if already closed. */
  close(): void;
}
