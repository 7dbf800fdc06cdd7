/**
 * The HTTP device API: the fourth southbound protocol. One class owns the shared state (its use
 * of the core's command store, the waiters per device, rate limiter, shutdown signal) and dispatches every request
 * under `/api/v1/` to its handler (`handle_*.ts`); everything else is left to the next route.
 *
 * @module
 */

import {
  CHANNEL_RE,
  COMMAND_NAME_RE,
  type CommandListener,
  type Core,
  type DevicePort,
  type Identity,
  isDeviceId,
  type Logger,
  type ProtocolSpec,
  type Refusal,
} from "../../core/mod.ts";
import type { ApiContext } from "./_context.ts";
import { authenticateRequest } from "./auth.ts";
import { handleAck } from "./handle_ack.ts";
import { handleLongPoll } from "./handle_commands.ts";
import { handleStream } from "./handle_stream.ts";
import { handleTelemetry } from "./handle_telemetry.ts";
import { openApiDocument } from "./openapi.ts";
import {
  type DeviceApiOptions,
  type ResolvedDeviceApiOptions,
  resolveDeviceApiOptions,
} from "./options.ts";
import { problem, type ProblemInit, type ProblemSlug } from "./problem.ts";

/** The HTTP device API as the core knows it: the label of its messages, presence and metrics. */
export const HTTP: ProtocolSpec = Object.freeze({ name: "http" });

/** Path prefix of the API. */
export const API_PREFIX = "/api/v1/";

const WWW_AUTHENTICATE = 'Bearer realm="ferry", Basic realm="ferry"';

/**
 * Serves the device API on an {@link HttpServer} route.
 *
 * @example
 * ```ts
 * import { Core, silentLogger } from "../../core/mod.ts";
 * import { HttpServer } from "../server.ts";
 * import { DeviceApi } from "./device_api.ts";
 * const core = new Core({ log: silentLogger, devices: [{ id: "d1", token: "t1" }] });
 * const api = new DeviceApi(core, { maxBodyBytes: 1024 });
 * const http = new HttpServer(core, { hostname: "127.0.0.1", port: 0 });
 * http.route((req, url) => api.handle(req, url));
 * const { port } = await http.listen();
 * const res = await fetch(`http://127.0.0.1:${port}/api/v1/devices/d1/telemetry`, {
 *   method: "POST",
 *   headers: { authorization: "Bearer t1" },
 *   body: "21.5",
 * });
 * const body = await res.json();
 * await api.close();
 * await http.close();
 * await core.close();
 * if (res.status !== 202 || body.accepted !== 1) throw new Error(`got ${res.status}`);
 * ```
 */
export class DeviceApi implements AsyncDisposable {
  #addresses = new WeakMap<Request, string>();
  #port: DevicePort;
  #opts: ResolvedDeviceApiOptions;
  #log: Logger;
  #waiters = new Map<string, number>();
  #closing = new AbortController();
  #releaseCommands: () => void;
  #ctx: ApiContext;
  #openapi: string | undefined;

