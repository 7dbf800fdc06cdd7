/**
 * Every tunable of the HTTP listener in one object, with defaults. The gateway maps its `http`
 * config section onto {@link HttpServerOptions}.
 *
 * @module
 */

/** Tunables of the HTTP listener. */
export interface HttpServerOptions {
  /** Address to bind. @default "127.0.0.1" */
  hostname: string;
  /** Port (0 picks a free one). @default 8080 */
  port: number;
  /** Serve HTTPS with these PEM files (reloaded when they change). */
  tls?: { certFile: string; keyFile: string };
  /** Whether the gateway is ready (all listeners up, not shutting down). */
  ready?: () => boolean;
  /** Open HTTP connections at most; more are answered 503 and closed. @default 1024 */
  maxConnections?: number;
  /**
   * A new connection must have sent a whole request head within this long, ms; else it is closed
   * (slowloris). @default 10000
   */
  headersTimeoutMs?: number;
  /**
   * After an answer (other than an event stream), the client must read it and send its next
   * request head within this long, ms; else the connection is closed (an idle keep-alive, a head
   * dribbled byte by byte, a client that does not read). @default 30000
   */
  idleTimeoutMs?: number;
  /**
   * On shutdown, requests in progress may finish for this long before every connection is cut,
   * ms. @default 5000
   */
  shutdownGraceMs?: number;
  /**
   * Host names (besides IP literals, `localhost` and this machine's host name) that requests may
   * name in `Host`; others get 421 (DNS rebinding). `"*"` accepts any. @default []
   */
  allowedHosts?: string[];
  /**
   * Serve `/metrics` and the OpenAPI documents without credentials. `"auto"`: only while the
   * listener is bound to loopback; otherwise they need a service account whose ACL allows
   * subscribing to `$SYS/#` (HTTP Basic or a dashboard session). @default "auto"
   */
  publicMetrics?: boolean | "auto";
}

/** {@link HttpServerOptions} with defaults filled in. */
export type ResolvedHttpServerOptions =
  & Required<Omit<HttpServerOptions, "tls" | "ready" | "publicMetrics">>
  & Pick<HttpServerOptions, "tls" | "ready">
  & { publicMetrics: boolean };

/** Defaults of the tunables. */
export const defaultHttpServerOptions = Object.freeze({
  hostname: "127.0.0.1",
  port: 8080,
  maxConnections: 1024,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 30_000,
  shutdownGraceMs: 5_000,
  allowedHosts: [] as string[],
  publicMetrics: "auto" as boolean | "auto",
});

/** True for loopback host names and addresses. */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\./.test(host);
}

/**
 * Fills in defaults and checks ranges.
 *
 * @throws {RangeError} when a number is out of range.
 * @example
 * ```ts
 * import { resolveHttpServerOptions } from "./options.ts";
 * const o = resolveHttpServerOptions({ hostname: "0.0.0.0", port: 0 });
 * if (o.publicMetrics || o.maxConnections !== 1024) throw new Error("metrics public off loopback");
 * if (!resolveHttpServerOptions({ hostname: "127.0.0.1", port: 0 }).publicMetrics) throw new Error();
 * ```
 */
export function resolveHttpServerOptions(o: HttpServerOptions): ResolvedHttpServerOptions {
  const d = defaultHttpServerOptions;
  const out = {
    ...d,
    ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)),
  } as HttpServerOptions & typeof d;
  for (
    const k of [
      "maxConnections",
      "headersTimeoutMs",
      "idleTimeoutMs",
      "shutdownGraceMs",
    ] as const
  ) {
    const v = out[k];
    if (typeof v !== "number" || !Number.isFinite(v) || v < 1) {
      throw new RangeError(`Cannot configure the HTTP listener: ${k} must be >= 1, got ${v}`);
    }
  }
  const pm = out.publicMetrics;
  return {
    ...out,
    publicMetrics: pm === "auto" ? isLoopbackHost(out.hostname) : pm,
  } as ResolvedHttpServerOptions;
}
