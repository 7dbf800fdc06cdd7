/**
 * Unit tests of the benchmark's pure helpers (no timing, no network): statistics, `/metrics`
 * parsing, the start-task parser, the MQTT and FBP/1 wire helpers, per-rep ratios and flags.
 *
 * @module
 */

import { assert, assertEquals, assertThrows } from "./_assert.ts";
import {
  LatencyHistogram,
  median,
  percentile,
  ratioByRep,
  round,
  spread,
} from "../bench/_stats.ts";
import { parseMetrics, rateBetween, sumOf } from "../bench/_metrics.ts";
import {
  ferryConfig,
  mosquittoConfig,
  parseStartTask,
  unexpectedListeners,
} from "../bench/_servers.ts";
import { publishTemplate, scanFrames, topicEndsWith } from "../bench/_mqtt_wire.ts";
import {
  ACK_REQUESTED,
  crc32,
  encodeFrame,
  FrameType,
  restamp,
  scanFbp,
  telemetryBody,
} from "../bench/_fbp_wire.ts";
import { ratiosOf, type RunResult, summaryOf } from "../bench/_scenario.ts";
import { parseArgs } from "../bench/run.ts";

Deno.test("percentile takes the nearest rank of the sorted values", () => {
  const v = [10, 1, 9, 2, 8, 3, 7, 4, 6, 5];
  assertEquals(percentile(v, 50), 5);
  assertEquals(percentile(v, 90), 9);
  assertEquals(percentile(v, 99), 10);
  assertEquals(percentile(v, 0), 1);
  assert(Number.isNaN(percentile([], 99)));
  assertThrows(() => percentile(v, 101), RangeError);
});

Deno.test("median of an even count is the mean of the two middle values", () => {
  assertEquals(median([4, 1, 3, 2]), 2.5);
  assertEquals(median([7]), 7);
});

Deno.test("spread leaves failed repetitions out and gives min, median and max", () => {
  assertEquals(spread([3, null, 1, undefined, 2, NaN]), { min: 1, median: 2, max: 3, n: 3 });
  assertEquals(spread([]), undefined);
});

Deno.test("ratioByRep divides rep by rep and skips a rep where either side failed", () => {
  const r = ratioByRep([100, 150, 90], [50, null, 100]);
  assertEquals(r?.perRep, [2, null, 0.9]);
  assertEquals([r?.min, r?.median, r?.max, r?.n], [0.9, 1.45, 2, 2]);
  assertEquals(ratioByRep([1], [0]), undefined);
});

Deno.test("round keeps three significant digits", () => {
  assertEquals(round(232_456), 232_000);
  assertEquals(round(0.73612), 0.736);
  assertEquals(round(NaN), NaN);
});

Deno.test("LatencyHistogram percentiles are within 1% and merge across processes", () => {
  const a = new LatencyHistogram();
  const b = new LatencyHistogram();
  for (let i = 1; i <= 1000; i++) (i % 2 ? a : b).record(i / 10);
  const m = LatencyHistogram.from([a.toJSON(), JSON.parse(JSON.stringify(b))]);
  assertEquals(m.count, 1000);
  for (const [p, want] of [[50, 50], [99, 99], [10, 10]]) {
    const got = m.percentile(p);
    assert(Math.abs(got - want) / want < 0.01, `p${p} = ${got}, want ${want}`);
  }
  assertEquals(m.percentile(100), 100);
  assert(Number.isNaN(new LatencyHistogram().percentile(50)));
});

