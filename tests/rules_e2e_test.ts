/**
 * Rules end to end: a real gateway (every listener on a free port, rules in its config file) with
 * real devices: the FBP/1 reference client, MQTT.js, libcoap's coap-client and fetch against the
 * HTTP device API; a real mosquitto upstream for the northbound route. What a rule let out is
 * asserted as an MQTT application (MQTT.js, subscribed to `rules/#`) received it. Time-driven
 * behaviour (the window flush, the budget's watchdog) runs on a fake clock given to the gateway,
 * which is why these run the gateway in the test's process; `rules_process_test.ts` runs
 * `main.ts` itself.
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import { dec, enc, memoryLogger, waitFor } from "./_harness.ts";
import { mqtt, type MqttClient } from "./_dev_deps.ts";
import { runCoapClient } from "./_coap_harness.ts";
import { startMosquitto, subscribe } from "./_mosquitto.ts";
import { FIXTURES } from "./_rules_harness.ts";
import { FakeClock } from "../src/core/clock.ts";
import type { Message } from "../src/core/message.ts";
import { loadConfigFile, resolveConfig } from "../src/config/config.ts";
import { Gateway, type ListenerName } from "../src/gateway.ts";
import { FbpClient } from "../src/protocols/binary/client.ts";
import { AckStatus } from "../src/protocols/binary/frame.ts";
import type { ListenAddress } from "../src/protocols/listener.ts";
import type { DeadLetter } from "../src/rules/dead_letter.ts";
import type { RuleEngine } from "../src/rules/engine.ts";

const DEVICES = ["s1", "s2", "s3", "s4", "p1", "p2", "p3", "p4"];
const token = (id: string) => `t-${id}`;

/** A gateway running rules from its config file, and what it let out. */
interface RulesGateway extends AsyncDisposable {
  gw: Gateway;
  rules: RuleEngine;
  dir: string;
  port: Record<ListenerName, number>;
  lines: string[];
  /** Every rule output the core delivered, in order. */
  outputs: Message[];
  /** Outputs as `topic payload`. */
  texts(): string[];
  /**
   * What the MQTT application (MQTT.js, the `app` service, subscribed to `rules/#` at QoS 1)
   * received, as `topic payload`, once it has as many messages as the core delivered outputs.
   */
  peerSaw(): Promise<string[]>;
  /** Dead letters, in order. */
  dead: DeadLetter[];
  /** Rewrites the config file (renamed over, as editors do). */
  writeConfig(rules: unknown[]): Promise<void>;
}

