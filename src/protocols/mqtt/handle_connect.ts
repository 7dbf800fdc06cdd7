/**
 * CONNECT (MQTT 3.1.1 §3.1, MQTT 5 §3.1), end to end: protocol name and level, client identifier
 * rules, login through the core's port, will validation and the values negotiated for the
 * connection ({@link evaluateConnect}, a pure decision), then the session opened (or taken over)
 * and CONNACK sent ({@link handleConnect}), or the refusal sent ({@link refuseConnect}).
 *
 * @module
 */

import type { IConnackPacket, IConnectPacket } from "mqtt-packet";
import type { MqttConnection } from "./connection.ts";
import type { MqttSession } from "./session.ts";
import { type DevicePort, type Draft, Identity, isDeviceId } from "../../core/mod.ts";
import type { TransportCredentials } from "../../net/stream_conn.ts";
import { encodePacket, type ProtocolVersion } from "./codec.ts";
import { MqttMalformedError } from "./errors.ts";
import type { MqttServerOptions } from "./options.ts";
import { toMessageProperties } from "./properties.ts";
import { connackReturnCode, ReasonCode, refusalReasonCode } from "./reason_codes.ts";
import { isWellFormedUtf8 } from "./utf8.ts";
import { isServerTopic, topicNameProblem } from "./topic_rules.ts";

/** A will message and its delay (MQTT 5 §3.1.3.2). */
export interface Will {
  /** The message to publish (its expiry, if any, relative until then). */
  draft: Draft;
  /** Will Delay Interval, seconds. */
  delaySec: number;
  /** Who publishes it: the connection's identity. */
  who: Identity;
}

/** What an accepted CONNECT negotiated. */
export interface AcceptedConnect {
  ok: true;
  /** Protocol level. */
  version: ProtocolVersion;
  /** Client identifier (assigned when the client sent an empty one). */
  clientId: string;
  /** True when the server assigned the id. */
  assigned: boolean;
  /** Who connected. */
  who: Identity;
  /** Device id to attach for presence, if any. */
  deviceId?: string;
  /** Clean session / clean start. */
  cleanStart: boolean;
  /** Session expiry, seconds, after capping. */
  sessionExpirySec: number;
  /** True when the expiry the client asked for was capped (report it in CONNACK). */
  expiryCapped: boolean;
  /** Keepalive in effect, seconds (0: none). */
  keepAlive: number;
  /** Server Keep Alive to report (v5) when the client's was not accepted. */
  serverKeepAlive?: number;
  /** Will, if any. */
  will?: Will;
  /** Client Receive Maximum. */
  receiveMaximum: number;
  /** Client Maximum Packet Size. */
  maximumPacketSize: number;
  /** Client Topic Alias Maximum. */
  topicAliasMaximum: number;
  /** False when the client asked for no reason strings and user properties on errors. */
  problemInformation: boolean;
}

/** A refused CONNECT: send CONNACK with `reasonCode` (mapped for 3.1.1) and close. */
export interface RefusedConnect {
  ok: false;
  /** MQTT 5 reason code. */
  reasonCode: number;
  /** Why (logged; reason string for v5). */
  message: string;
  /** The login was refused: the port logged it already (rate limited). */
  login?: true;
}

let assignedCounter = 0;

/** Assigns a client identifier that is unique for this process. */
function assignClientId(prefix: string): string {
  assignedCounter = (assignedCounter + 1) % 0x100000000;
  return `${prefix}${Date.now().toString(36)}-${assignedCounter.toString(36)}-${
    crypto.getRandomValues(new Uint32Array(1))[0].toString(36)
  }`;
}

function passwordText(p: IConnectPacket["password"]): string {
  if (p === undefined) return "";
  return typeof p === "string" ? p : new TextDecoder().decode(p);
}

/**
 * Decides on a CONNECT packet from `address`.
 *
 * @example
 * ```ts
 * import { Core } from "../../core/mod.ts";
 * import { evaluateConnect } from "./handle_connect.ts";
 * import { resolveMqttServerOptions } from "./options.ts";
 * import { MQTT } from "./server.ts";
 * const core = new Core({ devices: [{ id: "s1", token: "t" }] });
 * const port = core.port(MQTT);
 * const base = { cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clean: true, keepalive: 30 } as const;
 * const ok = evaluateConnect({ ...base, clientId: "s1", username: "s1", password: "t" } as never, port, resolveMqttServerOptions(), "127.0.0.1");
 * const bad = evaluateConnect({ ...base, clientId: "s1", username: "s1", password: "x" } as never, port, resolveMqttServerOptions(), "127.0.0.1");
 * await core.close();
 * if (!ok.ok || bad.ok || bad.reasonCode !== 0x86) throw new Error();
 * ```
 */
