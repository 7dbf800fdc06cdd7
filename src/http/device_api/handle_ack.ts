/**
 * `POST /api/v1/devices/{id}/commands/{name}/ack`: the device acknowledges a command. The body is
 * optional JSON: `{"status": "ok", "id": 12, ...}` (`status` defaults to `"ok"`; `id` picks the
 * command, else the oldest pending one of that name is acknowledged). The object is published,
 * with its `status`, on `devices/{id}/acks/{name}`, and the command stops being pending.
 *
 * @module
 */

import { ackTopic, type Draft } from "../../core/mod.ts";
import type { ApiContext } from "./_context.ts";
import { readBody } from "./body_reader.ts";

const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

/** Largest ack body (bytes). */
export const MAX_ACK_BYTES = 16_384;

/** Handles an ack for a device and command name the router validated. */
export async function handleAck(
  ctx: ApiContext,
  req: Request,
  url: URL,
  deviceId: string,
  name: string,
): Promise<Response> {
  const { port, opts } = ctx;
  const who = ctx.authorize(req, url, deviceId);
  if (who instanceof Response) return who;
  const topic = ackTopic(deviceId, name);
  if (!port.mayPublish(who, topic)) {
    return ctx.fail("forbidden", url, { detail: `Cannot publish to ${topic}` });
  }
  const limit = Math.min(MAX_ACK_BYTES, opts.maxBodyBytes);
  const body = await readBody(req, {
    maxBytes: limit,
    timeoutMs: opts.bodyTimeoutMs,
    deadlines: port.deadlines,
    signal: ctx.closing,
  });
  if (!body.ok) {
    if (body.reason === "too_large") {
      return ctx.fail("payload-too-large", url, {
        detail: `Cannot accept ack: more than the ${limit} byte limit`,
        extensions: { limit },
      });
    }
    if (body.reason === "timeout") {
      return ctx.fail("request-timeout", url, {
        detail: `Cannot accept ack: body not complete within ${opts.bodyTimeoutMs} ms`,
        extensions: { timeoutMs: opts.bodyTimeoutMs },
        headers: { connection: "close" },
      });
    }
    return ctx.fail("unavailable", url, { detail: "The request was aborted" });
  }
  let ack: Record<string, unknown> = {};
  if (body.bytes.byteLength > 0) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(decoder.decode(body.bytes));
    } catch (err) {
      return ctx.fail("bad-request", url, {
        detail: `Cannot parse ack body as JSON: ${(err as Error).message}`,
      });
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      return ctx.fail("bad-request", url, { detail: "Cannot accept ack: body is not an object" });
    }
    ack = parsed as Record<string, unknown>;
  }
  const status = ack.status ?? "ok";
  const id = ack.id;
  if (typeof status !== "string" || (id !== undefined && !Number.isSafeInteger(id))) {
    return ctx.fail("bad-request", url, {
      detail: "Cannot accept ack: status must be a string and id an integer command id",
    });
  }
  const draft: Draft = {
    topic,
    payload: encoder.encode(JSON.stringify({ ...ack, status })),
    qos: 1,
    retain: false,
    origin: `http:${deviceId}`,
    properties: { contentType: "application/json", payloadFormat: 1 },
  };
  const r = await port.publish(who, draft);
  if (!r.ok) return ctx.refused(r, url);
  const done = ctx.commands.ack(deviceId, name, id as number | undefined);
  return Response.json({ acked: done?.seq ?? null }, {
    status: 202,
    headers: { "cache-control": "no-store" },
  });
}
