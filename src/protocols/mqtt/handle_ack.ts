/**
 * The acknowledgements a client sends (MQTT 3.1.1 §3.4–§3.7, MQTT 5 §3.4–§3.7): PUBACK and
 * PUBCOMP complete the session's outgoing QoS 1/2 deliveries, PUBREC moves a QoS 2 delivery to
 * PUBREL, and PUBREL releases a received QoS 2 message with PUBCOMP.
 *
 * @module
 */

import type { IPubackPacket, IPubcompPacket, IPubrecPacket, IPubrelPacket } from "mqtt-packet";
import type { MqttConnection } from "./connection.ts";
import type { Client } from "./handle_connect.ts";
import { ReasonCode } from "./reason_codes.ts";

/** An acknowledgement from the client. */
export type AckPacket = IPubackPacket | IPubrecPacket | IPubrelPacket | IPubcompPacket;

/** Handles PUBACK, PUBREC, PUBREL or PUBCOMP. */
export function handleAck(conn: MqttConnection, c: Client, p: AckPacket): void {
  const session = c.session;
  const id = p.messageId!;
  switch (p.cmd) {
    case "puback":
      session.puback(id);
      return;
    case "pubrec":
      if (!session.pubrec(id, p.reasonCode ?? 0)) {
        // Unknown id: complete the peer's flow (v5: Packet Identifier not found).
        conn.send(
          conn.version === 5
            ? { cmd: "pubrel", messageId: id, reasonCode: ReasonCode.PacketIdentifierNotFound }
            : { cmd: "pubrel", messageId: id },
        );
      }
      return;
    case "pubcomp":
      session.pubcomp(id);
      return;
    case "pubrel": {
      // [MQTT-4.3.3-11]: PUBCOMP whether or not the id is known (v5: 0x92 when unknown).
      const known = session.releaseInbound(id);
      conn.send(
        conn.version === 5 && !known
          ? { cmd: "pubcomp", messageId: id, reasonCode: ReasonCode.PacketIdentifierNotFound }
          : { cmd: "pubcomp", messageId: id },
      );
      return;
    }
  }
}
