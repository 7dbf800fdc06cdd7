/**
 * The dashboard: a page and its JSON/SSE API on the HTTP listener, behind a service-account login.
 *
 * | route | what |
 * |---|---|
 * | `GET /dashboard` | the page |
 * | `POST /dashboard/login` `{name, token}` | sets the session cookie (401 bad, 429 throttled) |
 * | `POST /dashboard/logout` | ends the session |
 * | `GET /dashboard/api/me` | 200 with the account, or 401 |
 * | `GET /dashboard/api/summary` | health, link, spool, counters |
 * | `GET /dashboard/api/devices` | every device |
 * | `GET /dashboard/api/devices/{id}` | one device and its recent messages |
 * | `POST /dashboard/api/devices/{id}/commands/{name}` `{data}` | publishes a command (QoS 1) |
 * | `GET /dashboard/events` | Server-Sent Events: `summary` every second, `devices` that changed |
 *
 * @module
 */

import type { Core } from "../../core/core.ts";
import { createMessage } from "../../core/message.ts";
import type { Counter, Gauge } from "../../core/metrics.ts";
import type { DeviceRecord } from "../../core/registry.ts";
import { COMMAND_NAME_RE, commandTopic, isDeviceId } from "../../core/topics.ts";
import { cookie, LoginSessions, SESSION_COOKIE } from "./login_sessions.ts";
import { DASHBOARD_HTML } from "./page.ts";
import { RecentMessages } from "./recent_messages.ts";

/** Tunables of {@link Dashboard}. */
export interface DashboardOptions {
  /** Require a service-account login. @default true */
  requireLogin?: boolean;
  /** Interval of SSE updates, ms. @default 1000 */
  updateMs?: number;
  /** Recent messages kept for the detail view. @default 1000 */
  recentMessages?: number;
  /** Most concurrent SSE clients. @default 32 */
  maxStreams?: number;
}

/** A device as the dashboard shows it. */
interface DeviceView {
  id: string;
  protocol?: string;
  state: string;
  lastSeen: number;
  messagesIn: number;
  messagesOut: number;
  errors: number;
}

function view(d: DeviceRecord): DeviceView {
  return {
    id: d.id,
    protocol: d.protocol,
    state: d.state,
    lastSeen: d.lastSeen,
    messagesIn: d.messagesIn,
    messagesOut: d.messagesOut,
    errors: d.errors,
  };
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return Response.json(body, { status, headers: { "cache-control": "no-store", ...headers } });
}

const encoder = new TextEncoder();

/**
 * Serves the dashboard; mount with `http.route((req, url) => dashboard.handle(req, url))`.
 *
 * @example
 * ```ts
 * import { Core } from "../../core/core.ts";
 * import { silentLogger } from "../../core/logger.ts";
 * import { Dashboard } from "./dashboard.ts";
 * const core = new Core({ log: silentLogger });
 * const d = new Dashboard(core, { requireLogin: false });
 * const res = await d.handle(new Request("http://x/dashboard/api/summary"), new URL("http://x/dashboard/api/summary"))!;
 * if (res.status !== 200) throw new Error();
 * await d.close();
 * await core.close();
 * ```
 */
export class Dashboard {
  #core: Core;
  #opts: Required<DashboardOptions>;
  #logins: LoginSessions;
  #recent: RecentMessages;
  #unsubscribe: () => void;
  #streams = new Set<ReadableStreamDefaultController<Uint8Array>>();
  #timers = new Set<ReturnType<typeof setInterval>>();
  #started = Date.now();

