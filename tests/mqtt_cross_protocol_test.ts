import { BinaryServer, FbpClient } from "../src/protocols/binary/mod.ts";
import { assertEquals } from "./_assert.ts";
import { Inbox, startMqtt, within } from "./_mqtt_harness.ts";

const auth = {
  anonymous: false,
  devices: [{ id: "fbp1", token: "t1" }, { id: "mq1", token: "t2" }],
  services: [{
    name: "app",
    token: "pw",
    publish: ["devices/+/commands/#"],
    subscribe: ["devices/#"],
  }],
};

async function withBinary(h: Awaited<ReturnType<typeof startMqtt>>) {
  const binary = new BinaryServer(h.core, { hostname: "127.0.0.1", port: 0 });
  const { port } = await binary.listen();
  return { binary, port };
}

Deno.test("an FBP/1 device's telemetry reaches an MQTT subscriber of devices/+/telemetry/#", async () => {
  await using h = await startMqtt({ core: auth });
  const { binary, port } = await withBinary(h);
  try {
    const app = await h.client({
      protocolVersion: 5,
      clientId: "app-1",
      username: "app",
      password: "pw",
    });
    const inbox = new Inbox(app);
    await app.subscribeAsync("devices/+/telemetry/#", { qos: 1 });
    const dev = await FbpClient.connect({ port, id: "fbp1", token: "t1" });
    try {
      await dev.telemetry(new TextEncoder().encode("21.5"), { channel: "temp", ack: true });
      await inbox.waitFor(1);
      assertEquals([inbox.messages[0].topic, inbox.messages[0].payload], [
        "devices/fbp1/telemetry/temp",
        "21.5",
      ]);
    } finally {
      await dev.close();
    }
  } finally {
    await binary.close();
  }
});

Deno.test("an MQTT publish to devices/{id}/commands/{name} reaches an FBP/1 device as COMMAND", async () => {
  await using h = await startMqtt({ core: auth });
  const { binary, port } = await withBinary(h);
  try {
    const dev = await FbpClient.connect({ port, id: "fbp1", token: "t1" });
    try {
      const app = await h.client({
        protocolVersion: 4,
        clientId: "app-2",
        username: "app",
        password: "pw",
      });
      await app.publishAsync("devices/fbp1/commands/reboot", "now", { qos: 1 });
      const cmd = await within(dev.nextCommand(3000), 4000, "COMMAND");
      assertEquals([cmd?.name, new TextDecoder().decode(cmd?.data)], ["reboot", "now"]);
    } finally {
      await dev.close();
    }
  } finally {
    await binary.close();
  }
});

Deno.test("an FBP/1 device's presence appears to MQTT as retained devices/{id}/status", async () => {
  await using h = await startMqtt({ core: auth });
  const { binary, port } = await withBinary(h);
  try {
    const dev = await FbpClient.connect({ port, id: "fbp1", token: "t1" });
    const app = await h.client({
      protocolVersion: 5,
      clientId: "app-3",
      username: "app",
      password: "pw",
    });
    const inbox = new Inbox(app);
    await app.subscribeAsync("devices/fbp1/status", { qos: 1 });
    await inbox.waitFor(1);
    assertEquals([inbox.messages[0].payload, inbox.messages[0].packet.retain], ["online", true]);
    await dev.close();
    await inbox.waitFor(2);
    assertEquals(inbox.messages[1].payload, "offline");
  } finally {
    await binary.close();
  }
});

Deno.test("a device connecting over MQTT takes over its FBP/1 session", async () => {
  await using h = await startMqtt({ core: auth });
  const { binary, port } = await withBinary(h);
  try {
    const dev = await FbpClient.connect({ port, id: "fbp1", token: "t1" });
    try {
      await h.client({ protocolVersion: 5, clientId: "fbp1", username: "fbp1", password: "t1" });
      await within(dev.finished, 3000, "FBP/1 session closed");
      assertEquals(h.core.registry.get("fbp1")?.protocol, "mqtt");
    } finally {
      await dev.close();
    }
  } finally {
    await binary.close();
  }
});
