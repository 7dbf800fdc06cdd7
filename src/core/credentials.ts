/**
 * Token hashing and constant-time checks. Tokens are random and high-entropy, so a salted SHA-256
 * is enough (no slow KDF on the connect path); stored form: `sha256:<salt hex>:<digest hex>`.
 *
 * @module
 */

import { constantTimeEqual, sha256 } from "./sha256.ts";

function digest(salt: Uint8Array, token: string): Uint8Array {
  return sha256(salt, token);
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function unhex(s: string): Uint8Array | undefined {
  if (s.length % 2 || !/^[0-9a-f]*$/i.test(s)) return undefined;
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * Hashes a token with a fresh random salt.
 *
 * @example
 * ```ts
 * import { hashToken, verifyToken } from "./credentials.ts";
 * const h = hashToken("s3cret");
 * if (!verifyToken("s3cret", h) || verifyToken("other", h)) throw new Error();
 * ```
 */
export function hashToken(token: string): string {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  return `sha256:${hex(salt)}:${hex(digest(salt, token))}`;
}

/** True when `hash` has the stored-token form. */
export function isTokenHash(hash: string): boolean {
  const [alg, salt, d] = hash.split(":");
  return alg === "sha256" && unhex(salt ?? "") !== undefined && (d ?? "").length === 64 &&
    unhex(d) !== undefined;
}

/** Checks `token` against a stored hash in constant time (for a given hash length). */
export function verifyToken(token: string, hash: string): boolean {
  const [alg, saltHex, digestHex] = hash.split(":");
  const salt = unhex(saltHex ?? "");
  const want = unhex(digestHex ?? "");
  if (alg !== "sha256" || !salt || !want || want.length !== 32) return false;
  return constantTimeEqual(digest(salt, token), want);
}

// Digests of stored plaintext secrets (config tokens are checked on every CoAP/HTTP request):
// the stored side is hashed once, not at every comparison. Bounded: cleared when it grows large.
const storedDigests = new Map<string, Uint8Array>();

/** Compares two secrets in constant time for equal lengths (digests first, so lengths hide). */
export function secretEquals(given: string, stored: string): boolean {
  let ds = storedDigests.get(stored);
  if (!ds) {
    ds = sha256(stored);
    if (storedDigests.size >= 100_000) storedDigests.clear();
    storedDigests.set(stored, ds);
  }
  return constantTimeEqual(sha256(given), ds);
}
