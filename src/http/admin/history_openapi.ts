/**
 * The OpenAPI part of `GET /api/v1/admin/history` (`history_route.ts`): its path and the
 * `History` schema, added to the management API's document by `openapi.ts`.
 *
 * @module
 */

type Json = Record<string, unknown>;

const byProtocol = (what: string): Json => ({
  type: "object",
  description: `${what}, by protocol label (whatever adapters the gateway runs).`,
  additionalProperties: { type: "number", minimum: 0 },
});

/**
 * Adds the history route to `paths` and its schema to `schemas` (the document's
 * `components.schemas`), citing the shared responses by name.
 *
 * @example
 * ```ts
 * import { addHistoryOpenApi } from "./history_openapi.ts";
 * const paths: Record<string, unknown> = {}, schemas: Record<string, unknown> = {};
 * addHistoryOpenApi(paths, schemas);
 * if (!paths["/api/v1/admin/history"] || !schemas.History) throw new Error();
 * ```
 */
export function addHistoryOpenApi(paths: Json, schemas: Json): void {
  const r = (name: string): Json => ({ $ref: `#/components/responses/${name}` });
  paths["/api/v1/admin/history"] = {
    get: {
      operationId: "adminHistory",
      summary: "The charts' short history: messages in/out per protocol, connections, spool depth",
      description:
        "One sample every `sys.historyIntervalMs` for the last `sys.historySamples` intervals, " +
        "oldest first, kept in memory (a restart starts it afresh). The account's subscribe ACL " +
        "must cover `$SYS/#` (as for `/metrics`).",
      security: [{ serviceBasic: [] }, { dashboardSession: [] }],
      parameters: [{
        name: "since",
        in: "query",
        required: false,
        description: "Only samples taken after this time (ms since the epoch).",
        schema: { type: "number", minimum: 0 },
      }],
      responses: {
        "200": {
          description: "The samples kept.",
          content: {
            "application/json": { schema: { $ref: "#/components/schemas/History" } },
          },
        },
        "400": r("AdminBadRequest"),
        "401": r("AdminUnauthorized"),
        "403": r("AdminForbidden"),
        "404": r("AdminNotFound"),
      },
    },
  };
  schemas.History = {
    type: "object",
    required: ["intervalMs", "capacity", "samples"],
    properties: {
      intervalMs: { type: "integer", description: "Time between samples, ms." },
      capacity: { type: "integer", description: "Most samples kept." },
      samples: {
        type: "array",
        items: {
          type: "object",
          required: ["time", "messagesIn", "messagesOut", "connections", "spoolDepth"],
          properties: {
            time: { type: "number", description: "When the sample was taken, ms since the epoch." },
            messagesIn: byProtocol("Messages accepted per second over the interval"),
            messagesOut: byProtocol("Messages delivered per second over the interval"),
            connections: byProtocol("Open connections"),
            spoolDepth: {
              type: ["integer", "null"],
              description: "Messages in the northbound spool; null without a northbound.",
            },
          },
        },
      },
    },
  };
}
