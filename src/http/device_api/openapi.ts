/**
 * The OpenAPI 3.1 description of the HTTP device API, served at `/api/v1/openapi.json`. Limits in
 * the text come from the running options; the problem types come from {@link PROBLEMS}.
 *
 * @module
 */

import type { CommandStoreLimits } from "../../core/mod.ts";
import { PROBLEMS, type ProblemSlug, problemType } from "./problem.ts";
import type { ResolvedDeviceApiOptions } from "./options.ts";

type Json = Record<string, unknown>;

const ref = (name: string): Json => ({ $ref: `#/components/responses/${name}` });

/** Responses shared by every device operation. */
const COMMON: Record<string, Json> = {
  "400": ref("BadRequest"),
  "401": ref("Unauthorized"),
  "403": ref("Forbidden"),
  "429": ref("TooManyRequests"),
  "503": ref("Unavailable"),
};

function problemResponse(description: string, slugs: ProblemSlug[], headers?: Json): Json {
  return {
    description: `${description} Problem types: ${slugs.map((s) => problemType(s)).join(", ")}.`,
    ...(headers ? { headers } : {}),
    content: { "application/problem+json": { schema: { $ref: "#/components/schemas/Problem" } } },
  };
}

const RETRY_AFTER = {
  "Retry-After": {
    description: "Seconds to wait before retrying.",
    schema: { type: "integer", minimum: 1 },
  },
};

/**
 * Builds the document.
 *
 * @example
 * ```ts
 * import { defaultDeviceApiOptions } from "./options.ts";
 * import { openApiDocument } from "./openapi.ts";
 * const limits = { maxPerDevice: 32, ttlMs: 86_400_000, maxDevices: 10_000 };
 * const doc = openApiDocument(defaultDeviceApiOptions, limits) as { openapi: string; paths: Record<string, unknown> };
 * if (doc.openapi !== "3.1.0" || !doc.paths["/api/v1/devices/{id}/telemetry"]) throw new Error();
 * ```
 */
