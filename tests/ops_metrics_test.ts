/**
 * `/metrics` of a real gateway process, as an operator's Prometheus reads it: `promtool check
 * metrics` (Debian's prometheus) accepts the exposition, the standard process metrics describe
 * this process (open sockets move `process_open_fds`), `ferry_build_info` names the version, and
 * presence is not counted as messages received.
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import { metrics, startFerry } from "./_ferry_process.ts";
import type { GatewayProcess } from "./_process.ts";
import { mqttConnect } from "./_mqtt_harness.ts";
import { VERSION } from "../src/version.ts";

async function scrape(gw: GatewayProcess): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${gw.addresses.http.port}/metrics`);
  assertEquals(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  return await res.text();
}

/** Runs `promtool check metrics` on `text`; returns its exit code and what it said. */
async function promtool(text: string): Promise<{ code: number; output: string }> {
  const child = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(20_000),
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(text));
  await w.close();
  const out = await child.output();
  const d = new TextDecoder();
  return { code: out.code, output: d.decode(out.stdout) + d.decode(out.stderr) };
}

Deno.test("promtool check metrics accepts the gateway's /metrics, and rejects a broken exposition", async () => {
  await using gw = await startFerry({ sys: { intervalSec: 1 } });
  const c = await mqttConnect(`mqtt://127.0.0.1:${gw.addresses.mqtt.port}`, { clientId: "m1" });
  await c.publishAsync("devices/m1/telemetry", "1", { qos: 1 });
  await c.endAsync();
  const text = await scrape(gw);
  const r = await promtool(text);
  assertEquals(r, { code: 0, output: "" });
  // The check can fail: a counter without _total and a sample without HELP are reported.
  const bad = await promtool("# TYPE x counter\nx 1\n");
  assert(bad.code !== 0 && /x/.test(bad.output), bad.output);
});

Deno.test("process_* metrics describe the gateway process: open sockets move process_open_fds", async () => {
  await using gw = await startFerry({});
  const m0 = await metrics(gw);
  const fds0 = m0("process_open_fds");
  assert(fds0 > 3, `open fds ${fds0}`);
  assert(m0("process_max_fds") >= fds0, `max fds ${m0("process_max_fds")}`);
  assert(m0("process_resident_memory_bytes") > 10 * 1024 * 1024, "resident memory");
  assert(m0("process_virtual_memory_bytes") >= m0("process_resident_memory_bytes"));
  const start = m0("process_start_time_seconds");
  assert(Math.abs(start - Date.now() / 1000) < 600, `start time ${start}`);
  const cpu0 = m0("process_cpu_seconds_total");
  assert(cpu0 > 0, `cpu ${cpu0}`);
  // 20 idle connections to the FBP/1 port: 20 more sockets in the gateway.
  const conns: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 20; i++) {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port: gw.addresses.binary.port }));
    }
    let m1 = await metrics(gw);
    const binary = 'ferry_connections{protocol="binary"}';
    for (let i = 0; i < 400 && m1(binary) < 20; i++) { // (accepts lag under load)
      await new Promise((r) => setTimeout(r, 50));
      m1 = await metrics(gw);
    }
    assertEquals(m1(binary), 20);
    assert(m1("process_open_fds") >= fds0 + 20, `${fds0} → ${m1("process_open_fds")}`);
    assert(m1("process_cpu_seconds_total") >= cpu0, "CPU seconds never go back");
  } finally {
    for (const c of conns) c.close();
  }
});

Deno.test("ferry_build_info names the version, and presence events are not messages received", async () => {
  await using gw = await startFerry({ mqtt: { anonymousPresence: true } });
  const url = `mqtt://127.0.0.1:${gw.addresses.mqtt.port}`;
  // Three devices come and go (six presence events) and publish four messages.
  for (const [id, n] of [["p1", 2], ["p2", 1], ["p3", 1]] as const) {
    const c = await mqttConnect(url, { clientId: id });
    for (let i = 0; i < n; i++) await c.publishAsync(`devices/${id}/telemetry`, "x", { qos: 1 });
    await c.endAsync();
  }
  await gw.waitForLine((l) => l.msg === "device offline" && l.device === "p3");
  const text = await scrape(gw);
  const build = /^ferry_build_info\{(.*)\} 1$/m.exec(text);
  assert(build, text);
  assert(build[1].includes(`version="${VERSION}"`), build[1]);
  assert(build[1].includes(`deno="${Deno.version.deno}"`), build[1]);
  const m = await metrics(gw);
  assertEquals(m('ferry_messages_received_total{protocol="mqtt"}'), 4);
  assert(!text.includes('ferry_messages_received_total{protocol="system"}'), text);
  assertEquals(m("ferry_messages_received_total"), 4);
});
