/**
 * What every request handler of the device API shares: the core, the resolved options, the
 * core's command store, the rate limiter, the shutdown signal, and the two steps every handler starts
 * with (answer a problem, authorize the device). Private to the folder.
 *
 * @module
 */

import type { Principal } from "../../core/acl.ts";
import type { Core } from "../../core/core.ts";
import type { Logger } from "../../core/logger.ts";
import type { CommandListener, CommandStore } from "../../core/command_store.ts";
import type { ResolvedDeviceApiOptions } from "./options.ts";
import type { ProblemInit, ProblemSlug } from "./problem.ts";
import type { RateLimiter } from "../../core/rate_limiter.ts";

/** Shared state and helpers of the handlers. */
export interface ApiContext {
  /** The gateway core. */
  readonly core: Core;
  /** Resolved options. */
  readonly opts: ResolvedDeviceApiOptions;
  /** `http-api` logger. */
  readonly log: Logger;
  /** The core's pending commands (shared with every protocol). */
  readonly commands: CommandStore;
  /**
   * Listens for a device's commands as one of its waiters (long-poll or SSE stream); returns the
   * remover, or `undefined` when the device already has `maxWaitersPerDevice`.
   */
  listen(deviceId: string, fn: CommandListener): (() => void) | undefined;
  /** The core's per-device rate limit, when configured (shared with every protocol). */
  readonly limiter: RateLimiter | undefined;
  /** Aborted when the API closes: waits and body reads end at once. */
  readonly closing: AbortSignal;
  /** The shared `{ protocol: "http" }` metric labels. */
  readonly labels: Readonly<{ protocol: "http" }>;
  /** Answers with a problem and counts it in `ferry_errors_total{protocol="http",code=slug}`. */
  fail(slug: ProblemSlug, url: URL, init?: ProblemInit): Response;
  /**
   * Authenticates the request for `deviceId` and refreshes its presence; returns the principal,
   * or the 401/403 problem to answer with.
   */
  authorize(req: Request, url: URL, deviceId: string): Principal | Response;
  /** Refreshes the device's last-seen and keeps it online for `idleTimeoutMs`. */
  seen(deviceId: string): void;
}
