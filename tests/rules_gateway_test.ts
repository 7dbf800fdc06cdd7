/**
 * End to end: a real Ferry gateway with rules in its config file; MQTT clients (npm `mqtt`)
 * publish and subscribe.
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import { memoryLogger, waitFor } from "./_harness.ts";
import { mqtt } from "./_dev_deps.ts";
import { within } from "./_mqtt_harness.ts";
import { FIXTURES } from "./_rules_harness.ts";
import { loadConfigFile, resolveConfig } from "../src/config/config.ts";
import { Gateway } from "../src/gateway.ts";

async function gatewayWithRules(
  rules: unknown[],
): Promise<{ gw: Gateway; url: string; dir: string; lines: string[] } & AsyncDisposable> {
  const dir = await Deno.makeTempDir();
  await Deno.mkdir(`${dir}/rules`);
  for (const f of ["celsius.ts", "version.ts"]) {
    await Deno.copyFile(`${FIXTURES}${f}`, `${dir}/rules/${f}`);
  }
  const file = `${dir}/ferry.json`;
  await Deno.writeTextFile(
    file,
    JSON.stringify({
      dataDir: `${dir}/data`,
      binary: { enabled: false },
      coap: { enabled: false },
      http: { enabled: false },
      mqtt: { port: 0, persistence: { enabled: false }, websocket: { port: 0 } },
      rules,
    }),
  );
  const { log, lines } = memoryLogger();
  const gw = new Gateway(resolveConfig(await loadConfigFile(file)), { log, configFile: file });
  const addrs = await gw.start();
  return {
    gw,
    url: `mqtt://127.0.0.1:${addrs.mqtt!.port}`,
    dir,
    lines,
    async [Symbol.asyncDispose]() {
      await gw.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("an MQTT device's telemetry goes through a rule in a real gateway to a subscriber", async () => {
  await using g = await gatewayWithRules([
    { name: "celsius", from: ["devices/+/telemetry/#"], module: "rules/celsius.ts" },
  ]);
  const sub = await mqtt.connectAsync(g.url, { clientId: "app", reconnectPeriod: 0 });
  const dev = await mqtt.connectAsync(g.url, { clientId: "s1", reconnectPeriod: 0 });
  try {
    const got = Promise.withResolvers<[string, string]>();
    sub.on("message", (t, p) => got.resolve([t, p.toString()]));
    await sub.subscribeAsync("rules/celsius/#", { qos: 1 });
    await dev.publishAsync("devices/s1/telemetry/temp", '{"temp_f":212}', { qos: 1 });
    assertEquals(await within(got.promise, 10_000, "the rule's output"), [
      "rules/celsius/s1/temp",
      '{"temp_c":100}',
    ]);
  } finally {
    await dev.endAsync();
    await sub.endAsync();
  }
  const m = g.gw.core.metrics.render();
  assert(m.includes('ferry_rule_messages_in_total{rule="celsius"} 1'), m);
  assert(m.includes('ferry_rule_messages_out_total{route="core",rule="celsius"} 1'), m);
  assert(m.includes('ferry_rule_enabled{rule="celsius"} 1'), m);
  assert(m.includes("ferry_rule_latency_seconds_bucket"), m);
});

Deno.test("a rule added to the config file is started without a restart", async () => {
  await using g = await gatewayWithRules([
    { name: "celsius", from: ["devices/+/telemetry/#"], module: "rules/celsius.ts" },
  ]);
  const sub = await mqtt.connectAsync(g.url, { clientId: "app", reconnectPeriod: 0 });
  const dev = await mqtt.connectAsync(g.url, { clientId: "s2", reconnectPeriod: 0 });
  try {
    const seen: string[] = [];
    sub.on("message", (t) => seen.push(t));
    await sub.subscribeAsync("rules/#", { qos: 0 });
    const cfg = JSON.parse(await Deno.readTextFile(`${g.dir}/ferry.json`));
    cfg.rules.push({ name: "version", from: ["devices/+/status2"], module: "rules/version.ts" });
    await Deno.writeTextFile(`${g.dir}/ferry.json.tmp`, JSON.stringify(cfg));
    await Deno.rename(`${g.dir}/ferry.json.tmp`, `${g.dir}/ferry.json`);
    await waitFor(
      () => g.lines.some((l) => l.includes("rules reloaded") && l.includes('"added":["version"]')),
      "the reload",
      10_000,
    );
    await dev.publishAsync("devices/s2/status2", "x", { qos: 1 });
    await waitFor(
      () => seen.some((t) => t.startsWith("rules/version/out")),
      "the new rule's output",
      10_000,
    );
  } finally {
    await dev.endAsync();
    await sub.endAsync();
  }
});
