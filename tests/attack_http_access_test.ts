/**
 * Attacks on who may do what over HTTP, against a real gateway process (issue #13 items 2, 3, 11
 * and 19): the dashboard judged by the account's ACL, CSRF, the login on loopback, DNS
 * rebinding, a malformed Host, and who may read the metrics.
 */

import { assert, assertEquals } from "./_assert.ts";
import {
  attackGateway,
  closeQuietly,
  jsonInit,
  rawExchange,
  statusOf,
  wholeResponse,
} from "./_attack_http.ts";

const DEVICES = [{ id: "devA", token: "token-a" }, { id: "devB", token: "token-b" }];
const SERVICES = [
  // May see devA's telemetry, publish nothing.
  { name: "watcher", token: "watcher-token", subscribe: ["devices/devA/telemetry/#"], publish: [] },
  { name: "ops", token: "ops-token", subscribe: ["devices/#"], publish: ["devices/+/commands/#"] },
  { name: "monitor", token: "monitor-token", subscribe: ["$SYS/#"], publish: [] },
];

function basic(name: string, token: string): Record<string, string> {
  return { authorization: `Basic ${btoa(`${name}:${token}`)}` };
}

async function login(base: string, name: string, token: string): Promise<string> {
  const r = await fetch(`${base}/dashboard/login`, jsonInit("POST", { name, token }));
  assertEquals(r.status, 204, `login of ${name}`);
  await r.body?.cancel();
  const c = r.headers.get("set-cookie")!;
  assert(/HttpOnly/.test(c) && /SameSite=Strict/.test(c), c);
  return c.split(";")[0];
}

async function telemetry(base: string, id: string, token: string, body: string): Promise<void> {
  const r = await fetch(`${base}/api/v1/devices/${id}/telemetry`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "text/plain" },
    body,
  });
  assertEquals(r.status, 202);
  await r.body?.cancel();
}

/** The commands a device finds waiting (a long-poll that does not wait). */
async function pendingCommands(base: string, id: string, token: string): Promise<string[]> {
  const r = await fetch(`${base}/api/v1/devices/${id}/commands?timeout=0`, {
    headers: { authorization: `Bearer ${token}` },
  });
  if (r.status === 204) return [];
  const body = await r.json() as { commands: Array<{ name: string }> };
  return body.commands.map((c) => c.name);
}

Deno.test("attack: an account allowed only devices/devA/telemetry/# can neither command devices nor read devB through the dashboard", async () => {
  await using gw = await attackGateway({ auth: { devices: DEVICES, services: SERVICES } });
  const { base } = gw;
  await telemetry(base, "devA", "token-a", "a-secret-reading");
  await telemetry(base, "devB", "token-b", "b-secret-reading");
  const cookie = await login(base, "watcher", "watcher-token");
  const get = (path: string) => fetch(base + path, { headers: { cookie } });

  const list = await (await get("/dashboard/api/devices")).json() as Array<{ id: string }>;
  assertEquals(list.map((d) => d.id), ["devA"], "devB listed to an account that may not see it");
  const b = await get("/dashboard/api/devices/devB");
  assertEquals(b.status, 404);
  assert(!(await b.text()).includes("b-secret-reading"));
  const a = await (await get("/dashboard/api/devices/devA")).json() as {
    recent: Array<{ preview: string }>;
  };
  assert(a.recent.some((m) => m.preview === "a-secret-reading"), JSON.stringify(a));

  for (const auth of [{ cookie }, basic("watcher", "watcher-token")]) {
    const r = await fetch(
      `${base}/dashboard/api/devices/devA/commands/reboot`,
      jsonInit("POST", { data: "now" }, auth),
    );
    assertEquals(r.status, 403, "a command from an account that may publish nothing");
    await r.body?.cancel();
  }
  assertEquals(await pendingCommands(base, "devA", "token-a"), [], "the device got a command");

  // The same call from an account whose ACL allows it reaches the device.
  const ops = await login(base, "ops", "ops-token");
  const ok = await fetch(
    `${base}/dashboard/api/devices/devA/commands/reboot`,
    jsonInit("POST", { data: "now" }, { cookie: ops }),
  );
  assertEquals(ok.status, 202);
  await ok.body?.cancel();
  assertEquals(await pendingCommands(base, "devA", "token-a"), ["reboot"]);
});

