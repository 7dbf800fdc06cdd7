/**
 * Error responses as RFC 9457 problem details (`application/problem+json`). Every error has a
 * stable type URI `https://ferry.dev/problems/{slug}`; clients branch on `type`, never on
 * `title` or `detail`. The catalogue {@link PROBLEMS} is the single source of truth: the
 * OpenAPI document and `docs/http-api.md` list the same entries.
 *
 * @module
 */

/** Base of every problem type URI. */
export const PROBLEM_BASE = "https://ferry.dev/problems/";

/** Every problem the API answers with: slug → HTTP status and title. */
export const PROBLEMS = {
  "bad-request": { status: 400, title: "Malformed request" },
  "invalid-device-id": { status: 400, title: "Invalid device id" },
  "invalid-channel": { status: 400, title: "Invalid telemetry channel" },
  "invalid-command-name": { status: 400, title: "Invalid command name" },
  "invalid-parameter": { status: 400, title: "Invalid query parameter" },
  "invalid-batch": { status: 400, title: "Invalid batch body" },
  "unauthorized": { status: 401, title: "Missing or invalid device credentials" },
  "forbidden": { status: 403, title: "Credentials do not allow this device or topic" },
  "not-found": { status: 404, title: "No such resource" },
  "method-not-allowed": { status: 405, title: "Method not allowed on this resource" },
  "request-timeout": { status: 408, title: "Request body not received in time" },
  "payload-too-large": { status: 413, title: "Request body too large" },
  "batch-too-large": { status: 413, title: "Too many messages in one batch" },
  "rate-limited": { status: 429, title: "Device rate limit exceeded" },
  "overloaded": { status: 429, title: "Gateway pipeline is full" },
  "too-many-waiters": { status: 429, title: "Too many open long-polls or streams for the device" },
  "login-throttled": { status: 429, title: "Too many failed logins from this address" },
  "unavailable": { status: 503, title: "Gateway is shutting down or cannot accept messages" },
} as const satisfies Record<string, { status: number; title: string }>;

/** Slug of a problem type. */
export type ProblemSlug = keyof typeof PROBLEMS;

/** An RFC 9457 problem details object, with Ferry's extension members. */
export interface ProblemDetails {
  /** Stable type URI. */
  type: string;
  /** Short summary of the type (the same for every occurrence). */
  title: string;
  /** HTTP status code. */
  status: number;
  /** What went wrong in this occurrence. */
  detail?: string;
  /** Path of the request. */
  instance?: string;
  /** Extension members (`limit`, `retryAfter`, …). */
  [extension: string]: unknown;
}

/** The type URI of a problem slug. */
export function problemType(slug: ProblemSlug): string {
  return PROBLEM_BASE + slug;
}

/** Options of {@link problem}. */
export interface ProblemInit {
  /** Human detail of this occurrence. */
  detail?: string;
  /** Request path. */
  instance?: string;
  /** Extension members. */
  extensions?: Record<string, unknown>;
  /** Extra response headers (`Retry-After`, `WWW-Authenticate`, `Allow`). */
  headers?: Record<string, string>;
}

/**
 * Builds a problem response.
 *
 * @example
 * ```ts
 * import { problem } from "./problem.ts";
 * const res = problem("payload-too-large", { extensions: { limit: 1024 } });
 * const body = await res.json();
 * if (res.status !== 413 || body.limit !== 1024) throw new Error();
 * if (res.headers.get("content-type") !== "application/problem+json") throw new Error();
 * if (body.type !== "https://ferry.dev/problems/payload-too-large") throw new Error();
 * ```
 */
export function problem(slug: ProblemSlug, init: ProblemInit = {}): Response {
  const { status, title } = PROBLEMS[slug];
  const body: ProblemDetails = {
    type: problemType(slug),
    title,
    status,
    ...(init.detail !== undefined ? { detail: init.detail } : {}),
    ...(init.instance !== undefined ? { instance: init.instance } : {}),
    ...init.extensions,
  };
  return new Response(JSON.stringify(body), {
    status,
    headers: {
      "content-type": "application/problem+json",
      "cache-control": "no-store",
      ...init.headers,
    },
  });
}
