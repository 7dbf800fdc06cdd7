/**
 * Ferry's configuration: one JSON/JSONC file plus CLI flags (flags win), validated against one
 * schema at start-up. With no file, the embedded defaults apply: every listener on loopback only,
 * anonymous devices allowed only there (like mosquitto 2's local-only mode).
 *
 * @module
 */

import { defaultCoapServerOptions } from "../protocols/coap/server.ts";
import { defaultMqttServerOptions } from "../protocols/mqtt/options.ts";
import { defaultDeviceApiOptions } from "../http/device_api/options.ts";
import { defaultHttpServerOptions as httpDefaults } from "../http/options.ts";
import { defaultCommandStoreLimits as cmdDefaults } from "../core/command_store.ts";
import { defaultNorthboundOptions as nb, type NorthboundOptions } from "../northbound/options.ts";
import { parseJsonc } from "./jsonc.ts";
import { ConfigError, type Field, validate } from "./schema.ts";

const port = (def: number, what: string): Field => ({
  type: "integer",
  min: 0,
  max: 65535,
  default: def,
  doc: `${what} port (0 picks a free port; the log says which)`,
});

const credential: Field = {
  type: "object",
  doc: "A device credential",
  fields: {
    id: { type: "string", pattern: /^[A-Za-z0-9._:-]{1,64}$/, doc: "Device id" },
    token: { type: "string", optional: true, doc: "Plain token (prefer tokenHash)" },
    tokenHash: {
      type: "string",
      optional: true,
      pattern: /^sha256:[0-9a-f]+:[0-9a-f]{64}$/,
      doc: "Salted token hash `sha256:<salt>:<digest>`",
    },
  },
};

const service: Field = {
  type: "object",
  doc: "A service account (apps, dashboards)",
  fields: {
    name: {
      type: "string",
      pattern: /^[A-Za-z0-9._:-]{1,64}$/,
      doc: "Account name (MQTT username)",
    },
    token: { type: "string", optional: true, doc: "Plain token/password" },
    tokenHash: {
      type: "string",
      optional: true,
      pattern: /^sha256:[0-9a-f]+:[0-9a-f]{64}$/,
      doc: "Salted token hash",
    },
    publish: {
      type: "array",
      items: { type: "string", doc: "filter" },
      default: [],
      doc: "Topic filters it may publish to",
    },
    subscribe: {
      type: "array",
      items: { type: "string", doc: "filter" },
      default: [],
      doc: "Topic filters it may subscribe to",
    },
  },
};

const tlsFiles: Field = {
  type: "object",
  optional: true,
  doc: "Serve TLS (PEM files, reloaded when they change)",
  fields: {
    certFile: { type: "string", doc: "PEM certificate chain" },
    keyFile: { type: "string", doc: "PEM private key" },
  },
};

function int(def: number, min: number, max: number, doc: string): Field {
  return { type: "integer", min, max, default: def, doc };
}

/** A key of the old per-protocol command queues, kept so existing files still load. */
function legacy(key: keyof CommandsConfig, min: number, max: number, was: string): Field {
  return {
    type: "integer",
    min,
    max,
    optional: true,
    doc: `Deprecated (${was}): sets commands.${key} when that is absent (the largest given wins)`,
  };
}

/** The store keys and the old per-protocol keys that map onto them. */
const COMMAND_KEYS = [
  ["maxPerDevice", "maxPendingCommands"],
  ["ttlMs", "commandTtlMs"],
  ["maxDevices", "maxCommandDevices"],
] as const;

