/**
 * One bridge against two in the same run (issue #18): sustained QoS 1 from FBP/1 devices through
 * the real gateway (`main.ts`, default config, fsync on) to one mosquitto, then split over two
 * bridges to two mosquittos; reports both and their ratio. Interleaved repetitions; medians.
 *
 * Usage: `deno run -A bench/northbound_multi_bench.ts [--reps 3] [--seconds 10] [--devices 100]`
 *
 * @module
 */

import { run } from "./spool_bench.ts";

function arg(name: string, def: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : def;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const reps = Number(arg("reps", "3"));
const base = {
  devices: Number(arg("devices", "100")),
  seconds: Number(arg("seconds", "10")),
  window: 32,
  sync: "full" as const,
  worker: true,
};
const one: number[] = [];
const two: number[] = [];
const upOne: number[] = [];
const upTwo: number[] = [];
for (let r = 0; r < reps; r++) {
  for (const bridges of [1, 2] as const) {
    const res = await run({ ...base, bridges });
    const s = res.sustained as Record<string, number>;
    (bridges === 1 ? one : two).push(s.deviceAcksPerSec);
    (bridges === 1 ? upOne : upTwo).push(s.upstreamReceivedPerSecDuringLoad);
  }
}
const out = {
  ...base,
  reps,
  oneBridge: { deviceAcksPerSec: one, upstreamPerSec: upOne, median: median(upOne) },
  twoBridges: { deviceAcksPerSec: two, upstreamPerSec: upTwo, median: median(upTwo) },
  ratioTwoToOne: Number((median(upTwo) / median(upOne)).toFixed(2)),
  loadAverage: Deno.loadavg(),
};
console.log(JSON.stringify(out, null, 2));
const file = arg("json", "");
if (file) await Deno.writeTextFile(file, JSON.stringify(out, null, 2) + "\n");
