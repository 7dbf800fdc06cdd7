/**
 * `GET /api/v1/devices/{id}/commands` with `Accept: text/event-stream`: a Server-Sent Events
 * stream of commands (`event: command`, `id:` the command id, `data:` its JSON view). Pending
 * commands newer than `Last-Event-ID` (or `?after=`) come first, then each new one as it
 * arrives; each is claimed for HTTP as it is sent (no other protocol hands it out). Comment heartbeats every `sseHeartbeatMs` keep proxies from timing the stream out and
 * keep the device online. A client that stops reading is cut off once a bounded backlog builds
 * up; the API's `close()` ends every stream.
 *
 * @module
 */

import type { ApiContext } from "./_context.ts";
import { intParam } from "./_params.ts";
import type { Attachment, PendingCommand } from "../../core/mod.ts";

let streams = 0;
import { commandView } from "./command_view.ts";
import { encodeSseComment, encodeSseEvent } from "./sse.ts";

/** Handles an SSE request for a device whose id the router validated. */
export function handleStream(
  ctx: ApiContext,
  req: Request,
  url: URL,
  deviceId: string,
): Response {
  const principal = ctx.authorize(req, url, deviceId);
  if (principal instanceof Response) return principal;
  const after = intParam(req.headers.get("last-event-id")) ??
    intParam(url.searchParams.get("after")) ?? 0;
  if (Number.isNaN(after)) {
    return ctx.fail("invalid-parameter", url, {
      detail: "Last-Event-ID and after must be command ids (integers >= 0)",
    });
  }
  if (ctx.closing.aborted) return ctx.fail("unavailable", url, { detail: "Shutting down" });
  const { port, opts, commands } = ctx;
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let last = after;
  let ended = false;
  let heartbeat: number | undefined;
  const backlogLimit = commands.limits.maxPerDevice * 2 + 2;

  const end = (close: boolean) => {
    if (ended) return;
    ended = true;
    stop?.();
    attachment?.detach();
    if (heartbeat !== undefined) port.clock.clearTimeout(heartbeat);
    ctx.closing.removeEventListener("abort", onClose);
    if (close) {
      try {
        controller.close();
      } catch { /* already closed or errored */ }
    }
  };
  const push = (chunk: Uint8Array) => {
    if (ended) return;
    if ((controller.desiredSize ?? 0) < -backlogLimit) {
      // The client does not read: drop it rather than buffer without bound.
      port.stats.drop("slow_consumer");
      ctx.log.warn("SSE client not reading: stream closed", { device: deviceId });
      end(true);
      return;
    }
    controller.enqueue(chunk);
  };
  const send = (cmd: PendingCommand) => {
    if (ended || cmd.seq <= last || !commands.claim(cmd)) return;
    last = cmd.seq;
    port.stats.delivered();
    push(encodeSseEvent({ id: cmd.seq, event: "command", data: JSON.stringify(commandView(cmd)) }));
  };
  const beat = () => {
    heartbeat = port.clock.setTimeout(() => {
      ctx.seen(deviceId);
      push(encodeSseComment("heartbeat"));
      if (!ended) beat();
    }, opts.sseHeartbeatMs);
  };
  const onClose = () => end(true);
  // Declared before `end` may run (a revocation during `port.attach` ends the stream at once).
  // deno-lint-ignore prefer-const
  let attachment: Attachment | undefined;
  const stop = ctx.listen(deviceId, (cmd) => send(cmd));
  if (!stop) {
    return ctx.fail("too-many-waiters", url, {
      detail: `Device ${deviceId} already has ${opts.maxWaitersPerDevice} open waits`,
      headers: { "retry-after": "1" },
      extensions: { limit: opts.maxWaitersPerDevice },
    });
  }
  // Removing or rotating the device (its credentials) ends the stream at once, on every
  // protocol alike: the stream is attached to the identity it was opened with.
  attachment = port.attach(principal, {
    sessionId: `http-sse-${++streams}`,
    protocol: port.protocol,
    close: (reason) => {
      port.throttled.info(`revoked:${deviceId}`, "SSE stream closed", {
        device: deviceId,
        reason: reason.code,
      });
      end(true);
    },
  }, false);
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      c.enqueue(encodeSseComment(`commands of ${deviceId}`, 2000));
      for (const cmd of commands.pending(deviceId, after)) send(cmd);
      ctx.closing.addEventListener("abort", onClose, { once: true });
      beat();
    },
    cancel() {
      end(false);
    },
  });
  return new Response(stream, {
    headers: {
      "content-type": "text/event-stream",
      "cache-control": "no-store",
      "x-accel-buffering": "no",
    },
  });
}
