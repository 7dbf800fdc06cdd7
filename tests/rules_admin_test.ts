/**
 * Rules through the management API and the dashboard, on a real gateway process (`main.ts
 * --config`, every port 0) with MQTT.js devices, a real mosquitto upstream behind the northbound
 * bridge and MQTT.js subscribers as the applications:
 *
 * - `/api/v1/admin/rules` counters match what the device sent (in, out, dropped, errors, timeouts,
 *   dead letters, latency);
 * - disabling a `to: northbound` rule with `onError: "pass"` makes the next messages reach the
 *   upstream unchanged, enabling it brings the rewrite back (what the upstream subscriber saw);
 * - a rule with `onError: "dead-letter"` that throws (and one stopped at its budget) puts the
 *   message into the spool's dead-letter table, listed by `/api/v1/admin/northbound/dead-letters`;
 * - accounts without the rights get 403;
 * - the dashboard's rules panel renders in headless Chromium and its Disable button stops the rule
 *   (a subscriber sees no more outputs);
 * - the OpenAPI document (validated) lists the rules routes, each exercised here.
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import { openPage, signIn } from "./_chromium.ts";
import { mqtt, OpenApiValidator } from "./_dev_deps.ts";
import { waitFor } from "./_harness.ts";
import { startMosquitto, subscribe } from "./_mosquitto.ts";
import { type GatewayProcess, startGateway } from "./_process.ts";
import { FIXTURES } from "./_rules_harness.ts";

const OPS = { name: "ops", token: "ops-token" };
/** May list the rules, may change none. */
const READER = { name: "reader", token: "reader-token" };
/** May not even list them. */
const VIEWER = { name: "viewer", token: "viewer-token" };
const SERVICES = [
  { ...OPS, publish: ["$ferry/admin/#"], subscribe: ["#", "$ferry/admin/#"] },
  { ...READER, publish: [], subscribe: ["devices/#", "$ferry/admin/rules"] },
  { ...VIEWER, publish: [], subscribe: ["devices/#"] },
  { name: "app", token: "app-secret", publish: [], subscribe: ["#"] },
];

/** Every (method, route template) called here, for the OpenAPI check. */
const exercised = new Set<string>();

type Account = { name: string; token: string };
type Json = Record<string, unknown>;

async function call(
  base: string,
  method: string,
  path: string,
  as: Account = OPS,
): Promise<{ status: number; body: Json }> {
  const headers: Record<string, string> = {
    authorization: `Basic ${btoa(`${as.name}:${as.token}`)}`,
  };
  if (method === "POST") headers["content-type"] = "application/json";
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    body: method === "POST" ? "{}" : undefined,
  });
  exercised.add(
    `${method.toLowerCase()} ${
      path.split("?")[0].replace(/^\/api\/v1\/admin\/rules\/[^/]+/, "/api/v1/admin/rules/{name}")
    }`,
  );
  return { status: res.status, body: await res.json() };
}

/** Polls the API until `cond` holds of rule `name` (bounded: 20 s). */
async function untilRule(
  base: string,
  name: string,
  cond: (r: Json) => boolean,
  what: string,
): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (cond(await ruleView(base, name))) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`Timed out waiting for ${what}: ${JSON.stringify(await ruleView(base, name))}`);
}

async function ruleView(base: string, name: string): Promise<Json> {
  const r = await call(base, "GET", `/api/v1/admin/rules/${name}`);
  assertEquals(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

/** A gateway process over a config file in a fresh directory holding the fixture rules. */
async function gateway(config: Json): Promise<{ proc: GatewayProcess; base: string; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "ferry-rules-admin-" });
  await Deno.mkdir(`${dir}/rules`);
  for (const f of ["tally.ts", "upstream.ts"]) {
    await Deno.copyFile(`${FIXTURES}${f}`, `${dir}/rules/${f}`);
  }
  await Deno.writeTextFile(
    `${dir}/ferry.json`,
    JSON.stringify({ dataDir: `${dir}/data`, ...config }),
  );
  const ports = ["--binary-port", "--mqtt-port", "--mqtt-ws-port", "--coap-port", "--http-port"]
    .flatMap((f) => [f, "0"]);
  const proc = await startGateway(["--config", `${dir}/ferry.json`, ...ports]);
  const dispose = proc[Symbol.asyncDispose].bind(proc);
  proc[Symbol.asyncDispose] = async () => {
    await dispose();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  return { proc, base: `http://127.0.0.1:${proc.addresses.http.port}`, dir };
}

function device(port: number, id: string) {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    clientId: id,
    username: id,
    password: `t-${id}`,
    reconnectPeriod: 0,
  });
}

