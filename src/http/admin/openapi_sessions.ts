/**
 * The OpenAPI part of the management API's service accounts (`accounts_api.ts`) and client
 * sessions and subscriptions (`sessions_api.ts`): paths and schemas added to the document that
 * `openapi.ts` builds.
 *
 * @module
 */

type Json = Record<string, unknown>;

const r = (name: string): Json => ({ $ref: `#/components/responses/${name}` });
const s = (name: string): Json => ({ $ref: `#/components/schemas/${name}` });
const SECURITY = [{ serviceBasic: [] }, { dashboardSession: [] }];
const COMMON: Json = { "400": r("AdminBadRequest"), "401": r("AdminUnauthorized") };
const CHANGE: Json = {
  ...COMMON,
  "403": r("AdminForbidden"),
  "415": r("AdminUnsupportedMediaType"),
};
const NAME = "^[A-Za-z0-9._:-]{1,64}$";
const ok = (description: string, schema: Json): Json => ({
  description,
  content: { "application/json": { schema } },
});

/**
 * Adds the accounts, sessions and subscriptions routes and their schemas to `doc` (whose
 * `components.responses` holds the shared `Admin…` responses).
 *
 * @example
 * ```ts
 * import { addSessionPaths } from "./openapi_sessions.ts";
 * const doc = { paths: {}, components: {} } as Record<string, any>;
 * addSessionPaths(doc, { maxLimit: 1000, defaultLimit: 100 });
 * if (!doc.paths["/api/v1/admin/sessions/{clientId}"].delete) throw new Error();
 * ```
 */
