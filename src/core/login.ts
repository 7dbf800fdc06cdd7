/**
 * Login, the same for every protocol: throttle check, authentication against the registry,
 * failure accounting. Failed logins are counted per claimed identity *and* source address, so a
 * flood of wrong tokens for one device from one address (UDP sources are spoofable) throttles only
 * that identity there: the other devices behind the same address still get in, and the throttled
 * one is told to retry later (a retryable refusal, never "bad credentials"). The tables are
 * bounded.
 *
 * @module
 */

import type { Principal } from "./acl.ts";
import { FailureWindow } from "./failure_window.ts";
import { defaultLimits } from "./options.ts";
import type { DeviceRegistry } from "./registry.ts";
import { type LoginRefusalReason, type Refusal, refusal } from "./refusal.ts";
import { isDeviceId } from "./topics.ts";

/** What a client presents. */
export interface LoginRequest {
  /** The identity claimed: a device id or, with `services`, a service account name. Absent: anonymous. */
  user?: string;
  /** Token or password. */
  secret?: string;
  /** The user name may also name a service account (MQTT user names). @default false */
  services?: boolean;
  /**
   * With `services`: the device id an anonymous client speaks for (presence, per-device order and
   * counters), if any. Without `services`, an anonymous login speaks for `user`.
   */
  anonymousId?: string;
}

/**
 * Who logged in: the principal the ACL judges, and the device it speaks for (if any). Made only by
 * the login gate (and by the core for its own services); adapters keep it for the connection and
 * pass it to every publish.
 */
export class Identity {
  /** The principal the ACL judges. */
  readonly principal: Principal;
  /** The device this identity speaks for: its messages are that device's. */
  readonly deviceId: string | undefined;
  /**
   * The last topic this identity was allowed to publish to: devices repeat their topics, so the
   * ACL is consulted once per new topic. Written only by the core.
   */
  lastAllowed: string | undefined = undefined;
  /**
   * Presence that waits for this identity's first publish under its device's topics (an
   * anonymous MQTT client is its device only once it sends as one), set by `DevicePort.attach`.
   * Written only by the core.
   */
  presenceOnPublish: (() => void) | undefined = undefined;

  /** Wraps a principal. */
  constructor(principal: Principal, deviceId?: string) {
    this.principal = principal;
    this.deviceId = deviceId;
  }

  /**
   * True for a service of the gateway that republishes what it derives from messages the core
   * already accepted (a rule): its messages are admitted as derived (see `DevicePort.service`).
   * Only identities the core gives out are.
   */
  get derived(): boolean {
    return false;
  }

  /** A key naming the identity across sessions (`device:x`, `service:y`, `anonymous:z`). */
  get key(): string {
    const p = this.principal;
    return p.kind === "service" ? `service:${p.name}` : `${p.kind}:${p.id ?? ""}`;
  }
}

/** Tunables of {@link LoginGate}. */
export interface LoginGateOptions {
  /** Failed logins per identity and address per minute before it is throttled (0 = off). @default 20 */
  failuresPerMinute?: number;
  /** Identity/address pairs tracked at most; the oldest is forgotten past it. @default 100000 */
  maxTracked?: number;
  /** Time source. @default Date.now */
  now?: () => number;
}

/**
 * Authenticates logins and throttles repeated failures.
 *
 * @example
 * ```ts
 * import { DeviceRegistry } from "./registry.ts";
 * import { Identity, LoginGate } from "./login.ts";
 * const gate = new LoginGate(new DeviceRegistry({ devices: [{ id: "d1", token: "t" }] }), { failuresPerMinute: 1 });
 * const ok = gate.login({ user: "d1", secret: "t" }, "10.0.0.1");
 * if (!(ok instanceof Identity) || ok.deviceId !== "d1") throw new Error("refused");
 * gate.login({ user: "d1", secret: "x" }, "10.0.0.2");
 * const again = gate.login({ user: "d1", secret: "t" }, "10.0.0.2");
 * if (again instanceof Identity || again.reason !== "throttled") throw new Error("not throttled");
 * if (!(gate.login({ user: "d1", secret: "t" }, "10.0.0.3") instanceof Identity)) throw new Error();
 * ```
 */
export class LoginGate {
  #registry: DeviceRegistry;
  #now: () => number;
  #failures: FailureWindow;

  /** Creates the gate over `registry`. */
  constructor(registry: DeviceRegistry, options: LoginGateOptions = {}) {
    this.#registry = registry;
    this.#failures = new FailureWindow(
      options.failuresPerMinute ?? defaultLimits.authFailuresPerMinute,
      options.maxTracked ?? 100_000,
    );
    this.#now = options.now ?? Date.now;
  }

  /** Identity/address pairs with failures on record. */
  get tracked(): number {
    return this.#failures.size;
  }

  /** Logs `request` in from `address`: an identity, or a typed refusal. */
  login(request: LoginRequest, address: string): Identity | Refusal<LoginRefusalReason> {
    const key = `${request.user ?? ""}@${address}`;
    const wait = this.#failures.waitMs(key, this.#now());
    if (wait > 0) {
      return refusal(
        "throttled",
        `Cannot log in: too many failed logins from ${address} for "${request.user ?? ""}"`,
        wait,
      );
    }
    const result = this.#authenticate(request);
    if (
      !(result instanceof Identity) &&
      (result.reason === "bad_credentials" || result.reason === "no_credentials")
    ) this.#failures.fail(key, this.#now());
    return result;
  }

  #authenticate(r: LoginRequest): Identity | Refusal<LoginRefusalReason> {
    const reg = this.#registry;
    if (r.user === undefined) {
      if (!reg.anonymous) {
        return refusal("no_credentials", "Cannot log in: anonymous clients are not allowed");
      }
      const id = r.anonymousId !== undefined && isDeviceId(r.anonymousId)
        ? r.anonymousId
        : undefined;
      return new Identity({ kind: "anonymous", id }, id);
    }
    const secret = r.secret ?? "";
    if (r.services && reg.hasService(r.user) && !reg.hasCredentials(r.user)) {
      // A service account's name is no device: anonymous access must not shadow the account.
      const svc = reg.authenticateService(r.user, secret);
      if (svc.ok) return new Identity(svc.principal);
      return refusal("bad_credentials", "Cannot log in: bad user name or password");
    }
    const dev = reg.authenticate(r.user, secret);
    if (dev.ok) {
      const p = dev.principal;
      if (p.kind !== "anonymous") return new Identity(p, r.user);
      // Anonymous access and an unknown device id: speaks for that device, except where the
      // protocol names devices otherwise (MQTT: the adapter says which, if any).
      const id = r.services ? r.anonymousId : r.user;
      return new Identity({ kind: "anonymous", id }, id);
    }
    if (r.services) {
      const svc = reg.authenticateService(r.user, secret);
      if (svc.ok) return new Identity(svc.principal);
      if (dev.reason === "bad_id" && reg.anonymous) {
        // A user name that is no device id, in anonymous mode: treated like a client without
        // credentials (as mosquitto's allow_anonymous does), which grants nothing more.
        const id = r.anonymousId !== undefined && isDeviceId(r.anonymousId)
          ? r.anonymousId
          : undefined;
        return new Identity({ kind: "anonymous", id }, id);
      }
      return refusal("bad_credentials", "Cannot log in: bad user name or password");
    }
    if (dev.reason === "bad_id") {
      return refusal("bad_id", `Cannot log in: "${r.user}" is not a valid device id`);
    }
    return refusal("bad_credentials", `Cannot log in: bad credentials for "${r.user}"`);
  }
}
