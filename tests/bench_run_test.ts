/**
 * The bench commands the README and docs/benchmark.md show, run as they are written: `deno task
 * bench --list`, a real `deno task bench --quick` of the cheapest scenario (Ferry as `deno task
 * start` runs it, against mosquitto: real processes and sockets, its JSON checked for shape, never
 * for speed), `deno task bench:report` of that result, and `--readme`, which refuses a quick run
 * and regenerates the README's tables from a full one.
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import type { BenchResult } from "../bench/_scenario.ts";
import { README_BEGIN, README_END } from "../bench/report.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const decoder = new TextDecoder();

/** `deno task NAME ARGS…` from the checkout, bounded (the bench bounds its own runs well below). */
async function task(name: string, ...args: string[]) {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", name, ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(300_000),
  }).output();
  return { code: o.code, stdout: decoder.decode(o.stdout), stderr: decoder.decode(o.stderr) };
}

Deno.test("deno task bench --list names every scenario of docs/benchmark.md", async () => {
  const r = await task("bench", "--list");
  assertEquals(r.code, 0, r.stderr);
  const ids = r.stdout.trim().split("\n").map((l) => l.split("\t")[0]);
  const doc = await Deno.readTextFile(`${ROOT}docs/benchmark.md`);
  for (const id of ids) assert(doc.includes(`| \`${id}\``), `${id} is not in docs/benchmark.md`);
  assertEquals(ids.length, new Set(ids).size);
  assert(ids.includes("startup") && ids.includes("northbound"));
});

Deno.test("deno task bench refuses an unknown flag or scenario without running anything", async () => {
  const a = await task("bench", "--quik");
  assertEquals(a.code, 2);
  assert(a.stderr.includes("unknown flag --quik"), a.stderr);
  const b = await task("bench", "--only", "nosuch");
  assertEquals(b.code, 2);
  assert(b.stderr.includes("unknown scenario nosuch"), b.stderr);
});

Deno.test({
  name:
    "deno task bench --quick --only startup: Ferry as deno task start runs it, every listener on a free port, beside mosquitto; JSON to stdout and --out; report and --readme",
  async fn() {
    const out = await Deno.makeTempDir({ prefix: "ferry-bench-test-" });
    try {
      const r = await task(
        "bench",
        "--quick",
        "--only",
        "startup",
        "--skip",
        "aedes",
        "--out",
        out,
      );
      assertEquals(r.code, 0, r.stderr);
      const files = (await Array.fromAsync(Deno.readDir(out))).map((e) => e.name);
      assertEquals(files.length, 1);
      assert(/^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d+Z-quick\.json$/.test(files[0]), files[0]);
      const file = `${out}/${files[0]}`;
      const res = JSON.parse(await Deno.readTextFile(file)) as BenchResult;
      assertEquals(JSON.parse(r.stdout), res);

      assertEquals(res.format, "ferry-bench/2");
      assertEquals([res.quick, res.reps], [true, 1]);
      assert(res.note?.includes("--quick"));
      assertEquals(res.argv, ["--quick", "--only", "startup", "--skip", "aedes", "--out", out]);
      assertEquals(res.machine.loadavgAtStart instanceof Array, true);
      // Ferry is the start task of this checkout with a config of ports (WebSocket too) and dataDir.
      const ferry = res.servers.ferry;
      const start = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks.start as string;
      assertEquals(ferry.command.slice(0, -2).join(" "), start);
      assertEquals(ferry.command.slice(-2), ["--config", "{dir}/ferry.json"]);
      const cfg = JSON.parse(ferry.config!.replaceAll("{free port}", "0"));
      assertEquals(Object.keys(cfg).sort(), ["binary", "coap", "dataDir", "http", "mqtt"]);
      assertEquals(cfg.mqtt, { port: 0, websocket: { port: 0 } });
      assert(res.servers.mosquitto.version?.includes("mosquitto"));
      assertEquals(Object.keys(res.servers).sort(), ["ferry", "mosquitto"]);

      assertEquals(res.scenarios.length, 1);
      const s = res.scenarios[0];
      assertEquals([s.id, s.section], ["startup", "Start-up and memory"]);
      assertEquals(s.servers, ["ferry", "mosquitto"]);
      assertEquals(s.loadavg.length, 3);
      for (const run of s.runs) {
        assert(run.ok, `${run.server}: ${run.error}`);
        assertEquals(run.rep, 1);
        for (const f of s.figures) {
          const v = run.figures[f.key];
          assert(typeof v === "number" && v > 0, `${run.server} ${f.key} = ${v}`);
        }
      }
      // Memory with one client is at least the idle memory's order: both are real RSS readings.
      assert(s.summary.ferry.idleRss.n === 1 && s.summary.mosquitto.rssOneClient.n === 1);
      assertEquals(Object.keys(s.ratios), ["ferry/mosquitto"]);
      assertEquals(Object.keys(s.ratios["ferry/mosquitto"]).sort(), [
        "firstConnackMs",
        "idleRss",
        "rssOneClient",
      ]);

      const md = await task("bench:report", file);
      assertEquals(md.code, 0, md.stderr);
      assert(md.stdout.includes(`Measured on ${res.date.slice(0, 10)} by \`deno task bench\``));
      assert(md.stdout.includes("### Start-up and memory"));
      assert(md.stdout.includes("**--quick"));
      assert(md.stdout.includes("| start → first CONNACK"));

      // A quick run never reaches the README.
      const readme = `${out}/README.md`;
      const before = `x\n\n${README_BEGIN}\n\nold\n\n${README_END}\n`;
      await Deno.writeTextFile(readme, before);
      const refused = await task(
        "bench:report",
        file,
        "--readme",
        "--readme-path",
        readme,
        "--measured-dir",
        `${out}/measured`,
      );
      assertEquals(refused.code, 2);
      assert(refused.stderr.includes("--quick"), refused.stderr);
      assertEquals(await Deno.readTextFile(readme), before);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test("bench:report --readme writes a full run's tables between the markers, formatted, and keeps the JSON dated in bench/measured", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ferry-bench-readme-" });
  try {
    const fixture = `${ROOT}tests/fixtures/bench_result.json`;
    const readme = `${dir}/README.md`;
    await Deno.writeTextFile(
      readme,
      `# Title\n\n## Benchmarks\n\nintro\n\n${README_BEGIN}\n\nold tables\n\n${README_END}\n\n## Layout\n`,
    );
    const r = await task(
      "bench:report",
      fixture,
      "--readme",
      "--readme-path",
      readme,
      "--measured-dir",
      `${dir}/measured`,
    );
    assertEquals(r.code, 0, r.stderr);
    const kept = `${dir}/measured/bench-2026-12-24T09-00.json`;
    assertEquals(await Deno.readTextFile(kept), await Deno.readTextFile(fixture));
    const text = await Deno.readTextFile(readme);
    assert(text.startsWith("# Title\n\n## Benchmarks\n\nintro\n\n"));
    assert(text.endsWith(`${README_END}\n\n## Layout\n`));
    assert(!text.includes("old tables"));
    const inner = text.slice(text.indexOf(README_BEGIN), text.indexOf(README_END));
    assert(inner.includes("Measured on 2026-12-24 by `deno task bench`"), inner);
    assert(inner.includes(kept), "the README names the kept JSON");
    assert(inner.includes("### MQTT") && inner.includes("| QoS 0 ingest"));
    const check = await new Deno.Command(Deno.execPath(), {
      args: ["fmt", "--check", "--config", `${ROOT}deno.json`, readme],
      stdout: "null",
      stderr: "piped",
    }).output();
    assert(check.success, decoder.decode(check.stderr));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
