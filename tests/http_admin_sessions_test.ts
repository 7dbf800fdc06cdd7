/**
 * The management API's service accounts, client sessions, subscriptions and device detail, on a
 * real gateway process (`main.ts`) over real sockets, with MQTT.js and an FBP/1 client as peers:
 * what a client sees when an account is added or removed (over the API or by `ferry account
 * add`), when its session is dropped or it is kicked; the ACL and CSRF rules of each route; and
 * every route of these in the OpenAPI document, which still validates.
 */

import { mqtt, OpenApiValidator } from "./_dev_deps.ts";
import type { MqttClient } from "./_dev_deps.ts";
import { assert, assertEquals } from "./_assert.ts";
import { until, within } from "./_mqtt_harness.ts";
import { startFerry, stopFerry } from "./_ferry_process.ts";
import { runMain } from "./_process.ts";
import { runCoapClient } from "./_coap_harness.ts";
import { FbpClient } from "../src/protocols/binary/client.ts";

const OPS = { name: "ops", token: "ops-token" };
const VIEWER = { name: "viewer", token: "viewer-token" };

/** Every (method, route template) called here: the OpenAPI test checks them off. */
const exercised = new Set<string>();

function config(o: { binary?: boolean; coap?: boolean } = {}) {
  return {
    binary: { enabled: o.binary ?? false },
    coap: { enabled: o.coap ?? false },
    http: { loginLink: false },
    mqtt: { websocket: { enabled: false } },
    auth: {
      anonymous: false,
      devices: [{ id: "devA", token: "a" }, { id: "devB", token: "b" }],
      services: [
        {
          ...OPS,
          publish: ["$ferry/admin/#", "devices/#"],
          subscribe: ["$ferry/admin/#", "devices/#"],
        },
        // Sees devices, manages nothing: no $ferry/admin/ grant.
        { ...VIEWER, publish: ["devices/#"], subscribe: ["devices/#"] },
      ],
    },
  };
}

async function gateway(o: { binary?: boolean; coap?: boolean } = {}) {
  const dir = await Deno.makeTempDir({ prefix: "ferry-admin-" });
  const proc = await startFerry(config(o), dir);
  const a = proc.addresses;
  return {
    proc,
    dir,
    base: `http://127.0.0.1:${a.http.port}`,
    mqttUrl: `mqtt://127.0.0.1:${a.mqtt.port}`,
    binaryPort: a.binary?.port,
    coapPort: a.coap?.port,
    async [Symbol.asyncDispose]() {
      await proc[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

function template(path: string): string {
  return path.split("?")[0]
    .replace(/^\/api\/v1\/admin\/devices\/[^/]+$/, "/api/v1/admin/devices/{id}")
    .replace(/^\/api\/v1\/admin\/accounts\/[^/]+$/, "/api/v1/admin/accounts/{name}")
    .replace(/^\/api\/v1\/admin\/sessions\/[^/]+$/, "/api/v1/admin/sessions/{clientId}");
}

/** One call as `as` (default: ops); records its route template for the OpenAPI check. */
async function call(
  base: string,
  method: string,
  path: string,
  o: { as?: { name: string; token: string } | null; body?: unknown; headers?: HeadersInit } = {},
  // deno-lint-ignore no-explicit-any
): Promise<{ status: number; body: any; headers: Headers }> {
  const headers = new Headers(o.headers);
  if (o.as !== null) {
    headers.set("authorization", `Basic ${btoa(`${(o.as ?? OPS).name}:${(o.as ?? OPS).token}`)}`);
  }
  if (o.body !== undefined && !headers.has("content-type")) {
    headers.set("content-type", "application/json");
  }
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    body: o.body === undefined ? undefined : JSON.stringify(o.body),
  });
  const text = await res.text();
  exercised.add(`${method.toLowerCase()} ${template(path)}`);
  return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
}

function connect(url: string, opts: Record<string, unknown>): Promise<MqttClient> {
  return within(
    mqtt.connectAsync(url, {
      protocolVersion: 5,
      reconnectPeriod: 0,
      connectTimeout: 8000,
      ...opts,
    }, false),
    10_000,
    `connect ${opts.clientId}`,
  );
}

/** Connects and resolves with the CONNACK's Session Present flag. */
async function connectPresent(
  url: string,
  opts: Record<string, unknown>,
): Promise<{ c: MqttClient; present: boolean }> {
  const c = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 0, ...opts });
  const present = await within(
    new Promise<boolean>((resolve, reject) => {
      c.once("connect", (ack) => resolve(ack.sessionPresent));
      c.once("error", reject);
    }),
    10_000,
    `connect ${opts.clientId}`,
  );
  return { c, present };
}

