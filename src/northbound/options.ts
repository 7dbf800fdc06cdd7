/**
 * The northbound configuration: one bridge is a flat, JSON-friendly {@link NorthboundOptions}
 * (what the config file's `northbound` section and the `--upstream`/`--gateway-id` flags fill
 * in); `northbound` may also be a list of them (several bridges, each with its own name and spool
 * partition). Here too: the defaults, the config-schema fragment ({@link northboundBridgeSchema}),
 * and {@link resolveNorthboundList}, which validates everything (URLs, filters, rewrite rules,
 * names, the shared spool file) and takes the URLs apart.
 *
 * @module
 */

import { bool, int, list, obj, oneOf, optional, str } from "../config/schema.ts";
import type { SpoolFullPolicy } from "./spool.ts";
import { TopicMap } from "./topic_map.ts";
import type { RewriteRule } from "./topic_rewrite.ts";

/** Spool settings of {@link NorthboundOptions}. */
export interface NorthboundSpoolOptions {
  /** File name, relative to the data directory (or absolute); shared by every bridge. @default "northbound-spool.db" */
  file?: string;
  /** This bridge's partition bound (topic + payload + 32 per message). @default 268435456 (256 MiB) */
  maxBytes?: number;
  /** Bytes one device may hold in this bridge's partition (0: a quarter of maxBytes). @default 0 */
  maxBytesPerDevice?: number;
  /** Seconds a message may wait for the upstream before it is dropped. @default 604800 (7 days) */
  ttlSec?: number;
  /** Policy when a quota is reached: refuse new messages, or drop the oldest (loses acknowledged data). @default "refuse-new" */
  fullPolicy?: SpoolFullPolicy;
  /** `full` fsyncs every commit (survives power loss); `normal` survives crashes only. @default "full" */
  synchronous?: "full" | "normal";
  /** On a corrupt file: `fail` (refuse to start) or `set-aside` (rename it, start empty). @default "fail" */
  onCorrupt?: "fail" | "set-aside";
  /** Run SQLite in a worker thread (false: on the main thread). @default true */
  worker?: boolean;
  /** Bytes of dead letters kept (the oldest go first). @default 16777216 */
  deadLetterMaxBytes?: number;
}

/** Everything configurable about one northbound bridge. */
export interface NorthboundOptions {
  /** Bridge name: its spool partition and metrics label; stable across restarts. @default "default" (the first), "bridge{n}" */
  name?: string;
  /** Upstream broker: `mqtt://host[:1883]` or `mqtts://host[:8883]`, optionally `user:pass@`. */
  url?: string;
  /** Upstream brokers in failover order (the first is the primary); instead of `url`. */
  urls?: string[];
  /** While on a secondary, try the primary again every this many seconds (0: stay). @default 60 */
  primaryReturnSec?: number;
  /** This gateway's id, used in the prefix and the client id. */
  gatewayId: string;
  /** Upstream topic prefix; `{gatewayId}` is substituted. @default "ferry/{gatewayId}" */
  prefix?: string;
  /** Local topic filters forwarded upstream. @default ["devices/#"] */
  forward?: string[];
  /** Local topic filters never forwarded. @default ["devices/+/commands/#"] */
  exclude?: string[];
  /** Topic rewrite rules, both directions (see `topic_rewrite.ts`). @default [] */
  rewrite?: RewriteRule[];
  /** MQTT client id. @default "ferry-{gatewayId}" (first bridge), "ferry-{gatewayId}-{name}" */
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
  /** QoS of upstream publishes: 1 (at least once) or 2 (exactly once to the broker). @default 1 */
  qos?: 1 | 2;
  /** Upstream publishes awaiting acknowledgement at most (also capped by the broker's Receive Maximum). @default 1000 */
  inflight?: number;
  /** Largest packet sent upstream, bytes (also capped by the broker's Maximum Packet Size); larger messages are refused. 0: no limit of our own. @default 0 */
  maxPacketSize?: number;
  /** Use MQTT 5 topic aliases when the broker allows them. @default true */
  topicAliases?: boolean;
  /** A message in flight each time the link dropped this many times goes to the dead letters. @default 3 */
  maxLinkDrops?: number;
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

/** The `northbound` config section: one bridge, or several. */
export type NorthboundConfig = NorthboundOptions | NorthboundOptions[];

/** One upstream broker address. */
export interface UpstreamAddress {
  /** Broker host. */
  hostname: string;
  /** Broker port. */
  port: number;
  /** TLS on. */
  tls: boolean;
  /** URL without credentials, for logs and metrics. */
  displayUrl: string;
  /** User name from the URL. */
  username?: string;
  /** Password from the URL. */
  password?: string;
}

/** Options with every default filled in and the URLs taken apart. */
export interface ResolvedNorthboundOptions extends
  Required<
    Omit<
      NorthboundOptions,
      "username" | "password" | "caFile" | "certFile" | "keyFile" | "spool" | "url" | "urls"
    >
  >,
  UpstreamAddress { // the primary's address; credentials from the options or its URL
  /** The primary URL as given. */
  url: string;
  /** Every upstream, primary first. */
  upstreams: UpstreamAddress[];
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
  primaryReturnSec: 60,
  keepAliveSec: 30,
  protocolVersion: 4 as 4 | 5,
  cleanSession: false,
  sessionExpirySec: 86_400,
  qos: 1 as 1 | 2,
  inflight: 1000,
  maxPacketSize: 0,
  topicAliases: true,
  maxLinkDrops: 3,
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
    maxBytesPerDevice: 0,
    ttlSec: 604_800,
    fullPolicy: "refuse-new" as SpoolFullPolicy,
    synchronous: "full" as "full" | "normal",
    onCorrupt: "fail" as "fail" | "set-aside",
    worker: true,
    deadLetterMaxBytes: 16 * 1024 * 1024,
  },
} as const;

