/**
 * The protocol-agnostic core of Ferry: message model, topic namespace and router, pipeline,
 * registry, supervisor, and the small primitives they share.
 *
 * @module
 */

export * from "./acl.ts";
export * from "./address.ts";
export * from "./admission.ts";
export * from "./attachments.ts";
export * from "./backoff.ts";
export * from "./clock.ts";
export * from "./command_store.ts";
export * from "./core.ts";
export * from "./credentials.ts";
export * from "./deadline_queue.ts";
export * from "./encoding.ts";
export * from "./error_message.ts";
export * from "./failure_window.ts";
export * from "./device_port.ts";
export * from "./logger.ts";
export * from "./log_throttle.ts";
export * from "./login.ts";
export * from "./message.ts";
export * from "./metrics.ts";
export * from "./payload_budget.ts";
export * from "./pipeline.ts";
export * from "./protocol_stats.ts";
export * from "./publish_lane.ts";
export * from "./rate_limiter.ts";
export * from "./refusal.ts";
export * from "./registry.ts";
export * from "./retained_store.ts";
export * from "./semaphore.ts";
export * from "./session_directory.ts";
export * from "./supervisor.ts";
export * from "./topic_router.ts";
export * from "./topics.ts";
export * from "./flow_gate.ts";
