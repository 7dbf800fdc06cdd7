/**
 * The management API's service accounts, `/api/v1/admin/accounts`: list them with their ACLs,
 * add one (its token is in the answer only), remove one. They are the accounts of the registry
 * file, the same file and live reload as `ferry account add|remove|list`; accounts of the config
 * (`auth.services`) are listed but are the config's to change.
 *
 * Authorization, by the caller's ACL (as every management call):
 *
 * - list: a subscribe filter matching `$ferry/admin/accounts`;
 * - add or remove account `name`: a publish filter matching `$ferry/admin/accounts/{name}`;
 * - and an account cannot grant what it does not hold: each filter of a new account must be
 *   covered by one of the caller's own filters of the same kind (publish, subscribe).
 *
 * @module
 */

import { filterCovers } from "../../core/acl.ts";
import type { Core } from "../../core/core.ts";
import { validateFilter } from "../../core/topic_router.ts";
import { type Caller, mayRead, mayWrite } from "../console/auth.ts";
import { readJson } from "../dashboard/dashboard.ts";
import { error, json, noContent } from "./_respond.ts";

/** A service account as the API lists it. */
export interface AccountView {
  /** Account name. */
  name: string;
  /** Filters it may publish to. */
  publish: string[];
  /** Filters it may subscribe to. */
  subscribe: string[];
  /** Where it is defined: the registry file (changeable here) or the config. */
  source: "file" | "config";
  /** When it was added (ISO 8601), for accounts of the file. */
  updated: string | null;
}

/** What the API needs to change the accounts of the registry file (the gateway provides it). */
export interface AccountFileAdmin {
  /** Every account, the file's and the config's, sorted by name. */
  list(): Promise<AccountView[]>;
  /** Adds an account to the file and reloads; resolves to its token. */
  add(name: string, acl: { publish: string[]; subscribe: string[] }): Promise<string>;
  /** Removes an account from the file and reloads (its sessions close). */
  remove(name: string): Promise<void>;
}

/** The topic whose subscribe permission lets an account list service accounts. */
export const ACCOUNTS_TOPIC = "$ferry/admin/accounts";

/** The topic whose publish permission lets an account add or remove account `name`. */
export function accountTopic(name: string): string {
  return `${ACCOUNTS_TOPIC}/${name}`;
}

const NAME = /^[A-Za-z0-9._:-]{1,64}$/;
const MAX_FILTERS = 256;

/** What the route needs of the API that mounts it. */
export interface AccountsContext {
  /** The core (its log, its registry). */
  core: Core;
  /** The registry file, when the gateway has one. */
  accounts?: AccountFileAdmin;
  /** Runs one registry-file change after the others (shared with device changes). */
  serial<T>(fn: () => Promise<T>): Promise<T>;
}

/** The filters of `list` that none of `held` covers. */
function notCovered(held: readonly string[], list: string[]): string[] {
  return list.filter((f) => !held.some((h) => filterCovers(h, f)));
}

function filters(v: unknown, key: string): string[] | string {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.length > MAX_FILTERS || v.some((f) => typeof f !== "string")) {
    return `${key} is a list of at most ${MAX_FILTERS} topic filters`;
  }
  for (const f of v as string[]) {
    const bad = validateFilter(f);
    if (bad) return `${key}: "${f.slice(0, 80)}": ${bad}`;
  }
  return [...new Set(v as string[])];
}

/**
 * Serves `accounts` and `accounts/{name}` (`seg`: the path after `/api/v1/admin/`, split); the
 * caller is authenticated and state-changing calls passed the CSRF guard.
 */
export async function handleAccounts(
  ctx: AccountsContext,
  req: Request,
  seg: string[],
  caller: Caller,
): Promise<Response> {
  const method = req.method;
  if (seg.length === 1) {
    if (method === "GET" || method === "HEAD") return await list(ctx, caller);
    if (method === "POST") return await add(ctx, req, caller);
    return error(405, "use GET or POST", { allow: "GET, POST" });
  }
  if (seg.length !== 2) return error(404, "no such route");
  let name: string;
  try {
    name = decodeURIComponent(seg[1]);
  } catch {
    return error(400, "malformed percent-encoding in the path");
  }
  if (!NAME.test(name)) return error(400, `"${name.slice(0, 80)}" is not an account name`);
  if (method !== "DELETE") return error(405, "use DELETE", { allow: "DELETE" });
  return await remove(ctx, name, caller);
}

