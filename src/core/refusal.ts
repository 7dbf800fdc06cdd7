/**
 * The core's typed answers when it will not take something: a login it refuses, or a message it
 * does not accept. Adapters map each reason to their wire code in one function (FBP/1 status,
 * MQTT reason code, CoAP response code, HTTP problem type); stages behind the port (the spool's
 * durable append, say) refuse by throwing a {@link RefusedError}.
 *
 * @module
 */

/**
 * Why a login was refused: `bad_id` (not a valid identity), `bad_credentials` (wrong secret),
 * `no_credentials` (none given where they are required: anonymous access is off). `throttled`
 * and `unavailable` are worth retrying later.
 */
export type LoginRefusalReason =
  | "throttled"
  | "bad_id"
  | "bad_credentials"
  | "no_credentials"
  | "unavailable";

/**
 * Why a message was refused. `rate_limited`, `overloaded`, `quota` and `shutting_down` are worth
 * retrying later (the refusal says when); `not_authorized` and `too_large` are not; `failed`
 * means a stage behind the port (a disk, say) failed, and a retry may succeed.
 */
export type PublishRefusalReason =
  | "rate_limited"
  | "not_authorized"
  | "overloaded"
  | "quota"
  | "too_large"
  | "shutting_down"
  | "failed";

/** A refusal with its reason, a retry hint and a human message. */
export interface Refusal<R extends string = LoginRefusalReason | PublishRefusalReason> {
  /** Always false: tells a refusal from an acceptance. */
  readonly ok: false;
  /** Machine-readable cause. */
  readonly reason: R;
  /** When a retry may succeed, ms from now; absent when retrying will not help. */
  readonly retryAfterMs?: number;
  /** Human-readable detail (safe to send to the peer: never a secret). */
  readonly message: string;
}

/**
 * Thrown by a stage behind the port to refuse a message with a typed reason (for example the
 * spool, when it is full: `quota`). Any other error from such a stage is refused as `failed`.
 *
 * @example
 * ```ts
 * import { RefusedError } from "./refusal.ts";
 * const err = new RefusedError("quota", "Cannot store message: the spool is full", { retryAfterMs: 5000 });
 * if (err.reason !== "quota" || err.retryAfterMs !== 5000 || err.name !== "RefusedError") throw new Error();
 * ```
 */
export class RefusedError extends Error {
  override name = "RefusedError";
  /** Machine-readable cause. */
  readonly reason: PublishRefusalReason;
  /** When a retry may succeed, ms from now. */
  readonly retryAfterMs: number | undefined;

  /** Creates the error. */
  constructor(
    reason: PublishRefusalReason,
    message: string,
    options: { retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.reason = reason;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/**
 * A refusal of `reason`; frozen, so refusals without a per-call retry hint can be shared.
 *
 * @example
 * ```ts
 * import { refusal } from "./refusal.ts";
 * const r = refusal("overloaded", "Cannot accept message: the pipeline is full", 1000);
 * if (r.ok || r.reason !== "overloaded" || r.retryAfterMs !== 1000) throw new Error();
 * ```
 */
export function refusal<R extends string>(
  reason: R,
  message: string,
  retryAfterMs?: number,
): Refusal<R> {
  return Object.freeze(
    retryAfterMs === undefined
      ? { ok: false as const, reason, message }
      : { ok: false as const, reason, message, retryAfterMs },
  );
}
