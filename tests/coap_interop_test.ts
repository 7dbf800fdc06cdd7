/**
 * Interop with real CoAP peers: libcoap's `coap-client` (Debian libcoap3-bin) and node-coap, plus
 * the cross-protocol path CoAP → core → MQTT and MQTT → core → CoAP observer.
 *
 * @module
 */

import { coap } from "./_dev_deps.ts";
import { createMessage } from "../src/core/message.ts";
import { CoapServer } from "../src/protocols/coap/server.ts";
import { assert, assertEquals } from "./_assert.ts";
import { coapClientPath, runCoapClient, startCoap } from "./_coap_harness.ts";
import { dec, enc, waitFor } from "./_harness.ts";
import { Inbox, startMqtt, within } from "./_mqtt_harness.ts";

const CLIENT = coapClientPath();
const base = (port: number) => `coap://127.0.0.1:${port}`;
const cmd = (id: string, name: string, payload: string) =>
  createMessage({ topic: `devices/${id}/commands/${name}`, payload: enc(payload), qos: 1 });

Deno.test("coap-client POST (CON) publishes telemetry once", async () => {
  await using h = await startCoap();
  const r = await runCoapClient([
    "-B",
    "5",
    "-m",
    "post",
    "-e",
    "21.5",
    `${base(h.port)}/d/s1/telemetry/temp?token=t1`,
  ]);
  assertEquals(r.code, 0, r.stderr);
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/telemetry/temp"), "telemetry");
  const got = h.seen.filter((m) => m.topic === "devices/s1/telemetry/temp");
  assertEquals([got.length, dec(got[0].payload), got[0].qos], [1, "21.5", 1]);
});

Deno.test("coap-client POST with -N (NON) publishes telemetry at QoS 0", async () => {
  await using h = await startCoap();
  const r = await runCoapClient([
    "-B",
    "3",
    "-N",
    "-m",
    "post",
    "-e",
    "non",
    `${base(h.port)}/d/s1/telemetry?token=t1`,
  ]);
  assertEquals(r.code, 0, r.stderr);
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/telemetry"), "telemetry");
  assertEquals(h.seen.find((m) => m.topic === "devices/s1/telemetry")!.qos, 0);
});

Deno.test("coap-client sees 4.01 for a bad token", async () => {
  await using h = await startCoap();
  const r = await runCoapClient([
    "-B",
    "5",
    "-m",
    "post",
    "-e",
    "x",
    `${base(h.port)}/d/s1/telemetry?token=wrong`,
  ]);
  assert(r.stdout.includes("4.01") || r.stderr.includes("4.01"), r.stdout + r.stderr);
});

Deno.test("coap-client GET reads the oldest pending command", async () => {
  await using h = await startCoap();
  await h.core.publish(cmd("s1", "reboot", "now"));
  await waitFor(() => h.seen.some((m) => m.topic.includes("commands")), "command");
  const r = await runCoapClient(["-B", "5", `${base(h.port)}/d/s1/commands?token=t1`]);
  assertEquals([r.code, r.stdout.trim()], [0, "now"]);
});

Deno.test("coap-client block-wise POST (-b 64) uploads 1000 bytes as one message", async () => {
  await using h = await startCoap();
  const body = "0123456789".repeat(100);
  const r = await runCoapClient([
    "-B",
    "5",
    "-b",
    "64",
    "-m",
    "post",
    "-e",
    body,
    `${base(h.port)}/d/s1/telemetry?token=t1`,
  ]);
  assertEquals(r.code, 0, r.stderr);
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/telemetry"), "telemetry");
  const got = h.seen.filter((m) => m.topic === "devices/s1/telemetry");
  assertEquals([got.length, dec(got[0].payload)], [1, body]);
});

Deno.test("coap-client block-wise GET (-b 64) of /large matches the unblocked body", async () => {
  await using h = await startCoap({ server: { mode: "plugtest" } });
  const small = await runCoapClient(["-B", "5", "-b", "64", `${base(h.port)}/large`]);
  const whole = await runCoapClient(["-B", "5", `${base(h.port)}/large`]);
  assertEquals(small.code, 0, small.stderr);
  assertEquals(small.stdout.trim().length, 2048);
  assertEquals(small.stdout, whole.stdout);
});

Deno.test("coap-client observe (-s) receives a command published into the core and ACKs it", async () => {
  await using h = await startCoap();
  const child = new Deno.Command(CLIENT, {
    args: ["-B", "10", "-s", "3", `${base(h.port)}/d/s1/commands?token=t1`],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(15_000),
  }).spawn();
  const out = child.output();
  await waitFor(() => h.server.observerCount === 1, "registration");
  await h.core.publish(cmd("s1", "reboot", "now"));
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/acks/reboot"), "ack");
  const r = await out;
  assertEquals(dec(r.stdout).trim(), "now");
});

