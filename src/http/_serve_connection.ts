/**
 * Deno's own HTTP server (the one behind `Deno.serve`: hyper, with its native request and response
 * paths) run on one connection the listener has already accepted. `Deno.serve` accepts inside the
 * runtime and offers no hook on a connection; this entry point is how the runtime serves a single
 * connection (it is what `Deno.serve` does per connection, exported on `Deno[Deno.internal]`), so
 * Ferry keeps its own accept loop (admission, caps, descriptor budget, `EMFILE`) and its own
 * deadlines, and the request path stays the runtime's.
 *
 * It is not a public API: it is checked once here, and {@link serveConnection} throws a clear error
 * at start-up if a Deno upgrade removes or changes it (the test suite pins that it exists). See
 * `docs/http-api.md`, "The HTTP listener", for the choice and its measurements.
 *
 * @module
 */

/** What serving one connection returns. */
export interface ConnectionServer {
  /** Resolves once the connection is closed (by either side). */
  readonly finished: Promise<void>;
}

/**
 * A connection being served: {@link close} cuts it at once (a request in progress included: its
 * body read fails), and is safe at any time, also after the connection ended.
 */
export class ServedConnection {
  /** Resolves once the connection is closed (by either side). */
  readonly finished: Promise<void>;
  #ac: AbortController;
  #done = false;