Deno.test("attack: a cross-site POST (text/plain, Origin evil.example) cannot command a device", async () => {
  await using gw = await attackGateway({ auth: { devices: DEVICES, services: SERVICES } });
  const { base } = gw;
  const cookie = await login(base, "ops", "ops-token");
  const path = `${base}/dashboard/api/devices/devA/commands/unlock`;
  const attempts: Array<[RequestInit, number]> = [
    // The classic form/fetch CSRF: a simple content type, no preflight.
    [{
      method: "POST",
      headers: { cookie, "content-type": "text/plain", origin: "http://evil.example" },
      body: '{"data":"x"}',
    }, 415],
    [jsonInit("POST", { data: "x" }, { cookie, origin: "http://evil.example" }), 403],
    [jsonInit("POST", { data: "x" }, { cookie, origin: "null" }), 403],
    [jsonInit("POST", { data: "x" }, { cookie, "sec-fetch-site": "cross-site" }), 403],
  ];
  for (const [init, status] of attempts) {
    const r = await fetch(path, init);
    assertEquals(r.status, status, JSON.stringify(init.headers));
    await r.body?.cancel();
  }
  assertEquals(await pendingCommands(base, "devA", "token-a"), [], "a cross-site call got through");
  const own = await fetch(path, jsonInit("POST", { data: "x" }, { cookie, origin: base }));
  assertEquals(own.status, 202, "the gateway's own page is refused");
  await own.body?.cancel();
  assertEquals(await pendingCommands(base, "devA", "token-a"), ["unlock"]);
});

Deno.test("attack: on loopback without service accounts the dashboard still needs a login; the one-time link printed at start works once", async () => {
  await using gw = await attackGateway({ auth: { devices: DEVICES } });
  const { base } = gw;
  for (const path of ["/dashboard/api/devices", "/dashboard/api/summary", "/dashboard/events"]) {
    const r = await fetch(base + path);
    assertEquals(r.status, 401, path);
    await r.body?.cancel();
  }
  const cmd = await fetch(
    `${base}/dashboard/api/devices/devA/commands/reboot`,
    jsonInit("POST", { data: 1 }),
  );
  assertEquals(cmd.status, 401);
  await cmd.body?.cancel();
  assertEquals(await pendingCommands(base, "devA", "token-a"), []);

  const m = /(http:\/\/\S+\/dashboard\/login\?once=[0-9a-f]+)/.exec(gw.proc.stdout());
  assert(m, `no login link on stdout: ${gw.proc.stdout()}`);
  assert(!gw.proc.stderr().includes(m[1].split("once=")[1]), "the login link reached the log");
  const link = m[1];
  const first = await fetch(link, { redirect: "manual" });
  assertEquals(first.status, 303);
  await first.body?.cancel();
  const cookie = first.headers.get("set-cookie")!.split(";")[0];
  const me = await fetch(`${base}/dashboard/api/me`, { headers: { cookie } });
  assertEquals(me.status, 200);
  await me.body?.cancel();
  const again = await fetch(link, { redirect: "manual" });
  assertEquals(again.status, 401, "a login link worked twice");
  await again.body?.cancel();

  // A fresh link waits in the data directory, readable by the gateway's user only.
  const file = `${gw.dir}/dashboard-login-link`;
  assertEquals((await Deno.stat(file)).mode! & 0o777, 0o600);
  const fresh = (await Deno.readTextFile(file)).trim();
  assert(fresh !== link);
  const second = await fetch(fresh, { redirect: "manual" });
  assertEquals(second.status, 303);
  await second.body?.cancel();
});