function positive(name: string, v: number, min = 1): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < min) {
    throw new RangeError(`Invalid northbound option ${name}: must be a number >= ${min}, got ${v}`);
  }
  return v;
}

/** Parses one upstream URL. */
export function parseUpstreamUrl(text: string): UpstreamAddress {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TypeError(
      `Invalid upstream URL "${text}": expected mqtt://host:port or mqtts://host:port`,
    );
  }
  if (url.protocol !== "mqtt:" && url.protocol !== "mqtts:") {
    throw new TypeError(`Invalid upstream URL "${text}": scheme must be mqtt: or mqtts:`);
  }
  const tls = url.protocol === "mqtts:";
  const port = url.port ? Number(url.port) : tls ? 8883 : 1883;
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (!hostname) throw new TypeError(`Invalid upstream URL "${text}": no host`);
  return {
    hostname,
    port,
    tls,
    displayUrl: `${url.protocol}//${url.host}`,
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
  };
}

/**
 * Validates one bridge's options and fills in defaults (`index`: its place in the list, for the
 * default name and client id).
 *
 * @example
 * ```ts
 * import { resolveNorthboundOptions } from "./options.ts";
 * const o = resolveNorthboundOptions({ url: "mqtts://u:p@cloud.example:8884", gatewayId: "gw1" });
 * if (o.hostname !== "cloud.example" || o.port !== 8884 || !o.tls) throw new Error();
 * if (o.username !== "u" || o.clientId !== "ferry-gw1" || o.displayUrl.includes("p@")) throw new Error();
 * if (o.name !== "default" || o.spool.fullPolicy !== "refuse-new") throw new Error();
 * if (resolveNorthboundOptions({ url: "mqtt://h", gatewayId: "g" }).port !== 1883) throw new Error();
 * ```
 */
