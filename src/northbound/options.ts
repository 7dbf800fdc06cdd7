/**
 * The northbound configuration: one flat, JSON-friendly {@link NorthboundOptions} (what the config
 * file's `northbound` section and the `--upstream`/`--gateway-id` flags fill in), its defaults, and
 * {@link resolveNorthboundOptions}, which validates it and parses the upstream URL.
 *
 * @module
 */

import type { SpoolFullPolicy } from "./spool.ts";

/** Spool settings of {@link NorthboundOptions}. */
export interface NorthboundSpoolOptions {
  /** File name, relative to the data directory (or absolute). @default "northbound-spool.db" */
  file?: string;
  /** Largest stored bytes (topic + payload + 32 per message). @default 268435456 (256 MiB) */
  maxBytes?: number;
  /** Seconds a message may wait for the upstream before it is dropped. @default 604800 (7 days) */
  ttlSec?: number;
  /** Policy when full: drop the oldest messages, or refuse new ones. @default "drop-oldest" */
  fullPolicy?: SpoolFullPolicy;
  /** `full` fsyncs every commit (survives power loss); `normal` survives crashes only. @default "full" */
  synchronous?: "full" | "normal";
  /** On a corrupt file: `fail` (refuse to start) or `set-aside` (rename it, start empty). @default "fail" */
  onCorrupt?: "fail" | "set-aside";
}

/** Everything configurable about the northbound bridge. */
export interface NorthboundOptions {
  /** Upstream broker: `mqtt://host[:1883]` or `mqtts://host[:8883]`, optionally `user:pass@`. */
  url: string;
  /** This gateway's id, used in the prefix and the client id. */
  gatewayId: string;
  /** Upstream topic prefix; `{gatewayId}` is substituted. @default "ferry/{gatewayId}" */
  prefix?: string;
  /** Local topic filters forwarded upstream. @default ["devices/#"] */
  forward?: string[];
  /** Local topic filters never forwarded. @default ["devices/+/commands/#"] */
  exclude?: string[];
  /** MQTT client id. @default "ferry-{gatewayId}" */
  clientId?: string;
  /** User name (overrides the URL's). */
  username?: string;
  /** Password (overrides the URL's). Never logged. */
  password?: string;
  /** PEM file of CA certificates to trust (mqtts). */
  caFile?: string;
  /** PEM client certificate chain for mutual TLS. */
  certFile?: string;
  /** PEM client private key for mutual TLS. */
  keyFile?: string;
  /** MQTT keepalive, seconds. @default 30 */
  keepAliveSec?: number;
  /** 4 = MQTT 3.1.1, 5 = MQTT 5.0. @default 4 */
  protocolVersion?: 4 | 5;
  /** Clean session / clean start. @default false */
  cleanSession?: boolean;
  /** MQTT 5 session expiry, seconds. @default 86400 */
  sessionExpirySec?: number;
  /** Upstream publishes awaiting PUBACK at most. @default 1000 */
  inflight?: number;
  /** Replay pace after an outage, messages/s (0 = unpaced). @default 10000 */
  replayRatePerSec?: number;
  /** First reconnect backoff ceiling, ms. @default 500 */
  backoffBaseMs?: number;
  /** Largest reconnect backoff ceiling, ms. @default 30000 */
  backoffCapMs?: number;
  /** A connection up this long resets the backoff, ms. @default 10000 */
  stableAfterMs?: number;
  /** TCP/TLS + CONNACK timeout, ms. @default 10000 */
  connectTimeoutMs?: number;
  /** TTL expiry and compaction interval, ms. @default 5000 */
  housekeepingMs?: number;
  /** Compact a drained spool whose free pages exceed this many bytes. @default 8388608 */
  compactAboveBytes?: number;
  /** Publish retained `online`/`offline` (will) on `{prefix}/status`. @default true */
  presence?: boolean;
  /** The spool. */
  spool?: NorthboundSpoolOptions;
}

/** Options with every default filled in and the URL taken apart. */
export interface ResolvedNorthboundOptions extends
  Required<
    Omit<NorthboundOptions, "username" | "password" | "caFile" | "certFile" | "keyFile" | "spool">
  > {
  /** Broker host. */
  hostname: string;
  /** Broker port. */
  port: number;
  /** TLS on. */
  tls: boolean;
  /** URL without credentials, for logs. */
  displayUrl: string;
  /** User name. */
  username?: string;
  /** Password. */
  password?: string;
  /** CA file. */
  caFile?: string;
  /** Client certificate file. */
  certFile?: string;
  /** Client key file. */
  keyFile?: string;
  /** Spool settings. */
  spool: Required<NorthboundSpoolOptions>;
}

/** Defaults of {@link NorthboundOptions}. */
export const defaultNorthboundOptions = {
  prefix: "ferry/{gatewayId}",
  forward: ["devices/#"],
  exclude: ["devices/+/commands/#"],
  keepAliveSec: 30,
  protocolVersion: 4 as 4 | 5,
  cleanSession: false,
  sessionExpirySec: 86_400,
  inflight: 1000,
  replayRatePerSec: 10_000,
  backoffBaseMs: 500,
  backoffCapMs: 30_000,
  stableAfterMs: 10_000,
  connectTimeoutMs: 10_000,
  housekeepingMs: 5000,
  compactAboveBytes: 8 * 1024 * 1024,
  presence: true,
  spool: {
    file: "northbound-spool.db",
    maxBytes: 256 * 1024 * 1024,
    ttlSec: 604_800,
    fullPolicy: "drop-oldest" as SpoolFullPolicy,
    synchronous: "full" as "full" | "normal",
    onCorrupt: "fail" as "fail" | "set-aside",
  },
} as const;

