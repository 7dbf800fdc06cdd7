/**
 * Device authentication of HTTP requests. Two forms of `Authorization` are read:
 *
 * - `Bearer <token>`: the token is checked against the device named in the path.
 * - `Basic base64(<id>:<token>)` (RFC 7617; the id cannot contain `:`): the credentials name the
 *   device, so a request for another device's path is told apart (403) from bad credentials (401).
 *
 * A plain bearer token cannot name its device (the registry has no token → device lookup, and
 * hashed tokens could not be reversed anyway), so a wrong device's bearer token is a 401.
 *
 * @module
 */

import type { Principal } from "../../core/acl.ts";
import type { DeviceRegistry } from "../../core/registry.ts";

/** Credentials read from an `Authorization` header. */
export type RequestCredentials =
  | { scheme: "bearer"; token: string }
  | { scheme: "basic"; id: string; token: string };

/** Outcome of {@link authenticateRequest}. */
export type RequestAuth =
  | { ok: true; principal: Principal }
  | { ok: false; status: 401 | 403; detail: string };

/**
 * Parses an `Authorization` header value; `undefined` when absent or malformed.
 *
 * @example
 * ```ts
 * import { parseAuthorization } from "./auth.ts";
 * const b = parseAuthorization("Bearer s3cret");
 * if (b?.scheme !== "bearer" || b.token !== "s3cret") throw new Error();
 * const c = parseAuthorization("Basic " + btoa("dev-1:s3cret"));
 * if (c?.scheme !== "basic" || c.id !== "dev-1" || c.token !== "s3cret") throw new Error();
 * if (parseAuthorization("Digest x") !== undefined) throw new Error();
 * ```
 */
export function parseAuthorization(value: string | null): RequestCredentials | undefined {
  if (!value) return undefined;
  const sp = value.indexOf(" ");
  if (sp < 0) return undefined;
  const scheme = value.slice(0, sp).toLowerCase(); // RFC 9110 §11.1: case-insensitive scheme
  const rest = value.slice(sp + 1).trim();
  if (scheme === "bearer") return rest ? { scheme: "bearer", token: rest } : undefined;
  if (scheme !== "basic") return undefined;
  let decoded: string;
  try {
    const bin = atob(rest);
    decoded = new TextDecoder("utf-8", { fatal: true }).decode(
      Uint8Array.from(bin, (ch) => ch.charCodeAt(0)),
    );
  } catch {
    return undefined;
  }
  const colon = decoded.indexOf(":"); // RFC 7617 §2: the user-id cannot contain a colon
  if (colon <= 0) return undefined;
  return { scheme: "basic", id: decoded.slice(0, colon), token: decoded.slice(colon + 1) };
}

/** The device id a principal acts as, if it is a device (or an anonymous device). */
export function principalDeviceId(p: Principal): string | undefined {
  return p.kind === "service" ? undefined : p.id;
}

/**
 * Authenticates a request for device `pathId`.
 *
 * @example
 * ```ts
 * import { DeviceRegistry } from "../../core/registry.ts";
 * import { authenticateRequest } from "./auth.ts";
 * const reg = new DeviceRegistry({ devices: [{ id: "a", token: "ta" }, { id: "b", token: "tb" }] });
 * if (!authenticateRequest(reg, "a", "Bearer ta").ok) throw new Error();
 * const r = authenticateRequest(reg, "a", "Basic " + btoa("b:tb"));
 * if (r.ok || r.status !== 403) throw new Error("another device's credentials must be 403");
 * const s = authenticateRequest(reg, "a", "Bearer tb");
 * if (s.ok || s.status !== 401) throw new Error();
 * ```
 */
export function authenticateRequest(
  registry: DeviceRegistry,
  pathId: string,
  authorization: string | null,
): RequestAuth {
  const cred = parseAuthorization(authorization);
  if (!cred) {
    if (authorization) return { ok: false, status: 401, detail: "unsupported Authorization" };
    return { ok: false, status: 401, detail: "missing Authorization: Bearer <device token>" };
  }
  const id = cred.scheme === "basic" ? cred.id : pathId;
  const res = registry.authenticate(id, cred.token);
  if (!res.ok) return { ok: false, status: 401, detail: "invalid device credentials" };
  const who = principalDeviceId(res.principal);
  if (who !== pathId) {
    return {
      ok: false,
      status: 403,
      detail: `credentials of device ${who ?? "(service)"} cannot act for device ${pathId}`,
    };
  }
  return res;
}