export function resolveNorthboundOptions(
  options: NorthboundOptions,
  index = 0,
): ResolvedNorthboundOptions {
  const d = defaultNorthboundOptions;
  if (!options.gatewayId || !/^[A-Za-z0-9._:-]{1,64}$/.test(options.gatewayId)) {
    throw new TypeError(
      `Invalid northbound option gatewayId: "${options.gatewayId}" must be 1..64 of [A-Za-z0-9._:-]`,
    );
  }
  const name = options.name ?? (index === 0 ? "default" : `bridge${index + 1}`);
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
    throw new TypeError(
      `Invalid northbound option name: "${name}" must be 1..64 of [A-Za-z0-9._-]`,
    );
  }
  const urls = options.urls ?? (options.url === undefined ? [] : [options.url]);
  if (options.urls && options.url !== undefined && options.urls[0] !== options.url) {
    throw new TypeError(`Invalid northbound options: give url or urls, not both`);
  }
  if (urls.length === 0) throw new TypeError(`Invalid northbound options: url is required`);
  const upstreams = urls.map(parseUpstreamUrl);
  const primary = upstreams[0];
  const version = options.protocolVersion ?? d.protocolVersion;
  if (version !== 4 && version !== 5) {
    throw new RangeError(
      `Invalid northbound option protocolVersion: must be 4 or 5, got ${version}`,
    );
  }
  const qos = options.qos ?? d.qos;
  if (qos !== 1 && qos !== 2) {
    throw new RangeError(`Invalid northbound option qos: must be 1 or 2, got ${qos}`);
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
  const maxPacketSize = positive("maxPacketSize", options.maxPacketSize ?? d.maxPacketSize, 0);
  if (maxPacketSize > 0 && maxPacketSize < 64) {
    throw new RangeError("Invalid northbound option maxPacketSize: at least 64 bytes, or 0");
  }
  const o: ResolvedNorthboundOptions = {
    name,
    url: urls[0],
    upstreams,
    primaryReturnSec: positive(
      "primaryReturnSec",
      options.primaryReturnSec ?? d.primaryReturnSec,
      0,
    ),
    gatewayId: options.gatewayId,
    prefix: options.prefix ?? d.prefix,
    forward: options.forward ?? [...d.forward],
    exclude: options.exclude ?? [...d.exclude],
    rewrite: options.rewrite ?? [],
    clientId: options.clientId ??
      (index === 0 ? `ferry-${options.gatewayId}` : `ferry-${options.gatewayId}-${name}`),
    username: options.username ?? primary.username,
    password: options.password ?? primary.password,
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
    qos,
    inflight,
    maxPacketSize,
    topicAliases: options.topicAliases ?? d.topicAliases,
    maxLinkDrops: positive("maxLinkDrops", options.maxLinkDrops ?? d.maxLinkDrops),
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
    hostname: primary.hostname,
    port: primary.port,
    tls: primary.tls,
    displayUrl: primary.displayUrl,
    spool: {
      file: s.file ?? d.spool.file,
      maxBytes: positive("spool.maxBytes", s.maxBytes ?? d.spool.maxBytes),
      maxBytesPerDevice: positive(
        "spool.maxBytesPerDevice",
        s.maxBytesPerDevice ?? d.spool.maxBytesPerDevice,
        0,
      ),
      ttlSec: positive("spool.ttlSec", s.ttlSec ?? d.spool.ttlSec, 0.001),
      fullPolicy,
      synchronous: s.synchronous ?? d.spool.synchronous,
      onCorrupt: s.onCorrupt ?? d.spool.onCorrupt,
      worker: s.worker ?? d.spool.worker,
      deadLetterMaxBytes: positive(
        "spool.deadLetterMaxBytes",
        s.deadLetterMaxBytes ?? d.spool.deadLetterMaxBytes,
        0,
      ),
    },
  };
  // Filters, prefix and rewrite rules (ambiguous or looping rules are refused here).
  new TopicMap({
    gatewayId: o.gatewayId,
    prefix: o.prefix,
    forward: o.forward,
    exclude: o.exclude,
    rewrite: o.rewrite,
  });
  return o;
}

const SHARED_SPOOL_KEYS = [
  "file",
  "synchronous",
  "onCorrupt",
  "worker",
  "deadLetterMaxBytes",
] as const;

/**
 * Validates the `northbound` section (one bridge or a list) and fills in defaults. Bridge names
 * and client ids (per upstream) must be unique; the settings of the shared spool file (`file`,
 * `synchronous`, `onCorrupt`, `worker`, `deadLetterMaxBytes`) must agree where given.
 *
 * @example
 * ```ts
 * import { resolveNorthboundList } from "./options.ts";
 * const [a, b] = resolveNorthboundList([
 *   { name: "cloud", url: "mqtt://a", gatewayId: "gw" },
 *   { name: "site", urls: ["mqtt://b1", "mqtt://b2"], gatewayId: "gw" },
 * ]);
 * if (a.clientId !== "ferry-gw" || b.clientId !== "ferry-gw-site" || b.upstreams.length !== 2) throw new Error();
 * ```
 */
