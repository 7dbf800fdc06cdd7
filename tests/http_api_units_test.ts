/**
 * Unit behaviour of the HTTP device API's parts, without sockets: the batch splitter on fixtures
 * and random/mutated input, token buckets and the command queue on a fake clock, the SSE stream's
 * slow-consumer cut-off, and option validation.
 *
 * @module
 */

import { Core } from "../src/core/core.ts";
import { silentLogger } from "../src/core/logger.ts";
import { createMessage } from "../src/core/message.ts";
import { splitBatch } from "../src/http/device_api/batch.ts";
import { DeviceApi, resolveDeviceApiOptions } from "../src/http/device_api/mod.ts";
import { RateLimiter } from "../src/core/rate_limiter.ts";
import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { dec, enc } from "./_harness.ts";

Deno.test("splitBatch keeps NDJSON lines byte for byte, including UTF-8 and CRLF", () => {
  const body = enc('{"t":"é😀"}\r\n\n  \n{"n":[1,2]}');
  const r = splitBatch(body, "application/x-ndjson; charset=utf-8", { maxBatch: 10 });
  assert(r.kind === "batch");
  assertEquals(r.items.map(dec), ['{"t":"é😀"}', '{"n":[1,2]}']);
});

Deno.test("splitBatch treats only JSON arrays as batches and leaves other bodies whole", () => {
  assertEquals(splitBatch(enc(" [1]"), "application/json", { maxBatch: 5 }).kind, "batch");
  assertEquals(splitBatch(enc("[1]"), "text/plain", { maxBatch: 5 }).kind, "single");
  assertEquals(splitBatch(enc("[1]"), null, { maxBatch: 5 }).kind, "single");
  assertEquals(
    splitBatch(enc("[1]"), "application/json", { maxBatch: 5, arrayIsBatch: false }).kind,
    "single",
  );
  const bad = splitBatch(enc("[1,"), "application/json", { maxBatch: 5 });
  assert(bad.kind === "error" && bad.slug === "invalid-batch");
  const empty = splitBatch(enc("\n\n"), "application/x-ndjson", { maxBatch: 5 });
  assert(empty.kind === "error" && empty.slug === "invalid-batch");
});

Deno.test("splitBatch never throws on random or mutated input", () => {
  let seed = 42;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  const valid = enc('{"a":1}\n{"b":[true,null]}\n"s"\n');
  for (let i = 0; i < 2000; i++) {
    let b: Uint8Array;
    if (i % 2 === 0) {
      b = new Uint8Array(Math.floor(rand() * 64));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(rand() * 256);
    } else {
      b = valid.slice();
      for (let k = 0; k < 3; k++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
    }
    for (const type of ["application/x-ndjson", "application/json"]) {
      const r = splitBatch(b, type, { maxBatch: 3 });
      assert(["single", "batch", "error"].includes(r.kind));
      if (r.kind === "batch") {
        assert(r.items.length >= 1 && r.items.length <= 3);
        for (const item of r.items) JSON.parse(dec(item)); // every item is JSON
      }
    }
  }
});

Deno.test("The core rate limiter refills at the rate, caps at the burst, and charges a big HTTP batch the burst", () => {
  let now = 0;
  const b = new RateLimiter({ ratePerSec: 10, burst: 5, now: () => now });
  assert(b.take("d", 5).ok);
  assert(!b.hasToken("d"));
  const r = b.take("d", 1);
  assert(!r.ok && r.retryAfterSec === 1);
  now += 100;
  assert(b.hasToken("d"));
  assert(b.take("d", 1).ok);
  now += 10_000;
  assert(b.take("d", 50).ok, "a batch larger than the burst passes from a full bucket");
  assert(!b.take("d", 1).ok);
  assert(new RateLimiter({ ratePerSec: 0 }).take("d", 1_000_000).ok, "0 means unlimited");
});

Deno.test("The core rate limiter forgets full buckets when the device count passes the bound", () => {
  let now = 0;
  const b = new RateLimiter({ ratePerSec: 1000, burst: 1, now: () => now, maxKeys: 10 });
  for (let i = 0; i < 10; i++) b.take(`d${i}`, 1);
  now += 1000;
  b.take("late", 1);
  assertEquals(b.size, 1);
});

Deno.test("An SSE client that does not read is cut off after a bounded backlog", async () => {
  const core = new Core({
    log: silentLogger,
    devices: [{ id: "d1", token: "t1" }],
    commands: { maxPerDevice: 2 },
  });
  const api = new DeviceApi(core, { sseHeartbeatMs: 60_000 });
  try {
    const url = new URL("http://gw/api/v1/devices/d1/commands");
    const res = await api.handle(
      new Request(url, { headers: { authorization: "Bearer t1", accept: "text/event-stream" } }),
      url,
    );
    assertEquals(res?.status, 200);
    for (let i = 0; i < 50; i++) {
      await core.publish(createMessage({ topic: `devices/d1/commands/c${i}`, payload: enc("x") }));
    }
    assertEquals(api.waiters("d1"), 0, "stream still registered");
    assertEquals(core.stats.drops.get({ protocol: "http", reason: "slow_consumer" }), 1);
    // What was queued before the cut is still readable, then the stream ends.
    let events = 0;
    for await (const chunk of res!.body!.pipeThrough(new TextDecoderStream())) {
      events += chunk.split("event: command").length - 1;
    }
    assert(events > 0 && events < 50, `${events} events`);
  } finally {
    await api.close();
    await core.close();
  }
});

Deno.test("DeviceApi options reject unknown names and out-of-range values", () => {
  assertThrows(
    () => resolveDeviceApiOptions({ maxBatch: -1 }),
    RangeError,
    "maxBatch must be a number >= 1",
  );
  assertThrows(
    () => resolveDeviceApiOptions({ nope: 1 } as unknown as Record<string, number>),
    RangeError,
    'unknown option "nope"',
  );
  const o = resolveDeviceApiOptions({ longPollMaxMs: 1000 });
  assertEquals(o.longPollDefaultMs, 1000, "default wait capped by the max");
});
