/**
 * The rule engine with real sandboxed workers on a fake clock: conversions, state, windows, the
 * budgets (errors, timeouts, size), the sandbox, order, ACL and routes.
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import {
  deviceMessage,
  feed,
  FIXTURES,
  rule,
  rules,
  startEngine,
  waitFor,
} from "./_rules_harness.ts";
import { createMessage } from "../src/core/message.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("a unit-conversion rule turns Fahrenheit into Celsius on a rewritten topic", async () => {
  await using h = await startEngine(rules(
    rule({ name: "celsius", from: ["devices/+/telemetry/#"], module: "celsius.ts" }),
  ));
  await feed(h.engine, [
    deviceMessage(h.clock, "s1", "devices/s1/telemetry/temp", '{"temp_f":212}'),
    deviceMessage(h.clock, "s2", "devices/s2/telemetry/temp", '{"temp_f":98.6}'),
  ]);
  assertEquals(h.texts(), [
    'rules/celsius/s1/temp {"temp_c":100}',
    'rules/celsius/s2/temp {"temp_c":37}',
  ]);
  assertEquals(h.out[0].deviceId, "s1", "an output keeps the publishing device");
  assertEquals(h.out[0].origin, "rule:celsius");
  assertEquals(h.counter("ferry_rule_messages_in_total", { rule: "celsius" }), 2);
  assertEquals(h.counter("ferry_rule_messages_out_total", { rule: "celsius", route: "core" }), 2);
});

Deno.test("a deadband rule forwards changes only, and its state survives a restart", async () => {
  const dir = await Deno.makeTempDir();
  const stateFile = `${dir}/rules-state.json`;
  const config = rules(
    rule({ name: "deadband", from: ["devices/+/telemetry"], module: "deadband.ts" }),
  );
  {
    await using h = await startEngine(config, { stateFile });
    await feed(
      h.engine,
      [20, 20.3, 20.6, 20.2, 19.9].map((v) =>
        deviceMessage(h.clock, "s1", "devices/s1/telemetry", `{"v":${v}}`)
      ),
    );
    assertEquals(h.out.map((m) => text(m.payload)), ["20", "20.6", "19.9"]);
    assertEquals(
      h.counter("ferry_rule_dropped_total", { rule: "deadband", reason: "filtered" }),
      2,
    );
  }
  const saved = JSON.parse(await Deno.readTextFile(stateFile));
  assertEquals(saved.rules.deadband["deadband:devices/s1/telemetry"], 19.9);
  {
    await using h = await startEngine(config, { stateFile });
    await feed(h.engine, [
      deviceMessage(h.clock, "s1", "devices/s1/telemetry", '{"v":20.1}'),
      deviceMessage(h.clock, "s1", "devices/s1/telemetry", '{"v":21}'),
    ]);
    assertEquals(h.out.map((m) => text(m.payload)), ["21"], "20.1 is within 0.5 of 19.9");
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a 10-second average is flushed by the (fake) clock, not by the next message", async () => {
  await using h = await startEngine(rules(
    rule({ name: "average", from: ["devices/+/telemetry"], module: "average.ts" }),
  ));
  const start = h.clock.now(); // 1_000_000: a window boundary
  const msgs = [];
  for (let i = 0; i < 10; i++) {
    const m = deviceMessage(h.clock, "s1", "devices/s1/telemetry", `{"v":${10 + i}}`);
    m.ts = start + i * 1000;
    msgs.push(m);
  }
  await feed(h.engine, msgs);
  h.clock.tick(9_000);
  await h.engine.drain();
  assertEquals(h.out.length, 0, "the window is still open");
  h.clock.tick(1_000);
  await h.engine.drain();
  assertEquals(h.out.length, 1);
  assertEquals(h.out[0].topic, "rules/average/s1");
  assertEquals(JSON.parse(text(h.out[0].payload)), {
    avg: 14.5,
    min: 10,
    max: 19,
    count: 10,
    end: start + 10_000,
  });
  assertEquals(h.out[0].deviceId, undefined, "a tick's output has no device");
});

Deno.test("a rule that throws: the message is dead-lettered, counted, and logged once", async () => {
  await using h = await startEngine(rules(
    rule({ name: "throws", from: ["devices/#"], module: "throws.ts", onError: "dead-letter" }),
  ));
  await feed(h.engine, [
    deviceMessage(h.clock, "s1", "devices/s1/telemetry", "bad"),
    deviceMessage(h.clock, "s1", "devices/s1/telemetry", "good"),
    deviceMessage(h.clock, "s1", "devices/s1/telemetry", "bad"),
  ]);
  assertEquals(h.texts(), ["rules/throws/ok good"]);
  assertEquals(h.dead.length, 2);
  assertEquals(h.dead[0].kind, "throw");
  assertEquals(h.dead[0].error.name, "RangeError");
  assertEquals(h.dead[0].error.message, "bad reading on devices/s1/telemetry");
  assertEquals(text(h.dead[0].message.payload), "bad");
  assertEquals(h.counter("ferry_rule_errors_total", { rule: "throws", kind: "throw" }), 2);
  const logged = h.lines.filter((l) => l.includes("rule failed on a message"));
  assertEquals(logged.length, 1, "the second failure within the period is not logged");
});

Deno.test("errors in a row restart the rule; past the threshold it is disabled", async () => {
  await using h = await startEngine(rules(rule({
    name: "throws",
    from: ["devices/#"],
    module: "throws.ts",
    errorsBeforeRestart: 2,
    restartsBeforeDisable: 2,
  })));
  const bad = () => deviceMessage(h.clock, "s1", "devices/s1/telemetry", "bad");
  await feed(h.engine, [bad(), bad()]);
  assertEquals(h.counter("ferry_rule_restarts_total", { rule: "throws" }), 1);
  await feed(h.engine, [bad(), bad()]);
  assertEquals(h.counter("ferry_rule_restarts_total", { rule: "throws" }), 2);
  await feed(h.engine, [bad(), bad()]);
  assertEquals(h.engine.list()[0].status, "disabled");
  await feed(h.engine, [deviceMessage(h.clock, "s1", "devices/s1/telemetry", "good")]);
  assertEquals(h.out.length, 0, "a disabled rule runs nothing");
  assertEquals(h.counter("ferry_rule_dropped_total", { rule: "throws", reason: "disabled" }), 1);
  assert(h.lines.some((l) => l.includes("rule disabled")));
  await h.engine.enable("throws");
  await feed(h.engine, [deviceMessage(h.clock, "s1", "devices/s1/telemetry", "good")]);
  assertEquals(h.texts(), ["rules/throws/ok good"]);
});

Deno.test("errors in a row restart the rule even when a good message ends the same batch", async () => {
  await using h = await startEngine(rules(rule({
    name: "throws",
    from: ["devices/#"],
    module: "throws.ts",
    errorsBeforeRestart: 3,
  })));
  const msg = (p: string) => deviceMessage(h.clock, "s1", "devices/s1/telemetry", p);
  // Handed over in one turn: one batch of three bad messages and a good one.
  await Promise.all(
    [msg("bad"), msg("bad"), msg("bad"), msg("good")].map((m) => h.engine.handle(m)),
  );
  await h.engine.drain();
  assertEquals(h.counter("ferry_rule_restarts_total", { rule: "throws" }), 1);
  assertEquals(h.texts(), ["rules/throws/ok good"]);
  assert(h.lines.some((l) => l.includes('"reason":"3 errors in a row"')), h.lines.join("\n"));
});

Deno.test("a rule whose heap grows past its limit is restarted between batches; its outputs keep coming", async () => {
  await using h = await startEngine(rules(rule({
    name: "leak",
    from: ["devices/#"],
    module: "leak.ts",
    maxHeapBytes: 16 * 1024 * 1024,
    restartsBeforeDisable: 100,
  })));
  for (let i = 0; i < 12; i++) {
    await feed(h.engine, [deviceMessage(h.clock, "s1", "devices/s1/telemetry", `m${i}`)]);
  }
  const held = h.texts().map((t) => Number(t.split(" ")[2]));
  assertEquals(held.length, 12, "every message came out");
  assert(Math.max(...held) <= 4, `the worker never held more than 16 MiB: ${held}`);
  assert(h.counter("ferry_rule_restarts_total", { rule: "leak" }) >= 2, String(held));
  assertEquals(
    h.counter("ferry_rule_errors_total", { rule: "leak", kind: "memory" }),
    h.counter("ferry_rule_restarts_total", { rule: "leak" }),
  );
  assert(h.lines.some((l) => /over its 16\.0 MiB limit/.test(l)), h.lines.join("\n"));
});

Deno.test("a rule that loops forever is stopped at its budget and the others keep flowing", async () => {
  await using h = await startEngine(rules(
    rule({ name: "hang", from: ["devices/+/telemetry"], module: "hang.ts", timeoutMs: 500 }),
    rule({ name: "celsius", from: ["devices/+/telemetry/temp"], module: "celsius.ts" }),
  ));
  await feed(h.engine, [deviceMessage(h.clock, "s1", "devices/s1/telemetry", "a")]);
  for (const p of ["hang", "b"]) {
    await h.engine.handle(deviceMessage(h.clock, "s1", "devices/s1/telemetry", p));
  }
  // Meanwhile another rule keeps working.
  await h.engine.handle(deviceMessage(h.clock, "s2", "devices/s2/telemetry/temp", '{"temp_f":32}'));
  await waitFor(() => h.texts().includes('rules/celsius/s2/temp {"temp_c":0}'), "the other rule");
  // The watchdog runs on the fake clock: move it on until the hung message is given up.
  await waitFor(() => {
    h.clock.tick(500);
    return h.counter("ferry_rule_timeouts_total", { rule: "hang" }) === 1;
  }, "the timeout");
  await h.engine.drain();
  await feed(h.engine, [deviceMessage(h.clock, "s1", "devices/s1/telemetry", "c")]);
  assertEquals(h.texts().filter((t) => t.startsWith("rules/hang")), [
    "rules/hang/ok a",
    "rules/hang/ok b",
    "rules/hang/ok c",
  ]);
  assertEquals(h.counter("ferry_rule_restarts_total", { rule: "hang" }), 1);
  assertEquals(h.counter("ferry_rule_dropped_total", { rule: "hang", reason: "timeout" }), 1);
});

Deno.test("the sandbox refuses file, network, environment and subprocess access", async () => {
  await using h = await startEngine(rules(
    rule({ name: "sandbox", from: ["devices/#"], module: "sandbox.ts", onError: "dead-letter" }),
  ));
  await feed(
    h.engine,
    ["read", "fetch", "env", "run", "nothing"].map((p) =>
      deviceMessage(h.clock, "s1", "devices/s1/telemetry", p)
    ),
  );
  assertEquals(h.texts(), ["rules/sandbox/allowed nothing"]);
  const errors = h.dead.map((l) => [text(l.message.payload), l.error.name, l.error.message]);
  assertEquals(errors.map(([p, name]) => `${p} ${name}`), [
    "read NotCapable",
    "fetch NotCapable",
    "env NotCapable",
    "run NotCapable",
  ]);
  assert(errors[0][2].includes("Requires read access"), errors[0][2]);
  assert(errors[1][2].includes("Requires net access"), errors[1][2]);
  assert(errors[2][2].includes("Requires env access"), errors[2][2]);
  assert(errors[3][2].includes("Requires run access"), errors[3][2]);
});

Deno.test("a rule's huge output fails only that message: one output over the size budget, too many outputs, too many bytes together", async () => {
  await using h = await startEngine(rules(
    rule({ name: "huge", from: ["devices/#"], module: "huge.ts", onError: "dead-letter" }),
  ));
  await feed(
    h.engine,
    ["big", "many", "wide", "small"].map((p) =>
      deviceMessage(h.clock, "s1", "devices/s1/telemetry", p)
    ),
  );
  assertEquals(h.texts(), ["rules/huge/ok small"], "nothing of the floods came out");
  assertEquals(
    h.dead.map((l) => [text(l.message.payload), l.kind, l.error.name]),
    [["big", "throw", "RangeError"], ["many", "throw", "RangeError"], [
      "wide",
      "throw",
      "RangeError",
    ]],
  );
  const [big, many, wide] = h.dead.map((l) => l.error.message);
  assert(big.includes("8388622 bytes exceed the rule's 262144 byte limit"), big);
  assert(many.includes("Cannot emit 1000000 outputs for one message: the limit is 64"), many);
  assert(wide.includes("the limit is 1048576 (4 × the rule's maxMessageBytes)"), wide);
  assertEquals(h.counter("ferry_rule_errors_total", { rule: "huge", kind: "throw" }), 3);
});

Deno.test("a message over the rule's size budget is not sent to it", async () => {
  await using h = await startEngine(rules(rule({
    name: "throws",
    from: ["devices/#"],
    module: "throws.ts",
    maxMessageBytes: 100,
    onError: "dead-letter",
  })));
  await feed(h.engine, [
    deviceMessage(h.clock, "s1", "devices/s1/telemetry", "x".repeat(200)),
    deviceMessage(h.clock, "s1", "devices/s1/telemetry", "small"),
  ]);
  assertEquals(h.texts(), ["rules/throws/ok small"]);
  assertEquals(h.dead.map((l) => l.kind), ["too_large"]);
  assertEquals(h.counter("ferry_rule_errors_total", { rule: "throws", kind: "too_large" }), 1);
});

Deno.test("one device's messages come out in order through a rule", async () => {
  await using h = await startEngine(
    rules(
      rule({ name: "version", from: ["devices/#"], module: "version.ts" }),
    ),
    { limits: { batchSize: 7, maxInFlight: 20 } },
  );
  const msgs = [];
  for (let i = 0; i < 500; i++) {
    msgs.push(deviceMessage(h.clock, `d${i % 3}`, `devices/d${i % 3}/telemetry`, String(i)));
  }
  await feed(h.engine, msgs);
  for (const d of ["d0", "d1", "d2"]) {
    const seq = h.out.filter((m) => m.deviceId === d).map((m) => Number(text(m.payload).slice(3)));
    assertEquals(seq, [...seq].sort((a, b) => a - b), `${d} in order`);
    assertEquals(seq.length, msgs.filter((m) => m.deviceId === d).length);
  }
});

Deno.test("outputs outside the rule's publish filters are refused", async () => {
  await using h = await startEngine(rules(
    rule({ name: "v", from: ["devices/#"], module: "version.ts", publish: ["rules/other/#"] }),
  ));
  await feed(h.engine, [deviceMessage(h.clock, "s1", "devices/s1/telemetry", "1")]);
  assertEquals(h.out.length, 0);
  assertEquals(h.counter("ferry_rule_errors_total", { rule: "v", kind: "acl" }), 1);
  assert(h.lines.some((l) => l.includes("outside its publish filters")));
});

Deno.test("to: northbound sends outputs to the northbound, and pass hands over failures", async () => {
  await using h = await startEngine(
    rules(rule({
      name: "throws",
      from: ["devices/#"],
      module: "throws.ts",
      to: "northbound",
      onError: "pass",
    })),
    { northbound: true },
  );
  await feed(h.engine, [
    deviceMessage(h.clock, "s1", "devices/s1/telemetry", "good"),
    deviceMessage(h.clock, "s1", "devices/s1/telemetry", "bad"),
  ]);
  assertEquals(h.out.length, 0, "nothing re-enters the core");
  assertEquals(h.north.map((m) => `${m.topic} ${text(m.payload)}`), [
    "rules/throws/ok good",
    "devices/s1/telemetry bad",
  ]);
});

Deno.test("a message of a topic no rule consumes costs nothing and is not counted", async () => {
  await using h = await startEngine(rules(
    rule({ name: "celsius", from: ["devices/+/telemetry/#"], module: "celsius.ts" }),
  ));
  assertEquals(
    h.engine.handle(createMessage({ topic: "other/topic", payload: new Uint8Array() })),
    undefined,
  );
  assertEquals(h.counter("ferry_rule_messages_in_total", { rule: "celsius" }), 0);
});

Deno.test("rules may import local files and the SDK; the fixtures directory is the root", async () => {
  await using h = await startEngine(rules(
    rule({ name: "imports", from: ["devices/#"], module: "imports.ts" }),
  ));
  await feed(h.engine, [deviceMessage(h.clock, "s1", "devices/s1/telemetry", "14")]);
  assertEquals(h.texts(), ["rules/imports/out 42"]);
  assert(h.engine.files.some((f) => f.endsWith("imports_lib.ts")), FIXTURES);
});
