/**
 * The dashboard's sessions panel (src/http/dashboard/panels/sessions.ts) in headless Chromium
 * against a gateway process, with a real MQTT.js client: its persistent session and subscription
 * are listed, "who gets a topic" finds it, and Drop disconnects it (DISCONNECT 0x98) and discards
 * the session (its next CONNECT gets Session Present 0); an account without the grant sees why.
 */

import { assert, assertEquals } from "./_assert.ts";
import { openPage, signIn } from "./_chromium.ts";
import { mqtt } from "./_dev_deps.ts";
import { startFerry } from "./_ferry_process.ts";
import { within } from "./_mqtt_harness.ts";

const OPS = { name: "ops", token: "ops-token" };
const VIEWER = { name: "viewer", token: "viewer-token" };
const text = (id: string) => `document.getElementById(${JSON.stringify(id)}).textContent`;

function d1(port: number) {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    clientId: "d1",
    username: "d1",
    password: "t1",
    clean: false,
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 3600 },
    reconnectPeriod: 0,
  }, false);
}

Deno.test("Dashboard sessions panel in headless Chromium: a real MQTT.js client's persistent session and subscription are listed and found by topic; Drop disconnects it (0x98) and discards the session (Session Present 0 next time); an account without the grant sees why", async () => {
  await using gw = await startFerry({
    http: { loginLink: false },
    auth: {
      anonymous: false,
      devices: [{ id: "d1", token: "t1" }],
      services: [
        { ...OPS, subscribe: ["devices/#", "$ferry/admin/#"], publish: ["$ferry/admin/#"] },
        { ...VIEWER, subscribe: ["devices/#"], publish: [] },
      ],
    },
  });
  const base = `http://127.0.0.1:${gw.addresses.http.port}`;
  const port = gw.addresses.mqtt.port;
  const c = await within(d1(port), 8000, "MQTT login");
  await c.subscribeAsync("devices/d1/commands/#", { qos: 1 });

  await using page = await openPage();
  await page.goto(`${base}/dashboard`);
  await signIn(page, OPS);
  const row = `document.querySelector('#sessions-rows tr.session[data-id="d1"]')`;
  await page.waitFor(`${row} && ${row}.cells[2].textContent === "connected"`, "d1 listed");
  const cells = await page.evaluate<string[]>(`[...${row}.cells].map((c) => c.textContent)`);
  assertEquals(cells[0], "d1");
  assertEquals(cells[1], "mqtt 5");
  assertEquals(cells[3], "device:d1");
  assert(cells[4].startsWith("127.0.0.1:"), cells[4]);
  assertEquals(cells[8], "1");

  await page.evaluate(`${row}.querySelector("button.session-subs").click()`);
  await page.waitFor(
    `${text("session-detail-title")} === "d1" && document.querySelector("#session-subs tr.sub")`,
    "the session's subscriptions",
  );
  assertEquals(
    await page.evaluate(`[...document.querySelectorAll("#session-subs tr.sub")].map((r) =>
      [...r.cells].map((c) => c.textContent))`),
    [["devices/d1/commands/#", "1"]],
  );

  await page.evaluate(`(() => {
    document.getElementById("subs-topic").value = "devices/d1/commands/reboot";
    document.getElementById("subs-search").click();
  })()`);
  await page.waitFor(`document.querySelector('#subs-rows tr.sub[data-id="d1"]')`, "who gets it");
  assertEquals(
    await page.evaluate(`[...document.querySelectorAll("#subs-rows tr.sub")].map((r) =>
      [...r.cells].map((c) => c.textContent))`),
    [["d1", "mqtt", "devices/d1/commands/#", "1"]],
  );

  // Drop: the client is disconnected with 0x98, and the session is gone.
  const kicked = new Promise<number | undefined>((r) => c.on("disconnect", (p) => r(p.reasonCode)));
  await page.evaluate(`${row}.querySelector("button.session-drop").click()`);
  assertEquals(await within(kicked, 10_000, "DISCONNECT"), 0x98);
  await page.waitFor(`${text("sessions-status")} === "dropped d1 (disconnected)"`, "the status");
  await page.waitFor(`!${row}`, "d1 no longer listed");
  c.end(true);
  const again = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    clientId: "d1",
    username: "d1",
    password: "t1",
    clean: false,
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 3600 },
    reconnectPeriod: 0,
  });
  const connack = await within(
    new Promise<{ sessionPresent: boolean }>((r) => again.once("connect", r)),
    8000,
    "CONNACK",
  );
  assertEquals(connack.sessionPresent, false, "the session was discarded");
  await again.endAsync();

  // viewer: no $ferry/admin/sessions grant.
  await page.evaluate(`document.getElementById("logout").click()`);
  await signIn(page, VIEWER);
  await page.waitFor(
    `${text("sessions-count")}.includes("may not read $ferry/admin/sessions")`,
    "the list refused",
  );
});