Deno.test("attack: DNS rebinding (Host: evil.example) reads neither device data nor metrics", async () => {
  await using gw = await attackGateway({ auth: { devices: DEVICES, services: SERVICES } });
  await telemetry(gw.base, "devA", "token-a", "reading");
  for (
    const path of [
      "/metrics",
      "/dashboard/api/devices",
      "/api/v1/devices/devA/commands?timeout=0",
      "/api/v1/openapi.json",
    ]
  ) {
    const r = await rawExchange(
      gw.port,
      `GET ${path} HTTP/1.1\r\nHost: evil.example:${gw.port}\r\nAuthorization: Bearer token-a\r\n\r\n`,
      wholeResponse,
    );
    closeQuietly(r.conn);
    assertEquals(statusOf(r.text), 421, `${path}: ${r.text}`);
    assert(!r.text.includes("reading") && !r.text.includes("ferry_"), r.text);
  }
  // Names of the gateway itself are served.
  for (const host of ["localhost", `127.0.0.1:${gw.port}`, "[::1]"]) {
    const r = await rawExchange(
      gw.port,
      `GET /healthz HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
      wholeResponse,
    );
    closeQuietly(r.conn);
    assertEquals(statusOf(r.text), 200, host);
  }
});

Deno.test("attack: a malformed Host gets 400 and no secret (token, cookie) reaches the log", async () => {
  await using gw = await attackGateway({ auth: { devices: DEVICES, services: SERVICES } });
  for (
    const host of ["evil example", "[::1", "a/b", "x\tBearer-hidden-token", "user@host", ""]
  ) {
    const r = await rawExchange(
      gw.port,
      `GET /api/v1/devices/devA/commands HTTP/1.1\r\nHost: ${host}\r\n` +
        "Authorization: Bearer hidden-token-1\r\nCookie: ferry_session=hidden-cookie-2\r\n\r\n",
      (t) => wholeResponse(t) || t.length > 0 && t.includes("\r\n\r\n"),
    );
    closeQuietly(r.conn);
    assertEquals(statusOf(r.text), 400, `Host "${host}": ${r.text}`);
  }
  // A bad device token and a bad dashboard login are logged without the secret either.
  const bad = await fetch(`${gw.base}/api/v1/devices/devA/telemetry`, {
    method: "POST",
    headers: { authorization: "Bearer hidden-token-3" },
    body: "1",
  });
  await bad.body?.cancel();
  const login = await fetch(
    `${gw.base}/dashboard/login`,
    jsonInit("POST", { name: "ops", token: "hidden-token-4" }),
  );
  await login.body?.cancel();
  assertEquals(login.status, 401);
  await gw.proc.waitForLine((l) => l.msg === "dashboard login failed");
  for (const secret of ["hidden-token", "hidden-cookie", "token-a", "ops-token"]) {
    assert(!gw.proc.stderr().includes(secret), `"${secret}" reached the log`);
  }
});

Deno.test("attack: off loopback /metrics and the OpenAPI document need an account allowed $SYS/#; /healthz stays open", async () => {
  await using gw = await attackGateway({
    host: "0.0.0.0",
    auth: { devices: DEVICES, services: SERVICES },
  });
  const get = (path: string, headers: Record<string, string> = {}) =>
    fetch(gw.base + path, { headers });
  for (const path of ["/metrics", "/api/v1/openapi.json"]) {
    const anon = await get(path);
    assertEquals(anon.status, 401, path);
    assert(anon.headers.get("www-authenticate")?.startsWith("Basic"));
    await anon.body?.cancel();
    const watcher = await get(path, basic("watcher", "watcher-token"));
    assertEquals(watcher.status, 403, `${path} for an account without $SYS/#`);
    await watcher.body?.cancel();
    const monitor = await get(path, basic("monitor", "monitor-token"));
    assertEquals(monitor.status, 200, path);
    await monitor.body?.cancel();
  }
  const m = await (await get("/metrics", basic("monitor", "monitor-token"))).text();
  assert(m.includes("process_open_fds") && m.includes("ferry_connection_budget"), m.slice(0, 200));
  const health = await get("/healthz");
  assertEquals(health.status, 200);
  await health.body?.cancel();
});

Deno.test("attack: rotating X-Forwarded-For does not dodge the login throttle, another account still gets in, and 200 failures write a handful of log lines", async () => {
  await using gw = await attackGateway({ auth: { devices: DEVICES, services: SERVICES } });
  let last = 0;
  for (let i = 0; i < 200; i++) {
    const r = await fetch(
      `${gw.base}/dashboard/login`,
      jsonInit("POST", { name: "ops", token: `guess-${i}` }, { "x-forwarded-for": `10.9.${i}.1` }),
    );
    last = r.status;
    await r.body?.cancel();
  }
  assertEquals(last, 429, "a client-chosen X-Forwarded-For reset the throttle");
  const right = await fetch(
    `${gw.base}/dashboard/login`,
    jsonInit("POST", { name: "ops", token: "ops-token" }, { "x-forwarded-for": "10.9.0.200" }),
  );
  assertEquals(right.status, 429, "the throttle is keyed by the peer, not the header");
  await right.body?.cancel();
  // Another account from the same address is not locked out by failures of "ops".
  const other = await fetch(
    `${gw.base}/dashboard/login`,
    jsonInit("POST", { name: "watcher", token: "watcher-token" }),
  );
  assertEquals(other.status, 204);
  await other.body?.cancel();
  const lines = gw.proc.lines.filter((l) => String(l.msg).startsWith("dashboard login failed"));
  assert(lines.length <= 3, `${lines.length} log lines for 200 failed logins`);
});

Deno.test("attack: behind a configured proxy the throttle follows the client address it forwards", async () => {
  await using gw = await attackGateway({
    auth: { devices: DEVICES, services: SERVICES },
    http: { trustedProxies: ["127.0.0.1"] },
  });
  for (let i = 0; i < 12; i++) {
    const r = await fetch(
      `${gw.base}/dashboard/login`,
      jsonInit("POST", { name: "ops", token: "nope" }, { "x-forwarded-for": "203.0.113.7" }),
    );
    await r.body?.cancel();
  }
  const attacker = await fetch(
    `${gw.base}/dashboard/login`,
    jsonInit("POST", { name: "ops", token: "ops-token" }, { "x-forwarded-for": "203.0.113.7" }),
  );
  assertEquals(attacker.status, 429);
  await attacker.body?.cancel();
  const operator = await fetch(
    `${gw.base}/dashboard/login`,
    jsonInit("POST", { name: "ops", token: "ops-token" }, { "x-forwarded-for": "198.51.100.4" }),
  );
  assertEquals(operator.status, 204, "the operator was locked out by someone else's failures");
  await operator.body?.cancel();
});
