/**
 * PINGREQ (MQTT 3.1.1 §3.12, MQTT 5 §3.12): answered with PINGRESP. The keepalive deadline was
 * already moved on by the packet's arrival (any packet counts, [MQTT-3.1.2-23]).
 *
 * @module
 */

import type { MqttConnection } from "./connection.ts";

/** Handles PINGREQ; a device's last-seen time moves with it (a quiet device still pings). */
export function handlePing(conn: MqttConnection): void {
  const id = conn.client?.deviceId;
  if (id !== undefined) conn.ctx.port.touch(id);
  conn.send({ cmd: "pingresp" });
}
