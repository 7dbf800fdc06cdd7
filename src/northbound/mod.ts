/**
 * Northbound: MQTT bridges to the cloud with a durable SQLite store-and-forward spool (one
 * partition per bridge, written by a worker), dead letters and downlink commands. The gateway
 * calls {@link startNorthbound} with a {@link NorthboundConfig}. See `docs/northbound.md`.
 *
 * @module
 */

export * from "./bridge.ts";
export * from "./log_summary.ts";
export * from "./mqtt_client.ts";
export * from "./northbound.ts";
export * from "./options.ts";
export * from "./spool.ts";
export * from "./token_bucket.ts";
export * from "./topic_map.ts";
export * from "./topic_rewrite.ts";
