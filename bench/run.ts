/**
 * `deno task bench`: runs every benchmark scenario side by side with its peer and writes JSON
 * results to `bench/results/` (and stdout). Progress goes to stderr.
 *
 * Flags: `--quick` (small counts, for a smoke run), `--only fbp|mqtt|coap|http|northbound|rules|footprint`.
 *
 * @module
 */

import * as fbp from "./fbp_bench.ts";
import * as footprint from "./footprint_bench.ts";
import * as coap from "./coap_bench.ts";
import * as http from "./http_bench.ts";
import * as mqtt from "./mqtt_bench.ts";
import * as northbound from "./northbound_bench.ts";
import * as rules from "./rules_bench.ts";
import { progress } from "./_util.ts";

const quick = Deno.args.includes("--quick");
const onlyIdx = Deno.args.indexOf("--only");
const only = onlyIdx >= 0 ? Deno.args[onlyIdx + 1] : undefined;

const results: Record<string, unknown> = {
  date: new Date().toISOString(),
  machine: {
    cores: navigator.hardwareConcurrency,
    deno: Deno.version.deno,
    os: Deno.build.os,
    arch: Deno.build.arch,
  },
  quick,
};

if (!only || only === "fbp") {
  results.fbp = await fbp.run(
    quick
      ? { idle: 1000, devices: 100, perDevice: 50 }
      : { idle: 15_000, devices: 1000, perDevice: 200 },
  );
}

if (!only || only === "mqtt") {
  results.mqtt = await mqtt.run(mqtt.mqttBenchPresets[quick ? "quick" : "full"]);
}

if (!only || only === "coap") {
  results.coap = await coap.run(
    quick
      ? { devices: 100, seconds: 2, observers: 500 }
      : { devices: 1000, seconds: 8, observers: 5000 },
  );
}

if (!only || only === "http") {
  results.http = await http.run(http.benchOptions(quick));
}

if (!only || only === "northbound") {
  results.northbound = await northbound.run(
    quick
      ? { devices: 50, seconds: 4, backlog: 100_000 }
      : { devices: 100, seconds: 10, backlog: 1_000_000 },
  );
}

if (!only || only === "rules") {
  results.rules = await rules.run(rules.rulesBenchPresets[quick ? "quick" : "full"]);
}

if (!only || only === "footprint") {
  results.footprint = await footprint.run(
    quick ? { runs: 1, devices: 100 } : { runs: 3, devices: 1000 },
  );
}

const text = JSON.stringify(results, null, 2);
await Deno.mkdir(new URL("./results/", import.meta.url), { recursive: true });
const file = new URL(`./results/${results.date}.json`.replaceAll(":", "-"), import.meta.url);
await Deno.writeTextFile(file, text + "\n");
progress(`results written to ${file.pathname}`);
console.log(text);
