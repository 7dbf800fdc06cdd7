/**
 * `deno task fuzz`: random and mutated inputs through every decoder (FBP/1 frames and bodies,
 * MQTT packets at levels 3/4/5, CoAP datagrams). Only the codec's own syntax errors may come out;
 * any other exception, or an input that costs over 100 ms of CPU time, is a failure: the input is
 * saved under `tests/fuzz_regressions/` (replayed by the test suite) and the run exits 1. An input
 * that looks slow by the wall clock is decoded again and judged by the CPU time it costs, so a GC
 * or scheduling pause on a loaded machine is not taken for a slow decoder.
 *
 * `deno task fuzz [count=1000000] [seed]`
 *
 * @module
 */

import process from "node:process";
import { FrameParser } from "../src/protocols/binary/codec.ts";
import {
  decodeAck,
  decodeBye,
  decodeCommand,
  decodeError,
  decodeHello,
  decodeHelloAck,
  decodeTelemetry,
  encodeAck,
  encodeCommand,
  encodeError,
  encodeFrame,
  encodeHello,
  encodeTelemetry,
  FLAG_ACK_REQUESTED,
  FrameSyntaxError,
  FrameType,
} from "../src/protocols/binary/frame.ts";
import {
  loadCodec,
  MqttFrameDecoder,
  MqttMalformedError,
  MqttProtocolError,
} from "../src/protocols/mqtt/mod.ts";
import { CoapSyntaxError, decodeMessage, encodeMessage } from "../src/protocols/coap/codec.ts";
import { fuzzInput, prng, seedPackets } from "../tests/_mqtt_harness.ts";

await loadCodec(); // the codec imports npm:mqtt-packet on first need

/** A codec under fuzz: seeds to mutate, and one decode that may only throw its own errors. */
export interface FuzzTarget {
  name: string;
  seeds: Uint8Array[];
  decode(input: Uint8Array): void;
  expected(err: unknown): boolean;
}

const te = new TextEncoder();
const bodies = [
  decodeHello,
  decodeHelloAck,
  decodeTelemetry,
  decodeAck,
  decodeCommand,
  decodeBye,
  decodeError,
];

/** Every decoder, with seeds. */
export function targets(): FuzzTarget[] {
  const fbpSeeds = [
    encodeFrame({
      type: FrameType.HELLO,
      flags: 0,
      seq: 1,
      payload: encodeHello({ id: "sensor-1", token: "secret", keepAlive: 30 }),
    }),
    encodeFrame({
      type: FrameType.TELEMETRY,
      flags: FLAG_ACK_REQUESTED,
      seq: 2,
      payload: encodeTelemetry({ channel: "temp", data: te.encode('{"c":21.5}') }),
    }),
    encodeFrame({ type: FrameType.ACK, flags: 0, seq: 3, payload: encodeAck(0) }),
    encodeFrame({
      type: FrameType.COMMAND,
      flags: 1,
      seq: 4,
      payload: encodeCommand({ name: "reboot", data: te.encode("now") }),
    }),
    encodeFrame({
      type: FrameType.ERROR,
      flags: 0,
      seq: 5,
      payload: encodeError({ code: 3, reason: "bad crc" }),
    }),
    encodeFrame({ type: FrameType.PING, flags: 0, seq: 6, payload: new Uint8Array() }),
  ];
  const coapSeeds = [
    encodeMessage({
      type: 0,
      code: 0x02,
      messageId: 0x1234,
      token: new Uint8Array([1, 2, 3, 4]),
      options: [{ number: 11, value: te.encode("d") }, { number: 11, value: te.encode("s1") }, {
        number: 11,
        value: te.encode("telemetry"),
      }, { number: 15, value: te.encode("token=t") }],
      payload: te.encode("21.5"),
    }),
    encodeMessage({
      type: 0,
      code: 0x01,
      messageId: 7,
      token: new Uint8Array([9]),
      options: [{ number: 6, value: new Uint8Array() }, { number: 11, value: te.encode("obs") }],
      payload: new Uint8Array(),
    }),
    encodeMessage({
      type: 1,
      code: 0x03,
      messageId: 8,
      token: new Uint8Array(),
      options: [{ number: 27, value: new Uint8Array([0x16]) }, {
        number: 60,
        value: new Uint8Array([4, 0]),
      }],
      payload: new Uint8Array(64).fill(7),
    }),
    encodeMessage({
      type: 2,
      code: 0x45,
      messageId: 9,
      token: new Uint8Array([1]),
      options: [{ number: 12, value: new Uint8Array([0]) }],
      payload: te.encode("ok"),
    }),
  ];
  return [
    {
      name: "fbp",
      seeds: fbpSeeds,
      decode(input) {
        const p = new FrameParser({ maxPayload: 65536 });
        p.parse(input, (f) => {
          for (const d of bodies) {
            try {
              d(f.payload);
            } catch (err) {
              if (!(err instanceof FrameSyntaxError)) throw err;
            }
          }
        });
      },
      expected: (e) => e instanceof FrameSyntaxError,
    },
    ...([3, 4, 5] as const).map((v): FuzzTarget => {
      const seeds = seedPackets(v);
      return {
        name: `mqtt-v${v}`,
        seeds,
        decode(input) {
          const d = new MqttFrameDecoder({ maxPacketSize: 65536 });
          if (v !== 4) d.push(seeds[0]); // CONNECT sets the level
          d.push(input);
        },
        expected: (e) => e instanceof MqttMalformedError || e instanceof MqttProtocolError,
      };
    }),
    {
      name: "coap",
      seeds: coapSeeds,
      decode(input) {
        const m = decodeMessage(input);
        encodeMessage(m); // what decodes must re-encode
      },
      expected: (e) => e instanceof CoapSyntaxError,
    },
  ];
}

