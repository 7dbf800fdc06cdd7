/**
 * MQTT 5 reason codes (OASIS MQTT 5.0 §2.4), the 3.1.1 CONNACK return codes (MQTT 3.1.1 §3.2.2.3),
 * and the one place where Ferry's close causes and errors become wire codes.
 *
 * @module
 */

import type { CloseCode, Refusal } from "../../core/mod.ts";

/**
 * MQTT 5 reason codes used by the server.
 *
 * @example
 * ```ts
 * import { ReasonCode } from "./reason_codes.ts";
 * if (ReasonCode.SessionTakenOver !== 0x8e) throw new Error();
 * ```
 */
export const ReasonCode = {
  Success: 0x00,
  GrantedQoS1: 0x01,
  GrantedQoS2: 0x02,
  DisconnectWithWill: 0x04,
  NoMatchingSubscribers: 0x10,
  NoSubscriptionExisted: 0x11,
  UnspecifiedError: 0x80,
  MalformedPacket: 0x81,
  ProtocolError: 0x82,
  ImplementationSpecificError: 0x83,
  UnsupportedProtocolVersion: 0x84,
  ClientIdentifierNotValid: 0x85,
  BadUserNameOrPassword: 0x86,
  NotAuthorized: 0x87,
  ServerUnavailable: 0x88,
  ServerBusy: 0x89,
  BadAuthenticationMethod: 0x8c,
  KeepAliveTimeout: 0x8d,
  SessionTakenOver: 0x8e,
  TopicFilterInvalid: 0x8f,
  TopicNameInvalid: 0x90,
  PacketIdentifierInUse: 0x91,
  PacketIdentifierNotFound: 0x92,
  ReceiveMaximumExceeded: 0x93,
  TopicAliasInvalid: 0x94,
  PacketTooLarge: 0x95,
  QuotaExceeded: 0x97,
  PayloadFormatInvalid: 0x99,
  RetainNotSupported: 0x9a,
  QoSNotSupported: 0x9b,
  SharedSubscriptionsNotSupported: 0x9e,
  SubscriptionIdentifiersNotSupported: 0xa1,
  WildcardSubscriptionsNotSupported: 0xa2,
  ServerShuttingDown: 0x8b,
  AdministrativeAction: 0x98,
} as const;

/**
 * The DISCONNECT reason code for a core close cause (MQTT 5 §3.14.2.1).
 *
 * @example
 * ```ts
 * import { closeReasonCode } from "./reason_codes.ts";
 * if (closeReasonCode("taken_over") !== 0x8e) throw new Error();
 * ```
 */
export function closeReasonCode(code: CloseCode): number {
  switch (code) {
    case "taken_over":
      return ReasonCode.SessionTakenOver;
    case "keepalive_timeout":
      return ReasonCode.KeepAliveTimeout;
    case "shutting_down":
      return ReasonCode.ServerShuttingDown;
    case "slow_consumer":
      return ReasonCode.QuotaExceeded;
    case "removed":
      return ReasonCode.NotAuthorized;
    case "protocol_error":
      return ReasonCode.ProtocolError;
    case "administrative": // an operator disconnected the client (management API)
      return ReasonCode.AdministrativeAction;
  }
}

/**
 * The MQTT 5 reason code of a refusal by the core: a CONNACK reason for a refused login, a
 * PUBACK/PUBREC reason for a refused message (only the codes MQTT 5 §3.4.2.1 allows there).
 * MQTT 3.1/3.1.1 clients get {@link connackReturnCode} of it, or, for a message, no refusal.
 *
 * @example
 * ```ts
 * import { refusalReasonCode } from "./reason_codes.ts";
 * const r = { ok: false, reason: "rate_limited", message: "" } as const;
 * if (refusalReasonCode(r) !== 0x97) throw new Error();
 * ```
 */
export function refusalReasonCode(r: Refusal): number {
  switch (r.reason) {
    case "bad_id":
    case "bad_credentials":
      return ReasonCode.BadUserNameOrPassword;
    case "no_credentials":
    case "not_authorized":
      return ReasonCode.NotAuthorized;
    case "throttled": // retryable: 3.1.1 return code 3, "server unavailable"
      return ReasonCode.QuotaExceeded;
    case "unavailable":
      return ReasonCode.ServerUnavailable;
    case "rate_limited":
    case "overloaded":
    case "quota":
    case "too_large":
      return ReasonCode.QuotaExceeded;
    case "failed":
      return ReasonCode.ImplementationSpecificError;
    case "shutting_down":
      return ReasonCode.UnspecifiedError;
  }
}

/**
 * The MQTT 3.1/3.1.1 CONNACK return code for an MQTT 5 CONNACK reason code (§3.2.2.3):
 * 1 unacceptable protocol version, 2 identifier rejected, 3 server unavailable, 4 bad user name
 * or password, 5 not authorized.
 *
 * @example
 * ```ts
 * import { connackReturnCode } from "./reason_codes.ts";
 * if (connackReturnCode(0x86) !== 4 || connackReturnCode(0x00) !== 0) throw new Error();
 * ```
 */
export function connackReturnCode(reasonCode: number): number {
  switch (reasonCode) {
    case ReasonCode.Success:
      return 0;
    case ReasonCode.UnsupportedProtocolVersion:
      return 1;
    case ReasonCode.ClientIdentifierNotValid:
      return 2;
    case ReasonCode.ServerUnavailable:
    case ReasonCode.ServerBusy:
    case ReasonCode.QuotaExceeded:
      return 3;
    case ReasonCode.BadUserNameOrPassword:
      return 4;
    default:
      return 5;
  }
}
