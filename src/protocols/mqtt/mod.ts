/**
 * Ferry's MQTT 3.1/3.1.1/5.0 listener: a conformant broker endpoint whose every message flows
 * through the core (shared topic namespace, ACL, presence, backpressure). See `docs/mqtt.md`.
 *
 * @example
 * ```ts
 * import { Core } from "../../core/mod.ts";
 * import { MqttServer } from "./mod.ts";
 * const core = new Core({ anonymous: true });
 * await using server = new MqttServer(core, { hostname: "127.0.0.1", port: 0 });
 * const addr = await server.listen();
 * if (addr.port <= 0) throw new Error();
 * await server.close();
 * await core.close();
 * ```
 *
 * @module
 */

export { MqttServer } from "./server.ts";
export {
  defaultMqttServerOptions,
  type MqttServerOptions,
  resolveMqttServerOptions,
} from "./options.ts";
export {
  codecLoaded,
  encodePacket,
  loadCodec,
  type MqttDecoderOptions,
  MqttFrameDecoder,
  type ProtocolVersion,
} from "./codec.ts";
export { MqttMalformedError, MqttProtocolError } from "./errors.ts";
export { closeReasonCode, connackReturnCode, ReasonCode } from "./reason_codes.ts";
