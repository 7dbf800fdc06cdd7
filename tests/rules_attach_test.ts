/**
 * A rule engine attached to a real core as an adapter of its own: it subscribes through its port,
 * and its outputs re-enter the pipeline under the rule's identity without loss even when it is
 * full, each device's order kept.
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import { memoryLogger } from "./_harness.ts";
import { FIXTURES, rule, rules, settle } from "./_rules_harness.ts";
import { Core } from "../src/core/core.ts";
import { Identity } from "../src/core/login.ts";
import type { Message } from "../src/core/message.ts";
import { attachRules } from "../src/rules/attach.ts";

Deno.test("outputs into a full pipeline wait for room ahead of device input: never dropped, never past the queue's capacity, each device's order kept", async () => {
  const { log } = memoryLogger();
  const core = new Core({ anonymous: true, log, queueCapacity: 4, concurrency: 2 });
  const seen: Message[] = [];
  core.subscribe("rules/#", { id: "t", deliver: (m) => seen.push(m) });
  // The queue's depth right after each rule output went in (or started waiting).
  let deepest = 0;
  const admit = core.pipeline.admit.bind(core.pipeline);
  core.pipeline.admit = (m) => {
    const r = admit(m);
    deepest = Math.max(deepest, core.pipeline.depth);
    return r;
  };
  const attached = await attachRules(core, {
    rules: rules(rule({ name: "version", from: ["devices/#"], module: "version.ts" })),
    baseDir: FIXTURES,
    watch: false,
  });
  const port = core.port({ name: "test" });
  // A subscriber that now and then holds delivery for a moment (a slow reader): the queue fills.
  const slow = {};
  let count = 0;
  core.subscribe("devices/#", {
    id: "slow",
    deliver: () => {
      if (++count % 50 !== 0) return;
      port.hold(slow);
      setTimeout(() => port.unhold(slow), 2);
    },
  });
  const n = 2000;
  const devices = ["a", "b", "c", "d"];
  await Promise.all(devices.map(async (d) => {
    const who = port.login({ user: d }, "127.0.0.1");
    assert(who instanceof Identity);
    for (let i = 0; i < n / 4; i++) {
      const r = await port.publish(who, {
        topic: `devices/${d}/telemetry`,
        payload: new TextEncoder().encode(String(i)),
        qos: 0,
        retain: false,
      }, { wait: true });
      assert(r.ok);
    }
  }));
  await settle(core, attached.engine);
  await attached.close();
  await core.close();
  assertEquals(seen.length, n);
  for (const d of devices) {
    const seq = seen.filter((m) => m.deviceId === d).map((m) =>
      Number(new TextDecoder().decode(m.payload).split(":")[1])
    );
    assertEquals(seq, [...Array(n / 4).keys()], `${d} in order`);
  }
  assert(seen.every((m) => m.protocol === "rules" && m.origin === "rule:version"));
  const info = attached.engine.list()[0];
  assertEquals([info.counters.in, info.counters.out, info.counters.dropped], [n, n, 0]);
  assertEquals(core.stats.messagesIn.get({ protocol: "rules" }), n);
  assert(deepest > 0 && deepest <= 4, `queue depth reached ${deepest}, capacity 4`);
});