async function startRules(
  rules: unknown[],
  options: { clock?: FakeClock; northbound?: unknown } = {},
): Promise<RulesGateway> {
  const dir = await Deno.makeTempDir({ prefix: "ferry-rules-e2e-" });
  await Deno.mkdir(`${dir}/rules`);
  for await (const f of Deno.readDir(FIXTURES)) {
    await Deno.copyFile(`${FIXTURES}${f.name}`, `${dir}/rules/${f.name}`);
  }
  const file = `${dir}/ferry.json`;
  const base = {
    dataDir: `${dir}/data`,
    auth: {
      anonymous: false,
      devices: DEVICES.map((id) => ({ id, token: token(id) })),
      services: [{ name: "app", token: "app-secret", subscribe: ["#"], publish: [] }],
    },
    binary: { port: 0 },
    mqtt: { port: 0, persistence: { enabled: false }, websocket: { port: 0 } },
    coap: { port: 0 },
    http: { port: 0 },
    ...(options.northbound ? { northbound: options.northbound } : {}),
  };
  const writeConfig = async (r: unknown[]) => {
    await Deno.writeTextFile(`${file}.tmp`, JSON.stringify({ ...base, rules: r }));
    await Deno.rename(`${file}.tmp`, file);
  };
  await writeConfig(rules);
  const { log, lines } = memoryLogger();
  const dead: DeadLetter[] = [];
  const gw = new Gateway(resolveConfig(await loadConfigFile(file)), {
    log,
    clock: options.clock,
    configFile: file,
    deadLetters: { deadLetter: (l) => void dead.push(l) },
  });
  let addrs: Partial<Record<ListenerName, ListenAddress>>;
  try {
    addrs = await gw.start();
  } catch (err) {
    await Deno.remove(dir, { recursive: true });
    throw err;
  }
  const outputs: Message[] = [];
  gw.core.subscribe("#", {
    id: "test",
    deliver: (m) => void (m.protocol === "rules" && outputs.push(m)),
  });
  const peer: string[] = [];
  let app: MqttClient;
  try {
    app = await mqtt.connectAsync(`mqtt://127.0.0.1:${addrs.mqtt!.port}`, {
      clientId: "peer",
      username: "app",
      password: "app-secret",
      reconnectPeriod: 0,
    });
    app.on("message", (t, p) => peer.push(`${t} ${dec(p)}`));
    await app.subscribeAsync("rules/#", { qos: 1 });
  } catch (err) {
    await gw.stop();
    await Deno.remove(dir, { recursive: true });
    throw err;
  }
  return {
    gw,
    rules: gw.rules!,
    dir,
    port: {
      binary: addrs.binary!.port,
      mqtt: addrs.mqtt!.port,
      coap: addrs.coap!.port,
      http: addrs.http!.port,
      mqttWs: addrs.mqttWs!.port,
    },
    lines,
    outputs,
    texts: () => outputs.map((m) => `${m.topic} ${dec(m.payload)}`),
    async peerSaw() {
      await waitFor(
        () => peer.length >= outputs.length,
        `the app to get ${outputs.length} outputs`,
      );
      return [...peer];
    },
    dead,
    writeConfig,
    async [Symbol.asyncDispose]() {
      await app.endAsync();
      await gw.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** POSTs telemetry to the HTTP device API; resolves to the status. */
async function httpTelemetry(port: number, id: string, channel: string, body: string) {
  const res = await fetch(`http://127.0.0.1:${port}/api/v1/devices/${id}/telemetry/${channel}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token(id)}`, "content-type": "application/json" },
    body,
  });
  await res.body?.cancel();
  return res.status;
}

/** POSTs telemetry with libcoap's coap-client (CON: it returns once the gateway answered). */
async function coapTelemetry(port: number, id: string, channel: string | undefined, body: string) {
  const path = channel === undefined ? "telemetry" : `telemetry/${channel}`;
  const r = await runCoapClient([
    "-B",
    "5",
    "-m",
    "post",
    "-e",
    body,
    `coap://127.0.0.1:${port}/d/${id}/${path}?token=${token(id)}`,
  ]);
  assertEquals(r.code, 0, r.stderr);
}

function mqttDevice(port: number, id: string) {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    clientId: id,
    username: id,
    password: token(id),
    reconnectPeriod: 0,
  });
}

/** Waits until `rule` has taken `n` messages and has nothing queued or in flight. */
async function taken(h: RulesGateway, rule: string, n: number): Promise<void> {
  await waitFor(() => {
    const r = h.rules.list().find((x) => x.name === rule);
    return r !== undefined && r.counters.in >= n && r.inFlight === 0;
  }, `rule ${rule} to take ${n} messages`);
  await h.rules.drain();
}

Deno.test("unit conversion: °F from an FBP/1, an MQTT, a CoAP and an HTTP device comes out in °C to an MQTT app", async () => {
  await using h = await startRules([
    { name: "celsius", from: ["devices/+/telemetry/#"], module: "rules/celsius.ts" },
  ]);
  const app = await mqtt.connectAsync(`mqtt://127.0.0.1:${h.port.mqtt}`, {
    clientId: "app",
    username: "app",
    password: "app-secret",
    reconnectPeriod: 0,
  });
  const got: string[] = [];
  app.on("message", (t, p) => got.push(`${t} ${dec(p)}`));
  await app.subscribeAsync("rules/celsius/#", { qos: 1 });
  const fbp = await FbpClient.connect({ port: h.port.binary, id: "s1", token: token("s1") });
  const dev = await mqttDevice(h.port.mqtt, "s2");
  try {
    assertEquals(
      await fbp.telemetry(enc('{"temp_f":212}'), { channel: "temp", ack: true }),
      AckStatus.OK,
    );
    await dev.publishAsync("devices/s2/telemetry/temp", '{"temp_f":32}', { qos: 1 });
    await coapTelemetry(h.port.coap, "s3", "temp", '{"temp_f":98.6}');
    assertEquals(await httpTelemetry(h.port.http, "s4", "temp", '{"temp_f":-40}'), 202);
    await waitFor(() => got.length === 4, "four outputs at the app");
    assertEquals(got.sort(), [
      'rules/celsius/s1/temp {"temp_c":100}',
      'rules/celsius/s2/temp {"temp_c":0}',
      'rules/celsius/s3/temp {"temp_c":37}',
      'rules/celsius/s4/temp {"temp_c":-40}',
    ]);
    // Each output speaks for the device it derives from, and came in through the rules port.
    assertEquals(
      h.outputs.map((m) => [m.deviceId, m.protocol, m.origin]).sort(),
      ["s1", "s2", "s3", "s4"].map((d) => [d, "rules", "rule:celsius"]),
    );
  } finally {
    await fbp.close();
    await dev.endAsync();
    await app.endAsync();
  }
});

