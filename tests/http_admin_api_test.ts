/**
 * The management API (`/api/v1/admin/...`) on a gateway over real sockets: what a device and an
 * MQTT client see when an operator adds, rotates, removes or disconnects it; the account's ACL;
 * the CSRF guard; paging, filters and sort; and the OpenAPI document, validated by a real
 * validator and with every route in it exercised here or by the device API's tests.
 */

import { mqtt, OpenApiValidator } from "./_dev_deps.ts";
import { assert, assertEquals } from "./_assert.ts";
import { until, within } from "./_mqtt_harness.ts";
import { resolveConfig } from "../src/config/config.ts";
import { Logger } from "../src/core/logger.ts";
import { Gateway } from "../src/gateway.ts";
import { FbpClient } from "../src/protocols/binary/client.ts";
import { AckStatus } from "../src/protocols/binary/frame.ts";
import { metrics, startFerry, waitMetric } from "./_ferry_process.ts";
import { enc } from "./_harness.ts";
import { startMosquitto } from "./_mosquitto.ts";

const OPS = { name: "ops", token: "ops-token" };
const VIEWER = { name: "viewer", token: "viewer-token" };
/** Reads gateway statistics only ($SYS/#): the charts' history. */
const STATS = { name: "stats", token: "stats-token" };

/** Every (method, route template) this file called: the OpenAPI test checks them all off. */
const exercised = new Set<string>();

interface Devices {
  /** Extra devices from the config (plain tokens: fast to set up in thousands). */
  config?: Array<{ id: string; token: string }>;
}

