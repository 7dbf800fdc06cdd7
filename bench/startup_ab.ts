/**
 * Start-up A/B: spawn → first CONNACK (and RSS before/after the first client) of two or more
 * checkouts, measured exactly as the `startup` scenario measures it (the checkout's own
 * `deno task start` command line, a client retrying every 2 ms from the spawn), with the
 * checkouts interleaved rep by rep so machine load falls on all of them alike.
 *
 * ```sh
 * deno run -A --lock=dev.lock bench/startup_ab.ts --reps 15 [--rss] /work/main .
 * ```
 *
 * Prints min/median/max per checkout and the load average before and after.
 *
 * @module
 */

import { MqttConn } from "./_mqtt_wire.ts";
import { ferry, type ServerKind } from "./_servers.ts";
import { cpuSecondsOf, rssOf, sleep } from "./_util.ts";

/**
 * Spawn → first CONNACK, ms of wall time, and the CPU time the gateway had used by then (all
 * threads, 10 ms ticks): the CPU figure moves less with the load of other processes. Then the
 * same client subscribes at once: spawn → its SUBACK (what is left of start-up work shows here).
 */
async function firstConnack(kind: ServerKind, dir: string): Promise<[number, number, number]> {
  const s = await kind.start({ dir, noWait: true });
  try {
    const port = s.ports.mqtt!;
    for (;;) {
      try {
        const c = await MqttConn.open(port, "bench-first", { timeoutMs: 5000 });
        const ms = performance.now() - s.spawnedAt;
        const cpu = cpuSecondsOf(s.pid) * 1000;
        await c.subscribe("bench/first", 1);
        const subackMs = performance.now() - s.spawnedAt;
        c.close();
        return [ms, cpu, subackMs];
      } catch (err) {
        if (s.exited()) throw new Error(`exited before a CONNACK:\n${s.logTail()}`);
        if (performance.now() - s.spawnedAt > 30_000) throw new Error(`no CONNACK: ${err}`);
        await sleep(2);
      }
    }
  } finally {
    await s[Symbol.asyncDispose]();
  }
}

async function rss(kind: ServerKind, dir: string, settleMs: number): Promise<[number, number]> {
  const s = await kind.start({ dir });
  try {
    await sleep(settleMs);
    const before = rssOf(s.pid);
    const c = await MqttConn.open(s.ports.mqtt!, "bench-dev-00000");
    await sleep(settleMs);
    const after = rssOf(s.pid);
    c.close();
    return [before, after];
  } finally {
    await s[Symbol.asyncDispose]();
  }
}

function summary(xs: number[], digits = 1): string {
  const s = [...xs].sort((a, b) => a - b);
  const med = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  const f = (n: number) => n.toFixed(digits);
  return `median ${f(med)}  min ${f(s[0])}  max ${f(s.at(-1)!)}  (n=${s.length})`;
}

const load = () => Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");

if (import.meta.main) {
  const args = [...Deno.args];
  let reps = 11;
  let withRss = false;
  const dirs: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--reps") reps = Number(args[++i]);
    else if (args[i] === "--rss") withRss = true;
    else dirs.push(Deno.realPathSync(args[i]));
  }
  if (dirs.length === 0) throw new TypeError("give at least one checkout directory");
  const kinds = dirs.map((d) => ferry(d, d));
  const connack = dirs.map(() => [] as number[]);
  const cpu = dirs.map(() => [] as number[]);
  const suback = dirs.map(() => [] as number[]);
  const idle = dirs.map(() => [] as number[]);
  const one = dirs.map(() => [] as number[]);
  const tmp = Deno.makeTempDirSync({ prefix: "ferry-startup-ab-" });
  console.log(`load before: ${load()}`);
  try {
    for (let r = 0; r < reps; r++) {
      // Alternate which checkout goes first, so neither always runs on a warmer machine.
      const order = r % 2 ? [...kinds.keys()].reverse() : [...kinds.keys()];
      for (const k of order) {
        const dir = `${tmp}/${k}-${r}`;
        Deno.mkdirSync(dir);
        const [ms, cpuMs, subackMs] = await firstConnack(kinds[k], dir);
        suback[k].push(subackMs);
        connack[k].push(ms);
        cpu[k].push(cpuMs);
        if (withRss) {
          Deno.mkdirSync(`${dir}/rss`); // a fresh log: the server's readiness is read from it
          const [b, a] = await rss(kinds[k], `${dir}/rss`, 2000);
          idle[k].push(b / 2 ** 20);
          one[k].push(a / 2 ** 20);
        }
      }
    }
  } finally {
    Deno.removeSync(tmp, { recursive: true });
  }
  console.log(`load after: ${load()}`);
  for (const k of kinds.keys()) {
    console.log(`${dirs[k]}`);
    console.log(`  first CONNACK ms: ${summary(connack[k])}  all: ${connack[k].map(Math.round)}`);
    console.log(`  CPU by then ms:   ${summary(cpu[k], 0)}`);
    console.log(`  then SUBACK ms:   ${summary(suback[k])}`);
    if (withRss) {
      console.log(`  idle RSS MiB:     ${summary(idle[k])}`);
      console.log(`  RSS 1 client MiB: ${summary(one[k])}`);
    }
  }
}
