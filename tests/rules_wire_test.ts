/**
 * The batch packing of `src/rules/_wire.ts`: one builder packs batch after batch (its buffers are
 * reused), and every batch it built keeps its own items.
 *
 * @module
 */

import { assertEquals } from "./_assert.ts";
import { BatchBuilder, itemAt, type PackItem } from "../src/rules/_wire.ts";

function item(device: string, i: number, props = false): PackItem {
  const m: PackItem = {
    topic: `devices/${device}/telemetry/${i % 2}`,
    payload: new TextEncoder().encode(`${device}:${i}`.repeat(1 + (i % 5))),
    qos: (i % 3) as 0 | 1 | 2,
    retain: i % 4 === 0,
    ts: 1000 + i,
    protocol: i % 2 ? "mqtt" : "coap",
    deviceId: device,
  };
  if (props) m.properties = { userProperties: [["i", String(i)]] };
  return m;
}

Deno.test("BatchBuilder reused after reset packs each batch on its own, earlier batches unchanged", () => {
  const b = new BatchBuilder();
  const first = Array.from({ length: 300 }, (_, i) => item("a", i, i % 7 === 0));
  for (const m of first) b.add(m, 0);
  const one = b.build();
  b.reset();
  // The second batch is smaller than the first (the grown buffers hold stale bytes past its end),
  // starts with the last batch's device (no stale string index may be reused) and has others.
  const second = Array.from({ length: 5 }, (_, i) => item(["a", "b", "c"][i % 3], i + 50, i === 1));
  b.add(second[0], 0);
  b.add(undefined, 77); // a tick
  for (const m of second.slice(1)) b.add(m, 0);
  assertEquals([b.length, b.messages], [6, 5]);
  const two = b.build();
  b.reset();
  assertEquals(b.length, 0);
  assertEquals(first.map((_, i) => itemAt(one, i)), first);
  assertEquals(one.flags.length, 300);
  const got = Array.from({ length: 6 }, (_, i) => itemAt(two, i));
  assertEquals(got, [second[0], undefined, ...second.slice(1)]);
  assertEquals(two.ts[1], 77);
  assertEquals(two.strings.filter((s) => s === "a").length, 1);
  assertEquals(two.payload.byteLength, second.reduce((n, m) => n + m.payload.byteLength, 0));
});
