/**
 * MQTT over WebSocket as the gateway runs it from its configuration: `mqtt.websocket` (port,
 * path, TLS files and their reload, turned off), and persistent sessions over WebSocket across a
 * restart with the state file.
 */

import { type IClientOptions, mqtt, type MqttClient } from "./_dev_deps.ts";
import { assert, assertEquals } from "./_assert.ts";
import { Inbox, until, within } from "./_mqtt_harness.ts";
import { makePki } from "./_tls.ts";
import { resolveConfig } from "../src/config/config.ts";
import { Logger } from "../src/core/logger.ts";
import { Gateway } from "../src/gateway.ts";

function config(extra: Record<string, unknown> = {}, websocket: Record<string, unknown> = {}) {
  return resolveConfig({
    binary: { enabled: false },
    coap: { enabled: false },
    http: { enabled: false },
    ...extra,
    mqtt: { port: 0, persistence: { enabled: false }, websocket: { port: 0, ...websocket } },
  });
}

async function start(
  c: ReturnType<typeof resolveConfig>,
): Promise<{ gw: Gateway; logs: string[] }> {
  const logs: string[] = [];
  const gw = new Gateway(c, { log: new Logger({ level: "info", sink: (l) => logs.push(l) }) });
  await gw.start();
  return { gw, logs };
}

function connect(url: string, o: IClientOptions = {}): Promise<MqttClient> {
  return within(
    mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...o }, false),
    8000,
    `connect ${url}`,
  );
}

Deno.test("The gateway serves MQTT over WebSocket from mqtt.websocket (port, path); enabled false turns it off", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { gw } = await start(config({ dataDir: dir }, { path: "/ws/mqtt" }));
    const ws = gw.addresses.mqttWs!;
    assert(ws.port > 0 && ws.port !== gw.addresses.mqtt!.port);
    const c = await connect(`ws://127.0.0.1:${ws.port}/ws/mqtt`);
    await c.endAsync();
    await gw.stop();
    const { gw: off } = await start(config({ dataDir: dir }, { enabled: false }));
    assertEquals(off.addresses.mqttWs, undefined);
    assert(off.addresses.mqtt!.port > 0);
    await off.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("wss:// from mqtt.websocket.tls; certificate files changing on disk are reloaded without dropping connected clients", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const first = await makePki(dir, "first");
    const certFile = `${dir}/live.pem`;
    const keyFile = `${dir}/live.key`;
    await Deno.copyFile(first.certFile, certFile);
    await Deno.copyFile(first.keyFile, keyFile);
    const { gw, logs } = await start(config({ dataDir: dir }, { tls: { certFile, keyFile } }));
    const url = `wss://127.0.0.1:${gw.addresses.mqttWs!.port}/mqtt`;
    const old = await connect(url, { ca: first.caPem });
    await old.subscribeAsync("reload/#", { qos: 1 });
    const inbox = new Inbox(old);
    const second = await makePki(dir, "second");
    await Deno.copyFile(second.keyFile, keyFile);
    await Deno.copyFile(second.certFile, certFile);
    await until(
      () => logs.some((l) => l.includes("WebSocket TLS certificate reloaded")),
      "the reload",
      8000,
    );
    // As for every TLS listener, connect once the old socket is released (src/net/tcp_listener.ts).
    await new Promise((r) => setTimeout(r, 300));
    const fresh = await connect(url, { ca: second.caPem });
    await fresh.publishAsync("reload/x", "after the reload", { qos: 1 });
    await inbox.waitFor(1, 5000);
    assertEquals(inbox.messages[0].payload, "after the reload");
    await Promise.all([old.endAsync(), fresh.endAsync()]);
    await gw.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("A persistent session opened over WebSocket survives a gateway restart (state file): messages queued while it was away arrive", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const c = () =>
      resolveConfig({
        dataDir: dir,
        binary: { enabled: false },
        coap: { enabled: false },
        http: { enabled: false },
        mqtt: { port: 0, websocket: { port: 0 } },
      });
    const o: IClientOptions = { clientId: "ws-durable", clean: false, protocolVersion: 4 };
    const { gw } = await start(c());
    const sub = await connect(`ws://127.0.0.1:${gw.addresses.mqttWs!.port}/mqtt`, o);
    await sub.subscribeAsync("durable/#", { qos: 1 });
    await sub.endAsync();
    await gw.stop();
    const { gw: again } = await start(c());
    const pub = await connect(`mqtt://127.0.0.1:${again.addresses.mqtt!.port}`);
    await pub.publishAsync("durable/1", "queued across the restart", { qos: 1 });
    const back = mqtt.connect(`ws://127.0.0.1:${again.addresses.mqttWs!.port}/mqtt`, {
      ...o,
      reconnectPeriod: 0,
    });
    const inbox = new Inbox(back);
    const ack = await within(
      new Promise<{ sessionPresent: boolean }>((r) => back.once("connect", r)),
      8000,
      "reconnect",
    );
    assertEquals(ack.sessionPresent, true);
    await inbox.waitFor(1, 5000);
    assertEquals(inbox.messages[0].payload, "queued across the restart");
    await Promise.all([back.endAsync(), pub.endAsync()]);
    await again.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("A WebSocket port in use stops the start with the listener and port named", async () => {
  const dir = await Deno.makeTempDir();
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    const gw = new Gateway(config({ dataDir: dir }, { port }), {
      log: new Logger({ level: "error", sink: () => {} }),
    });
    let message = "";
    try {
      await gw.start();
    } catch (e) {
      message = (e as Error).message;
    }
    assertEquals(message, `mqttWs: cannot listen on 127.0.0.1:${port}: address already in use`);
    await gw.stop();
  } finally {
    taken.close();
    await Deno.remove(dir, { recursive: true });
  }
});
