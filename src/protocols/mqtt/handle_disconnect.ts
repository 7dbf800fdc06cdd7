/**
 * DISCONNECT from the client (MQTT 3.1.1 §3.14, MQTT 5 §3.14): a new Session Expiry Interval (never
 * from 0 to non-zero), the will discarded on a normal disconnect, then the connection closes.
 *
 * @module
 */

import type { IDisconnectPacket } from "mqtt-packet";
import type { MqttConnection } from "./connection.ts";
import type { Client } from "./handle_connect.ts";
import { MqttProtocolError } from "./errors.ts";
import { ReasonCode } from "./reason_codes.ts";

/** Handles DISCONNECT. */
export function handleDisconnect(conn: MqttConnection, c: Client, p: IDisconnectPacket): void {
  if (conn.version === 5) {
    const exp = p.properties?.sessionExpiryInterval;
    if (exp !== undefined) {
      // [MQTT-3.14.2-2] 0 at CONNECT cannot become non-zero at DISCONNECT.
      if (c.sessionExpirySec === 0 && exp !== 0) {
        throw new MqttProtocolError("Cannot accept DISCONNECT: session expiry was 0");
      }
      c.session.expirySec = Math.min(exp, conn.ctx.options.sessionExpiryMaxSec);
    }
  }
  // [MQTT-3.14.4-3] DISCONNECT with 0x00 (or any 3.1.1 DISCONNECT) discards the will; v5 0x04
  // and error codes keep it, and it is published as for an abnormal close.
  if (conn.version !== 5 || (p.reasonCode ?? 0) === ReasonCode.Success) conn.will = undefined;
  conn.disconnected();
}