export function openApiDocument(
  o: Readonly<ResolvedDeviceApiOptions>,
  commands: Readonly<CommandStoreLimits>,
): Json {
  const id = {
    name: "id",
    in: "path",
    required: true,
    description: "Device id.",
    schema: { type: "string", pattern: "^[A-Za-z0-9._:-]{1,64}$" },
  };
  const telemetry = (withChannel: boolean): Json => ({
    post: {
      operationId: withChannel ? "postChannelTelemetry" : "postTelemetry",
      summary: withChannel ? "Send telemetry on a channel" : "Send telemetry",
      description:
        `Publishes the body on \`devices/{id}/telemetry${withChannel ? "/{channel}" : ""}\`. ` +
        `Any bytes are one message, except batches: a JSON array (\`application/json\`, unless ` +
        `\`?batch=false\`) or NDJSON (\`application/x-ndjson\`), one message per element or ` +
        `line, at most ${o.maxBatch}, accepted or refused as a whole. 202 is sent only once ` +
        `every message is accepted (and durable when a spool is configured). Bodies over ` +
        `${o.maxBodyBytes} bytes get 413; a body not complete within ${o.bodyTimeoutMs} ms ` +
        `gets 408 and the response is aborted.`,
      parameters: [
        id,
        ...(withChannel
          ? [{
            name: "channel",
            in: "path",
            required: true,
            schema: { type: "string", pattern: "^[a-z0-9_-]{0,64}$" },
          }]
          : []),
        {
          name: "batch",
          in: "query",
          required: false,
          description: "`false` sends a JSON array as one message.",
          schema: { type: "string", enum: ["true", "false"] },
        },
      ],
      requestBody: {
        required: true,
        content: {
          "application/json": { schema: {} },
          "application/x-ndjson": { schema: { type: "string" } },
          "application/cbor": { schema: { type: "string", contentEncoding: "binary" } },
          "text/plain": { schema: { type: "string" } },
          "*/*": { schema: { type: "string", contentEncoding: "binary" } },
        },
      },
      responses: {
        "202": {
          description: "Accepted (durable when a spool is configured).",
          content: {
            "application/json": {
              schema: {
                type: "object",
                required: ["accepted"],
                properties: { accepted: { type: "integer", minimum: 1 } },
              },
            },
          },
        },
        ...COMMON,
        "408": ref("RequestTimeout"),
        "413": ref("PayloadTooLarge"),
      },
    },
  });
  return {
    openapi: "3.1.0",
    info: {
      title: "Ferry HTTP device API",
      version: "1.0.0",
      description: "Telemetry uplink, command downlink (long-poll and Server-Sent Events) and " +
        "command acknowledgements for devices that speak HTTP. Authenticate with " +
        "`Authorization: Bearer <device token>` (checked against the path's device) or " +
        "`Basic base64(id:token)`. Errors are RFC 9457 problem details with stable `type` URIs " +
        "under `https://ferry.dev/problems/`; unknown paths under `/api/v1/` get 404 " +
        "(`not-found`) and other methods 405 (`method-not-allowed`, with `Allow`). Every " +
        `authenticated request refreshes the device's presence; it goes offline after ` +
        `${o.idleTimeoutMs} ms without one.`,
    },
    servers: [{ url: "/" }],
    security: [{ bearerAuth: [] }, { basicAuth: [] }],
    paths: {
      "/api/v1/openapi.json": {
        get: {
          operationId: "getOpenApi",
          summary: "This document",
          security: [],
          responses: {
            "200": {
              description: "The OpenAPI document.",
              content: { "application/json": { schema: { type: "object" } } },
            },
          },
        },
      },
      "/api/v1/devices/{id}/telemetry": telemetry(false),
      "/api/v1/devices/{id}/telemetry/{channel}": telemetry(true),
      "/api/v1/devices/{id}/commands": {
        get: {
          operationId: "getCommands",
          summary: "Long-poll (or stream with SSE) pending commands",
          description: "Commands stay pending until acknowledged or expired " +
            `(${commands.ttlMs} ms; at most ${commands.maxPerDevice} per device, oldest dropped); ` +
            "a command another protocol handed to the device is not listed. " +
            "With `Accept: text/event-stream` the answer is an SSE stream: `event: command`, " +
            "`id:` the command id, `data:` the command JSON; it resumes after `Last-Event-ID`. " +
            `At most ${o.maxWaitersPerDevice} long-polls and streams per device at once.`,
          parameters: [
            id,
            {
              name: "timeout",
              in: "query",
              required: false,
              description: `Seconds to wait for a command (default ${o.longPollDefaultMs / 1000},` +
                ` at most ${o.longPollMaxMs / 1000}; 0 answers at once).`,
              schema: { type: "number", minimum: 0 },
            },
            {
              name: "after",
              in: "query",
              required: false,
              description: "Only commands with a greater id (the last id received).",
              schema: { type: "integer", minimum: 0 },
            },
            {
              name: "Last-Event-ID",
              in: "header",
              required: false,
              description: "SSE: resume after this command id.",
              schema: { type: "string" },
            },
          ],
          responses: {
            "200": {
              description: "Pending commands (JSON), or the SSE stream.",
              content: {
                "application/json": {
                  schema: {
                    type: "object",
                    required: ["commands"],
                    properties: {
                      commands: { type: "array", items: { $ref: "#/components/schemas/Command" } },
                    },
                  },
                },
                "text/event-stream": { schema: { type: "string" } },
              },
            },
            "204": { description: "No command arrived within the timeout." },
            ...COMMON,
          },
        },
      },
      "/api/v1/devices/{id}/commands/{name}/ack": {
        post: {
          operationId: "ackCommand",
          summary: "Acknowledge a command",
          description: "Publishes the body object (with `status`, default `ok`) on " +
            "`devices/{id}/acks/{name}` and stops the command being pending: the one with `id`, " +
            "else the oldest pending one of that name.",
          parameters: [id, {
            name: "name",
            in: "path",
            required: true,
            schema: { type: "string", pattern: "^[A-Za-z0-9._-]{1,64}$" },
          }],
          requestBody: {
            required: false,
            content: {
              "application/json": {
                schema: {
                  type: "object",
                  properties: {
                    status: { type: "string", default: "ok" },
                    id: { type: "integer", description: "Command id to acknowledge." },
                  },
                  additionalProperties: true,
                },
              },
            },
          },
          responses: {
            "202": {
              description: "Acknowledgement published.",
              content: {
                "application/json": {
                  schema: {
                    type: "object",
                    required: ["acked"],
                    properties: { acked: { type: ["integer", "null"] } },
                  },
                },
              },
            },
            ...COMMON,
            "408": ref("RequestTimeout"),
            "413": ref("PayloadTooLarge"),
          },
        },
      },
    },
    components: {
      securitySchemes: {
        bearerAuth: { type: "http", scheme: "bearer", description: "The device token." },
        basicAuth: { type: "http", scheme: "basic", description: "Device id and token." },
      },
      schemas: {
        Problem: {
          type: "object",
          description: "RFC 9457 problem details.",
          required: ["type", "title", "status"],
          properties: {
            type: {
              type: "string",
              format: "uri",
              enum: Object.keys(PROBLEMS).map((s) => problemType(s as ProblemSlug)),
            },
            title: { type: "string" },
            status: { type: "integer" },
            detail: { type: "string" },
            instance: { type: "string" },
            limit: { type: "integer", description: "The limit exceeded (413, 429 waiters)." },
            retryAfter: { type: "integer", description: "Seconds, as in Retry-After." },
            timeoutMs: { type: "integer", description: "The body deadline missed (408)." },
            accepted: {
              type: "integer",
              description: "Messages of a batch accepted before a spool failure (503).",
            },
          },
        },
        Command: {
          type: "object",
          required: ["id", "name", "ts", "expiresAt", "encoding", "payload"],
          properties: {
            id: { type: "integer", description: "Command id (cursor, SSE id, ack id)." },
            name: { type: "string" },
            ts: { type: "integer", description: "Published at (ms since the epoch)." },
            expiresAt: { type: "integer" },
            contentType: { type: "string" },
            encoding: { type: "string", enum: ["utf8", "base64"] },
            payload: { type: "string" },
          },
        },
      },
      responses: {
        BadRequest: problemResponse("Malformed request.", [
          "bad-request",
          "invalid-device-id",
          "invalid-channel",
          "invalid-command-name",
          "invalid-parameter",
          "invalid-batch",
        ]),
        Unauthorized: problemResponse("Missing or invalid credentials.", ["unauthorized"], {
          "WWW-Authenticate": { schema: { type: "string" } },
        }),
        Forbidden: problemResponse("Credentials of another device, or topic not allowed.", [
          "forbidden",
        ]),
        NotFound: problemResponse("No such resource.", ["not-found"]),
        MethodNotAllowed: problemResponse("Method not allowed.", ["method-not-allowed"], {
          Allow: { schema: { type: "string" } },
        }),
        RequestTimeout: problemResponse("Body not received in time.", ["request-timeout"]),
        PayloadTooLarge: problemResponse(
          `Body over ${o.maxBodyBytes} bytes, or more than ${o.maxBatch} messages.`,
          ["payload-too-large", "batch-too-large"],
        ),
        TooManyRequests: problemResponse(
          "Device rate limit, full pipeline, or too many open waits.",
          ["rate-limited", "overloaded", "too-many-waiters", "login-throttled"],
          RETRY_AFTER,
        ),
        Unavailable: problemResponse("Shutting down.", ["unavailable"], RETRY_AFTER),
      },
    },
  };
}
