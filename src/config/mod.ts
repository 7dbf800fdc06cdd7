/**
 * Configuration: schema, file loading, CLI flags.
 *
 * @module
 */

export * from "./check.ts";
export * from "./cli_args.ts";
export * from "./config.ts";
export * from "./jsonc.ts";
export * from "./schema.ts";
