/**
 * Dead letters: a message a rule failed on, when the rule's `onError` is `dead-letter`. The engine
 * hands them to a {@link DeadLetterSink}. With a northbound configured the gateway uses
 * {@link tableDeadLetterSink}: the letter goes into the spool's dead-letter table (the one
 * `/api/v1/admin/northbound/dead-letters` lists) under the bridge name `rule:{name}`, with reason
 * `rule_{kind}` (`rule_throw`, `rule_timeout`, …) and the error as its detail. Without one it uses
 * {@link loggingDeadLetterSink}: the letter is logged (rate limited) and counted
 * (`ferry_rule_dead_letters_total`), and not kept.
 *
 * @module
 */

import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/logger.ts";
import type { Message } from "../core/message.ts";
import { LogLimiter } from "./_log_limiter.ts";

/** Why a rule failed on a message. */
export type RuleFailureKind =
  | "throw"
  | "timeout"
  | "too_large"
  | "crash"
  | "overloaded"
  | "disabled"
  | "shutdown";

/** A message a rule failed on. */
export interface DeadLetter {
  /** The rule's name. */
  rule: string;
  /** What went wrong. */
  kind: RuleFailureKind;
  /** The error, as the rule's worker reported it. */
  error: { name: string; message: string };
  /** The message, as it entered the rule. */
  message: Message;
  /** When it failed (gateway clock, ms). */
  at: number;
}

/** Where dead letters go. May be async: the engine does not wait for it beyond counting. */
export interface DeadLetterSink {
  /** Takes one letter. */
  deadLetter(letter: DeadLetter): void | Promise<void>;
}

/**
 * A sink that only logs (at most one line per rule per `everyMs`).
 *
 * @example
 * ```ts
 * import { loggingDeadLetterSink } from "./dead_letter.ts";
 * import { Logger } from "../core/logger.ts";
 * import { FakeClock } from "../core/clock.ts";
 * import { createMessage } from "../core/message.ts";
 * const lines: string[] = [];
 * const sink = loggingDeadLetterSink(new Logger({ sink: (l) => lines.push(l) }), new FakeClock());
 * const letter = { rule: "r", kind: "throw", error: { name: "Error", message: "x" }, at: 0,
 *   message: createMessage({ topic: "t", payload: new Uint8Array() }) } as const;
 * sink.deadLetter(letter);
 * sink.deadLetter(letter);
 * if (lines.length !== 1) throw new Error(lines.join("\n"));
 * ```
 */
export function loggingDeadLetterSink(log: Logger, clock: Clock, everyMs = 10_000): DeadLetterSink {
  const limiter = new LogLimiter(clock, everyMs);
  return {
    deadLetter(l) {
      const suppressed = limiter.take(l.rule);
      if (suppressed === undefined) return;
      log.warn("dead letter (no dead-letter store configured: logged and dropped)", {
        rule: l.rule,
        kind: l.kind,
        topic: l.message.topic,
        device: l.message.deviceId,
        error: l.error.message,
        suppressed,
      });
    },
  };
}

/** A dead-letter table that takes letters (the northbound's spool is one). */
export interface DeadLetterTable {
  /** Stores one letter; resolves once it is durable. */
  addDeadLetter(
    letter: { bridge: string; message: Message; reason: string; detail?: string },
  ): Promise<unknown>;
}

/**
 * A sink that stores each letter in `table` as bridge `rule:{rule}`, reason `rule_{kind}`, detail
 * `{error name}: {message}`.
 *
 * @example
 * ```ts
 * import { tableDeadLetterSink } from "./dead_letter.ts";
 * import { createMessage } from "../core/message.ts";
 * const stored: Array<{ bridge: string; reason: string; detail?: string }> = [];
 * const sink = tableDeadLetterSink({ addDeadLetter: (l) => (stored.push(l), Promise.resolve(1)) });
 * await sink.deadLetter({ rule: "r", kind: "throw", error: { name: "RangeError", message: "x" },
 *   at: 0, message: createMessage({ topic: "t", payload: new Uint8Array() }) });
 * if (stored[0].bridge !== "rule:r" || stored[0].reason !== "rule_throw" || stored[0].detail !== "RangeError: x") throw new Error();
 * ```
 */
export function tableDeadLetterSink(table: DeadLetterTable): DeadLetterSink {
  return {
    async deadLetter(l) {
      await table.addDeadLetter({
        bridge: `rule:${l.rule}`,
        message: l.message,
        reason: `rule_${l.kind}`,
        detail: `${l.error.name}: ${l.error.message}`.slice(0, 1024),
      });
    },
  };
}