/** The SUBACK's reason codes (granted QoS, or 0x87 refused) for `filters`. */
async function subscribeCodes(c: MqttClient, filters: string[], qos: 0 | 1): Promise<number[]> {
  try {
    return (await c.subscribeAsync(filters, { qos })).map((g) => g.qos);
  } catch (err) {
    const packet = (err as { packet?: { granted?: Array<number | { qos: number }> } }).packet;
    if (!packet?.granted) throw err;
    return packet.granted.map((g) => typeof g === "number" ? g : g.qos);
  }
}

/** Resolves when `c`'s socket closes; with the DISCONNECT reason code it got first, if any. */
function closed(c: MqttClient): Promise<number | undefined> {
  let reason: number | undefined;
  c.on("disconnect", (p) => reason = p.reasonCode);
  return new Promise((r) => c.once("close", () => r(reason)));
}

Deno.test("Admin API accounts (gateway process): an account added over the API, and one added by `ferry account add`, log in over MQTT with their ACL enforced; list shows both; remove closes the account's connection and refuses its next login", async () => {
  await using g = await gateway();
  const added = await call(g.base, "POST", "/api/v1/admin/accounts", {
    body: { name: "watcher", publish: [], subscribe: ["devices/+/telemetry/#"] },
  });
  assertEquals(added.status, 201, JSON.stringify(added.body));
  assertEquals(added.headers.get("location"), "/api/v1/admin/accounts/watcher");
  const token = added.body.token as string;
  assert(token.length >= 32);
  const file = await Deno.readTextFile(`${g.dir}/devices.json`);
  assert(!file.includes(token) && file.includes("sha256:"), "the token was stored in clear");
  assertEquals((await Deno.stat(`${g.dir}/devices.json`)).mode! & 0o777, 0o600);
  assertEquals(
    (await call(g.base, "POST", "/api/v1/admin/accounts", { body: { name: "watcher" } })).status,
    409,
  );
  assertEquals(
    (await call(g.base, "POST", "/api/v1/admin/accounts", { body: { name: "ops" } })).status,
    409,
  );
  // A device's id: a login with it is the device's, so the account could never log in.
  assertEquals(
    (await call(g.base, "POST", "/api/v1/admin/accounts", { body: { name: "devA" } })).status,
    409,
  );

  // It logs in over MQTT; its subscribe ACL is the one given: granted under devices/+/telemetry/,
  // refused (0x87) elsewhere, and it may publish nothing.
  const w = await connect(g.mqttUrl, { clientId: "w1", username: "watcher", password: token });
  const granted = await subscribeCodes(w, ["devices/+/telemetry/#", "devices/+/commands/#"], 1);
  assertEquals(granted, [1, 135]);
  const got: string[] = [];
  w.on("message", (t) => got.push(t));
  const d = await connect(g.mqttUrl, { clientId: "devA", username: "devA", password: "a" });
  await d.publishAsync("devices/devA/telemetry/t", "21", { qos: 1 });
  await until(() => got.includes("devices/devA/telemetry/t"), "watcher got the telemetry");
  const refusedPub = await w.publishAsync("devices/devA/commands/x", "1", { qos: 1 })
    .then((p) => (p as { reasonCode?: number } | undefined)?.reasonCode, (e) => e.code ?? -1);
  assertEquals(refusedPub, 135);

  // `ferry account add` on the same data dir: the running gateway picks it up (file watch).
  const cli = await runMain([
    "account",
    "add",
    "tool",
    "--publish",
    "devices/+/commands/#",
    "--subscribe",
    "devices/devA/#",
    "--data-dir",
    g.dir,
  ]);
  assertEquals(cli.code, 0, cli.stderr);
  const toolToken = cli.stdout.trim();
  assert(!cli.stderr.includes(toolToken), "the token went to stderr");
  let tool: MqttClient | undefined;
  for (let i = 0; i < 200 && !tool; i++) {
    tool = await connect(g.mqttUrl, { clientId: "t1", username: "tool", password: toolToken })
      .catch(() => undefined);
    if (!tool) await new Promise((r) => setTimeout(r, 50));
  }
  assert(tool, "the account added by the CLI never logged in");
  const dGot: string[] = [];
  await d.subscribeAsync("devices/devA/commands/#", { qos: 1 });
  d.on("message", (t) => dGot.push(t));
  await tool.publishAsync("devices/devA/commands/reboot", "{}", { qos: 1 });
  await until(() => dGot.includes("devices/devA/commands/reboot"), "the device got the command");
  assertEquals(await subscribeCodes(tool, ["devices/devB/#"], 0), [135]);

  // Both listed with their ACLs and where they live.
  const list = await call(g.base, "GET", "/api/v1/admin/accounts");
  assertEquals(list.status, 200);
  const byName = new Map(
    (list.body.items as Array<{ name: string; source: string; updated: string }>).map((
      a,
    ) => [a.name, a]),
  );
  assertEquals([...byName.keys()], ["ops", "tool", "viewer", "watcher"]);
  assertEquals(byName.get("watcher"), {
    name: "watcher",
    publish: [],
    subscribe: ["devices/+/telemetry/#"],
    source: "file",
    updated: byName.get("watcher")!.updated,
  });
  assertEquals(byName.get("ops")!.source, "config");
  const cliList = await runMain(["account", "list", "--data-dir", g.dir]);
  assert(
    cliList.stdout.includes("tool\tfile\tpublish=devices/+/commands/#\tsubscribe=devices/devA/#"),
    cliList.stdout,
  );

  // Removing an account closes its connection at once and refuses its next login.
  const wClosed = closed(w);
  assertEquals((await call(g.base, "DELETE", "/api/v1/admin/accounts/watcher")).status, 204);
  await within(wClosed, 10_000, "the removed account's connection closed");
  const again = await connect(g.mqttUrl, { clientId: "w2", username: "watcher", password: token })
    .then(() => "connected", (e) => String(e.code ?? e.message));
  assertEquals(again, "134"); // Bad User Name or Password
  assertEquals((await call(g.base, "DELETE", "/api/v1/admin/accounts/watcher")).status, 404);
  assertEquals((await call(g.base, "DELETE", "/api/v1/admin/accounts/ops")).status, 409);
  // `ferry account remove` closes the CLI's account the same way.
  const toolClosed = closed(tool);
  assertEquals((await runMain(["account", "remove", "tool", "--data-dir", g.dir])).code, 0);
  await within(toolClosed, 10_000, "the CLI-removed account's connection closed");
  await d.endAsync();
});

