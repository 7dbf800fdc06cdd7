/**
 * Every tunable of the FBP/1 listener and its sessions: the `binary` config-schema fragment, the
 * options types derived from it, and the defaults (written once, in the fragment).
 *
 * @module
 */

import { defaults, type Infer, int, obj } from "../../config/schema.ts";
import { portField, tlsField } from "../../net/options.ts";

/** The `binary` section of the config (without `enabled`, which the gateway adds). */
export const binaryOptionsSchema = obj("FBP/1 binary protocol over TCP", {
  port: portField(7883, "FBP/1"),
  maxPayload: int("Largest frame payload, bytes", {
    min: 64,
    max: 16 * 1024 * 1024,
    default: 65536,
  }),
  helloTimeoutMs: int("Time allowed for the HELLO frame", {
    min: 100,
    max: 600_000,
    default: 10_000,
  }),
  defaultKeepAliveSec: int("Keepalive granted when a device asks 0", {
    min: 1,
    max: 65535,
    default: 60,
  }),
  maxKeepAliveSec: int("Largest keepalive granted", { min: 1, max: 65535, default: 3600 }),
  drainTimeoutMs: int("Longest wait for a slow reader before closing it", {
    min: 100,
    max: 600_000,
    default: 10_000,
  }),
  maxPendingBytes: int("Outbound bytes queued per connection before closing it", {
    min: 1024,
    max: 1 << 30,
    default: 1 << 20,
  }),
  maxConnections: int("Most concurrent FBP/1 connections", {
    min: 1,
    max: 1_000_000,
    default: 50_000,
  }),
  tls: tlsField(),
});

/** Tunables of {@link BinaryServer} (the `binary` config section, plus the address to bind). */
export type BinaryServerOptions = Infer<typeof binaryOptionsSchema> & {
  /** Address to bind. @default "127.0.0.1" */
  hostname: string;
};

/** Tunables of one FBP/1 session (a part of {@link BinaryServerOptions}). */
export type BinarySessionOptions = Pick<
  BinaryServerOptions,
  | "maxPayload"
  | "helloTimeoutMs"
  | "defaultKeepAliveSec"
  | "maxKeepAliveSec"
  | "drainTimeoutMs"
  | "maxPendingBytes"
>;

/**
 * Defaults of every option.
 *
 * @example
 * ```ts
 * import { defaultBinaryServerOptions } from "./options.ts";
 * if (defaultBinaryServerOptions.port !== 7883 || defaultBinaryServerOptions.tls) throw new Error();
 * ```
 */
export const defaultBinaryServerOptions: Readonly<BinaryServerOptions> = Object.freeze({
  hostname: "127.0.0.1",
  ...defaults(binaryOptionsSchema),
});
