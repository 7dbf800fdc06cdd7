/**
 * What an operator reads of a running gateway besides its metrics: the `$SYS` broker statistics
 * (`sys_topics.ts`, configured by the `sys` section, `options.ts`) and the process metrics
 * (`process_metrics.ts`).
 *
 * @module
 */

export * from "./options.ts";
export * from "./process_metrics.ts";
export * from "./sys_topics.ts";
