/**
 * The HTTP listener: `/healthz` (the process serves), `/readyz` (every listener is up and the
 * gateway is not shutting down) and `/metrics` (Prometheus text format); further routes (dashboard,
 * device API, management API) mount on it through {@link HttpServer.route}.
 *
 * The accept loop is Ferry's (`TcpListener`, as for FBP/1 and MQTT): every connection is admitted
 * by the core (the descriptor budget shared by every listener, the per-address cap) and counted
 * against `maxConnections`, and an `EMFILE` is logged, never fatal. Each admitted connection is then
 * served by the runtime's own HTTP server (`_serve_connection.ts`), under deadlines kept here on
 * the core's timer heap (one entry per connection, touched, not re-made, per request): a new
 * connection must send a request head within `headersTimeoutMs`; after each answer the client must
 * read it and begin its next request within `idleTimeoutMs`; an answer that says
 * `Connection: close` (a 408 after a body that never came) or leaves the request body unread
 * closes the connection once sent; and shutdown waits at most `shutdownGraceMs` for requests in
 * progress before it cuts every connection. Why not `Deno.serve`,
 * a `node:http` server or an HTTP parser of our own: `docs/http-api.md`, "The HTTP listener".
 *
 * Every request passes one gate before any route: its `Host` must be well-formed (else 400) and
 * name this gateway (an IP literal, `localhost`, this machine's host name, or a name in
 * `allowedHosts`), else 421: the defence against DNS rebinding.
 *
 * @module
 */

import type { Core } from "../core/core.ts";
import type { DeadlineEntry } from "../core/deadline_queue.ts";
import type { DevicePort } from "../core/device_port.ts";
import { TcpListener } from "../net/tcp_listener.ts";
import type { ListenAddress, Listener } from "../protocols/listener.ts";
import {
  serveConnection,
  type ServedConnection,
  serveUpgradableConnection,
} from "./_serve_connection.ts";
import {
  type HttpServerOptions,
  type ResolvedHttpServerOptions,
  resolveHttpServerOptions,
} from "./options.ts";

export type { HttpServerOptions } from "./options.ts";

/** Who sent a request. */
export interface RequestInfo {
  /** The peer's address. */
  readonly remoteAddr: Deno.NetAddr;
}

/** A route handler; returns `undefined` to let the next route try. */
export type Route = (
  req: Request,
  url: URL,
  info: RequestInfo,
) => Response | Promise<Response> | undefined;

/**
 * Decides whether a request may read `/metrics` and the API documents when they are not public:
 * true, or the response to answer with (401/403).
 */
export type MetricsGuard = (req: Request, info: RequestInfo) => true | Response;

const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/;
// RFC 9110 §7.2 / RFC 3986 §3.2.2: a reg-name, IPv4 address or bracketed IP literal, and a port.
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]{1,5})?$/;
const FAR = 3_600_000;
/** How long a connection to be closed stays open after its last answer, ms. */
const LINGER_MS = 1000;

/** The host name of a `Host` value (port and IPv6 brackets handled), lower-cased. */
function hostName(host: string): string {
  if (host.startsWith("[")) return host.slice(0, host.indexOf("]") + 1).toLowerCase();
  const colon = host.indexOf(":");
  return (colon < 0 ? host : host.slice(0, colon)).toLowerCase().replace(/\.$/, "");
}

function systemHostName(): string | undefined {
  try {
    return Deno.hostname().toLowerCase();
  } catch {
    return undefined;
  }
}

/** One accepted connection: its close handle, its deadline, its requests in progress. */
class Link {
  readonly address: string;
  served: ServedConnection | undefined;
  /** A handler works, or a stream is being sent. */
  busy = false;
  /** Close once the answer in progress is sent. */
  closing = false;
  deadline: DeadlineEntry | undefined;

  constructor(address: string) {
    this.address = address;
  }

  close(): void {
    this.deadline?.cancel();
    this.served?.close();
  }

  /** Set by the server: arms a fresh far deadline after one expired with work in progress. */
  rearm: () => void = () => {};
}

function onDeadline(link: Link): void {
  // A handler at work (a long-poll, a stream) owns its own waits: look again later.
  if (link.busy) {
    link.rearm();
    return;
  }
  // No request came (head timeout), the keep-alive went idle, or the answer was not read.
  link.close();
}