Deno.test("deadband over MQTT: only readings that moved past the band come out", async () => {
  await using h = await startRules([
    { name: "deadband", from: ["devices/+/telemetry"], module: "rules/deadband.ts" },
  ]);
  const dev = await mqttDevice(h.port.mqtt, "s2");
  try {
    for (const v of [20, 20.3, 20.6, 20.2, 19.9, 19.8]) {
      await dev.publishAsync("devices/s2/telemetry", `{"v":${v}}`, { qos: 1 });
    }
  } finally {
    await dev.endAsync();
  }
  await taken(h, "deadband", 6);
  assertEquals(await h.peerSaw(), [
    "rules/deadband/s2 20",
    "rules/deadband/s2 20.6",
    "rules/deadband/s2 19.9",
  ]);
  const [info] = h.rules.list();
  assertEquals([info.counters.in, info.counters.out, info.counters.dropped], [6, 3, 3]);
});

Deno.test("a 10-second average of CoAP readings is flushed by the (fake) clock, not by a message", async () => {
  const clock = new FakeClock(1_700_000_000_000); // a multiple of 10 s: one window
  await using h = await startRules(
    [{ name: "average", from: ["devices/+/telemetry"], module: "rules/average.ts" }],
    { clock },
  );
  for (const v of [10, 20, 60]) await coapTelemetry(h.port.coap, "s3", undefined, `{"v":${v}}`);
  await taken(h, "average", 3);
  clock.tick(9_000);
  await h.rules.drain();
  assertEquals(h.outputs.length, 0, "the window is still open");
  clock.tick(1_000);
  await waitFor(() => h.outputs.length === 1, "the window's average");
  const [line] = await h.peerSaw();
  assertEquals(line.split(" ")[0], "rules/average/s3");
  assertEquals(JSON.parse(line.slice(line.indexOf(" ") + 1)), {
    avg: 30,
    min: 10,
    max: 60,
    count: 3,
    end: 1_700_000_010_000,
  });
});

Deno.test("a rule rewrites HTTP telemetry onto the upstream's namespace; a real mosquitto gets it through the bridge", async () => {
  await using broker = await startMosquitto();
  await using up = await subscribe(broker.url, "ferry/gw-rules/#");
  await using h = await startRules(
    [{ name: "upstream", from: ["devices/+/telemetry/#"], module: "rules/upstream.ts" }],
    { northbound: { url: broker.url, gatewayId: "gw-rules" } },
  );
  for (let i = 0; i < 3; i++) {
    assertEquals(await httpTelemetry(h.port.http, "s4", "boiler", `{"temp":${70 + i}}`), 202);
  }
  const rewritten = () => up.received.filter((r) => r.topic.startsWith("ferry/gw-rules/plant/"));
  await waitFor(() => rewritten().length >= 3, "the rewritten readings upstream", 20_000);
  assertEquals([...new Set(rewritten().map((r) => `${r.topic} ${r.text}`))], [
    'ferry/gw-rules/plant/line-1/s4/boiler {"celsius":70,"from":"http"}',
    'ferry/gw-rules/plant/line-1/s4/boiler {"celsius":71,"from":"http"}',
    'ferry/gw-rules/plant/line-1/s4/boiler {"celsius":72,"from":"http"}',
  ]);
  assertEquals(h.outputs.length, 0, "routed northbound: nothing re-entered the gateway");
  assertEquals(h.rules.list()[0].counters.out, 3);
});

Deno.test("with two bridges, a rule's upstream route reaches both brokers, each under its own prefix", async () => {
  await using b1 = await startMosquitto();
  await using b2 = await startMosquitto();
  await using up1 = await subscribe(b1.url, "#");
  await using up2 = await subscribe(b2.url, "#");
  await using h = await startRules(
    [{ name: "upstream", from: ["devices/+/telemetry/#"], module: "rules/upstream.ts" }],
    {
      northbound: [
        // Neither bridge forwards device telemetry itself: only the rule's route goes up.
        { name: "cloud", url: b1.url, gatewayId: "gw-rules", forward: ["devices/+/status"] },
        {
          name: "plant",
          url: b2.url,
          gatewayId: "gw-rules",
          forward: ["devices/+/status"],
          prefix: "site/{gatewayId}",
        },
      ],
    },
  );
  assertEquals(await httpTelemetry(h.port.http, "s4", "boiler", '{"temp":70}'), 202);
  const body = '{"celsius":70,"from":"http"}';
  const got = (up: typeof up1, topic: string) =>
    up.received.some((r) => r.topic === topic && r.text === body);
  await waitFor(
    () =>
      got(up1, "ferry/gw-rules/plant/line-1/s4/boiler") &&
      got(up2, "site/gw-rules/plant/line-1/s4/boiler"),
    "the output on both brokers",
    20_000,
  );
  for (const up of [up1, up2]) {
    assert(!up.received.some((r) => r.topic.includes("devices/s4/telemetry")), "no raw telemetry");
  }
});

