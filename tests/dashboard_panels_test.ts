/**
 * The dashboard's panels (src/http/dashboard/panels/) in headless Chromium against a gateway
 * process, with real clients: the charts draw MQTT traffic a real MQTT.js client sent, from the
 * management API's history, and still do after a reload; the retained view lists what
 * mosquitto_pub retained and its delete button clears it (a new mosquitto_sub gets no retained
 * message); the northbound page shows the link and a dead letter the upstream (a real mosquitto)
 * refused, and its retry and delete buttons act on what that upstream then receives.
 */

import { assert, assertEquals } from "./_assert.ts";
import { type BrowserPage, openPage, signIn } from "./_chromium.ts";
import { mqtt } from "./_dev_deps.ts";
import { startFerry } from "./_ferry_process.ts";
import { startMosquitto } from "./_mosquitto.ts";
import { within } from "./_mqtt_harness.ts";

const ARTIFACTS = new URL("../test-artifacts/", import.meta.url).pathname;
const OPS = { name: "ops", token: "ops-token" };
/** Sees devices only: no $SYS/# (history), no $ferry/admin/northbound. */
const VIEWER = { name: "viewer", token: "viewer-token" };

const text = (id: string) => `document.getElementById(${JSON.stringify(id)}).textContent`;
const line = (chart: string, series: string) =>
  `document.querySelector('#chart-${chart} polyline[data-series="${series}"]')`;

async function signOut(page: BrowserPage): Promise<void> {
  await page.evaluate(`document.getElementById("logout").click()`);
  await page.waitFor(
    `!document.getElementById("login").classList.contains("hidden")`,
    "signed out",
  );
}

/** Runs a mosquitto client tool; its exit code and output. */
async function tool(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  return {
    code: r.code,
    out: new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr),
  };
}

/**
 * The first message a new `mosquitto_sub` (as ops) gets on `devices/d1/telemetry/#`: a retained
 * one if there is one, else the marker that d1 publishes (again, until the subscriber has it).
 */