/** Options of {@link fuzz}. */
export interface FuzzOptions {
  /** CPU time one input may cost before it counts as a failure, ms. @default 100 */
  slowInputMs?: number;
}

/** CPU time (user + system) this process has used, ms. */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * CPU time one decode of `input` costs, ms: the decode repeated until 20 ms of CPU have passed (at
 * most 64 times), divided by the repeats, so that the coarse CPU clock and one pause average out.
 */
function cpuCostMs(t: FuzzTarget, input: Uint8Array): number {
  const start = cpuMs();
  let runs = 0;
  do {
    try {
      t.decode(input);
    } catch { /* judged by the first decode */ }
    runs++;
  } while (runs < 64 && cpuMs() - start < 20);
  return (cpuMs() - start) / runs;
}

/** Runs `count` inputs through `t`; returns stats, or the failing input. */
export function fuzz(t: FuzzTarget, count: number, seed: number, options: FuzzOptions = {}): {
  inputs: number;
  rejected: number;
  slowestMs: number;
  perSecond: number;
  failure?: { input: Uint8Array; error: string };
} {
  const limit = options.slowInputMs ?? 100;
  const rand = prng(seed);
  let rejected = 0;
  let slowest = 0;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const input = fuzzInput(rand, t.seeds);
    const s = performance.now();
    try {
      t.decode(input);
    } catch (err) {
      if (!t.expected(err)) {
        return {
          inputs: i + 1,
          rejected,
          slowestMs: slowest,
          perSecond: 0,
          failure: { input, error: String(err) },
        };
      }
      rejected++;
    }
    let took = performance.now() - s;
    // Slow by the wall clock: a pause of the machine, or of the decoder? Its CPU cost says.
    if (took > limit) took = cpuCostMs(t, input);
    slowest = Math.max(slowest, took);
    if (took > limit) {
      return {
        inputs: i + 1,
        rejected,
        slowestMs: took,
        perSecond: 0,
        failure: { input, error: `costs ${took.toFixed(0)} ms of CPU time` },
      };
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    inputs: count,
    rejected,
    slowestMs: Number(slowest.toFixed(2)),
    perSecond: Math.round(count / seconds),
  };
}

if (import.meta.main) {
  const count = Number(Deno.args[0] ?? 1_000_000);
  const seed = Number(Deno.args[1] ?? (Date.now() % 0xffffffff));
  console.error(`[fuzz] ${count} inputs per codec, seed ${seed}`);
  let failed = false;
  const report: Record<string, unknown> = { seed, count };
  for (const t of targets()) {
    const r = fuzz(t, count, seed);
    if (r.failure) {
      failed = true;
      const hex = Array.from(
        new Uint8Array(await crypto.subtle.digest("SHA-256", r.failure.input.slice())).slice(0, 6),
        (b) => b.toString(16).padStart(2, "0"),
      ).join("");
      const file = new URL(`../tests/fuzz_regressions/${t.name}-${hex}.bin`, import.meta.url);
      await Deno.writeFile(file, r.failure.input);
      console.error(
        `[fuzz] ${t.name}: FAILURE ${r.failure.error}; input saved to ${file.pathname}`,
      );
    } else {
      console.error(
        `[fuzz] ${t.name}: ${r.inputs} inputs, ${r.rejected} rejected, ${r.perSecond}/s, slowest ${r.slowestMs} ms`,
      );
    }
    report[t.name] = { ...r, failure: r.failure?.error };
  }
  console.log(JSON.stringify(report, null, 2));
  if (failed) Deno.exit(1);
}