/** The schema of the whole configuration file. */
export const configSchema: Field = {
  type: "object",
  doc: "Ferry configuration",
  fields: {
    $schema: { type: "string", optional: true, doc: "JSON Schema reference for editors (ignored)" },
    host: {
      type: "string",
      default: "127.0.0.1",
      doc: "Address every listener binds (loopback by default; see auth.anonymous)",
    },
    dataDir: {
      type: "string",
      default: "./data",
      doc: "Directory for durable state (spool, MQTT state)",
    },
    log: {
      type: "object",
      doc: "Logging",
      fields: {
        level: {
          type: "enum",
          values: ["debug", "info", "warn", "error"],
          default: "info",
          doc: "Lowest level written",
        },
        format: {
          type: "enum",
          values: ["json", "pretty"],
          default: "json",
          doc: "JSON lines or a human format",
        },
      },
    },
    auth: {
      type: "object",
      doc: "Credentials",
      fields: {
        anonymous: {
          type: "enum",
          values: ["auto", true, false],
          default: "auto",
          doc:
            "Let devices in without credentials. `auto`: only when bound to loopback and no device is configured",
        },
        devices: { type: "array", items: credential, default: [], doc: "Device credentials" },
        deviceFile: {
          type: "string",
          default: "",
          doc:
            "Registry file managed by `ferry device …` (default `{dataDir}/devices.json`); reloaded on change and on SIGHUP",
        },
        services: {
          type: "array",
          items: service,
          default: [],
          doc: "Service accounts with topic ACLs",
        },
        deviceAcl: {
          type: "object",
          optional: true,
          doc:
            "ACL rules for devices with credentials, {id} standing for the device id; absent = publish under devices/{id}/ (not commands, status), subscribe inside it",
          fields: {
            publish: {
              type: "array",
              items: { type: "string", doc: "filter" },
              default: [],
              doc: "Filters a device may publish to",
            },
            subscribe: {
              type: "array",
              items: { type: "string", doc: "filter" },
              default: [],
              doc: "Filters a device may subscribe to",
            },
          },
        },
      },
    },
    limits: {
      type: "object",
      doc: "Limits shared by every listener",
      fields: {
        maxConnectionsPerAddress: int(
          1024,
          0,
          1_000_000,
          "Concurrent connections per source address (0 = no limit)",
        ),
        exemptLoopback: {
          type: "boolean",
          default: true,
          doc: "Loopback addresses are exempt from maxConnectionsPerAddress",
        },
        authFailuresPerMinute: int(
          20,
          0,
          1_000_000,
          "Failed logins per source address per minute before it is throttled (0 = off)",
        ),
        deviceRatePerSec: {
          type: "number",
          min: 0,
          max: 1_000_000,
          default: 0,
          doc: "Messages per second per device (token bucket; 0 = unlimited)",
        },
        deviceBurst: {
          type: "number",
          min: 0,
          max: 10_000_000,
          default: 0,
          doc: "Bucket size per device (0 = 2 × deviceRatePerSec)",
        },
        subscriberHoldMs: int(
          1000,
          0,
          600_000,
          "Longest a subscriber whose send buffer is full may hold delivery (and so publishers) back",
        ),
        reservedDescriptors: int(
          256,
          16,
          1_000_000,
          "Descriptors kept back from every listener together (spool, state file, upstream, runtime); the rest of the open-file limit is the connection budget",
        ),
        maxInflightBytes: int(
          64 * 1024 * 1024,
          65_536,
          1024 * 1024 * 1024 * 1024,
          "Payload bytes in flight across every protocol (read, not yet accepted); past it: 503/overloaded",
        ),
      },
    },
    northbound: {
      type: "object",
      optional: true,
      doc:
        "MQTT bridge to an upstream broker with a durable spool (docs/northbound.md); absent = no bridge",
      fields: {
        url: {
          type: "string",
          pattern: /^mqtts?:\/\/.+/,
          doc: "Upstream broker: mqtt://host[:1883] or mqtts://host[:8883], optionally user:pass@",
        },
        gatewayId: {
          type: "string",
          default: "",
          pattern: /^([A-Za-z0-9._-]{1,64})?$/,
          doc: "This gateway's id (default: the host name)",
        },
        prefix: {
          type: "string",
          default: nb.prefix,
          doc: "Upstream topic prefix; {gatewayId} is substituted",
        },
        forward: {
          type: "array",
          items: { type: "string", doc: "filter" },
          default: [...nb.forward],
          doc: "Local filters forwarded upstream",
        },
        exclude: {
          type: "array",
          items: { type: "string", doc: "filter" },
          default: [...nb.exclude],
          doc: "Local filters never forwarded",
        },
        clientId: {
          type: "string",
          optional: true,
          doc: "Upstream client id (default ferry-{gatewayId})",
        },
        username: { type: "string", optional: true, doc: "Upstream user name" },
        password: { type: "string", optional: true, doc: "Upstream password" },
        caFile: { type: "string", optional: true, doc: "PEM CA bundle to trust for mqtts://" },
        certFile: { type: "string", optional: true, doc: "PEM client certificate (mutual TLS)" },
        keyFile: { type: "string", optional: true, doc: "PEM client key (mutual TLS)" },
        keepAliveSec: int(nb.keepAliveSec, 1, 65_535, "Upstream keepalive, seconds"),
        protocolVersion: {
          type: "enum",
          values: [4, 5],
          default: nb.protocolVersion,
          doc: "MQTT 3.1.1 (4) or 5",
        },
        cleanSession: {
          type: "boolean",
          default: nb.cleanSession,
          doc: "Start a clean upstream session",
        },
        sessionExpirySec: int(
          nb.sessionExpirySec,
          0,
          4_294_967_295,
          "Upstream session expiry (MQTT 5), seconds",
        ),
        inflight: int(nb.inflight, 1, 65_535, "QoS 1 messages in flight upstream"),
        replayRatePerSec: int(
          nb.replayRatePerSec,
          0,
          10_000_000,
          "Replay pace after an outage, messages/s (0 = unpaced)",
        ),
        backoffBaseMs: int(nb.backoffBaseMs, 1, 3_600_000, "First reconnect backoff ceiling"),
        backoffCapMs: int(nb.backoffCapMs, 1, 3_600_000, "Largest reconnect backoff ceiling"),
        stableAfterMs: int(
          nb.stableAfterMs,
          0,
          3_600_000,
          "A connection up this long resets the backoff",
        ),
        connectTimeoutMs: int(
          nb.connectTimeoutMs,
          100,
          600_000,
          "Time allowed to connect upstream",
        ),
        housekeepingMs: int(
          nb.housekeepingMs,
          100,
          3_600_000,
          "Spool TTL sweep and compaction interval",
        ),
        compactAboveBytes: int(
          nb.compactAboveBytes,
          0,
          1 << 30,
          "Compact the spool file after a drain when it exceeds this",
        ),
        presence: {
          type: "boolean",
          default: nb.presence,
          doc: "Publish the gateway's own online/offline (will) upstream",
        },
        spool: {
          type: "object",
          doc: "Durable store-and-forward",
          fields: {
            file: {
              type: "string",
              default: nb.spool.file,
              doc: "Spool file, relative to dataDir",
            },
            maxBytes: int(
              nb.spool.maxBytes,
              1024 * 1024,
              Number.MAX_SAFE_INTEGER,
              "Spool bound, bytes",
            ),
            ttlSec: int(
              nb.spool.ttlSec,
              1,
              10 * 365 * 86_400,
              "Messages older than this are dropped",
            ),
            fullPolicy: {
              type: "enum",
              values: ["drop-oldest", "refuse-new"],
              default: nb.spool.fullPolicy,
              doc: "What happens when the spool is full",
            },
            synchronous: {
              type: "enum",
              values: ["full", "normal"],
              default: nb.spool.synchronous,
              doc: "SQLite synchronous: full survives power loss",
            },
            onCorrupt: {
              type: "enum",
              values: ["fail", "set-aside"],
              default: nb.spool.onCorrupt,
              doc: "A corrupt spool: refuse to start, or set it aside and start empty",
            },
          },
        },
      },
    },
    pipeline: {
      type: "object",
      doc: "Ingest pipeline",
      fields: {
        queueCapacity: {
          type: "integer",
          min: 1,
          max: 1_000_000,
          default: 1024,
          doc: "Messages queued before listeners stop reading (backpressure)",
        },
        concurrency: { type: "integer", min: 1, max: 1024, default: 16, doc: "Handler pool size" },
      },
    },
    commands: {
      type: "object",
      doc: "The one store of pending commands for devices on FBP/1, CoAP and HTTP",
      fields: {
        maxPerDevice: int(
          cmdDefaults.maxPerDevice,
          1,
          100_000,
          "Commands kept per device until delivered (oldest dropped)",
        ),
        ttlMs: int(
          cmdDefaults.ttlMs,
          1000,
          30 * 86_400_000,
          "How long an undelivered command waits (a message's own earlier expiry wins)",
        ),
        maxDevices: int(
          cmdDefaults.maxDevices,
          1,
          10_000_000,
          "Devices with pending commands at once",
        ),
      },
    },
    binary: {
      type: "object",
      doc: "FBP/1 binary protocol over TCP",
      fields: {
        enabled: { type: "boolean", default: true, doc: "Start the FBP/1 listener" },
        port: port(7883, "FBP/1"),
        maxPayload: {
          type: "integer",
          min: 64,
          max: 16 * 1024 * 1024,
          default: 65536,
          doc: "Largest frame payload, bytes",
        },
        helloTimeoutMs: {
          type: "integer",
          min: 100,
          max: 600_000,
          default: 10_000,
          doc: "Time allowed for the HELLO frame",
        },
        defaultKeepAliveSec: {
          type: "integer",
          min: 1,
          max: 65535,
          default: 60,
          doc: "Keepalive granted when a device asks 0",
        },
        maxKeepAliveSec: {
          type: "integer",
          min: 1,
          max: 65535,
          default: 3600,
          doc: "Largest keepalive granted",
        },
        drainTimeoutMs: {
          type: "integer",
          min: 100,
          max: 600_000,
          default: 10_000,
          doc: "Longest wait for a slow reader before closing it",
        },
        maxPendingBytes: {
          type: "integer",
          min: 1024,
          max: 1 << 30,
          default: 1 << 20,
          doc: "Outbound bytes queued per connection before closing it",
        },
        maxConnections: {
          type: "integer",
          min: 1,
          max: 1_000_000,
          default: 50_000,
          doc: "Most concurrent FBP/1 connections",
        },
        tls: tlsFiles,
      },
    },
    mqtt: {
      type: "object",
      doc: "MQTT 3.1.1/5 listener",
      fields: {
        enabled: { type: "boolean", default: true, doc: "Start the MQTT listener" },
        port: port(1883, "MQTT"),
        tls: tlsFiles,
        maxConnections: int(
          defaultMqttServerOptions.maxConnections,
          1,
          10_000_000,
          "Most concurrent MQTT connections",
        ),
        maxConnectPacketSize: int(
          defaultMqttServerOptions.maxConnectPacketSize,
          64,
          268_435_455,
          "Largest packet before CONNECT is accepted, bytes",
        ),
        anonymousPresence: {
          type: "boolean",
          default: defaultMqttServerOptions.anonymousPresence,
          doc:
            "Presence (devices/{id}/status) for anonymous clients whose client id is a device id",
        },
        assignedIdPrefix: {
          type: "string",
          default: defaultMqttServerOptions.assignedIdPrefix,
          doc: "Prefix of client ids assigned to clients that send an empty one",
        },
        maxSubscriptions: int(
          defaultMqttServerOptions.maxSubscriptions,
          1,
          10_000_000,
          "Subscriptions one session may hold (more get SUBACK 0x97)",
        ),
        connectTimeoutMs: int(
          defaultMqttServerOptions.connectTimeoutMs,
          1,
          3_600_000,
          "Time allowed for CONNECT",
        ),
        maxPacketSize: int(
          defaultMqttServerOptions.maxPacketSize,
          64,
          268_435_455,
          "Largest packet accepted, bytes",
        ),
        maxKeepAlive: int(
          defaultMqttServerOptions.maxKeepAlive,
          1,
          65_535,
          "Largest keepalive granted, seconds",
        ),
        receiveMaximum: int(
          defaultMqttServerOptions.receiveMaximum,
          1,
          65_535,
          "QoS 1/2 publishes a client may have unacknowledged (v5 Receive Maximum)",
        ),
        maxQueuedMessages: int(
          defaultMqttServerOptions.maxQueuedMessages,
          1,
          10_000_000,
          "Messages queued per session before the drop policy",
        ),
        queueDropPolicy: {
          type: "enum",
          values: ["oldest", "newest"],
          default: defaultMqttServerOptions.queueDropPolicy,
          doc: "Which message goes when a session queue is full",
        },
        maxInflight: int(
          defaultMqttServerOptions.maxInflight,
          1,
          65_535,
          "QoS 1/2 publishes sent before waiting for acknowledgements",
        ),
        maxTopicAlias: int(
          defaultMqttServerOptions.maxTopicAlias,
          0,
          65_535,
          "Topic aliases a v5 client may use",
        ),
        sessionExpiryMaxSec: int(
          defaultMqttServerOptions.sessionExpiryMaxSec,
          0,
          4_294_967_295,
          "Upper bound of a session's expiry, seconds",
        ),
        maxSessions: int(
          defaultMqttServerOptions.maxSessions,
          1,
          10_000_000,
          "Persistent sessions kept at most",
        ),
        maxPendingBytes: int(
          defaultMqttServerOptions.maxPendingBytes,
          1024,
          1 << 30,
          "Outbound bytes queued per connection before closing it",
        ),
        drainTimeoutMs: int(
          defaultMqttServerOptions.drainTimeoutMs,
          100,
          600_000,
          "Longest wait for a slow reader before closing it",
        ),
        allowMqtt31: {
          type: "boolean",
          default: defaultMqttServerOptions.allowMqtt31,
          doc: "Accept MQTT 3.1 as well as 3.1.1 and 5.0",
        },
        maxClientIdLength: int(
          defaultMqttServerOptions.maxClientIdLength,
          23,
          65_535,
          "Longest client id accepted",
        ),
        persistence: {
          type: "object",
          doc: "Durable persistent sessions and retained messages (docs/mqtt.md)",
          fields: {
            enabled: {
              type: "boolean",
              default: true,
              doc: "Keep persistent sessions and retained messages across restarts",
            },
            file: {
              type: "string",
              default: "mqtt-state.db",
              doc: "State file, relative to dataDir",
            },
            synchronous: {
              type: "enum",
              values: ["full", "normal"],
              default: "full",
              doc: "SQLite synchronous: full survives power loss, normal only crashes",
            },
          },
        },
      },
    },
    coap: {
      type: "object",
      doc: "CoAP listener (UDP)",
      fields: {
        enabled: { type: "boolean", default: true, doc: "Start the CoAP listener" },
        port: port(5683, "CoAP"),
        maxPayload: int(
          defaultCoapServerOptions.maxPayload,
          64,
          16 * 1024 * 1024,
          "Largest request body (after Block1 reassembly), bytes",
        ),
        blockSize: {
          type: "enum",
          values: [16, 32, 64, 128, 256, 512, 1024],
          default: defaultCoapServerOptions.blockSize,
          doc: "Block size for Block2 responses, bytes",
        },
        idleTimeoutMs: int(
          defaultCoapServerOptions.idleTimeoutMs,
          1000,
          7 * 86_400_000,
          "A CoAP device goes offline after this long without a request",
        ),
        ackTimeoutMs: int(
          defaultCoapServerOptions.ackTimeoutMs,
          100,
          60_000,
          "ACK_TIMEOUT (RFC 7252 §4.8)",
        ),
        ackRandomFactor: {
          type: "number",
          min: 1,
          max: 4,
          default: defaultCoapServerOptions.ackRandomFactor,
          doc: "ACK_RANDOM_FACTOR",
        },
        maxRetransmit: int(defaultCoapServerOptions.maxRetransmit, 0, 20, "MAX_RETRANSMIT"),
        exchangeLifetimeMs: int(
          defaultCoapServerOptions.exchangeLifetimeMs,
          1000,
          3_600_000,
          "EXCHANGE_LIFETIME: how long duplicates are recognised",
        ),
        separateResponseAfterMs: int(
          defaultCoapServerOptions.separateResponseAfterMs,
          0,
          60_000,
          "Send an empty ACK and a separate response when the answer takes longer",
        ),
        maxObservers: int(
          defaultCoapServerOptions.maxObservers,
          1,
          1_000_000,
          "Observe registrations kept at most",
        ),
        maxPendingCommands: legacy("maxPerDevice", 1, 10_000, "was 16 per CoAP device"),
        commandTtlMs: legacy("ttlMs", 1000, 30 * 86_400_000, "was 86400000 for CoAP"),
        maxBlockTransfers: int(
          defaultCoapServerOptions.maxBlockTransfers,
          1,
          100_000,
          "Concurrent Block1 reassemblies",
        ),
        blockTimeoutMs: int(
          defaultCoapServerOptions.blockTimeoutMs,
          1000,
          3_600_000,
          "A Block1 transfer not finished in this time is dropped",
        ),
        retryAfterSec: int(
          defaultCoapServerOptions.retryAfterSec,
          1,
          3600,
          "Max-Age of a 5.03 when overloaded",
        ),
        nonLifetimeMs: int(
          defaultCoapServerOptions.nonLifetimeMs,
          1000,
          3_600_000,
          "NON_LIFETIME: how long NON duplicates are recognised",
        ),
        maxExchanges: int(
          defaultCoapServerOptions.maxExchanges,
          1,
          10_000_000,
          "Exchanges remembered for duplicate detection at most",
        ),
        maxInflightRequests: int(
          defaultCoapServerOptions.maxInflightRequests,
          1,
          1_000_000,
          "Requests being processed at once; more get 5.03",
        ),
        maxPendingSends: int(
          defaultCoapServerOptions.maxPendingSends,
          1,
          1_000_000,
          "Datagrams queued on the socket before new ones are dropped",
        ),
        observeConfirmableIntervalMs: int(
          defaultCoapServerOptions.observeConfirmableIntervalMs,
          1000,
          7 * 86_400_000,
          "A CON notification at least this often (RFC 7641 §4.5)",
        ),
        maxCommandDevices: legacy("maxDevices", 1, 10_000_000, "was 10000 for CoAP"),
      },
    },
    http: {
      type: "object",
      doc: "HTTP listener: /healthz, /readyz, /metrics, the dashboard and the device API",
      fields: {
        enabled: { type: "boolean", default: true, doc: "Start the HTTP listener" },
        port: port(8080, "HTTP"),
        tls: { ...tlsFiles, doc: "Serve HTTPS (PEM files, reloaded when they change)" } as Field,
        maxConnections: int(
          httpDefaults.maxConnections,
          1,
          1_000_000,
          "Open HTTP connections at most (within the descriptor budget); more get 503",
        ),
        headersTimeoutMs: int(
          httpDefaults.headersTimeoutMs,
          100,
          600_000,
          "A new connection must send a whole request head within this time",
        ),
        idleTimeoutMs: int(
          httpDefaults.idleTimeoutMs,
          100,
          3_600_000,
          "After an answer, the client must read it and begin its next request within this time",
        ),
        shutdownGraceMs: int(
          httpDefaults.shutdownGraceMs,
          1,
          60_000,
          "On shutdown, requests in progress may finish for this long before connections are cut",
        ),
        allowedHosts: {
          type: "array",
          items: { type: "string", doc: "host name, or *.domain" },
          default: [],
          doc:
            'Host names requests may name besides IP literals, localhost and this machine\'s name (DNS rebinding); ["*"] accepts any',
        },
        trustedProxies: {
          type: "array",
          items: { type: "string", doc: "IP address" },
          default: [],
          doc:
            "Peers whose X-Forwarded-For is believed (the dashboard login throttle); nobody's by default",
        },
        publicMetrics: {
          type: "enum",
          values: ["auto", true, false],
          default: "auto",
          doc:
            "Serve /metrics and the OpenAPI documents without credentials (auto: only on loopback)",
        },
        loginLink: {
          type: "boolean",
          default: true,
          doc:
            "Print a one-time dashboard login link at start (and keep a fresh one in dataDir/dashboard-login-link)",
        },
        deviceApi: {
          type: "object",
          doc: "HTTP device API under /api/v1 (docs/http-api.md)",
          fields: {
            enabled: { type: "boolean", default: true, doc: "Serve the device API" },
            maxBodyBytes: int(
              defaultDeviceApiOptions.maxBodyBytes,
              1,
              64 * 1024 * 1024,
              "Largest request body, bytes (413 past it)",
            ),
            maxBatch: int(
              defaultDeviceApiOptions.maxBatch,
              1,
              100_000,
              "Most messages in one batch request",
            ),
            bodyTimeoutMs: int(
              defaultDeviceApiOptions.bodyTimeoutMs,
              100,
              600_000,
              "A body not finished in this time gets 408",
            ),
            longPollMaxMs: int(
              defaultDeviceApiOptions.longPollMaxMs,
              100,
              3_600_000,
              "Longest long-poll a client may ask for",
            ),
            longPollDefaultMs: int(
              defaultDeviceApiOptions.longPollDefaultMs,
              100,
              3_600_000,
              "Long-poll wait without ?timeout=",
            ),
            sseHeartbeatMs: int(
              defaultDeviceApiOptions.sseHeartbeatMs,
              100,
              3_600_000,
              "SSE heartbeat interval",
            ),
            idleTimeoutMs: int(
              defaultDeviceApiOptions.idleTimeoutMs,
              1000,
              7 * 86_400_000,
              "An HTTP device goes offline after this long without a request",
            ),
            maxPendingCommands: legacy("maxPerDevice", 1, 100_000, "was 32 per HTTP device"),
            commandTtlMs: legacy("ttlMs", 1000, 30 * 86_400_000, "was 300000 for HTTP"),
            maxCommandDevices: legacy("maxDevices", 1, 1_000_000, "was 10000 for HTTP"),
            maxWaitersPerDevice: int(
              defaultDeviceApiOptions.maxWaitersPerDevice,
              1,
              1000,
              "Open long-polls plus SSE streams per device",
            ),
            overloadRetryAfterSec: int(
              defaultDeviceApiOptions.overloadRetryAfterSec,
              1,
              3600,
              "Retry-After when the pipeline is full",
            ),
          },
        },
      },
    },
  },
};

