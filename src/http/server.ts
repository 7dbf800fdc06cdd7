/**
 * The HTTP listener: `/healthz` (the process serves), `/readyz` (every listener is up and the
 * gateway is not shutting down) and `/metrics` (Prometheus text format). Further routes (dashboard,
 * device API) mount on it through {@link HttpServer.route}.
 *
 * @module
 */

import type { Core } from "../core/core.ts";
import type { ListenAddress, Listener } from "../protocols/listener.ts";

/** Tunables of {@link HttpServer}. */
export interface HttpServerOptions {
  /** Address to bind. @default "127.0.0.1" */
  hostname: string;
  /** Port (0 picks a free one). @default 8080 */
  port: number;
  /** Whether the gateway is ready (all listeners up, not shutting down). */
  ready?: () => boolean;
  /** Serve HTTPS with these PEM files (read at start; restart to change them). */
  tls?: { certFile: string; keyFile: string };
}

/** A route handler; returns `undefined` to let the next route try. */
export type Route = (
  req: Request,
  url: URL,
  info: Deno.ServeHandlerInfo,
) => Response | Promise<Response> | undefined;

/**
 * Serves health and metrics.
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
 * if (res.status !== 200) throw new Error();
 * ```
 */
export class HttpServer implements Listener {
  /** Listener name. */
  readonly name = "http";
  #core: Core;
  #opts: HttpServerOptions;
  #server: Deno.HttpServer | undefined;
  #routes: Route[] = [];
  #started = Date.now();

  /** Creates the server. */
  constructor(core: Core, options: HttpServerOptions) {
    this.#core = core;
    this.#opts = options;
    const m = core.metrics;
    m.gauge(
      "ferry_process_resident_memory_bytes",
      "Resident set size",
      () => Deno.memoryUsage().rss,
    );
    m.gauge("ferry_process_heap_used_bytes", "V8 heap used", () => Deno.memoryUsage().heapUsed);
    m.gauge(
      "ferry_process_heap_total_bytes",
      "V8 heap committed",
      () => Deno.memoryUsage().heapTotal,
    );
    m.gauge(
      "ferry_process_external_bytes",
      "Memory held outside the V8 heap by JS objects",
      () => Deno.memoryUsage().external,
    );
    m.gauge(
      "ferry_uptime_seconds",
      "Seconds since start",
      () => (Date.now() - this.#started) / 1000,
    );
  }

  /** Adds a route, tried in order before the built-in ones. */
  route(route: Route): void {
    this.#routes.push(route);
  }

  /** Binds and serves. */
  listen(): Promise<ListenAddress> {
    return new Promise((resolve, reject) => {
      try {
        const tls = this.#opts.tls;
        this.#server = Deno.serve({
          hostname: this.#opts.hostname,
          port: this.#opts.port,
          ...(tls
            ? { cert: Deno.readTextFileSync(tls.certFile), key: Deno.readTextFileSync(tls.keyFile) }
            : {}),
          onListen: (addr) => resolve({ hostname: addr.hostname, port: addr.port }),
          onError: (err) => {
            this.#core.log.child("http").error("request failed", { error: err });
            return new Response("internal error\n", { status: 500 });
          },
        }, (req, info) => this.#handle(req, info));
      } catch (err) {
        reject(err);
      }
    });
  }

  async #handle(req: Request, info: Deno.ServeHandlerInfo): Promise<Response> {
    const url = new URL(req.url);
    for (const r of this.#routes) {
      const res = await r(req, url, info);
      if (res) return res;
    }
    switch (url.pathname) {
      case "/healthz":
        return Response.json({ status: "ok" });
      case "/readyz": {
        const ready = !this.#core.closing && (this.#opts.ready?.() ?? true);
        return Response.json({ status: ready ? "ready" : "not ready" }, {
          status: ready ? 200 : 503,
        });
      }
      case "/metrics":
        return new Response(this.#core.metrics.render(), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        });
      default:
        return Response.json({ error: "not found", path: url.pathname }, { status: 404 });
    }
  }

  /** Stops serving; waits for in-flight requests. Idempotent. */
  async close(): Promise<void> {
    const s = this.#server;
    this.#server = undefined;
    if (s) await s.shutdown();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