async function list(ctx: AccountsContext, caller: Caller): Promise<Response> {
  if (!mayRead(caller, ACCOUNTS_TOPIC)) {
    return error(403, `account "${caller.name}" may not read ${ACCOUNTS_TOPIC}`);
  }
  if (!ctx.accounts) return error(501, "this gateway has no registry file");
  return json({ items: await ctx.accounts.list() });
}

function forbidden(ctx: AccountsContext, caller: Caller, what: string, name: string): Response {
  ctx.core.log.child("admin").warn("management call refused", {
    account: caller.name,
    action: `${what} account`,
    target: name,
  });
  return error(403, `account "${caller.name}" may not ${what} accounts (${accountTopic(name)})`);
}

async function add(ctx: AccountsContext, req: Request, caller: Caller): Promise<Response> {
  const body = await readJson(req, 65_536);
  if ("error" in body) return body.error;
  const v = body.value as { name?: unknown; publish?: unknown; subscribe?: unknown } | null;
  const name = v?.name;
  if (typeof name !== "string" || !NAME.test(name)) {
    return error(
      400,
      "expected a JSON body {name, publish, subscribe}, name 1..64 characters of [A-Za-z0-9._:-]",
    );
  }
  const publish = filters(v?.publish, "publish");
  if (typeof publish === "string") return error(400, publish);
  const subscribe = filters(v?.subscribe, "subscribe");
  if (typeof subscribe === "string") return error(400, subscribe);
  if (!mayWrite(caller, accountTopic(name))) return forbidden(ctx, caller, "add", name);
  // No escalation: the new account holds nothing the caller does not.
  const p = caller.identity.principal;
  const held = p.kind === "service" ? p : { publish: [], subscribe: [] };
  const beyond = [
    ...notCovered(held.publish, publish).map((f) => `publish ${f}`),
    ...notCovered(held.subscribe, subscribe).map((f) => `subscribe ${f}`),
  ];
  if (beyond.length) {
    return error(
      403,
      `account "${caller.name}" cannot grant what it does not hold: ${beyond.join(", ")}`,
    );
  }
  const file = ctx.accounts;
  if (!file) return error(501, "this gateway has no registry file to add accounts to");
  return await ctx.serial(async () => {
    if (ctx.core.registry.hasService(name)) return error(409, `account "${name}" exists`);
    if (ctx.core.registry.hasCredentials(name)) {
      return error(409, `"${name}" is a device's id: the account could never log in`);
    }
    const token = await file.add(name, { publish, subscribe });
    ctx.core.log.child("admin").info("account added through the management API", {
      account: caller.name,
      added: name,
      publish,
      subscribe,
    });
    return json({ name, token, publish, subscribe }, 201, {
      location: `/api/v1/admin/accounts/${encodeURIComponent(name)}`,
    });
  }).catch((err) => error(500, `cannot add account "${name}": ${(err as Error).message}`));
}

async function remove(ctx: AccountsContext, name: string, caller: Caller): Promise<Response> {
  if (!mayWrite(caller, accountTopic(name))) return forbidden(ctx, caller, "remove", name);
  const file = ctx.accounts;
  if (!file) return error(501, "this gateway has no registry file");
  return await ctx.serial(async () => {
    const found = (await file.list()).find((a) => a.name === name);
    if (!found) return error(404, `no account "${name}"`);
    if (found.source === "config") {
      return error(409, `account "${name}" is defined in the config (auth.services)`);
    }
    await file.remove(name);
    ctx.core.log.child("admin").info("account removed through the management API", {
      account: caller.name,
      removed: name,
    });
    return noContent();
  }).catch((err) => error(500, `cannot remove account "${name}": ${(err as Error).message}`));
}