export function addSessionPaths(
  doc: Json,
  limits: { maxLimit: number; defaultLimit: number },
): void {
  const paths = doc.paths as Json;
  const limit: Json = {
    name: "limit",
    in: "query",
    description: `Page size (default ${limits.defaultLimit}).`,
    schema: { type: "integer", minimum: 1, maximum: limits.maxLimit },
  };
  const cursor: Json = {
    name: "cursor",
    in: "query",
    description: "`nextCursor` of the previous page (same filters).",
    schema: { type: "string" },
  };
  const protocol: Json = {
    name: "protocol",
    in: "query",
    description: "Only sessions of this protocol (those holding sessions by client id: `mqtt`).",
    schema: { type: "string" },
  };
  const ACC_READ = "The account must be able to subscribe to `$ferry/admin/accounts`.";
  const ACC_WRITE = "The account must be able to publish to `$ferry/admin/accounts/{name}`, " +
    "and hold (cover with its own filters) every filter it grants.";
  paths["/api/v1/admin/accounts"] = {
    get: {
      operationId: "adminListAccounts",
      summary: "Service accounts with their ACLs (the registry file's and the config's)",
      description: ACC_READ,
      security: SECURITY,
      responses: {
        "200": ok("Every account, by name.", {
          type: "object",
          required: ["items"],
          properties: { items: { type: "array", items: s("Account") } },
        }),
        ...COMMON,
        "403": r("AdminForbidden"),
        "501": r("AdminNoRegistry"),
      },
    },
    post: {
      operationId: "adminAddAccount",
      summary:
        "Add a service account (registry file, live reload); its token is in the answer only",
      description: ACC_WRITE,
      security: SECURITY,
      requestBody: {
        required: true,
        content: {
          "application/json": {
            schema: {
              type: "object",
              required: ["name"],
              properties: {
                name: { type: "string", pattern: NAME },
                publish: { type: "array", items: { type: "string" }, maxItems: 256 },
                subscribe: { type: "array", items: { type: "string" }, maxItems: 256 },
              },
            },
          },
        },
      },
      responses: {
        "201": {
          ...ok("Added; the token is shown once.", s("AccountToken")),
          headers: { Location: { schema: { type: "string" } } },
        },
        ...CHANGE,
        "409": r("AdminConflict"),
        "501": r("AdminNoRegistry"),
      },
    },
  };
  paths["/api/v1/admin/accounts/{name}"] = {
    parameters: [{
      name: "name",
      in: "path",
      required: true,
      schema: { type: "string", pattern: NAME },
    }],
    delete: {
      operationId: "adminRemoveAccount",
      summary: "Remove a service account of the registry file; its sessions close at once",
      description: ACC_WRITE,
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

  const SES_READ = "The account must be able to subscribe to `$ferry/admin/sessions`.";
  const SES_WRITE = "The account must be able to publish to `$ferry/admin/sessions`.";
  paths["/api/v1/admin/sessions"] = {
    get: {
      operationId: "adminListSessions",
      summary: "Client sessions (connected or persisted), by protocol and client id",
      description: SES_READ,
      security: SECURITY,
      parameters: [
        limit,
        cursor,
        protocol,
        {
          name: "prefix",
          in: "query",
          description: "Only client ids starting with this.",
          schema: { type: "string" },
        },
        {
          name: "connected",
          in: "query",
          description: "Only sessions carried by a connection now (true) or not (false).",
          schema: { type: "string", enum: ["true", "false"] },
        },
      ],
      responses: {
        "200": ok("One page.", {
          type: "object",
          required: ["items", "total", "nextCursor"],
          properties: {
            items: { type: "array", items: s("Session") },
            total: { type: "integer", description: "Sessions matching the filters." },
            nextCursor: { type: ["string", "null"], description: "null on the last page." },
          },
        }),
        ...COMMON,
        "403": r("AdminForbidden"),
      },
    },
  };
  const clientIdParam: Json = {
    name: "clientId",
    in: "path",
    required: true,
    description: "The client id, percent-encoded.",
    schema: { type: "string" },
  };
  paths["/api/v1/admin/sessions/{clientId}"] = {
    parameters: [clientIdParam, protocol],
    get: {
      operationId: "adminGetSession",
      summary: "One session, with its subscriptions",
      description: SES_READ,
      security: SECURITY,
      responses: {
        "200": ok("The session.", s("SessionDetail")),
        ...COMMON,
        "403": r("AdminForbidden"),
        "404": r("AdminNotFound"),
      },
    },
    delete: {
      operationId: "adminDropSession",
      summary:
        "Drop a session (subscriptions, queued messages, persisted state); a connected client is disconnected first (MQTT 5: DISCONNECT 0x98)",
      description: SES_WRITE,
      security: SECURITY,
      responses: {
        "200": ok("Dropped; the next connect with the id finds no session.", {
          type: "object",
          required: ["clientId", "protocol", "dropped", "kicked"],
          properties: {
            clientId: { type: "string" },
            protocol: { type: "string" },
            dropped: { type: "boolean", const: true },
            kicked: { type: "boolean", description: "A connection carried it and was closed." },
          },
        }),
        ...CHANGE,
        "404": r("AdminNotFound"),
      },
    },
  };
  paths["/api/v1/admin/subscriptions"] = {
    get: {
      operationId: "adminListSubscriptions",
      summary: "Subscriptions of every session, by protocol, client id and filter",
      description: SES_READ,
      security: SECURITY,
      parameters: [
        limit,
        cursor,
        protocol,
        {
          name: "clientId",
          in: "query",
          description: "Only this session's.",
          schema: { type: "string" },
        },
        {
          name: "topic",
          in: "query",
          description: "Only subscriptions whose filter matches this topic (who would get it).",
          schema: { type: "string" },
        },
      ],
      responses: {
        "200": ok("One page.", {
          type: "object",
          required: ["items", "total", "nextCursor"],
          properties: {
            items: {
              type: "array",
              items: {
                type: "object",
                required: ["protocol", "clientId", "filter", "qos"],
                properties: {
                  protocol: { type: "string" },
                  clientId: { type: "string" },
                  filter: { type: "string" },
                  qos: { type: "integer", enum: [0, 1, 2] },
                },
              },
            },
            total: { type: "integer" },
            nextCursor: { type: ["string", "null"] },
          },
        }),
        ...COMMON,
        "403": r("AdminForbidden"),
      },
    },
  };

  const components = (doc.components ??= {}) as Json;
  const schemas = (components.schemas ??= {}) as Json;
  const filters = { type: "array", items: { type: "string" } };
  schemas.Account = {
    type: "object",
    required: ["name", "publish", "subscribe", "source", "updated"],
    properties: {
      name: { type: "string" },
      publish: { ...filters, description: "Topic filters it may publish to." },
      subscribe: { ...filters, description: "Topic filters it may subscribe to." },
      source: {
        type: "string",
        enum: ["file", "config"],
        description: "The registry file (changeable here) or the config's auth.services.",
      },
      updated: { type: ["string", "null"], description: "Added at (ISO 8601), file only." },
    },
  };
  schemas.AccountToken = {
    type: "object",
    required: ["name", "token", "publish", "subscribe"],
    properties: {
      name: { type: "string" },
      token: { type: "string" },
      publish: filters,
      subscribe: filters,
    },
  };
  schemas.Subscription = {
    type: "object",
    required: ["filter", "qos"],
    properties: {
      filter: { type: "string", description: "As subscribed (`$share/{group}/…` if shared)." },
      qos: { type: "integer", enum: [0, 1, 2], description: "Maximum QoS granted." },
    },
  };
  schemas.Connection = {
    type: "object",
    description: "The live connection (fields the protocol has).",
    properties: {
      remoteAddress: { type: "string", description: "host:port of the peer." },
      protocolVersion: { type: "string", description: "`5`, `3.1.1`, `3.1` (MQTT); `1` (FBP)." },
      keepAliveSec: { type: "integer", description: "Keepalive in effect (0: none)." },
      connectedAt: { type: "integer", description: "ms since the epoch." },
      clientId: { type: "string" },
      subscriptions: { type: "array", items: s("Subscription") },
    },
  };
  const session = {
    clientId: { type: "string" },
    protocol: { type: "string" },
    connected: { type: "boolean" },
    deviceId: { type: ["string", "null"], description: "The device it speaks for." },
    owner: {
      type: ["string", "null"],
      description: "Who owns it: `device:{id}`, `service:{name}`, `anonymous:{id}`.",
    },
    cleanStart: {
      type: ["boolean", "null"],
      description: "Clean start of the connect that opened or last resumed it; null if unknown.",
    },
    expirySec: {
      type: "integer",
      description: "Session expiry (0: ends with the connection; 4294967295: never).",
    },
    expiresAt: {
      type: ["integer", "null"],
      description: "When an offline session expires (ms since the epoch).",
    },
    queued: { type: "integer", description: "Messages queued, not yet sent." },
    inflight: { type: "integer", description: "Sent, not yet acknowledged." },
    subscriptionCount: { type: "integer" },
    connection: { oneOf: [{ type: "null" }, s("Connection")] },
  };
  schemas.Session = { type: "object", required: Object.keys(session), properties: session };
  schemas.SessionDetail = {
    type: "object",
    required: [...Object.keys(session), "subscriptions"],
    properties: { ...session, subscriptions: { type: "array", items: s("Subscription") } },
  };
}