export function resolveNorthboundList(config: NorthboundConfig): ResolvedNorthboundOptions[] {
  const list = Array.isArray(config) ? config : [config];
  if (list.length === 0) throw new TypeError("Invalid northbound options: the list is empty");
  const out = list.map((o, i) => resolveNorthboundOptions(o, i));
  const names = new Set<string>();
  const ids = new Set<string>();
  for (const o of out) {
    if (names.has(o.name)) {
      throw new TypeError(`Invalid northbound options: two bridges are named "${o.name}"`);
    }
    names.add(o.name);
    for (const u of o.upstreams) {
      const k = `${u.hostname}:${u.port}\0${o.clientId}`;
      if (ids.has(k)) {
        throw new TypeError(
          `Invalid northbound options: two bridges use client id "${o.clientId}" on ${u.displayUrl}`,
        );
      }
      ids.add(k);
    }
  }
  for (const key of SHARED_SPOOL_KEYS) {
    const given = list.map((o) => o.spool?.[key]).filter((v) => v !== undefined);
    if (new Set(given).size > 1) {
      throw new TypeError(
        `Invalid northbound options: spool.${key} is shared by every bridge and must be the same`,
      );
    }
    const v = given[0];
    if (v !== undefined) { for (const o of out) (o.spool as Record<string, unknown>)[key] = v; }
  }
  return out;
}

const nb = defaultNorthboundOptions;
const URL_PATTERN = /^mqtts?:\/\/.+/;
const filters = (doc: string, def: readonly string[]) =>
  list(str("filter"), doc, { default: [...def] });
const ms = (doc: string, def: number, min: number) =>
  int(doc, { min, max: 3_600_000, default: def });

/**
 * The config-schema fragment of one bridge (the `northbound` section, or each element of its
 * list form). Defaults come from {@link defaultNorthboundOptions}.
 */