Deno.test("a rule that throws: its messages are dead-lettered and counted, the FBP/1 device is acknowledged, the next one comes out", async () => {
  await using h = await startRules([{
    name: "throws",
    from: ["devices/+/telemetry"],
    module: "rules/throws.ts",
    onError: "dead-letter",
  }]);
  const fbp = await FbpClient.connect({ port: h.port.binary, id: "s1", token: token("s1") });
  try {
    for (const p of ["bad", "good"]) {
      assertEquals(await fbp.telemetry(enc(p), { ack: true }), AckStatus.OK);
    }
  } finally {
    await fbp.close();
  }
  await taken(h, "throws", 2);
  assertEquals(await h.peerSaw(), ["rules/throws/ok good"]);
  assertEquals(h.dead.map((l) => [l.rule, l.kind, dec(l.message.payload), l.error.name]), [
    ["throws", "throw", "bad", "RangeError"],
  ]);
  assert(h.dead[0].error.message.includes("bad reading on devices/s1/telemetry"));
  assertEquals(h.rules.list()[0].counters.errors, 1);
  const metrics = h.gw.core.metrics.render();
  assert(metrics.includes('ferry_rule_errors_total{kind="throw",rule="throws"} 1'), metrics);
  assert(metrics.includes('ferry_rule_dead_letters_total{rule="throws"} 1'), metrics);
  assert(h.lines.some((l) => l.includes("rule failed on a message")));
});

Deno.test("a rule that loops forever is stopped at its budget; the gateway keeps serving devices and other rules meanwhile", async () => {
  const clock = new FakeClock(1_700_000_000_000);
  await using h = await startRules([
    { name: "hang", from: ["devices/+/telemetry"], module: "rules/hang.ts", timeoutMs: 500 },
    { name: "celsius", from: ["devices/+/telemetry/#"], module: "rules/celsius.ts" },
  ], { clock });
  const looper = await mqttDevice(h.port.mqtt, "s2");
  const fbp = await FbpClient.connect({ port: h.port.binary, id: "s1", token: token("s1") });
  try {
    for (const p of ["a", "hang", "b"]) {
      await looper.publishAsync("devices/s2/telemetry", p, { qos: 1 });
    }
    await waitFor(() => h.texts().includes("rules/hang/ok a"), "the message before the loop");
    // The rule's worker spins; the gateway's thread does not: devices are acknowledged and the
    // other rule's outputs keep coming.
    for (let i = 0; i < 5; i++) {
      assertEquals(
        await fbp.telemetry(enc(`{"temp_f":${50 + i * 9}}`), { channel: "t", ack: true }),
        AckStatus.OK,
      );
    }
    await waitFor(
      () => h.outputs.filter((m) => m.topic === "rules/celsius/s1/t").length === 5,
      "the other rule",
    );
    assertEquals(h.rules.list()[0].counters.timeouts, 0);
    await waitFor(() => {
      clock.tick(500); // the watchdog reads the worker's progress every timeoutMs
      return h.rules.list()[0].counters.timeouts === 1;
    }, "the budget to stop the loop");
    await waitFor(() => h.texts().includes("rules/hang/ok b"), "the message after the loop");
    await looper.publishAsync("devices/s2/telemetry", "c", { qos: 1 });
    await taken(h, "hang", 4);
  } finally {
    await fbp.close();
    await looper.endAsync();
  }
  assertEquals((await h.peerSaw()).filter((t) => t.startsWith("rules/hang/")), [
    "rules/hang/ok a",
    "rules/hang/ok b",
    "rules/hang/ok c",
  ]);
  const [hang] = h.rules.list();
  assertEquals([hang.status, hang.counters.restarts, hang.counters.timeouts], ["running", 1, 1]);
});