Deno.test("coap-client reads /.well-known/core in link format", async () => {
  await using h = await startCoap({ server: { mode: "plugtest" } });
  const r = await runCoapClient(["-B", "5", `${base(h.port)}/.well-known/core`]);
  assert(r.stdout.includes("</obs>;"), r.stdout);
  assert(r.stdout.includes('</large>;rt="block"'), r.stdout);
});

/** One node-coap request on its own agent (node-coap's agent closes its socket when idle). */
async function nodeCoap(
  opts: Record<string, unknown>,
  body?: string,
): Promise<{ code: string; payload: string }> {
  const agent = new coap.Agent({ type: "udp4" });
  try {
    return await within(
      new Promise((resolve, reject) => {
        const req = coap.request({ hostname: "127.0.0.1", agent, ...opts });
        req.on("response", (res) => resolve({ code: res.code, payload: String(res.payload) }));
        req.on("error", reject);
        req.end(body);
      }),
      10_000,
      "node-coap response",
    );
  } finally {
    agent.close();
  }
}

Deno.test("node-coap POST (CON and NON) publishes telemetry", async () => {
  await using h = await startCoap();
  const a = await nodeCoap({
    port: h.port,
    method: "POST",
    pathname: "/d/s1/telemetry",
    query: "token=t1",
  }, "a");
  const b = await nodeCoap({
    port: h.port,
    method: "POST",
    pathname: "/d/s1/telemetry",
    query: "token=t1",
    confirmable: false,
  }, "b");
  assertEquals([a.code, b.code], ["2.04", "2.04"]);
  await waitFor(
    () => h.seen.filter((m) => m.topic === "devices/s1/telemetry").length === 2,
    "two messages",
  );
  assertEquals(h.seen.filter((m) => m.topic === "devices/s1/telemetry").map((m) => m.qos), [1, 0]);
});

Deno.test("node-coap GET of a block-wise resource gets the whole body", async () => {
  await using h = await startCoap({ server: { mode: "plugtest" } });
  const r = await nodeCoap({ port: h.port, pathname: "/large" });
  assertEquals([r.code, r.payload.length], ["2.05", 2048]);
});

Deno.test("node-coap observes commands and acknowledges the CON notification", async () => {
  await using h = await startCoap();
  const agent = new coap.Agent({ type: "udp4" });
  try {
    const stream = await within(
      new Promise<coap.ObserveReadStream>((resolve, reject) => {
        const req = coap.request({
          hostname: "127.0.0.1",
          port: h.port,
          pathname: "/d/s1/commands",
          query: "token=t1",
          observe: true,
          agent,
        });
        req.on("response", (res) => resolve(res as coap.ObserveReadStream));
        req.on("error", reject);
        req.end();
      }),
      5000,
      "registration",
    );
    const got = new Promise<string>((r) =>
      stream.on("data", (d: Uint8Array) => {
        if (d.length) r(dec(d));
      })
    );
    await h.core.publish(cmd("s1", "led", "on"));
    assertEquals(await within(got, 5000, "notification"), "on");
    await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/acks/led"), "ack");
    stream.close();
  } finally {
    agent.close();
  }
});

Deno.test("a CoAP POST reaches an MQTT subscriber and an MQTT command reaches a CoAP observer", async () => {
  await using h = await startMqtt();
  await using server = new CoapServer(h.core, { port: 0 });
  const { port } = await server.listen();
  const sub = await h.client();
  const inbox = new Inbox(sub);
  await sub.subscribeAsync("devices/+/telemetry/#", { qos: 1 });
  const r = await runCoapClient([
    "-B",
    "5",
    "-m",
    "post",
    "-e",
    "from-coap",
    `coap://127.0.0.1:${port}/d/c1/telemetry?token=any`,
  ]);
  assertEquals(r.code, 0, r.stderr);
  await waitFor(() => inbox.messages.some((m) => m.payload === "from-coap"), "MQTT delivery");
  // MQTT → CoAP observer
  const child = new Deno.Command(CLIENT, {
    args: ["-B", "10", "-s", "3", `coap://127.0.0.1:${port}/d/c1/commands?token=any`],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(15_000),
  }).spawn();
  const out = child.output();
  await sub.subscribeAsync("devices/c1/acks/#", { qos: 1 });
  await waitFor(() => server.observerCount === 1, "registration");
  await sub.publishAsync("devices/c1/commands/blink", "from-mqtt", { qos: 1 });
  const res = await out;
  assertEquals(dec(res.stdout).trim(), "from-mqtt");
  await waitFor(
    () => inbox.messages.some((m) => m.topic === "devices/c1/acks/blink"),
    "ack via MQTT",
  );
});

