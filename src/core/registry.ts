/**
 * The device registry: credentials, the live session of each device (one at a time: a new session
 * for a connected id takes over), presence (`online`/`offline`), per-device counters, and every
 * session or stream opened under an identity, so that a credential change closes all of them on
 * every protocol.
 *
 * @module
 */

import { type DeviceAclRules, devicePrincipal, type Principal } from "./acl.ts";
import { type Attachment, Attachments } from "./attachments.ts";
import { secretEquals, verifyToken } from "./credentials.ts";
import type { Identity } from "./login.ts";
import type { Protocol } from "./message.ts";
import type { SessionDescription } from "./session_directory.ts";
import { isDeviceId } from "./topics.ts";

/** Why a session was closed by the core. */
export type CloseCode =
  | "taken_over"
  | "keepalive_timeout"
  | "shutting_down"
  | "removed"
  | "protocol_error"
  | "slow_consumer"
  | "administrative";

/** A close request with a human reason. */
export interface CloseReason {
  /** Machine-readable cause; adapters map it to their wire codes. */
  code: CloseCode;
  /** Human-readable detail. */
  message: string;
}

/** What the core needs of a protocol session. */
export interface SessionHandle {
  /** Unique id of this connection/session. */
  readonly sessionId: string;
  /** Protocol of the session. */
  readonly protocol: Protocol;
  /** Closes the session, telling the peer why when the protocol can. Idempotent. */
  close(reason: CloseReason): void;
  /** What the connection shows of itself (remote address, version, keepalive, …), if it can. */
  describe?(): SessionDescription;
}

/** A device known to the gateway, with its live state. */
export interface DeviceRecord {
  /** Device id. */
  id: string;
  /** Protocol of the last session or request. */
  protocol?: Protocol;
  /** Presence. */
  state: "online" | "offline";
  /** Last frame/request (clock ms), 0 if never. */
  lastSeen: number;
  /** Counters. */
  messagesIn: number;
  /** Messages delivered to the device. */
  messagesOut: number;
  /** Errors attributed to the device. */
  errors: number;
  /** Live session, if connected. */
  session?: SessionHandle;
  /** Where its last sessionless request came from (`host:port` or host), if the adapter said. */
  address?: string;
}

/** A credential entry from the configuration (`token` plain or `tokenHash` salted). */
export interface DeviceCredential {
  /** Device id. */
  id: string;
  /** Plain token (config files on trusted disks; prefer `tokenHash`). */
  token?: string;
  /** `sha256:<salt>:<digest>` as made by `hashToken`. */
  tokenHash?: string;
}

/** A service account (apps, dashboards) with topic ACLs. */
export interface ServiceAccount {
  /** Account name (MQTT username). */
  name: string;
  /** Plain token/password. */
  token?: string;
  /** Salted hash of it. */
  tokenHash?: string;
  /** Filters it may publish to. */
  publish: string[];
  /** Filters it may subscribe to. */
  subscribe: string[];
}

/** Result of an authentication attempt. */
export type AuthResult =
  | { ok: true; principal: Principal }
  | { ok: false; reason: "bad_id" | "bad_credentials" };

/** Tunables of {@link DeviceRegistry}. */
export interface RegistryOptions {
  /** Known devices. */
  devices?: DeviceCredential[];
  /** Service accounts. */
  services?: ServiceAccount[];
  /** Accept unknown ids with any token. @default false */
  anonymous?: boolean;
  /** ACL rules for devices (`{id}` substituted); the built-in default rules when absent. */
  deviceAcl?: DeviceAclRules;
  /** Called on every presence change. */
  onPresence?: (
    id: string,
    state: "online" | "offline",
    protocol?: Protocol,
    reason?: string,
  ) => void;
  /** Time source. @default Date.now */
  now?: () => number;
}

function sameService(a: ServiceAccount, b: ServiceAccount): boolean {
  return a.token === b.token && a.tokenHash === b.tokenHash &&
    a.publish.join("\n") === b.publish.join("\n") &&
    a.subscribe.join("\n") === b.subscribe.join("\n");
}

function checkSecret(given: string, c: { token?: string; tokenHash?: string }): boolean {
  if (c.tokenHash) return verifyToken(given, c.tokenHash);
  if (c.token !== undefined) return secretEquals(given, c.token);
  return false;
}

