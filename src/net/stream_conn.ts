/**
 * What a stream protocol's connection needs of its transport: a TCP or TLS `Deno.Conn` is one,
 * and so is a WebSocket adapted to bytes (MQTT over WebSocket). Reads and writes are bytes; the
 * remote address is what admission and logs use.
 *
 * @module
 */

import type { CloseReason } from "../core/registry.ts";
import type { ByteReader } from "./chunk_reader.ts";
import type { ByteWriter } from "./conn_writer.ts";

/**
 * Credentials a transport carried before the protocol spoke: the token of a WebSocket upgrade
 * (query parameter or `Authorization` header), for browsers that cannot put them in CONNECT.
 */
export interface TransportCredentials {
  /** The name they are for, when the transport said (HTTP Basic). */
  readonly user?: string;
  /** The token or password. Never logged. */
  readonly secret: string;
}

/** A byte-stream transport of one connection. */
export interface StreamConn extends ByteReader, ByteWriter {
  /** The peer's address (a `Deno.NetAddr` for TCP, and for a WebSocket the HTTP peer's). */
  readonly remoteAddr: Deno.Addr;
  /**
   * Closes the transport; a pending read then ends. A transport that can tell the peer why (a
   * WebSocket's Close frame) uses `reason`; a `Deno.Conn` ignores it and throws if already closed.
   */
  close(reason?: CloseReason): void;
  /** Hands over, once, the credentials the transport carried (none for TCP). */
  takeCredentials?(): TransportCredentials | undefined;
}
