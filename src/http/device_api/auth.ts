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

import {
  type DevicePort,
  Identity,
  type LoginRefusalReason,
  type Refusal,
} from "../../core/mod.ts";

/** Credentials read from an `Authorization` header. */
export type RequestCredentials =
  | { scheme: "bearer"; token: string }
  | { scheme: "basic"; id: string; token: string };

/** Outcome of {@link authenticateRequest}: the identity, a refused login, or a 401/403. */
export type RequestAuth =
  | { ok: true; identity: Identity }
  | { ok: false; refusal: Refusal<LoginRefusalReason> }
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

/**
 * Authenticates a request for device `pathId` from `address`. Without an `Authorization` header
 * the request logs in without credentials, which only anonymous access lets in.
 *
 * @example
 * ```ts
 * import { Core } from "../../core/mod.ts";
 * import { authenticateRequest } from "./auth.ts";
 * const core = new Core({ devices: [{ id: "a", token: "ta" }, { id: "b", token: "tb" }] });
 * const port = core.port({ name: "http" });
 * if (!authenticateRequest(port, "a", "Bearer ta", "10.0.0.1").ok) throw new Error();
 * const r = authenticateRequest(port, "a", "Basic " + btoa("b:tb"), "10.0.0.1");
 * if (r.ok || !("status" in r) || r.status !== 403) throw new Error("another device's credentials must be 403");
 * const s = authenticateRequest(port, "a", "Bearer tb", "10.0.0.1");
 * if (s.ok || !("refusal" in s) || s.refusal.reason !== "bad_credentials") throw new Error();
 * await core.close();
 * ```
 */
export function authenticateRequest(
  port: DevicePort,
  pathId: string,
  authorization: string | null,
  address: string,
): RequestAuth {
  const cred = parseAuthorization(authorization);
  if (!cred && authorization) {
    return { ok: false, status: 401, detail: "unsupported Authorization" };
  }
  const user = cred?.scheme === "basic" ? cred.id : pathId;
  const who = port.login({ user, secret: cred?.token }, address);
  if (!(who instanceof Identity)) return { ok: false, refusal: who };
  if (who.deviceId !== pathId) {
    return {
      ok: false,
      status: 403,
      detail: `credentials of device ${
        who.deviceId ?? "(service)"
      } cannot act for device ${pathId}`,
    };
  }
  return { ok: true, identity: who };
}
