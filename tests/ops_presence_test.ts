/**
 * Presence an operator can trust, through a real gateway process: an MQTT device's last-seen
 * time moves with its traffic (publishes and pings), not only at connect; a service account is
 * no device (no presence, no retained status), even while anonymous access is on and its name
 * looks like a device id; nor is an anonymous MQTT client until it publishes under its own
 * `devices/{id}/` (a monitoring tool).
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import { metrics, startFerry } from "./_ferry_process.ts";
import type { GatewayProcess } from "./_process.ts";
import { Inbox, mqttConnect, RawClient, run, until } from "./_mqtt_harness.ts";

async function device(
  gw: GatewayProcess,
  id: string,
): Promise<{ lastSeen: number; state: string }> {
  // The dashboard always needs a login (#13): an account that may see every device.
  const res = await fetch(
    `http://127.0.0.1:${gw.addresses.http.port}/dashboard/api/devices/${id}`,
    {
      headers: { authorization: `Basic ${btoa("ops:ops-token")}` },
    },
  );
  assertEquals(res.status, 200);
  return await res.json();
}

/** Waits until the clock has moved past `t` (so a later stamp is larger). */
async function after(t: number): Promise<void> {
  for (let i = 0; i < 100 && Date.now() <= t + 1; i++) await new Promise((r) => setTimeout(r, 5));
}

Deno.test("An MQTT device's last-seen time moves with its publishes and its pings", async () => {
  await using gw = await startFerry({
    auth: {
      anonymous: false,
      devices: [{ id: "s1", token: "t" }],
      services: [{ name: "ops", token: "ops-token", publish: [], subscribe: ["devices/#"] }],
    },
  });
  const raw = await RawClient.connect(gw.addresses.mqtt.port, 4);
  await raw.connect({ clientId: "s1", username: "s1", password: "t" as never, keepalive: 60 });
  await until(() => gw.lines.some((l) => l.msg === "device online" && l.device === "s1"), "online");
  const atConnect = (await device(gw, "s1")).lastSeen;
  assert(atConnect > 0);

  await after(atConnect);
  await raw.send(
    {
      cmd: "publish",
      topic: "devices/s1/telemetry",
      payload: "1",
      qos: 1,
      messageId: 1,
      retain: false,
      dup: false,
    } as never,
  );
  assertEquals((await raw.next()).cmd, "puback");
  const afterPublish = (await device(gw, "s1")).lastSeen;
  assert(afterPublish > atConnect, `${atConnect} → ${afterPublish}`);

  await after(afterPublish);
  await raw.ping();
  const afterPing = (await device(gw, "s1")).lastSeen;
  assert(afterPing > afterPublish, `${afterPublish} → ${afterPing}`);
  assertEquals((await device(gw, "s1")).state, "online");
  raw.close();
});

Deno.test("A service account, and an anonymous client that never sends as a device, are no devices: no presence, no retained status", async () => {
  const mon = {
    name: "mon",
    token: "mon-pw",
    publish: ["probe"],
    subscribe: ["devices/#", "probe"],
  };
  // Anonymous presence on (off by default): anonymous clients may be devices, tools still are not.
  await using gw = await startFerry({
    auth: { anonymous: true, services: [mon] },
    mqtt: { anonymousPresence: true },
  });
  const url = `mqtt://127.0.0.1:${gw.addresses.mqtt.port}`;
  // "mon" is a valid device id: before, anonymous access took the name for an unknown device.
  const c = await mqttConnect(url, { clientId: "mon", username: "mon", password: "mon-pw" });
  const inbox = new Inbox(c);
  await c.subscribeAsync("devices/+/status", { qos: 1 });
  // A real device next to it, to show what presence looks like.
  const d = await mqttConnect(url, { clientId: "d9" });
  await d.publishAsync("devices/d9/telemetry", "1", { qos: 1 }); // it sends as d9: it is d9
  await inbox.waitFor(1);
  assertEquals(inbox.messages.map((m) => [m.topic, m.payload]), [["devices/d9/status", "online"]]);
  const m = await metrics(gw);
  assertEquals(m('ferry_devices_online{protocol="mqtt"}'), 1);
  // An anonymous tool: mosquitto_sub with a client id that looks like a device id. It reads, it
  // does not send as a device: no presence either.
  const port = String(gw.addresses.mqtt.port);
  const tool = await run("mosquitto_sub", [
    ...["-h", "127.0.0.1", "-p", port, "-i", "mosq-tool1", "-t", "devices/+/status", "-C", "1"],
  ]);
  assertEquals(tool.stdout.trim(), "online");
  await c.endAsync();
  await d.endAsync();
  await until(
    () => gw.lines.some((l) => l.msg === "device offline" && l.device === "d9"),
    "d9 offline",
  );
  for (const id of ["mon", "mosq-tool1"]) {
    assert(!gw.lines.some((l) => String(l.msg).startsWith("device ") && l.device === id), id);
  }
  // A new subscriber sees the retained statuses: d9's, and none for mon.
  const late = await mqttConnect(url, { clientId: "late", username: "mon", password: "mon-pw" });
  const lateInbox = new Inbox(late);
  await late.subscribeAsync(["devices/+/status", "probe"], { qos: 1 });
  await late.publishAsync("probe", "p", { qos: 1 });
  // Retained messages come right after SUBACK, before the probe.
  await lateInbox.waitFor(2);
  assertEquals(lateInbox.messages.map((m) => m.topic), ["devices/d9/status", "probe"]);
  await late.endAsync();
});
