import { assert, assertEquals, assertThrows } from "./_assert.ts";
import {
  topicMatches,
  TopicRouter,
  validateFilter,
  validateTopic,
} from "../src/core/topic_router.ts";

Deno.test("TopicRouter matches + for one level and # for the rest including the parent", () => {
  const r = new TopicRouter<string>();
  for (const f of ["a/+/c", "a/#", "#", "a/b", "+/+", "a/b/c/#", "+"]) r.add(f, f);
  assertEquals(r.match("a/b/c").sort(), ["#", "a/#", "a/+/c", "a/b/c/#"].sort());
  assertEquals(r.match("a").sort(), ["#", "+", "a/#"].sort());
  assertEquals(r.match("a/b").sort(), ["#", "+/+", "a/#", "a/b"].sort());
});

Deno.test("TopicRouter does not match $-topics with a wildcard in the first level", () => {
  const r = new TopicRouter<string>();
  for (const f of ["#", "+/x", "$SYS/#", "$SYS/+"]) r.add(f, f);
  assertEquals(r.match("$SYS/x").sort(), ["$SYS/#", "$SYS/+"]);
  assert(!topicMatches("#", "$SYS"));
  assert(topicMatches("$SYS/#", "$SYS"));
});

Deno.test("TopicRouter handles empty levels as levels", () => {
  const r = new TopicRouter<string>();
  r.add("a//c", "x");
  r.add("+/+/+", "y");
  r.add("/+", "z");
  assertEquals(r.match("a//c").sort(), ["x", "y"]);
  assertEquals(r.match("/finance"), ["z"]);
});

Deno.test("TopicRouter remove prunes and a value under two filters is reported twice", () => {
  const r = new TopicRouter<string>();
  r.add("a/#", "v");
  r.add("a/b", "v");
  assertEquals(r.match("a/b"), ["v", "v"]);
  assert(r.remove("a/#", "v"));
  assert(!r.remove("a/#", "v"));
  assertEquals(r.match("a/b"), ["v"]);
  assertEquals(r.size, 1);
});

Deno.test("TopicRouter rejects malformed filters", () => {
  const r = new TopicRouter<string>();
  for (const bad of ["", "a/#/b", "a#", "a/b+", "+a"]) {
    assertThrows(() => r.add(bad, "x"), TypeError);
    assert(validateFilter(bad) !== undefined, bad);
  }
  assertEquals(validateTopic("a/+"), "topic contains a wildcard");
  assertEquals(validateTopic("a/b"), undefined);
});

Deno.test("topicMatches agrees with the router on random topics", () => {
  const levels = ["a", "b", "", "$x"];
  const filters = ["#", "+", "a/#", "+/+", "a/+/b", "+/#", "$x/#", "a//b", "a"];
  const r = new TopicRouter<string>();
  for (const f of filters) r.add(f, f);
  for (let i = 0; i < 2000; i++) {
    const n = 1 + (i % 4);
    const topic = Array.from({ length: n }, (_, k) => levels[(i * 7 + k * 13) % 4]).join("/");
    if (!topic) continue;
    const expected = filters.filter((f) => topicMatches(f, topic)).sort();
    assertEquals(r.match(topic).sort(), expected, topic);
  }
});

Deno.test("TopicRouter's match cache follows subscription changes", () => {
  const r = new TopicRouter<string>();
  assertEquals(r.match("devices/a/telemetry"), []); // a cached miss
  r.add("devices/+/telemetry", "t");
  assertEquals(r.match("devices/a/telemetry"), ["t"]); // the add cleared it
  r.add("devices/a/#", "a");
  assertEquals(r.match("devices/a/telemetry").sort(), ["a", "t"]);
  r.remove("devices/+/telemetry", "t");
  assertEquals(r.match("devices/a/telemetry"), ["a"]);
  for (let i = 0; i < 5000; i++) r.match(`devices/a/x${i}`); // past the cache bound
  assertEquals(r.match("devices/a/telemetry"), ["a"]);
});