Deno.test("Admin API accounts: refused without the right (403), beyond the caller's own ACL (403, no escalation), across origins or as text/plain (CSRF), without credentials (401)", async () => {
  await using g = await gateway();
  for (
    const [method, path, body] of [
      ["GET", "/api/v1/admin/accounts", undefined],
      ["POST", "/api/v1/admin/accounts", { name: "x1", subscribe: ["devices/#"] }],
      ["DELETE", "/api/v1/admin/accounts/ops", undefined],
    ] as const
  ) {
    const r = await call(g.base, method, path, { as: VIEWER, body });
    assertEquals(r.status, 403, `${method} ${path}`);
  }
  assertEquals((await call(g.base, "GET", "/api/v1/admin/accounts", { as: null })).status, 401);
  // A manager of accounts that may subscribe only under devices/ cannot grant $SYS/#.
  const mgr = await call(g.base, "POST", "/api/v1/admin/accounts", {
    body: { name: "mgr", publish: ["$ferry/admin/accounts/#"], subscribe: ["devices/#"] },
  });
  assertEquals(mgr.status, 201);
  const MGR = { name: "mgr", token: mgr.body.token };
  // (the registry reloads before the answer: the new account works at once)
  const esc = await call(g.base, "POST", "/api/v1/admin/accounts", {
    as: MGR,
    body: { name: "evil", subscribe: ["$SYS/#"] },
  });
  assertEquals(esc.status, 403);
  assert(esc.body.error.includes("subscribe $SYS/#"), esc.body.error);
  const esc2 = await call(g.base, "POST", "/api/v1/admin/accounts", {
    as: MGR,
    body: { name: "evil", publish: ["#"] },
  });
  assertEquals(esc2.status, 403);
  const fine = await call(g.base, "POST", "/api/v1/admin/accounts", {
    as: MGR,
    body: { name: "sub1", subscribe: ["devices/devA/#"] },
  });
  assertEquals(fine.status, 201);
  // Bad input.
  for (
    const body of [
      { name: "bad name" },
      { name: "n1", subscribe: "devices/#" },
      { name: "n1", subscribe: ["a/#/b"] },
    ]
  ) {
    const r = await call(g.base, "POST", "/api/v1/admin/accounts", { body });
    assertEquals(r.status, 400, JSON.stringify(body));
  }
  // CSRF: text/plain, and a JSON call from another origin; DELETE from another origin.
  const plain = await call(g.base, "POST", "/api/v1/admin/accounts", {
    body: { name: "csrf1" },
    headers: { "content-type": "text/plain" },
  });
  assertEquals(plain.status, 415);
  const foreign = await call(g.base, "POST", "/api/v1/admin/accounts", {
    body: { name: "csrf2" },
    headers: { origin: "http://evil.example" },
  });
  assertEquals(foreign.status, 403);
  const del = await call(g.base, "DELETE", "/api/v1/admin/accounts/sub1", {
    headers: { origin: "http://evil.example" },
  });
  assertEquals(del.status, 403);
  const names = (await call(g.base, "GET", "/api/v1/admin/accounts")).body.items
    .map((a: { name: string }) => a.name);
  assertEquals(names, ["mgr", "ops", "sub1", "viewer"]);
});

