/**
 * The management API's part of the OpenAPI 3.1 document served at `/api/v1/openapi.json`: its
 * routes, schemas and responses, merged into the device API's document (or a document of their
 * own when the device API is off).
 *
 * @module
 */

import { addHistoryOpenApi } from "./history_openapi.ts";
import { addSessionPaths } from "./openapi_sessions.ts";
import { rulesOpenApi } from "./rules_api.ts";

type Json = Record<string, unknown>;

const err = (description: string, headers?: Json): Json => ({
  description,
  ...(headers ? { headers } : {}),
  content: { "application/json": { schema: { $ref: "#/components/schemas/AdminError" } } },
});
const r = (name: string): Json => ({ $ref: `#/components/responses/${name}` });
const s = (name: string): Json => ({ $ref: `#/components/schemas/${name}` });

/** Responses of every management call. */
const COMMON: Json = { "400": r("AdminBadRequest"), "401": r("AdminUnauthorized") };
/** And of a state-changing one (CSRF guard, ACL). */
const CHANGE: Json = {
  ...COMMON,
  "403": r("AdminForbidden"),
  "415": r("AdminUnsupportedMediaType"),
};
const SECURITY = [{ serviceBasic: [] }, { dashboardSession: [] }];

const ID_PARAM: Json = {
  name: "id",
  in: "path",
  required: true,
  description: "Device id (1..64 characters of `[A-Za-z0-9._:-]`).",
  schema: { type: "string", pattern: "^[A-Za-z0-9._:-]{1,64}$" },
};

const EMPTY_JSON_BODY: Json = {
  required: true,
  description: "`{}`: the JSON content type is what the CSRF guard asks of a state-changing call.",
  content: { "application/json": { schema: { type: "object" } } },
};

/**
 * The document with the management routes added to `base` (the device API's document, whose
 * `/api/v1/openapi.json` entry it keeps).
 *
 * @example
 * ```ts
 * import { adminOpenApi } from "./openapi.ts";
 * const doc = adminOpenApi(undefined, { maxLimit: 1000, defaultLimit: 100 }) as { paths: Record<string, unknown> };
 * if (!doc.paths["/api/v1/admin/devices"] || !doc.paths["/api/v1/openapi.json"]) throw new Error();
 * ```
 */