  /** Creates the dashboard. */
  constructor(core: Core, options: DashboardOptions = {}) {
    this.#core = core;
    this.#opts = {
      requireLogin: options.requireLogin ?? true,
      updateMs: options.updateMs ?? 1000,
      recentMessages: options.recentMessages ?? 1000,
      maxStreams: options.maxStreams ?? 32,
    };
    this.#logins = new LoginSessions(core.registry);
    this.#recent = new RecentMessages(this.#opts.recentMessages);
    const sub = {
      id: "dashboard",
      deliver: (m: Parameters<RecentMessages["add"]>[0]) => this.#recent.add(m),
    };
    const offs = [core.subscribe("devices/#", sub)];
    this.#unsubscribe = () => offs.forEach((f) => f());
  }

  /** Handles a request under `/dashboard`, or returns undefined. */
  handle(req: Request, url: URL): Promise<Response> | undefined {
    if (url.pathname !== "/dashboard" && !url.pathname.startsWith("/dashboard/")) return undefined;
    return this.#route(req, url);
  }

  #account(req: Request): string | undefined {
    if (!this.#opts.requireLogin) return "local";
    return this.#logins.check(cookie(req, SESSION_COOKIE));
  }

  async #route(req: Request, url: URL): Promise<Response> {
    const path = url.pathname;
    const method = req.method;
    if ((path === "/dashboard" || path === "/dashboard/") && method === "GET") {
      return new Response(DASHBOARD_HTML, {
        headers: {
          "content-type": "text/html; charset=utf-8",
          "content-security-policy":
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
          "x-frame-options": "DENY",
        },
      });
    }
    if (path === "/dashboard/login" && method === "POST") return await this.#login(req);
    if (path === "/dashboard/logout" && method === "POST") {
      this.#logins.logout(cookie(req, SESSION_COOKIE));
      return new Response(null, {
        status: 204,
        headers: {
          "set-cookie": `${SESSION_COOKIE}=; Path=/dashboard; Max-Age=0; HttpOnly; SameSite=Strict`,
        },
      });
    }
    const account = this.#account(req);
    if (!account) return json({ error: "login required" }, 401);
    if (path === "/dashboard/api/me") return json({ account });
    if (path === "/dashboard/api/summary") return json(this.#summary());
    if (path === "/dashboard/api/devices") return json(this.#core.registry.list().map(view));
    if (path === "/dashboard/events" && method === "GET") return this.#events();
    const m = /^\/dashboard\/api\/devices\/([^/]+)(?:\/commands\/([^/]+))?$/.exec(path);
    if (m) {
      const id = decodeURIComponent(m[1]);
      if (!isDeviceId(id)) return json({ error: `"${id}" is not a device id` }, 400);
      if (!m[2] && method === "GET") {
        const d = this.#core.registry.get(id);
        if (!d) return json({ error: `no device "${id}"` }, 404);
        return json({ ...view(d), recent: this.#recent.forDevice(id) });
      }
      if (m[2] && method === "POST") {
        return await this.#command(req, id, decodeURIComponent(m[2]), account);
      }
    }
    return json({ error: "not found" }, 404);
  }

  async #login(req: Request): Promise<Response> {
    let body: { name?: unknown; token?: unknown };
    try {
      body = await req.json();
    } catch {
      return json({ error: "expected a JSON body {name, token}" }, 400);
    }
    const address = req.headers.get("x-forwarded-for") ?? "peer";
    if (this.#logins.throttled(address)) {
      return json({ error: "too many failed logins" }, 429, { "retry-after": "60" });
    }
    const sid = typeof body.name === "string" && typeof body.token === "string"
      ? this.#logins.login(body.name, body.token, address)
      : undefined;
    const log = this.#core.log.child("dashboard");
    if (!sid) {
      log.warn("dashboard login failed", {
        account: typeof body.name === "string" ? body.name : undefined,
      });
      return json({ error: "bad credentials" }, 401);
    }
    log.info("dashboard login", { account: body.name });
    return new Response(null, {
      status: 204,
      headers: {
        "set-cookie": `${SESSION_COOKIE}=${sid}; Path=/dashboard; HttpOnly; SameSite=Strict`,
      },
    });
  }

  async #command(req: Request, id: string, name: string, account: string): Promise<Response> {
    if (!COMMAND_NAME_RE.test(name)) return json({ error: `"${name}" is not a command name` }, 400);
    let data = "";
    try {
      const body = await req.json();
      data = typeof body?.data === "string" ? body.data : JSON.stringify(body?.data ?? "");
    } catch {
      return json({ error: "expected a JSON body {data}" }, 400);
    }
    await this.#core.publish(createMessage({
      topic: commandTopic(id, name),
      payload: encoder.encode(data),
      qos: 1,
      ts: this.#core.clock.now(),
      protocol: "http",
      origin: "dashboard",
    }));
    this.#core.log.child("dashboard").info("command sent from the dashboard", {
      account,
      device: id,
      command: name,
    });
    return json({ sent: true, topic: commandTopic(id, name) }, 202);
  }

  #summary(): Record<string, unknown> {
    const core = this.#core;
    const m = core.metrics;
    const online = [...core.registry.onlineByProtocol().values()].reduce((a, b) => a + b, 0);
    const gauge = (name: string) => (m.find(name) as Gauge | undefined)?.get();
    const counter = (name: string) => (m.find(name) as Counter | undefined)?.total() ?? 0;
    const connections = m.find("ferry_connections") as Gauge | undefined;
    const upstreamConnected = gauge("ferry_northbound_connected");
    return {
      time: Date.now(),
      status: core.closing ? "shutting down" : "ok",
      uptimeSeconds: (Date.now() - this.#started) / 1000,
      devicesOnline: online,
      connections: connections?.total() ?? 0,
      messagesIn: counter("ferry_messages_received_total"),
      messagesOut: counter("ferry_messages_delivered_total"),
      queueDepth: core.pipeline.depth,
      queueCapacity: core.pipeline.capacity,
      handlersInUse: core.pipeline.inUse,
      upstream: upstreamConnected === undefined
        ? undefined
        : { state: upstreamConnected ? "connected" : "disconnected" },
      spool: gauge("ferry_spool_depth") === undefined
        ? undefined
        : { messages: gauge("ferry_spool_depth"), bytes: gauge("ferry_spool_bytes") },
    };
  }

  #events(): Response {
    if (this.#streams.size >= this.#opts.maxStreams) {
      return json({ error: "too many dashboard streams" }, 503, { "retry-after": "5" });
    }
    const seen = new Map<string, string>();
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    let timer: ReturnType<typeof setInterval> | undefined;
    const send = (event: string, data: unknown) => {
      try {
        controller.enqueue(encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
      } catch { /* closed */ }
    };
    const tick = () => {
      send("summary", this.#summary());
      const changed: DeviceView[] = [];
      for (const d of this.#core.registry.list()) {
        const v = view(d);
        const sig =
          `${v.state}|${v.lastSeen}|${v.messagesIn}|${v.messagesOut}|${v.errors}|${v.protocol}`;
        if (seen.get(d.id) !== sig) {
          seen.set(d.id, sig);
          changed.push(v);
        }
      }
      if (changed.length) send("devices", changed);
    };
    const stop = () => {
      if (timer !== undefined) clearInterval(timer);
      this.#timers.delete(timer!);
      this.#streams.delete(controller);
    };
    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        controller = c;
        this.#streams.add(c);
        tick();
        timer = setInterval(tick, this.#opts.updateMs);
        this.#timers.add(timer);
      },
      cancel: stop,
    });
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        connection: "keep-alive",
      },
    });
  }

  /** Ends every SSE stream and stops following messages. */
  close(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers.clear();
    for (const c of this.#streams) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    this.#streams.clear();
    this.#unsubscribe();
    return Promise.resolve();
  }
}
