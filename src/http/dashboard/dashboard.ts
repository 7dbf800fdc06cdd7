/**
 * The dashboard: a page and its JSON/SSE API on the HTTP listener. Every call but the page itself
 * and the login needs a session or HTTP Basic credentials of a service account (see
 * `../console/auth.ts`), and is judged by that account's ACL, the same as MQTT's: it lists only the
 * devices its subscribe filters reach, shows only the messages they match, and sends a command only
 * where its publish filters allow. State-changing calls are CSRF-guarded.
 *
 * | route | what |
 * |---|---|
 * | `GET /dashboard` | the page (no data) |
 * | `GET /dashboard/login?once=…` | redeems the one-time login link (303 to the page) |
 * | `POST /dashboard/login` `{name, token}` | sets the session cookie (401 bad, 429 throttled) |
 * | `POST /dashboard/logout` | ends the session |
 * | `GET /dashboard/api/me` | 200 with the account and what it may do, or 401 |
 * | `GET /dashboard/api/summary` | health, link, spool, counters |
 * | `GET /dashboard/api/history` | the counters sampled every `updateMs` for the last 600 samples |
 * | `GET /dashboard/api/devices` | the devices the account may see |
 * | `GET /dashboard/api/devices/{id}` | one device and the recent messages the account may read |
 * | `POST /dashboard/api/devices/{id}/commands/{name}` `{data}` | publishes a command (QoS 1) |
 * | `GET /dashboard/events` | Server-Sent Events: `summary` every second, `devices` that changed (not with `?devices=0`) |
 *
 * @module
 */

import type { Core } from "../../core/core.ts";
import type { DevicePort } from "../../core/device_port.ts";
import type { Counter, Gauge } from "../../core/metrics.ts";
import type { DeviceRecord, SessionHandle } from "../../core/registry.ts";
import { COMMAND_NAME_RE, commandTopic, isDeviceId } from "../../core/topics.ts";
import {
  type Caller,
  type ConsoleAuth,
  cookie,
  mayObserveDevice,
  mayRead,
  mayWrite,
  SESSION_COOKIE,
} from "../console/auth.ts";
import type { RequestInfo } from "../server.ts";
import { DASHBOARD_HTML } from "./page.ts";
import { RecentMessages } from "./recent_messages.ts";

/** Tunables of {@link Dashboard}. */
export interface DashboardOptions {
  /** Interval of SSE updates, ms. @default 1000 */
  updateMs?: number;
  /** Recent messages kept for the detail view. @default 1000 */
  recentMessages?: number;
  /** Most concurrent SSE clients. @default 32 */
  maxStreams?: number;
  /** Largest JSON body of a dashboard call, bytes. @default 16384 */
  maxBodyBytes?: number;
}

/** Samples kept for the charts: 10 minutes at the default interval. */
const HISTORY = 600;

/** One sample of the counters the charts draw. */
interface HistorySample {
  /** ms since the epoch. */
  time: number;
  /** `ferry_messages_received_total`. */
  messagesIn: number;
  /** `ferry_messages_delivered_total`. */
  messagesOut: number;
  connections: number;
  devicesOnline: number;
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
 * Reads a small JSON body: its value, or the error answer (too large, not JSON).
 *
 * @example
 * ```ts
 * import { readJson } from "./dashboard.ts";
 * const ok = await readJson(new Request("http://x/", { method: "POST", body: '{"a":1}' }), 100);
 * if (!("value" in ok) || (ok.value as { a: number }).a !== 1) throw new Error();
 * const big = await readJson(new Request("http://x/", { method: "POST", body: "x".repeat(200) }), 100);
 * if (!("error" in big) || big.error.status !== 413) throw new Error();
 * ```
 */
export async function readJson(
  req: Request,
  maxBytes: number,
): Promise<{ value: unknown } | { error: Response }> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > maxBytes) {
    return { error: json({ error: `body over the ${maxBytes} byte limit` }, 413) };
  }
  if (!req.body) return { error: json({ error: "expected a JSON body" }, 400) };
  const reader = req.body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      size += r.value.byteLength;
      if (size > maxBytes) {
        reader.cancel().catch(() => {});
        return { error: json({ error: `body over the ${maxBytes} byte limit` }, 413) };
      }
      parts.push(r.value);
    }
  } catch {
    return { error: json({ error: "the request body was not received" }, 400) };
  }
  const all = new Uint8Array(size);
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.byteLength;
  }
  try {
    return { value: JSON.parse(new TextDecoder().decode(all)) };
  } catch {
    return { error: json({ error: "the body is not JSON" }, 400) };
  }
}

