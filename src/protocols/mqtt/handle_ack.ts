/**
 * The acknowledgements a client sends (MQTT 3.1.1 §3.4–§3.7, MQTT 5 §3.4–§3.7): PUBACK and
 * PUBCOMP complete the session's outgoing QoS 1/2 deliveries, PUBREC moves a QoS 2 delivery to
 * PUBREL, and PUBREL releases a received QoS 2 message with PUBCOMP. Packet identifier 0, or an
 * acknowledgement of the wrong kind for the message in flight (PUBACK for QoS 2, PUBREC for QoS 1,
 * PUBCOMP before PUBREC), is a protocol violation that closes the connection.
 *
 * @module
 */

import type { IPubackPacket, IPubcompPacket, IPubrecPacket, IPubrelPacket } from "mqtt-packet";
import type { MqttConnection } from "./connection.ts";
import { MqttProtocolError } from "./errors.ts";
import type { Client } from "./handle_connect.ts";
import { ReasonCode } from "./reason_codes.ts";
import type { AckResult } from "./session.ts";

/** An acknowledgement from the client. */
export type AckPacket = IPubackPacket | IPubrecPacket | IPubrelPacket | IPubcompPacket;

/** The violation of an acknowledgement of the wrong kind ([MQTT-4.8.0-1]; MQTT 5 §4.13). */
function wrongKind(p: AckPacket, result: AckResult): void {
  if (result !== "wrong") return;
  throw new MqttProtocolError(
    `Cannot accept ${p.cmd.toUpperCase()}: packet id ${p.messageId} is in flight at another QoS ` +
      "or step [MQTT-4.8.0-1]",
  );
}

/** Handles PUBACK, PUBREC, PUBREL or PUBCOMP. */
export function handleAck(conn: MqttConnection, c: Client, p: AckPacket): void {
  const session = c.session;
  const id = p.messageId!;
  if (id === 0) {
    // [MQTT-2.3.1-1] (MQTT 5 [MQTT-2.2.1-3]): packet identifiers are non-zero; no flow has id 0.
    throw new MqttProtocolError(`Cannot accept ${p.cmd.toUpperCase()}: packet id 0 [MQTT-2.3.1-1]`);
  }
  switch (p.cmd) {
    case "puback":
      wrongKind(p, session.puback(id));
      return;
    case "pubrec": {
      const rc = p.reasonCode ?? 0;
      const r = session.pubrec(id, rc);
      wrongKind(p, r);
      // Unknown id: complete the peer's flow (v5: Packet Identifier not found), but only after a
      // PUBREC that reports success: PUBREL follows a PUBREC below 0x80 only (MQTT 5 §4.3.3).
      if (r === "unknown" && rc < 0x80) {
        conn.send(
          conn.version === 5
            ? { cmd: "pubrel", messageId: id, reasonCode: ReasonCode.PacketIdentifierNotFound }
            : { cmd: "pubrel", messageId: id },
        );
      }
      return;
    }
    case "pubcomp":
      wrongKind(p, session.pubcomp(id));
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
