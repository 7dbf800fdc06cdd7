/**
 * The rule helpers on their own: JSON with clear errors, scaling, topic rewrite, deadband and
 * window aggregates (time passed in explicitly: no clock at all).
 *
 * @module
 */

import { assert, assertEquals, assertThrows } from "./_assert.ts";
import {
  deadband,
  json,
  renameTopic,
  rewriteTopic,
  round,
  routeNorthbound,
  scale,
  topicRewrite,
  WindowAggregator,
} from "../src/rules/helpers.ts";
import type { RuleContext, RuleMessage } from "../src/rules/types.ts";

const enc = (s: string) => new TextEncoder().encode(s);

function message(topic: string, payload: string): RuleMessage {
  return { topic, payload: enc(payload), qos: 1, retain: false, ts: 0, protocol: "mqtt" };
}

function contextWithState(): RuleContext {
  const m = new Map<string, unknown>();
  return {
    rule: "t",
    protocol: "mqtt",
    clock: { now: () => 0 },
    state: {
      get: <T>(k: string) => m.get(k) as T | undefined,
      set: (k, v) => void m.set(k, v),
      delete: (k) => m.delete(k),
      keys: () => [...m.keys()],
    },
  };
}

Deno.test("json.parse names the topic and quotes the payload when it is not JSON", () => {
  const err = assertThrows(
    () => json.parse(message("devices/s1/telemetry", "{temp: 1}")),
    SyntaxError,
  );
  assert(err.message.includes("devices/s1/telemetry"), err.message);
  assert(err.message.includes('"{temp: 1}"'), err.message);
});

Deno.test("json.parse refuses a payload that is not UTF-8", () => {
  const msg = { ...message("t", ""), payload: new Uint8Array([0xff, 0xfe]) };
  const err = assertThrows(() => json.parse(msg), SyntaxError);
  assert(err.message.includes("not valid UTF-8"), err.message);
});

Deno.test("json.stringify refuses what has no JSON form with a TypeError", () => {
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  assertThrows(() => json.stringify(cycle), TypeError);
  assertThrows(() => json.stringify(undefined), TypeError);
  assertEquals(json.stringify([1, "a"]), '[1,"a"]');
});

Deno.test("scale converts units and rounds; a non-numeric value is a TypeError", () => {
  assertEquals(scale(212, { factor: 5 / 9, offset: -32 * 5 / 9, decimals: 1 }), 100);
  assertEquals(scale("98.6", { factor: 5 / 9, offset: -32 * 5 / 9, decimals: 1 }), 37);
  assertEquals(round(2.675, 2), 2.68);
  assertThrows(() => scale("warm"), TypeError);
});

Deno.test("topic rename and rewrite keep whole levels", () => {
  assertEquals(renameTopic("a/b/c", "a/b", "x"), "x/c");
  assertEquals(renameTopic("a/bc", "a/b", "x"), "a/bc");
  const r = topicRewrite("devices/+id/telemetry/#rest", "site/{id}/{rest}");
  assertEquals(r("devices/s1/telemetry/temp"), "site/s1/temp");
  assertEquals(r("devices/s1/telemetry"), "site/s1");
  assertEquals(r("devices/s1/status"), undefined);
  assertEquals(rewriteTopic("a/b", "+x/+y", "{y}/{x}"), "b/a");
  assertThrows(() => topicRewrite("a/+x", "{y}"), TypeError);
  assertThrows(() => topicRewrite("a/#r/b", "{r}"), TypeError);
});

Deno.test("routeNorthbound rewrites the topic and keeps payload and QoS", () => {
  const up = topicRewrite("devices/+id/telemetry/#rest", "plant/{id}/{rest}");
  const out = routeNorthbound(message("devices/s1/telemetry/t", "7"), up)!;
  assertEquals(out.topic, "plant/s1/t");
  assertEquals(out.route, "northbound");
  assertEquals(out.qos, 1);
  assertEquals(routeNorthbound(message("other", "7"), up), null);
});

Deno.test("deadband forwards only changes beyond the threshold, per key", () => {
  const ctx = contextWithState();
  const pass = [20, 20.4, 20.6, 20.2, 19.9].map((v) => deadband(ctx, "a", v, 0.5));
  assertEquals(pass, [true, false, true, false, true]);
  assert(deadband(ctx, "b", 20, 0.5), "another key has its own last value");
});

Deno.test("WindowAggregator closes a window when the next one starts or the clock passes it", () => {
  const w = new WindowAggregator({ periodMs: 10_000 });
  w.add("d", 1, 10_000);
  w.add("d", 3, 19_999);
  w.add("d", 5, 20_000); // opens the next window: the first one is closed
  const [first, ...rest] = w.flush(20_500);
  assertEquals(rest.length, 0);
  assertEquals([first.start, first.end, first.count, first.min, first.max, first.avg], [
    10_000,
    20_000,
    2,
    1,
    3,
    2,
  ]);
  w.add("d", 4, 5_000); // late: its window is gone
  assertEquals(w.flush(30_000).map((r) => r.avg), [5]);
  assertEquals(w.flush(90_000).length, 0);
});
