/**
 * The management API's client sessions, `/api/v1/admin/sessions` and `/api/v1/admin/subscriptions`:
 * the sessions the protocol adapters hold by client id (MQTT's, connected or persisted), listed
 * with cursor paging, one in detail (connected or not, clean start, expiry, subscriptions with
 * their QoS, queued messages), dropped (a persisted session is discarded; a connected one is
 * kicked first); and every subscription, paged. The adapters show their sessions through the
 * core's session directory (`core.sessions`); nothing here knows a protocol.
 *
 * Authorization, by the caller's ACL: reading needs a subscribe filter matching
 * `$ferry/admin/sessions`; dropping a session needs a publish filter matching it.
 *
 * @module
 */

import type { Core } from "../../core/core.ts";
import type { Protocol } from "../../core/message.ts";
import type { SessionProvider } from "../../core/session_directory.ts";
import { validateTopic } from "../../core/topic_router.ts";
import { type Caller, mayRead, mayWrite } from "../console/auth.ts";
import { decodeCursor, encodeCursor, error, json } from "./_respond.ts";

/** The topic whose subscribe (read) or publish (drop) permission covers client sessions. */
export const SESSIONS_TOPIC = "$ferry/admin/sessions";

/** What the routes need of the API that mounts them. */
export interface SessionsContext {
  /** The core (its session directory, its log). */
  core: Core;
  /** Largest page. */
  maxLimit: number;
  /** Page size without `limit`. */
  defaultLimit: number;
}

type Key = [string, string]; // protocol, client id
type SubKey = [string, string, string]; // protocol, client id, filter

function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function cmpKey(a: readonly string[], b: readonly string[]): number {
  for (let i = 0; i < a.length; i++) {
    const c = cmpStr(a[i], b[i]);
    if (c !== 0) return c;
  }
  return 0;
}

