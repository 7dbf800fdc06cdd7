/**
 * A WHATWG `WebSocket` (as `Deno.upgradeWebSocket` returns on an HTTP listener) seen as a byte
 * stream, so MQTT can be served on the HTTP listener's port too. Deno owns the framing here, which
 * sets the limits of this path (measured on Deno 2.9.6, see docs/mqtt.md): a message is buffered
 * whole before it is seen (up to Deno's 64 MiB), unmasked client frames are accepted, and a frame
 * that breaks RFC 6455 closes the socket without a Close frame. What this adapter adds: text
 * messages are refused with 1003 ([MQTT-6.0.0-1]); received messages wait in a queue bounded by
 * `maxQueuedBytes` (Deno cannot stop reading a WebSocket: a peer that outruns its reader is
 * closed with 1008 instead); a write resolves once Deno's `bufferedAmount` is back under
 * `highWaterBytes` (polled), so the writer's drain timeout applies as on a socket. The
 * connection's own port (`ws_conn.ts`) has none of these limits.
 *
 * @module
 */

import type { CloseReason } from "../core/registry.ts";
import type { StreamConn, TransportCredentials } from "./stream_conn.ts";
import { WsCloseCode, wsCloseCode } from "./ws_conn.ts";

/** Tunables of {@link WebSocketConn}, shared by every connection of a route. */
export interface WebSocketConnOptions {
  /** Bytes received and not yet read before the peer is closed (1008). @default 1048576 */
  maxQueuedBytes?: number;
  /** A write waits while Deno holds more than this many unsent bytes. @default 65536 */
  highWaterBytes?: number;
  /** How often a waiting write looks at `bufferedAmount`, ms. @default 10 */
  pollMs?: number;
  /** Called when a message is refused (for the log). */
  onRefused?: (why: string, code: number, conn: WebSocketConn) => void;
  /** Called once when the WebSocket has closed. */
  onClosed?: (conn: WebSocketConn) => void;
}

/** The Close reason text cut to the 123 bytes a Close frame leaves (at a character boundary). */
function closeText(reason: string): string {
  const bytes = new TextEncoder().encode(reason);
  if (bytes.length <= 123) return reason;
  let end = 123;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
  return new TextDecoder().decode(bytes.subarray(0, end));
}

/**
 * A `WebSocket` as a {@link StreamConn} of the bytes of its binary messages.
 *
 * @example
 * ```ts ignore
 * const { socket, response } = Deno.upgradeWebSocket(req, { protocol: "mqtt", idleTimeout: 0 });
 * socket.onopen = () => server.serve(new WebSocketConn(socket, info.remoteAddr, {}));
 * return response;
 * ```
 */
export class WebSocketConn implements StreamConn {
  #ws: WebSocket;
  #opts: WebSocketConnOptions;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #wake: (() => void) | undefined;
  #ended = false;
  #closedSeen = false;
  #credentials: TransportCredentials | undefined;
  /** The HTTP peer's address. */
  readonly remoteAddr: Deno.Addr;

  /** Wraps an open WebSocket. */
  constructor(
    socket: WebSocket,
    remoteAddr: Deno.Addr,
    options: WebSocketConnOptions & { credentials?: TransportCredentials },
  ) {
    this.#ws = socket;
    this.remoteAddr = remoteAddr;
    this.#opts = options;
    this.#credentials = options.credentials;
    socket.binaryType = "arraybuffer";
    socket.onmessage = (e) => this.#message(e.data);
    socket.onclose = () => this.#end();
    socket.onerror = () => {}; // followed by close
  }

  #message(data: unknown): void {
    if (this.#ended) return;
    if (typeof data === "string") {
      this.#refuse(
        "Cannot accept a text message: MQTT over WebSocket takes binary frames only [MQTT-6.0.0-1]",
        WsCloseCode.UnsupportedData,
      );
      return;
    }
    const bytes = new Uint8Array(data as ArrayBuffer);
    const max = this.#opts.maxQueuedBytes ?? 1 << 20;
    if (this.#queued > 0 && this.#queued + bytes.length > max) {
      this.#refuse(
        `Cannot queue more: ${this.#queued + bytes.length} bytes unread exceed ${max}`,
        WsCloseCode.PolicyViolation,
      );
      return;
    }
    this.#queue.push(bytes);
    this.#queued += bytes.length;
    this.#wake?.();
  }

  #refuse(why: string, code: number): void {
    this.#opts.onRefused?.(why, code, this);
    this.#queue = [];
    this.#queued = 0;
    this.#ended = true;
    this.#wake?.();
    try {
      this.#ws.close(code, closeText(why));
    } catch { /* closing */ }
  }

  #end(): void {
    if (!this.#ended) {
      this.#ended = true;
      this.#wake?.();
    }
    if (this.#closedSeen) return;
    this.#closedSeen = true;
    this.#opts.onClosed?.(this);
  }

  /** Hands over the upgrade's credentials, once. */
  takeCredentials(): TransportCredentials | undefined {
    const c = this.#credentials;
    this.#credentials = undefined;
    return c;
  }

  /** Reads queued message bytes into `p`; `null` once the WebSocket is closing or closed. */
  async read(p: Uint8Array): Promise<number | null> {
    while (this.#queue.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((r) => this.#wake = r);
      this.#wake = undefined;
    }
    const first = this.#queue[0];
    const n = Math.min(first.length, p.length);
    p.set(first.subarray(0, n));
    if (n < first.length) this.#queue[0] = first.subarray(n);
    else this.#queue.shift();
    this.#queued -= n;
    return n;
  }

  /** Sends `p` as one binary message; resolves once Deno's send buffer is under the high water. */
  async write(p: Uint8Array): Promise<number> {
    if (this.#ended || this.#ws.readyState !== WebSocket.OPEN) {
      throw new Deno.errors.BadResource("Cannot write: the WebSocket is closing");
    }
    this.#ws.send(p.slice()); // the writer reuses its buffers once a write resolves
    const high = this.#opts.highWaterBytes ?? 65_536;
    while (this.#ws.bufferedAmount > high) {
      if (this.#ended) throw new Deno.errors.BadResource("Cannot write: the WebSocket closed");
      await new Promise((r) => setTimeout(r, this.#opts.pollMs ?? 10));
    }
    return p.length;
  }

  /** Closes with the code for `reason` (see {@link wsCloseCode}) and its message. Idempotent. */
  close(reason?: CloseReason): void {
    if (this.#ended && this.#ws.readyState !== WebSocket.OPEN) return;
    this.#ended = true;
    this.#wake?.();
    try {
      this.#ws.close(wsCloseCode(reason), closeText(reason?.message ?? ""));
    } catch { /* closing */ }
  }
}
