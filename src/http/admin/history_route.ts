/**
 * `GET /api/v1/admin/history`: the short history of the gateway's counters the dashboard's charts
 * draw (`../../ops/metrics_history.ts`), so that they survive a page reload. Gateway-wide
 * statistics, like `/metrics` and `$SYS`: the account's subscribe ACL must cover `$SYS/#`.
 *
 * @module
 */

import type { HistorySnapshot } from "../../ops/metrics_history.ts";
import { type Caller, mayReadSys } from "../console/auth.ts";

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return Response.json(body, { status, headers: { "cache-control": "no-store", ...headers } });
}

/**
 * Answers `GET /api/v1/admin/history[?since=ms]` for `caller`: the samples (those after `since`,
 * ms since the epoch, when given), 403 without `$SYS/#`, 404 when the gateway keeps no history.
 *
 * @example
 * ```ts
 * import { historyRoute } from "./history_route.ts";
 * const caller = {
 *   name: "ops",
 *   identity: { principal: { kind: "service", name: "ops", publish: [], subscribe: ["$SYS/#"] } },
 * } as unknown as Parameters<typeof historyRoute>[1];
 * const snapshot = {
 *   intervalMs: 1000,
 *   capacity: 10,
 *   samples: [1, 2].map((time) => ({ time, messagesIn: {}, messagesOut: {}, connections: {}, spoolDepth: null })),
 * };
 * const url = new URL("http://gw/api/v1/admin/history?since=1");
 * const res = historyRoute(new Request(url), caller, url, snapshot);
 * const body = await res.json();
 * if (res.status !== 200 || body.samples.length !== 1 || body.samples[0].time !== 2) throw new Error();
 * ```
 */
export function historyRoute(
  req: Request,
  caller: Caller,
  url: URL,
  snapshot: HistorySnapshot | undefined,
): Response {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return json({ error: "use GET" }, 405, { allow: "GET, HEAD" });
  }
  if (!mayReadSys(caller)) {
    return json(
      { error: `account "${caller.name}" may not read $SYS/# (gateway statistics)` },
      403,
    );
  }
  if (!snapshot) return json({ error: "this gateway keeps no history" }, 404);
  const sinceText = url.searchParams.get("since");
  const since = sinceText === null ? undefined : Number(sinceText);
  if (since !== undefined && (!Number.isFinite(since) || since < 0)) {
    return json({ error: "since is a time in ms since the epoch" }, 400);
  }
  const samples = since === undefined
    ? snapshot.samples
    : snapshot.samples.filter((s) => s.time > since);
  return json({ intervalMs: snapshot.intervalMs, capacity: snapshot.capacity, samples });
}