export function evaluateConnect(
  packet: IConnectPacket,
  port: DevicePort,
  options: Required<MqttServerOptions>,
  address: string,
): AcceptedConnect | RefusedConnect {
  const refuse = (reasonCode: number, message: string): RefusedConnect => ({
    ok: false,
    reasonCode,
    message,
  });
  const v = packet.protocolVersion as number;
  const name = packet.protocolId as string;
  // [MQTT-3.1.2-1], [MQTT-3.1.2-2]: name and level must match a supported protocol.
  const supported = (v === 3 && name === "MQIsdp" && options.allowMqtt31) ||
    ((v === 4 || v === 5) && name === "MQTT");
  if (!supported) {
    return refuse(ReasonCode.UnsupportedProtocolVersion, `unsupported protocol ${name} ${v}`);
  }
  const version = v as ProtocolVersion;
  const props = packet.properties ?? {};
  if (version < 5 && packet.password !== undefined && packet.username === undefined) {
    // [MQTT-3.1.2-22] in 3.1.1 a password needs a user name.
    throw new MqttMalformedError("Cannot accept CONNECT: password flag set without user name");
  }
  if (packet.will && (packet.will.qos as number) > 2) {
    throw new MqttMalformedError("Cannot accept CONNECT: will QoS 3 [MQTT-3.1.2-14]");
  }
  if (props.authenticationMethod !== undefined) {
    return refuse(ReasonCode.BadAuthenticationMethod, "enhanced authentication is not supported");
  }
  if (props.receiveMaximum === 0) {
    return refuse(ReasonCode.ProtocolError, "Receive Maximum is 0 (MQTT 5 §3.1.2.11.3)");
  }
  if (props.maximumPacketSize === 0) {
    return refuse(ReasonCode.ProtocolError, "Maximum Packet Size is 0");
  }

  // Client identifier ([MQTT-3.1.3-6] .. [MQTT-3.1.3-9]); an empty one is settled after login.
  let clientId = packet.clientId ?? "";
  let assigned = false;
  if (clientId.length > (version === 3 ? 23 : options.maxClientIdLength)) {
    return refuse(ReasonCode.ClientIdentifierNotValid, "client id is too long");
  }

  // Authentication: device (user name = device id, password = token), then service account;
  // without credentials, anonymous if allowed. An anonymous client speaks for a device (presence)
  // only when `anonymousPresence` is on and its user name or client id is a device id.
  const user = packet.username;
  const anonymousId = !options.anonymousPresence
    ? undefined
    : user !== undefined && isDeviceId(user)
    ? user
    : clientId;
  const who = port.login({
    user,
    secret: user === undefined ? undefined : passwordText(packet.password),
    services: true,
    anonymousId,
  }, address);
  if (!(who instanceof Identity)) {
    return { ...refuse(refusalReasonCode(who), who.message), login: true };
  }
  const deviceId = who.deviceId;

  // A device's client id is its device id (one session per device, as FBP/1's HELLO names it); an
  // empty one is given it. Other principals may not use a registered device's id, and an empty
  // client id is assigned one ([MQTT-3.1.3-6]) when the session ends with the connection.
  const p = who.principal;
  if (p.kind === "device") {
    if (clientId.length === 0) {
      clientId = p.id;
      assigned = version === 5; // v5 reports it (Assigned Client Identifier); 3.1.1 just uses it
    } else if (clientId !== p.id) {
      return refuse(
        ReasonCode.ClientIdentifierNotValid,
        `the client id of device "${p.id}" must be its device id`,
      );
    }
  } else if (clientId.length === 0) {
    // 3.1 ids are 1..23 characters (MQTT 3.1 §3.1); 3.1.1 [MQTT-3.1.3-8]: an empty id with clean
    // session 0 gets return code 2. MQTT 5 [MQTT-3.1.3-6]/[MQTT-3.1.3-7]: the server MAY accept an
    // empty id whatever Clean Start says and assigns one (Assigned Client Identifier,
    // [MQTT-3.2.2-16]); mosquitto does and the Paho interoperability suite expects it. The client
    // learns the id, so it can resume the session with it.
    if (version === 3 || (version === 4 && !packet.clean)) {
      return refuse(ReasonCode.ClientIdentifierNotValid, "empty client id needs a clean session");
    }
    clientId = assignClientId(options.assignedIdPrefix);
    assigned = true;
  } else if (port.knownDevice(clientId)) {
    return refuse(
      ReasonCode.NotAuthorized,
      `client id "${clientId}" is reserved for the registered device of that id`,
    );
  }

  // Will ([MQTT-3.1.2-9] .. [MQTT-3.1.2-16]).
  let will: Will | undefined;
  if (packet.will) {
    const w = packet.will;
    const err = topicNameProblem(w.topic);
    if (err && version < 5) {
      // 3.1.1 has no return code for it: a CONNECT that does not conform is closed without
      // CONNACK ([MQTT-3.1.4-1], a will topic is a topic name: [MQTT-4.7.1-1], [MQTT-4.7.3-1]).
      throw new MqttMalformedError(`Cannot accept CONNECT: will topic: ${err}`);
    }
    if (err) return refuse(ReasonCode.TopicNameInvalid, `will topic: ${err}`);
    if (isServerTopic(w.topic)) {
      // MQTT §4.7.2 (a SHOULD): `$` topics are the server's (topic_rules.ts); a will is a
      // PUBLISH made for the client. mosquitto 2.0.11 accepts it (docs/mqtt.md).
      return refuse(ReasonCode.NotAuthorized, `will topic ${w.topic} starts with $`);
    }
    if (!port.mayPublish(who, w.topic)) {
      return refuse(ReasonCode.NotAuthorized, `will topic ${w.topic} is not allowed`);
    }
    const payload = typeof w.payload === "string"
      ? new TextEncoder().encode(w.payload)
      : new Uint8Array(w.payload ?? new Uint8Array());
    const wp = w.properties as Record<string, unknown> | undefined;
    if (wp?.payloadFormatIndicator && !isWellFormedUtf8(payload)) {
      return refuse(ReasonCode.PayloadFormatInvalid, "will payload is not UTF-8");
    }
    will = {
      draft: {
        topic: w.topic,
        payload,
        qos: w.qos ?? 0,
        retain: w.retain ?? false,
        properties: toMessageProperties(w.properties as never, 0),
      },
      delaySec: (wp?.willDelayInterval as number | undefined) ?? 0,
      who,
    };
  }

  // Session expiry: v5 property, or clean session in 3.1/3.1.1.
  let asked: number;
  if (version === 5) asked = props.sessionExpiryInterval ?? 0;
  else asked = packet.clean ? 0 : options.sessionExpiryMaxSec;
  const sessionExpirySec = Math.min(asked, options.sessionExpiryMaxSec);

  let keepAlive = packet.keepalive ?? 0;
  let serverKeepAlive: number | undefined;
  if (version === 5 && options.maxKeepAlive < 65535) {
    if (keepAlive === 0 || keepAlive > options.maxKeepAlive) {
      serverKeepAlive = keepAlive = options.maxKeepAlive; // [MQTT-3.2.2-21]
    }
  } else if (version === 5 && keepAlive > options.maxKeepAlive) {
    serverKeepAlive = keepAlive = options.maxKeepAlive;
  }

  return {
    ok: true,
    version,
    clientId,
    assigned,
    who,
    deviceId,
    cleanStart: packet.clean === true,
    sessionExpirySec,
    expiryCapped: version === 5 && sessionExpirySec !== asked,
    keepAlive,
    serverKeepAlive,
    will,
    receiveMaximum: props.receiveMaximum ?? 65535,
    maximumPacketSize: props.maximumPacketSize ?? 268_435_455,
    topicAliasMaximum: props.topicAliasMaximum ?? 0,
    problemInformation: props.requestProblemInformation !== false,
  };
}

