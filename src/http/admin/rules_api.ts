/**
 * The rules part of the management API, `/api/v1/admin/rules`: every configured rule with its
 * status and counters (messages in, outputs out, dropped, errors, timeouts, restarts, dead
 * letters, p50/p99 latency), one rule, and enabling or disabling one at runtime. Mounted by
 * {@link AdminApi} (`admin_api.ts`), which authenticates the caller and applies the CSRF guard
 * first; its OpenAPI paths are {@link rulesOpenApi}.
 *
 * Rights, by the account's ACL (as for the rest of the management API):
 *
 * - listing and reading a rule: the account's subscribe filters match `$ferry/admin/rules`;
 * - enabling or disabling rule `name`: its publish filters match `$ferry/admin/rules/{name}`
 *   (`$ferry/admin/#` grants every rule; `#` does not, as for any `$` topic).
 *
 * A disabled rule's messages get its `onError` (dropped, passed on unchanged to the northbound,
 * or dead-lettered) until it is enabled again or a reload changes the rule. A rule with
 * `enabled: false` in the config is listed as `off` and cannot be enabled here (409).
 *
 * @module
 */

import type { RuleInfo } from "../../rules/engine.ts";
import { type Caller, mayRead, mayWrite } from "../console/auth.ts";

/** What the API reads and does of the rules (the gateway's `RuleEngine` is one). */
export interface RulesAdmin {
  /** The configured rules, in config order. */
  list(): RuleInfo[];
  /** Re-enables a disabled rule; throws RangeError for an unknown (or `off`) rule. */
  enable(name: string): Promise<void>;
  /** Disables a rule; throws RangeError for an unknown (or `off`) rule. */
  disable(name: string, reason?: string): void;
}

/** The topic whose subscribe permission lets an account list the rules. */
export const RULES_TOPIC = "$ferry/admin/rules";

/** The topic whose publish permission lets an account enable or disable rule `name`. */
export function ruleTopic(name: string): string {
  return `${RULES_TOPIC}/${name}`;
}

/** A rule as the API shows it. */
export interface RuleView {
  name: string;
  /** `running`, `loading`, `restarting`, `disabled`, `closed`, or `off` (config `enabled: false`). */
  status: string;
  module: string;
  from: string[];
  to: string;
  onError: string;
  /** Messages queued or in flight. */
  inFlight: number;
  in: number;
  out: number;
  dropped: number;
  errors: number;
  timeouts: number;
  restarts: number;
  deadLetters: number;
  /** Latency: observations, and p50/p99 as histogram bucket bounds in ms (null: none, or over 5 s). */
  latency: { count: number; p50Ms: number | null; p99Ms: number | null };
  /** True when the caller may enable and disable it. */
  mayChange: boolean;
}

function ms(seconds: number | undefined): number | null {
  return seconds === undefined || !Number.isFinite(seconds)
    ? null
    : Math.round(seconds * 1e6) / 1e3;
}

function view(r: RuleInfo, caller: Caller): RuleView {
  const c = r.counters;
  return {
    name: r.name,
    status: r.status,
    module: r.module,
    from: r.from,
    to: r.to,
    onError: r.onError,
    inFlight: r.inFlight,
    in: c.in,
    out: c.out,
    dropped: c.dropped,
    errors: c.errors,
    timeouts: c.timeouts,
    restarts: c.restarts,
    deadLetters: c.deadLetters,
    latency: { count: r.latency.count, p50Ms: ms(r.latency.p50), p99Ms: ms(r.latency.p99) },
    mayChange: mayWrite(caller, ruleTopic(r.name)),
  };
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return Response.json(body, { status, headers: { "cache-control": "no-store", ...headers } });
}

function error(status: number, message: string, headers: Record<string, string> = {}): Response {
  return json({ error: message }, status, headers);
}

/** What {@link handleRules} needs besides the request. */
export interface RulesRouteContext {
  /** The engine, when rules are attached (else the list is empty and a rule is 404). */
  rules: RulesAdmin | undefined;
  /** Logs a change (account, rule, action). */
  log: (msg: string, fields: Record<string, unknown>) => void;
}

