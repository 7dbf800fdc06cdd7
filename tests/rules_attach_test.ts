/**
 * A rule engine attached to a real core: outputs re-enter the pipeline without loss even when it
 * is full, and shutdown settles them.
 *
 * @module
 */

import { assertEquals } from "./_assert.ts";
import { memoryLogger } from "./_harness.ts";
import { FIXTURES, rule, rules } from "./_rules_harness.ts";
import { Core } from "../src/core/core.ts";
import { createMessage, type Message } from "../src/core/message.ts";
import { attachRules } from "../src/rules/attach.ts";

Deno.test("outputs into a full pipeline are admitted, not dropped, and keep each device's order", async () => {
  const { log } = memoryLogger();
  const core = new Core({ anonymous: true, log, queueCapacity: 4, concurrency: 2 });
  const seen: Message[] = [];
  core.subscribe("rules/#", { id: "t", deliver: (m) => seen.push(m) });
  const attached = await attachRules(core, {
    rules: rules(rule({ name: "version", from: ["devices/#"], module: "version.ts" })),
    baseDir: FIXTURES,
    watch: false,
  });
  const n = 2000;
  await Promise.all(["a", "b", "c", "d"].map(async (d) => {
    for (let i = 0; i < n / 4; i++) {
      await core.publish(createMessage({
        topic: `devices/${d}/telemetry`,
        payload: new TextEncoder().encode(String(i)),
        deviceId: d,
      }));
    }
  }));
  await attached.settle();
  await core.close();
  await attached.close();
  assertEquals(seen.length, n);
  for (const d of ["a", "b", "c", "d"]) {
    const seq = seen.filter((m) => m.deviceId === d).map((m) =>
      Number(new TextDecoder().decode(m.payload).split(":")[1])
    );
    assertEquals(seq, [...Array(n / 4).keys()], `${d} in order`);
  }
  assertEquals(
    attached.engine.metrics.dropped.get({ rule: "version", reason: "overloaded" }),
    0,
  );
});
