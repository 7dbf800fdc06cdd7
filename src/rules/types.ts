/**
 * The contract between Ferry and a rule module, for rule authors: what a rule receives
 * ({@link RuleMessage}, {@link RuleContext}) and what it returns ({@link RuleResult}). Import it as
 * `ferry/rules` (the import map in Ferry's `deno.json`, or `src/rules/sdk.ts` by relative path);
 * see `docs/rules.md`.
 *
 * A rule module's default export is a {@link RuleFunction}. It may also export `tick` (a
 * {@link TickFunction} the gateway calls every `tickMs` milliseconds of its clock, e.g. to flush
 * window aggregates) and `tickMs` (a number, default 1000).
 *
 * @example
 * ```ts
 * import type { RuleFunction } from "./types.ts";
 * const celsius: RuleFunction = (msg) => ({ topic: `${msg.topic}/c`, payload: "21.5" });
 * const out = celsius(
 *   { topic: "t", payload: new Uint8Array(), qos: 0, retain: false, ts: 0, protocol: "mqtt" },
 *   {} as never,
 * );
 * if (!out || Array.isArray(out) || out instanceof Promise || out.topic !== "t/c") throw new Error();
 * ```
 *
 * @module
 */

/** Quality of service, MQTT-style: 0 at most once, 1 at least once, 2 exactly once. */
export type RuleQoS = 0 | 1 | 2;

/** A message as a rule sees it (read-only: a rule returns new messages instead of editing it). */
export interface RuleMessage {
  /** Topic in the gateway's namespace, e.g. `devices/s1/telemetry/temp`. */
  readonly topic: string;
  /** Payload bytes (use `json.parse` or `text` from the helpers to read them). */
  readonly payload: Uint8Array;
  /** QoS the publisher asked for. */
  readonly qos: RuleQoS;
  /** Retain flag of the publish. */
  readonly retain: boolean;
  /** Time the gateway accepted the message (ms since the epoch, gateway clock). */
  readonly ts: number;
  /** Protocol label it arrived on (`mqtt`, `binary`, `coap`, `http`, `system`, …). */
  readonly protocol: string;
  /** The publishing device, when a device published it. */
  readonly deviceId?: string;
  /** MIME type of the payload, when the publisher gave one. */
  readonly contentType?: string;
  /** Application key/value pairs (MQTT 5 user properties), order kept. */
  readonly userProperties?: ReadonlyArray<readonly [string, string]>;
}

/** A message a rule emits. */
export interface RuleOutput {
  /** Topic to publish on (checked against the rule's `publish` filters when it goes to the core). */
  topic: string;
  /** Payload: bytes, or a string (sent as UTF-8). Use `json.stringify` for objects. */
  payload: Uint8Array | string;
  /** QoS. @default the input message's QoS (0 for a tick) */
  qos?: RuleQoS;
  /** Retain flag. @default false */
  retain?: boolean;
  /** MQTT 5 user properties. */
  userProperties?: Array<[string, string]>;
  /**
   * Where it goes: `core` publishes it into the gateway (subscribers, other rules, the northbound
   * bridge's forward filters); `northbound` hands it to the upstream directly, under the bridge's
   * prefix. @default the rule's `to`
   */
  route?: "core" | "northbound";
}

/** What a rule returns: `null`/`undefined` drops the message; one output, or several. */
export type RuleResult = RuleOutput | RuleOutput[] | null | undefined;

/**
 * A small key/value store of the rule, kept in memory and persisted by the gateway (a JSON file in
 * its data directory) so it survives restarts of the rule and of the gateway. Values must be
 * JSON-serializable; the whole state of a rule is capped (64 KiB by default).
 */
export interface RuleState {
  /** The value stored under `key`, or undefined. */
  get<T = unknown>(key: string): T | undefined;
  /** Stores `value` (JSON-serializable) under `key`; throws RangeError past the size cap. */
  set(key: string, value: unknown): void;
  /** Removes `key`; true when it was present. */
  delete(key: string): boolean;
  /** Every key. */
  keys(): string[];
}

/** The gateway's clock as a rule sees it (fake in tests; rules have no timers of their own). */
export interface RuleClock {
  /** Milliseconds since the epoch: the time the gateway handed this work to the rule. */
  now(): number;
}

/** What a rule knows beyond the message. */
export interface RuleContext {
  /** The rule's name in the config. */
  readonly rule: string;
  /** The device that published the message (undefined for a tick or a non-device message). */
  readonly deviceId?: string;
  /** The protocol label the message arrived on (`system` for a tick). */
  readonly protocol: string;
  /** The rule's persisted key/value state. */
  readonly state: RuleState;
  /** The gateway's clock. */
  readonly clock: RuleClock;
}

/** The default export of a rule module. */
export type RuleFunction = (
  msg: RuleMessage,
  ctx: RuleContext,
) => RuleResult | Promise<RuleResult>;

/** The optional `tick` export: called every `tickMs` of the gateway's clock. */
export type TickFunction = (ctx: RuleContext) => RuleResult | Promise<RuleResult>;

/** The shape of a rule module. */
export interface RuleModule {
  /** The rule. */
  default: RuleFunction;
  /** Called on the clock. */
  tick?: TickFunction;
  /** Tick period, ms. @default 1000 */
  tickMs?: number;
}