/**
 * Serves the dashboard; mount with `http.route((req, url, info) => dashboard.handle(req, url, info))`.
 *
 * @example
 * ```ts
 * import { Core } from "../../core/core.ts";
 * import { silentLogger } from "../../core/logger.ts";
 * import { ConsoleAuth } from "../console/auth.ts";
 * import { Dashboard } from "./dashboard.ts";
 * const core = new Core({ log: silentLogger });
 * const d = new Dashboard(core, new ConsoleAuth(core.registry));
 * const url = new URL("http://x/dashboard/api/summary");
 * const info = { remoteAddr: { transport: "tcp" as const, hostname: "127.0.0.1", port: 1 } };
 * const res = await d.handle(new Request(url), url, info)!;
 * if (res.status !== 401) throw new Error("served without a login");
 * await d.close();
 * await core.close();
 * ```
 */
export class Dashboard {
  #core: Core;
  #port: DevicePort;
  #auth: ConsoleAuth;
  #opts: Required<DashboardOptions>;
  #recent: RecentMessages;
  #unsubscribe: () => void;
  #streams = new Set<() => void>();
  #started = Date.now();
  /** The last {@link HISTORY} samples of the counters the charts draw (one per `updateMs`). */
  #history: HistorySample[] = [];
  #sampler: ReturnType<typeof setInterval>;
  #onLink: ((token: string) => void) | undefined;

  /** Creates the dashboard, judging callers with `auth`. */
  constructor(core: Core, auth: ConsoleAuth, options: DashboardOptions = {}) {
    this.#core = core;
    this.#port = core.port({ name: "http" });
    this.#auth = auth;
    this.#opts = {
      updateMs: options.updateMs ?? 1000,
      recentMessages: options.recentMessages ?? 1000,
      maxStreams: options.maxStreams ?? 32,
      maxBodyBytes: options.maxBodyBytes ?? 16_384,
    };
    this.#recent = new RecentMessages(this.#opts.recentMessages);
    const sub = {
      id: "dashboard",
      deliver: (m: Parameters<RecentMessages["add"]>[0]) => this.#recent.add(m),
    };
    const offs = [core.subscribe("devices/#", sub)];
    this.#unsubscribe = () => offs.forEach((f) => f());
    // A short history, so that the charts survive a reload (served by /dashboard/api/history).
    this.#sampler = setInterval(() => this.#sample(), this.#opts.updateMs);
    Deno.unrefTimer(this.#sampler as unknown as number);
  }

  /** Calls `fn` with each new one-time login token (after the link was used). */
  onLoginLink(fn: (token: string) => void): void {
    this.#onLink = fn;
  }

  /** Handles a request under `/dashboard`, or returns undefined. */
  handle(req: Request, url: URL, info: RequestInfo): Promise<Response> | undefined {
    if (url.pathname !== "/dashboard" && !url.pathname.startsWith("/dashboard/")) return undefined;
    return this.#route(req, url, info.remoteAddr.hostname);
  }