/**
 * Devices, credentials, sessions and presence.
 *
 * @example
 * ```ts
 * import { DeviceRegistry } from "./registry.ts";
 * const reg = new DeviceRegistry({ devices: [{ id: "s1", token: "t" }] });
 * if (!reg.authenticate("s1", "t").ok || reg.authenticate("s1", "x").ok) throw new Error();
 * ```
 */
export class DeviceRegistry {
  #devices = new Map<string, DeviceRecord>();
  #creds = new Map<string, DeviceCredential>();
  #services = new Map<string, ServiceAccount>();
  #anonymous: boolean;
  #attachments = new Attachments();
  #deviceAcl: DeviceAclRules | undefined;
  #onPresence?: RegistryOptions["onPresence"];
  #now: () => number;

  /** Creates a registry. */
  constructor(options: RegistryOptions = {}) {
    this.#anonymous = options.anonymous ?? false;
    this.#deviceAcl = options.deviceAcl;
    this.#onPresence = options.onPresence;
    this.#now = options.now ?? Date.now;
    this.setCredentials(options.devices ?? [], options.services ?? []);
  }

  /** Whether unknown devices are let in. */
  get anonymous(): boolean {
    return this.#anonymous;
  }

  /**
   * Turns anonymous access on or off (live); turning it off closes every session and stream of
   * anonymous clients and of devices without credentials.
   */
  setAnonymous(on: boolean): void {
    const was = this.#anonymous;
    this.#anonymous = on;
    if (!was || on) return;
    const reason: CloseReason = { code: "removed", message: "anonymous access was turned off" };
    this.#attachments.revoke((key) => key.startsWith("anonymous:"), reason);
    for (const rec of this.#devices.values()) {
      if (rec.session && !this.#creds.has(rec.id)) rec.session.close(reason);
    }
  }

  /**
   * Replaces credentials (live reload). Every session and stream of a device whose credentials
   * were removed or changed, and of a service account removed or changed (token or ACL), is
   * closed: it authenticated with what is no longer valid.
   */
  setCredentials(devices: DeviceCredential[], services: ServiceAccount[] = []): void {
    const oldDevices = this.#creds;
    const oldServices = this.#services;
    this.#creds = new Map(devices.map((d) => [d.id, d]));
    this.#services = new Map(services.map((s) => [s.name, s]));
    const revoked = new Set<string>();
    for (const [id, before] of oldDevices) {
      const now = this.#creds.get(id);
      if (!now || now.token !== before.token || now.tokenHash !== before.tokenHash) {
        revoked.add(`device:${id}`);
        const rec = this.#devices.get(id);
        rec?.session?.close({
          code: "removed",
          message: now ? `credentials of ${id} changed` : `device ${id} was removed`,
        });
      }
    }
    for (const [name, before] of oldServices) {
      const now = this.#services.get(name);
      if (!now || !sameService(now, before)) revoked.add(`service:${name}`);
    }
    if (!this.#anonymous) {
      // A removed device is no longer one of the gateway's: its record goes once it has no
      // session (now, or when its closing session detaches).
      for (const [id] of oldDevices) {
        const rec = this.#devices.get(id);
        if (!this.#creds.has(id) && rec && !rec.session) this.#devices.delete(id);
      }
    }
    if (revoked.size) {
      this.#attachments.revoke((key) => revoked.has(key), {
        code: "removed",
        message: "credentials changed",
      });
    }
    if (!this.#anonymous) {
      // Devices that got in anonymously before credentials existed: no longer allowed.
      for (const rec of this.#devices.values()) {
        if (rec.session && !this.#creds.has(rec.id) && !revoked.has(`device:${rec.id}`)) {
          rec.session.close({ code: "removed", message: `device ${rec.id} was removed` });
        }
      }
      this.#attachments.revoke((key) => key.startsWith("anonymous:"), {
        code: "removed",
        message: "anonymous access is off",
      });
    }
  }

  /**
   * Tracks a session or stream opened under `who` until it detaches; it is closed with `removed`
   * when those credentials stop being valid.
   */
  track(who: Identity, handle: SessionHandle): Attachment {
    return this.#attachments.attach(who, handle);
  }

  /** Sessions and streams tracked. */
  get tracked(): number {
    return this.#attachments.size;
  }

  /** True when `id` has credentials. */
  hasCredentials(id: string): boolean {
    return this.#creds.has(id);
  }

  /** True when `name` is a service account. */
  hasService(name: string): boolean {
    return this.#services.has(name);
  }

  /** Number of devices with credentials. */
  get credentialCount(): number {
    return this.#creds.size;
  }

  /** Checks a device's id and token. */
  authenticate(id: string, token: string): AuthResult {
    if (!isDeviceId(id)) return { ok: false, reason: "bad_id" };
    const cred = this.#creds.get(id);
    if (cred) {
      return checkSecret(token, cred)
        ? { ok: true, principal: devicePrincipal(id, this.#deviceAcl) }
        : { ok: false, reason: "bad_credentials" };
    }
    if (this.#anonymous) return { ok: true, principal: { kind: "anonymous", id } };
    return { ok: false, reason: "bad_credentials" };
  }

  /** Checks a service account (MQTT username/password). */
  authenticateService(name: string, token: string): AuthResult {
    const acct = this.#services.get(name);
    if (!acct || !checkSecret(token, acct)) return { ok: false, reason: "bad_credentials" };
    return {
      ok: true,
      principal: { kind: "service", name, publish: acct.publish, subscribe: acct.subscribe },
    };
  }

  /** The service account `name` as configured now (read-only), if any. */
  service(name: string): Readonly<ServiceAccount> | undefined {
    return this.#services.get(name);
  }

  /** The record of a device (created on first use). */
  device(id: string): DeviceRecord {
    let rec = this.#devices.get(id);
    if (!rec) {
      // Every field from the start: one object shape, fields kept in-object (tens of thousands).
      rec = {
        id,
        protocol: undefined,
        state: "offline",
        lastSeen: 0,
        messagesIn: 0,
        messagesOut: 0,
        errors: 0,
        session: undefined,
        address: undefined,
      };
      this.#devices.set(id, rec);
    }
    return rec;
  }

  /** A device's record if the gateway has seen it. */
  get(id: string): DeviceRecord | undefined {
    return this.#devices.get(id);
  }

  /** Every device seen or configured. */
  list(): DeviceRecord[] {
    for (const id of this.#creds.keys()) this.device(id);
    return [...this.#devices.values()];
  }

  /** Devices online now, by protocol. */
  onlineByProtocol(): Map<Protocol, number> {
    const out = new Map<Protocol, number>();
    for (const d of this.#devices.values()) {
      if (d.state === "online" && d.protocol) {
        out.set(d.protocol, (out.get(d.protocol) ?? 0) + 1);
      }
    }
    return out;
  }

  /**
   * Makes `session` the device's live session. A previous session is closed with
   * `taken_over` ([MQTT-3.1.4-2], FBP/1 ERROR 8) and returned.
   */
  attach(id: string, session: SessionHandle): SessionHandle | undefined {
    const rec = this.device(id);
    const prev = rec.session;
    rec.session = session;
    rec.protocol = session.protocol;
    rec.lastSeen = this.#now();
    if (prev && prev !== session) {
      prev.close({ code: "taken_over", message: `session taken over by a new connection` });
    }
    this.#setState(rec, "online");
    return prev !== session ? prev : undefined;
  }

  /**
   * Ends `session` for the device (`reason`: why, for the presence log); presence goes offline
   * unless another session took over.
   */
  detach(id: string, session: SessionHandle, reason = "closed"): void {
    const rec = this.#devices.get(id);
    if (!rec || rec.session !== session) return;
    rec.session = undefined;
    this.#setState(rec, "offline", reason);
    // Removed while connected (and no anonymous access): forgotten once offline.
    if (!this.#anonymous && !this.#creds.has(id)) this.#devices.delete(id);
  }

  /**
   * Marks activity of a device; a sessionless device (CoAP, HTTP) goes online. `address`: where
   * its request came from.
   */
  touch(id: string, protocol?: Protocol, address?: string): DeviceRecord {
    const rec = this.device(id);
    rec.lastSeen = this.#now();
    if (address !== undefined) rec.address = address;
    if (protocol && !rec.session) {
      rec.protocol = protocol;
      this.#setState(rec, "online");
    }
    return rec;
  }

  /** Marks a sessionless device offline (idle timeout). No effect while it has a session. */
  markIdle(id: string): void {
    const rec = this.#devices.get(id);
    if (rec && !rec.session) this.#setState(rec, "offline", "idle_timeout");
  }

  /** Closes every live session with `reason`. */
  closeAll(reason: CloseReason): void {
    for (const rec of this.#devices.values()) rec.session?.close(reason);
  }

  #setState(rec: DeviceRecord, state: "online" | "offline", reason?: string): void {
    if (rec.state === state) return;
    rec.state = state;
    this.#onPresence?.(rec.id, state, rec.protocol, reason);
  }
}