Deno.test("a rule that tries Deno.readTextFile, fetch, Deno.env or a subprocess is refused by the sandbox", async () => {
  let fetched = 0;
  await using target = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    fetched++;
    return new Response("reached");
  });
  await using h = await startRules([{
    name: "escape",
    from: ["devices/+/telemetry/#"],
    module: "rules/escape.ts",
    onError: "dead-letter",
  }]);
  const secret = crypto.randomUUID();
  await Deno.writeTextFile(`${h.dir}/secret.txt`, secret);
  Deno.env.set("FERRY_RULES_TEST_SECRET", secret);
  const probes = [
    { read: `${h.dir}/secret.txt` },
    { fetch: `http://127.0.0.1:${target.addr.port}/` },
    { env: "FERRY_RULES_TEST_SECRET" },
    { run: "true" },
    {},
  ];
  try {
    for (const p of probes) {
      assertEquals(await httpTelemetry(h.port.http, "s4", "probe", JSON.stringify(p)), 202);
    }
    await taken(h, "escape", probes.length);
  } finally {
    Deno.env.delete("FERRY_RULES_TEST_SECRET");
  }
  assertEquals(
    await h.peerSaw(),
    ['rules/escape/got {"got":null}'],
    "only the harmless probe came out",
  );
  assertEquals(h.dead.map((l) => l.error.name), Array(4).fill("NotCapable"));
  for (const [i, what] of ["read", "net", "env", "run"].entries()) {
    assert(h.dead[i].error.message.includes(`Requires ${what} access`), h.dead[i].error.message);
  }
  assertEquals(fetched, 0, "the request never reached the server");
  assert(!h.dead.some((l) => l.error.message.includes(secret)));
});

Deno.test("hot reload under load: FBP/1 devices keep sending while the rule file changes; nothing is lost or reordered", async () => {
  await using h = await startRules([
    { name: "version", from: ["devices/+/telemetry"], module: "rules/version.ts" },
  ]);
  const devices = ["p1", "p2", "p3", "p4"];
  const clients = await Promise.all(
    devices.map((id) => FbpClient.connect({ port: h.port.binary, id, token: token(id) })),
  );
  const perDevice = 1500;
  let sent = 0;
  const load = Promise.all(clients.map(async (c) => {
    for (let i = 0; i < perDevice; i++) {
      assertEquals(await c.telemetry(enc(String(i)), { ack: true }), AckStatus.OK);
      sent++;
    }
  }));
  try {
    await waitFor(() => sent >= 1000, "the load under way");
    const src = await Deno.readTextFile(`${h.dir}/rules/version.ts`);
    await Deno.writeTextFile(`${h.dir}/rules/.version.tmp`, src.replace('"v1"', '"v2"'));
    await Deno.rename(`${h.dir}/rules/.version.tmp`, `${h.dir}/rules/version.ts`);
    await waitFor(
      () =>
        h.lines.some((l) => l.includes("rules reloaded") && l.includes('"replaced":["version"]')),
      "the reload",
    );
    await load;
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
  await taken(h, "version", devices.length * perDevice);
  assertEquals(h.outputs.length, devices.length * perDevice, "every message came out once");
  const seen = await h.peerSaw();
  assertEquals(seen.length, devices.length * perDevice, "and reached the app once");
  for (const d of devices) {
    const mine = seen.filter((l) => l.startsWith(`rules/version/out/${d} `))
      .map((l) => l.split(" ")[1].split(":"));
    assertEquals(mine.map(([, i]) => Number(i)), [...Array(perDevice).keys()], `${d} in order`);
    const firstV2 = mine.findIndex(([v]) => v === "v2");
    assert(
      mine.slice(0, firstV2 < 0 ? mine.length : firstV2).every(([v]) => v === "v1") &&
        mine.slice(firstV2 < 0 ? mine.length : firstV2).every(([v]) => v === "v2"),
      `${d}: v1 then v2`,
    );
  }
  assert(seen.some((l) => l.includes(" v2:")), "the new version ran");
});

Deno.test("rules added to a config file that had none at start run without a restart", async () => {
  await using h = await startRules([]);
  const dev = await mqttDevice(h.port.mqtt, "s2");
  try {
    await dev.publishAsync("devices/s2/telemetry/temp", '{"temp_f":212}', { qos: 1 });
    await h.writeConfig([
      { name: "celsius", from: ["devices/+/telemetry/#"], module: "rules/celsius.ts" },
    ]);
    await waitFor(
      () => h.lines.some((l) => l.includes("rules reloaded") && l.includes('"added":["celsius"]')),
      "the reload",
    );
    await dev.publishAsync("devices/s2/telemetry/temp", '{"temp_f":32}', { qos: 1 });
    await taken(h, "celsius", 1);
  } finally {
    await dev.endAsync();
  }
  assertEquals(await h.peerSaw(), ['rules/celsius/s2/temp {"temp_c":0}']);
});