Deno.test("Admin API sessions (gateway process): detail of a persisted MQTT session (clean start, expiry, subscriptions with QoS, queued messages); dropping it makes the next connect report sessionPresent=false; dropping a connected one kicks the client (DISCONNECT 0x98, socket closed)", async () => {
  await using g = await gateway();
  const opts = {
    clientId: "devA",
    username: "devA",
    password: "a",
    clean: false,
    keepalive: 45,
    properties: { sessionExpiryInterval: 3600 },
  };
  const first = await connectPresent(g.mqttUrl, opts);
  assertEquals(first.present, false);
  await first.c.subscribeAsync("devices/devA/commands/#", { qos: 1 });
  await first.c.subscribeAsync("devices/devA/telemetry/+", { qos: 0 });

  const live = await call(g.base, "GET", "/api/v1/admin/sessions/devA");
  assertEquals(live.status, 200);
  const s = live.body;
  assertEquals(
    [s.clientId, s.protocol, s.connected, s.deviceId, s.owner, s.cleanStart, s.expirySec],
    ["devA", "mqtt", true, "devA", "device:devA", false, 3600],
  );
  assertEquals(s.subscriptions, [
    { filter: "devices/devA/commands/#", qos: 1 },
    { filter: "devices/devA/telemetry/+", qos: 0 },
  ]);
  assertEquals(s.subscriptionCount, 2);
  const local = (first.c.stream as unknown as { localPort: number }).localPort;
  assertEquals(s.connection.remoteAddress, `127.0.0.1:${local}`);
  assertEquals([s.connection.protocolVersion, s.connection.keepAliveSec], ["5", 45]);
  assert(Math.abs(s.connection.connectedAt - Date.now()) < 60_000);

  // Offline: a command published for it is queued in the session.
  await first.c.endAsync();
  const sent = await call(g.base, "POST", "/api/v1/admin/devices/devA/commands/reboot", {
    body: { data: "now" },
  });
  assertEquals(sent.status, 202);
  let off = await call(g.base, "GET", "/api/v1/admin/sessions/devA");
  for (let i = 0; i < 200 && (off.body.connected || off.body.queued !== 1); i++) {
    await new Promise((r) => setTimeout(r, 25));
    off = await call(g.base, "GET", "/api/v1/admin/sessions/devA");
  }
  assertEquals([off.body.connected, off.body.queued, off.body.connection], [false, 1, null]);
  assert(off.body.expiresAt > Date.now() + 3_000_000, `expiresAt ${off.body.expiresAt}`);
  const offList = await call(g.base, "GET", "/api/v1/admin/sessions?connected=false");
  assertEquals(offList.body.items.map((x: { clientId: string }) => x.clientId), ["devA"]);

  // Dropped while offline: the next connect finds no session (and no queued command).
  const drop = await call(g.base, "DELETE", "/api/v1/admin/sessions/devA");
  assertEquals(drop.status, 200);
  assertEquals(drop.body, { clientId: "devA", protocol: "mqtt", dropped: true, kicked: false });
  assertEquals((await call(g.base, "GET", "/api/v1/admin/sessions/devA")).status, 404);
  const second = await connectPresent(g.mqttUrl, opts);
  assertEquals(second.present, false);
  const got: string[] = [];
  second.c.on("message", (t) => got.push(t));
  await second.c.subscribeAsync("devices/devA/commands/#", { qos: 1 });

  // Dropped while connected: the client is told (0x98 Administrative action) and closed; its
  // reconnect finds no session.
  const kicked = closed(second.c);
  const drop2 = await call(g.base, "DELETE", "/api/v1/admin/sessions/devA");
  assertEquals(drop2.body.kicked, true);
  assertEquals(await within(kicked, 10_000, "kicked client closed"), 0x98);
  assertEquals(got, []); // the dropped queue was never delivered
  const third = await connectPresent(g.mqttUrl, opts);
  assertEquals(third.present, false);
  await third.c.endAsync();
  assertEquals((await call(g.base, "DELETE", "/api/v1/admin/sessions/nobody")).status, 404);
});

