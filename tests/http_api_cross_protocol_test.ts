/**
 * The HTTP device API routed like every other protocol: HTTP telemetry reaches an MQTT
 * subscriber, and a command published over MQTT reaches an HTTP long-poll and an SSE stream,
 * through one core. Also: the API served over TLS (mounted on a TLS `Deno.serve`, since the
 * shared `HttpServer` has no TLS option yet) with curl verifying the certificate.
 *
 * @module
 */

import { MqttServer } from "../src/protocols/mqtt/mod.ts";
import { DeviceApi } from "../src/http/device_api/mod.ts";
import { Core, Logger } from "../src/core/mod.ts";
import { assert, assertEquals } from "./_assert.ts";
import { waitFor } from "./_harness.ts";
import { bearer, curl, DEVICES, sseReader, startHttpApi } from "./_http_api_harness.ts";
import { Inbox, mqttConnect, within } from "./_mqtt_harness.ts";
import { makePki } from "./_tls.ts";

const APP = {
  name: "app",
  token: "app-secret",
  publish: ["devices/+/commands/+"],
  subscribe: ["devices/#"],
};

async function withMqtt(
  fn: (
    h: Awaited<ReturnType<typeof startHttpApi>>,
    mqttUrl: string,
  ) => Promise<void>,
): Promise<void> {
  await using h = await startHttpApi({ core: { services: [APP] } });
  const mqtt = new MqttServer(h.core, { hostname: "127.0.0.1", port: 0 });
  const { port } = await mqtt.listen();
  try {
    await fn(h, `mqtt://127.0.0.1:${port}`);
  } finally {
    await h.api.close();
    await within(mqtt.close(), 5000, "mqtt close");
  }
}

Deno.test("HTTP telemetry (single and batch) is received by an MQTT subscriber", async () => {
  await withMqtt(async (h, url) => {
    const client = await mqttConnect(url, { username: APP.name, password: APP.token });
    try {
      const inbox = new Inbox(client);
      await client.subscribeAsync("devices/+/telemetry/#", { qos: 1 });
      const one = await h.fetch("/api/v1/devices/d1/telemetry/temp", {
        method: "POST",
        headers: bearer("t1"),
        body: "21.5",
      });
      assertEquals(one.status, 202);
      await one.body?.cancel();
      const batch = await h.fetch("/api/v1/devices/d1/telemetry", {
        method: "POST",
        headers: { ...bearer("t1"), "content-type": "application/x-ndjson" },
        body: '{"n":1}\n{"n":2}\n',
      });
      assertEquals(batch.status, 202);
      await batch.body?.cancel();
      await inbox.waitFor(3);
      assertEquals(inbox.messages.map((m) => [m.topic, m.payload]), [
        ["devices/d1/telemetry/temp", "21.5"],
        ["devices/d1/telemetry", '{"n":1}'],
        ["devices/d1/telemetry", '{"n":2}'],
      ]);
    } finally {
      await within(client.endAsync(true), 3000, "client end");
    }
  });
});

Deno.test("An MQTT-published command reaches an HTTP long-poll and an SSE stream; the HTTP ack reaches MQTT", async () => {
  await withMqtt(async (h, url) => {
    const client = await mqttConnect(url, { username: APP.name, password: APP.token });
    const res = await h.fetch("/api/v1/devices/d1/commands", {
      headers: { ...bearer("t1"), accept: "text/event-stream" },
    });
    const sse = sseReader(res.body!);
    try {
      const inbox = new Inbox(client);
      await client.subscribeAsync("devices/d1/acks/+", { qos: 1 });
      const poll = h.fetch("/api/v1/devices/d1/commands?timeout=10", { headers: bearer("t1") });
      await waitFor(() => h.api.waiters("d1") === 2, "long-poll and stream waiting");
      await client.publishAsync("devices/d1/commands/reboot", '{"in":5}', { qos: 1 });
      const polled = await poll;
      assertEquals(polled.status, 200);
      const { commands } = await polled.json();
      assertEquals(commands[0].name, "reboot");
      assertEquals(commands[0].payload, '{"in":5}');
      const ev = await sse.next();
      assertEquals(JSON.parse(ev!.data).id, commands[0].id);
      const ack = await h.fetch("/api/v1/devices/d1/commands/reboot/ack", {
        method: "POST",
        headers: { ...bearer("t1"), "content-type": "application/json" },
        body: '{"status":"done"}',
      });
      assertEquals(ack.status, 202);
      await ack.body?.cancel();
      await inbox.waitFor(1);
      assertEquals(inbox.messages[0].topic, "devices/d1/acks/reboot");
      assertEquals(JSON.parse(inbox.messages[0].payload), { status: "done" });
    } finally {
      await sse.cancel();
      await within(client.endAsync(true), 3000, "client end");
    }
  });
});

Deno.test("HTTP device API over TLS: curl verifies the certificate and posts telemetry", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const pki = await makePki(dir);
    const core = new Core({
      devices: DEVICES,
      log: new Logger({ level: "error", sink: () => {} }),
    });
    const seen: string[] = [];
    core.subscribe("devices/+/telemetry/#", { id: "t", deliver: (m) => seen.push(m.topic) });
    const api = new DeviceApi(core);
    const ready = Promise.withResolvers<number>();
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      cert: await Deno.readTextFile(pki.certFile),
      key: await Deno.readTextFile(pki.keyFile),
      onListen: (a) => ready.resolve(a.port),
    }, (req) => api.handle(req, new URL(req.url)) ?? new Response(null, { status: 404 }));
    const port = await ready.promise;
    try {
      const r = await curl([
        "--cacert",
        `${dir}/server-ca.pem`,
        "-H",
        "Authorization: Bearer t1",
        "--data-binary",
        "42",
        `https://127.0.0.1:${port}/api/v1/devices/d1/telemetry`,
      ]);
      assertEquals(r.code, 0);
      assertEquals(r.status, 202, r.text);
      await waitFor(() => seen.length === 1, "telemetry over TLS");
      const noCa = await curl([
        "-H",
        "Authorization: Bearer t1",
        "--data-binary",
        "42",
        `https://127.0.0.1:${port}/api/v1/devices/d1/telemetry`,
      ]);
      assert(noCa.code !== 0, "curl accepted an unknown CA");
    } finally {
      await api.close();
      await server.shutdown();
      await core.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
