/**
 * `POST /api/v1/devices/{id}/telemetry[/{channel}]`: one message, or a batch (JSON array or
 * NDJSON) accepted or refused as a whole. Answers 202 only after the core accepted every message
 * (and the accept hook, the spool, made it durable). Cheap refusals (rate limit, full pipeline,
 * declared length over the limit) come before the body is read.
 *
 * @module
 */

import { canPublish } from "../../core/acl.ts";
import { createMessage, type Message } from "../../core/message.ts";
import { telemetryTopic } from "../../core/topics.ts";
import type { ApiContext } from "./_context.ts";
import { mediaType, splitBatch } from "./batch.ts";
import { abortingResponse } from "./_aborting_response.ts";
import { readBody } from "./body_reader.ts";

const ACCEPTED_ONE = '{"accepted":1}';
const JSON_HEADERS: HeadersInit = [["content-type", "application/json"]];

const TEXTUAL = /^(text\/|application\/(json|x-ndjson|ndjson|jsonl|xml)$|.*\+json$|.*\+xml$)/;

/** Handles a telemetry POST for a device whose id (and channel) the router validated. */
export async function handleTelemetry(
  ctx: ApiContext,
  req: Request,
  url: URL,
  deviceId: string,
  channel: string | undefined,
): Promise<Response> {
  const { core, opts } = ctx;
  const principal = ctx.authorize(req, url, deviceId);
  if (principal instanceof Response) return principal;
  const topic = telemetryTopic(deviceId, channel);
  if (!canPublish(principal, topic)) {
    return ctx.fail("forbidden", url, { detail: `Cannot publish to ${topic}` });
  }
  if (ctx.limiter && !ctx.limiter.hasToken(deviceId)) {
    core.stats.drops.inc({ protocol: "http", reason: "rate_limited" });
    const retry = ctx.limiter.take(deviceId, 1);
    const after = retry.ok ? 1 : retry.retryAfterSec;
    return ctx.fail("rate-limited", url, {
      detail: `Device ${deviceId} exceeds ${ctx.limiter.ratePerSec} messages/s`,
      headers: { "retry-after": String(after) },
      extensions: { retryAfter: after },
    });
  }
  if (!core.pipeline.hasRoom) return overloaded(ctx, url);
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > opts.maxBodyBytes) {
    core.stats.drops.inc({ protocol: "http", reason: "too_large" });
    return ctx.fail("payload-too-large", url, {
      detail: `Cannot accept body: length ${declared} exceeds the ${opts.maxBodyBytes} byte limit`,
      extensions: { limit: opts.maxBodyBytes },
    });
  }
  const body = await readBody(req, {
    maxBytes: opts.maxBodyBytes,
    timeoutMs: opts.bodyTimeoutMs,
    deadlines: core.deadlines,
    signal: ctx.closing,
  });
  if (!body.ok) {
    switch (body.reason) {
      case "too_large":
        core.stats.drops.inc({ protocol: "http", reason: "too_large" });
        return ctx.fail("payload-too-large", url, {
          detail: `Cannot accept body: more than the ${opts.maxBodyBytes} byte limit`,
          extensions: { limit: opts.maxBodyBytes },
        });
      case "timeout":
        ctx.log.warn("request body timed out", { device: deviceId, received: body.received });
        return abortingResponse(ctx.fail("request-timeout", url, {
          detail: `Cannot accept body: not complete within ${opts.bodyTimeoutMs} ms`,
          extensions: { timeoutMs: opts.bodyTimeoutMs },
        }));
      case "aborted":
        return ctx.fail("unavailable", url, {
          detail: ctx.closing.aborted ? "The gateway is shutting down" : "The request was aborted",
        });
    }
  }
  core.stats.bytesIn.inc(ctx.labels, body.bytes.byteLength);
  const contentType = req.headers.get("content-type") ?? undefined;
  const split = splitBatch(body.bytes, contentType ?? null, {
    maxBatch: opts.maxBatch,
    arrayIsBatch: url.searchParams.get("batch") !== "false",
  });
  if (split.kind === "error") {
    return ctx.fail(split.slug, url, {
      detail: split.detail,
      ...(split.slug === "batch-too-large" ? { extensions: { limit: opts.maxBatch } } : {}),
    });
  }
  const now = core.clock.now();
  const make = (payload: Uint8Array, type: string | undefined): Message =>
    createMessage({
      topic,
      payload,
      qos: 1,
      ts: now,
      protocol: "http",
      deviceId,
      origin: `http:${deviceId}`,
      ...(type
        ? {
          properties: { contentType: type, payloadFormat: TEXTUAL.test(mediaType(type)) ? 1 : 0 },
        }
        : {}),
    });
  const msgs = split.kind === "batch"
    ? split.items.map((p) => make(p, "application/json"))
    : [make(body.bytes, contentType)];
  if (ctx.limiter) {
    const t = ctx.limiter.take(deviceId, msgs.length);
    if (!t.ok) {
      core.stats.drops.inc({ protocol: "http", reason: "rate_limited" }, msgs.length);
      return ctx.fail("rate-limited", url, {
        detail: `Device ${deviceId} exceeds ${ctx.limiter.ratePerSec} messages/s`,
        headers: { "retry-after": String(t.retryAfterSec) },
        extensions: { retryAfter: t.retryAfterSec },
      });
    }
  }
  let accepted = 0;
  try {
    if (msgs.length === 1) {
      if (!(await core.publishIfRoom(msgs[0]))) return overloaded(ctx, url);
    } else {
      const p = core.pipeline;
      if (!p.hasRoom || p.capacity - p.depth < msgs.length) {
        core.stats.drops.inc({ protocol: "http", reason: "overloaded" }, msgs.length);
        return overloaded(ctx, url);
      }
      // Room for all was checked: publish waits only if other producers raced in meanwhile.
      for (const m of msgs) {
        await core.publish(m, ctx.closing);
        accepted++;
      }
    }
  } catch (err) {
    // Only a failing accept hook (spool) or shutdown gets here. Messages of a batch accepted
    // before the failure cannot be taken back: say how many, so a retry is known to repeat them.
    ctx.log.warn("telemetry not accepted", { device: deviceId, accepted, error: err });
    return ctx.fail("unavailable", url, {
      detail: `Cannot accept telemetry: ${(err as Error)?.message ?? String(err)}`,
      headers: { "retry-after": String(opts.overloadRetryAfterSec) },
      extensions: { accepted },
    });
  }
  const rec = core.registry.device(deviceId);
  rec.messagesIn += msgs.length;
  // The hot path: a plain string body and one header are cheaper than Response.json.
  return new Response(msgs.length === 1 ? ACCEPTED_ONE : `{"accepted":${msgs.length}}`, {
    status: 202,
    headers: JSON_HEADERS,
  });
}

function overloaded(ctx: ApiContext, url: URL): Response {
  const after = ctx.opts.overloadRetryAfterSec;
  return ctx.fail("overloaded", url, {
    detail: "The gateway pipeline is full: retry later",
    headers: { "retry-after": String(after) },
    extensions: { retryAfter: after },
  });
}
