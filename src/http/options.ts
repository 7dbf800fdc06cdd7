/**
 * Every tunable of the HTTP listener: its part of the `http` config-schema fragment (connection
 * caps and deadlines, accepted host names, trusted proxies, public metrics, the dashboard's login
 * link), the defaults written once there, and {@link HttpServerOptions} derived from it.
 *
 * @module
 */

import { bool, defaults, type Infer, int, list, obj, oneOf, str } from "../config/schema.ts";

/** The listener's part of the `http` config section (the gateway adds `enabled`, `port`, `tls`). */
export const httpServerOptionsSchema = obj("HTTP listener", {
  maxConnections: int(
    "Open HTTP connections at most (within the descriptor budget of every listener); more get 503",
    { min: 1, max: 1_000_000, default: 1024 },
  ),
  headersTimeoutMs: int(
    "A new connection must send a whole request head within this time, ms (slowloris)",
    { min: 100, max: 600_000, default: 10_000 },
  ),
  idleTimeoutMs: int(
    "After an answer the client must read it and begin its next request within this time, ms (idle keep-alives, a head dribbled byte by byte, a client that does not read)",
    { min: 100, max: 3_600_000, default: 30_000 },
  ),
  shutdownGraceMs: int(
    "On shutdown, requests in progress may finish for this long before every connection is cut, ms",
    { min: 1, max: 60_000, default: 5_000 },
  ),
  allowedHosts: list(
    str("host name, or *.domain for its subdomains"),
    'Host names requests may name besides IP literals, localhost and this machine\'s name; others get 421 (DNS rebinding). ["*"] accepts any',
    { default: [] },
  ),
  trustedProxies: list(
    str("IP address"),
    "Peers whose X-Forwarded-For is believed (the dashboard's login throttle); none by default",
    { default: [] },
  ),
  publicMetrics: oneOf(
    ["auto", true, false],
    "Serve /metrics and the OpenAPI documents without credentials (auto: only while bound to loopback); otherwise an account whose ACL covers $SYS/# is needed",
    { default: "auto" },
  ),
  loginLink: bool(
    "Print a one-time dashboard login link at start, and keep a fresh one in {dataDir}/dashboard-login-link (0600)",
    { default: true },
  ),
});

/** The fragment's values. */
export type HttpServerConfig = Infer<typeof httpServerOptionsSchema>;

/** Defaults of the listener's tunables. */
export const defaultHttpServerOptions: Readonly<HttpServerConfig> = Object.freeze(
  defaults(httpServerOptionsSchema),
);

/** Tunables of {@link HttpServer}: where to listen, and the fragment's keys (all optional). */
export interface HttpServerOptions extends Partial<Omit<HttpServerConfig, "loginLink">> {
  /** Address to bind. */
  hostname: string;
  /** Port (0 picks a free one). */
  port: number;
  /** Serve HTTPS with these PEM files (reloaded when they change). */
  tls?: { certFile: string; keyFile: string };
  /** Whether the gateway is ready (all listeners up, not shutting down). */
  ready?: () => boolean;
}

/** {@link HttpServerOptions} with defaults filled in and `publicMetrics` decided. */
export type ResolvedHttpServerOptions =
  & Omit<HttpServerConfig, "loginLink" | "publicMetrics">
  & Pick<HttpServerOptions, "hostname" | "port" | "tls" | "ready">
  & { publicMetrics: boolean };

/** True for loopback host names and addresses. */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\./.test(host);
}

/**
 * Fills in defaults and decides `publicMetrics`.
 *
 * @example
 * ```ts
 * import { resolveHttpServerOptions } from "./options.ts";
 * const o = resolveHttpServerOptions({ hostname: "0.0.0.0", port: 0 });
 * if (o.publicMetrics || o.maxConnections !== 1024) throw new Error("metrics public off loopback");
 * if (!resolveHttpServerOptions({ hostname: "127.0.0.1", port: 0 }).publicMetrics) throw new Error();
 * ```
 */
export function resolveHttpServerOptions(o: HttpServerOptions): ResolvedHttpServerOptions {
  const { loginLink: _, ...d } = defaultHttpServerOptions;
  const given = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  const out = { ...d, ...given } as HttpServerOptions & typeof d;
  const pm = out.publicMetrics;
  return {
    ...out,
    publicMetrics: pm === "auto" ? isLoopbackHost(out.hostname) : pm,
  } as ResolvedHttpServerOptions;
}