  /** Internal: made by {@link serveConnection}. */
  constructor(ac: AbortController, server: ConnectionServer) {
    this.#ac = ac;
    this.finished = server.finished.catch(() => {}).finally(() => this.#done = true);
  }

  /** True once the connection ended. */
  get done(): boolean {
    return this.#done;
  }

  /** Closes the connection now. Idempotent; harmless once it ended. */
  close(): void {
    if (this.#done || this.#ac.signal.aborted) return;
    // The runtime's abort listener closes the connection's server resource without checking it
    // still exists, and the resource can go (the client closed) a turn before `finished`
    // resolves: its `BadResource` would be reported as uncaught and end the process. It is
    // reported synchronously while the signal aborts, so it is caught here, and only it.
    globalThis.addEventListener("error", swallowGone);
    try {
      this.#ac.abort();
    } finally {
      globalThis.removeEventListener("error", swallowGone);
    }
  }
}

function swallowGone(e: ErrorEvent): void {
  if (e.error instanceof Deno.errors.BadResource) e.preventDefault();
}

/** A request handler with the runtime's handler info (`remoteAddr`, `completed`). */
export type ConnectionHandler = (
  req: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Response | Promise<Response>;

type Internal = (
  conn: Deno.Conn,
  signal: AbortSignal,
  handler: ConnectionHandler,
  onError: (error: unknown) => Response | Promise<Response>,
  onListen: (addr: unknown) => void,
) => ConnectionServer;

function lookup(): Internal | undefined {
  const d = Deno as unknown as Record<symbol, Record<string, unknown> | undefined>;
  const internal = (Deno as unknown as { internal?: symbol }).internal;
  const fn = internal === undefined ? undefined : d[internal]?.serveHttpOnConnection;
  return typeof fn === "function" && fn.length === 5 ? fn as Internal : undefined;
}

// Looked up at the first connection: reading `Deno[Deno.internal]` loads the runtime's HTTP server
// scripts (~7 ms), which the gateway's start-up leaves until a client comes.
let internal: Internal | undefined | null = null;

/**
 * Serves HTTP on `conn` until it closes or is closed.
 *
 * @throws {TypeError} when the runtime lacks the per-connection server (a Deno upgrade changed it).
 * @example
 * ```ts
 * import { serveConnection } from "./_serve_connection.ts";
 * const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = Deno.connect({ hostname: "127.0.0.1", port: (l.addr as Deno.NetAddr).port });
 * const s = serveConnection(await l.accept(), () => new Response("hi"), () => new Response(null, { status: 500 }));
 * const c = await client;
 * await c.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
 * const buf = new Uint8Array(512);
 * const n = await c.read(buf);
 * s.close();
 * await s.finished;
 * s.close(); // harmless once ended
 * c.close();
 * l.close();
 * if (!new TextDecoder().decode(buf.subarray(0, n!)).startsWith("HTTP/1.1 200")) throw new Error();
 * ```
 */
export function serveConnection(
  conn: Deno.Conn,
  handler: ConnectionHandler,
  onError: (error: unknown) => Response | Promise<Response>,
): ServedConnection {
  if (internal === null) internal = lookup();
  if (!internal) {
    throw new TypeError(
      `Cannot serve HTTP: this Deno (${Deno.version.deno}) lacks the per-connection server ` +
        "Ferry's HTTP listener is built on (Deno[Deno.internal].serveHttpOnConnection); use Deno 2.9",
    );
  }
  const ac = new AbortController();
  return new ServedConnection(ac, internal(conn, ac.signal, handler, onError, () => {}));
}

/** `Deno.serveHttp`'s connection (deprecated, still in Deno 2.9; not in the public types). */
interface LegacyHttpConn extends AsyncIterable<LegacyRequestEvent> {
  close(): void;
}
interface LegacyRequestEvent {
  readonly request: Request;
  respondWith(r: Response | Promise<Response>): Promise<void>;
}

/**
 * Serves HTTP on `conn` with the runtime's older per-connection server (`Deno.serveHttp`), for a
 * listener that must hand connections over to another protocol (`Deno.upgradeWebSocket`): on
 * Deno 2.9 the server of {@link serveConnection} closes an upgraded connection as soon as its HTTP
 * part ends (the WebSocket closes 1005 right after it opened), this one does not. It costs more CPU
 * per request (`docs/http-api.md`, "The HTTP listener"), so it is used only where an upgrade route
 * is mounted. Same contract as {@link serveConnection}.
 *
 * @throws {TypeError} when the runtime lacks `Deno.serveHttp`.
 * @example
 * ```ts
 * import { serveUpgradableConnection } from "./_serve_connection.ts";
 * const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = Deno.connect({ hostname: "127.0.0.1", port: (l.addr as Deno.NetAddr).port });
 * const s = serveUpgradableConnection(await l.accept(), () => new Response("hi"), () => new Response(null, { status: 500 }));
 * const c = await client;
 * await c.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
 * const buf = new Uint8Array(512);
 * const n = await c.read(buf);
 * s.close();
 * await s.finished;
 * c.close();
 * l.close();
 * if (!new TextDecoder().decode(buf.subarray(0, n!)).startsWith("HTTP/1.1 200")) throw new Error();
 * ```
 */
export function serveUpgradableConnection(
  conn: Deno.Conn,
  handler: ConnectionHandler,
  onError: (error: unknown) => Response | Promise<Response>,
): ServedConnection {
  const serveHttp = (Deno as unknown as { serveHttp?: (c: Deno.Conn) => LegacyHttpConn })
    .serveHttp;
  if (typeof serveHttp !== "function") {
    throw new TypeError(
      `Cannot serve HTTP upgrades: this Deno (${Deno.version.deno}) lacks Deno.serveHttp`,
    );
  }
  const http = serveHttp(conn);
  const ac = new AbortController();
  ac.signal.addEventListener("abort", () => {
    try {
      http.close();
    } catch { /* closed */ }
  }, { once: true });
  const info = {
    remoteAddr: conn.remoteAddr as Deno.NetAddr,
    completed: Promise.resolve(),
  } as Deno.ServeHandlerInfo<Deno.NetAddr>;
  const answer = async (req: Request): Promise<Response> => {
    try {
      return await handler(req, info);
    } catch (err) {
      return await onError(err);
    }
  };
  const finished = (async () => {
    try {
      for await (const ev of http) {
        // HTTP/1.1: the next request event comes once this answer is sent.
        ev.respondWith(answer(ev.request)).catch(() => {/* the client went away */});
      }
    } catch { /* the connection failed or was closed */ }
  })();
  return new ServedConnection(ac, { finished });
}