Deno.test("parseMetrics reads labels and sumOf adds the matching series", () => {
  const s = parseMetrics(
    [
      "# HELP ferry_messages_received_total Messages",
      "# TYPE ferry_messages_received_total counter",
      'ferry_messages_received_total{protocol="mqtt"} 1200',
      'ferry_messages_received_total{protocol="system"} 3',
      'ferry_dropped_total{protocol="coap",reason="over \\"load\\""} 2',
      "ferry_uptime_seconds 1.5",
      'ferry_h_bucket{le="+Inf"} 4',
    ].join("\n"),
  );
  assertEquals(sumOf(s, "ferry_messages_received_total", { protocol: "mqtt" }), 1200);
  assertEquals(sumOf(s, "ferry_messages_received_total"), 1203);
  assertEquals(s.find((x) => x.name === "ferry_dropped_total")?.labels.reason, 'over "load"');
  assertEquals(sumOf(s, "ferry_uptime_seconds"), 1.5);
  assertEquals(sumOf(s, "ferry_missing"), undefined);
});

Deno.test("rateBetween is the counter's rise per second, null when a read is missing", () => {
  assertEquals(rateBetween({ value: 100, at: 1000 }, { value: 600, at: 3000 }), 250);
  assertEquals(rateBetween(undefined, { value: 1, at: 1 }), null);
});

Deno.test("parseStartTask finds the runtime flags and script of the start task", () => {
  const t = parseStartTask(
    "deno run --unstable-net --allow-net --v8-flags=--optimize-for-size main.ts",
  );
  assertEquals(t.runtimeFlags, ["--unstable-net", "--allow-net", "--v8-flags=--optimize-for-size"]);
  assertEquals(t.script, "main.ts");
  assertEquals(parseStartTask(`deno run -A "my dir/main.ts" --x 'a b'`).words, [
    "deno",
    "run",
    "-A",
    "my dir/main.ts",
    "--x",
    "a b",
  ]);
});

Deno.test("parseStartTask refuses what is not one plain deno run", () => {
  assertThrows(() => parseStartTask("deno run -A main.ts && echo hi"), SyntaxError);
  assertThrows(() => parseStartTask("node main.js"), SyntaxError);
  assertThrows(() => parseStartTask("deno run -A"), SyntaxError);
  assertThrows(() => parseStartTask("deno run 'main.ts"), SyntaxError);
  assertThrows(() => parseStartTask("deno run $FLAGS main.ts"), SyntaxError);
});

Deno.test("ferryConfig sets only ports, the data dir and an optional upstream", () => {
  const ports = { binary: 1, mqtt: 2, coap: 3, http: 4 };
  assertEquals(JSON.parse(ferryConfig(ports, "/d")), {
    binary: { port: 1 },
    mqtt: { port: 2 },
    coap: { port: 3 },
    http: { port: 4 },
    dataDir: "/d",
  });
  assertEquals(
    JSON.parse(ferryConfig(ports, "/d", "mqtt://127.0.0.1:9")).northbound,
    { url: "mqtt://127.0.0.1:9" },
  );
  // MQTT over WebSocket (on by default on 8083) gets a port of its own when the checkout has it.
  assertEquals(JSON.parse(ferryConfig({ ...ports, mqttWs: 5 }, "/d")).mqtt, {
    port: 2,
    websocket: { port: 5 },
  });
});

Deno.test("unexpectedListeners names a listener on a port the bench did not give", () => {
  const log = [
    '{"level":"info","msg":"binary listening","hostname":"127.0.0.1","port":41000}',
    '{"level":"info","msg":"WebSocket listening","hostname":"127.0.0.1","port":8083}',
    '{"level":"info","msg":"ready"}',
  ].join("\n");
  assertEquals(unexpectedListeners(log, [41000, 8083]), []);
  assertEquals(unexpectedListeners(log, [41000]), ["WebSocket listening on port 8083"]);
});

Deno.test("mosquittoConfig is Debian's defaults on a loopback listener, a bridge when asked", () => {
  const c = mosquittoConfig(1884, "/t");
  for (
    const line of ["persistence true", "log_dest file /t/mosquitto.log", "allow_anonymous true"]
  ) {
    assert(c.includes(line), line);
  }
  assert(c.includes("listener 1884 127.0.0.1"));
  assert(!c.includes("connection"));
  assert(mosquittoConfig(1884, "/t", "mqtt://127.0.0.1:1999").includes("address 127.0.0.1:1999"));
});

