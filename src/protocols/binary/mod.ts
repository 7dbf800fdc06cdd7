/**
 * FBP/1, Ferry's length-prefixed binary protocol over TCP: codec, server and reference client.
 *
 * @module
 */

export * from "./client.ts";
export * from "./codec.ts";
export * from "./crc32.ts";
export * from "./frame.ts";
export * from "./options.ts";
export * from "./server.ts";
export * from "./session.ts";
