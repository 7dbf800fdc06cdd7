/**
 * Northbound: the MQTT bridge to the cloud with a durable SQLite store-and-forward spool and
 * downlink commands. The gateway calls {@link startNorthbound} with a {@link NorthboundOptions}.
 * See `docs/northbound.md`.
 *
 * @module
 */

export * from "./bridge.ts";
export * from "./mqtt_client.ts";
export * from "./northbound.ts";
export * from "./options.ts";
export * from "./spool.ts";
export * from "./token_bucket.ts";
export * from "./topic_map.ts";
