/**
 * Logins remembered per endpoint. A CoAP device sends its credentials with every request; one that
 * keeps sending the same ones from the same endpoint is logged in through the port once, and its
 * identity is reused (with it the ACL's memory of the topics it may publish to). Each remembered
 * identity is attached through the port as a stream without presence, so revoking its
 * credentials forgets it at once and the next request logs in again. Failed logins are never
 * remembered: the port counts every one. Bounded: past `max` endpoints the oldest is forgotten.
 *
 * @module
 */

import { type Attachment, type DevicePort, Identity, type Refusal } from "../../core/mod.ts";

interface Entry {
  user: string;
  secret: string | undefined;
  identity: Identity;
  attachment?: Attachment;
  /** Clock ms of the last presence refresh for this endpoint's device. */
  seenAt: number;
}

/** The login of one request: an identity (and whether presence is due), or the port's refusal. */
export type EndpointLogin =
  | { readonly identity: Identity; readonly refresh: boolean }
  | { readonly refused: Refusal };

/**
 * Logins by endpoint.
 *
 * @example
 * ```ts
 * import { Core } from "../../core/core.ts";
 * import { silentLogger } from "../../core/logger.ts";
 * import { EndpointLogins } from "./_endpoint_logins.ts";
 * const core = new Core({ devices: [{ id: "d1", token: "t" }], log: silentLogger });
 * const logins = new EndpointLogins(core.port({ name: "coap" }), { max: 10, refreshMs: 1000 });
 * const a = logins.login("127.0.0.1:9", "d1", "t", "127.0.0.1");
 * const b = logins.login("127.0.0.1:9", "d1", "t", "127.0.0.1");
 * if (!("identity" in a) || !("identity" in b) || a.identity !== b.identity) throw new Error();
 * core.registry.setCredentials([]); // revoked: forgotten, and the next login is refused
 * if ("identity" in logins.login("127.0.0.1:9", "d1", "t", "127.0.0.1")) throw new Error();
 * logins.close();
 * await core.close();
 * ```
 */
export class EndpointLogins {
  #port: DevicePort;
  #max: number;
  #refreshMs: number;
  #byEndpoint = new Map<string, Entry>();

  /**
   * Remembers at most `max` endpoints; says a presence refresh is due at most every `refreshMs`
   * per endpoint (the device's idle timeout is minutes; refreshing it per request costs a timer
   * update each).
   */
  constructor(port: DevicePort, options: { max: number; refreshMs: number }) {
    this.#port = port;
    this.#max = options.max;
    this.#refreshMs = options.refreshMs;
  }

  /** Endpoints remembered. */
  get size(): number {
    return this.#byEndpoint.size;
  }

  /** Logs `user` in with `secret` from `endpoint` (at `address`), or reuses its login. */
  login(
    endpoint: string,
    user: string,
    secret: string | undefined,
    address: string,
  ): EndpointLogin {
    const now = this.#port.clock.now();
    const e = this.#byEndpoint.get(endpoint);
    if (e && e.user === user && e.secret === secret) {
      const refresh = now - e.seenAt >= this.#refreshMs;
      if (refresh) e.seenAt = now;
      return { identity: e.identity, refresh };
    }
    const r = this.#port.login({ user, secret }, address);
    if (!(r instanceof Identity)) return { refused: r };
    if (e) this.#forget(endpoint, e);
    if (this.#byEndpoint.size >= this.#max) {
      const [oldest, entry] = this.#byEndpoint.entries().next().value!;
      this.#forget(oldest, entry);
    }
    const entry: Entry = { user, secret, identity: r, seenAt: now };
    entry.attachment = this.#port.attach(r, {
      sessionId: `coap-login:${endpoint}`,
      protocol: this.#port.protocol,
      close: () => this.#forget(endpoint, entry),
    }, false);
    this.#byEndpoint.set(endpoint, entry);
    return { identity: r, refresh: true };
  }

  #forget(endpoint: string, entry: Entry): void {
    if (this.#byEndpoint.get(endpoint) !== entry) return;
    this.#byEndpoint.delete(endpoint);
    entry.attachment?.detach();
  }

  /** Forgets every login. */
  close(): void {
    for (const [ep, e] of [...this.#byEndpoint]) this.#forget(ep, e);
  }
}