Deno.test("Admin API sessions across restarts: a persisted session restored from the state file is listed (offline, its subscriptions kept); dropped, it stays gone after the next restart (sessionPresent=false)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ferry-admin-" });
  try {
    const opts = {
      clientId: "devA",
      username: "devA",
      password: "a",
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
    };
    {
      await using p = await startFerry(config(), dir);
      const { c } = await connectPresent(`mqtt://127.0.0.1:${p.addresses.mqtt.port}`, opts);
      await c.subscribeAsync("devices/devA/commands/#", { qos: 1 });
      await c.endAsync();
      assertEquals((await stopFerry(p)).code, 0); // graceful: the session is on disk
    }
    {
      await using p = await startFerry(config(), dir);
      const base = `http://127.0.0.1:${p.addresses.http.port}`;
      const s = await call(base, "GET", "/api/v1/admin/sessions/devA");
      assertEquals(s.status, 200);
      assertEquals(
        [s.body.connected, s.body.cleanStart, s.body.expirySec, s.body.subscriptions],
        [false, null, 3600, [{ filter: "devices/devA/commands/#", qos: 1 }]],
      );
      assertEquals((await call(base, "DELETE", "/api/v1/admin/sessions/devA")).body.kicked, false);
      // Killed right after the answer (SIGKILL, by the disposal): the drop was durable already.
    }
    {
      await using p = await startFerry(config(), dir);
      const base = `http://127.0.0.1:${p.addresses.http.port}`;
      const after = await call(base, "GET", "/api/v1/admin/sessions");
      assertEquals(after.body.total, 0, JSON.stringify(after.body));
      const { c, present } = await connectPresent(
        `mqtt://127.0.0.1:${p.addresses.mqtt.port}`,
        opts,
      );
      assertEquals(present, false);
      await c.endAsync();
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("Admin API sessions and subscriptions: cursor pages walk every session and subscription once in order; filters by prefix, state, client id and topic; the ACL and CSRF guard them", async () => {
  await using g = await gateway();
  const clients: MqttClient[] = [];
  for (let i = 0; i < 7; i++) {
    const c = await connect(g.mqttUrl, {
      clientId: `ops-${i}`,
      username: "ops",
      password: OPS.token,
      clean: false,
      properties: { sessionExpiryInterval: 600 },
    });
    await c.subscribeAsync([`devices/d${i}/#`, "devices/+/status"], { qos: i % 2 === 0 ? 0 : 1 });
    clients.push(c);
  }
  await clients[6].endAsync(); // one offline, persisted
  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const q: string = cursor ? `&cursor=${cursor}` : "";
    const page = await call(g.base, "GET", `/api/v1/admin/sessions?limit=3&prefix=ops-${q}`);
    assertEquals(page.status, 200);
    assertEquals(page.body.total, 7);
    seen.push(...page.body.items.map((x: { clientId: string }) => x.clientId));
    cursor = page.body.nextCursor;
    pages++;
  } while (cursor && pages < 10);
  assertEquals(seen, [0, 1, 2, 3, 4, 5, 6].map((i) => `ops-${i}`));
  assertEquals(pages, 3);
  const online = await call(g.base, "GET", "/api/v1/admin/sessions?connected=true&protocol=mqtt");
  assertEquals(online.body.total, 6);
  assertEquals(
    (await call(g.base, "GET", "/api/v1/admin/sessions?protocol=coap")).body.total,
    0,
  );

  const subs: Array<{ clientId: string; filter: string; qos: number }> = [];
  cursor = null;
  pages = 0;
  do {
    const q: string = cursor ? `&cursor=${cursor}` : "";
    const page = await call(g.base, "GET", `/api/v1/admin/subscriptions?limit=5${q}`);
    assertEquals(page.body.total, 14);
    subs.push(...page.body.items);
    cursor = page.body.nextCursor;
    pages++;
  } while (cursor && pages < 10);
  assertEquals(subs.length, 14);
  assertEquals(subs[0], {
    protocol: "mqtt",
    clientId: "ops-0",
    filter: "devices/+/status",
    qos: 0,
  });
  assertEquals(subs[3].qos, 1);
  const who = await call(g.base, "GET", "/api/v1/admin/subscriptions?topic=devices/d3/telemetry");
  assertEquals(who.body.items.map((x: { clientId: string }) => x.clientId), ["ops-3"]);
  // The topic filter pages too: devices/+/status of each session matches, devices/dN/# only one.
  const status: string[] = [];
  cursor = null;
  pages = 0;
  do {
    const q: string = cursor ? `&cursor=${cursor}` : "";
    const page = await call(
      g.base,
      "GET",
      `/api/v1/admin/subscriptions?limit=3&topic=devices/d2/status${q}`,
    );
    assertEquals(page.body.total, 8);
    status.push(
      ...page.body.items.map((x: { clientId: string; filter: string }) =>
        `${x.clientId} ${x.filter}`
      ),
    );
    cursor = page.body.nextCursor;
    pages++;
  } while (cursor && pages < 10);
  assertEquals(status, [
    "ops-0 devices/+/status",
    "ops-1 devices/+/status",
    "ops-2 devices/+/status",
    "ops-2 devices/d2/#",
    "ops-3 devices/+/status",
    "ops-4 devices/+/status",
    "ops-5 devices/+/status",
    "ops-6 devices/+/status",
  ]);
  // A `$` topic is matched by no first-level wildcard.
  const sys = await call(g.base, "GET", "/api/v1/admin/subscriptions?topic=$SYS/broker/uptime");
  assertEquals(sys.body.total, 0);
  const one = await call(g.base, "GET", "/api/v1/admin/subscriptions?clientId=ops-6");
  assertEquals(one.body.items.map((x: { filter: string }) => x.filter), [
    "devices/+/status",
    "devices/d6/#",
  ]);
  assertEquals((await call(g.base, "GET", "/api/v1/admin/sessions?cursor=zz")).status, 400);
  assertEquals((await call(g.base, "GET", "/api/v1/admin/sessions?limit=0")).status, 400);

  // viewer may read devices but not sessions; nor drop one. CSRF rules as every change.
  for (
    const [method, path] of [
      ["GET", "/api/v1/admin/sessions"],
      ["GET", "/api/v1/admin/sessions/ops-1"],
      ["GET", "/api/v1/admin/subscriptions"],
      ["DELETE", "/api/v1/admin/sessions/ops-1"],
    ] as const
  ) {
    assertEquals((await call(g.base, method, path, { as: VIEWER })).status, 403, path);
  }
  const foreign = await call(g.base, "DELETE", "/api/v1/admin/sessions/ops-1", {
    headers: { origin: "http://evil.example" },
  });
  assertEquals(foreign.status, 403);
  assertEquals((await call(g.base, "GET", "/api/v1/admin/sessions", { as: null })).status, 401);
  // Nothing was dropped by the refused calls.
  assertEquals(clients[1].connected, true);
  assertEquals((await call(g.base, "GET", "/api/v1/admin/sessions/ops-1")).body.connected, true);
  for (const c of clients.slice(0, 6)) await c.endAsync();
});

Deno.test("Admin API device detail: remote address, protocol version, keepalive, connected since, subscriptions for MQTT 5, MQTT 3.1.1 and FBP/1 devices; the last request's address for CoAP and HTTP devices; counters and pending commands", async () => {
  await using g = await gateway({ binary: true, coap: true });
  const v5 = await connect(g.mqttUrl, {
    clientId: "devA",
    username: "devA",
    password: "a",
    keepalive: 20,
  });
  await v5.subscribeAsync("devices/devA/commands/#", { qos: 1 });
  await v5.publishAsync("devices/devA/telemetry", "1", { qos: 1 });
  const a = (await call(g.base, "GET", "/api/v1/admin/devices/devA")).body;
  assertEquals([a.connected, a.protocol, a.messagesIn], [true, "mqtt", 1]);
  const local = (v5.stream as unknown as { localPort: number }).localPort;
  assertEquals(a.session.remoteAddress, `127.0.0.1:${local}`);
  assertEquals(a.remoteAddress, `127.0.0.1:${local}`);
  assertEquals(
    [a.session.protocolVersion, a.session.keepAliveSec, a.session.clientId],
    ["5", 20, "devA"],
  );
  assertEquals(a.session.subscriptions, [{ filter: "devices/devA/commands/#", qos: 1 }]);
  assert(Math.abs(a.session.connectedAt - Date.now()) < 60_000);
  assertEquals(a.pendingCommands, 0);
  await v5.endAsync();

  const v4 = await connect(g.mqttUrl, {
    clientId: "devA",
    username: "devA",
    password: "a",
    protocolVersion: 4,
    keepalive: 0,
  });
  const b = (await call(g.base, "GET", "/api/v1/admin/devices/devA")).body;
  assertEquals([b.session.protocolVersion, b.session.keepAliveSec], ["3.1.1", 0]);
  await v4.endAsync();

  // FBP/1: a version, a keepalive, no subscriptions; a command kept while it was offline counts.
  await call(g.base, "POST", "/api/v1/admin/devices/devB/commands/led", { body: { data: "on" } });
  assertEquals((await call(g.base, "GET", "/api/v1/admin/devices/devB")).body.pendingCommands, 1);
  const fbp = await FbpClient.connect({
    port: g.binaryPort!,
    id: "devB",
    token: "b",
    keepAlive: 25,
  });
  const c = (await call(g.base, "GET", "/api/v1/admin/devices/devB")).body;
  assertEquals([c.connected, c.protocol], [true, "binary"]);
  assertEquals(
    [c.session.protocolVersion, c.session.keepAliveSec, c.session.subscriptions],
    ["1", 25, null],
  );
  assert(/^127\.0\.0\.1:\d+$/.test(c.session.remoteAddress), c.session.remoteAddress);
  await fbp.close();

  // Sessionless: a CoAP request (libcoap's coap-client), then an HTTP one; the detail has no
  // session but says where the last request came from.
  const coap = await runCoapClient([
    "-B",
    "5",
    "-m",
    "post",
    "-e",
    "20",
    `coap://127.0.0.1:${g.coapPort}/d/devA/telemetry/t?token=a`,
  ]);
  assertEquals(coap.code, 0, coap.stderr);
  const viaCoap = (await call(g.base, "GET", "/api/v1/admin/devices/devA")).body;
  assertEquals([viaCoap.protocol, viaCoap.connected, viaCoap.session], ["coap", false, null]);
  assert(/^127\.0\.0\.1:\d+$/.test(viaCoap.remoteAddress), viaCoap.remoteAddress);
  const post = await fetch(`${g.base}/api/v1/devices/devA/telemetry`, {
    method: "POST",
    headers: { authorization: "Bearer a", "content-type": "application/json" },
    body: "21",
  });
  assertEquals(post.status < 300, true, String(post.status));
  await post.body?.cancel();
  const viaHttp = (await call(g.base, "GET", "/api/v1/admin/devices/devA")).body;
  assertEquals([viaHttp.protocol, viaHttp.remoteAddress], ["http", "127.0.0.1"]);
});

Deno.test("OpenAPI document with the accounts, sessions and subscriptions routes: still valid OpenAPI 3.1, and each of those routes was exercised above", async () => {
  await using g = await gateway();
  const res = await fetch(`${g.base}/api/v1/openapi.json`);
  assertEquals(res.status, 200);
  const doc = await res.json();
  const validator = new OpenApiValidator();
  assertEquals(await validator.validate(doc), { valid: true });
  const mine: string[] = [];
  for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
    if (!/^\/api\/v1\/admin\/(accounts|sessions|subscriptions)/.test(path)) continue;
    for (const method of Object.keys(item)) {
      if (["get", "post", "put", "delete", "patch"].includes(method)) {
        mine.push(`${method} ${path}`);
      }
    }
  }
  assertEquals(mine.sort(), [
    "delete /api/v1/admin/accounts/{name}",
    "delete /api/v1/admin/sessions/{clientId}",
    "get /api/v1/admin/accounts",
    "get /api/v1/admin/sessions",
    "get /api/v1/admin/sessions/{clientId}",
    "get /api/v1/admin/subscriptions",
    "post /api/v1/admin/accounts",
  ]);
  for (const op of mine) assert(exercised.has(op), `${op} is in the document but not exercised`);
  // The device detail's session fields are in its schema.
  const detail = doc.components.schemas.DeviceDetail.properties.session.oneOf[1];
  for (const f of ["remoteAddress", "protocolVersion", "keepAliveSec", "connectedAt"]) {
    assert(detail.required.includes(f), f);
  }
});
