/**
 * The device port's service identities (`DevicePort.service`): what a service of the gateway (the
 * rule engine) publishes is derived from accepted messages, judged by its own filters and admitted
 * at once even into a full pipeline, in order.
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import { memoryLogger } from "./_harness.ts";
import { Core } from "../src/core/core.ts";
import type { Draft, PublishResult } from "../src/core/device_port.ts";
import { Identity } from "../src/core/login.ts";
import type { Message } from "../src/core/message.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function draft(topic: string, text: string): Draft {
  return { topic, payload: enc.encode(text), qos: 0, retain: false };
}

function deviceOf(core: Core, id: string): Identity {
  const who = core.port({ name: "test" }).login({ user: id }, "127.0.0.1");
  if (!(who instanceof Identity)) throw new Error(who.message);
  return who;
}

Deno.test("A service's message waits for room in a full pipeline ahead of waiting producers, after what was queued", async () => {
  const { log } = memoryLogger();
  const core = new Core({ anonymous: true, log, queueCapacity: 2, concurrency: 1 });
  const seen: string[] = [];
  core.subscribe("#", { id: "t", deliver: (m) => seen.push(dec.decode(m.payload)) });
  const dev = core.port({ name: "test" });
  const d1 = deviceOf(core, "d1");
  const holder = {};
  dev.hold(holder); // a slow subscriber: delivery waits, the queue fills
  // Publish until the pipeline refuses (how many fit depends on its run-now path and capacity).
  const accepted: string[] = [];
  let refused: PublishResult | Promise<PublishResult> | undefined;
  for (let i = 0; i < 100 && refused === undefined; i++) {
    const r = dev.publish(d1, draft("devices/d1/telemetry", `m${i}`));
    assert(!(r instanceof Promise), "no wait asked: an answer in the call");
    if (r.ok) accepted.push(`m${i}`);
    else refused = r;
  }
  assert(
    refused !== undefined && !(refused instanceof Promise) && !refused.ok &&
      refused.reason === "overloaded",
    "the queue is full",
  );

  const rules = core.port({ name: "rules" });
  const svc = rules.service({ name: "r", publish: ["rules/r/#"] }, "d1");
  const waiting = dev.publish(d1, draft("devices/d1/telemetry", "last"), { wait: true });
  assert(waiting instanceof Promise, "a producer waits while the queue is full");
  const out = rules.publish(svc, draft("rules/r/d1", "derived"));
  assert(out instanceof Promise, "the derived message waits too: the queue keeps its capacity");
  assertEquals(core.pipeline.depth, core.pipeline.capacity);
  dev.unhold(holder);
  assertEquals(await out, { ok: true });
  assertEquals(await waiting, { ok: true });
  await core.close();
  assert(accepted.length >= 1);
  // The derived message went in ahead of the producer that had waited longer.
  assertEquals(seen, [...accepted, "derived", "last"]);
});

Deno.test("A service publishes only within its filters, under its own principal, speaking for the device", async () => {
  const { log } = memoryLogger();
  const core = new Core({ anonymous: true, log });
  const got: Message[] = [];
  core.subscribe("#", { id: "t", deliver: (m) => got.push(m) });
  const rules = core.port({ name: "rules" });
  const svc = rules.service({ name: "celsius", publish: ["rules/celsius/#"] }, "d1");
  assertEquals(svc.key, "service:rules/celsius");
  assert(svc.derived && !deviceOf(core, "d2").derived);
  const denied = rules.publish(svc, draft("devices/d1/telemetry", "x"));
  assert(!(denied instanceof Promise) && !denied.ok && denied.reason === "not_authorized");
  assert(rules.mayPublish(svc, "rules/celsius/d1/t") && !rules.maySubscribe(svc, "#"));
  assertEquals(rules.publish(svc, draft("rules/celsius/d1/t", "21.5")), { ok: true });
  await core.close();
  assertEquals(got.map((m) => [m.topic, m.deviceId, m.protocol]), [
    ["rules/celsius/d1/t", "d1", "rules"],
  ]);
  assertEquals(core.stats.drops.get({ protocol: "rules", reason: "not_authorized" }), 1);
});

Deno.test("Derived messages are not rate-limited and do not count as the device's own", async () => {
  const { log } = memoryLogger();
  const core = new Core({ anonymous: true, log, deviceRatePerSec: 1, deviceBurst: 1 });
  const dev = core.port({ name: "test" });
  const d1 = deviceOf(core, "d1");
  core.registry.device("d1"); // its record (a connected device has one from its presence)
  assertEquals(dev.publish(d1, draft("devices/d1/telemetry", "a")), { ok: true });
  const limited = dev.publish(d1, draft("devices/d1/telemetry", "b"));
  assert(!(limited instanceof Promise) && !limited.ok && limited.reason === "rate_limited");
  const rules = core.port({ name: "rules" });
  const svc = rules.service({ name: "r", publish: ["rules/r/#"] }, "d1");
  for (let i = 0; i < 10; i++) {
    assertEquals(rules.publish(svc, draft("rules/r/d1", String(i))), { ok: true });
  }
  await core.close();
  assertEquals(core.registry.device("d1").messagesIn, 1);
  assertEquals(core.stats.messagesIn.get({ protocol: "rules" }), 10);
});

Deno.test("With a durable stage, derived messages are appended at once and admitted in the order published", async () => {
  const { log } = memoryLogger();
  const core = new Core({ anonymous: true, log });
  const pending: Array<PromiseWithResolvers<void>> = [];
  core.setAcceptHook(() => {
    const p = Promise.withResolvers<void>();
    pending.push(p);
    return p.promise;
  });
  const seen: string[] = [];
  core.subscribe("rules/#", { id: "t", deliver: (m) => seen.push(dec.decode(m.payload)) });
  const rules = core.port({ name: "rules" });
  const svc = rules.service({ name: "r", publish: ["rules/r/#"] });
  const results = ["a", "b", "c"].map((t) => rules.publish(svc, draft("rules/r/x", t)));
  assertEquals(pending.length, 3, "each appended at once (one group commit)");
  pending[2].resolve();
  pending[1].resolve();
  await new Promise((r) => setTimeout(r, 0));
  assertEquals(seen, [], "none admitted ahead of the first");
  pending[0].resolve();
  assertEquals(await Promise.all(results), [{ ok: true }, { ok: true }, { ok: true }]);
  await core.close();
  assertEquals(seen, ["a", "b", "c"]);
  const late = rules.publish(svc, draft("rules/r/x", "d"));
  assert(!(late instanceof Promise) && !late.ok && late.reason === "shutting_down");
});
