/**
 * A PUBLISH Ferry refuses on its own rules (a client's `$` topic, MQTT §4.7.2, issue #14 item 8)
 * is answered through the connection's ordered answers like any other: while the accepted
 * messages around it wait for the spool's group commit, its PUBACK 0x87 still goes out in its
 * place ([MQTT-4.6.0-2]). A real gateway process with a bridge to a real mosquitto.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import { assertEquals } from "./_assert.ts";
import { startFerry, waitMetric } from "./_ferry_process.ts";
import { startMosquitto } from "./_mosquitto.ts";
import { RawClient } from "./_mqtt_harness.ts";

Deno.test("[MQTT-4.6.0-2] a PUBACK 0x87 for a $ topic goes out in arrival order among PUBACKs waiting for the spool", async () => {
  await using broker = await startMosquitto();
  await using gw = await startFerry({ northbound: { url: broker.url, gatewayId: "gw1" } });
  await waitMetric(gw, (m) => m("ferry_northbound_connected") === 1, "the upstream link");
  const c = await RawClient.connect(gw.addresses.mqtt.port, 5);
  try {
    await c.connect({ clientId: "ro1" });
    const n = 40;
    const refused = new Set([1, 17, 40]);
    const burst = Buffer.concat(
      Array.from({ length: n }, (_, k) =>
        mqttPacket.generate({
          cmd: "publish",
          topic: refused.has(k + 1) ? `$x/${k + 1}` : "devices/ro1/telemetry",
          payload: Buffer.from(`m${k + 1}`),
          qos: 1,
          messageId: k + 1,
          dup: false,
          retain: false,
        }, { protocolVersion: 5 })),
    );
    await c.send(burst); // one write: the connection reads on while the spool commits
    const acks: Array<[number, number]> = [];
    for (let i = 0; i < n; i++) {
      const a = await c.next() as { cmd: string; messageId: number; reasonCode?: number };
      assertEquals(a.cmd, "puback");
      acks.push([a.messageId, a.reasonCode ?? 0]);
    }
    assertEquals(
      acks,
      Array.from({ length: n }, (_, k) => [k + 1, refused.has(k + 1) ? 0x87 : 0]),
    );
    assertEquals(c.wireProblems, []);
  } finally {
    c.close();
  }
});
