/**
 * Dashboard logins: a service account signs in with its name and token and gets a random session
 * id in an `HttpOnly`, `SameSite=Strict` cookie. Sessions expire; failed logins are throttled per
 * source address. No secret is logged.
 *
 * @module
 */

import type { DeviceRegistry } from "../../core/registry.ts";

/** Name of the session cookie. */
export const SESSION_COOKIE = "ferry_session";

/** Tunables of {@link LoginSessions}. */
export interface LoginSessionsOptions {
  /** Session lifetime, ms. @default 43200000 (12 h) */
  ttlMs?: number;
  /** Failed logins allowed per address per minute. @default 10 */
  maxFailuresPerMinute?: number;
  /** Time source. @default Date.now */
  now?: () => number;
}

/**
 * Issues and checks dashboard sessions.
 *
 * @example
 * ```ts
 * import { DeviceRegistry } from "../../core/registry.ts";
 * import { LoginSessions } from "./login_sessions.ts";
 * const reg = new DeviceRegistry({ services: [{ name: "ops", token: "t", publish: [], subscribe: [] }] });
 * const s = new LoginSessions(reg);
 * const sid = s.login("ops", "t", "127.0.0.1");
 * if (!sid || s.check(sid) !== "ops" || s.login("ops", "x", "127.0.0.1")) throw new Error();
 * ```
 */
export class LoginSessions {
  #registry: DeviceRegistry;
  #sessions = new Map<string, { name: string; expires: number }>();
  #failures = new Map<string, { count: number; since: number }>();
  #ttl: number;
  #maxFailures: number;
  #now: () => number;

  /** Creates the store. */
  constructor(registry: DeviceRegistry, options: LoginSessionsOptions = {}) {
    this.#registry = registry;
    this.#ttl = options.ttlMs ?? 12 * 3600_000;
    this.#maxFailures = options.maxFailuresPerMinute ?? 10;
    this.#now = options.now ?? Date.now;
  }

  /** True when `address` has failed too often in the last minute. */
  throttled(address: string): boolean {
    const f = this.#failures.get(address);
    if (!f) return false;
    if (this.#now() - f.since > 60_000) {
      this.#failures.delete(address);
      return false;
    }
    return f.count >= this.#maxFailures;
  }

  /** Checks a service account; returns a new session id, or undefined. */
  login(name: string, token: string, address: string): string | undefined {
    if (this.throttled(address)) return undefined;
    const auth = this.#registry.authenticateService(name, token);
    if (!auth.ok) {
      const f = this.#failures.get(address);
      if (!f || this.#now() - f.since > 60_000) {
        this.#failures.set(address, { count: 1, since: this.#now() });
      } else f.count++;
      return undefined;
    }
    const sid = Array.from(
      crypto.getRandomValues(new Uint8Array(24)),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
    this.#sessions.set(sid, { name, expires: this.#now() + this.#ttl });
    this.#sweep();
    return sid;
  }

  /** The account name of a live session, or undefined. */
  check(sid: string | undefined): string | undefined {
    if (!sid) return undefined;
    const s = this.#sessions.get(sid);
    if (!s) return undefined;
    if (s.expires <= this.#now()) {
      this.#sessions.delete(sid);
      return undefined;
    }
    return s.name;
  }

  /** Ends a session. */
  logout(sid: string | undefined): void {
    if (sid) this.#sessions.delete(sid);
  }

  #sweep(): void {
    if (this.#sessions.size < 1000) return;
    const now = this.#now();
    for (const [k, s] of this.#sessions) if (s.expires <= now) this.#sessions.delete(k);
  }
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