function positive(name: string, v: number, min = 1): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < min) {
    throw new RangeError(`Invalid northbound option ${name}: must be a number >= ${min}, got ${v}`);
  }
  return v;
}

/**
 * Validates options and fills in defaults.
 *
 * @example
 * ```ts
 * import { resolveNorthboundOptions } from "./options.ts";
 * const o = resolveNorthboundOptions({ url: "mqtts://u:p@cloud.example:8884", gatewayId: "gw1" });
 * if (o.hostname !== "cloud.example" || o.port !== 8884 || !o.tls) throw new Error();
 * if (o.username !== "u" || o.clientId !== "ferry-gw1" || o.displayUrl.includes("p@")) throw new Error();
 * if (resolveNorthboundOptions({ url: "mqtt://h", gatewayId: "g" }).port !== 1883) throw new Error();
 * ```
 */
export function resolveNorthboundOptions(options: NorthboundOptions): ResolvedNorthboundOptions {
  const d = defaultNorthboundOptions;
  if (!options.gatewayId || !/^[A-Za-z0-9._:-]{1,64}$/.test(options.gatewayId)) {
    throw new TypeError(
      `Invalid northbound option gatewayId: "${options.gatewayId}" must be 1..64 of [A-Za-z0-9._:-]`,
    );
  }
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new TypeError(
      `Invalid upstream URL "${options.url}": expected mqtt://host:port or mqtts://host:port`,
    );
  }
  if (url.protocol !== "mqtt:" && url.protocol !== "mqtts:") {
    throw new TypeError(`Invalid upstream URL "${options.url}": scheme must be mqtt: or mqtts:`);
  }
  const tls = url.protocol === "mqtts:";
  const port = url.port ? Number(url.port) : tls ? 8883 : 1883;
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (!hostname) throw new TypeError(`Invalid upstream URL "${options.url}": no host`);
  const version = options.protocolVersion ?? d.protocolVersion;
  if (version !== 4 && version !== 5) {
    throw new RangeError(
      `Invalid northbound option protocolVersion: must be 4 or 5, got ${version}`,
    );
  }
  const s = options.spool ?? {};
  const fullPolicy = s.fullPolicy ?? d.spool.fullPolicy;
  if (fullPolicy !== "drop-oldest" && fullPolicy !== "refuse-new") {
    throw new RangeError(
      `Invalid spool option fullPolicy: "${fullPolicy}" (drop-oldest or refuse-new)`,
    );
  }
  const inflight = positive("inflight", options.inflight ?? d.inflight);
  if (inflight > 65535 || !Number.isInteger(inflight)) {
    throw new RangeError(`Invalid northbound option inflight: must be an integer 1..65535`);
  }
  const baseMs = positive("backoffBaseMs", options.backoffBaseMs ?? d.backoffBaseMs);
  const capMs = positive("backoffCapMs", options.backoffCapMs ?? d.backoffCapMs);
  if (capMs < baseMs) {
    throw new RangeError("Invalid northbound options: backoffCapMs < backoffBaseMs");
  }
  return {
    url: options.url,
    gatewayId: options.gatewayId,
    prefix: options.prefix ?? d.prefix,
    forward: options.forward ?? [...d.forward],
    exclude: options.exclude ?? [...d.exclude],
    clientId: options.clientId ?? `ferry-${options.gatewayId}`,
    username: options.username ?? (url.username ? decodeURIComponent(url.username) : undefined),
    password: options.password ?? (url.password ? decodeURIComponent(url.password) : undefined),
    caFile: options.caFile,
    certFile: options.certFile,
    keyFile: options.keyFile,
    keepAliveSec: positive("keepAliveSec", options.keepAliveSec ?? d.keepAliveSec, 0),
    protocolVersion: version,
    cleanSession: options.cleanSession ?? d.cleanSession,
    sessionExpirySec: positive(
      "sessionExpirySec",
      options.sessionExpirySec ?? d.sessionExpirySec,
      0,
    ),
    inflight,
    replayRatePerSec: positive(
      "replayRatePerSec",
      options.replayRatePerSec ?? d.replayRatePerSec,
      0,
    ),
    backoffBaseMs: baseMs,
    backoffCapMs: capMs,
    stableAfterMs: positive("stableAfterMs", options.stableAfterMs ?? d.stableAfterMs, 0),
    connectTimeoutMs: positive("connectTimeoutMs", options.connectTimeoutMs ?? d.connectTimeoutMs),
    housekeepingMs: positive("housekeepingMs", options.housekeepingMs ?? d.housekeepingMs),
    compactAboveBytes: positive(
      "compactAboveBytes",
      options.compactAboveBytes ?? d.compactAboveBytes,
      0,
    ),
    presence: options.presence ?? d.presence,
    hostname,
    port,
    tls,
    displayUrl: `${url.protocol}//${url.host}`,
    spool: {
      file: s.file ?? d.spool.file,
      maxBytes: positive("spool.maxBytes", s.maxBytes ?? d.spool.maxBytes),
      ttlSec: positive("spool.ttlSec", s.ttlSec ?? d.spool.ttlSec, 0.001),
      fullPolicy,
      synchronous: s.synchronous ?? d.spool.synchronous,
      onCorrupt: s.onCorrupt ?? d.spool.onCorrupt,
    },
  };
}