/** A credential entry. */
export interface CredentialConfig {
  id: string;
  token?: string;
  tokenHash?: string;
}

/** The `commands` section: limits of the core's pending-command store. */
export interface CommandsConfig {
  maxPerDevice: number;
  ttlMs: number;
  maxDevices: number;
}

/** The validated configuration. */
export interface FerryConfig {
  host: string;
  dataDir: string;
  log: { level: "debug" | "info" | "warn" | "error"; format: "json" | "pretty" };
  auth: {
    anonymous: "auto" | boolean;
    devices: CredentialConfig[];
    deviceFile: string;
    deviceAcl?: { publish: string[]; subscribe: string[] };
    services: Array<{
      name: string;
      token?: string;
      tokenHash?: string;
      publish: string[];
      subscribe: string[];
    }>;
  };
  limits: {
    maxConnectionsPerAddress: number;
    exemptLoopback: boolean;
    authFailuresPerMinute: number;
    deviceRatePerSec: number;
    deviceBurst: number;
    subscriberHoldMs: number;
    reservedDescriptors: number;
    maxInflightBytes: number;
  };
  pipeline: { queueCapacity: number; concurrency: number };
  commands: CommandsConfig;
  northbound?: NorthboundOptions;
  binary: {
    enabled: boolean;
    port: number;
    maxPayload: number;
    helloTimeoutMs: number;
    defaultKeepAliveSec: number;
    maxKeepAliveSec: number;
    drainTimeoutMs: number;
    maxPendingBytes: number;
    maxConnections: number;
    tls?: { certFile: string; keyFile: string };
  };
  mqtt: {
    enabled: boolean;
    port: number;
    tls?: { certFile: string; keyFile: string };
    maxConnections: number;
    maxConnectPacketSize: number;
    anonymousPresence: boolean;
    assignedIdPrefix: string;
    maxSubscriptions: number;
    connectTimeoutMs: number;
    maxPacketSize: number;
    maxKeepAlive: number;
    receiveMaximum: number;
    maxQueuedMessages: number;
    queueDropPolicy: "oldest" | "newest";
    maxInflight: number;
    maxTopicAlias: number;
    sessionExpiryMaxSec: number;
    maxSessions: number;
    maxPendingBytes: number;
    drainTimeoutMs: number;
    allowMqtt31: boolean;
    maxClientIdLength: number;
    persistence: { enabled: boolean; file: string; synchronous: "full" | "normal" };
  };
  coap: {
    enabled: boolean;
    port: number;
    maxPayload: number;
    blockSize: number;
    idleTimeoutMs: number;
    ackTimeoutMs: number;
    ackRandomFactor: number;
    maxRetransmit: number;
    exchangeLifetimeMs: number;
    separateResponseAfterMs: number;
    maxObservers: number;
    maxPendingCommands?: number;
    commandTtlMs?: number;
    maxBlockTransfers: number;
    blockTimeoutMs: number;
    retryAfterSec: number;
    nonLifetimeMs: number;
    maxExchanges: number;
    maxInflightRequests: number;
    maxPendingSends: number;
    observeConfirmableIntervalMs: number;
    maxCommandDevices?: number;
  };
  http: {
    enabled: boolean;
    port: number;
    tls?: { certFile: string; keyFile: string };
    maxConnections: number;
    headersTimeoutMs: number;
    idleTimeoutMs: number;
    shutdownGraceMs: number;
    allowedHosts: string[];
    trustedProxies: string[];
    publicMetrics: "auto" | boolean;
    loginLink: boolean;
    deviceApi: {
      enabled: boolean;
      maxBodyBytes: number;
      maxBatch: number;
      bodyTimeoutMs: number;
      longPollMaxMs: number;
      longPollDefaultMs: number;
      sseHeartbeatMs: number;
      idleTimeoutMs: number;
      maxPendingCommands?: number;
      commandTtlMs?: number;
      maxCommandDevices?: number;
      maxWaitersPerDevice: number;
      overloadRetryAfterSec: number;
    };
  };
}