Deno.test("scanFrames returns complete frames and where the incomplete one starts", () => {
  const t = publishTemplate("devices/d1/telemetry", 200, 1); // Remaining Length takes 2 bytes
  const buf = new Uint8Array(t.bytes.length * 2 - 5);
  buf.set(t.bytes);
  buf.set(t.bytes.subarray(0, t.bytes.length - 5), t.bytes.length);
  const seen: Array<[number, number, number]> = [];
  const rest = scanFrames(
    buf,
    0,
    buf.length,
    (type, flags, _b, s, e) => seen.push([type, flags, e - s]),
  );
  assertEquals(rest, t.bytes.length);
  assertEquals(seen, [[3, 2, 2 + 20 + 2 + 200]]);
  assert(topicEndsWith(t.bytes, 3, new TextEncoder().encode("/telemetry")));
  assert(!topicEndsWith(t.bytes, 3, new TextEncoder().encode("/status")));
});

Deno.test("FBP/1 frames carry a zlib CRC-32 and a restamped frame still checks", () => {
  assertEquals(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  const f = encodeFrame(FrameType.TELEMETRY, ACK_REQUESTED, 2, telemetryBody(new Uint8Array(64)));
  restamp(f, 77);
  const two = new Uint8Array(f.length * 2);
  two.set(f);
  two.set(f, f.length);
  two[f.length + 20] ^= 1; // corrupt the second frame's payload: dropped, still consumed
  const seqs: number[] = [];
  assertEquals(scanFbp(two, 0, two.length, (_t, _f, seq) => seqs.push(seq)), two.length);
  assertEquals(seqs, [77]);
  two[0] = 0;
  assertThrows(() => scanFbp(two, 0, two.length, () => {}), SyntaxError);
});

function run(rep: number, server: string, x: number | null): RunResult {
  return {
    rep,
    server,
    ok: x !== null,
    loadavg: [0, 0, 0],
    seconds: 1,
    figures: x === null ? {} : { x },
  };
}

Deno.test("ratiosOf pairs every Ferry with every peer and Ferry with Ferry@before", () => {
  const runs = [
    run(1, "ferry", 4),
    run(1, "ferry@before", 2),
    run(1, "peer", 1),
    run(2, "ferry", 6),
    run(2, "ferry@before", 3),
    run(2, "peer", null),
  ];
  const r = ratiosOf(["ferry", "ferry@before", "peer"], runs, ["x"]);
  assertEquals(Object.keys(r).sort(), ["ferry/ferry@before", "ferry/peer", "ferry@before/peer"]);
  assertEquals(r["ferry/peer"].x.perRep, [4, null]);
  assertEquals(r["ferry/ferry@before"].x.median, 2);
  const s = summaryOf(["ferry", "peer"], runs, ["x"]);
  assertEquals(s.ferry.x, { min: 4, median: 5, max: 6, n: 2 });
  assertEquals(s.peer.x.n, 1);
});

Deno.test("bench flags: --quick means one repetition unless --reps says otherwise", () => {
  assertEquals(parseArgs(["--quick"]).reps, 1);
  assertEquals(parseArgs([]).reps, 3);
  assertEquals(parseArgs(["--quick", "--reps", "2"]).reps, 2);
  const a = parseArgs([
    "--only",
    "mqttQos0Ingest,northbound",
    "--compare",
    "/x",
    "--skip",
    "aedes",
  ]);
  assertEquals([a.only, a.compare, a.skip], [["mqttQos0Ingest", "northbound"], "/x", ["aedes"]]);
  assertThrows(() => parseArgs(["--reps", "0"]), TypeError);
  assertThrows(() => parseArgs(["--skip", "ferry"]), TypeError);
  assertThrows(() => parseArgs(["--bogus"]), TypeError);
});