/**
 * A connected client: what a connection keeps of its accepted CONNECT, and its session. A class
 * with fixed fields, so an idle connection holds a few words instead of the whole decision
 * object; handlers of packets after CONNECT get it, never an optional.
 */
export class Client {
  /** Client identifier. */
  readonly clientId: string;
  /** Who connected. */
  readonly who: Identity;
  /** The device it speaks for, if any (presence). */
  readonly deviceId: string | undefined;
  /** Session expiry, seconds. */
  readonly sessionExpirySec: number;
  /** Client Maximum Packet Size. */
  readonly maximumPacketSize: number;
  /** Client Topic Alias Maximum. */
  readonly topicAliasMaximum: number;
  /** False when the client asked for no reason strings on errors. */
  readonly problemInformation: boolean;
  /** The session. */
  readonly session: MqttSession;

  /** Keeps what the connection needs of `c`, with its session. */
  constructor(c: AcceptedConnect, session: MqttSession) {
    this.session = session;
    this.clientId = c.clientId;
    this.who = c.who;
    this.deviceId = c.deviceId;
    this.sessionExpirySec = c.sessionExpirySec;
    this.maximumPacketSize = c.maximumPacketSize;
    this.topicAliasMaximum = c.topicAliasMaximum;
    this.problemInformation = c.problemInformation;
  }
}

