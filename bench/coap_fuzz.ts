/**
 * CoAP fuzz run: random and mutated datagrams through `decodeMessage` (only `CoapSyntaxError` may
 * come out, no input may take long, whatever decodes must re-encode to the same message), then a
 * socket phase: a live server takes garbage from 50 endpoints while a well-behaved device keeps
 * publishing CON telemetry, every message of which must be acknowledged and published once.
 * `deno run -A --unstable-net bench/coap_fuzz.ts [count] [seed]`.
 *
 * @module
 */

import { CoapSyntaxError, decodeMessage, encodeMessage } from "../src/protocols/coap/codec.ts";
import { CoapType, Code } from "../src/protocols/coap/message.ts";
import { encodeString, encodeUint, Opt } from "../src/protocols/coap/option_codec.ts";
import { request, startCoap, TestPeer } from "../tests/_coap_harness.ts";

const count = Number(Deno.args[0] ?? 200_000);
const seed = Number(Deno.args[1] ?? Date.now() % 0xffffffff);

/** mulberry32 */
function prng(s: number): () => number {
  let a = s;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = prng(seed);

const seeds = [
  request({ path: "d/s1/telemetry", query: ["token=t1"], code: Code.POST, payload: "21.5" }),
  request({ path: "obs", options: [{ number: Opt.OBSERVE, value: encodeUint(0) }] }),
  request({
    path: "large",
    options: [{ number: Opt.BLOCK2, value: encodeUint(0x16) }, {
      number: Opt.SIZE2,
      value: new Uint8Array(),
    }],
  }),
  request({
    type: CoapType.NON,
    path: "test",
    options: [{ number: 2049, value: encodeString("x") }, {
      number: 65000,
      value: encodeString("y"),
    }],
  }),
].map((m) => encodeMessage(m));
seeds.push(new Uint8Array([0x40, 0, 0, 1]), new Uint8Array([0x70, 0, 0, 1]));

function fuzzInput(): Uint8Array {
  const r = rand();
  if (r < 0.3) {
    const b = new Uint8Array(Math.floor(rand() * 64));
    for (let i = 0; i < b.length; i++) b[i] = Math.floor(rand() * 256);
    if (b.length && rand() < 0.8) b[0] = (b[0] & 0x3f) | 0x40;
    return b;
  }
  const s = seeds[Math.floor(rand() * seeds.length)];
  let b: Uint8Array = s.slice(0, Math.max(0, s.length - Math.floor(rand() * 4)));
  const flips = 1 + Math.floor(rand() * 4);
  for (let k = 0; k < flips && b.length; k++) {
    b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
  }
  if (rand() < 0.1) { // splice two seeds
    const t = seeds[Math.floor(rand() * seeds.length)];
    const joined = new Uint8Array(b.length + t.length);
    joined.set(b);
    joined.set(t, b.length);
    b = joined;
  }
  return b;
}

let decoded = 0;
let rejected = 0;
let slowest = 0;
const t0 = performance.now();
for (let i = 0; i < count; i++) {
  const input = fuzzInput();
  const s = performance.now();
  try {
    const msg = decodeMessage(input);
    decoded++;
    const again = decodeMessage(encodeMessage(msg));
    if (JSON.stringify(again) !== JSON.stringify(msg)) {
      console.error(`seed ${seed} #${i}: re-encode mismatch\ninput ${Array.from(input)}`);
      Deno.exit(1);
    }
  } catch (e) {
    if (!(e instanceof CoapSyntaxError)) {
      console.error(`seed ${seed} #${i}: unexpected ${e}\ninput ${Array.from(input)}`);
      Deno.exit(1);
    }
    rejected++;
  }
  slowest = Math.max(slowest, performance.now() - s);
}
const decodeMs = performance.now() - t0;

// Socket phase.
await using h = await startCoap({ server: { mode: "ferry" } });
await using good = new TestPeer(h.port);
const garbage = Array.from({ length: 50 }, () => new TestPeer(h.port));
let acked = 0;
for (let round = 0; round < 20; round++) {
  await Promise.all(garbage.map(async (g) => {
    for (let i = 0; i < 20; i++) await g.send(fuzzInput());
  }));
  const msg = request({
    code: Code.POST,
    path: "d/s1/telemetry",
    query: ["token=t1"],
    payload: `alive ${round}`,
  });
  for (let attempt = 0; attempt < 5; attempt++) {
    await good.send(msg);
    try {
      const r = await good.recv((m) => m.messageId === msg.messageId, 500);
      if (r.code === Code.CHANGED) acked++;
      break;
    } catch { /* retransmit */ }
  }
}
for (const g of garbage) await g.close();
const published =
  h.seen.filter((m) =>
    m.topic === "devices/s1/telemetry" && new TextDecoder().decode(m.payload).startsWith("alive ")
  ).length;
console.log(JSON.stringify({
  seed,
  inputs: count,
  decoded,
  rejected,
  decodeMs: Math.round(decodeMs),
  slowestInputMs: Math.round(slowest * 100) / 100,
  socketPhase: {
    garbageDatagrams: 50 * 20 * 20,
    liveDeviceAcked: acked,
    liveDevicePublished: published,
    internalErrors: h.core.stats.errors.get({ protocol: "coap", code: "internal" }),
  },
}));
if (acked !== 20 || published !== 20) Deno.exit(1);
