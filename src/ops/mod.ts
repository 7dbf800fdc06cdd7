/**
 * What an operator reads of a running gateway besides its metrics: the `$SYS` broker statistics
 * (`sys_topics.ts`, configured by the `sys` section, `options.ts`) the process metrics
 * (`process_metrics.ts`) and the charts' short history (`metrics_history.ts`).
 *
 * @module
 */

export * from "./metrics_history.ts";
export * from "./options.ts";
export * from "./process_metrics.ts";
export * from "./sys_topics.ts";
