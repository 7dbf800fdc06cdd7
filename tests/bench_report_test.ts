/**
 * `bench/report.ts` renders the README's tables from a result JSON: here from a fixture
 * (`tests/fixtures/bench_result.json`: three repetitions, a failed peer run, a `--compare` run).
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import { type BenchResult, ratiosOf, summaryOf } from "../bench/_scenario.ts";
import { formatRatio, formatValue, renderReport } from "../bench/report.ts";

const fixture = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/bench_result.json", import.meta.url)),
) as BenchResult;

Deno.test("the fixture's summaries and ratios are what the runs give", () => {
  for (const s of fixture.scenarios) {
    const keys = s.figures.map((f) => f.key);
    assertEquals(s.summary, summaryOf(s.servers, s.runs, keys));
    assertEquals(s.ratios, ratiosOf(s.servers, s.runs, keys));
  }
});

Deno.test("report is dated and has one table per section with every server and ratio", () => {
  const md = renderReport(fixture, "bench/results/x.json");
  assert(
    md.startsWith("Measured on 2026-12-24 by `deno task bench` (results: `bench/results/x.json`)"),
  );
  assert(md.includes("3 interleaved repetitions"));
  assert(md.includes("### MQTT") && md.includes("### FBP/1"));
  const header = md.split("\n").find((l) => l.startsWith("| figure") && l.includes("mosquitto"))!;
  assertEquals(header.split("|").slice(1, -1).map((c) => c.trim()), [
    "figure",
    "ferry",
    "ferry@before",
    "mosquitto",
    "ferry / mosquitto",
    "ferry@before / mosquitto",
    "ferry / ferry@before",
  ]);
  const row = md.split("\n").find((l) => l.startsWith("| QoS 0 ingest"))!;
  const cells = row.split("|").slice(1, -1).map((c) => c.trim());
  assertEquals(cells, [
    "QoS 0 ingest, 100 publishers (msg/s)",
    "220k (200k–240k)",
    "110k (100k–120k)",
    "400k [2 of 3 runs]",
    "0.55× (0.50–0.60×)",
    "0.28× (0.25–0.30×)",
    "2.00×",
  ]);
});

Deno.test("report lists failed runs with their error and the load average per scenario", () => {
  const md = renderReport(fixture);
  assert(
    md.includes(
      "- mqttQos0Ingest, mosquitto, repetition 3: mosquitto exited before it was ready: / boom",
    ),
  );
  assert(md.includes("Load average (1 min) when each scenario started: mqttQos0Ingest 0.11."));
  assert(!md.includes("--quick"));
});

Deno.test("a quick result says so in bold", () => {
  const md = renderReport({ ...fixture, quick: true, reps: 1, note: "--quick: a smoke run" });
  assert(md.includes("**--quick: a smoke run**"));
  assert(md.includes("1 repetition per scenario"));
});

Deno.test("values and ratios are printed in the README's units", () => {
  assertEquals(formatValue(1_644_000, "msg/s"), "1,640k");
  assertEquals(formatValue(950, "req/s"), "950");
  assertEquals(formatValue(5530, "bytes"), "5.4 KiB");
  assertEquals(formatValue(196 * 1024 * 1024, "bytes"), "196 MiB");
  assertEquals(formatValue(0.7361, "ms"), "0.736 ms");
  assertEquals(formatValue(19_000, "count"), "19,000");
  assertEquals(formatValue(97.6, "%"), "98%");
  assertEquals(formatRatio(3.1), "3.10×");
  assertEquals(formatRatio(36.4), "36×");
});
