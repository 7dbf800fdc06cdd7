/**
 * Hot reload: a rule's new version takes over without losing or reordering a message, when asked
 * to, when its file changes, and when the config's rules change.
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import { FIXTURES, rule, rules, settle, startEngine, waitFor } from "./_rules_harness.ts";
import { memoryLogger } from "./_harness.ts";
import { Core } from "../src/core/core.ts";
import { createMessage, type Message } from "../src/core/message.ts";
import { attachRules } from "../src/rules/attach.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function versionRuleIn(dir: string, version: string): Promise<void> {
  const src = await Deno.readTextFile(`${FIXTURES}version.ts`);
  // Written aside and renamed over, as editors do: the rule is never read half-written.
  await Deno.writeTextFile(`${dir}/.version.ts.tmp`, src.replace('"v1"', `"${version}"`));
  await Deno.rename(`${dir}/.version.ts.tmp`, `${dir}/version.ts`);
}

Deno.test("a reload under load loses nothing, and the old version finishes what it took", async () => {
  const dir = await Deno.makeTempDir();
  await versionRuleIn(dir, "v1");
  await using h = await startEngine(
    rules(rule({ name: "version", from: ["devices/#"], module: "version.ts" })),
    { baseDir: dir, limits: { batchSize: 16, maxInFlight: 64 } },
  );
  const n = 3000;
  let reloaded: Promise<unknown> | undefined;
  for (let i = 0; i < n; i++) {
    if (i === 1000) {
      await versionRuleIn(dir, "v2");
      reloaded = h.engine.reload(); // not awaited: messages keep coming meanwhile
    }
    const msg = createMessage({
      topic: `devices/d${i % 4}/telemetry`,
      payload: new TextEncoder().encode(String(i)),
      deviceId: `d${i % 4}`,
    });
    await h.engine.handle(msg);
  }
  assertEquals(await reloaded, { added: [], replaced: ["version"], removed: [] });
  await h.engine.drain();
  const got = h.out.map((m) => text(m.payload).split(":"));
  assertEquals(got.length, n, "every message came out once");
  assertEquals(got.map(([, i]) => Number(i)), [...Array(n).keys()], "in order");
  const firstV2 = got.findIndex(([v]) => v === "v2");
  assert(firstV2 >= 1000, `v2 before the reload: ${firstV2}`);
  assert(got.slice(firstV2).every(([v]) => v === "v2"), "no v1 after the first v2");
  assert(got.slice(0, firstV2).every(([v]) => v === "v1"));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("an edited rule file is reloaded by the watcher", async () => {
  const dir = await Deno.makeTempDir();
  await versionRuleIn(dir, "v1");
  const { log } = memoryLogger();
  const core = new Core({ anonymous: true, log });
  const seen: Message[] = [];
  core.subscribe("rules/#", { id: "t", deliver: (m) => seen.push(m) });
  const attached = await attachRules(core, {
    rules: rules(rule({ name: "version", from: ["devices/#"], module: "version.ts" })),
    baseDir: dir,
  });
  try {
    const send = (p: string) =>
      core.publish(
        createMessage({ topic: "devices/a/telemetry", payload: new TextEncoder().encode(p) }),
      );
    await send("1");
    await waitFor(() => seen.length === 1, "v1 output");
    await versionRuleIn(dir, "v2");
    let i = 1;
    await waitFor(
      () => {
        send(String(++i));
        return seen.some((m) => text(m.payload).startsWith("v2:"));
      },
      "v2 output after the file changed",
      10_000,
    );
    await settle(core, attached.engine);
    const order = seen.map((m) => Number(text(m.payload).split(":")[1]));
    assertEquals(order, [...order].sort((a, b) => a - b), "in order across the reload");
    assertEquals(order.length, i, "nothing lost across the reload");
  } finally {
    await settle(core, attached.engine);
    await attached.close();
    await core.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a config update adds, replaces and removes rules; unchanged ones keep running", async () => {
  await using h = await startEngine(rules(
    rule({ name: "version", from: ["devices/+/telemetry"], module: "version.ts" }),
    rule({ name: "celsius", from: ["devices/+/telemetry/temp"], module: "celsius.ts" }),
  ));
  const report = await h.engine.update(rules(
    rule({ name: "version", from: ["devices/+/telemetry"], module: "version.ts" }),
    rule({ name: "imports", from: ["devices/+/other"], module: "imports.ts" }),
    rule({ name: "average", from: ["devices/+/avg"], module: "average.ts", enabled: false }),
  ));
  assertEquals(report, { added: ["imports"], replaced: [], removed: ["celsius"] });
  assertEquals(h.engine.list().map((r) => `${r.name}:${r.status}`), [
    "version:running",
    "imports:running",
    "average:off",
  ]);
  const changed = await h.engine.update(rules(
    rule({ name: "version", from: ["devices/#"], module: "version.ts" }),
  ));
  assertEquals(changed, { added: [], replaced: ["version"], removed: ["imports"] });
});