/**
 * Validates a parsed config object (defaults filled, cross-field rules checked).
 *
 * @example
 * ```ts
 * import { resolveConfig } from "./config.ts";
 * const c = resolveConfig({});
 * if (c.host !== "127.0.0.1" || c.binary.port !== 7883) throw new Error();
 * ```
 */
export function resolveConfig(raw: unknown): FerryConfig {
  const c = validate(configSchema, raw, "") as FerryConfig;
  c.auth.devices.forEach((d, i) => {
    if ((d.token === undefined) === (d.tokenHash === undefined)) {
      throw new ConfigError(`auth.devices[${i}]`, "needs exactly one of token or tokenHash");
    }
  });
  c.auth.services.forEach((s, i) => {
    if ((s.token === undefined) === (s.tokenHash === undefined)) {
      throw new ConfigError(`auth.services[${i}]`, "needs exactly one of token or tokenHash");
    }
  });
  const ids = new Set<string>();
  c.auth.devices.forEach((d, i) => {
    if (ids.has(d.id)) throw new ConfigError(`auth.devices[${i}].id`, `duplicate id "${d.id}"`);
    ids.add(d.id);
  });
  // The old per-protocol queue keys still apply when the store's own key is absent.
  const given = (raw as { commands?: Record<string, unknown> } | null)?.commands ?? {};
  for (const [key, old] of COMMAND_KEYS) {
    if (given[key] !== undefined) continue;
    const values = [c.coap[old], c.http.deviceApi[old]].filter((v) => v !== undefined);
    if (values.length > 0) c.commands[key] = Math.max(...values);
  }
  if (c.binary.defaultKeepAliveSec > c.binary.maxKeepAliveSec) {
    throw new ConfigError(
      "binary.defaultKeepAliveSec",
      `${c.binary.defaultKeepAliveSec} exceeds binary.maxKeepAliveSec ${c.binary.maxKeepAliveSec}`,
    );
  }
  return c;
}

/** True for loopback host names and addresses. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\./.test(host);
}

/**
 * Whether anonymous devices are let in under this config (resolves `auto`): only on loopback and
 * only while no device is known, from the config or from the registry file (`fileDevices`).
 */
export function anonymousAllowed(c: FerryConfig, fileDevices = 0): boolean {
  if (c.auth.anonymous !== "auto") return c.auth.anonymous;
  return isLoopback(c.host) && c.auth.devices.length === 0 && fileDevices === 0;
}

/** Path of the device registry file. */
export function deviceFilePath(c: FerryConfig): string {
  return c.auth.deviceFile || `${c.dataDir.replace(/\/+$/, "")}/devices.json`;
}

/** Reads and validates a config file (JSON or JSONC). */
export async function loadConfigFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new ConfigError("--config", `cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    return parseJsonc(text);
  } catch (err) {
    throw new ConfigError("--config", `${path}: ${(err as Error).message}`);
  }
}