/** The application: MQTT.js under the `app` account, subscribed to `rules/#`. */
async function application(port: number) {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    clientId: "app",
    username: "app",
    password: "app-secret",
    reconnectPeriod: 0,
  });
  const received: Array<{ topic: string; text: string }> = [];
  c.on("message", (topic, p) => received.push({ topic, text: new TextDecoder().decode(p) }));
  await c.subscribeAsync("rules/#", { qos: 1 });
  return { received, [Symbol.asyncDispose]: () => c.endAsync().then(() => {}) };
}

const auth = (ids: string[]) => ({
  anonymous: false,
  devices: ids.map((id) => ({ id, token: `t-${id}` })),
  services: SERVICES,
});

Deno.test("Rules admin API on a gateway process: counters match what a device sent; disabling a pass-through northbound rule sends the next messages upstream unchanged; a throwing or looping rule's messages are dead letters in the spool's table; accounts without the right get 403", async () => {
  await using broker = await startMosquitto();
  await using upstream = await subscribe(broker.url, "#");
  const { proc, base } = await gateway({
    auth: auth(["s1"]),
    mqtt: { persistence: { enabled: false } },
    northbound: {
      url: broker.url,
      gatewayId: "gw1",
      forward: ["nothing/#"], // only the rules' routes go upstream
      backoffBaseMs: 20,
      backoffCapMs: 100,
    },
    rules: [
      {
        name: "tally",
        from: ["devices/+/telemetry/tally"],
        module: "rules/tally.ts",
        onError: "dead-letter",
        timeoutMs: 1000,
      },
      {
        name: "line",
        from: ["devices/+/telemetry/line"],
        module: "rules/upstream.ts",
        to: "northbound",
        onError: "pass",
      },
    ],
  });
  await using _proc = proc;
  const mqttPort = proc.addresses.mqtt.port;
  await using app = await application(mqttPort);
  const dev = await device(mqttPort, "s1");
  try {
    // Counters: 19 passed, 5 dropped, 4 thrown (never 10 in a row), then one loop.
    const sent: string[] = [];
    for (let i = 0; i < 28; i++) {
      const p = i % 7 === 3 ? "bad" : i % 7 === 5 || i === 27 ? "drop" : `ok-${i}`;
      sent.push(p);
      await dev.publishAsync("devices/s1/telemetry/tally", p, { qos: 1 });
    }
    const oks = sent.filter((p) => p.startsWith("ok-"));
    assertEquals([oks.length, sent.filter((p) => p === "bad").length], [19, 4]);
    await waitFor(() => app.received.length === 19, "the 19 outputs at the application");
    assertEquals(app.received.map((m) => m.text), oks);
    assert(app.received.every((m) => m.topic === "rules/tally/s1"));
    // The loop: stopped at its 1 s budget, failed as a timeout.
    await dev.publishAsync("devices/s1/telemetry/tally", "loop", { qos: 1 });
    await untilRule(
      base,
      "tally",
      (r) => r.timeouts === 1 && r.status === "running",
      "the timeout, and a new worker",
    );
    const tally = await ruleView(base, "tally");
    assertEquals(
      [tally.in, tally.out, tally.dropped, tally.errors, tally.timeouts, tally.deadLetters],
      [29, 19, 5, 5, 1, 5],
    );
    assertEquals([tally.status, tally.onError, tally.mayChange], ["running", "dead-letter", true]);
    const latency = tally.latency as { count: number; p50Ms: number; p99Ms: number | null };
    assert(latency.count >= 28, JSON.stringify(latency));
    assert(typeof latency.p50Ms === "number" && latency.p50Ms > 0, JSON.stringify(latency));
    const list = await call(base, "GET", "/api/v1/admin/rules");
    assertEquals(list.status, 200);
    const items = list.body.items as Json[];
    assertEquals(items.map((r) => r.name), ["tally", "line"]);
    assertEquals(items[0].in, 29);

    // Dead letters: the four throws and the loop, in the spool's table, as the API lists them.
    const dead = await call(base, "GET", "/api/v1/admin/northbound/dead-letters?bridge=rule:tally");
    assertEquals(dead.status, 200);
    const letters = dead.body.items as Json[];
    assertEquals(
      letters.map((l) => [l.bridge, l.topic, l.deviceId, l.payload, l.reason]),
      [
        ...Array(4).fill(["rule:tally", "devices/s1/telemetry/tally", "s1", "bad", "rule_throw"]),
        ["rule:tally", "devices/s1/telemetry/tally", "s1", "loop", "rule_timeout"],
      ],
    );
    assertEquals(letters[0].detail, "RangeError: bad reading on devices/s1/telemetry/tally");
    assert(String(letters[4].detail).includes("1000 ms budget"), String(letters[4].detail));

    // Rights: the reader may list but change nothing; the viewer may not even list.
    const asReader = await call(base, "GET", "/api/v1/admin/rules", READER);
    assertEquals(asReader.status, 200);
    assertEquals((asReader.body.items as Json[]).map((r) => r.mayChange), [false, false]);
    assertEquals(
      (await call(base, "POST", "/api/v1/admin/rules/line/disable", READER)).status,
      403,
    );
    assertEquals((await call(base, "GET", "/api/v1/admin/rules", VIEWER)).status, 403);
    assertEquals((await call(base, "GET", "/api/v1/admin/rules/tally", VIEWER)).status, 403);
    assertEquals((await call(base, "POST", "/api/v1/admin/rules/line/enable", VIEWER)).status, 403);
    assertEquals((await call(base, "GET", "/api/v1/admin/rules/nope")).status, 404);
    assertEquals((await call(base, "POST", "/api/v1/admin/rules/nope/disable")).status, 404);
    assertEquals((await ruleView(base, "line")).status, "running", "nothing changed");

    // Pass-through: the rewrite reaches the upstream; disabled, the message goes unchanged.
    const upstreamSaw = (topic: string, text: string) =>
      upstream.received.some((m) => m.topic === topic && m.text === text);
    await dev.publishAsync("devices/s1/telemetry/line", '{"temp":21.5}', { qos: 1 });
    await waitFor(
      () => upstreamSaw("ferry/gw1/plant/line-1/s1/line", '{"celsius":21.5,"from":"mqtt"}'),
      "the rewritten reading upstream",
    ).catch((e) => {
      throw new Error(`${e.message}: upstream saw ${JSON.stringify(upstream.received)}`);
    });
    const off = await call(base, "POST", "/api/v1/admin/rules/line/disable");
    assertEquals([off.status, off.body.status], [200, "disabled"]);
    await proc.waitForLine((l) => l.msg === "rule disabled" && l.rule === "line");
    await dev.publishAsync("devices/s1/telemetry/line", '{"temp":22}', { qos: 1 });
    await waitFor(
      () => upstreamSaw("ferry/gw1/devices/s1/telemetry/line", '{"temp":22}'),
      "the unchanged reading upstream",
    );
    const on = await call(base, "POST", "/api/v1/admin/rules/line/enable");
    assertEquals([on.status, on.body.status], [200, "running"]);
    await dev.publishAsync("devices/s1/telemetry/line", '{"temp":23}', { qos: 1 });
    await waitFor(
      () => upstreamSaw("ferry/gw1/plant/line-1/s1/line", '{"celsius":23,"from":"mqtt"}'),
      "the rewrite again",
    );
    // What the upstream saw, in order: rewritten, unchanged, rewritten; nothing else (but the
    // bridge's own presence message).
    const seenUp = upstream.received.filter((m) => m.topic !== "ferry/gw1/status");
    assertEquals(seenUp.map((m) => `${m.topic} ${m.text}`), [
      'ferry/gw1/plant/line-1/s1/line {"celsius":21.5,"from":"mqtt"}',
      'ferry/gw1/devices/s1/telemetry/line {"temp":22}',
      'ferry/gw1/plant/line-1/s1/line {"celsius":23,"from":"mqtt"}',
    ]);
    const line = await ruleView(base, "line");
    // In: the two it ran on; out: its two rewrites and the message passed on while disabled.
    assertEquals([line.in, line.out, line.errors], [2, 3, 0]);
  } finally {
    await dev.endAsync();
  }

  // The OpenAPI document: valid, and every rules route in it was called above.
  const doc = await (await fetch(`${base}/api/v1/openapi.json`)).json();
  assertEquals(await new OpenApiValidator().validate(doc), { valid: true });
  const ops = Object.entries(doc.paths as Record<string, Json>)
    .filter(([path]) => path.startsWith("/api/v1/admin/rules"))
    .flatMap(([path, item]) =>
      Object.keys(item).filter((m) => m !== "parameters").map((m) => `${m} ${path}`)
    );
  assertEquals(ops.length, 4);
  for (const op of ops) assert(exercised.has(op), `${op} is documented but not exercised`);
});

