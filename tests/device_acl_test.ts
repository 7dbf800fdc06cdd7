import { assertEquals } from "./_assert.ts";
import { enc, startBinary, waitFor } from "./_harness.ts";
import { startMqtt } from "./_mqtt_harness.ts";
import { FbpClient } from "../src/protocols/binary/client.ts";
import { AckStatus } from "../src/protocols/binary/frame.ts";

const rules = {
  publish: ["devices/{id}/telemetry/allowed", "shared/{id}"],
  subscribe: ["devices/{id}/commands/+", "broadcast/#"],
};

Deno.test("Device ACL rules from config ({id} substituted): FBP/1 telemetry outside them gets ACK 1 and is not published", async () => {
  await using h = await startBinary({
    core: { anonymous: false, devices: [{ id: "d1", token: "t" }], deviceAcl: rules },
  });
  const c = await FbpClient.connect({ port: h.port, id: "d1", token: "t" });
  assertEquals(await c.telemetry(enc("ok"), { channel: "allowed", ack: true }), AckStatus.OK);
  assertEquals(
    await c.telemetry(enc("no"), { channel: "other", ack: true }),
    AckStatus.NOT_AUTHORIZED,
  );
  await waitFor(
    () => h.seen.some((m) => m.topic === "devices/d1/telemetry/allowed"),
    "the allowed one",
  );
  assertEquals(h.seen.filter((m) => m.topic === "devices/d1/telemetry/other").length, 0);
  assertEquals(h.core.stats.drops.get({ protocol: "binary", reason: "not_authorized" }), 1);
  await c.close();
});

Deno.test("Device ACL rules from config apply to MQTT publish (v5 PUBACK 0x87) and subscribe (SUBACK 0x87)", async () => {
  await using h = await startMqtt({
    core: { anonymous: false, devices: [{ id: "d1", token: "t" }], deviceAcl: rules },
  });
  const c = await h.client({ clientId: "d1", username: "d1", password: "t", protocolVersion: 5 });
  await c.publishAsync("shared/d1", "x", { qos: 1 }); // allowed by the rule
  let denied = 0;
  try {
    await c.publishAsync("devices/d1/telemetry/other", "x", { qos: 1 });
  } catch (err) {
    denied = (err as { code?: number }).code ?? -1;
  }
  assertEquals(denied, 0x87);
  let granted: number[] = [];
  try {
    await c.subscribeAsync(["broadcast/news", "devices/d2/commands/+"], { qos: 1 });
  } catch (err) {
    granted = (err as { packet: { granted: number[] } }).packet.granted;
  }
  assertEquals(granted, [1, 0x87]);
});
