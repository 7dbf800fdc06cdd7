/**
 * What every request handler of the device API shares: the port, the resolved options, the
 * core's commands, the shutdown signal, and the steps every handler uses (answer a problem or a
 * refusal, authorize the device). Private to the folder.
 *
 * @module
 */

import type {
  CommandListener,
  DeviceCommands,
  DevicePort,
  Identity,
  Logger,
  Refusal,
} from "../../core/mod.ts";
import type { ResolvedDeviceApiOptions } from "./options.ts";
import type { ProblemInit, ProblemSlug } from "./problem.ts";

/** Shared state and helpers of the handlers. */
export interface ApiContext {
  /** The core, through HTTP's port. */
  readonly port: DevicePort;
  /** Resolved options. */
  readonly opts: ResolvedDeviceApiOptions;
  /** `http-api` logger. */
  readonly log: Logger;
  /** The core's pending commands (shared with every protocol; claims are HTTP's). */
  readonly commands: DeviceCommands;
  /**
   * Listens for a device's commands as one of its waiters (long-poll or SSE stream); returns the
   * remover, or `undefined` when the device already has `maxWaitersPerDevice`.
   */
  listen(deviceId: string, fn: CommandListener): (() => void) | undefined;
  /** Aborted when the API closes: waits and body reads end at once. */
  readonly closing: AbortSignal;
  /** Answers with a problem and counts it in `ferry_errors_total{protocol="http",code=slug}`. */
  fail(slug: ProblemSlug, url: URL, init?: ProblemInit): Response;
  /** Answers a refusal by the core with its problem (the one mapping of refusals to HTTP). */
  refused(r: Refusal, url: URL, extensions?: Record<string, unknown>): Response;
  /**
   * Authenticates the request for `deviceId` and refreshes its presence; returns the identity,
   * or the problem to answer with.
   */
  authorize(req: Request, url: URL, deviceId: string): Identity | Response;
  /**
   * Refreshes the device's last-seen (from `address`, when known) and keeps it online for
   * `idleTimeoutMs`.
   */
  seen(deviceId: string, address?: string): void;
}
