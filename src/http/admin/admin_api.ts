/**
 * The management API, `/api/v1/admin/...`: devices listed with cursor paging, filters and sort,
 * one device's detail, add / rotate / remove (the same registry file and live reload as
 * `ferry device …`), disconnect (kick), and commands: send one, list those kept for the device;
 * service accounts (`accounts_api.ts`) and client sessions and subscriptions (`sessions_api.ts`),
 * in files of their own, routed from here. Described in the OpenAPI document served at
 * `/api/v1/openapi.json` (with the device API's routes; {@link adminOpenApi}).
 *
 * Callers are service accounts (HTTP Basic with the account's name and token, or a dashboard
 * session), judged by the account's ACL, the one MQTT applies (`../console/auth.ts`):
 *
 * - a device is listed, shown, and its counters read only when the account's subscribe filters
 *   reach under `devices/{id}/` (as the dashboard);
 * - a command is sent when the account may publish on `devices/{id}/commands/{name}`, and a kept
 *   command is listed when it may subscribe to it (as over MQTT);
 * - add, rotate, remove and disconnect need the account's publish filters to match
 *   `$ferry/admin/devices/{id}`: `#` does not (MQTT: `#` never matches a `$` topic), so managing
 *   devices is granted explicitly (`$ferry/admin/#`); the one-time login link's administrator may;
 * - state-changing calls pass the CSRF guard: `Content-Type: application/json` (DELETE has no
 *   body) and, from a browser, the gateway's own `Origin`.
 *
 * Errors are `{"error": "…"}` with the HTTP status; 401 carries `WWW-Authenticate: Basic`.
 *
 * @module
 */

import type { Core } from "../../core/core.ts";
import type { DevicePort } from "../../core/device_port.ts";
import type { DeviceRecord } from "../../core/registry.ts";
import { sessionView } from "./device_session.ts";
import { COMMAND_NAME_RE, commandTopic, isDeviceId } from "../../core/topics.ts";
import { payloadText } from "../../core/mod.ts";
import { validateFilter, validateTopic } from "../../core/topic_router.ts";
import {
  type Caller,
  type ConsoleAuth,
  mayObserveDevice,
  mayRead,
  mayWrite,
} from "../console/auth.ts";
import { commandView } from "../device_api/command_view.ts";
import { readJson } from "../dashboard/dashboard.ts";
import type { RequestInfo } from "../server.ts";
import { adminOpenApi } from "./openapi.ts";
import type { HistorySnapshot } from "../../ops/metrics_history.ts";
import { historyRoute } from "./history_route.ts";
import { type AccountFileAdmin, handleAccounts } from "./accounts_api.ts";
import { handleSessions } from "./sessions_api.ts";
import { handleRules, type RulesAdmin } from "./rules_api.ts";
import { CommandAcks } from "./command_acks.ts";

/** What the API needs to change the device registry file (the gateway provides it). */
export interface DeviceFileAdmin {
  /** Adds a device to the registry file and reloads it; resolves to the new token. */
  add(id: string): Promise<string>;
  /** Gives a device in the file a new token and reloads; resolves to it. */
  rotate(id: string): Promise<string>;
  /** Removes a device from the file and reloads. */
  remove(id: string): Promise<void>;
  /** True when `id` is in the file (not only in the config's `auth.devices`). */
  has(id: string): Promise<boolean>;
}

/** A dead letter as the northbound lists it. */
export interface DeadLetterRecord {
  id: number;
  bridge: string;
  topic: string;
  payload: Uint8Array;
  qos: number;
  retain: boolean;
  deviceId?: string;
  ts: number;
  reason: string;
  detail?: string;
  deadAt: number;
}

/** What the API reads and does of the northbound (`Northbound` is one). */
export interface NorthboundAdmin {
  readonly bridges: ReadonlyArray<
    { readonly name: string; readonly state: string; readonly url: string }
  >;
  readonly spool: {
    readonly depth: number;
    readonly bytes: number;
    readonly maxBytes: number;
    readonly deadLetterCount: number;
    readonly deadLetterBytes: number;
  };
  listDeadLetters(
    options?: { bridge?: string; afterId?: number; limit?: number },
  ): Promise<DeadLetterRecord[]>;
  retryDeadLetters(ids: number[]): Promise<number>;
  deleteDeadLetters(ids: number[]): Promise<number>;
}