/**
 * Serves HTTP/1.1.
 *
 * @example
 * ```ts
 * import { Core } from "../core/core.ts";
 * import { silentLogger } from "../core/logger.ts";
 * import { HttpServer } from "./server.ts";
 * const core = new Core({ log: silentLogger });
 * const http = new HttpServer(core, { hostname: "127.0.0.1", port: 0 });
 * const { port } = await http.listen();
 * const res = await fetch(`http://127.0.0.1:${port}/healthz`);
 * await res.body?.cancel();
 * await http.close();
 * await core.close();
 * if (res.status !== 200) throw new Error(`${res.status}`);
 * if (http.knownHost("evil.example") || !http.knownHost("127.0.0.1:8080")) throw new Error();
 * ```
 */
export class HttpServer implements Listener {
  /** Listener name. */
  readonly name = "http";
  #core: Core;
  #port: DevicePort;
  #opts: ResolvedHttpServerOptions;
  #routes: Route[] = [];
  #upgrades = false;
  #listener: TcpListener | undefined;
  #accepting: Promise<void> | undefined;
  #links = new Set<Link>();
  #allClosed: PromiseWithResolvers<void> | undefined;
  #closing: Promise<void> | undefined;
  #hosts: Set<string>;
  #anyHost: boolean;
  #wildcards: string[];
  #metricsGuard: MetricsGuard | undefined;
  #started = Date.now();

  /** Creates the server. */
  constructor(core: Core, options: HttpServerOptions) {
    this.#core = core;
    this.#port = core.port({ name: "http" });
    const o = this.#opts = resolveHttpServerOptions(options);
    const names = o.allowedHosts.map((h) => h.toLowerCase());
    this.#anyHost = names.includes("*");
    this.#wildcards = names.filter((h) => h.startsWith("*.")).map((h) => h.slice(1));
    this.#hosts = new Set(["localhost", ...names.filter((h) => !h.startsWith("*"))]);
    const sys = systemHostName();
    if (sys) this.#hosts.add(sys).add(`${sys}.local`);
    if (!IPV4.test(o.hostname) && !o.hostname.includes(":")) {
      this.#hosts.add(o.hostname.toLowerCase());
    }
    this.#processMetrics();
  }

  /** Resolved options. */
  get options(): Readonly<ResolvedHttpServerOptions> {
    return this.#opts;
  }

  /** Open connections. */
  get connectionCount(): number {
    return this.#links.size;
  }

  /**
   * Adds a route, tried in order before the built-in ones. `upgrades: true` for a route that may
   * answer `Deno.upgradeWebSocket`'s 101: the listener then serves its connections with the
   * runtime's older per-connection server, the one that leaves an upgraded connection open (and
   * costs more CPU per request; `docs/http-api.md`, "The HTTP listener"). Before {@link listen}.
   */
  route(route: Route, options: { upgrades?: boolean } = {}): void {
    if (options.upgrades) {
      if (this.#listener) {
        throw new TypeError("Cannot add an upgrade route: the HTTP server is already listening");
      }
      this.#upgrades = true;
    }
    this.#routes.push(route);
  }

  /** Sets who may read `/metrics` and the API documents when they are not public. */
  guardMetrics(guard: MetricsGuard): void {
    this.#metricsGuard = guard;
  }