/**
 * Answers `/api/v1/admin/rules[/{name}[/enable|/disable]]` for an authenticated `caller` (the
 * CSRF guard already passed); `seg` is the path after `/api/v1/admin/`, split on `/`.
 *
 * @example
 * ```ts
 * import { handleRules } from "./rules_api.ts";
 * import { Identity } from "../../core/login.ts";
 * const caller = { name: "ops", via: "basic" as const, identity: new Identity({ kind: "service",
 *   name: "ops", publish: ["$ferry/admin/#"], subscribe: ["$ferry/admin/#"] }) };
 * const res = await handleRules(new Request("http://gw/api/v1/admin/rules"), ["rules"], caller, {
 *   rules: undefined, log: () => {} });
 * if (res.status !== 200 || (await res.json()).items.length !== 0) throw new Error();
 * ```
 */
export async function handleRules(
  req: Request,
  seg: string[],
  caller: Caller,
  ctx: RulesRouteContext,
): Promise<Response> {
  const method = req.method;
  if (seg.length === 1) {
    if (method !== "GET") return error(405, "use GET", { allow: "GET" });
    if (!mayRead(caller, RULES_TOPIC)) {
      return error(403, `account "${caller.name}" may not read ${RULES_TOPIC}`);
    }
    const items = (ctx.rules?.list() ?? []).map((r) => view(r, caller));
    return json({ items });
  }
  let name: string;
  try {
    name = decodeURIComponent(seg[1]);
  } catch {
    return error(400, "malformed percent-encoding in the path");
  }
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
    return error(400, `"${name.slice(0, 80)}" is not a rule name`);
  }
  const find = () => ctx.rules?.list().find((r) => r.name === name);
  if (seg.length === 2) {
    if (method !== "GET") return error(405, "use GET", { allow: "GET" });
    if (!mayRead(caller, RULES_TOPIC)) {
      return error(403, `account "${caller.name}" may not read ${RULES_TOPIC}`);
    }
    const r = find();
    if (!r) return error(404, `no rule "${name}"`);
    return json(view(r, caller));
  }
  if (seg.length !== 3 || (seg[2] !== "enable" && seg[2] !== "disable")) {
    return error(404, "no such route");
  }
  if (method !== "POST") return error(405, "use POST", { allow: "POST" });
  const action = seg[2];
  if (!mayWrite(caller, ruleTopic(name))) {
    return error(403, `account "${caller.name}" may not publish to ${ruleTopic(name)}`);
  }
  const r = find();
  if (!r || !ctx.rules) return error(404, `no rule "${name}"`);
  if (r.status === "off") {
    return error(409, `rule "${name}" has enabled: false in the config (change the config)`);
  }
  if (action === "disable") {
    ctx.rules.disable(name, `disabled by ${caller.name} through the management API`);
  } else {
    try {
      await ctx.rules.enable(name);
    } catch (err) {
      return error(500, `cannot enable rule "${name}": ${(err as Error).message}`);
    }
  }
  ctx.log(`rule ${action}d through the management API`, { account: caller.name, rule: name });
  return json(view(find()!, caller));
}

type Json = Record<string, unknown>;

/**
 * Adds the rules routes and their schema to an OpenAPI document's `paths` and `schemas`; `r(name)`
 * refers to one of the management API's shared responses.
 *
 * @example
 * ```ts
 * import { rulesOpenApi } from "./rules_api.ts";
 * const paths: Record<string, unknown> = {}, schemas: Record<string, unknown> = {};
 * rulesOpenApi(paths, schemas, (n) => ({ $ref: `#/components/responses/${n}` }), []);
 * if (!paths["/api/v1/admin/rules/{name}/disable"] || !schemas.Rule) throw new Error();
 * ```
 */