Deno.test("coap-client two-way block-wise POST to plugtest /large-post (Block1 up, Block2 down)", async () => {
  await using h = await startCoap({ server: { mode: "plugtest" } });
  const body = Array.from({ length: 3000 }, (_, i) => "abcdefghij"[i % 10]).join("");
  const r = await runCoapClient([
    "-B",
    "5",
    "-b",
    "128",
    "-m",
    "post",
    "-e",
    body,
    `${base(h.port)}/large-post`,
  ]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.stdout.trim(), body.toUpperCase());
});

Deno.test("coap-client block-wise PUT to plugtest /large-update, read back whole", async () => {
  await using h = await startCoap({ server: { mode: "plugtest" } });
  const body = "0123456789abcdef".repeat(150);
  const put = await runCoapClient([
    "-B",
    "5",
    "-b",
    "256",
    "-m",
    "put",
    "-e",
    body,
    `${base(h.port)}/large-update`,
  ]);
  assertEquals(put.code, 0, put.stderr);
  const get = await runCoapClient(["-B", "5", `${base(h.port)}/large-update`]);
  assertEquals(get.stdout.trim(), body);
});

Deno.test("coap-client gets its separate response from plugtest /separate", async () => {
  await using h = await startCoap({
    server: { mode: "plugtest", separateResponseAfterMs: 100 },
  });
  const r = await runCoapClient(["-B", "8", `${base(h.port)}/separate`]);
  assertEquals(r.code, 0, r.stderr);
  assert(r.stdout.includes("Type: 0 (CON)"), r.stdout);
});

Deno.test("coap-client -N observe gets NON notifications of commands", async () => {
  await using h = await startCoap();
  const child = new Deno.Command(CLIENT, {
    args: ["-B", "10", "-N", "-s", "2", `${base(h.port)}/d/s1/commands?token=t1`],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(15_000),
  }).spawn();
  const out = child.output();
  await waitFor(() => h.server.observerCount === 1, "registration");
  await h.core.publish(cmd("s1", "led", "off"));
  const r = await out;
  assertEquals(dec(r.stdout).trim(), "off");
  // NON notifications carry no confirmation: no ack topic, the command is handed over at sending
  assertEquals(h.seen.some((m) => m.topic === "devices/s1/acks/led"), false);
});

Deno.test("coap-client: plugtest /multi-format in JSON (-A 50) and CBOR (-A 60), and ?rt=Type1 discovery", async () => {
  await using h = await startCoap({ server: { mode: "plugtest" } });
  const json = await runCoapClient(["-B", "5", "-A", "50", `${base(h.port)}/multi-format`]);
  assertEquals(json.code, 0, json.stderr);
  assertEquals(Object.keys(JSON.parse(json.stdout)), ["type", "code", "mid"]);
  const cbor = await runCoapClient(["-B", "5", "-A", "60", `${base(h.port)}/multi-format`]);
  assert(cbor.stdout.includes("dtypecCONdcode"), cbor.stdout); // CBOR text strings, raw
  const links = await runCoapClient(["-B", "5", `${base(h.port)}/.well-known/core?rt=Type1`]);
  assertEquals(
    [...links.stdout.matchAll(/<([^>]+)>/g)].map((m) => m[1]),
    ["/link1", "/link3"],
  );
});

Deno.test("coap-client observing /obs gets 4.06 when another coap-client PUTs XML (TD_COAP_OBS_08)", async () => {
  await using h = await startCoap({ server: { mode: "plugtest" } });
  const observer = runCoapClient(["-B", "6", "-s", "4", `${base(h.port)}/obs`]); // runs meanwhile
  await waitFor(() => h.server.observerCount === 1, "registration", 5000);
  const put = await runCoapClient(
    ["-B", "5", "-m", "put", "-t", "41", "-e", "<x/>", `${base(h.port)}/obs`],
  );
  assertEquals(put.code, 0, put.stderr);
  assert((await observer).stderr.includes("4.06"));
  assertEquals(h.server.observerCount, 0);
});

Deno.test("coap-client POST of sesame to /obs-reset clears a coap-client's observation", async () => {
  await using h = await startCoap({ server: { mode: "plugtest" } });
  const observer = runCoapClient(["-B", "4", "-s", "3", `${base(h.port)}/obs-non`]);
  await waitFor(() => h.server.observerCount === 1, "registration", 5000);
  const reset = `${base(h.port)}/obs-reset`;
  const r = await runCoapClient(["-B", "5", "-m", "post", "-e", "sesame", reset]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(h.server.observerCount, 0);
  await observer;
});
