/**
 * What a resource set (Ferry's device resources, the plugtest set, an embedder's) gets from the
 * CoAP server: the core through CoAP's port, the options, and the server's Observe and presence
 * hooks. Its own file so resources need not import the server (which builds them).
 *
 * @module
 */

import type { DevicePort, Logger } from "../../core/mod.ts";
import type { CoapServerOptions } from "./options.ts";
import type { CoapResponse } from "./resource.ts";

/** What a resource set gets from the server. */
export interface ResourceHost {
  /** The core, through CoAP's port. */
  readonly port: DevicePort;
  /** Effective options. */
  readonly options: Readonly<CoapServerOptions>;
  /** Logger of the listener. */
  readonly log: Logger;
  /** Aborted when the server closes (cancel timers of delayed handlers with it). */
  readonly signal: AbortSignal;
  /** Re-renders every observation of the target `path` (e.g. `/obs`) and notifies its observers. */
  notify(path: string): void;
  /**
   * Ends the observations of `path` (every observation when absent): with the final notification
   * `final`, a non-2.xx response (RFC 7641 §3.2), or silently. Returns how many ended.
   */
  endObservations(path?: string, final?: CoapResponse): number;
  /** Number of observers of a target. */
  observers(path: string): number;
  /** Remembers which device an endpoint speaks for (pings and ACKs then refresh its presence). */
  bindEndpoint(endpoint: string, deviceId: string): void;
}