  async #route(req: Request, url: URL, peer: string): Promise<Response> {
    const path = url.pathname;
    const method = req.method;
    if ((path === "/dashboard" || path === "/dashboard/") && method === "GET") {
      return new Response(DASHBOARD_HTML, {
        headers: {
          "content-type": "text/html; charset=utf-8",
          "content-security-policy":
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
          "x-frame-options": "DENY",
          "referrer-policy": "no-referrer",
          "cache-control": "no-store",
        },
      });
    }
    const address = this.#auth.clientAddress(req, peer);
    if (path === "/dashboard/login" && method === "GET") return this.#redeem(url, address);
    if (path === "/dashboard/login" && method === "POST") {
      const refused = this.#auth.csrf(req, url);
      if (refused) return this.#refuse(refused, address);
      return await this.#login(req, address);
    }
    const caller = this.#auth.identify(req, peer);
    if (path === "/dashboard/logout" && method === "POST") {
      const refused = this.#auth.csrf(req, url);
      if (refused) return this.#refuse(refused, address);
      this.#auth.logout(cookie(req, SESSION_COOKIE));
      return new Response(null, {
        status: 204,
        headers: { "set-cookie": this.#auth.clearCookie() },
      });
    }
    if (!caller) {
      const wait = this.#auth.throttledSec("", address);
      if (wait > 0) {
        return json({ error: "too many failed logins" }, 429, { "retry-after": String(wait) });
      }
      return json({ error: "login required" }, 401);
    }
    if (method !== "GET" && method !== "HEAD") {
      const refused = this.#auth.csrf(req, url);
      if (refused) return this.#refuse(refused, address);
    }
    if (path === "/dashboard/api/me") {
      return json({
        account: caller.name,
        may: {
          readSys: mayRead(caller, "$SYS/broker/uptime"),
          // Managing devices (management API): publish on $ferry/admin/devices/{id}.
          manage: mayWrite(caller, "$ferry/admin/devices/any"),
        },
      });
    }
    if (path === "/dashboard/api/summary") return json(this.#summary());
    if (path === "/dashboard/api/history") {
      return json({ intervalMs: this.#opts.updateMs, samples: this.#history });
    }
    if (path === "/dashboard/api/devices") return json(this.#devices(caller));
    if (path === "/dashboard/events" && method === "GET") {
      // `devices=0`: the summary only (the page pages its device table through the management
      // API); otherwise the devices that changed too.
      return this.#events(caller, url.searchParams.get("devices") !== "0");
    }
    const m = /^\/dashboard\/api\/devices\/([^/]+)(?:\/commands\/([^/]+))?$/.exec(path);
    if (m) {
      let id: string;
      let name: string | undefined;
      try {
        id = decodeURIComponent(m[1]);
        name = m[2] === undefined ? undefined : decodeURIComponent(m[2]);
      } catch {
        return json({ error: "malformed percent-encoding in the path" }, 400);
      }
      if (!isDeviceId(id)) return json({ error: `"${id.slice(0, 80)}" is not a device id` }, 400);
      if (name === undefined && method === "GET") {
        const d = this.#core.registry.get(id);
        if (!d || !mayObserveDevice(caller, id)) return json({ error: `no device "${id}"` }, 404);
        const recent = this.#recent.forDevice(id).filter((p) => mayRead(caller, p.topic));
        return json({ ...view(d), recent });
      }
      if (name !== undefined && method === "POST") {
        return await this.#command(req, id, name, caller);
      }
    }
    return json({ error: "not found" }, 404);
  }

  #refuse(r: { status: number; message: string }, address: string): Response {
    this.#port.stats.error(r.status === 415 ? "csrf_content_type" : "csrf_origin");
    this.#port.throttled.warn(`csrf:${r.status}`, "dashboard call refused", {
      reason: r.message,
      address,
    });
    return json({ error: r.message }, r.status);
  }

  #redeem(url: URL, address: string): Response {
    const once = url.searchParams.get("once") ?? "";
    const wait = this.#auth.throttledSec("(local admin)", address);
    if (wait > 0) {
      return json({ error: "too many failed logins" }, 429, { "retry-after": String(wait) });
    }
    const sid = once ? this.#auth.redeem(once, address) : undefined;
    if (!sid) {
      this.#port.throttled.warn(`link:${address}`, "dashboard login link refused (used or wrong)", {
        address,
      });
      return json({ error: "this login link is not valid (each link works once)" }, 401);
    }
    this.#port.throttled.info(`link-ok`, "dashboard login by the one-time link", { address });
    this.#onLink?.(this.#auth.linkToken);
    return new Response(null, {
      status: 303,
      headers: {
        location: "/dashboard",
        "set-cookie": this.#auth.sessionCookie(sid),
        "cache-control": "no-store",
        "referrer-policy": "no-referrer",
      },
    });
  }

  async #login(req: Request, address: string): Promise<Response> {
    const body = await readJson(req, this.#opts.maxBodyBytes);
    if ("error" in body) return body.error;
    const b = body.value as { name?: unknown; token?: unknown } | null;
    if (typeof b?.name !== "string" || typeof b?.token !== "string") {
      return json({ error: "expected a JSON body {name, token}" }, 400);
    }
    const r = this.#auth.login(b.name, b.token, address);
    if ("refused" in r) {
      this.#port.stats.error("login_refused");
      this.#port.throttled.warn(`login:${address}`, "dashboard login failed", {
        account: b.name.slice(0, 64),
        address,
        reason: r.refused,
      });
      if (r.refused === "throttled") {
        return json({ error: "too many failed logins" }, 429, {
          "retry-after": String(r.retryAfterSec),
        });
      }
      return json({ error: "bad credentials" }, 401);
    }
    this.#core.log.child("dashboard").info("dashboard login", { account: b.name, address });
    return new Response(null, {
      status: 204,
      headers: { "set-cookie": this.#auth.sessionCookie(r.sid), "cache-control": "no-store" },
    });
  }

  async #command(req: Request, id: string, name: string, caller: Caller): Promise<Response> {
    if (!COMMAND_NAME_RE.test(name)) {
      return json({ error: `"${name.slice(0, 80)}" is not a command name` }, 400);
    }
    const topic = commandTopic(id, name);
    if (!mayWrite(caller, topic)) {
      this.#port.stats.error("forbidden");
      this.#port.throttled.warn(
        `forbidden:${caller.name}`,
        "dashboard command refused by the ACL",
        {
          account: caller.name,
          topic,
        },
      );
      return json({ error: `account "${caller.name}" may not publish to ${topic}` }, 403);
    }
    const body = await readJson(req, this.#opts.maxBodyBytes);
    if ("error" in body) return body.error;
    const v = body.value as { data?: unknown } | null;
    const data = typeof v?.data === "string" ? v.data : JSON.stringify(v?.data ?? "");
    const r = await this.#port.publish(caller.identity, {
      topic,
      payload: encoder.encode(data),
      qos: 1,
      retain: false,
      origin: "dashboard",
    }, { wait: true });
    if (!r.ok) {
      return json(
        { error: r.message, reason: r.reason },
        r.reason === "not_authorized" ? 403 : 503,
      );
    }
    this.#core.log.child("dashboard").info("command sent from the dashboard", {
      account: caller.name,
      device: id,
      command: name,
    });
    return json({ sent: true, topic }, 202);
  }

  #devices(caller: Caller): DeviceView[] {
    return this.#core.registry.list().filter((d) => mayObserveDevice(caller, d.id)).map(view);
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

  #events(caller: Caller, devices: boolean): Response {
    if (this.#streams.size >= this.#opts.maxStreams) {
      return json({ error: "too many dashboard streams" }, 503, { "retry-after": "5" });
    }
    const seen = new Map<string, string>();
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    let timer: ReturnType<typeof setInterval> | undefined;
    let ended = false;
    const send = (event: string, data: unknown) => {
      try {
        controller.enqueue(encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
      } catch { /* closed */ }
    };
    const tick = () => {
      send("summary", this.#summary());
      if (!devices) return;
      const changed: DeviceView[] = [];
      for (const d of this.#core.registry.list()) {
        if (!mayObserveDevice(caller, d.id)) continue;
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
    const end = (close: boolean) => {
      if (ended) return;
      ended = true;
      if (timer !== undefined) clearInterval(timer);
      this.#streams.delete(stop);
      attachment.detach();
      if (close) {
        try {
          controller.close();
        } catch { /* closed */ }
      }
    };
    const stop = () => end(true);
    // Revoking the account's credentials (or changing its ACL) ends the stream, as for MQTT.
    const handle: SessionHandle = {
      sessionId: `dashboard-${crypto.randomUUID()}`,
      protocol: "http",
      close: () => end(true),
    };
    const attachment = this.#port.attach(caller.identity, handle, false);
    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        controller = c;
        this.#streams.add(stop);
        tick();
        timer = setInterval(tick, this.#opts.updateMs);
      },
      cancel: () => end(false),
    });
    return new Response(body, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-store" },
    });
  }

  /** Ends every SSE stream and stops following messages. */
  #sample(): void {
    const s = this.#summary();
    this.#history.push({
      time: s.time as number,
      messagesIn: s.messagesIn as number,
      messagesOut: s.messagesOut as number,
      connections: s.connections as number,
      devicesOnline: s.devicesOnline as number,
    });
    if (this.#history.length > HISTORY) this.#history.shift();
  }

  close(): Promise<void> {
    clearInterval(this.#sampler);
    for (const stop of [...this.#streams]) stop();
    this.#unsubscribe();
    return Promise.resolve();
  }
}
