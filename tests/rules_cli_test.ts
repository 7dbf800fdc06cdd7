/**
 * `ferry rule test`: a rule run in its sandbox on sample messages, outputs printed as JSON lines.
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import { FIXTURES } from "./_rules_harness.ts";
import { ruleCommand } from "../src/rules/test_command.ts";
import { main } from "../main.ts";

Deno.test("ferry rule test prints a rule's outputs for sample messages", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const samples = `${dir}/samples.jsonl`;
    await Deno.writeTextFile(
      samples,
      [
        '{"topic":"devices/s1/telemetry/temp","payload":{"temp_f":212}}',
        '{"topic":"devices/s1/telemetry/temp","payload":"not json"}',
      ].join("\n") + "\n",
    );
    const out: string[] = [];
    const err: string[] = [];
    const code = await ruleCommand(
      ["test", `${FIXTURES}celsius.ts`, "--input", samples],
      { out: (l) => out.push(l), err: (l) => err.push(l), stdin: () => Promise.resolve("") },
    );
    assertEquals(code, 1, "a message failed");
    assertEquals(JSON.parse(out[0]), {
      input: 1,
      route: "core",
      topic: "rules/celsius/s1/temp",
      payload: '{"temp_c":100}',
      qos: 0,
      retain: false,
    });
    const failure = JSON.parse(out[1]);
    assertEquals([failure.input, failure.kind], [2, "throw"]);
    assert(failure.error.startsWith("SyntaxError: Cannot parse the payload of"), failure.error);
    assertEquals(err.at(-1), "ferry: 2 messages in, 1 out, 1 failed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ferry rule test --advance flushes a window rule's aggregate", async () => {
  const out: string[] = [];
  const samples = [1, 2, 3].map((v, i) =>
    JSON.stringify({ topic: "devices/s1/telemetry", payload: { v }, ts: 1_000_000 + i * 1000 })
  ).join("\n");
  const code = await ruleCommand(
    ["test", `${FIXTURES}average.ts`, "--advance", "10000"],
    { out: (l) => out.push(l), err: () => {}, stdin: () => Promise.resolve(samples) },
  );
  assertEquals(code, 0);
  assertEquals(out.length, 1);
  const o = JSON.parse(out[0]);
  assertEquals([o.input, o.topic, JSON.parse(o.payload).avg], ["tick", "rules/average/s1", 2]);
});

Deno.test("main dispatches `ferry rule` and reports a usage error with exit code 2", async () => {
  assertEquals(await main(["rule", "frobnicate"]), 2);
});