/**
 * The CONNECT as login sees it when the transport carried credentials (a WebSocket upgrade's
 * token, for browsers that cannot put one in CONNECT): they apply only when the CONNECT has no
 * password of its own, for the name the transport gave (HTTP Basic), else the CONNECT's user
 * name, else its client id. With no name at all they are not used.
 *
 * @example
 * ```ts
 * import { withTransportCredentials } from "./handle_connect.ts";
 * const p = { cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clean: true, keepalive: 0,
 *   clientId: "s1" } as const;
 * const q = withTransportCredentials(p as never, { secret: "t" });
 * if (q.username !== "s1" || String(q.password) !== "t") throw new Error();
 * ```
 */
export function withTransportCredentials(
  p: IConnectPacket,
  creds: TransportCredentials,
): IConnectPacket {
  if (p.password !== undefined) return p;
  const username = creds.user ?? p.username ?? (p.clientId || undefined);
  if (username === undefined) return p;
  return { ...p, username, password: creds.secret as unknown as IConnectPacket["password"] };
}

/** Handles CONNECT: refuses it, or opens the session and sends CONNACK. */
export function handleConnect(conn: MqttConnection, p: IConnectPacket): void {
  const { port, options, store, log } = conn.ctx;
  const v = p.protocolVersion;
  if (v === 3 || v === 4 || v === 5) conn.version = v;
  const creds = conn.takeTransportCredentials();
  const c = evaluateConnect(
    creds ? withTransportCredentials(p, creds) : p,
    port,
    options,
    conn.address,
  );
  if (!c.ok) {
    // One line per address per interval (a peer can repeat this at will); a failed login was
    // logged by the port.
    if (!c.login) {
      port.throttled.info(`connect_refused:${conn.address}`, "connection refused", {
        peer: conn.peer,
        clientId: p.clientId,
        reasonCode: c.reasonCode,
        why: c.message,
      });
    }
    port.stats.error("connect_refused");
    // (A Maximum Packet Size of 0 is itself the refusal's reason: it bounds nothing.)
    refuseConnect(conn, c.reasonCode, c.message, p.properties?.maximumPacketSize || undefined);
    return;
  }
  if (c.version === 5 && connackSize(c.assigned ? c.clientId : "") > c.maximumPacketSize) {
    // [MQTT-3.1.2-24] no CONNACK larger than the client takes, and [MQTT-3.2.2-16] the assigned
    // id must be in it: refused (0x85, when the refusal itself fits: see refuseConnect).
    const why = c.assigned
      ? "the assigned client id does not fit in the client's Maximum Packet Size"
      : "no CONNACK fits in the client's Maximum Packet Size";
    log.info("connection refused", { peer: conn.peer, why });
    port.stats.error("connect_refused");
    refuseConnect(conn, ReasonCode.ClientIdentifierNotValid, why, c.maximumPacketSize);
    return;
  }
  const opened = store.open(c, conn);
  if (!opened.ok) {
    port.throttled.info(`connect_refused:${conn.address}`, "connection refused", {
      peer: conn.peer,
      clientId: c.clientId,
      why: opened.message,
    });
    port.stats.error("connect_refused");
    refuseConnect(conn, opened.reasonCode, opened.message, c.maximumPacketSize);
    return;
  }
  conn.accept(c, opened.session);
  const connack: IConnackPacket = {
    cmd: "connack",
    // [MQTT-3.2.2-2] .. [MQTT-3.2.2-3]; 3.1 has no session present flag.
    sessionPresent: conn.version !== 3 && opened.present,
  };
  if (conn.version === 5) {
    connack.reasonCode = ReasonCode.Success;
    const props: NonNullable<IConnackPacket["properties"]> = {
      receiveMaximum: options.receiveMaximum,
      topicAliasMaximum: options.maxTopicAlias,
    };
    if (options.maxPacketSize < 268_435_455) props.maximumPacketSize = options.maxPacketSize;
    if (c.assigned) props.assignedClientIdentifier = c.clientId; // [MQTT-3.2.2-16]
    if (c.expiryCapped) props.sessionExpiryInterval = c.sessionExpirySec;
    if (c.serverKeepAlive !== undefined) props.serverKeepAlive = c.serverKeepAlive;
    connack.properties = props;
    fitConnack(connack, c.maximumPacketSize);
  } else connack.returnCode = 0;
  conn.send(connack);
  // As useful as mosquitto's "New client connected from 10.0.0.5:51234 as s1 (p2, c1, k60, u's1')".
  log.info("client connected", {
    peer: conn.peer,
    clientId: c.clientId,
    protocol: conn.version === 5 ? "5.0" : conn.version === 4 ? "3.1.1" : "3.1",
    cleanStart: c.cleanStart,
    keepAlive: c.keepAlive,
    user: p.username,
    principal: c.who.principal.kind,
    sessionPresent: opened.present,
  });
  // [MQTT-4.4.0-1] resend in-flight messages, then the queue, after CONNACK.
  opened.session.attach(conn);
}