async function gateway(o: Devices = {}) {
  const dir = await Deno.makeTempDir();
  const gw = new Gateway(
    resolveConfig({
      dataDir: dir,
      binary: { enabled: false },
      coap: { enabled: false },
      http: { port: 0, loginLink: false },
      mqtt: { port: 0, persistence: { enabled: false }, websocket: { enabled: false } },
      auth: {
        anonymous: false,
        devices: o.config ?? [],
        services: [
          {
            ...OPS,
            publish: ["$ferry/admin/#", "devices/+/commands/#", "devices/+/telemetry/#"],
            subscribe: ["devices/#"],
          },
          { ...VIEWER, publish: [], subscribe: ["devices/devA/#"] },
          { ...STATS, publish: [], subscribe: ["$SYS/#"] },
        ],
      },
      sys: { historyIntervalMs: 100 },
    }),
    { log: new Logger({ level: "error", sink: () => {} }) },
  );
  await gw.start();
  const base = `http://127.0.0.1:${gw.addresses.http!.port}`;
  return {
    gw,
    base,
    mqttUrl: `mqtt://127.0.0.1:${gw.addresses.mqtt!.port}`,
    async [Symbol.asyncDispose]() {
      await gw.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function basic(a: { name: string; token: string }): string {
  return `Basic ${btoa(`${a.name}:${a.token}`)}`;
}

/** One call; records its route template for the OpenAPI check. */
async function call(
  base: string,
  method: string,
  path: string,
  o: { as?: { name: string; token: string } | null; body?: unknown; headers?: HeadersInit } = {},
): Promise<{ status: number; body: Record<string, unknown> | null; headers: Headers }> {
  const headers = new Headers(o.headers);
  if (o.as !== null) headers.set("authorization", basic(o.as ?? OPS));
  if (o.body !== undefined && !headers.has("content-type")) {
    headers.set("content-type", "application/json");
  }
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    body: o.body === undefined ? undefined : JSON.stringify(o.body),
  });
  const text = await res.text();
  const template = path.split("?")[0]
    .replace(/^\/api\/v1\/admin\/devices\/[^/]+/, "/api/v1/admin/devices/{id}")
    .replace(/\/commands\/[^/]+$/, "/commands/{name}");
  exercised.add(`${method.toLowerCase()} ${template}`);
  return {
    status: res.status,
    body: text ? JSON.parse(text) : null,
    headers: res.headers,
  };
}

/** An MQTT 5 device login; resolves to the client, or rejects with the CONNACK's refusal. */
function device(url: string, id: string, token: string) {
  return mqtt.connectAsync(url, {
    clientId: id,
    username: id,
    password: token,
    protocolVersion: 5,
    reconnectPeriod: 0,
    connectTimeout: 8000,
  }, false);
}

Deno.test("Admin API: a device added over the API logs in with the token it returned; disconnect kicks it (DISCONNECT 0x98); rotate refuses the old token; remove closes it and refuses its next login", async () => {
  await using g = await gateway();
  const added = await call(g.base, "POST", "/api/v1/admin/devices", { body: { id: "devA" } });
  assertEquals(added.status, 201);
  assertEquals(added.headers.get("location"), "/api/v1/admin/devices/devA");
  const token = added.body!.token as string;
  assert(token.length >= 32);
  assertEquals(
    (await call(g.base, "POST", "/api/v1/admin/devices", { body: { id: "devA" } })).status,
    409,
  );

  // The device logs in with the token the API gave.
  const c1 = await within(device(g.mqttUrl, "devA", token), 8000, "login");
  const detail = await call(g.base, "GET", "/api/v1/admin/devices/devA");
  assertEquals(detail.status, 200);
  assertEquals(
    [detail.body!.state, detail.body!.protocol, detail.body!.connected, detail.body!.registered],
    ["online", "mqtt", true, true],
  );

  // Disconnect: the client gets DISCONNECT with 0x98 (administrative action) and is closed.
  const kicked = new Promise<number | undefined>((r) =>
    c1.on("disconnect", (p) => r(p.reasonCode))
  );
  const closed1 = new Promise<void>((r) => c1.on("close", () => r()));
  const kick = await call(g.base, "POST", "/api/v1/admin/devices/devA/disconnect", { body: {} });
  assertEquals(kick.status, 202);
  assertEquals(await within(kicked, 8000, "DISCONNECT"), 0x98);
  await within(closed1, 8000, "the close");
  await until(
    () => g.gw.core.registry.get("devA")?.state === "offline",
    "devA offline",
    8000,
  );
  assertEquals(
    (await call(g.base, "POST", "/api/v1/admin/devices/devA/disconnect", { body: {} })).status,
    409,
    "not connected any more",
  );

  // It may come back; rotate: the connected client is closed, the old token refused, the new one works.
  const c2 = await within(device(g.mqttUrl, "devA", token), 8000, "login again");
  const closed2 = new Promise<void>((r) => c2.on("close", () => r()));
  const rotated = await call(g.base, "POST", "/api/v1/admin/devices/devA/rotate", { body: {} });
  assertEquals(rotated.status, 200);
  const token2 = rotated.body!.token as string;
  assert(token2 !== token);
  await within(closed2, 8000, "the rotated device's close");
  const old = await device(g.mqttUrl, "devA", token).then(
    (c) => (c.end(true), "accepted"),
    (e: Error & { code?: number }) => e.code,
  );
  assertEquals(old, 0x86, "the old token is refused (bad user name or password)");
  const c3 = await within(device(g.mqttUrl, "devA", token2), 8000, "login with the new token");

  // Remove: the connected client is closed and its next login refused.
  const closed3 = new Promise<void>((r) => c3.on("close", () => r()));
  const removed = await call(g.base, "DELETE", "/api/v1/admin/devices/devA");
  assertEquals(removed.status, 204);
  await within(closed3, 8000, "the removed device's close");
  const after = await device(g.mqttUrl, "devA", token2).then(
    (c) => (c.end(true), "accepted"),
    (e: Error & { code?: number }) => e.code,
  );
  assertEquals(after, 0x86, "a removed device cannot log in");
  assertEquals((await call(g.base, "DELETE", "/api/v1/admin/devices/devA")).status, 404);
  assertEquals(
    (await call(g.base, "POST", "/api/v1/admin/devices/devA/rotate", { body: {} })).status,
    404,
  );
  // The registry file says the same as `ferry device list` would.
  const file = JSON.parse(await Deno.readTextFile(`${g.gw.config.dataDir}/devices.json`));
  assertEquals(file.devices, []);
});

Deno.test("Admin API: the account's ACL decides what it sees and may do; no credentials 401; the CSRF guard refuses text/plain and other origins", async () => {
  await using g = await gateway({
    config: [{ id: "devA", token: "a" }, { id: "devB", token: "b" }],
  });
  const anon = await call(g.base, "GET", "/api/v1/admin/devices", { as: null });
  assertEquals(anon.status, 401);
  assert(anon.headers.get("www-authenticate")?.startsWith("Basic"));
  assertEquals(
    (await call(g.base, "GET", "/api/v1/admin/devices", { as: { name: "ops", token: "x" } }))
      .status,
    401,
  );

  // viewer may subscribe only under devices/devA/: it sees devA alone, and may change nothing.
  const list = await call(g.base, "GET", "/api/v1/admin/devices", { as: VIEWER });
  assertEquals((list.body!.items as Array<{ id: string }>).map((d) => d.id), ["devA"]);
  assertEquals(list.body!.total, 1);
  assertEquals(
    (await call(g.base, "GET", "/api/v1/admin/devices/devB", { as: VIEWER })).status,
    404,
  );
  const c = await within(device(g.mqttUrl, "devA", "a"), 8000, "login");
  let closed = false;
  c.on("close", () => closed = true);
  for (
    const [method, path, body] of [
      ["POST", "/api/v1/admin/devices", { id: "x1" }],
      ["POST", "/api/v1/admin/devices/devA/rotate", {}],
      ["POST", "/api/v1/admin/devices/devA/disconnect", {}],
      ["DELETE", "/api/v1/admin/devices/devA", undefined],
    ] as const
  ) {
    const r = await call(g.base, method, path, { as: VIEWER, body });
    assertEquals(r.status, 403, `${method} ${path}`);
  }
  // Devices from the config are not the registry file's to rotate or remove.
  assertEquals(
    (await call(g.base, "POST", "/api/v1/admin/devices/devB/rotate", { body: {} })).status,
    409,
  );

  // CSRF: a simple cross-site request (text/plain), and a JSON one from another origin.
  const plain = await call(g.base, "POST", "/api/v1/admin/devices/devA/disconnect", {
    body: {},
    headers: { "content-type": "text/plain" },
  });
  assertEquals(plain.status, 415);
  const foreign = await call(g.base, "POST", "/api/v1/admin/devices/devA/disconnect", {
    body: {},
    headers: { origin: "http://evil.example" },
  });
  assertEquals(foreign.status, 403);
  const del = await call(g.base, "DELETE", "/api/v1/admin/devices/devB", {
    headers: { origin: "http://evil.example" },
  });
  assertEquals(del.status, 403);
  // Still connected after all the refused calls.
  assertEquals(closed, false);
  assertEquals(c.connected, true);
  await c.endAsync();
});

Deno.test("Admin API at 2,500 devices: cursor pages walk every visible device once in id order; prefix, state and protocol filters; lastSeen sort puts the latest first", async () => {
  const ids = Array.from({ length: 2500 }, (_, i) => `dev-${String(i).padStart(5, "0")}`);
  await using g = await gateway({ config: ids.map((id) => ({ id, token: `t-${id}` })) });
  // Walk by pages of 700.
  const seen: string[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 10; pages++) {
    const q: string = cursor === null ? "" : `&cursor=${cursor}`;
    const p = await call(g.base, "GET", `/api/v1/admin/devices?limit=700${q}`);
    assertEquals(p.status, 200);
    assertEquals(p.body!.total, 2500);
    seen.push(...(p.body!.items as Array<{ id: string }>).map((d) => d.id));
    cursor = p.body!.nextCursor as string | null;
    if (cursor === null) break;
  }
  assertEquals(seen, ids, "every device once, in order");

  const prefixed = await call(g.base, "GET", "/api/v1/admin/devices?prefix=dev-0012&limit=1000");
  assertEquals(
    (prefixed.body!.items as Array<{ id: string }>).map((d) => d.id),
    ids.filter((id) => id.startsWith("dev-0012")),
  );
  const desc = await call(g.base, "GET", "/api/v1/admin/devices?order=desc&limit=2");
  assertEquals((desc.body!.items as Array<{ id: string }>).map((d) => d.id), [
    "dev-02499",
    "dev-02498",
  ]);

  // Two devices come online (dev-00007 last): state and protocol filters, lastSeen order.
  const a = await within(device(g.mqttUrl, "dev-01234", "t-dev-01234"), 8000, "login");
  await until(() => g.gw.core.registry.get("dev-01234")?.state === "online", "online", 8000);
  await new Promise((r) => setTimeout(r, 5)); // a later lastSeen (ms clock)
  const b = await within(device(g.mqttUrl, "dev-00007", "t-dev-00007"), 8000, "login");
  const online = await call(g.base, "GET", "/api/v1/admin/devices?state=online&protocol=mqtt");
  assertEquals(
    (online.body!.items as Array<{ id: string }>).map((d) => d.id),
    ["dev-00007", "dev-01234"],
  );
  const recent = await call(g.base, "GET", "/api/v1/admin/devices?sort=lastSeen&limit=1");
  assertEquals((recent.body!.items as Array<{ id: string }>).map((d) => d.id), ["dev-00007"]);
  const next = await call(
    g.base,
    "GET",
    `/api/v1/admin/devices?sort=lastSeen&limit=1&cursor=${recent.body!.nextCursor}`,
  );
  assertEquals((next.body!.items as Array<{ id: string }>).map((d) => d.id), ["dev-01234"]);
  const offline = await call(g.base, "GET", "/api/v1/admin/devices?state=offline&limit=1");
  assertEquals(offline.body!.total, 2498);

  for (
    const bad of ["limit=0", "limit=5000", "sort=name", "state=gone", "cursor=zz", "order=up"]
  ) {
    assertEquals(
      (await call(g.base, "GET", `/api/v1/admin/devices?${bad}`)).status,
      400,
      bad,
    );
  }
  await Promise.all([a.endAsync(), b.endAsync()]);
});

Deno.test("Admin API commands: one sent to an MQTT device arrives on its subscription; one for an offline HTTP device is listed as kept and is what its long-poll then gets; the ACL decides who may send and see them", async () => {
  await using g = await gateway({
    config: [{ id: "devA", token: "a" }, { id: "devB", token: "b" }],
  });
  const a = await within(device(g.mqttUrl, "devA", "a"), 8000, "login");
  await a.subscribeAsync("devices/devA/commands/#", { qos: 1 });
  const got = new Promise<[string, string]>((r) => a.on("message", (t, p) => r([t, p.toString()])));
  const sent = await call(g.base, "POST", "/api/v1/admin/devices/devA/commands/reboot", {
    body: { data: "now" },
  });
  assertEquals(sent.status, 202);
  assertEquals(sent.body!.topic, "devices/devA/commands/reboot");
  assertEquals(await within(got, 8000, "the command"), ["devices/devA/commands/reboot", "now"]);

  const kept = await call(g.base, "POST", "/api/v1/admin/devices/devB/commands/open", {
    body: { data: { pct: 50 }, contentType: "application/json" },
  });
  assertEquals([kept.status, kept.body!.pending], [202, 1]);
  const list = await call(g.base, "GET", "/api/v1/admin/devices/devB/commands");
  assertEquals(list.status, 200);
  const items = list.body!.items as Array<Record<string, unknown>>;
  assertEquals(
    items.map((c) => [c.name, c.payload, c.contentType, c.claimedBy]),
    [["open", '{"pct":50}', "application/json", null]],
  );
  // The HTTP device's long-poll gets exactly that command.
  const poll = await fetch(`${g.base}/api/v1/devices/devB/commands?timeout=5`, {
    headers: { authorization: "Bearer b" },
  });
  assertEquals(poll.status, 200);
  const { commands } = await poll.json();
  assertEquals(commands.map((c: { id: number; name: string }) => [c.id, c.name]), [
    [items[0].id, "open"],
  ]);

  // viewer (subscribe devices/devA/#, publish nothing) may neither send nor see devB's.
  assertEquals(
    (await call(g.base, "POST", "/api/v1/admin/devices/devA/commands/reboot", {
      as: VIEWER,
      body: { data: "x" },
    })).status,
    403,
  );
  assertEquals(
    (await call(g.base, "GET", "/api/v1/admin/devices/devB/commands", { as: VIEWER })).status,
    404,
  );
  assertEquals(
    (await call(g.base, "POST", "/api/v1/admin/devices/devA/commands/bad name", { body: {} }))
      .status,
    400,
  );
  await a.endAsync();
});

Deno.test("Admin API command acks: an MQTT device's and an HTTP device's acks of commands sent from the API are listed newest first with their protocol and payload; the ACL decides who sees them", async () => {
  await using g = await gateway({
    config: [{ id: "devA", token: "a" }, { id: "devB", token: "b" }],
  });
  const acksOf = async (id: string, as = OPS) =>
    await call(g.base, "GET", `/api/v1/admin/devices/${id}/acks`, { as });
  const listed = async (id: string, n: number) => {
    for (let i = 0; i < 400; i++) { // a failure deadline, not a speed claim
      const items = (await acksOf(id)).body!.items as Array<Record<string, unknown>>;
      if (items.length >= n) return items;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`${id}: fewer than ${n} acks listed`);
  };
  assertEquals((await acksOf("devA")).body, { items: [] });

  // devA (MQTT) acks each command it gets on its own ack topic, as MQTT devices do.
  const a = await within(device(g.mqttUrl, "devA", "a"), 8000, "login");
  await a.subscribeAsync("devices/devA/commands/#", { qos: 1 });
  a.on("message", (t) => {
    const name = t.split("/")[3];
    a.publish(`devices/devA/acks/${name}`, JSON.stringify({ status: "done", name }), { qos: 1 });
  });
  for (const name of ["reboot", "calibrate"]) {
    const sent = await call(g.base, "POST", `/api/v1/admin/devices/devA/commands/${name}`, {
      body: { data: "now" },
    });
    assertEquals(sent.status, 202);
    await listed("devA", name === "reboot" ? 1 : 2);
  }
  const itemsA = await listed("devA", 2);
  assertEquals(
    itemsA.map((i) => [i.name, i.topic, i.protocol, i.encoding, JSON.parse(String(i.payload))]),
    [
      ["calibrate", "devices/devA/acks/calibrate", "mqtt", "utf8", {
        status: "done",
        name: "calibrate",
      }],
      ["reboot", "devices/devA/acks/reboot", "mqtt", "utf8", { status: "done", name: "reboot" }],
    ],
  );

  // devB (HTTP) gets its command by long-poll and acks it through the device API.
  assertEquals(
    (await call(g.base, "POST", "/api/v1/admin/devices/devB/commands/open", {
      body: { data: "50" },
    })).status,
    202,
  );
  const poll = await fetch(`${g.base}/api/v1/devices/devB/commands?timeout=5`, {
    headers: { authorization: "Bearer b" },
  });
  const { commands } = await poll.json();
  const ack = await fetch(`${g.base}/api/v1/devices/devB/commands/open/ack`, {
    method: "POST",
    headers: { authorization: "Bearer b", "content-type": "application/json" },
    body: JSON.stringify({ status: "done", id: commands[0].id, result: { pct: 50 } }),
  });
  assertEquals(ack.status, 202);
  await ack.body?.cancel();
  const itemsB = await listed("devB", 1);
  assertEquals(itemsB.map((i) => [i.name, i.protocol]), [["open", "http"]]);
  assertEquals(JSON.parse(String(itemsB[0].payload)).result, { pct: 50 });
  // Nothing is left pending for devB: the ack took the command out of the store.
  assertEquals(
    ((await call(g.base, "GET", "/api/v1/admin/devices/devB/commands")).body!.items as unknown[])
      .length,
    0,
  );

  // viewer may read devA's (subscribe devices/devA/#) but not devB's.
  assertEquals(((await acksOf("devA", VIEWER)).body!.items as unknown[]).length, 2);
  assertEquals((await acksOf("devB", VIEWER)).status, 404);
  assertEquals(
    (await call(g.base, "POST", "/api/v1/admin/devices/devA/acks", { body: {} })).status,
    405,
  );
  await a.endAsync();
});

Deno.test("Admin API retained messages: listed by filter as the account may read them, cleared the MQTT way (a new subscriber then gets no retained message); the ACL guards both", async () => {
  await using g = await gateway({
    config: [{ id: "devA", token: "a" }, { id: "devB", token: "b" }],
  });
  for (const [id, token] of [["devA", "a"], ["devB", "b"]]) {
    const c = await within(device(g.mqttUrl, id, token), 8000, "login");
    await c.publishAsync(`devices/${id}/telemetry/temp`, `21-${id}`, { qos: 1, retain: true });
    await c.endAsync();
  }
  const list = await call(g.base, "GET", "/api/v1/admin/retained?filter=devices/%2B/telemetry/%23");
  assertEquals(list.status, 200);
  assertEquals(
    (list.body!.items as Array<{ topic: string; payload: string }>).map((
      m,
    ) => [m.topic, m.payload]),
    [["devices/devA/telemetry/temp", "21-devA"], ["devices/devB/telemetry/temp", "21-devB"]],
  );
  const paged = await call(
    g.base,
    "GET",
    "/api/v1/admin/retained?filter=devices/%2B/telemetry/%23&limit=1",
  );
  assertEquals(paged.body!.nextAfter, "devices/devA/telemetry/temp");
  // viewer reads only devA's, and may clear nothing.
  const seen = await call(g.base, "GET", "/api/v1/admin/retained?filter=%23", { as: VIEWER });
  assert(
    (seen.body!.items as Array<{ topic: string }>).every((m) =>
      m.topic.startsWith("devices/devA/")
    ),
  );
  const q = "/api/v1/admin/retained?topic=devices/devA/telemetry/temp";
  assertEquals((await call(g.base, "DELETE", q, { as: VIEWER })).status, 403);

  /** A fresh subscriber: the first message it gets on devA's telemetry. */
  const firstMessage = async () => {
    const sub = await within(
      mqtt.connectAsync(g.mqttUrl, {
        username: OPS.name,
        password: OPS.token,
        protocolVersion: 5,
        reconnectPeriod: 0,
      }, false),
      8000,
      "subscriber",
    );
    const first = new Promise<string>((r) => sub.on("message", (_t, p) => r(p.toString())));
    await sub.subscribeAsync("devices/devA/telemetry/#", { qos: 1 });
    const marker = await within(device(g.mqttUrl, "devA", "a"), 8000, "login");
    await marker.publishAsync("devices/devA/telemetry/marker", "marker", { qos: 1 });
    const text = await within(first, 8000, "a message");
    await Promise.all([sub.endAsync(), marker.endAsync()]);
    return text;
  };
  assertEquals(await firstMessage(), "21-devA", "the retained message comes first");
  assertEquals((await call(g.base, "DELETE", q)).status, 204);
  assertEquals(await firstMessage(), "marker", "no retained message any more");
  assertEquals((await call(g.base, "DELETE", q)).status, 404);
  assertEquals(
    (await call(g.base, "GET", "/api/v1/admin/retained?filter=devices/%23/x")).status,
    400,
  );
});

Deno.test("Admin API northbound (gateway process, mosquitto with a 20,000-byte packet limit): link and spool state; a message the upstream cannot take is listed as a dead letter, retried (the upstream refuses it again), deleted; the ACL guards it", async () => {
  await using broker = await startMosquitto({ extra: ["max_packet_size 20000"] });
  await using gw = await startFerry({
    auth: {
      services: [
        { ...OPS, publish: ["$ferry/admin/#"], subscribe: ["devices/#", "$ferry/admin/#"] },
        { ...VIEWER, publish: [], subscribe: ["devices/#"] },
      ],
    },
    northbound: {
      url: broker.url,
      gatewayId: "gw1",
      protocolVersion: 5,
      backoffBaseMs: 20,
      backoffCapMs: 100,
    },
  });
  const base = `http://127.0.0.1:${gw.addresses.http.port}`;
  await waitMetric(gw, (m) => m("ferry_northbound_connected") === 1, "the upstream link");
  const big = await FbpClient.connect({ port: gw.addresses.binary.port, id: "big" });
  assertEquals(await big.telemetry(enc("B".repeat(50_000)), { ack: true }), AckStatus.OK);
  await big.close();
  const dead = (n: number) =>
    waitMetric(
      gw,
      (m) => m('ferry_dead_letters_total{bridge="default",reason="too_large"}') === n,
      `dead letter #${n}`,
    );
  await dead(1);

  const state = await call(base, "GET", "/api/v1/admin/northbound");
  assertEquals(state.status, 200);
  const bridges = state.body!.bridges as Array<Record<string, unknown>>;
  assertEquals([bridges[0].name, bridges[0].state], ["default", "live"]);
  assertEquals((state.body!.spool as Record<string, number>).deadLetters, 1);
  const list = async () => {
    const r = await call(base, "GET", "/api/v1/admin/northbound/dead-letters?limit=10");
    assertEquals(r.status, 200);
    return r.body!.items as Array<Record<string, unknown>>;
  };
  const [letter] = await list();
  assertEquals(
    [letter.topic, letter.deviceId, letter.size, letter.reason],
    ["devices/big/telemetry", "big", 50_000, "too_large"],
  );

  // viewer may not read $ferry/admin/northbound; nobody without publish on it may change it.
  assertEquals((await call(base, "GET", "/api/v1/admin/northbound", { as: VIEWER })).status, 403);
  assertEquals(
    (await call(base, "POST", "/api/v1/admin/northbound/dead-letters/retry", {
      as: VIEWER,
      body: { ids: [letter.id] },
    })).status,
    403,
  );

  // Retry: back at the tail of the queue, sent again, refused again by the broker's limit.
  const retried = await call(base, "POST", "/api/v1/admin/northbound/dead-letters/retry", {
    body: { ids: [letter.id] },
  });
  assertEquals(retried.body, { retried: 1 });
  await dead(2);
  const again = await list();
  assertEquals(again.length, 1);
  const deleted = await call(base, "POST", "/api/v1/admin/northbound/dead-letters/delete", {
    body: { ids: [again[0].id] },
  });
  assertEquals(deleted.body, { deleted: 1 });
  assertEquals(await list(), []);
  assertEquals((await metrics(gw))("ferry_dead_letters"), 0);
  assertEquals(
    (await call(base, "POST", "/api/v1/admin/northbound/dead-letters/delete", {
      body: { ids: [] },
    }))
      .status,
    400,
  );
});

Deno.test("Admin API history: the charts' samples show MQTT traffic a real client sent (messages in per second, connections by protocol); since= returns only newer samples; an account without $SYS/# gets 403", async () => {
  await using g = await gateway({ config: [{ id: "devA", token: "a" }] });
  const c = await within(device(g.mqttUrl, "devA", "a"), 8000, "login");
  for (let i = 0; i < 20; i++) await c.publishAsync("devices/devA/telemetry/t", `${i}`, { qos: 1 });
  type Sample = {
    time: number;
    messagesIn: Record<string, number>;
    connections: Record<string, number>;
    spoolDepth: number | null;
  };
  let samples: Sample[] = [];
  for (let i = 0; i < 200 && !samples.some((s) => (s.messagesIn.mqtt ?? 0) > 0); i++) {
    const r = await call(g.base, "GET", "/api/v1/admin/history", { as: STATS });
    assertEquals(r.status, 200);
    assertEquals(r.body!.intervalMs, 100);
    samples = r.body!.samples as Sample[];
    await new Promise((res) => setTimeout(res, 50));
  }
  const busy = samples.find((s) => (s.messagesIn.mqtt ?? 0) > 0);
  assert(busy, "a sample with the MQTT messages");
  assertEquals(busy.connections.mqtt, 1);
  assertEquals(busy.spoolDepth, null, "no northbound");
  await c.endAsync();

  const last = samples[samples.length - 1].time;
  const newer = await call(g.base, "GET", `/api/v1/admin/history?since=${last}`, { as: STATS });
  assert((newer.body!.samples as Sample[]).every((s) => s.time > last));
  assertEquals(
    (await call(g.base, "GET", "/api/v1/admin/history?since=-1", { as: STATS })).status,
    400,
  );
  // ops manages devices but may not read $SYS/#; no credentials: 401.
  const refused = await call(g.base, "GET", "/api/v1/admin/history");
  assertEquals(refused.status, 403);
  assert(String(refused.body!.error).includes("$SYS/#"));
  assertEquals((await call(g.base, "GET", "/api/v1/admin/history", { as: null })).status, 401);
});

Deno.test("OpenAPI document: valid OpenAPI 3.1 (npm @seriousme/openapi-schema-validator), and every management route in it was exercised above; the device API's routes are the ones its tests exercise", async () => {
  await using g = await gateway();
  const res = await fetch(`${g.base}/api/v1/openapi.json`);
  assertEquals(res.status, 200);
  const doc = await res.json();
  exercised.add("get /api/v1/openapi.json");
  const validator = new OpenApiValidator();
  const result = await validator.validate(doc);
  assertEquals(result, { valid: true });
  assertEquals(validator.version, "3.1");

  const operations: string[] = [];
  for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
    for (const method of Object.keys(item)) {
      if (["get", "post", "put", "delete", "patch", "head"].includes(method)) {
        operations.push(`${method} ${path}`);
      }
    }
  }
  // Accounts, sessions and subscriptions: exercised by tests/http_admin_sessions_test.ts; the
  // rules routes by tests/rules_admin_test.ts.
  const admin = operations.filter((o) =>
    o.includes("/api/v1/admin/") &&
    !/\/api\/v1\/admin\/(accounts|sessions|subscriptions|rules)/.test(o)
  );
  assertEquals(admin.length, 16);
  for (const op of admin) assert(exercised.has(op), `${op} is in the document but not exercised`);
  // The device API's own routes: tests/http_api_*_test.ts exercise each (http_api_openapi_test
  // checks the document lists exactly these).
  assertEquals(operations.filter((o) => !o.includes("/api/v1/admin/")).sort(), [
    "get /api/v1/devices/{id}/commands",
    "get /api/v1/openapi.json",
    "post /api/v1/devices/{id}/commands/{name}/ack",
    "post /api/v1/devices/{id}/telemetry",
    "post /api/v1/devices/{id}/telemetry/{channel}",
  ]);
});
