/**
 * The session directory: where protocol adapters that keep client sessions by a client id (state
 * that can outlive a connection: subscriptions, queued messages) show them to the gateway's
 * management, without the core or the management API knowing the protocol. An adapter registers a
 * {@link SessionProvider} through its port ({@link DevicePort.provideSessions}); the management
 * API lists, describes and drops sessions through {@link SessionDirectory}.
 *
 * What a live session of a device looks like (remote address, protocol version, keepalive,
 * connected since, subscriptions) is {@link SessionDescription}, which a session handle may also
 * give ({@link SessionHandle.describe}) for the device detail.
 *
 * @module
 */

import type { Protocol } from "./message.ts";

/** One subscription of a session. */
export interface SubscriptionInfo {
  /** The topic filter as subscribed (a shared one with its `$share/{group}/` prefix). */
  filter: string;
  /** Maximum QoS granted. */
  qos: number;
}

/** What a live connection shows of itself (every field optional: not every protocol has it). */
export interface SessionDescription {
  /** The peer's `host:port`. */
  remoteAddress?: string;
  /** The protocol version in the protocol's own terms (`5`, `3.1.1`, `1`). */
  protocolVersion?: string;
  /** Keepalive in effect, seconds (0: none). */
  keepAliveSec?: number;
  /** When the connection was accepted (ms since the epoch). */
  connectedAt?: number;
  /** The client id, when the protocol has one apart from the device id. */
  clientId?: string;
  /** Its subscriptions. */
  subscriptions?: SubscriptionInfo[];
}

/** A session as its adapter describes it. */
export interface SessionInfo {
  /** Client id (unique within the protocol). */
  clientId: string;
  /** The protocol label. */
  protocol: Protocol;
  /** True while a connection carries it. */
  connected: boolean;
  /** The device it speaks for, if any. */
  deviceId: string | null;
  /** The service account or device that owns it, if known (`service:ops`, `device:s1`). */
  owner: string | null;
  /** Clean start (clean session) of the connection that opened or last resumed it. */
  cleanStart: boolean | null;
  /** Session expiry, seconds (0: ends with its connection; 4294967295: never). */
  expirySec: number;
  /** When an offline session expires (ms since the epoch); null while connected or never. */
  expiresAt: number | null;
  /** Messages queued for it, not yet sent. */
  queued: number;
  /** Messages sent and not yet acknowledged. */
  inflight: number;
  /** Number of subscriptions. */
  subscriptionCount: number;
  /** The live connection, when connected. */
  connection: SessionDescription | null;
}

/** A session with its subscriptions (detail). */
export interface SessionDetail extends SessionInfo {
  /** Every subscription, in filter order. */
  subscriptions: SubscriptionInfo[];
}

/** How a session was dropped. */
export type DropResult = "dropped" | "kicked";

/** What an adapter shows of its sessions (registered through its port). */
export interface SessionProvider {
  /** Client ids of every session held (connected or not). */
  clientIds(): Iterable<string>;
  /** True when `clientId`'s session is carried by a connection now. */
  connected(clientId: string): boolean;
  /** The session of `clientId` (its subscriptions when `detail`), if held. */
  describe(clientId: string, detail?: boolean): SessionInfo | SessionDetail | undefined;
  /**
   * Subscriptions of `clientId`'s session, in filter order; with `accept`, only those whose filter
   * it accepts (asked before anything is made of the others).
   */
  subscriptions(clientId: string, accept?: (filter: string) => boolean): SubscriptionInfo[];
  /** How many subscriptions `clientId`'s session has (0 when there is none). */
  subscriptionCount(clientId: string): number;
  /**
   * Discards `clientId`'s session (queued messages, subscriptions, persisted state), closing its
   * connection first when it has one (`kicked`); `undefined` when there is none.
   */
  drop(clientId: string, why: string): DropResult | undefined;
  /**
   * Resolves once the session changes made so far are durable (`false`: writing them failed);
   * absent when sessions are not persisted.
   */
  flushed?(): Promise<boolean>;
}

/**
 * Every adapter's sessions, by protocol.
 *
 * @example
 * ```ts
 * import { SessionDirectory } from "./session_directory.ts";
 * const dir = new SessionDirectory();
 * const off = dir.register("p", {
 *   clientIds: () => ["c1"],
 *   connected: () => false,
 *   describe: () => undefined,
 *   subscriptions: () => [],
 *   subscriptionCount: () => 0,
 *   drop: () => "dropped",
 * });
 * if (dir.protocols().join() !== "p" || dir.provider("p") === undefined) throw new Error();
 * off();
 * if (dir.protocols().length !== 0) throw new Error();
 * ```
 */
export class SessionDirectory {
  #providers = new Map<Protocol, SessionProvider>();

  /** Registers `provider` for `protocol`; returns the function that removes it. */
  register(protocol: Protocol, provider: SessionProvider): () => void {
    this.#providers.set(protocol, provider);
    return () => {
      if (this.#providers.get(protocol) === provider) this.#providers.delete(protocol);
    };
  }

  /** Protocols with a provider, sorted. */
  protocols(): Protocol[] {
    return [...this.#providers.keys()].sort();
  }

  /** The provider of `protocol`. */
  provider(protocol: Protocol): SessionProvider | undefined {
    return this.#providers.get(protocol);
  }
}
