/**
 * The deduplication table of RFC 7252 §4.5: lifetime, bound and eviction order.
 *
 * @module
 */

import { FakeClock } from "../src/core/clock.ts";
import { ExchangeCache } from "../src/protocols/coap/exchange_cache.ts";
import { assert, assertEquals } from "./_assert.ts";

Deno.test("ExchangeCache evicts the oldest entry when full and counts it", () => {
  const cache = new ExchangeCache({ clock: new FakeClock(0), maxEntries: 3 });
  for (let mid = 1; mid <= 5; mid++) cache.add(mid % 2 ? "a" : "b", mid, 1000);
  assertEquals([cache.size, cache.evicted], [3, 2]);
  assertEquals([1, 2, 3, 4, 5].map((m) => cache.get(m % 2 ? "a" : "b", m) >= 0), [
    false,
    false,
    true,
    true,
    true,
  ]);
});

Deno.test("ExchangeCache keeps IDs per endpoint and forgets each after its own lifetime", () => {
  const clock = new FakeClock(0);
  const cache = new ExchangeCache({ clock });
  cache.add("a", 7, 2000); // CON
  cache.add("b", 7, 1000); // NON from another endpoint, same ID
  clock.tick(1000);
  assert(cache.get("a", 7) >= 0 && cache.get("b", 7) < 0);
  const again = cache.add("b", 7, 1000); // the ID reused after its lifetime: a new message
  assertEquals([cache.get("b", 7), cache.size], [again, 2]);
  clock.tick(1000);
  cache.add("c", 1, 1000); // sweeps what expired
  assertEquals([cache.get("a", 7), cache.get("b", 7), cache.size], [-1, -1, 1]);
});

Deno.test("ExchangeCache stays bounded over 200,000 messages from 1,000 endpoints", () => {
  const clock = new FakeClock(0);
  const cache = new ExchangeCache({ clock, maxEntries: 10_000 });
  for (let i = 0; i < 200_000; i++) {
    cache.add(`127.0.0.1:${10_000 + (i % 1000)}`, (i / 1000) & 0xffff, 247_000);
    if (i % 1000 === 0) clock.tick(1);
  }
  assertEquals([cache.size, cache.evicted], [10_000, 190_000]);
  assert(cache.get("127.0.0.1:10999", 199) >= 0);
  assert(cache.get("127.0.0.1:10000", 0) < 0);
});

Deno.test("ExchangeCache keeps each message's reply, and none for a slot given to another message", () => {
  const cache = new ExchangeCache({ clock: new FakeClock(0), maxEntries: 2 });
  const a = cache.add("a", 1, 1000);
  const b = cache.add("b", 1, 1000);
  cache.setReply(a, "a", 1, new Uint8Array([0x60, 0x44, 0, 1]));
  assertEquals([...cache.reply(cache.get("a", 1))!], [0x60, 0x44, 0, 1]);
  assertEquals(cache.reply(b), undefined); // no reply yet: a duplicate is not answered
  cache.add("c", 1, 1000); // evicts "a" and takes its slot
  assertEquals(cache.get("a", 1), -1);
  cache.setReply(a, "a", 1, new Uint8Array([9])); // a late answer of the evicted exchange
  assertEquals(cache.reply(cache.get("c", 1)), undefined);
});

Deno.test("ExchangeCache: a replaced ID's old slot leaving the ring does not forget the new one", () => {
  const clock = new FakeClock(0);
  const cache = new ExchangeCache({ clock, maxEntries: 4 });
  cache.add("x", 1, 1000); // CON: keeps the NON behind it from being swept
  cache.add("a", 5, 10); // NON, short-lived
  clock.tick(10);
  cache.add("a", 5, 1000); // the same ID again after its lifetime: a new message, a new slot
  cache.add("b", 1, 1000);
  cache.add("b", 2, 1000); // the ring is full: "x" 1 is evicted
  cache.add("b", 3, 1000); // the first "a" 5's slot leaves: nothing live is lost
  assertEquals([cache.get("a", 5) >= 0, cache.get("x", 1), cache.size, cache.evicted], [
    true,
    -1,
    4,
    1,
  ]);
});