export function adminOpenApi(
  base: Json | undefined,
  limits: { maxLimit: number; defaultLimit: number },
): Json {
  const doc: Json = base ?? {
    openapi: "3.1.0",
    info: { title: "Ferry HTTP API", version: "1.0.0" },
    servers: [{ url: "/" }],
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
    },
    components: {},
  };
  const info = doc.info as Json;
  info.description = `${info.description ?? ""}\n\nManagement API (\`/api/v1/admin/\`): ` +
    "service accounts (HTTP Basic with the account's name and token, or a dashboard session " +
    "cookie), judged by the account's ACL: a device is visible when the account's subscribe " +
    "filters reach under `devices/{id}/`; add, rotate, remove and disconnect need its publish " +
    "filters to match `$ferry/admin/devices/{id}`; service accounts need `$ferry/admin/accounts`, " +
    "client sessions `$ferry/admin/sessions`. State-changing calls must be " +
    "`Content-Type: application/json` and, from a browser, same-origin.";
  const paths = doc.paths as Json;
  paths["/api/v1/admin/devices"] = {
    get: {
      operationId: "adminListDevices",
      summary: "List devices (cursor paging, filters, sort)",
      security: SECURITY,
      parameters: [
        {
          name: "limit",
          in: "query",
          description: `Page size (default ${limits.defaultLimit}).`,
          schema: { type: "integer", minimum: 1, maximum: limits.maxLimit },
        },
        {
          name: "cursor",
          in: "query",
          description: "`nextCursor` of the previous page (same sort and order).",
          schema: { type: "string" },
        },
        {
          name: "prefix",
          in: "query",
          description: "Only ids starting with this.",
          schema: { type: "string" },
        },
        {
          name: "protocol",
          in: "query",
          description: "Only devices last seen on this protocol.",
          schema: { type: "string", enum: ["binary", "mqtt", "coap", "http"] },
        },
        {
          name: "state",
          in: "query",
          schema: { type: "string", enum: ["online", "offline"] },
        },
        {
          name: "sort",
          in: "query",
          description: "Sort key (ties by id).",
          schema: { type: "string", enum: ["id", "lastSeen"], default: "id" },
        },
        {
          name: "order",
          in: "query",
          description: "Default: asc for id, desc for lastSeen.",
          schema: { type: "string", enum: ["asc", "desc"] },
        },
      ],
      responses: {
        "200": {
          description: "One page.",
          content: { "application/json": { schema: s("DevicePage") } },
        },
        ...COMMON,
      },
    },
    post: {
      operationId: "adminAddDevice",
      summary: "Register a device (registry file, live reload); its token is in the answer only",
      security: SECURITY,
      requestBody: {
        required: true,
        content: {
          "application/json": {
            schema: {
              type: "object",
              required: ["id"],
              properties: { id: { type: "string", pattern: "^[A-Za-z0-9._:-]{1,64}$" } },
            },
          },
        },
      },
      responses: {
        "201": {
          description: "Added; the token is shown once.",
          headers: { Location: { schema: { type: "string" } } },
          content: { "application/json": { schema: s("DeviceToken") } },
        },
        ...CHANGE,
        "409": r("AdminConflict"),
        "501": r("AdminNoRegistry"),
      },
    },
  };
  paths["/api/v1/admin/devices/{id}"] = {
    parameters: [ID_PARAM],
    get: {
      operationId: "adminGetDevice",
      summary: "One device",
      security: SECURITY,
      responses: {
        "200": {
          description: "The device.",
          content: { "application/json": { schema: s("DeviceDetail") } },
        },
        ...COMMON,
        "404": r("AdminNotFound"),
      },
    },
    delete: {
      operationId: "adminRemoveDevice",
      summary: "Remove a device from the registry; its sessions and streams close at once",
      security: SECURITY,
      responses: {
        "204": { description: "Removed." },
        ...CHANGE,
        "404": r("AdminNotFound"),
        "409": r("AdminConflict"),
        "501": r("AdminNoRegistry"),
      },
    },
  };
  paths["/api/v1/admin/devices/{id}/rotate"] = {
    parameters: [ID_PARAM],
    post: {
      operationId: "adminRotateDevice",
      summary: "New token; the old one stops working and its sessions close",
      security: SECURITY,
      requestBody: EMPTY_JSON_BODY,
      responses: {
        "200": {
          description: "Rotated; the token is shown once.",
          content: { "application/json": { schema: s("DeviceToken") } },
        },
        ...CHANGE,
        "404": r("AdminNotFound"),
        "409": r("AdminConflict"),
        "501": r("AdminNoRegistry"),
      },
    },
  };
  paths["/api/v1/admin/devices/{id}/disconnect"] = {
    parameters: [ID_PARAM],
    post: {
      operationId: "adminDisconnectDevice",
      summary: "Close the device's live session (MQTT 5: DISCONNECT 0x98); it may reconnect",
      security: SECURITY,
      requestBody: EMPTY_JSON_BODY,
      responses: {
        "202": {
          description: "The session is closing.",
          content: {
            "application/json": {
              schema: {
                type: "object",
                required: ["id", "disconnected", "protocol"],
                properties: {
                  id: { type: "string" },
                  disconnected: { type: "boolean", const: true },
                  protocol: { type: "string" },
                },
              },
            },
          },
        },
        ...CHANGE,
        "409": r("AdminConflict"),
      },
    },
  };

  paths["/api/v1/admin/devices/{id}/commands"] = {
    parameters: [ID_PARAM],
    get: {
      operationId: "adminListCommands",
      summary: "Commands kept for the device (those the account may subscribe to)",
      security: SECURITY,
      responses: {
        "200": {
          description: "Oldest first.",
          content: {
            "application/json": {
              schema: {
                type: "object",
                required: ["items"],
                properties: { items: { type: "array", items: s("PendingCommand") } },
              },
            },
          },
        },
        ...COMMON,
        "404": r("AdminNotFound"),
      },
    },
  };
  paths["/api/v1/admin/devices/{id}/acks"] = {
    parameters: [ID_PARAM],
    get: {
      operationId: "adminListAcks",
      summary:
        "The device's recent command acks (devices/{id}/acks/{name}, any protocol; the last 16 kept per device), those the account may subscribe to",
      security: SECURITY,
      responses: {
        "200": {
          description: "Newest first.",
          content: {
            "application/json": {
              schema: {
                type: "object",
                required: ["items"],
                properties: {
                  items: {
                    type: "array",
                    items: {
                      type: "object",
                      required: ["name", "topic", "ts", "protocol", "size", "encoding", "payload"],
                      properties: {
                        name: { type: "string" },
                        topic: { type: "string" },
                        ts: { type: "integer", description: "ms since the epoch" },
                        protocol: { type: "string" },
                        size: { type: "integer" },
                        encoding: { type: "string", enum: ["utf8", "base64"] },
                        payload: { type: "string", description: "at most 4,096 bytes of it" },
                      },
                    },
                  },
                },
              },
            },
          },
        },
        ...COMMON,
        "404": r("AdminNotFound"),
      },
    },
  };
  paths["/api/v1/admin/devices/{id}/commands/{name}"] = {
    parameters: [ID_PARAM, {
      name: "name",
      in: "path",
      required: true,
      description: "Command name (1..64 characters of `[A-Za-z0-9._-]`).",
      schema: { type: "string", pattern: "^[A-Za-z0-9._-]{1,64}$" },
    }],
    post: {
      operationId: "adminSendCommand",
      summary: "Publish a command (QoS 1) on devices/{id}/commands/{name}, as the account",
      security: SECURITY,
      requestBody: {
        required: true,
        content: {
          "application/json": {
            schema: {
              type: "object",
              properties: {
                data: { description: "A string is sent as is, anything else as its JSON." },
                contentType: { type: "string", description: "MIME type kept with the command." },
              },
            },
          },
        },
      },
      responses: {
        "202": {
          description: "Accepted by the gateway (delivered to subscribers, or kept).",
          content: {
            "application/json": {
              schema: {
                type: "object",
                required: ["sent", "topic", "pending"],
                properties: {
                  sent: { type: "boolean", const: true },
                  topic: { type: "string" },
                  pending: { type: "integer", description: "Commands now kept for the device." },
                },
              },
            },
          },
        },
        ...CHANGE,
        "503": r("AdminUnavailable"),
      },
    },
  };

  const NB_READ = "The account must be able to subscribe to `$ferry/admin/northbound`.";
  const NB_WRITE = "The account must be able to publish to `$ferry/admin/northbound`.";
  const noBridge = { "404": r("AdminNotFound"), "403": r("AdminForbidden") };
  paths["/api/v1/admin/northbound"] = {
    get: {
      operationId: "adminNorthbound",
      summary: "Bridges (link state, upstream) and the spool (depth, dead letters)",
      description: NB_READ,
      security: SECURITY,
      responses: {
        "200": {
          description: "The northbound now.",
          content: { "application/json": { schema: s("Northbound") } },
        },
        ...COMMON,
        ...noBridge,
      },
    },
  };
  paths["/api/v1/admin/northbound/dead-letters"] = {
    get: {
      operationId: "adminListDeadLetters",
      summary: "Dead letters, oldest first",
      description: NB_READ,
      security: SECURITY,
      parameters: [
        { name: "bridge", in: "query", schema: { type: "string" } },
        {
          name: "after",
          in: "query",
          description: "`nextAfter` of the previous page.",
          schema: { type: "integer", minimum: 0 },
        },
        {
          name: "limit",
          in: "query",
          schema: { type: "integer", minimum: 1, maximum: limits.maxLimit, default: 100 },
        },
      ],
      responses: {
        "200": {
          description: "One page.",
          content: {
            "application/json": {
              schema: {
                type: "object",
                required: ["items", "nextAfter"],
                properties: {
                  items: { type: "array", items: s("DeadLetter") },
                  nextAfter: { type: ["integer", "null"] },
                },
              },
            },
          },
        },
        ...COMMON,
        ...noBridge,
      },
    },
  };
  const idsBody: Json = {
    required: true,
    content: {
      "application/json": {
        schema: {
          type: "object",
          required: ["ids"],
          properties: {
            ids: { type: "array", minItems: 1, maxItems: 10000, items: { type: "integer" } },
          },
        },
      },
    },
  };
  for (
    const [verb, key, summary] of [
      ["retry", "retried", "Put dead letters back at the tail of their bridge's queue"],
      ["delete", "deleted", "Delete dead letters"],
    ] as const
  ) {
    paths[`/api/v1/admin/northbound/dead-letters/${verb}`] = {
      post: {
        operationId: verb === "retry" ? "adminRetryDeadLetters" : "adminDeleteDeadLetters",
        summary,
        description: NB_WRITE,
        security: SECURITY,
        requestBody: idsBody,
        responses: {
          "200": {
            description: "How many.",
            content: {
              "application/json": {
                schema: {
                  type: "object",
                  required: [key],
                  properties: { [key]: { type: "integer" } },
                },
              },
            },
          },
          ...CHANGE,
          "404": r("AdminNotFound"),
        },
      },
    };
  }

  paths["/api/v1/admin/retained"] = {
    get: {
      operationId: "adminListRetained",
      summary: "Retained messages matching a filter (those the account may subscribe to)",
      security: SECURITY,
      parameters: [
        {
          name: "filter",
          in: "query",
          description: "An MQTT topic filter (default `#`).",
          schema: { type: "string" },
        },
        {
          name: "after",
          in: "query",
          description: "`nextAfter` of the previous page (a topic).",
          schema: { type: "string" },
        },
        {
          name: "limit",
          in: "query",
          schema: { type: "integer", minimum: 1, maximum: limits.maxLimit },
        },
      ],
      responses: {
        "200": {
          description: "One page, in topic order.",
          content: {
            "application/json": {
              schema: {
                type: "object",
                required: ["items", "total", "nextAfter"],
                properties: {
                  items: {
                    type: "array",
                    items: {
                      type: "object",
                      required: ["topic", "qos", "size", "ts", "deviceId", "encoding", "payload"],
                      properties: {
                        topic: { type: "string" },
                        qos: { type: "integer", enum: [0, 1, 2] },
                        size: { type: "integer" },
                        ts: { type: "integer" },
                        deviceId: { type: ["string", "null"] },
                        encoding: { type: "string", enum: ["utf8", "base64"] },
                        payload: { type: "string" },
                      },
                    },
                  },
                  total: { type: "integer" },
                  nextAfter: { type: ["string", "null"] },
                },
              },
            },
          },
        },
        ...COMMON,
      },
    },
    delete: {
      operationId: "adminClearRetained",
      summary: "Clear the retained message of a topic (an empty retained publish, as the account)",
      security: SECURITY,
      parameters: [{
        name: "topic",
        in: "query",
        required: true,
        schema: { type: "string" },
      }],
      responses: {
        "204": { description: "Cleared." },
        ...CHANGE,
        "404": r("AdminNotFound"),
        "503": r("AdminUnavailable"),
      },
    },
  };

  // Service accounts, client sessions and subscriptions (openapi_sessions.ts).
  addSessionPaths(doc, limits);

  const components = (doc.components ??= {}) as Json;
  const schemes = (components.securitySchemes ??= {}) as Json;
  schemes.serviceBasic = {
    type: "http",
    scheme: "basic",
    description: "A service account's name and token.",
  };
  schemes.dashboardSession = {
    type: "apiKey",
    in: "cookie",
    name: "ferry_session",
    description: "The dashboard's session cookie (HttpOnly, SameSite=Strict).",
  };
  const schemas = (components.schemas ??= {}) as Json;
  const device = {
    id: { type: "string" },
    protocol: { type: ["string", "null"], description: "Protocol of the last session/request." },
    state: { type: "string", enum: ["online", "offline"] },
    lastSeen: { type: ["integer", "null"], description: "ms since the epoch; null: never." },
    registered: { type: "boolean", description: "Has credentials (config or registry file)." },
    messagesIn: { type: "integer" },
    messagesOut: { type: "integer" },
    errors: { type: "integer" },
  };
  const required = Object.keys(device);
  schemas.DeviceSummary = { type: "object", required, properties: device };
  schemas.DeviceDetail = {
    type: "object",
    required: [...required, "connected", "session", "remoteAddress", "pendingCommands"],
    properties: {
      ...device,
      connected: { type: "boolean" },
      session: {
        description: "The live session; null when not connected (CoAP and HTTP have none).",
        oneOf: [
          { type: "null" },
          {
            type: "object",
            required: [
              "id",
              "protocol",
              "remoteAddress",
              "protocolVersion",
              "keepAliveSec",
              "connectedAt",
              "clientId",
              "subscriptions",
            ],
            properties: {
              id: { type: "string" },
              protocol: { type: "string" },
              remoteAddress: { type: ["string", "null"], description: "host:port of the peer." },
              protocolVersion: {
                type: ["string", "null"],
                description: "`5`, `3.1.1`, `3.1` (MQTT); `1` (FBP/1).",
              },
              keepAliveSec: { type: ["integer", "null"], description: "In effect (0: none)." },
              connectedAt: { type: ["integer", "null"], description: "ms since the epoch." },
              clientId: { type: ["string", "null"], description: "MQTT client id." },
              subscriptions: {
                description: "With their QoS; null where the protocol has none (FBP/1).",
                oneOf: [{ type: "null" }, { type: "array", items: s("Subscription") }],
              },
            },
          },
        ],
      },
      remoteAddress: {
        type: ["string", "null"],
        description:
          "The live connection's peer (`host:port`), else the last request's (CoAP: `host:port`, HTTP: host); null if unknown.",
      },
      pendingCommands: { type: "integer", description: "Commands kept for the device." },
    },
  };
  schemas.DevicePage = {
    type: "object",
    required: ["items", "total", "nextCursor"],
    properties: {
      items: { type: "array", items: s("DeviceSummary") },
      total: { type: "integer", description: "Devices matching the filters." },
      nextCursor: { type: ["string", "null"], description: "null on the last page." },
    },
  };
  schemas.DeviceToken = {
    type: "object",
    required: ["id", "token"],
    properties: { id: { type: "string" }, token: { type: "string" } },
  };
  schemas.PendingCommand = {
    type: "object",
    required: ["id", "name", "ts", "expiresAt", "encoding", "payload", "claimedBy"],
    properties: {
      id: { type: "integer" },
      name: { type: "string" },
      ts: { type: "integer", description: "Published at (ms since the epoch)." },
      expiresAt: { type: "integer" },
      contentType: { type: "string" },
      encoding: { type: "string", enum: ["utf8", "base64"] },
      payload: { type: "string" },
      claimedBy: {
        type: ["string", "null"],
        description: "The protocol delivering it (sent, not yet acknowledged), or null.",
      },
    },
  };
  schemas.Northbound = {
    type: "object",
    required: ["bridges", "spool"],
    properties: {
      bridges: {
        type: "array",
        items: {
          type: "object",
          required: ["name", "state", "upstream"],
          properties: {
            name: { type: "string" },
            state: {
              type: "string",
              enum: ["idle", "connecting", "replaying", "live", "backing_off", "closed"],
            },
            upstream: { type: "string", description: "The upstream URL (no credentials)." },
          },
        },
      },
      spool: {
        type: "object",
        required: ["messages", "bytes", "maxBytes", "deadLetters", "deadLetterBytes"],
        properties: {
          messages: { type: "integer" },
          bytes: { type: "integer" },
          maxBytes: { type: "integer" },
          deadLetters: { type: "integer" },
          deadLetterBytes: { type: "integer" },
        },
      },
    },
  };
  schemas.DeadLetter = {
    type: "object",
    required: [
      "id",
      "bridge",
      "topic",
      "deviceId",
      "qos",
      "retain",
      "size",
      "encoding",
      "payload",
      "ts",
      "reason",
      "detail",
      "deadAt",
    ],
    properties: {
      id: { type: "integer" },
      bridge: { type: "string" },
      topic: { type: "string", description: "Local topic." },
      deviceId: { type: ["string", "null"] },
      qos: { type: "integer", enum: [0, 1, 2] },
      retain: { type: "boolean" },
      size: { type: "integer" },
      encoding: { type: "string", enum: ["utf8", "base64"] },
      payload: { type: "string" },
      ts: { type: "integer", description: "Accepted at (ms since the epoch)." },
      reason: {
        type: "string",
        description:
          "too_large, link_dropped, rejected, checksum; a rule's (bridge rule:{name}): rule_throw, rule_timeout, rule_too_large, rule_crash, rule_overloaded, rule_disabled, rule_shutdown.",
      },
      detail: { type: ["string", "null"] },
      deadAt: { type: "integer" },
    },
  };
  schemas.AdminError = {
    type: "object",
    required: ["error"],
    properties: { error: { type: "string" } },
  };
  addHistoryOpenApi(paths, schemas);
  // The rules routes (rules_api.ts).
  rulesOpenApi(paths, schemas, r, SECURITY);
  const responses = (components.responses ??= {}) as Json;
  responses.AdminBadRequest = err("Malformed parameter, path or body.");
  responses.AdminUnauthorized = err(
    "No or wrong credentials (429 with Retry-After when throttled).",
    {
      "WWW-Authenticate": { schema: { type: "string" } },
    },
  );
  responses.AdminForbidden = err(
    "The account's ACL does not allow it, or a cross-origin browser call.",
  );
  responses.AdminUnsupportedMediaType = err("Not Content-Type: application/json (CSRF guard).");
  responses.AdminNotFound = err(
    "No such device, account or session (or not visible to the account).",
  );
  responses.AdminConflict = err(
    "Exists already (add), defined in the config rather than the registry file, or not connected (disconnect).",
  );
  responses.AdminNoRegistry = err("The gateway has no registry file.");
  responses.AdminUnavailable = err("The gateway could not take the message now (Retry-After).", {
    "Retry-After": { schema: { type: "integer" } },
  });
  return doc;
}
