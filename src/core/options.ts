/**
 * The core's config-schema fragments: credentials (`auth`), the limits shared by every listener
 * (`limits`), the ingest pipeline (`pipeline`) and the pending-command store (`commands`), with
 * their defaults written once, here. `src/config/config.ts` composes them into the file's schema.
 *
 * @module
 */

import {
  bool,
  defaults,
  type Infer,
  int,
  list,
  num,
  obj,
  oneOf,
  optional,
  str,
} from "../config/schema.ts";

const NAME = /^[A-Za-z0-9._:-]{1,64}$/;
const TOKEN_HASH = /^sha256:[0-9a-f]+:[0-9a-f]{64}$/;
const filters = (doc: string) => list(str("filter"), doc, { default: [] });

/** A device credential in the config file (`auth.devices[]`). */
export const credentialSchema = obj("A device credential", {
  id: str("Device id", { pattern: NAME }),
  token: optional(str("Plain token (prefer tokenHash)")),
  tokenHash: optional(str("Salted token hash `sha256:<salt>:<digest>`", { pattern: TOKEN_HASH })),
});

/** A service account (`auth.services[]`). */
export const serviceSchema = obj("A service account (apps, dashboards)", {
  name: str("Account name (MQTT username)", { pattern: NAME }),
  token: optional(str("Plain token/password")),
  tokenHash: optional(str("Salted token hash", { pattern: TOKEN_HASH })),
  publish: filters("Topic filters it may publish to"),
  subscribe: filters("Topic filters it may subscribe to"),
});

/** The `auth` section. */
export const authOptionsSchema = obj("Credentials", {
  anonymous: oneOf(
    ["auto", true, false],
    "Let devices in without credentials. `auto`: only when bound to loopback and no device is configured",
    { default: "auto" },
  ),
  devices: list(credentialSchema, "Device credentials", { default: [] }),
  deviceFile: str(
    "Registry file managed by `ferry device …` (default `{dataDir}/devices.json`); reloaded on change and on SIGHUP",
    { default: "" },
  ),
  services: list(serviceSchema, "Service accounts with topic ACLs", { default: [] }),
  deviceAcl: optional(obj(
    "ACL rules for devices with credentials, {id} standing for the device id; absent = publish under devices/{id}/ (not commands, status), subscribe inside it",
    {
      publish: filters("Filters a device may publish to"),
      subscribe: filters("Filters a device may subscribe to"),
    },
  )),
});

/** The `limits` section: admission, login throttling, device rates, subscriber hold. */
export const limitsOptionsSchema = obj("Limits shared by every listener", {
  maxConnectionsPerAddress: int("Concurrent connections per source address (0 = no limit)", {
    min: 0,
    max: 1_000_000,
    default: 1024,
  }),
  exemptLoopback: bool("Loopback addresses are exempt from maxConnectionsPerAddress", {
    default: true,
  }),
  authFailuresPerMinute: int(
    "Failed logins per identity and source address per minute before that pair is throttled (0 = off)",
    { min: 0, max: 1_000_000, default: 20 },
  ),
  deviceRatePerSec: num("Messages per second per device (token bucket; 0 = unlimited)", {
    min: 0,
    max: 1_000_000,
    default: 0,
  }),
  deviceBurst: num("Bucket size per device (0 = 2 × deviceRatePerSec)", {
    min: 0,
    max: 10_000_000,
    default: 0,
  }),
  subscriberHoldMs: int(
    "Longest a subscriber whose send buffer is full may hold delivery (and so publishers) back",
    { min: 0, max: 600_000, default: 1000 },
  ),
  reservedDescriptors: int(
    "Descriptors kept back from every listener together (spool, state file, upstream, runtime); the rest of the open-file limit is the connection budget all listeners share",
    { min: 16, max: 1_000_000, default: 256 },
  ),
  payloadBudgetBytes: int(
    "Payload bytes held in flight across all protocols (queued messages, large packets being received) before producers wait or are refused",
    { min: 65_536, max: 2 ** 40, default: 67_108_864 },
  ),
  publishWindow: int(
    "Publishes one FBP/1 or MQTT connection may have waiting (for the spool's commit, or for room) while it reads on; past it, it stops reading",
    { min: 1, max: 65_535, default: 64 },
  ),
});

/** The `pipeline` section. */
export const pipelineOptionsSchema = obj("Ingest pipeline", {
  queueCapacity: int("Messages queued before listeners stop reading (backpressure)", {
    min: 1,
    max: 1_000_000,
    default: 1024,
  }),
  concurrency: int("Handler pool size", { min: 1, max: 1024, default: 16 }),
});

/** The `commands` section: limits of the core's pending-command store. */
export const commandsOptionsSchema = obj(
  "The one store of pending commands for devices on FBP/1, CoAP and HTTP",
  {
    maxPerDevice: int("Commands kept per device until delivered (oldest dropped)", {
      min: 1,
      max: 100_000,
      default: 32,
    }),
    ttlMs: int("How long an undelivered command waits (a message's own earlier expiry wins)", {
      min: 1000,
      max: 30 * 86_400_000,
      default: 86_400_000,
    }),
    maxDevices: int("Devices with pending commands at once", {
      min: 1,
      max: 10_000_000,
      default: 10_000,
    }),
  },
);

/** The `limits` section's values. */
export type LimitsConfig = Infer<typeof limitsOptionsSchema>;
/** The `pipeline` section's values. */
export type PipelineConfig = Infer<typeof pipelineOptionsSchema>;

/**
 * Defaults of `limits`.
 *
 * @example
 * ```ts
 * import { defaultLimits } from "./options.ts";
 * if (defaultLimits.maxConnectionsPerAddress !== 1024) throw new Error();
 * ```
 */
export const defaultLimits: Readonly<LimitsConfig> = Object.freeze(defaults(limitsOptionsSchema));

/** Defaults of `pipeline`. */
export const defaultPipelineOptions: Readonly<PipelineConfig> = Object.freeze(
  defaults(pipelineOptionsSchema),
);
