/**
 * The server side of the WebSocket opening handshake (RFC 6455 §4.2) on a raw socket: read the
 * HTTP/1.1 request head under a hard size cap, check it is a well-formed WebSocket upgrade, and
 * write the `101 Switching Protocols` answer or an HTTP refusal that says why. Which path,
 * subprotocol, origins and credentials are acceptable is the caller's policy (for MQTT,
 * `src/protocols/mqtt/ws_upgrade.ts`).
 *
 * @module
 */

import type { ByteReader } from "./chunk_reader.ts";
import type { ByteWriter } from "./conn_writer.ts";

/** The GUID of RFC 6455 §1.3, appended to the client's key to make the accept value. */
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** An upgrade refused: the HTTP status and a message for the response body and the log. */
export class WsHandshakeError extends Error {
  override name = "WsHandshakeError";
  /** HTTP status of the refusal. */
  readonly status: number;
  /** Extra response headers (`Sec-WebSocket-Version` with a 426, say). */
  readonly headers: Readonly<Record<string, string>>;
  /** Creates the error. */
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

/** An HTTP request head, as far as an upgrade needs it. */
export interface UpgradeRequest {
  /** Method (`GET`). */
  method: string;
  /** Request target (path and query, as sent). */
  target: string;
  /** Header fields. */
  headers: Headers;
}

/** What {@link readUpgradeRequest} read. */
export interface ReadRequest {
  /** The request head. */
  request: UpgradeRequest;
  /** Bytes the client sent after the head (frames it did not wait to send), if any. */
  rest: Uint8Array | undefined;
}

const CRLFCRLF = [13, 10, 13, 10];

function indexOfEnd(buf: Uint8Array, len: number, from: number): number {
  for (let i = Math.max(0, from - 3); i + 3 < len; i++) {
    if (
      buf[i] === CRLFCRLF[0] && buf[i + 1] === CRLFCRLF[1] && buf[i + 2] === CRLFCRLF[2] &&
      buf[i + 3] === CRLFCRLF[3]
    ) return i;
  }
  return -1;
}

/**
 * Reads an HTTP/1.1 request head from `conn`, at most `maxBytes` of it (431 past that), and
 * parses it (400 when it is not HTTP/1.1). Resolves `null` when the peer closes before a whole
 * head arrived.
 *
 * @example
 * ```ts
 * import { readUpgradeRequest } from "./ws_handshake.ts";
 * const text = "GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n";
 * let sent = false;
 * const conn = { read: (p: Uint8Array) => {
 *   if (sent) return Promise.resolve(null);
 *   sent = true;
 *   const b = new TextEncoder().encode(text); p.set(b); return Promise.resolve(b.length);
 * } };
 * const r = await readUpgradeRequest(conn, 8192);
 * if (r?.request.target !== "/mqtt" || r.request.headers.get("host") !== "x") throw new Error();
 * ```
 */
export async function readUpgradeRequest(
  conn: ByteReader,
  maxBytes: number,
): Promise<ReadRequest | null> {
  let buf = new Uint8Array(Math.min(1024, maxBytes));
  let len = 0;
  for (;;) {
    if (len === buf.length) {
      if (buf.length >= maxBytes) {
        throw new WsHandshakeError(
          431,
          `Cannot upgrade: the request head exceeds the ${maxBytes} byte limit`,
        );
      }
      const bigger = new Uint8Array(Math.min(maxBytes, buf.length * 4));
      bigger.set(buf);
      buf = bigger;
    }
    const n = await conn.read(buf.subarray(len));
    if (n === null) return null;
    const before = len;
    len += n;
    const end = indexOfEnd(buf, len, before);
    if (end < 0) continue;
    const request = parseHead(buf.subarray(0, end));
    const restStart = end + 4;
    return { request, rest: restStart < len ? buf.slice(restStart, len) : undefined };
  }
}

/** Parses a request head (without its final CRLFCRLF). Throws {@link WsHandshakeError} 400. */
function parseHead(head: Uint8Array): UpgradeRequest {
  // Header bytes are ISO-8859-1 (RFC 9110 §5.5); anything outside visible ASCII fails Headers.
  let text = "";
  for (let i = 0; i < head.length; i += 4096) {
    text += String.fromCharCode(...head.subarray(i, i + 4096));
  }
  const lines = text.split("\r\n");
  const m = /^([A-Z]+) (\S+) HTTP\/1\.1$/.exec(lines[0]);
  if (!m) {
    throw new WsHandshakeError(
      400,
      `Cannot upgrade: "${lines[0].slice(0, 80)}" is not an HTTP/1.1 request line`,
    );
  }
  const headers = new Headers();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    if (colon <= 0 || line[0] === " " || line[0] === "\t") {
      throw new WsHandshakeError(400, `Cannot upgrade: malformed header line ${i + 1}`);
    }
    try {
      headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
    } catch {
      throw new WsHandshakeError(400, `Cannot upgrade: invalid header on line ${i + 1}`);
    }
  }
  return { method: m[1], target: m[2], headers };
}

