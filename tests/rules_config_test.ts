/**
 * Loading rules: the config section, loop detection, and what a rule module may import.
 *
 * @module
 */

import { assert, assertEquals, assertRejects, assertThrows } from "./_assert.ts";
import { FIXTURES, rule, rules, startEngine, waitFor } from "./_rules_harness.ts";
import { FakeClock } from "../src/core/clock.ts";
import { resolveConfig } from "../src/config/config.ts";
import { ConfigError } from "../src/config/schema.ts";
import { loadRuleModule, RuleLoadError } from "../src/rules/module_loader.ts";
import { RuleEngine } from "../src/rules/engine.ts";
import { silentLogger } from "../src/core/logger.ts";
import { ACCEPTED } from "../src/core/device_port.ts";

Deno.test("the rules section is validated with defaults filled in", () => {
  const c = resolveConfig({
    rules: [{ name: "celsius", from: ["devices/+/telemetry/#"], module: "rules/celsius.ts" }],
  });
  assertEquals(c.rules[0], {
    name: "celsius",
    from: ["devices/+/telemetry/#"],
    module: "rules/celsius.ts",
    to: "core",
    publish: ["rules/celsius/#"],
    timeoutMs: 1000,
    maxMessageBytes: 262_144,
    enabled: true,
    onError: "drop",
    errorsBeforeRestart: 10,
    restartsBeforeDisable: 5,
    maxHeapBytes: 67_108_864,
  });
  assertEquals(resolveConfig({}).rules, []);
  const err = assertThrows(
    () => resolveConfig({ rules: [{ name: "x", from: ["a"], module: "x.ts", timeout: 5 }] }),
    ConfigError,
  );
  assertEquals(err.key, "rules[0].timeout");
});

Deno.test("a rule whose outputs match its own from filters is refused at load", () => {
  const err = assertThrows(
    () =>
      resolveConfig({
        rules: [{
          name: "echo",
          from: ["devices/#"],
          module: "echo.ts",
          publish: ["devices/+/derived/#"],
        }],
      }),
    ConfigError,
  );
  assert(err.message.includes('rule "echo" would consume its own outputs'), err.message);
});

Deno.test("a cycle between rules is refused at load, naming the rules in order", () => {
  const err = assertThrows(
    () =>
      rules(
        rule({ name: "a", from: ["devices/+/telemetry"], module: "a.ts", publish: ["x/#"] }),
        rule({ name: "b", from: ["x/+"], module: "b.ts", publish: ["y/1"] }),
        rule({ name: "c", from: ["y/#"], module: "c.ts", publish: ["devices/s1/telemetry"] }),
      ),
    ConfigError,
  );
  assert(err.message.includes("a → b → c → a"), err.message);
});

Deno.test("a chain of rules without a cycle is accepted", () => {
  const r = rules(
    rule({ name: "a", from: ["devices/+/telemetry"], module: "a.ts" }),
    rule({ name: "b", from: ["rules/a/#"], module: "b.ts" }),
  );
  assertEquals(r.map((x) => x.publish), [["rules/a/#"], ["rules/b/#"]]);
});

Deno.test("onError pass needs to: northbound; names must be unique", () => {
  assertThrows(
    () => rules(rule({ name: "a", from: ["d/#"], module: "a.ts", onError: "pass" })),
    ConfigError,
    'needs to: "northbound"',
  );
  assertThrows(
    () =>
      rules(
        rule({ name: "a", from: ["d/#"], module: "a.ts" }),
        rule({ name: "a", from: ["e/#"], module: "b.ts" }),
      ),
    ConfigError,
    "duplicate rule name",
  );
});

Deno.test("the engine refuses a loop too (config reload goes through it)", async () => {
  await assertRejects(
    () =>
      RuleEngine.start({
        rules: [{ ...rule({ name: "l", from: ["#"], module: "version.ts" }), publish: ["#"] }],
        baseDir: FIXTURES,
        outlet: () => () => ACCEPTED,
      }),
    ConfigError,
    "would consume its own outputs",
  );
});

Deno.test("a rule module may not import npm:, remote, absolute or outside-root files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cases: Array<[string, string]> = [
      ['import x from "npm:left-pad";', 'imports "npm:left-pad"'],
      ['import x from "https://example.com/x.ts";', 'imports "https://example.com/x.ts"'],
      ['import x from "/etc/passwd.ts";', 'imports "/etc/passwd.ts"'],
      ['import x from "../outside.ts";', "which is outside"],
      ['const m = await import("./lib.ts");', "dynamically"],
      ['import data from "./data.txt";', "is not a .ts"],
    ];
    for (const [line, why] of cases) {
      await Deno.mkdir(`${dir}/root`, { recursive: true });
      await Deno.writeTextFile(`${dir}/root/r.ts`, `${line}\nexport default () => null;\n`);
      await Deno.writeTextFile(`${dir}/root/data.txt`, "x");
      await assertRejects(() => loadRuleModule(`${dir}/root/r.ts`), RuleLoadError, why);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a module that does not load stops the engine from starting, naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/broken.ts`, "export default (m => ;\n");
    await Deno.writeTextFile(`${dir}/nodefault.ts`, "export const x = 1;\n");
    for (const [file, why] of [["broken.ts", "broken.ts"], ["nodefault.ts", "default export"]]) {
      const err = await assertRejects(
        () =>
          RuleEngine.start({
            rules: rules(rule({ name: "b", from: ["d/#"], module: file })),
            baseDir: dir,
            outlet: () => () => ACCEPTED,
            log: silentLogger,
          }),
        RuleLoadError,
      );
      assert(err.message.includes(why), err.message);
      assert(!err.message.includes("base64,"), "the data: URL is not in the message");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an edited module that no longer loads leaves the running version in place", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.copyFile(`${FIXTURES}version.ts`, `${dir}/version.ts`);
  await using h = await startEngine(
    rules(rule({ name: "version", from: ["d/#"], module: "version.ts" })),
    { baseDir: dir },
  );
  await Deno.writeTextFile(`${dir}/version.ts`, "export default (;\n");
  await assertRejects(() => h.engine.reload(), RuleLoadError);
  assertEquals(h.engine.list()[0].status, "running");
  assert(h.lines.some((l) => l.includes("keeping the running versions")));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a module whose top-level code never finishes is refused after its load budget", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/stuck.ts`, "for (;;) { /* */ }\nexport default () => null;\n");
    const clock = new FakeClock();
    let settled: unknown;
    RuleEngine.start({
      rules: rules(rule({ name: "stuck", from: ["d/#"], module: "stuck.ts" })),
      baseDir: dir,
      outlet: () => () => ACCEPTED,
      clock,
      log: silentLogger,
      limits: { loadTimeoutMs: 1000 },
    }).then(() => settled = "started", (err) => settled = err);
    await waitFor(() => {
      clock.tick(1000);
      return settled !== undefined;
    }, "the load to be given up");
    assert(settled instanceof RuleLoadError, String(settled));
    assert(settled.message.includes("did not finish loading within 1000 ms"), settled.message);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