  /**
   * Creates the API; it takes commands from the core's store (`core.commands`).
   *
   * @throws {RangeError} when an option is out of range.
   */
  constructor(core: Core, options: DeviceApiOptions = {}) {
    const port = this.#port = core.port(HTTP);
    this.#opts = resolveDeviceApiOptions(options);
    this.#log = port.log;
    const o = this.#opts;
    this.#releaseCommands = port.commands.open();
    this.#ctx = {
      port,
      opts: o,
      log: this.#log,
      commands: port.commands,
      listen: (id, fn) => this.#listen(id, fn),
      closing: this.#closing.signal,
      fail: (slug, url, init) => this.#fail(slug, url, init),
      refused: (r, url, extensions) => this.#refused(r, url, extensions),
      authorize: (req, url, id) => this.#authorize(req, url, id),
      seen: (id, address) => port.seen(id, o.idleTimeoutMs, address),
    };
  }

  /** The resolved options. */
  get options(): Readonly<ResolvedDeviceApiOptions> {
    return this.#opts;
  }

  /** Commands pending for a device in the core's store (for tests and diagnostics). */
  pendingCommands(deviceId: string): number {
    return this.#port.commands.count(deviceId);
  }

  /** Open long-polls and SSE streams of a device. */
  waiters(deviceId: string): number {
    return this.#waiters.get(deviceId) ?? 0;
  }

  #listen(deviceId: string, fn: CommandListener): (() => void) | undefined {
    const n = this.#waiters.get(deviceId) ?? 0;
    if (n >= this.#opts.maxWaitersPerDevice) return undefined;
    this.#waiters.set(deviceId, n + 1);
    const stop = this.#port.commands.listen(deviceId, fn);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      stop();
      const left = (this.#waiters.get(deviceId) ?? 1) - 1;
      if (left > 0) this.#waiters.set(deviceId, left);
      else this.#waiters.delete(deviceId);
    };
  }

  #fail(slug: ProblemSlug, url: URL, init: ProblemInit = {}): Response {
    this.#port.stats.error(slug);
    return problem(slug, { instance: url.pathname, ...init });
  }

  /** The problem answering a refusal by the core: one place maps every reason to HTTP. */
  #refused(r: Refusal, url: URL, extensions: Record<string, unknown> = {}): Response {
    const retry = r.retryAfterMs === undefined
      ? undefined
      : Math.max(1, Math.ceil(r.retryAfterMs / 1000));
    const retryAfter = (sec: number | undefined): ProblemInit => {
      const after = sec ?? this.#opts.overloadRetryAfterSec;
      return {
        detail: r.message,
        headers: { "retry-after": String(after) },
        extensions: { retryAfter: after, ...extensions },
      };
    };
    switch (r.reason) {
      case "bad_id":
      case "bad_credentials":
      case "no_credentials":
        return this.#fail("unauthorized", url, {
          detail: r.message,
          headers: { "www-authenticate": WWW_AUTHENTICATE },
          extensions,
        });
      case "throttled":
        this.#port.stats.drop("auth_throttled");
        return this.#fail("login-throttled", url, retryAfter(retry));
      case "not_authorized":
        return this.#fail("forbidden", url, { detail: r.message, extensions });
      case "rate_limited":
        return this.#fail("rate-limited", url, retryAfter(retry));
      case "overloaded":
        return this.#fail("overloaded", url, retryAfter(undefined));
      case "too_large":
        return this.#fail("payload-too-large", url, { detail: r.message, extensions });
      case "quota":
      case "failed":
      case "shutting_down":
      case "unavailable":
        return this.#fail("unavailable", url, retryAfter(undefined));
    }
  }

  #authorize(req: Request, url: URL, deviceId: string): Identity | Response {
    const address = this.#addresses.get(req) ?? "";
    const auth = authenticateRequest(
      this.#port,
      deviceId,
      req.headers.get("authorization"),
      address,
    );
    if (auth.ok) {
      this.#ctx.seen(deviceId, address || undefined);
      return auth.identity;
    }
    if ("refusal" in auth) return this.#refused(auth.refusal, url);
    if (auth.status === 403) return this.#fail("forbidden", url, { detail: auth.detail });
    return this.#fail("unauthorized", url, {
      detail: auth.detail,
      headers: { "www-authenticate": WWW_AUTHENTICATE },
    });
  }

  /**
   * Answers a request under `/api/v1/`; `undefined` for any other path (the next route tries).
   */
  handle(req: Request, url: URL, info?: { remoteAddr: Deno.Addr }): Promise<Response> | undefined {
    const path = url.pathname;
    if (!path.startsWith(API_PREFIX)) return undefined;
    if (info && "hostname" in info.remoteAddr) this.#addresses.set(req, info.remoteAddr.hostname);
    this.#port.stats.frameIn();
    return this.#dispatch(req, url, path.slice(API_PREFIX.length).split("/"));
  }

  /** The OpenAPI document of this API (a fresh object: callers may extend it). */
  openApiDocument(): Record<string, unknown> {
    return openApiDocument(this.#opts, this.#port.commands.limits);
  }

  async #dispatch(req: Request, url: URL, seg: string[]): Promise<Response> {
    const m = req.method;
    if (seg.length === 1 && seg[0] === "openapi.json") {
      if (m !== "GET" && m !== "HEAD") return this.#notAllowed(url, "GET, HEAD");
      this.#openapi ??= JSON.stringify(
        openApiDocument(this.#opts, this.#port.commands.limits),
        null,
        2,
      );
      return new Response(m === "HEAD" ? null : this.#openapi, {
        headers: { "content-type": "application/json", "cache-control": "max-age=60" },
      });
    }
    if (seg[0] !== "devices" || seg.length < 3) return this.#notFound(url);
    let parts: string[];
    try {
      parts = seg.map(decodeURIComponent);
    } catch {
      return this.#fail("bad-request", url, { detail: "Malformed percent-encoding in the path" });
    }
    const [, id, kind, a, b] = parts;
    const route = kind === "telemetry" && parts.length <= 4
      ? "telemetry"
      : kind === "commands" && parts.length === 3
      ? "commands"
      : kind === "commands" && parts.length === 5 && b === "ack"
      ? "ack"
      : undefined;
    if (!route) return this.#notFound(url);
    const method = route === "commands" ? "GET" : "POST";
    if (m !== method) return this.#notAllowed(url, method);
    if (this.#closing.signal.aborted) {
      return this.#fail("unavailable", url, {
        detail: "The gateway is shutting down",
        headers: { "retry-after": String(this.#opts.overloadRetryAfterSec) },
      });
    }
    if (!isDeviceId(id)) {
      return this.#fail("invalid-device-id", url, {
        detail: "A device id is 1..64 of A-Z a-z 0-9 . _ : -",
      });
    }
    const ctx = this.#ctx;
    switch (route) {
      case "telemetry":
        if (a !== undefined && (a === "" || !CHANNEL_RE.test(a))) {
          return this.#fail("invalid-channel", url, {
            detail: "A channel is 1..64 of a-z 0-9 _ -",
          });
        }
        return await handleTelemetry(ctx, req, url, id, a);
      case "commands": {
        const accept = req.headers.get("accept") ?? "";
        return accept.includes("text/event-stream")
          ? handleStream(ctx, req, url, id)
          : await handleLongPoll(ctx, req, url, id);
      }
      case "ack":
        if (!COMMAND_NAME_RE.test(a)) {
          return this.#fail("invalid-command-name", url, {
            detail: "A command name is 1..64 of A-Z a-z 0-9 . _ -",
          });
        }
        return await handleAck(ctx, req, url, id, a);
    }
  }

  #notFound(url: URL): Response {
    return this.#fail("not-found", url, { detail: `No resource at ${url.pathname}` });
  }

  #notAllowed(url: URL, allow: string): Response {
    return this.#fail("method-not-allowed", url, {
      detail: `Use ${allow} on ${url.pathname}`,
      headers: { allow },
    });
  }

  /**
   * Ends every long-poll (503) and SSE stream and refuses new requests, so the HTTP server's
   * graceful shutdown does not wait on them; gives the core's command store back. Call it before
   * `HttpServer.close()`. Idempotent.
   */
  close(): Promise<void> {
    if (!this.#closing.signal.aborted) {
      this.#closing.abort();
      this.#releaseCommands();
    }
    return Promise.resolve();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