/**
 * Bytes of the smallest v5 CONNACK: no properties (5), or only an Assigned Client Identifier of
 * `id` (its identifier byte and length prefix, then the UTF-8 bytes).
 */
function connackSize(id: string): number {
  return id ? 5 + 3 + new TextEncoder().encode(id).length : 5;
}

/**
 * The optional CONNACK properties, least needed first: what the client assumes without each.
 * No Topic Alias Maximum: 0, the client sends no aliases (always safe). No Session Expiry
 * Interval: the client believes its own (longer) value; session present tells it the truth later.
 * No Receive Maximum: 65535, and QoS 2 beyond ours gets DISCONNECT 0x93. No Maximum Packet Size:
 * no limit, and a larger packet gets DISCONNECT 0x95. No Server Keep Alive: the client keeps its
 * own, and the server's keepalive closes it when idle. The Assigned Client Identifier is never
 * dropped ([MQTT-3.2.2-16]).
 */
const OPTIONAL_CONNACK = [
  "topicAliasMaximum",
  "sessionExpiryInterval",
  "receiveMaximum",
  "maximumPacketSize",
  "serverKeepAlive",
] as const;

/**
 * Drops optional properties from a v5 CONNACK until it fits the client's Maximum Packet Size
 * ([MQTT-3.1.2-24]: the server MUST NOT send a packet larger than it), least needed first.
 *
 * @example
 * ```ts
 * import { fitConnack } from "./handle_connect.ts";
 * import { loadCodec } from "./codec.ts";
 * await loadCodec();
 * const ack = { cmd: "connack", sessionPresent: false, reasonCode: 0,
 *   properties: { receiveMaximum: 64, topicAliasMaximum: 64, serverKeepAlive: 60 } } as const;
 * const fitted = structuredClone(ack) as never as typeof ack & { properties: Record<string, number> };
 * fitConnack(fitted as never, 13); // 5 bytes without properties, 3 for each of these
 * if ("topicAliasMaximum" in fitted.properties || !("serverKeepAlive" in fitted.properties)) {
 *   throw new Error(JSON.stringify(fitted.properties));
 * }
 * ```
 */
export function fitConnack(connack: IConnackPacket, maximumPacketSize: number): void {
  if (maximumPacketSize >= 268_435_455) return;
  const props = connack.properties as Record<string, unknown> | undefined;
  if (!props) return;
  for (const k of OPTIONAL_CONNACK) {
    if (encodePacket(connack, 5).length <= maximumPacketSize) return;
    delete props[k];
  }
}

/**
 * Refuses a CONNECT: CONNACK with the reason (the 3.1.1 return code for older levels), then the
 * connection closes.
 */
export function refuseConnect(
  conn: MqttConnection,
  reasonCode: number,
  message: string,
  maxPacketSize = Infinity,
): void {
  // [MQTT-3.2.2-4] session present 0 on a refusal; [MQTT-3.2.2-5] then close.
  const connack: IConnackPacket = { cmd: "connack", sessionPresent: false };
  if (conn.version === 5) {
    connack.reasonCode = reasonCode;
    connack.properties = { reasonString: message.slice(0, 200) };
    // [MQTT-3.2.2-19] no Reason String that would exceed the client's Maximum Packet Size.
    if (encodePacket(connack, 5).length > maxPacketSize) delete connack.properties;
  } else connack.returnCode = connackReturnCode(reasonCode);
  // [MQTT-3.1.2-24] a client that takes less than the 5 bytes of a bare CONNACK gets none.
  if (conn.version !== 5 || encodePacket(connack, 5).length <= maxPacketSize) conn.send(connack);
  conn.shutdown();
}
