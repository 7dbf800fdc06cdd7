/**
 * MQTT codec fuzz run: at least 100,000 random and mutated packets through `MqttFrameDecoder` for
 * each protocol level, checking that only MQTT decode errors are raised and that no input takes
 * long (a hang detector), then a socket phase against a live server with a well-behaved session
 * that must stay unaffected. `deno run -A bench/mqtt_fuzz.ts [count] [seed]`.
 *
 * @module
 */

import {
  loadCodec,
  MqttFrameDecoder,
  MqttMalformedError,
  MqttProtocolError,
} from "../src/protocols/mqtt/mod.ts";
import { fuzzInput, Inbox, prng, seedPackets, sleep, startMqtt } from "../tests/_mqtt_harness.ts";

await loadCodec(); // the codec imports npm:mqtt-packet on first need

const count = Number(Deno.args[0] ?? 100_000);
const seed = Number(Deno.args[1] ?? Date.now() % 0xffffffff);
const rand = prng(seed);
let packets = 0;
let errors = 0;
let slowest = 0;
const t0 = performance.now();
for (const v of [3, 4, 5] as const) {
  const seeds = seedPackets(v);
  for (let i = 0; i < count; i++) {
    const d = new MqttFrameDecoder({ maxPacketSize: 65536 });
    if (v !== 4) d.push(seeds[0]);
    const input = fuzzInput(rand, seeds);
    const s = performance.now();
    try {
      packets += d.push(input).length;
    } catch (e) {
      if (!(e instanceof MqttMalformedError || e instanceof MqttProtocolError)) {
        console.error(`seed ${seed} level ${v} #${i}: unexpected ${e}\ninput ${Array.from(input)}`);
        Deno.exit(1);
      }
      errors++;
    }
    slowest = Math.max(slowest, performance.now() - s);
  }
}
const decodeMs = performance.now() - t0;

// Socket phase: 1,000 connections of garbage while a good session keeps exchanging messages.
await using h = await startMqtt();
const good = await h.client({ protocolVersion: 5 });
const inbox = new Inbox(good);
await good.subscribeAsync("alive", { qos: 1 });
const seeds5 = seedPackets(5);
for (let round = 0; round < 20; round++) {
  const raws = await Promise.all(Array.from({ length: 50 }, () => h.raw(5)));
  await Promise.all(raws.map(async (r) => {
    if (rand() < 0.7) await r.send(seeds5[0]);
    for (let i = 0; i < 10; i++) await r.send(fuzzInput(rand, seeds5));
    r.close();
  }));
  await good.publishAsync("alive", String(round), { qos: 1 });
}
await inbox.waitFor(20, 10_000);
for (let i = 0; i < 400 && h.server.connectionCount > 1; i++) await sleep(5);
console.log(JSON.stringify({
  seed,
  inputsPerLevel: count,
  decodedPackets: packets,
  rejected: errors,
  decodeMs: Math.round(decodeMs),
  slowestInputMs: Math.round(slowest * 100) / 100,
  socketPhase: {
    garbageConnections: 1000,
    liveSessionMessages: inbox.messages.length,
    connectionsLeft: h.server.connectionCount,
  },
}));