async function firstMessageOfNewSubscriber(port: number): Promise<string> {
  const sub = new Deno.Command("mosquitto_sub", {
    args: [
      ...["-h", "127.0.0.1", "-p", String(port), "-u", OPS.name, "-P", OPS.token],
      ...["-t", "devices/d1/telemetry/#", "-q", "1", "-C", "1", "-W", "20", "-v"],
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const done = sub.output();
  let finished = false;
  done.then(() => finished = true, () => finished = true);
  for (let i = 0; i < 100 && !finished; i++) {
    await new Promise((r) => setTimeout(r, 200));
    if (finished) break;
    const pub = await tool("mosquitto_pub", [
      ...["-h", "127.0.0.1", "-p", String(port), "-u", "d1", "-P", "t1", "-i", "d1"],
      ...["-t", "devices/d1/telemetry/marker", "-m", "marker", "-q", "1"],
    ]);
    assertEquals(pub.code, 0, pub.out);
  }
  const r = await done;
  assertEquals(r.code, 0, new TextDecoder().decode(r.stderr));
  return new TextDecoder().decode(r.stdout).trim();
}

Deno.test("Dashboard panels in headless Chromium: the charts draw a real MQTT client's traffic with time axes and units, from the server's history (still there after a reload); the retained view lists a message mosquitto_pub retained and deleting it means a new mosquitto_sub does not get it; an account without the rights sees why", async () => {
  await using gw = await startFerry({
    http: { loginLink: false },
    sys: { historyIntervalMs: 200, historySamples: 600 },
    auth: {
      anonymous: false,
      devices: [{ id: "d1", token: "t1" }],
      services: [
        { ...OPS, subscribe: ["devices/#", "$SYS/#"], publish: ["devices/#", "$ferry/admin/#"] },
        { ...VIEWER, subscribe: ["devices/#"], publish: [] },
      ],
    },
  });
  const base = `http://127.0.0.1:${gw.addresses.http.port}`;
  const mqttPort = gw.addresses.mqtt.port;
  const retained = await tool("mosquitto_pub", [
    ...["-h", "127.0.0.1", "-p", String(mqttPort), "-u", "d1", "-P", "t1", "-i", "d1"],
    ...["-t", "devices/d1/telemetry/temp", "-m", "21.5", "-q", "1", "-r"],
  ]);
  assertEquals(retained.code, 0, retained.out);

  await using page = await openPage();
  await page.goto(`${base}/dashboard`);
  await signIn(page, OPS);
  await page.waitFor(`${text("charts-status")}.startsWith("one sample every 0.2 s")`, "history");

  // Traffic from a real client, which stays connected.
  const c = await within(
    mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
      clientId: "d1",
      username: "d1",
      password: "t1",
      protocolVersion: 5,
      reconnectPeriod: 0,
    }, false),
    8000,
    "MQTT login",
  );
  for (let i = 0; i < 40; i++) {
    await c.publishAsync("devices/d1/telemetry/load", `${i}`, { qos: 1 });
  }
  // The client stays connected until the connections chart has it.
  await page.waitFor(
    `${line("connections", "mqtt")} && Number(${line("connections", "mqtt")}.dataset.max) >= 1`,
    "the MQTT connection on the connections chart",
  );
  await c.endAsync();
  // The server's history: its MQTT messages-in samples add up to the messages sent (these 40, and
  // the one mosquitto_pub retained unless it fell in the first interval, which has no sample
  // before it to measure from): rate times the time since the sample before.
  type Sample = { time: number; messagesIn: Record<string, number> };
  let mqttSamples: Array<[number, number]> = [];
  let sent = 0;
  for (let i = 0; i < 300 && Math.round(sent) < 40; i++) {
    const h = await (await fetch(`${base}/api/v1/admin/history`, {
      headers: { authorization: `Basic ${btoa(`${OPS.name}:${OPS.token}`)}` },
    })).json() as { samples: Sample[] };
    mqttSamples = [];
    sent = 0;
    h.samples.forEach((x, j) => {
      const rate = x.messagesIn.mqtt;
      if (rate === undefined) return;
      mqttSamples.push([x.time, rate]);
      if (j > 0) sent += rate * (x.time - h.samples[j - 1].time) / 1000;
    });
    if (Math.round(sent) < 40) await new Promise((r) => setTimeout(r, 100));
  }
  assert([40, 41].includes(Math.round(sent)), `the messages sent, in the history: ${sent}`);
  const peak = Math.max(...mqttSamples.map(([, v]) => v));
  const chart = (min: number) =>
    `${line("messagesIn", "mqtt")} && Number(${
      line("messagesIn", "mqtt")
    }.dataset.max) === ${peak} && Number(${line("messagesIn", "mqtt")}.dataset.points) >= ${min}`;
  await page.waitFor(chart(mqttSamples.length), "the MQTT traffic on the messages-in chart");
  const axes = await page.evaluate<{ unit: string; ticks: string[]; caption: string }>(`(() => {
    const f = document.getElementById("chart-messagesIn");
    return {
      unit: f.querySelector("text.unit").textContent,
      ticks: [...f.querySelectorAll("text.tick.x")].map((t) => t.textContent),
      caption: f.querySelector("figcaption").textContent,
    };
  })()`);
  assertEquals(axes.unit, "msg/s");
  assertEquals(axes.caption, "messages in (msg/s)");
  assertEquals(axes.ticks.length, 5);
  for (const t of axes.ticks) assert(/^\d\d:\d\d:\d\d$/.test(t), `time tick ${t}`);
  assertEquals(
    await page.evaluate(
      `document.querySelector("#chart-spoolDepth svg").textContent.includes("no northbound")`,
    ),
    true,
  );

  // A reload: a new page, no state but the session cookie; the traffic is over, so its samples
  // can only come from the server's history.
  await page.goto(`${base}/dashboard`);
  await page.waitFor(chart(mqttSamples.length), "the same chart after the reload");
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  await page.evaluate(`document.getElementById("charts-panel").scrollIntoView()`);
  await page.screenshot(`${ARTIFACTS}dashboard-charts.png`);

  // Retained view: the message mosquitto_pub retained, then deleted from the page.
  assertEquals(await firstMessageOfNewSubscriber(mqttPort), "devices/d1/telemetry/temp 21.5");
  await page.evaluate(`(() => {
    document.getElementById("retained-filter").value = "devices/+/telemetry/#";
    document.getElementById("retained-search").click();
  })()`);
  const row =
    `document.querySelector('#retained-rows tr.ret[data-topic="devices/d1/telemetry/temp"]')`;
  await page.waitFor(`${row} && ${row}.querySelector("td.payload").textContent === "21.5"`, "row");
  await page.waitFor(`${text("retained-count")} === "1 retained"`, "the filtered list");
  await page.evaluate(`${row}.querySelector("button.ret-delete").click()`);
  await page.waitFor(
    `${text("retained-status")} === "cleared devices/d1/telemetry/temp" && !${row}`,
    "the retained message cleared",
  );
  assertEquals(await page.evaluate(text("retained-count")), "0 retained");
  assertEquals(await firstMessageOfNewSubscriber(mqttPort), "devices/d1/telemetry/marker marker");

  // viewer: no $SYS/# (no charts), may not clear what it reads; no northbound rights.
  const again = await tool("mosquitto_pub", [
    ...["-h", "127.0.0.1", "-p", String(mqttPort), "-u", "d1", "-P", "t1", "-i", "d1"],
    ...["-t", "devices/d1/telemetry/temp", "-m", "22", "-q", "1", "-r"],
  ]);
  assertEquals(again.code, 0, again.out);
  await signOut(page);
  await signIn(page, VIEWER);
  await page.waitFor(`${text("charts-status")}.includes("may not read $SYS/#")`, "charts refused");
  await page.waitFor(`${row}`, "the retained message listed to viewer");
  await page.evaluate(`${row}.querySelector("button.ret-delete").click()`);
  await page.waitFor(
    `${text("retained-status")}.startsWith("cannot clear devices/d1/telemetry/temp") && ${
      text("retained-status")
    }.includes("may not publish")`,
    "the delete refused",
  );
  assert(await page.evaluate(`!!${row}`), "still listed");
  await page.waitFor(`${text("nb-status")}.includes("may not read $ferry/admin/northbound")`, "nb");
  assertEquals(await firstMessageOfNewSubscriber(mqttPort), "devices/d1/telemetry/temp 22");
});

Deno.test("Dashboard northbound page in headless Chromium (upstream: a real mosquitto that first takes at most 20,000-byte packets): the link state and two dead letters are shown; Retry sends one upstream once the limit is gone (the upstream's subscriber gets it), Delete drops the other (the upstream never gets it)", async () => {
  await using broker = await startMosquitto({ extra: ["max_packet_size 20000"] });
  await using gw = await startFerry({
    http: { loginLink: false },
    sys: { historyIntervalMs: 200 },
    auth: {
      anonymous: false,
      devices: [{ id: "big", token: "b" }],
      services: [{
        ...OPS,
        subscribe: ["devices/#", "$ferry/admin/#", "$SYS/#"],
        publish: ["$ferry/admin/#"],
      }],
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
  await using page = await openPage();
  await page.goto(`${base}/dashboard`);
  await signIn(page, OPS);
  const state = `document.querySelector('#nb-bridges tr.bridge[data-name="default"] td.nb-state')`;
  await page.waitFor(`${state} && ${state}.textContent === "live"`, "the link live");
  // With a northbound, the spool-depth chart has its line.
  await page.waitFor(
    `document.querySelector('#chart-spoolDepth polyline[data-series="spool"]')`,
    "the spool depth chart",
  );
  assert(
    (await page.evaluate<string>(text("nb-bridges"))).includes(broker.url),
    "the upstream's address",
  );

  const dev = await within(
    mqtt.connectAsync(`mqtt://127.0.0.1:${gw.addresses.mqtt.port}`, {
      clientId: "big",
      username: "big",
      password: "b",
      protocolVersion: 5,
      reconnectPeriod: 0,
    }, false),
    8000,
    "MQTT login",
  );
  await dev.publishAsync("devices/big/telemetry", "A".repeat(50_000), { qos: 1 });
  await dev.publishAsync("devices/big/telemetry", "B".repeat(50_000), { qos: 1 });
  const rows = `document.querySelectorAll("#nb-dead tr.dead")`;
  await page.waitFor(`${rows}.length === 2`, "two dead letters");
  const listed = await page.evaluate<string[][]>(
    `[...${rows}].map((r) => [...r.cells].slice(1, 5).map((c) => c.textContent))`,
  );
  assertEquals(listed.map((r) => r.slice(0, 3)), [
    ["default", "devices/big/telemetry", "48.8 KiB"],
    ["default", "devices/big/telemetry", "48.8 KiB"],
  ]);
  assert(listed.every((r) => r[3].startsWith("too_large")), JSON.stringify(listed));
  // (the spool line is read just before the list: it may be one refresh behind it)
  await page.waitFor(`${text("nb-spool")}.includes("dead letters: 2")`, "the spool line");
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  await page.evaluate(`document.getElementById("northbound-panel").scrollIntoView()`);
  await page.screenshot(`${ARTIFACTS}dashboard-northbound.png`);
  const [idA, idB] = await page.evaluate<number[]>(`[...${rows}].map((r) => Number(r.dataset.id))`);
  assert(idA < idB, "oldest first");

  // The upstream lifts its limit (restarted without it); the bridge reconnects.
  const conf = `${broker.dir}/mosquitto.conf`;
  await Deno.writeTextFile(
    conf,
    (await Deno.readTextFile(conf)).replace("max_packet_size 20000\n", ""),
  );
  await broker.stop();
  await broker.start();
  const upstream = await within(
    mqtt.connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 0 }, false),
    8000,
    "upstream subscriber",
  );
  const seen: string[] = [];
  upstream.on("message", (topic, payload) => {
    if (topic.startsWith("ferry/gw1/devices/")) {
      seen.push(`${topic} ${payload.byteLength} ${payload.subarray(0, 1)}`);
    }
  });
  await upstream.subscribeAsync("ferry/gw1/devices/#", { qos: 1 });
  /** Publishes a marker through the gateway until the upstream has it (the link is back). */
  const marker = async (name: string) => {
    for (let i = 0; i < 100 && !seen.some((s) => s.endsWith(` ${name.length} ${name[0]}`)); i++) {
      await dev.publishAsync("devices/big/telemetry/marker", name, { qos: 1 });
      await new Promise((r) => setTimeout(r, 100));
    }
    assert(
      seen.some((s) => s === `ferry/gw1/devices/big/telemetry/marker ${name.length} ${name[0]}`),
    );
  };
  await marker("m");
  await page.waitFor(`${state} && ${state}.textContent === "live"`, "the link live again");

  // Retry the first: the upstream gets it. Delete the second: it never does.
  await page.evaluate(
    `document.querySelector('#nb-dead tr.dead[data-id="${idA}"] button.nb-retry').click()`,
  );
  await page.waitFor(`${text("nb-action")} === "retried 1 (dead letter ${idA})"`, "retried");
  for (let i = 0; i < 200 && !seen.includes("ferry/gw1/devices/big/telemetry 50000 A"); i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assert(seen.includes("ferry/gw1/devices/big/telemetry 50000 A"), JSON.stringify(seen));
  await page.waitFor(`${rows}.length === 1`, "one dead letter left");
  await page.evaluate(
    `document.querySelector('#nb-dead tr.dead[data-id="${idB}"] button.nb-delete').click()`,
  );
  await page.waitFor(`${text("nb-action")} === "deleted 1 (dead letter ${idB})"`, "deleted");
  await page.waitFor(`${rows}.length === 0`, "no dead letters");
  await page.waitFor(`${text("nb-spool")}.includes("dead letters: 0")`, "spool line");
  // The spool is FIFO: a marker sent after the delete arriving means B was not sent before it.
  await marker("z");
  assert(!seen.some((s) => s.endsWith(" B")), JSON.stringify(seen));
  assertEquals(seen.filter((s) => s.endsWith(" 50000 A")).length, 1, "A once");
  await Promise.all([dev.endAsync(), upstream.endAsync()]);
});
