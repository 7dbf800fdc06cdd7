/**
 * Who is calling the dashboard and the management API, and whether a state-changing call may
 * proceed. Every caller is a service account (or the built-in local administrator of the one-time
 * login link), and every call is judged by that account's ACL, the same one MQTT applies:
 *
 * - **Sessions**: `POST /dashboard/login` with a service account's name and token, or the one-time
 *   login link printed at start, sets an `HttpOnly`, `SameSite=Strict` cookie (`Secure` over TLS).
 *   A session follows its account: removed or re-keyed, the session ends; its ACL is read at every
 *   call, so a changed ACL applies at once.
 * - **HTTP Basic** with a service account's name and token, for scripts and Prometheus.
 * - **CSRF**: a state-changing call (any method but GET/HEAD/OPTIONS) must be
 *   `Content-Type: application/json` (not a "simple" type a cross-site form or `fetch` can send
 *   without a preflight), and its `Origin`, which browsers send on every such call (`null` from
 *   opaque contexts), must be this gateway's own; `Sec-Fetch-Site`, when sent, must say
 *   `same-origin`. A call without `Origin` is no browser's (curl, scripts) and may proceed.
 * - **Failed logins** are throttled per account and client address, and per address
 *   (`login_throttle.ts`); the client address is the peer's, or, only when the peer is one of
 *   `trustedProxies`, the nearest untrusted entry of its `X-Forwarded-For`.
 *
 * No secret (token, cookie, link) is ever logged.
 *
 * @module
 */

import { filterCovers, type Principal, topicMatches } from "../../core/mod.ts";
import { secretEquals } from "../../core/credentials.ts";
import { Identity } from "../../core/login.ts";
import type { DeviceRegistry } from "../../core/registry.ts";
import { LoginThrottle, type LoginThrottleOptions } from "./login_throttle.ts";

/** Name of the session cookie. */
export const SESSION_COOKIE = "ferry_session";

/** The account name of the one-time login link's sessions (no configured account can have it). */
export const LOCAL_ADMIN = "(local admin)";

/** The ACL of the local administrator: everything, `$SYS` and management included. */
const LOCAL_ADMIN_PRINCIPAL: Principal = Object.freeze({
  kind: "service",
  name: LOCAL_ADMIN,
  publish: ["#", "$SYS/#", "$ferry/#"],
  subscribe: ["#", "$SYS/#", "$ferry/#"],
});

/** An authenticated caller. */
export interface Caller {
  /** The service account (or {@link LOCAL_ADMIN}). */
  readonly name: string;
  /** Its identity: the principal the ACL judges, and the key revocation uses. */
  readonly identity: Identity;
  /** How it authenticated. */
  readonly via: "session" | "basic";
}

/** Tunables of {@link ConsoleAuth}. */
export interface ConsoleAuthOptions {
  /** Peers whose `X-Forwarded-For` is believed. @default [] */
  trustedProxies?: string[];
  /** Mark cookies `Secure` (the listener serves TLS). @default false */
  secure?: boolean;
  /** Session lifetime, ms. @default 43200000 (12 h) */
  sessionTtlMs?: number;
  /** Sessions kept at most; the oldest ends past it. @default 10000 */
  maxSessions?: number;
  /** The failed-login throttle. */
  throttle?: LoginThrottleOptions;
  /** Time source. @default Date.now */
  now?: () => number;
}

/** Why a login failed. */
export type LoginFailure =
  | { refused: "throttled"; retryAfterSec: number }
  | { refused: "bad_credentials" };