export const northboundBridgeSchema = obj(
  "MQTT bridge to an upstream broker with a durable spool (docs/northbound.md), or a list of bridges; absent = no bridge",
  {
    name: optional(str(
      'Bridge name (spool partition, metrics label); default "default", then "bridge{n}"',
      { pattern: /^[A-Za-z0-9._-]{1,64}$/ },
    )),
    url: optional(str(
      "Upstream broker: mqtt://host[:1883] or mqtts://host[:8883], optionally user:pass@",
      { pattern: URL_PATTERN },
    )),
    urls: optional(list(
      str("URL", { pattern: URL_PATTERN }),
      "Upstream brokers in failover order, primary first (instead of url)",
    )),
    primaryReturnSec: int(
      "While on a secondary upstream, try the primary every this many seconds (0 = stay)",
      { min: 0, max: 86_400, default: nb.primaryReturnSec },
    ),
    gatewayId: str("This gateway's id (default: the host name)", {
      default: "",
      pattern: /^([A-Za-z0-9._-]{1,64})?$/,
    }),
    prefix: str("Upstream topic prefix; {gatewayId} is substituted", { default: nb.prefix }),
    forward: filters("Local filters forwarded upstream", nb.forward),
    exclude: filters("Local filters never forwarded", nb.exclude),
    rewrite: list(
      obj("rule", {
        direction: oneOf(["up", "down"], "up: local → upstream"),
        from: str("MQTT filter matched against the source topic"),
        to: str("New topic; {1}, {2}… are the filter's wildcard matches"),
      }),
      "Topic rewrite rules (ambiguous or looping rules are refused)",
      { default: [] },
    ),
    clientId: optional(str(
      "Upstream client id (default ferry-{gatewayId}, ferry-{gatewayId}-{name} after the first)",
    )),
    username: optional(str("Upstream user name")),
    password: optional(str("Upstream password")),
    caFile: optional(str("PEM CA bundle to trust for mqtts://")),
    certFile: optional(str("PEM client certificate (mutual TLS)")),
    keyFile: optional(str("PEM client key (mutual TLS)")),
    keepAliveSec: int("Upstream keepalive, seconds", {
      min: 1,
      max: 65_535,
      default: nb.keepAliveSec,
    }),
    protocolVersion: oneOf([4, 5], "MQTT 3.1.1 (4) or 5", { default: nb.protocolVersion }),
    cleanSession: bool("Start a clean upstream session", { default: nb.cleanSession }),
    sessionExpirySec: int("Upstream session expiry (MQTT 5), seconds", {
      min: 0,
      max: 4_294_967_295,
      default: nb.sessionExpirySec,
    }),
    qos: oneOf([1, 2], "QoS of upstream publishes (2: exactly once to the broker)", {
      default: nb.qos,
    }),
    inflight: int("Messages in flight upstream (also capped by the broker)", {
      min: 1,
      max: 65_535,
      default: nb.inflight,
    }),
    maxPacketSize: int(
      "Largest packet sent upstream (0 = the broker's limit only); larger messages are refused",
      { min: 0, max: 268_435_460, default: nb.maxPacketSize },
    ),
    topicAliases: bool("Use MQTT 5 topic aliases when the broker allows them", {
      default: nb.topicAliases,
    }),
    maxLinkDrops: int(
      "A message in flight this many times the link dropped goes to the dead letters",
      { min: 1, max: 1000, default: nb.maxLinkDrops },
    ),
    replayRatePerSec: int("Replay pace after an outage, messages/s (0 = unpaced)", {
      min: 0,
      max: 10_000_000,
      default: nb.replayRatePerSec,
    }),
    backoffBaseMs: ms("First reconnect backoff ceiling", nb.backoffBaseMs, 1),
    backoffCapMs: ms("Largest reconnect backoff ceiling", nb.backoffCapMs, 1),
    stableAfterMs: ms("A connection up this long resets the backoff", nb.stableAfterMs, 0),
    connectTimeoutMs: int("Time allowed to connect upstream", {
      min: 100,
      max: 600_000,
      default: nb.connectTimeoutMs,
    }),
    housekeepingMs: ms("Spool TTL sweep and compaction interval", nb.housekeepingMs, 100),
    compactAboveBytes: int("Compact the spool file after a drain when it exceeds this", {
      min: 0,
      max: 1 << 30,
      default: nb.compactAboveBytes,
    }),
    presence: bool("Publish the gateway's own online/offline (will) upstream", {
      default: nb.presence,
    }),
    // The file's settings are shared by every bridge: no default filled in per bridge here
    // (resolveNorthboundList fills them), so that one bridge may set them for all.
    spool: obj("Durable store-and-forward (file settings are shared by every bridge)", {
      file: optional(str(`Spool file, relative to dataDir (default ${nb.spool.file})`)),
      maxBytes: int("This bridge's spool partition bound, bytes", {
        min: 1024,
        max: Number.MAX_SAFE_INTEGER,
        default: nb.spool.maxBytes,
      }),
      maxBytesPerDevice: int(
        "Bytes one device may hold in the partition (0 = a quarter of maxBytes)",
        { min: 0, max: Number.MAX_SAFE_INTEGER, default: nb.spool.maxBytesPerDevice },
      ),
      ttlSec: int("Messages older than this are dropped", {
        min: 1,
        max: 10 * 365 * 86_400,
        default: nb.spool.ttlSec,
      }),
      fullPolicy: oneOf(
        ["refuse-new", "drop-oldest"],
        "When a quota is reached: refuse new messages, or drop the oldest (loses acknowledged data)",
        { default: nb.spool.fullPolicy },
      ),
      synchronous: optional(
        oneOf(["full", "normal"], "SQLite synchronous: full (default) survives power loss"),
      ),
      onCorrupt: optional(oneOf(
        ["fail", "set-aside"],
        "A corrupt spool: fail (default: refuse to start) or set-aside (rename, start empty)",
      )),
      worker: optional(bool("Run the spool's SQLite in a worker thread (default true)")),
      deadLetterMaxBytes: optional(int(
        `Bytes of dead letters kept, oldest dropped first (default ${nb.spool.deadLetterMaxBytes})`,
        { min: 0, max: Number.MAX_SAFE_INTEGER },
      )),
    }),
  },
);
