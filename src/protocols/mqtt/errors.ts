/**
 * Errors of the MQTT adapter. A malformed packet is a `SyntaxError` carrying the byte offset in the
 * connection's input; a well-formed packet that breaks a protocol rule is an {@link MqttProtocolError}.
 * Both carry the MQTT 5 reason code the server sends before closing (MQTT 5 §4.13).
 *
 * @module
 */

import { ReasonCode } from "./reason_codes.ts";

/**
 * A packet that cannot be decoded (MQTT 5 reason code 0x81 Malformed Packet, or 0x95 when too
 * large).
 *
 * @example
 * ```ts
 * import { MqttMalformedError } from "./errors.ts";
 * const e = new MqttMalformedError("Cannot decode packet: bad length", { offset: 3 });
 * if (!(e instanceof SyntaxError) || e.offset !== 3 || e.reasonCode !== 0x81) throw new Error();
 * ```
 */
export class MqttMalformedError extends SyntaxError {
  override name = "MqttMalformedError";
  /** Byte offset in the connection's input where the bad packet starts. */
  readonly offset: number;
  /** MQTT 5 reason code. */
  readonly reasonCode: number;
  /** Creates the error. */
  constructor(
    message: string,
    options: { offset?: number; reasonCode?: number; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.offset = options.offset ?? 0;
    this.reasonCode = options.reasonCode ?? ReasonCode.MalformedPacket;
  }
}

/**
 * A well-formed packet that violates the protocol (MQTT 5 reason code 0x82 Protocol Error, or a
 * more precise one such as 0x93 Receive Maximum exceeded or 0x94 Topic Alias invalid).
 *
 * @example
 * ```ts
 * import { MqttProtocolError } from "./errors.ts";
 * const e = new MqttProtocolError("Cannot accept CONNECT: already connected");
 * if (e.reasonCode !== 0x82 || e.name !== "MqttProtocolError") throw new Error();
 * ```
 */
export class MqttProtocolError extends Error {
  override name = "MqttProtocolError";
  /** MQTT 5 reason code. */
  readonly reasonCode: number;
  /** Creates the error. */
  constructor(message: string, options: { reasonCode?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.reasonCode = options.reasonCode ?? ReasonCode.ProtocolError;
  }
}