Deno.test("Dashboard rules panel in headless Chromium: per-rule in/out/errors/p99 from the management API; its Disable button stops the rule (the application sees no more outputs) and Enable brings it back; hidden for an account that may not read the rules", async () => {
  const { proc, base } = await gateway({
    auth: auth(["s1"]),
    http: { loginLink: false },
    mqtt: { persistence: { enabled: false } },
    rules: [{ name: "tally", from: ["devices/+/telemetry/tally"], module: "rules/tally.ts" }],
  });
  await using _proc = proc;
  const mqttPort = proc.addresses.mqtt.port;
  await using app = await application(mqttPort);
  const seen = () => app.received.map((m) => m.text);
  const dev = await device(mqttPort, "s1");
  await using page = await openPage();
  try {
    for (const p of ["a", "b", "bad", "drop", "c"]) {
      await dev.publishAsync("devices/s1/telemetry/tally", p, { qos: 1 });
    }
    await waitFor(() => seen().length === 3, "three outputs");

    const login = async (a: Account) => {
      await page.goto(`${base}/dashboard`);
      await signIn(page, a);
    };
    await login(OPS);
    const cells =
      `[...document.querySelectorAll('#rules tr.rule[data-name="tally"] td')].map((td) => td.textContent)`;
    await page.waitFor(`${cells}.length === 9 && ${cells}[2] === "5"`, "the tally row");
    const row = await page.evaluate<string[]>(cells);
    // rule, status, in, out, dropped, errors, timeouts, p99, button
    assertEquals(row.slice(0, 7), ["tally", "running", "5", "3", "2", "1", "0"]);
    assert(/^[\d.]+ ms$/.test(row[7]), `p99 ${row[7]}`);
    assertEquals(row[8], "Disable");

    await page.evaluate(
      `document.querySelector('#rules button.rule-toggle[data-name="tally"]').click()`,
    );
    await page.waitFor(
      `document.querySelector('#rules tr.rule[data-name="tally"]')?.dataset.status === "disabled"`,
      "the rule disabled in the panel",
    );
    assertEquals(
      await page.evaluate(`document.getElementById("rules-status").textContent`),
      "tally disabled",
    );
    assertEquals((await ruleView(base, "tally")).status, "disabled");
    // Disabled with onError "drop": the message is dropped as it is delivered to the rule.
    await dev.publishAsync("devices/s1/telemetry/tally", "while-off", { qos: 1 });
    await untilRule(base, "tally", (r) => r.dropped === 3, "dropped while off");

    await page.evaluate(
      `document.querySelector('#rules button.rule-toggle[data-name="tally"]').click()`,
    );
    await page.waitFor(
      `document.querySelector('#rules tr.rule[data-name="tally"]')?.dataset.status === "running"`,
      "the rule enabled again",
    );
    await dev.publishAsync("devices/s1/telemetry/tally", "after", { qos: 1 });
    await waitFor(() => seen().includes("after"), "outputs again");
    // In order per device: an output of "while-off" would have come before "after".
    assertEquals(seen(), ["a", "b", "c", "after"]);

    // An account that may not read the rules: the panel stays hidden.
    await page.evaluate(
      `fetch("/dashboard/logout", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })`,
    );
    await login(VIEWER);
    await page.waitFor(`document.getElementById("count").textContent !== ""`, "the device list");
    await new Promise((r) => setTimeout(r, 1500)); // a panel refresh round
    assertEquals(
      await page.evaluate(`document.getElementById("rules-panel").classList.contains("hidden")`),
      true,
    );
  } finally {
    await dev.endAsync();
  }
});