/** Index of the first row after `key` in sorted `rows`. */
function after<T extends readonly string[]>(rows: T[], key: T): number {
  let lo = 0, hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cmpKey(rows[mid], key) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function limitOf(ctx: SessionsContext, q: URLSearchParams): number | Response {
  const text = q.get("limit");
  const limit = text === null ? ctx.defaultLimit : Number(text);
  if (!Number.isInteger(limit) || limit < 1 || limit > ctx.maxLimit) {
    return error(400, `limit is an integer from 1 to ${ctx.maxLimit}`);
  }
  return limit;
}

function cursorOf(q: URLSearchParams, n: number): string[] | undefined | Response {
  const text = q.get("cursor");
  if (text === null) return undefined;
  const v = decodeCursor(text);
  if (!Array.isArray(v) || v.length !== n || v.some((x) => typeof x !== "string")) {
    return error(400, "cursor is not one this API gave");
  }
  return v as string[];
}

/** The providers asked for (`protocol=`: one; else all), by protocol. */
function providers(ctx: SessionsContext, q: URLSearchParams): [Protocol, SessionProvider][] {
  const dir = ctx.core.sessions;
  const want = q.get("protocol");
  return dir.protocols()
    .filter((p) => want === null || p === want)
    .map((p) => [p, dir.provider(p)!]);
}

/**
 * Serves `sessions`, `sessions/{clientId}` and `subscriptions` (`seg`: the path after
 * `/api/v1/admin/`, split); the caller is authenticated and state-changing calls passed the CSRF
 * guard.
 */
export function handleSessions(
  ctx: SessionsContext,
  req: Request,
  url: URL,
  seg: string[],
  caller: Caller,
): Response | Promise<Response> {
  const method = req.method;
  const read = mayRead(caller, SESSIONS_TOPIC);
  if (seg[0] === "subscriptions") {
    if (seg.length !== 1) return error(404, "no such route");
    if (method !== "GET" && method !== "HEAD") return error(405, "use GET", { allow: "GET" });
    if (!read) return error(403, `account "${caller.name}" may not read ${SESSIONS_TOPIC}`);
    return subscriptions(ctx, url);
  }
  if (seg.length === 1) {
    if (method !== "GET" && method !== "HEAD") return error(405, "use GET", { allow: "GET" });
    if (!read) return error(403, `account "${caller.name}" may not read ${SESSIONS_TOPIC}`);
    return list(ctx, url);
  }
  if (seg.length !== 2) return error(404, "no such route");
  let clientId: string;
  try {
    clientId = decodeURIComponent(seg[1]);
  } catch {
    return error(400, "malformed percent-encoding in the path");
  }
  if (method === "GET" || method === "HEAD") {
    if (!read) return error(403, `account "${caller.name}" may not read ${SESSIONS_TOPIC}`);
    for (const [, p] of providers(ctx, url.searchParams)) {
      const d = p.describe(clientId, true);
      if (d) return json(d);
    }
    return error(404, `no session "${clientId.slice(0, 80)}"`);
  }
  if (method === "DELETE") {
    if (!mayWrite(caller, SESSIONS_TOPIC)) {
      ctx.core.log.child("admin").warn("management call refused", {
        account: caller.name,
        action: "drop session",
        clientId,
      });
      return error(403, `account "${caller.name}" may not publish to ${SESSIONS_TOPIC}`);
    }
    for (const [protocol, p] of providers(ctx, url.searchParams)) {
      const r = p.drop(clientId, `session dropped by ${caller.name}`);
      if (!r) continue;
      return dropped(ctx, p, caller, protocol, clientId, r);
    }
    return error(404, `no session "${clientId.slice(0, 80)}"`);
  }
  return error(405, "use GET or DELETE", { allow: "GET, DELETE" });
}

/** The answer to a drop, once it is durable (a restart must not bring the session back). */
async function dropped(
  ctx: SessionsContext,
  p: SessionProvider,
  caller: Caller,
  protocol: Protocol,
  clientId: string,
  r: "dropped" | "kicked",
): Promise<Response> {
  if (p.flushed && !await p.flushed()) {
    return error(
      500,
      `session "${clientId.slice(0, 80)}" dropped, but the state file was not written`,
    );
  }
  ctx.core.log.child("admin").info("session dropped through the management API", {
    account: caller.name,
    protocol,
    clientId,
    kicked: r === "kicked",
  });
  return json({ clientId, protocol, dropped: true, kicked: r === "kicked" });
}

function list(ctx: SessionsContext, url: URL): Response {
  const q = url.searchParams;
  const limit = limitOf(ctx, q);
  if (limit instanceof Response) return limit;
  const cursor = cursorOf(q, 2);
  if (cursor instanceof Response) return cursor;
  const prefix = q.get("prefix") ?? "";
  const connected = q.get("connected");
  if (connected !== null && connected !== "true" && connected !== "false") {
    return error(400, "connected is true or false");
  }
  const provs = providers(ctx, q);
  const rows: Key[] = [];
  for (const [protocol, p] of provs) {
    for (const id of p.clientIds()) {
      if (prefix && !id.startsWith(prefix)) continue;
      if (connected !== null && p.connected(id) !== (connected === "true")) continue;
      rows.push([protocol, id]);
    }
  }
  rows.sort(cmpKey);
  const start = cursor ? after(rows, cursor as Key) : 0;
  const page = rows.slice(start, start + limit);
  const byProtocol = new Map(provs);
  const items = [];
  for (const [protocol, id] of page) {
    const d = byProtocol.get(protocol)!.describe(id, false);
    if (d) items.push(d);
  }
  const more = start + limit < rows.length;
  return json({
    items,
    total: rows.length,
    nextCursor: more ? encodeCursor(page[page.length - 1]) : null,
  });
}

/**
 * True when MQTT filter `filter` matches the topic split into `t` (`dollar`: it starts with `$`,
 * which first-level wildcards do not match); walks the filter without splitting it.
 */
function filterMatches(filter: string, t: string[], dollar: boolean): boolean {
  let i = 0;
  let pos = 0;
  for (;;) {
    const end = filter.indexOf("/", pos);
    const level = end < 0 ? filter.slice(pos) : filter.slice(pos, end);
    if (level === "#") return !(dollar && i === 0);
    if (i >= t.length) return false;
    if (level === "+") {
      if (dollar && i === 0) return false;
    } else if (level !== t[i]) return false;
    i++;
    if (end < 0) return i === t.length;
    pos = end + 1;
  }
}

/** The filter of a subscription without a `$share/{group}/` prefix. */
function unshared(filter: string): string {
  if (!filter.startsWith("$share/")) return filter;
  const i = filter.indexOf("/", 7);
  return i < 0 ? filter : filter.slice(i + 1);
}

function subscriptions(ctx: SessionsContext, url: URL): Response {
  const q = url.searchParams;
  const limit = limitOf(ctx, q);
  if (limit instanceof Response) return limit;
  const cursor = cursorOf(q, 3) as SubKey | undefined | Response;
  if (cursor instanceof Response) return cursor;
  const topic = q.get("topic");
  if (topic !== null) {
    const bad = validateTopic(topic);
    if (bad) return error(400, `topic: ${bad}`);
  }
  const levels = topic?.split("/");
  const dollar = topic?.startsWith("$") ?? false;
  const accept = levels === undefined
    ? undefined
    : (filter: string) => filterMatches(unshared(filter), levels, dollar);
  const clientId = q.get("clientId");
  // Sessions in (protocol, client id) order, each one's subscriptions in filter order: the rows
  // come out sorted; only the page's are made into objects, the others are counted.
  const items: Array<{ protocol: string; clientId: string; filter: string; qos: number }> = [];
  let total = 0;
  let last: SubKey | undefined;
  let more = false;
  for (const [protocol, p] of providers(ctx, q)) {
    let ids: string[];
    if (clientId !== null) ids = p.subscriptionCount(clientId) > 0 ? [clientId] : [];
    else {
      ids = [];
      for (const id of p.clientIds()) ids.push(id);
      ids.sort();
    }
    for (const id of ids) {
      const before = cursor !== undefined && cmpKey([protocol, id], cursor) < 0;
      const atCursor = cursor !== undefined && protocol === cursor[0] && id === cursor[1];
      if (levels === undefined && (before || more)) {
        total += p.subscriptionCount(id); // not on the page: counted, not listed
        continue;
      }
      for (const s of p.subscriptions(id, accept)) {
        total++;
        if (before || (atCursor && s.filter <= cursor![2])) continue;
        if (items.length < limit) {
          items.push({ protocol, clientId: id, filter: s.filter, qos: s.qos });
          last = [protocol, id, s.filter];
        } else more = true;
      }
    }
  }
  return json({ items, total, nextCursor: more && last ? encodeCursor(last) : null });
}
