/**
 * The management API's answers, for the route files of this folder: JSON with `no-store`, errors
 * as `{"error": "…"}`.
 *
 * @module
 */

/** A JSON answer (not cached). */
export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return Response.json(body, { status, headers: { "cache-control": "no-store", ...headers } });
}

/** An error answer: `{"error": message}`. */
export function error(
  status: number,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return json({ error: message }, status, headers);
}

/** 204 No Content. */
export function noContent(): Response {
  return new Response(null, { status: 204, headers: { "cache-control": "no-store" } });
}

/** Opaque cursor text for `key` (base64url JSON). */
export function encodeCursor(key: unknown): string {
  return btoa(String.fromCharCode(...new TextEncoder().encode(JSON.stringify(key))))
    .replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** The key of a cursor made by {@link encodeCursor}, or undefined when it is not one. */
export function decodeCursor(cursor: string): unknown {
  try {
    const b64 = cursor.replaceAll("-", "+").replaceAll("_", "/");
    const bin = atob(b64 + "=".repeat((4 - b64.length % 4) % 4));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
  } catch {
    return undefined;
  }
}
