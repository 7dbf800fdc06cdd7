/**
 * `GET /api/v1/devices/{id}/commands`: long-poll for pending commands. Answers at once when
 * commands newer than `?after=` are pending, else waits up to `?timeout=` seconds (capped by
 * `longPollMaxMs`) for one: 200 with `{ commands: [...] }`, or 204 when none came. Commands come
 * from the core's store and are claimed for HTTP when answered: no other protocol hands them out,
 * and they stay pending until acknowledged (or expired), so a client that lost a response gets
 * them again; `after` (the last command id seen) skips those already received. A request that asks for
 * `Accept: text/event-stream` is served as an SSE stream instead (see `handle_stream.ts`).
 *
 * @module
 */

import type { ApiContext } from "./_context.ts";
import { intParam, secondsParam } from "./_params.ts";
import type { PendingCommand } from "../../core/mod.ts";

let polls = 0;
import { commandView } from "./command_view.ts";

/** Handles a long-poll for a device whose id the router validated. */
export async function handleLongPoll(
  ctx: ApiContext,
  req: Request,
  url: URL,
  deviceId: string,
): Promise<Response> {
  const principal = ctx.authorize(req, url, deviceId);
  if (principal instanceof Response) return principal;
  const after = intParam(url.searchParams.get("after")) ?? 0;
  const asked = secondsParam(url.searchParams.get("timeout"));
  if (Number.isNaN(after) || Number.isNaN(asked)) {
    return ctx.fail("invalid-parameter", url, {
      detail: "after must be a command id (integer >= 0) and timeout seconds (>= 0)",
    });
  }
  const waitMs = Math.min(asked ?? ctx.opts.longPollDefaultMs, ctx.opts.longPollMaxMs);
  const now = ctx.commands.pending(deviceId, after);
  if (now.length > 0 || waitMs === 0) return answer(ctx, now);
  if (ctx.closing.aborted) return ctx.fail("unavailable", url, { detail: "Shutting down" });

  type Why = "command" | "timeout" | "closed" | "gone" | "revoked";
  let woke = Promise.withResolvers<Why>();
  const stop = ctx.listen(deviceId, () => woke.resolve("command"));
  if (!stop) {
    return ctx.fail("too-many-waiters", url, {
      detail: `Device ${deviceId} already has ${ctx.opts.maxWaitersPerDevice} open waits`,
      headers: { "retry-after": "1" },
      extensions: { limit: ctx.opts.maxWaitersPerDevice },
    });
  }
  // A wait is attached to the identity it was opened with: revoking the device's credentials
  // ends it with 401, never with a command.
  const attachment = ctx.port.attach(principal, {
    sessionId: `http-poll-${++polls}`,
    protocol: ctx.port.protocol,
    close: () => woke.resolve("revoked"),
  }, false);
  const clock = ctx.port.clock;
  const timer = clock.setTimeout(() => woke.resolve("timeout"), waitMs);
  const onClose = () => woke.resolve("closed");
  const onGone = () => woke.resolve("gone");
  ctx.closing.addEventListener("abort", onClose, { once: true });
  req.signal.addEventListener("abort", onGone, { once: true });
  let why: Why;
  let cmds: PendingCommand[] = [];
  try {
    for (;;) {
      why = await woke.promise;
      if (why !== "command") break;
      // Another protocol may have taken it meanwhile: then keep waiting.
      cmds = ctx.commands.pending(deviceId, after);
      if (cmds.length > 0) break;
      woke = Promise.withResolvers<Why>();
    }
  } finally {
    stop();
    attachment.detach();
    clock.clearTimeout(timer);
    ctx.closing.removeEventListener("abort", onClose);
    req.signal.removeEventListener("abort", onGone);
  }
  if (why === "revoked") {
    return ctx.fail("unauthorized", url, {
      detail: `The credentials of ${deviceId} were revoked while it waited`,
      headers: { "www-authenticate": 'Bearer realm="ferry", Basic realm="ferry"' },
    });
  }
  if (why === "closed") {
    return ctx.fail("unavailable", url, {
      detail: "The gateway is shutting down",
      headers: { "retry-after": String(ctx.opts.overloadRetryAfterSec) },
    });
  }
  ctx.seen(deviceId);
  return answer(ctx, why === "command" ? cmds : ctx.commands.pending(deviceId, after));
}

function answer(ctx: ApiContext, pending: PendingCommand[]): Response {
  const cmds = pending.filter((c) => ctx.commands.claim(c));
  if (cmds.length === 0) {
    return new Response(null, { status: 204, headers: { "cache-control": "no-store" } });
  }
  ctx.port.stats.delivered(cmds.length);
  return Response.json({ commands: cmds.map(commandView) }, {
    headers: { "cache-control": "no-store" },
  });
}