/** The topic whose subscribe (read) or publish (retry, delete) permission covers the northbound. */
export const NORTHBOUND_TOPIC = "$ferry/admin/northbound";

/** Tunables of {@link AdminApi}. */
export interface AdminApiOptions {
  /** The registry file; without it add/rotate/remove answer 501. */
  devices?: DeviceFileAdmin;
  /** The service accounts of the registry file; without it accounts answer 501. */
  accounts?: AccountFileAdmin;
  /** The northbound, when configured. */
  northbound?: () => NorthboundAdmin | undefined;
  /** The charts' history (`GET /api/v1/admin/history`); without it that route answers 404. */
  history?: () => HistorySnapshot | undefined;
  /** The rules, when attached (`/api/v1/admin/rules`: `rules_api.ts`). */
  rules?: () => RulesAdmin | undefined;
  /** The document to extend with the management routes (the device API's). */
  baseDocument?: () => Record<string, unknown>;
  /** Largest page. @default 1000 */
  maxLimit?: number;
  /** Page size without `limit`. @default 100 */
  defaultLimit?: number;
}

/** A device in a list. */
export interface DeviceSummary {
  id: string;
  protocol: string | null;
  state: "online" | "offline";
  /** Last frame or request, ms since the epoch; null if never seen. */
  lastSeen: number | null;
  /** True when the device has credentials (config or registry file). */
  registered: boolean;
  messagesIn: number;
  messagesOut: number;
  errors: number;
}

type SortKey = "id" | "lastSeen";

const PREFIX = "/api/v1/admin/";
const STATES = new Set(["online", "offline"]);

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return Response.json(body, { status, headers: { "cache-control": "no-store", ...headers } });
}

function error(status: number, message: string, headers: Record<string, string> = {}): Response {
  return json({ error: message }, status, headers);
}

/** The topic whose publish permission lets an account manage device `id`. */
export function adminTopic(id: string): string {
  return `$ferry/admin/devices/${id}`;
}