  /**
   * True when `host` (a `Host` value) names this gateway: an IP literal, `localhost` (or a name
   * under `.localhost`), this machine's host name, the bound name, or an allowed name.
   */
  knownHost(host: string): boolean {
    if (this.#anyHost) return true;
    const name = hostName(host);
    if (name.startsWith("[") || IPV4.test(name) || this.#hosts.has(name)) return true;
    if (name.endsWith(".localhost")) return true; // RFC 6761 §6.3: always loopback
    return this.#wildcards.some((w) => name.endsWith(w));
  }

  /** Binds and serves. */
  listen(): Promise<ListenAddress> {
    if (this.#listener) throw new TypeError("Cannot listen: the HTTP server is already listening");
    const log = this.#port.log;
    const l = new TcpListener({
      hostname: this.#opts.hostname,
      port: this.#opts.port,
      tls: this.#opts.tls,
      onReload: () => log.info("TLS certificate reloaded"),
      onReloadError: (error) =>
        log.error("TLS certificate not reloaded; the previous one stays", { error }),
    });
    this.#listener = l;
    this.#accepting = this.#acceptLoop(l);
    return Promise.resolve({ hostname: l.hostname, port: l.port });
  }

  async #acceptLoop(l: TcpListener): Promise<void> {
    const stats = this.#port.stats;
    for (;;) {
      let conn: Deno.Conn | null;
      try {
        conn = await l.accept();
        if (conn === null) return;
      } catch (err) {
        if (this.#closing) return;
        // EMFILE and friends: never fatal. Log (rate-limited), back off briefly, serve the rest.
        stats.error("accept_failed");
        this.#port.throttled.error("accept", "accept failed", { error: err });
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      if (this.#closing) {
        closeQuietly(conn);
        continue;
      }
      const address = (conn.remoteAddr as Deno.NetAddr).hostname;
      if (this.#links.size >= this.#opts.maxConnections) {
        stats.drop("connection_limit");
        this.#port.throttled.warn("connection_limit", "connection refused: limit reached", {
          limit: this.#opts.maxConnections,
          address,
        });
        refuse(conn, `Cannot serve: the ${this.#opts.maxConnections} connection limit is reached`);
        continue;
      }
      if (!this.#port.admit(address)) {
        stats.drop("admission_refused");
        refuse(conn, "Cannot serve: too many connections");
        continue;
      }
      try {
        (conn as Deno.TcpConn).setNoDelay?.(true);
      } catch { /* not fatal */ }
      this.#serve(conn, address);
    }
  }

  #serve(conn: Deno.Conn, address: string): void {
    const port = this.#port;
    const link = new Link(address);
    this.#links.add(link);
    port.stats.opened();
    const arm = (ms: number) => {
      try {
        link.deadline = port.deadlines.add(ms, onDeadline, link);
      } catch { /* the core is closed; the shutdown bounds the connection */ }
    };
    link.rearm = () => arm(FAR);
    arm(this.#opts.headersTimeoutMs);
    try {
      link.served = (this.#upgrades ? serveUpgradableConnection : serveConnection)(
        conn,
        (req, info) => this.#request(link, req, info),
        (err) => {
          this.#port.throttled.error("handler_failed", "request failed", { error: errorText(err) });
          return text(500, "Internal error");
        },
      );
    } catch (err) {
      this.#port.throttled.error("serve_failed", "cannot serve a connection", {
        error: errorText(err),
      });
      closeQuietly(conn);
      this.#closed(link);
      return;
    }
    link.served.finished.then(() => this.#closed(link));
  }

  #closed(link: Link): void {
    if (!this.#links.delete(link)) return;
    link.deadline?.cancel();
    this.#port.release(link.address);
    this.#port.stats.closed();
    if (this.#links.size === 0) this.#allClosed?.resolve();
  }

  /**
   * One request, and the connection's deadline around it: none while the handler works (it owns
   * its waits: a long-poll, a stream), then `idleTimeoutMs` from its answer, in which the client
   * must read the answer and begin the next request (a client that does not read is cut there).
   */
  async #request(
    link: Link,
    req: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ): Promise<Response> {
    link.busy = true;
    link.deadline?.touch(FAR);
    let res: Response;
    try {
      res = await this.#handle(req, info);
    } catch (err) {
      this.#port.stats.error("handler_failed");
      this.#port.throttled.error("handler_failed", "request failed", { error: errorText(err) });
      res = text(500, "Internal error");
    }
    if (res.status === 101) {
      // Upgraded (MQTT over WebSocket on this port): the connection now belongs to the upgraded
      // protocol, which watches it (MQTT keepalive); no listener deadline, and the request must
      // not be touched any more (the runtime has closed it).
      link.deadline?.cancel();
      link.deadline = undefined;
      return res;
    }
    // A body left unread, or an answer that says close (a 408): close once it is sent, so
    // nothing of an abandoned upload stays (the runtime would wait for the rest of it).
    // (`req.body`/`res.body` are not touched: that would turn a string body into a stream.)
    // It is closed a moment after the answer (RFC 9112 §9.6: the client reads the answer and
    // closes first; cutting at once could lose the answer in a reset).
    if (
      (hasBody(req) && !req.bodyUsed) ||
      res.headers.get("connection")?.toLowerCase() === "close" || this.#closing !== undefined
    ) link.closing = true;
    const type = res.headers.get("content-type");
    if (type !== null && type.startsWith("text/event-stream") && res.body) {
      // A stream is sent as it comes: the connection is busy until it ends.
      const body = res.body.pipeThrough(new TransformStream({ flush: () => this.#idle(link) }));
      return new Response(body, { status: res.status, headers: res.headers });
    }
    this.#idle(link);
    return res;
  }

  #idle(link: Link): void {
    link.busy = false;
    link.deadline?.touch(link.closing ? LINGER_MS : this.#opts.idleTimeoutMs);
  }

  async #handle(req: Request, info: RequestInfo): Promise<Response> {
    const host = req.headers.get("host") ?? "";
    if (!HOST.test(host)) {
      // Never echo or log the value: a malformed Host may carry anything, a token included.
      this.#port.stats.error("bad_host");
      this.#port.throttled.warn("bad_host", "request refused: malformed Host", {
        address: info.remoteAddr.hostname,
      });
      return text(400, "Cannot serve: malformed or missing Host");
    }
    if (!this.knownHost(host)) {
      this.#port.stats.error("unknown_host");
      this.#port.throttled.warn("unknown_host", "request refused: unknown Host", {
        host: hostName(host).slice(0, 100),
        address: info.remoteAddr.hostname,
      });
      return text(
        421,
        `Cannot serve host "${hostName(host).slice(0, 100)}": not a name of this gateway ` +
          "(add it to http.allowedHosts)",
      );
    }
    let url: URL;
    try {
      url = new URL(req.url);
    } catch {
      return text(400, "Cannot serve: malformed request URL");
    }
    for (const r of this.#routes) {
      const res = await r(req, url, info);
      if (res) return res;
    }
    return this.#builtIn(req, url, info);
  }

  #builtIn(req: Request, url: URL, info: RequestInfo): Response {
    switch (url.pathname) {
      case "/healthz":
        return Response.json({ status: "ok" }, { headers: { "cache-control": "no-store" } });
      case "/readyz": {
        const ready = !this.#core.closing && !this.#closing && (this.#opts.ready?.() ?? true);
        return Response.json({ status: ready ? "ready" : "not ready" }, {
          status: ready ? 200 : 503,
          headers: { "cache-control": "no-store" },
        });
      }
      case "/metrics": {
        const denied = this.guard(req, info);
        if (denied) return denied;
        return new Response(this.#core.metrics.render(), {
          headers: {
            "content-type": "text/plain; version=0.0.4; charset=utf-8",
            "cache-control": "no-store",
          },
        });
      }
      default:
        return Response.json({ error: "not found", path: url.pathname }, { status: 404 });
    }
  }

  /**
   * `undefined` when the request may read `/metrics` and the API documents; else the answer.
   * Public when `publicMetrics` says so; otherwise the metrics guard decides (none: refused).
   */
  guard(req: Request, info: RequestInfo): Response | undefined {
    if (this.#opts.publicMetrics) return undefined;
    const r = this.#metricsGuard?.(req, info);
    if (r === true) return undefined;
    return r ?? text(403, "Cannot serve: metrics are not public on this listener");
  }

  /**
   * Stops accepting; closes idle connections at once and lets requests in progress finish; after
   * `shutdownGraceMs` cuts every connection left. Resolves when every connection is closed: the
   * shutdown is bounded whatever clients do. Idempotent.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      this.#listener?.close();
      await this.#accepting;
      await this.#listener?.closed();
      this.#allClosed = Promise.withResolvers();
      if (this.#links.size === 0) this.#allClosed.resolve();
      // Idle connections close now; busy ones after their answer (`close` above), or at the
      // grace deadline.
      for (const link of this.#links) {
        if (link.busy) link.closing = true;
        else link.close();
      }
      const grace = setTimeout(() => {
        for (const link of this.#links) link.close();
      }, this.#opts.shutdownGraceMs);
      await this.#allClosed.promise;
      clearTimeout(grace);
      this.#port.throttled.flush();
    })();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #processMetrics(): void {
    const m = this.#core.metrics;
    const mem = () => Deno.memoryUsage();
    m.gauge("ferry_process_resident_memory_bytes", "Resident set size", () => mem().rss);
    m.gauge("ferry_process_heap_used_bytes", "V8 heap used", () => mem().heapUsed);
    m.gauge("ferry_process_heap_total_bytes", "V8 heap committed", () => mem().heapTotal);
    m.gauge(
      "ferry_process_external_bytes",
      "Memory held outside the V8 heap by JS objects",
      () => mem().external,
    );
    m.gauge(
      "ferry_uptime_seconds",
      "Seconds since start",
      () => (Date.now() - this.#started) / 1000,
    );
    // The standard process_* metrics are src/ops/process_metrics.ts's (registered by the gateway).
  }
}

/** A plain-text answer. */
function text(status: number, body: string): Response {
  return new Response(`${body}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
  });
}

const encoder = new TextEncoder();

/** Answers a connection the server will not keep, without reading it, and closes it. */
function refuse(conn: Deno.Conn, message: string): void {
  const body = `${message}\n`;
  const bytes = encoder.encode(
    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n" +
      `content-length: ${body.length}\r\nretry-after: 5\r\nconnection: close\r\n\r\n${body}`,
  );
  conn.write(bytes).catch(() => {}).finally(() => closeQuietly(conn));
}

/** True when the request declares a body (RFC 9112 §6.3). */
function hasBody(req: Request): boolean {
  const length = req.headers.get("content-length");
  return (length !== null && length !== "0") || req.headers.has("transfer-encoding");
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* closed */ }
}

/** An error for a log line: name and message, never a request's headers. */
function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