export function rulesOpenApi(
  paths: Json,
  schemas: Json,
  r: (name: string) => Json,
  security: unknown[],
): void {
  const rule = { $ref: "#/components/schemas/Rule" };
  const READ = "The account must be able to subscribe to `$ferry/admin/rules`.";
  const common = { "400": r("AdminBadRequest"), "401": r("AdminUnauthorized") };
  const NAME: Json = {
    name: "name",
    in: "path",
    required: true,
    description: "Rule name (1..64 characters of `[A-Za-z0-9._-]`).",
    schema: { type: "string", pattern: "^[A-Za-z0-9._-]{1,64}$" },
  };
  paths["/api/v1/admin/rules"] = {
    get: {
      operationId: "adminListRules",
      summary: "Rules with their status and counters, in config order",
      description: READ,
      security,
      responses: {
        "200": {
          description: "Every configured rule (none when no rule is attached).",
          content: {
            "application/json": {
              schema: {
                type: "object",
                required: ["items"],
                properties: { items: { type: "array", items: rule } },
              },
            },
          },
        },
        ...common,
        "403": r("AdminForbidden"),
      },
    },
  };
  paths["/api/v1/admin/rules/{name}"] = {
    parameters: [NAME],
    get: {
      operationId: "adminGetRule",
      summary: "One rule",
      description: READ,
      security,
      responses: {
        "200": { description: "The rule.", content: { "application/json": { schema: rule } } },
        ...common,
        "403": r("AdminForbidden"),
        "404": r("AdminNotFound"),
      },
    },
  };
  for (const action of ["enable", "disable"] as const) {
    paths[`/api/v1/admin/rules/{name}/${action}`] = {
      parameters: [NAME],
      post: {
        operationId: action === "enable" ? "adminEnableRule" : "adminDisableRule",
        summary: action === "enable"
          ? "Enable a disabled rule (a new worker; until the next config reload)"
          : "Disable a rule now: its messages get its onError (drop, pass, dead-letter)",
        description: "The account must be able to publish to `$ferry/admin/rules/{name}`.",
        security,
        requestBody: {
          required: true,
          description: "`{}` (the JSON content type is what the CSRF guard asks).",
          content: { "application/json": { schema: { type: "object" } } },
        },
        responses: {
          "200": {
            description: "The rule after the change.",
            content: { "application/json": { schema: rule } },
          },
          ...common,
          "403": r("AdminForbidden"),
          "404": r("AdminNotFound"),
          "409": r("AdminConflict"),
          "415": r("AdminUnsupportedMediaType"),
          ...(action === "enable"
            ? {
              "500": {
                description: "The rule's module could not be loaded again.",
                content: {
                  "application/json": { schema: { $ref: "#/components/schemas/AdminError" } },
                },
              },
            }
            : {}),
        },
      },
    };
  }
  const int = { type: "integer" };
  const msOrNull = {
    type: ["number", "null"],
    description: "Histogram bucket bound, ms; null: no observation, or over the largest (5 s).",
  };
  schemas.Rule = {
    type: "object",
    required: [
      "name",
      "status",
      "module",
      "from",
      "to",
      "onError",
      "inFlight",
      "in",
      "out",
      "dropped",
      "errors",
      "timeouts",
      "restarts",
      "deadLetters",
      "latency",
      "mayChange",
    ],
    properties: {
      name: { type: "string" },
      status: {
        type: "string",
        enum: ["loading", "running", "restarting", "disabled", "closed", "off"],
        description: "off: enabled: false in the config.",
      },
      module: { type: "string" },
      from: { type: "array", items: { type: "string" } },
      to: { type: "string", enum: ["core", "northbound"] },
      onError: { type: "string", enum: ["drop", "pass", "dead-letter"] },
      inFlight: { ...int, description: "Messages queued or in flight." },
      in: { ...int, description: "Messages handed to the rule." },
      out: { ...int, description: "Outputs accepted by their route." },
      dropped: {
        ...int,
        description: "Messages the rule dropped, and messages or outputs dropped for it.",
      },
      errors: {
        ...int,
        description: "Failures: throws, timeouts, too large, crashes, refused outputs.",
      },
      timeouts: { ...int, description: "Messages over the time budget." },
      restarts: { ...int, description: "Worker restarts." },
      deadLetters: int,
      latency: {
        type: "object",
        required: ["count", "p50Ms", "p99Ms"],
        properties: { count: int, p50Ms: msOrNull, p99Ms: msOrNull },
      },
      mayChange: { type: "boolean", description: "The caller may enable and disable it." },
    },
  };
}