interface Session {
  name: string;
  expires: number;
  /** The credentials it was opened with: a change ends the session. */
  token: string | undefined;
  tokenHash: string | undefined;
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

/** Reads a cookie from a request. */
export function cookie(req: Request, name: string): string | undefined {
  const header = req.headers.get("cookie");
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

/** The `name:token` of an `Authorization: Basic` header, if any. */
function basicCredentials(req: Request): { name: string; token: string } | undefined {
  const h = req.headers.get("authorization");
  if (!h || h.slice(0, 6).toLowerCase() !== "basic ") return undefined;
  let text: string;
  try {
    const bin = atob(h.slice(6).trim());
    text = new TextDecoder("utf-8", { fatal: true }).decode(
      Uint8Array.from(bin, (c) => c.charCodeAt(0)),
    );
  } catch {
    return undefined;
  }
  const colon = text.indexOf(":"); // RFC 7617 §2: the user-id has no colon
  return colon > 0 ? { name: text.slice(0, colon), token: text.slice(colon + 1) } : undefined;
}

/**
 * True when `filter` (a subscribe filter) can match some topic under `levels` (a topic prefix):
 * `devices/devA/telemetry/#` reaches under `devices/devA`, `devices/devB/#` does not.
 *
 * @example
 * ```ts
 * import { reachesUnder } from "./auth.ts";
 * if (!reachesUnder("devices/devA/telemetry/#", ["devices", "devA"])) throw new Error();
 * if (reachesUnder("devices/devB/#", ["devices", "devA"]) || reachesUnder("devices/+", ["devices", "devA"])) throw new Error();
 * ```
 */
export function reachesUnder(filter: string, levels: string[]): boolean {
  const f = filter.split("/");
  for (let i = 0; i < levels.length; i++) {
    if (f[i] === "#") return true;
    if (i >= f.length || (f[i] !== "+" && f[i] !== levels[i])) return false;
  }
  return f.length > levels.length;
}

/**
 * True when `caller` may see anything of device `id` (its subscribe ACL reaches under
 * `devices/{id}/`): only such devices are listed to it.
 */
export function mayObserveDevice(caller: Caller, id: string): boolean {
  const p = caller.identity.principal;
  if (p.kind !== "service") return false;
  const levels = ["devices", id];
  return p.subscribe.some((f) => reachesUnder(f, levels));
}

/** True when `caller` may read messages on `topic` (its subscribe ACL matches it). */
export function mayRead(caller: Caller, topic: string): boolean {
  const p = caller.identity.principal;
  return p.kind === "service" && p.subscribe.some((f) => topicMatches(f, topic));
}

/** True when `caller`'s subscribe ACL covers all of `$SYS/#` (metrics, broker statistics). */
export function mayReadSys(caller: Caller): boolean {
  const p = caller.identity.principal;
  return p.kind === "service" && p.subscribe.some((f) => filterCovers(f, "$SYS/#"));
}

/** True when `caller` may publish on `topic` (its publish ACL matches it). */
export function mayWrite(caller: Caller, topic: string): boolean {
  const p = caller.identity.principal;
  return p.kind === "service" && p.publish.some((f) => topicMatches(f, topic));
}

/**
 * Authenticates console callers and guards state-changing calls.
 *
 * @example
 * ```ts
 * import { DeviceRegistry } from "../../core/registry.ts";
 * import { ConsoleAuth, mayWrite } from "./auth.ts";
 * const reg = new DeviceRegistry({ services: [{ name: "ops", token: "t", publish: [], subscribe: ["devices/#"] }] });
 * const auth = new ConsoleAuth(reg);
 * const r = auth.login("ops", "t", "127.0.0.1");
 * if (!("sid" in r)) throw new Error("refused");
 * const req = new Request("http://gw/dashboard/api/me", { headers: { cookie: `ferry_session=${r.sid}` } });
 * const caller = auth.identify(req, "127.0.0.1");
 * if (caller?.name !== "ops" || mayWrite(caller, "devices/a/commands/x")) throw new Error();
 * ```
 */
export class ConsoleAuth {
  #registry: DeviceRegistry;
  #sessions = new Map<string, Session>();
  #throttle: LoginThrottle;
  #proxies: Set<string>;
  #secure: boolean;
  #ttl: number;
  #maxSessions: number;
  #now: () => number;
  #link = randomHex(24);

  /** Creates the guard over `registry`'s service accounts. */
  constructor(registry: DeviceRegistry, options: ConsoleAuthOptions = {}) {
    this.#registry = registry;
    this.#throttle = new LoginThrottle({ now: options.now, ...options.throttle });
    this.#proxies = new Set(options.trustedProxies ?? []);
    this.#secure = options.secure ?? false;
    this.#ttl = options.sessionTtlMs ?? 12 * 3600_000;
    this.#maxSessions = options.maxSessions ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  /** Live sessions (bounded by `maxSessions`). */
  get sessions(): number {
    return this.#sessions.size;
  }

  /** Entries of the failed-login tables (bounded). */
  get throttleEntries(): number {
    return this.#throttle.tracked;
  }

  /** The current one-time login token (each redemption makes a new one). */
  get linkToken(): string {
    return this.#link;
  }

  /**
   * The client's address: the peer's, or, when the peer is a trusted proxy, the nearest entry of
   * its `X-Forwarded-For` that is not itself a trusted proxy.
   */
  clientAddress(req: Request, peer: string): string {
    if (!this.#proxies.has(peer)) return peer;
    const xff = req.headers.get("x-forwarded-for");
    if (!xff) return peer;
    const hops = xff.split(",").map((h) => h.trim()).filter((h) => h !== "");
    for (let i = hops.length - 1; i >= 0; i--) {
      if (!this.#proxies.has(hops[i])) return hops[i].slice(0, 64);
    }
    return peer;
  }

  /** Logs a service account in: a new session id, or why not. */
  login(
    name: string,
    token: string,
    address: string,
  ): { sid: string; caller: Caller } | LoginFailure {
    const wait = this.#throttle.waitMs(name, address);
    if (wait > 0) return { refused: "throttled", retryAfterSec: Math.ceil(wait / 1000) };
    const acct = this.#registry.service(name);
    if (!acct || !this.#registry.authenticateService(name, token).ok) {
      this.#throttle.failed(name, address);
      return { refused: "bad_credentials" };
    }
    const sid = this.#open({ name, token: acct.token, tokenHash: acct.tokenHash });
    return { sid, caller: this.#caller(name, "session")! };
  }

  /** Redeems the one-time login link: a session of the local administrator, or undefined. */
  redeem(token: string, address: string): string | undefined {
    if (this.#throttle.waitMs(LOCAL_ADMIN, address) > 0) return undefined;
    if (!secretEquals(token, this.#link)) {
      this.#throttle.failed(LOCAL_ADMIN, address);
      return undefined;
    }
    this.#link = randomHex(24); // one use
    return this.#open({ name: LOCAL_ADMIN, token: undefined, tokenHash: undefined });
  }

  /** Ends a session. */
  logout(sid: string | undefined): void {
    if (sid) this.#sessions.delete(sid);
  }

  /**
   * The caller of `req` (from `peer`): its session cookie, or HTTP Basic credentials of a service
   * account; undefined when neither holds (a failed Basic login counts against the throttle).
   */
  identify(req: Request, peer: string): Caller | undefined {
    const sid = cookie(req, SESSION_COOKIE);
    if (sid) {
      const s = this.#sessions.get(sid);
      if (s) {
        if (s.expires > this.#now() && this.#current(s)) return this.#caller(s.name, "session");
        this.#sessions.delete(sid);
      }
    }
    const basic = basicCredentials(req);
    if (!basic) return undefined;
    const address = this.clientAddress(req, peer);
    if (this.#throttle.waitMs(basic.name, address) > 0) return undefined;
    if (!this.#registry.authenticateService(basic.name, basic.token).ok) {
      this.#throttle.failed(basic.name, address);
      return undefined;
    }
    return this.#caller(basic.name, "basic");
  }

  /** True when `address` is throttled for `name` (to answer 429 rather than 401). */
  throttledSec(name: string, address: string): number {
    return Math.ceil(this.#throttle.waitMs(name, address) / 1000);
  }

  /**
   * Why a state-changing request must be refused (status and message), or undefined when it may
   * proceed: JSON content type for bodies, and an `Origin` that is this gateway's own.
   */
  csrf(req: Request, url: URL): { status: number; message: string } | undefined {
    if (SAFE_METHODS.has(req.method)) return undefined;
    if (req.method !== "DELETE") {
      const type = (req.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
      if (type !== "application/json") {
        return {
          status: 415,
          message:
            "Cannot accept request: state-changing calls must be Content-Type: application/json",
        };
      }
    }
    const origin = req.headers.get("origin");
    const own = `${url.protocol}//${req.headers.get("host") ?? url.host}`;
    if (origin !== null) {
      if (origin.toLowerCase() !== own.toLowerCase()) {
        return { status: 403, message: "Cannot accept request: cross-origin call refused" };
      }
      return undefined;
    }
    // No Origin: not a browser's cross-site call (browsers send Origin on every such request,
    // `null` from opaque contexts); a browser's fetch metadata must still say same-origin.
    const site = req.headers.get("sec-fetch-site");
    if (site !== null && site !== "same-origin" && site !== "none") {
      return { status: 403, message: "Cannot accept request: cross-site call refused" };
    }
    return undefined;
  }

  /** The `Set-Cookie` value opening session `sid`. */
  sessionCookie(sid: string): string {
    return `${SESSION_COOKIE}=${sid}; Path=/; HttpOnly; SameSite=Strict${
      this.#secure ? "; Secure" : ""
    }; Max-Age=${Math.floor(this.#ttl / 1000)}`;
  }

  /** The `Set-Cookie` value that ends the session cookie. */
  clearCookie(): string {
    return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict${
      this.#secure ? "; Secure" : ""
    }; Max-Age=0`;
  }

  #open(s: Omit<Session, "expires">): string {
    const sid = randomHex(32);
    const now = this.#now();
    for (const [k, v] of this.#sessions) {
      if (v.expires <= now || this.#sessions.size >= this.#maxSessions) this.#sessions.delete(k);
      else break; // the rest are younger
    }
    this.#sessions.set(sid, { ...s, expires: now + this.#ttl });
    return sid;
  }

  /** The session's account still exists with the credentials it was opened with. */
  #current(s: Session): boolean {
    if (s.name === LOCAL_ADMIN) return true;
    const acct = this.#registry.service(s.name);
    return acct !== undefined && acct.token === s.token && acct.tokenHash === s.tokenHash;
  }

  #caller(name: string, via: Caller["via"]): Caller | undefined {
    if (name === LOCAL_ADMIN) {
      return { name, identity: new Identity(LOCAL_ADMIN_PRINCIPAL), via };
    }
    const acct = this.#registry.service(name);
    if (!acct) return undefined;
    const principal: Principal = {
      kind: "service",
      name,
      publish: acct.publish,
      subscribe: acct.subscribe,
    };
    return { name, identity: new Identity(principal), via };
  }
}
