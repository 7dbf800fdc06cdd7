/**
 * `ferry rule test FILE [--input samples.jsonl] [--advance MS] [--to core|northbound]
 * [--timeout-ms N] [--root DIR]`: runs a rule in the same sandbox the gateway uses, on sample
 * messages (one JSON object per line: `topic`, `payload` (a string, or any JSON value, which is
 * serialized) or `payloadBase64`, and optionally `deviceId`, `protocol`, `qos`, `retain`, `ts`),
 * and prints each output as a JSON line: `{"input":N,"route":…,"topic":…,"payload":…}` (`payload`
 * as text when it is UTF-8, else `payloadBase64`); a message the rule failed on prints
 * `{"input":N,"error":…}`. The clock is the samples' `ts` (or the time of the run), and
 * `--advance MS` moves it on after the last sample and calls the rule's `tick` once (to see window
 * aggregates flushed). Exit code 0, or 1 when the rule failed on any message.
 *
 * @module
 */

import { basename, dirname, resolve } from "../core/path.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import { ACCEPTED, type Draft } from "../core/device_port.ts";
import { Logger } from "../core/logger.ts";
import { createMessage, type Message, type Protocol } from "../core/message.ts";
import { MetricsRegistry } from "../core/metrics.ts";
import { loadRuleModule } from "./module_loader.ts";
import { defaultRuleEngineLimits, defaultRuleOptions, type RuleConfig } from "./options.ts";
import { RuleMetrics } from "./rule_metrics.ts";
import { RuleRunner } from "./rule_runner.ts";
import { RuleStateStore } from "./state_store.ts";
import { LogLimiter } from "./_log_limiter.ts";

/** Where the command reads and writes (tests pass their own). */
export interface RuleCommandIo {
  /** Writes one line of output. */
  out(line: string): void;
  /** Writes one line of diagnostics. */
  err(line: string): void;
  /** Reads standard input whole. */
  stdin(): Promise<string>;
}

const defaultIo: RuleCommandIo = {
  out: (l) => console.log(l),
  err: (l) => console.error(l),
  stdin: () => new Response(Deno.stdin.readable).text(),
};

const USAGE =
  "usage: ferry rule test FILE [--input samples.jsonl] [--advance MS] [--to core|northbound] [--timeout-ms N] [--root DIR]";

const fatal = new TextDecoder("utf-8", { fatal: true });

function payloadField(p: Uint8Array): Record<string, string> {
  try {
    return { payload: fatal.decode(p) };
  } catch {
    let s = "";
    for (const b of p) s += String.fromCharCode(b);
    return { payloadBase64: btoa(s) };
  }
}

interface Sample {
  topic: string;
  payload?: unknown;
  payloadBase64?: string;
  deviceId?: string;
  protocol?: string;
  qos?: 0 | 1 | 2;
  retain?: boolean;
  ts?: number;
}

function toMessage(s: Sample, line: number, now: number): Message {
  if (typeof s?.topic !== "string" || s.topic === "") {
    throw new SyntaxError(`samples line ${line}: "topic" must be a non-empty string`);
  }
  let payload: Uint8Array;
  if (s.payloadBase64 !== undefined) {
    payload = Uint8Array.from(atob(s.payloadBase64), (c) => c.charCodeAt(0));
  } else if (typeof s.payload === "string") payload = new TextEncoder().encode(s.payload);
  else payload = new TextEncoder().encode(JSON.stringify(s.payload ?? null));
  const device = s.deviceId ?? /^devices\/([^/]+)\//.exec(s.topic)?.[1];
  return createMessage({
    topic: s.topic,
    payload,
    qos: s.qos ?? 0,
    retain: s.retain ?? false,
    ts: s.ts ?? now,
    protocol: (s.protocol ?? "mqtt") as Protocol,
    deviceId: device,
  });
}

/**
 * Runs `ferry rule …` with `args` (the words after `rule`); resolves to the exit code.
 *
 * @example
 * ```ts
 * import { ruleCommand } from "./test_command.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/up.ts`,
 *   'export default (m) => ({ topic: "rules/up/" + m.topic, payload: new TextDecoder().decode(m.payload).toUpperCase() });');
 * await Deno.writeTextFile(`${dir}/in.jsonl`, '{"topic":"devices/a/telemetry","payload":"hi"}\n');
 * const lines: string[] = [];
 * const code = await ruleCommand(["test", `${dir}/up.ts`, "--input", `${dir}/in.jsonl`],
 *   { out: (l) => lines.push(l), err: () => {}, stdin: () => Promise.resolve("") });
 * await Deno.remove(dir, { recursive: true });
 * if (code !== 0 || JSON.parse(lines[0]).payload !== "HI") throw new Error(lines.join("\n"));
 * ```
 */