/** True when the comma-separated header value `v` lists `token` (case-insensitive). */
function listsToken(v: string | null, token: string): boolean {
  if (v === null) return false;
  return v.split(",").some((t) => t.trim().toLowerCase() === token);
}

/**
 * Checks that `req` is a WebSocket opening handshake (RFC 6455 §4.2.1) and returns its
 * `Sec-WebSocket-Key`. Throws {@link WsHandshakeError}: 405 for a method other than GET, 426 with
 * `Upgrade: websocket` for a request that does not ask to upgrade, 426 with
 * `Sec-WebSocket-Version: 13` for another version, 400 for a missing `Host`, `Connection: Upgrade`
 * or a bad key.
 *
 * @example
 * ```ts
 * import { checkUpgrade } from "./ws_handshake.ts";
 * const headers = new Headers({ host: "x", upgrade: "websocket", connection: "Upgrade",
 *   "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13" });
 * if (checkUpgrade({ method: "GET", target: "/", headers }) !== "dGhlIHNhbXBsZSBub25jZQ==") {
 *   throw new Error();
 * }
 * ```
 */
export function checkUpgrade(req: UpgradeRequest): string {
  const h = req.headers;
  if (req.method !== "GET") {
    throw new WsHandshakeError(
      405,
      `Cannot upgrade: method ${req.method}, a WebSocket handshake is a GET`,
      { allow: "GET" },
    );
  }
  if (!listsToken(h.get("upgrade"), "websocket")) {
    throw new WsHandshakeError(
      426,
      "Cannot serve: this endpoint speaks WebSocket only (send Upgrade: websocket)",
      { upgrade: "websocket", connection: "Upgrade" },
    );
  }
  if (!listsToken(h.get("connection"), "upgrade")) {
    throw new WsHandshakeError(400, "Cannot upgrade: Connection must list Upgrade (RFC 6455 §4.1)");
  }
  if (!h.get("host")) throw new WsHandshakeError(400, "Cannot upgrade: no Host header");
  if (h.get("sec-websocket-version") !== "13") {
    throw new WsHandshakeError(
      426,
      `Cannot upgrade: WebSocket version ${
        h.get("sec-websocket-version") ?? "(none)"
      }, only 13 is served (RFC 6455 §4.4)`,
      { "sec-websocket-version": "13" },
    );
  }
  const key = h.get("sec-websocket-key") ?? "";
  let raw: string;
  try {
    raw = atob(key);
  } catch {
    raw = "";
  }
  if (raw.length !== 16) {
    throw new WsHandshakeError(
      400,
      "Cannot upgrade: Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455 §4.1)",
    );
  }
  return key;
}

/**
 * The `Sec-WebSocket-Accept` value for `key` (RFC 6455 §4.2.2).
 *
 * @example
 * ```ts
 * import { acceptKey } from "./ws_handshake.ts";
 * // The example of RFC 6455 §1.3.
 * if (await acceptKey("dGhlIHNhbXBsZSBub25jZQ==") !== "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") throw new Error();
 * ```
 */
export async function acceptKey(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(key + GUID));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

/** The `101 Switching Protocols` response head, echoing `protocol` when one was selected. */
export async function switchingProtocols(key: string, protocol?: string): Promise<Uint8Array> {
  const lines = [
    "HTTP/1.1 101 Switching Protocols",
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Accept: ${await acceptKey(key)}`,
  ];
  if (protocol) lines.push(`Sec-WebSocket-Protocol: ${protocol}`);
  return new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n");
}

const REASONS: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  426: "Upgrade Required",
  431: "Request Header Fields Too Large",
  503: "Service Unavailable",
};

/**
 * A complete HTTP refusal for `err`: status line, its headers, `Connection: close`, and the
 * message as a text body.
 *
 * @example
 * ```ts
 * import { refusalResponse, WsHandshakeError } from "./ws_handshake.ts";
 * const text = new TextDecoder().decode(refusalResponse(new WsHandshakeError(403, "no")));
 * if (!text.startsWith("HTTP/1.1 403 Forbidden\r\n") || !text.endsWith("\r\n\r\nno\n")) throw new Error();
 * ```
 */
export function refusalResponse(err: WsHandshakeError): Uint8Array {
  const body = new TextEncoder().encode(err.message + "\n");
  const lines = [
    `HTTP/1.1 ${err.status} ${REASONS[err.status] ?? "Error"}`,
    "Content-Type: text/plain; charset=utf-8",
    `Content-Length: ${body.length}`,
    "Connection: close",
    ...Object.entries(err.headers).map(([k, v]) => `${k}: ${v}`),
  ];
  const head = new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n");
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}

/** Writes all of `bytes`. */
export async function writeAll(conn: ByteWriter, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}