/** The cursor after `d` in the order `sort` (opaque to clients: base64url JSON). */
function encodeCursor(sort: SortKey, d: DeviceRecord): string {
  const raw = JSON.stringify(sort === "id" ? [d.id] : [d.lastSeen, d.id]);
  return btoa(raw).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function decodeCursor(sort: SortKey, cursor: string): [number, string] | undefined {
  try {
    const b64 = cursor.replaceAll("-", "+").replaceAll("_", "/");
    const v = JSON.parse(atob(b64 + "=".repeat((4 - b64.length % 4) % 4)));
    if (!Array.isArray(v)) return undefined;
    if (sort === "id" && v.length === 1 && typeof v[0] === "string") return [0, v[0]];
    if (
      sort === "lastSeen" && v.length === 2 && typeof v[0] === "number" && typeof v[1] === "string"
    ) return [v[0], v[1]];
  } catch { /* below */ }
  return undefined;
}

function summary(d: DeviceRecord, registered: boolean): DeviceSummary {
  return {
    id: d.id,
    protocol: d.protocol ?? null,
    state: d.state,
    lastSeen: d.lastSeen > 0 ? d.lastSeen : null,
    registered,
    messagesIn: d.messagesIn,
    messagesOut: d.messagesOut,
    errors: d.errors,
  };
}

function byId(a: DeviceRecord, b: DeviceRecord): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Serves `/api/v1/admin/...` and the OpenAPI document; mount before the device API:
 * `http.route((req, url, info) => admin.handle(req, url, info))`.
 *
 * @example
 * ```ts
 * import { Core } from "../../core/core.ts";
 * import { silentLogger } from "../../core/logger.ts";
 * import { ConsoleAuth } from "../console/auth.ts";
 * import { AdminApi } from "./admin_api.ts";
 * const core = new Core({
 *   log: silentLogger,
 *   services: [{ name: "ops", token: "t", publish: [], subscribe: ["devices/#"] }],
 * });
 * const api = new AdminApi(core, new ConsoleAuth(core.registry));
 * core.registry.touch("s1", "coap");
 * const url = new URL("http://gw/api/v1/admin/devices?prefix=s");
 * const info = { remoteAddr: { transport: "tcp" as const, hostname: "127.0.0.1", port: 1 } };
 * const req = new Request(url, { headers: { authorization: `Basic ${btoa("ops:t")}` } });
 * const res = await api.handle(req, url, info)!;
 * const page = await res.json();
 * if (res.status !== 200 || page.items[0].id !== "s1" || page.total !== 1) throw new Error();
 * await core.close();
 * ```
 */
export class AdminApi {
  #core: Core;
  #acks = new CommandAcks();
  #port: DevicePort;
  #auth: ConsoleAuth;
  #opts: AdminApiOptions & { maxLimit: number; defaultLimit: number };
  /** File changes one at a time (each reads, edits and writes the whole file). */
  #fileQueue: Promise<unknown> = Promise.resolve();
  #document: string | undefined;

  /** Creates the API over `core`, judging callers with `auth`. */
  constructor(core: Core, auth: ConsoleAuth, options: AdminApiOptions = {}) {
    this.#core = core;
    this.#port = core.port({ name: "http" });
    this.#auth = auth;
    this.#opts = { maxLimit: 1000, defaultLimit: 100, ...options };
    // Devices' command acks, whatever protocol brings them (GET devices/{id}/acks).
    core.subscribe("devices/+/acks/#", { id: "admin-acks", deliver: (m) => this.#acks.add(m) });
  }

  /** The OpenAPI document: the base document's routes and the management routes. */
  document(): Record<string, unknown> {
    return adminOpenApi(this.#opts.baseDocument?.(), {
      maxLimit: this.#opts.maxLimit,
      defaultLimit: this.#opts.defaultLimit,
    });
  }

  /** Handles `/api/v1/admin/...` and `/api/v1/openapi.json`, or returns undefined. */
  handle(req: Request, url: URL, info: RequestInfo): Promise<Response> | undefined {
    const path = url.pathname;
    if (path === "/api/v1/openapi.json") return Promise.resolve(this.#openapi(req));
    if (!path.startsWith(PREFIX)) return undefined;
    return this.#route(req, url, info.remoteAddr.hostname);
  }

  #openapi(req: Request): Response {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return error(405, "Cannot serve: use GET", { allow: "GET, HEAD" });
    }
    this.#document ??= JSON.stringify(this.document(), null, 2);
    return new Response(req.method === "HEAD" ? null : this.#document, {
      headers: { "content-type": "application/json", "cache-control": "max-age=60" },
    });
  }

  async #route(req: Request, url: URL, peer: string): Promise<Response> {
    const caller = this.#auth.identify(req, peer);
    if (!caller) {
      const wait = this.#auth.throttledSec("", this.#auth.clientAddress(req, peer));
      if (wait > 0) return error(429, "too many failed logins", { "retry-after": String(wait) });
      return error(401, "credentials required (HTTP Basic: a service account's name and token)", {
        "www-authenticate": 'Basic realm="ferry"',
      });
    }
    const method = req.method;
    if (method !== "GET" && method !== "HEAD") {
      const refused = this.#auth.csrf(req, url);
      if (refused) {
        this.#port.stats.error(refused.status === 415 ? "csrf_content_type" : "csrf_origin");
        return error(refused.status, refused.message);
      }
    }
    const seg = url.pathname.slice(PREFIX.length).split("/");
    if (seg[0] === "accounts") {
      const ctx = { core: this.#core, accounts: this.#opts.accounts, serial: this.#serial };
      return await handleAccounts(ctx, req, seg, caller);
    }
    if (seg[0] === "sessions" || seg[0] === "subscriptions") {
      return await handleSessions({ core: this.#core, ...this.#opts }, req, url, seg, caller);
    }
    if (seg[0] === "northbound") return await this.#northbound(req, url, seg, caller);
    if (seg[0] === "history" && seg.length === 1) {
      return historyRoute(req, caller, url, this.#opts.history?.());
    }
    if (seg[0] === "rules") {
      return await handleRules(req, seg, caller, {
        rules: this.#opts.rules?.(),
        log: (msg, fields) => this.#core.log.child("admin").info(msg, fields),
      });
    }
    if (seg[0] === "retained" && seg.length === 1) {
      if (method === "GET") return this.#retained(url, caller);
      if (method === "DELETE") return await this.#clearRetained(url, caller);
      return error(405, "use GET or DELETE", { allow: "GET, DELETE" });
    }
    if (seg[0] !== "devices") return error(404, "no such route");
    if (seg.length === 1) {
      if (method === "GET") return this.#list(url, caller);
      if (method === "POST") return await this.#add(req, caller);
      return error(405, "use GET or POST", { allow: "GET, POST" });
    }
    let id: string;
    try {
      id = decodeURIComponent(seg[1]);
    } catch {
      return error(400, "malformed percent-encoding in the path");
    }
    if (!isDeviceId(id)) return error(400, `"${id.slice(0, 80)}" is not a device id`);
    if (seg.length === 2) {
      if (method === "GET") return this.#detail(id, caller);
      if (method === "DELETE") return await this.#remove(id, caller);
      return error(405, "use GET or DELETE", { allow: "GET, DELETE" });
    }
    if (seg[2] === "commands" && seg.length === 3) {
      if (method !== "GET") return error(405, "use GET", { allow: "GET" });
      return this.#pending(id, caller);
    }
    if (seg[2] === "acks" && seg.length === 3) {
      if (method !== "GET") return error(405, "use GET", { allow: "GET" });
      return this.#acksOf(id, caller);
    }
    if (seg[2] === "commands" && seg.length === 4) {
      if (method !== "POST") return error(405, "use POST", { allow: "POST" });
      let name: string;
      try {
        name = decodeURIComponent(seg[3]);
      } catch {
        return error(400, "malformed percent-encoding in the path");
      }
      return await this.#command(req, id, name, caller);
    }
    if (seg.length === 3 && (seg[2] === "rotate" || seg[2] === "disconnect")) {
      if (method !== "POST") return error(405, "use POST", { allow: "POST" });
      return seg[2] === "rotate" ? await this.#rotate(id, caller) : this.#disconnect(id, caller);
    }
    return error(404, "no such route");
  }

  #list(url: URL, caller: Caller): Response {
    const q = url.searchParams;
    const sort = (q.get("sort") ?? "id") as SortKey;
    if (sort !== "id" && sort !== "lastSeen") return error(400, "sort is id or lastSeen");
    const order = q.get("order") ?? (sort === "id" ? "asc" : "desc");
    if (order !== "asc" && order !== "desc") return error(400, "order is asc or desc");
    const limitText = q.get("limit");
    const limit = limitText === null ? this.#opts.defaultLimit : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > this.#opts.maxLimit) {
      return error(400, `limit is an integer from 1 to ${this.#opts.maxLimit}`);
    }
    const prefix = q.get("prefix") ?? "";
    const protocol = q.get("protocol");
    const state = q.get("state");
    if (state !== null && !STATES.has(state)) return error(400, "state is online or offline");
    const cursorText = q.get("cursor");
    const cursor = cursorText === null ? undefined : decodeCursor(sort, cursorText);
    if (cursorText !== null && !cursor) return error(400, "cursor is not one this API gave");

    const reg = this.#core.registry;
    const rows: DeviceRecord[] = [];
    for (const d of reg.list()) {
      if (prefix && !d.id.startsWith(prefix)) continue;
      if (protocol !== null && d.protocol !== protocol) continue;
      if (state !== null && d.state !== state) continue;
      if (!mayObserveDevice(caller, d.id)) continue;
      rows.push(d);
    }
    const dir = order === "asc" ? 1 : -1;
    const cmp = sort === "id"
      ? (a: DeviceRecord, b: DeviceRecord) => dir * byId(a, b)
      : (a: DeviceRecord, b: DeviceRecord) =>
        dir * (a.lastSeen - b.lastSeen !== 0 ? a.lastSeen - b.lastSeen : byId(a, b));
    rows.sort(cmp);
    let start = 0;
    if (cursor) {
      // Keyset paging: the first row after the cursor's (lastSeen, id) in this order; rows that
      // changed meanwhile move, none is listed twice on one walk through an unchanged set.
      const probe = { id: cursor[1], lastSeen: cursor[0] } as DeviceRecord;
      let lo = 0, hi = rows.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (cmp(rows[mid], probe) <= 0) lo = mid + 1;
        else hi = mid;
      }
      start = lo;
    }
    const page = rows.slice(start, start + limit);
    const more = start + limit < rows.length;
    return json({
      items: page.map((d) => summary(d, reg.hasCredentials(d.id))),
      total: rows.length,
      nextCursor: more ? encodeCursor(sort, page[page.length - 1]) : null,
    });
  }

  #detail(id: string, caller: Caller): Response {
    const reg = this.#core.registry;
    const d = reg.get(id) ?? (reg.hasCredentials(id) ? reg.device(id) : undefined);
    if (!d || !mayObserveDevice(caller, id)) return error(404, `no device "${id}"`);
    return json({
      ...summary(d, reg.hasCredentials(id)),
      connected: d.session !== undefined,
      session: d.session ? sessionView(d.session) : null,
      // The live connection's peer, else where the last request came from (CoAP, HTTP).
      remoteAddress: (d.session?.describe?.().remoteAddress ?? d.address) ?? null,
      pendingCommands: this.#core.commands.count(id),
    });
  }

  async #northbound(req: Request, url: URL, seg: string[], caller: Caller): Promise<Response> {
    const nb = this.#opts.northbound?.();
    const method = req.method;
    const read = mayRead(caller, NORTHBOUND_TOPIC);
    if (!read && !mayWrite(caller, NORTHBOUND_TOPIC)) {
      return error(403, `account "${caller.name}" may not read ${NORTHBOUND_TOPIC}`);
    }
    if (!nb) return error(404, "no northbound bridge is configured");
    if (seg.length === 1) {
      if (method !== "GET") return error(405, "use GET", { allow: "GET" });
      if (!read) return error(403, `account "${caller.name}" may not read ${NORTHBOUND_TOPIC}`);
      const sp = nb.spool;
      return json({
        bridges: nb.bridges.map((b) => ({ name: b.name, state: b.state, upstream: b.url })),
        spool: {
          messages: sp.depth,
          bytes: sp.bytes,
          maxBytes: sp.maxBytes,
          deadLetters: sp.deadLetterCount,
          deadLetterBytes: sp.deadLetterBytes,
        },
      });
    }
    if (seg[1] !== "dead-letters") return error(404, "no such route");
    if (seg.length === 2) {
      if (method !== "GET") return error(405, "use GET", { allow: "GET" });
      if (!read) return error(403, `account "${caller.name}" may not read ${NORTHBOUND_TOPIC}`);
      const q = url.searchParams;
      const limit = Number(q.get("limit") ?? "100");
      const after = Number(q.get("after") ?? "0");
      if (!Number.isInteger(limit) || limit < 1 || limit > this.#opts.maxLimit) {
        return error(400, `limit is an integer from 1 to ${this.#opts.maxLimit}`);
      }
      if (!Number.isInteger(after) || after < 0) return error(400, "after is a dead letter id");
      const rows = await nb.listDeadLetters({
        bridge: q.get("bridge") ?? undefined,
        afterId: after,
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      return json({
        items: page.map((d) => {
          const { encoding, payload } = payloadText(d.payload);
          return {
            id: d.id,
            bridge: d.bridge,
            topic: d.topic,
            deviceId: d.deviceId ?? null,
            qos: d.qos,
            retain: d.retain,
            size: d.payload.byteLength,
            encoding,
            payload,
            ts: d.ts,
            reason: d.reason,
            detail: d.detail ?? null,
            deadAt: d.deadAt,
          };
        }),
        nextAfter: rows.length > limit ? page[page.length - 1].id : null,
      });
    }
    if (seg.length === 3 && (seg[2] === "retry" || seg[2] === "delete")) {
      if (method !== "POST") return error(405, "use POST", { allow: "POST" });
      if (!mayWrite(caller, NORTHBOUND_TOPIC)) {
        return error(403, `account "${caller.name}" may not publish to ${NORTHBOUND_TOPIC}`);
      }
      const body = await readJson(req, 65_536);
      if ("error" in body) return body.error;
      const ids = (body.value as { ids?: unknown } | null)?.ids;
      if (
        !Array.isArray(ids) || ids.length === 0 || ids.length > 10_000 ||
        !ids.every((i) => Number.isInteger(i) && i > 0)
      ) {
        return error(400, "expected a JSON body {ids: [dead letter ids]} (1..10000 of them)");
      }
      const n = seg[2] === "retry"
        ? await nb.retryDeadLetters(ids as number[])
        : await nb.deleteDeadLetters(ids as number[]);
      this.#core.log.child("admin").info(`dead letters ${seg[2]} through the management API`, {
        account: caller.name,
        count: n,
      });
      return json(seg[2] === "retry" ? { retried: n } : { deleted: n });
    }
    return error(404, "no such route");
  }

  #retained(url: URL, caller: Caller): Response {
    const q = url.searchParams;
    const filter = q.get("filter") ?? "#";
    const bad = validateFilter(filter);
    if (bad) return error(400, `filter: ${bad}`);
    const limit = Number(q.get("limit") ?? String(this.#opts.defaultLimit));
    if (!Number.isInteger(limit) || limit < 1 || limit > this.#opts.maxLimit) {
      return error(400, `limit is an integer from 1 to ${this.#opts.maxLimit}`);
    }
    const after = q.get("after") ?? "";
    // Topics the account may read (its subscribe ACL), in topic order, after `after`.
    const rows = this.#core.retained.match(filter)
      .filter((m) => m.topic > after && mayRead(caller, m.topic))
      .sort((a, b) => a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0);
    const page = rows.slice(0, limit);
    return json({
      items: page.map((m) => {
        const { encoding, payload } = payloadText(m.payload);
        return {
          topic: m.topic,
          qos: m.qos,
          size: m.payload.byteLength,
          ts: m.ts,
          deviceId: m.deviceId ?? null,
          encoding,
          payload,
        };
      }),
      total: rows.length,
      nextAfter: rows.length > limit ? page[page.length - 1].topic : null,
    });
  }

  /** Clears a retained message the MQTT way: an empty retained publish, as the account. */
  async #clearRetained(url: URL, caller: Caller): Promise<Response> {
    const topic = url.searchParams.get("topic") ?? "";
    const bad = validateTopic(topic);
    if (bad) return error(400, `topic: ${bad}`);
    if (!this.#core.retained.get(topic) || !mayRead(caller, topic)) {
      return error(404, `no retained message on ${topic}`);
    }
    if (!mayWrite(caller, topic)) {
      return error(403, `account "${caller.name}" may not publish to ${topic}`);
    }
    const r = await this.#port.publish(caller.identity, {
      topic,
      payload: new Uint8Array(0),
      qos: 1,
      retain: true,
      origin: "admin",
    }, { wait: true });
    if (!r.ok) return error(r.reason === "not_authorized" ? 403 : 503, r.message);
    this.#core.log.child("admin").info("retained message cleared through the management API", {
      account: caller.name,
      topic,
    });
    return new Response(null, { status: 204, headers: { "cache-control": "no-store" } });
  }

  #pending(id: string, caller: Caller): Response {
    if (!mayObserveDevice(caller, id)) return error(404, `no device "${id}"`);
    const items = this.#core.commands.pending(id)
      .filter((c) => mayRead(caller, commandTopic(id, c.name)))
      .map((c) => ({ ...commandView(c), claimedBy: c.claimedBy ?? null }));
    return json({ items });
  }

  /** The device's recent command acks the account may read, newest first. */
  #acksOf(id: string, caller: Caller): Response {
    if (!mayObserveDevice(caller, id)) return error(404, `no device "${id}"`);
    const items = this.#acks.of(id)
      .filter((a) => mayRead(caller, a.topic))
      .map((a) => {
        const { encoding, payload } = payloadText(a.payload);
        return {
          name: a.name,
          topic: a.topic,
          ts: a.ts,
          protocol: a.protocol,
          size: a.size,
          encoding,
          payload,
        };
      })
      .reverse();
    return json({ items });
  }

  async #command(req: Request, id: string, name: string, caller: Caller): Promise<Response> {
    if (!COMMAND_NAME_RE.test(name)) {
      return error(400, `"${name.slice(0, 80)}" is not a command name`);
    }
    const topic = commandTopic(id, name);
    if (!mayWrite(caller, topic)) {
      this.#port.stats.error("forbidden");
      return error(403, `account "${caller.name}" may not publish to ${topic}`);
    }
    const body = await readJson(req, 65_536);
    if ("error" in body) return body.error;
    const v = body.value as { data?: unknown; contentType?: unknown } | null;
    const data = typeof v?.data === "string" ? v.data : JSON.stringify(v?.data ?? "");
    const contentType = typeof v?.contentType === "string"
      ? v.contentType.slice(0, 128)
      : undefined;
    const r = await this.#port.publish(caller.identity, {
      topic,
      payload: new TextEncoder().encode(data),
      qos: 1,
      retain: false,
      origin: "admin",
      ...(contentType ? { properties: { contentType } } : {}),
    }, { wait: true });
    if (!r.ok) {
      return error(
        r.reason === "not_authorized" ? 403 : 503,
        r.message,
        r.retryAfterMs ? { "retry-after": String(Math.ceil(r.retryAfterMs / 1000)) } : {},
      );
    }
    this.#log("command sent", caller, id);
    return json({ sent: true, topic, pending: this.#core.commands.count(id) }, 202);
  }

  /** 403 unless `caller` may manage device `id`. */
  #mayManage(caller: Caller, id: string, what: string): Response | undefined {
    if (mayWrite(caller, adminTopic(id))) return undefined;
    this.#port.stats.error("forbidden");
    this.#port.throttled.warn(`admin-forbidden:${caller.name}`, "management call refused", {
      account: caller.name,
      action: what,
      device: id,
    });
    return error(403, `account "${caller.name}" may not ${what} devices (${adminTopic(id)})`);
  }

  /** Runs one registry-file change after the others (devices and accounts: one file). */
  #serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = this.#fileQueue.then(fn, fn);
    this.#fileQueue = run.catch(() => {});
    return run;
  };

  #log(action: string, caller: Caller, id: string): void {
    this.#core.log.child("admin").info(`device ${action} through the management API`, {
      account: caller.name,
      device: id,
    });
  }

  async #add(req: Request, caller: Caller): Promise<Response> {
    const body = await readJson(req, 4096);
    if ("error" in body) return body.error;
    const id = (body.value as { id?: unknown } | null)?.id;
    if (typeof id !== "string" || !isDeviceId(id)) {
      return error(400, "expected a JSON body {id}, id 1..64 characters of [A-Za-z0-9._:-]");
    }
    const refused = this.#mayManage(caller, id, "add");
    if (refused) return refused;
    const file = this.#opts.devices;
    if (!file) return error(501, "this gateway has no registry file to add devices to");
    return await this.#serial(async () => {
      if (this.#core.registry.hasCredentials(id)) {
        return error(409, `device "${id}" exists (rotate its token instead)`);
      }
      const token = await file.add(id);
      this.#log("added", caller, id);
      return json({ id, token }, 201, { location: `${PREFIX}devices/${encodeURIComponent(id)}` });
    }).catch((err) => error(500, `cannot add device "${id}": ${(err as Error).message}`));
  }

  #rotate(id: string, caller: Caller): Promise<Response> {
    return this.#inFile(id, caller, "rotate", async (file) => {
      const token = await file.rotate(id);
      this.#log("rotated", caller, id);
      return json({ id, token });
    });
  }

  #remove(id: string, caller: Caller): Promise<Response> {
    return this.#inFile(id, caller, "remove", async (file) => {
      await file.remove(id);
      this.#log("removed", caller, id);
      return new Response(null, { status: 204, headers: { "cache-control": "no-store" } });
    });
  }

  /**
   * Runs `act` on a device of the registry file, one change at a time, once the account may
   * `verb` it and the file has it (403, 501, 404 otherwise; 500 when the change fails).
   */
  async #inFile(
    id: string,
    caller: Caller,
    verb: "rotate" | "remove",
    act: (file: DeviceFileAdmin) => Promise<Response>,
  ): Promise<Response> {
    const refused = this.#mayManage(caller, id, verb);
    if (refused) return refused;
    const file = this.#opts.devices;
    if (!file) return error(501, "this gateway has no registry file");
    return await this.#serial(async () => {
      const missing = await this.#notInFile(file, id);
      return missing ?? await act(file);
    }).catch((err) => error(500, `cannot ${verb} device "${id}": ${(err as Error).message}`));
  }

  async #notInFile(file: DeviceFileAdmin, id: string): Promise<Response | undefined> {
    if (await file.has(id)) return undefined;
    if (this.#core.registry.hasCredentials(id)) {
      return error(409, `device "${id}" is defined in the config (auth.devices), not the registry`);
    }
    return error(404, `no device "${id}" in the registry`);
  }

  #disconnect(id: string, caller: Caller): Response {
    const refused = this.#mayManage(caller, id, "disconnect");
    if (refused) return refused;
    const session = this.#core.registry.get(id)?.session;
    if (!session) return error(409, `device "${id}" is not connected`);
    session.close({ code: "administrative", message: `disconnected by ${caller.name}` });
    this.#log("disconnected", caller, id);
    return json({ id, disconnected: true, protocol: session.protocol }, 202);
  }
}