export async function ruleCommand(args: string[], io: RuleCommandIo = defaultIo): Promise<number> {
  const [verb, ...rest] = args;
  const flags: Record<string, string> = {};
  const files: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      const value = eq > 0 ? a.slice(eq + 1) : rest[++i];
      if (!["input", "advance", "to", "timeout-ms", "root"].includes(name) || value === undefined) {
        io.err(`ferry: ${a}: unknown flag or missing value\n${USAGE}`);
        return 2;
      }
      flags[name] = value;
    } else files.push(a);
  }
  if (verb !== "test" || files.length !== 1) {
    io.err(`ferry: ${USAGE}`);
    return 2;
  }
  const to = flags.to ?? "core";
  const advance = flags.advance === undefined ? undefined : Number(flags.advance);
  const timeoutMs = Number(flags["timeout-ms"] ?? defaultRuleOptions.timeoutMs);
  if (
    (to !== "core" && to !== "northbound") || (advance !== undefined && !(advance >= 0)) ||
    !(timeoutMs >= 1)
  ) {
    io.err(`ferry: bad --to, --advance or --timeout-ms\n${USAGE}`);
    return 2;
  }
  const file = resolve(files[0]);
  let text: string;
  try {
    text = flags.input && flags.input !== "-"
      ? await Deno.readTextFile(flags.input)
      : await io.stdin();
  } catch (err) {
    io.err(`ferry: cannot read samples: ${(err as Error).message}`);
    return 2;
  }
  let now = Date.now();
  const samples: Message[] = [];
  try {
    text.split("\n").forEach((line, i) => {
      if (line.trim() === "") return;
      const m = toMessage(JSON.parse(line), i + 1, now);
      now = m.ts;
      samples.push(m);
    });
  } catch (err) {
    io.err(`ferry: ${(err as Error).message}`);
    return 2;
  }
  now = samples[0]?.ts ?? now;

  const config: RuleConfig = {
    ...defaultRuleOptions,
    name: basename(file).replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64) ||
      "rule",
    from: ["#"],
    module: file,
    to,
    publish: ["#"],
    timeoutMs,
    onError: "dead-letter",
  };
  let module;
  try {
    module = await loadRuleModule(file, { root: flags.root ?? dirname(file) });
  } catch (err) {
    io.err(`ferry: ${(err as Error).message}`);
    return 2;
  }
  const clock: Clock = { ...systemClock, now: () => now };
  // One sample at a time (pushed, then drained): whatever comes out belongs to the current one.
  let current: number | "tick" = "tick";
  let outputs = 0;
  let errors = 0;
  const print = (out: Draft, route: string) => {
    outputs++;
    io.out(JSON.stringify({
      input: current,
      route,
      topic: out.topic,
      ...payloadField(out.payload),
      qos: out.qos,
      retain: out.retain,
      ...(out.properties?.userProperties ? { userProperties: out.properties.userProperties } : {}),
    }));
  };
  const state = await RuleStateStore.open(undefined);
  const runner = new RuleRunner(config, module, {
    clock,
    log: new Logger({ level: "error", sink: (l) => io.err(l) }),
    metrics: new RuleMetrics(new MetricsRegistry()),
    limits: { ...defaultRuleEngineLimits },
    state,
    send: (o) => (print(o, "core"), ACCEPTED),
    northbound: (o) => print(o, "northbound"),
    hold: () => {},
    unhold: () => {},
    deadLetters: {
      deadLetter: (l) => {
        errors++;
        io.out(JSON.stringify({
          input: current,
          kind: l.kind,
          error: `${l.error.name}: ${l.error.message}`,
        }));
      },
    },
    limiter: new LogLimiter(clock, 0),
    manualTicks: true,
  });
  try {
    await runner.start();
  } catch (err) {
    io.err(`ferry: ${(err as Error).message}`);
    return 2;
  }
  try {
    for (const [i, m] of samples.entries()) {
      current = i + 1;
      now = m.ts;
      runner.push(m);
      await runner.drain();
    }
    if (advance !== undefined) {
      current = "tick";
      now += advance;
      runner.tick();
      await runner.drain();
    }
  } finally {
    await runner.close();
  }
  io.err(`ferry: ${samples.length} messages in, ${outputs} out, ${errors} failed`);
  return errors ? 1 : 0;
}
