/**
 * `POST /api/v1/devices/{id}/telemetry[/{channel}]`: one message, or a batch (JSON array or
 * NDJSON) accepted or refused as a whole. Answers 202 only after the core accepted every message
 * (and the accept hook, the spool, made it durable). Cheap refusals (rate limit, full pipeline,
 * declared length over the limit) come before the body is read.
 *
 * @module
 */

import { type Draft, type Identity, type Refusal, telemetryTopic } from "../../core/mod.ts";
import type { ApiContext } from "./_context.ts";
import { mediaType, splitBatch } from "./batch.ts";
import { readBody } from "./body_reader.ts";

const ACCEPTED_ONE = '{"accepted":1}';
const OVER_BUDGET: Refusal<"overloaded"> = Object.freeze({
  ok: false,
  reason: "overloaded",
  message: "Cannot accept body: the gateway's budget of payload bytes in flight is spent",
  retryAfterMs: 1000,
});
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
  const { port, opts } = ctx;
  const who = ctx.authorize(req, url, deviceId);
  if (who instanceof Response) return who;
  const topic = telemetryTopic(deviceId, channel);
  // Cheap refusals (ACL, rate, a full pipeline, shutting down) before the body is read.
  const early = port.check(who, topic);
  if (early) return ctx.refused(early, url);
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > opts.maxBodyBytes) {
    port.stats.drop("too_large");
    return ctx.fail("payload-too-large", url, {
      detail: `Cannot accept body: length ${declared} exceeds the ${opts.maxBodyBytes} byte limit`,
      extensions: { limit: opts.maxBodyBytes },
    });
  }
  const body = await readBody(req, {
    maxBytes: opts.maxBodyBytes,
    timeoutMs: opts.bodyTimeoutMs,
    deadlines: port.deadlines,
    signal: ctx.closing,
    budget: port.budget,
  });
  if (!body.ok) {
    switch (body.reason) {
      case "overloaded":
        port.stats.drop("payload_budget");
        return ctx.refused(OVER_BUDGET, url);
      case "too_large":
        port.stats.drop("too_large");
        return ctx.fail("payload-too-large", url, {
          detail: `Cannot accept body: more than the ${opts.maxBodyBytes} byte limit`,
          extensions: { limit: opts.maxBodyBytes },
        });
      case "timeout":
        port.throttled.warn("body_timeout", "request body timed out", {
          device: deviceId,
          received: body.received,
        });
        return ctx.fail("request-timeout", url, {
          detail: `Cannot accept body: not complete within ${opts.bodyTimeoutMs} ms`,
          extensions: { timeoutMs: opts.bodyTimeoutMs },
          headers: { connection: "close" },
        });
      case "aborted":
        return ctx.fail("unavailable", url, {
          detail: ctx.closing.aborted ? "The gateway is shutting down" : "The request was aborted",
        });
    }
  }
  try {
    return await publishBody(ctx, req, url, who, topic, deviceId, body.bytes);
  } finally {
    port.budget.give(body.reserved); // accepted or refused: the pipeline now counts what it holds
  }
}

/** Splits a received body into messages and publishes them as one batch. */
async function publishBody(
  ctx: ApiContext,
  req: Request,
  url: URL,
  who: Identity,
  topic: string,
  deviceId: string,
  bytes: Uint8Array,
): Promise<Response> {
  const { port, opts } = ctx;
  const body = { bytes };
  port.stats.bytesIn(body.bytes.byteLength);
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
  const make = (payload: Uint8Array, type: string | undefined): Draft => ({
    topic,
    payload,
    qos: 1,
    retain: false,
    origin: `http:${deviceId}`,
    properties: type
      ? { contentType: type, payloadFormat: TEXTUAL.test(mediaType(type)) ? 1 : 0 }
      : undefined,
  });
  const msgs = split.kind === "batch"
    ? split.items.map((p) => make(p, "application/json"))
    : [make(body.bytes, contentType)];
  // Accepted once the core took every message (and the spool, if any, stored them). A batch
  // refused part way says how many got in, so a retry is known to repeat them.
  if (msgs.length === 1) {
    const r = await port.publish(who, msgs[0]);
    if (!r.ok) return ctx.refused(r, url);
  } else {
    const r = await port.publishAll(who, msgs);
    if (!r.ok) {
      if (r.accepted > 0) {
        ctx.log.warn("telemetry batch refused part way", {
          device: deviceId,
          accepted: r.accepted,
        });
      }
      return ctx.refused(r, url, { accepted: r.accepted });
    }
  }
  // The hot path: a plain string body and one header are cheaper than Response.json.
  return new Response(msgs.length === 1 ? ACCEPTED_ONE : `{"accepted":${msgs.length}}`, {
    status: 202,
    headers: JSON_HEADERS,
  });
}
