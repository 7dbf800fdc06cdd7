/**
 * Differential test of Ferry's MQTT listener against Debian's mosquitto 2.0: a corpus of raw-packet
 * scenarios (valid and invalid CONNECTs for 3.1, 3.1.1 and 5, fixed-header flag violations, bad
 * Remaining Lengths, bad UTF-8, wildcard misuse, QoS 1/2 flows, retained messages, wills, sessions,
 * v5 properties, topic aliases, subscription options, shared subscriptions) is played against a
 * fresh broker of each kind, and what each client saw on the wire (packets with their reason codes,
 * and when the server closed the connection) is compared. Differences are printed as a table; each
 * one is judged against the spec in `docs/mqtt.md` ("Differences from mosquitto").
 *
 * Ferry runs in-process with its defaults (anonymous clients get no `devices/{id}/status`
 * presence) and every topic is outside `devices/`, so both brokers see a plain anonymous MQTT
 * namespace. Every packet either server sends is read strictly (`tests/_mqtt_wire.ts`): a malformed
 * or truncated packet shows as `MALFORMED(…)` / `TRUNCATED(…)` in the transcript.
 *
 * A scenario whose transcripts differ is played twice more (this machine's load can delay one
 * server past the settling time): it is reported only when all three plays differ. Each reported
 * difference must be one of {@link KNOWN}, the rows of "Differences from the reference broker" in
 * `docs/mqtt.md`; any other is listed as undocumented and the script exits with status 1.
 *
 * ```
 * deno run -A bench/mqtt_differential.ts [--all] [--only name-substring] [--quiet ms]
 * ```
 *
 * @module
 */

import { Core, Logger } from "../src/core/mod.ts";
import { MqttServer } from "../src/protocols/mqtt/mod.ts";
import { startMosquitto } from "../tests/_mosquitto.ts";
import { checkServerPacket } from "../tests/_mqtt_wire.ts";

// ---------------------------------------------------------------------------------------------
// Packet building (raw bytes: many scenarios are packets no client library would send)

const te = new TextEncoder();
type Bytes = number[];

/** Variable Byte Integer (MQTT §1.5.5). */
function vbi(n: number): Bytes {
  const out: Bytes = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** A length-prefixed string (text, or raw bytes for ill-formed UTF-8). */
function str(s: string | Bytes): Bytes {
  const b = typeof s === "string" ? [...te.encode(s)] : s;
  return [b.length >> 8, b.length & 0xff, ...b];
}

/** A property section: its length, then the property bytes. */
function props(p: Bytes): Bytes {
  return [...vbi(p.length), ...p];
}

/** A packet: first byte, computed Remaining Length, body. */
function pkt(first: number, body: Bytes): Uint8Array {
  return Uint8Array.from([first, ...vbi(body.length), ...body]);
}

interface ConnectOpts {
  v?: 3 | 4 | 5;
  name?: string;
  id?: string | Bytes;
  clean?: boolean;
  ka?: number;
  /** Overrides the computed connect flags. */
  flags?: number;
  props?: Bytes;
  will?: { topic: string; payload: string; qos?: number; retain?: boolean; props?: Bytes };
  user?: string;
  pass?: string;
}

function connect(o: ConnectOpts = {}): Uint8Array {
  const v = o.v ?? 4;
  let flags = (o.clean ?? true) ? 0x02 : 0;
  if (o.will) flags |= 0x04 | ((o.will.qos ?? 0) << 3) | (o.will.retain ? 0x20 : 0);
  if (o.user !== undefined) flags |= 0x80;
  if (o.pass !== undefined) flags |= 0x40;
  if (o.flags !== undefined) flags = o.flags;
  const body: Bytes = [
    ...str(o.name ?? (v === 3 ? "MQIsdp" : "MQTT")),
    v,
    flags,
    (o.ka ?? 0) >> 8,
    (o.ka ?? 0) & 0xff,
  ];
  if (v === 5) body.push(...props(o.props ?? []));
  body.push(...str(o.id ?? "c"));
  if (o.will) {
    if (v === 5) body.push(...props(o.will.props ?? []));
    body.push(...str(o.will.topic), ...str(o.will.payload));
  }
  if (o.user !== undefined) body.push(...str(o.user));
  if (o.pass !== undefined) body.push(...str(o.pass));
  return pkt(0x10, body);
}

interface PublishOpts {
  qos?: number;
  retain?: boolean;
  dup?: boolean;
  id?: number;
  v5?: boolean;
  props?: Bytes;
}

function publish(topic: string | Bytes, payload: string | Bytes, o: PublishOpts = {}): Uint8Array {
  const qos = o.qos ?? 0;
  const first = 0x30 | (o.dup ? 8 : 0) | (qos << 1) | (o.retain ? 1 : 0);
  const body = [...str(topic)];
  if (qos > 0) body.push((o.id ?? 1) >> 8, (o.id ?? 1) & 0xff);
  if (o.v5) body.push(...props(o.props ?? []));
  body.push(...(typeof payload === "string" ? te.encode(payload) : payload));
  return pkt(first, body);
}

function subscribe(
  id: number,
  subs: Array<[string | Bytes, number]>,
  o: { v5?: boolean; props?: Bytes; first?: number } = {},
): Uint8Array {
  const body: Bytes = [id >> 8, id & 0xff];
  if (o.v5) body.push(...props(o.props ?? []));
  for (const [f, opts] of subs) body.push(...str(f), opts);
  return pkt(o.first ?? 0x82, body);
}

function unsubscribe(id: number, filters: string[], o: { v5?: boolean } = {}): Uint8Array {
  const body: Bytes = [id >> 8, id & 0xff];
  if (o.v5) body.push(...props([]));
  for (const f of filters) body.push(...str(f));
  return pkt(0xa2, body);
}

/** PUBACK 0x40, PUBREC 0x50, PUBREL 0x62, PUBCOMP 0x70. */
function ack(first: number, id: number, rc?: number, p?: Bytes): Uint8Array {
  const body: Bytes = [id >> 8, id & 0xff];
  if (rc !== undefined) body.push(rc);
  if (p) body.push(...props(p));
  return pkt(first, body);
}

const PINGREQ = Uint8Array.from([0xc0, 0]);
const DISCONNECT = Uint8Array.from([0xe0, 0]);
const u16 = (n: number): Bytes => [n >> 8, n & 0xff];
const u32 = (n: number): Bytes => [n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];

// ---------------------------------------------------------------------------------------------
// Scenarios

/** A step: send bytes on a client, close a client's socket, or wait. */
type Step = [client: number, bytes: Uint8Array] | ["close", number] | ["wait", number];

interface Scenario {
  name: string;
  /** Protocol level of each client (for reading what the server sends). */
  clients: Array<3 | 4 | 5>;
  steps: Step[];
}

const V5 = { v5: true };
const SUB_OK = (id: number, f: string, qos = 1) => subscribe(id, [[f, qos]]);
const SUB5 = (id: number, f: string, opts = 1, p?: Bytes) =>
  subscribe(id, [[f, opts]], { v5: true, props: p });

function scenarios(): Scenario[] {
  const s: Scenario[] = [];
  const add = (name: string, clients: Array<3 | 4 | 5>, steps: Step[]) =>
    s.push({ name, clients, steps });
  const c4 = (id: string | Bytes = "c0", o: ConnectOpts = {}) => connect({ id, ...o });
  const c5 = (id: string | Bytes = "c0", o: ConnectOpts = {}) => connect({ v: 5, id, ...o });

  // ---- CONNECT, 3.1 / 3.1.1 ----
  add("v4 CONNECT valid", [4], [[0, c4()]]);
  add("v4 CONNECT empty id, clean", [4], [[0, c4("")], [0, PINGREQ]]);
  add("v4 CONNECT empty id, not clean", [4], [[0, c4("", { clean: false })]]);
  add("v4 CONNECT reserved flag set", [4], [[0, c4("c0", { flags: 0x03 })]]);
  add("v4 CONNECT unsupported level 6", [4], [[0, connect({ v: 6 as 4 })]]);
  add("v4 CONNECT unknown protocol name", [4], [[0, c4("c0", { name: "MQTX" })]]);
  add("v4 CONNECT will QoS 3", [4], [[
    0,
    c4("c0", { flags: 0x1e, will: { topic: "w", payload: "x" } }),
  ]]);
  add("v4 CONNECT will retain without will flag", [4], [[0, c4("c0", { flags: 0x22 })]]);
  add("v4 CONNECT password without user name", [4], [[0, c4("c0", { pass: "p" })]]);
  add("v4 CONNECT client id ill-formed UTF-8", [4], [[0, c4([0xc0, 0x80])]]);
  add("v4 CONNECT client id with U+0000", [4], [[0, c4([0x61, 0x00])]]);
  add("v4 CONNECT user name + password (anonymous broker)", [4], [[
    0,
    c4("c0", { user: "u", pass: "p" }),
  ]]);
  add("v4 second CONNECT", [4], [[0, c4()], [0, c4()]]);
  add("v4 first packet PUBLISH", [4], [[0, publish("t", "x")]]);
  add("v4 first packet PINGREQ", [4], [[0, PINGREQ]]);
  add("v3 MQIsdp CONNECT", [3], [[0, connect({ v: 3, id: "c0" })], [0, PINGREQ]]);
  add("v3 client id of 24 characters", [3], [[0, connect({ v: 3, id: "a".repeat(24) })]]);
  add("v4 CONNECT then PINGREQ", [4], [[0, c4("c0", { ka: 30 })], [0, PINGREQ]]);

  // ---- fixed header flags, packet types, Remaining Length ----
  add("v4 SUBSCRIBE with flags 0", [4], [[0, c4()], [
    0,
    subscribe(1, [["t", 0]], { first: 0x80 }),
  ]]);
  add("v4 UNSUBSCRIBE with flags 0", [4], [[0, c4()], [0, pkt(0xa0, [0, 1, ...str("t")])]]);
  add("v4 PUBREL with flags 0", [4], [[0, c4()], [0, pkt(0x60, [0, 1])]]);
  add("v4 PINGREQ with flags 1", [4], [[0, c4()], [0, Uint8Array.from([0xc1, 0])]]);
  add("v4 DISCONNECT with flags 1", [4], [[0, c4()], [0, Uint8Array.from([0xe1, 0])]]);
  add("v4 PUBLISH QoS 3", [4], [[0, c4()], [0, pkt(0x36, [...str("t"), 0, 1, 0x78])]]);
  add("v4 PUBLISH QoS 0 with DUP", [4], [[0, c4()], [0, publish("t", "x", { dup: true })]]);
  add("v4 reserved packet type 0", [4], [[0, c4()], [0, Uint8Array.from([0x00, 0])]]);
  add("v4 packet type 15 (AUTH) in 3.1.1", [4], [[0, c4()], [0, Uint8Array.from([0xf0, 0])]]);
  add("v4 CONNACK from a client", [4], [[0, c4()], [0, Uint8Array.from([0x20, 2, 0, 0])]]);
  add("v4 Remaining Length of five bytes", [4], [[0, c4()], [
    0,
    Uint8Array.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f]),
  ]]);
  add("v4 Remaining Length not minimal (PINGREQ 80 00)", [4], [[0, c4()], [
    0,
    Uint8Array.from([0xc0, 0x80, 0x00]),
  ]]);
  add("v4 PINGREQ with a body byte", [4], [[0, c4()], [0, Uint8Array.from([0xc0, 1, 0])]]);
  add("v4 PUBACK with Remaining Length 3", [4], [[0, c4()], [0, pkt(0x40, [0, 1, 0])]]);
  add("v4 oversize CONNECT length announced", [4], [[
    0,
    Uint8Array.from([0x10, 0xff, 0xff, 0xff, 0x7f]),
  ]]);

  // ---- UTF-8 and topics ----
  add("v4 PUBLISH topic ill-formed UTF-8", [4], [[0, c4()], [0, publish([0x61, 0xc0, 0x80], "x")]]);
  add("v4 PUBLISH topic with U+0000", [4], [[0, c4()], [0, publish([0x61, 0x00], "x")]]);
  add("v4 PUBLISH topic with UTF-16 surrogate (ED A0 80)", [4], [[0, c4()], [
    0,
    publish([0x61, 0xed, 0xa0, 0x80], "x"),
  ]]);
  add("v4 SUBSCRIBE filter ill-formed UTF-8", [4], [[0, c4()], [0, subscribe(1, [[[0xff], 0]])]]);
  add("v4 PUBLISH to a wildcard topic a/+", [4], [[0, c4()], [0, publish("a/+", "x")]]);
  add("v4 PUBLISH to a wildcard topic a/#", [4], [[0, c4()], [0, publish("a/#", "x", { qos: 1 })]]);
  add("v4 PUBLISH with an empty topic", [4], [[0, c4()], [0, publish("", "x")]]);
  add("v4 SUBSCRIBE a/#/b and a+ and #", [4], [[0, c4()], [
    0,
    subscribe(1, [["a/#/b", 0], ["a+", 0], ["#", 0]]),
  ]]);
  add("v4 SUBSCRIBE empty filter", [4], [[0, c4()], [0, subscribe(1, [["", 0]])]]);
  add("v4 SUBSCRIBE requested QoS 3", [4], [[0, c4()], [0, subscribe(1, [["t", 3]])]]);
  add("v4 SUBSCRIBE reserved option bits (0x04)", [4], [[0, c4()], [0, subscribe(1, [["t", 4]])]]);
  add("v4 SUBSCRIBE without filters", [4], [[0, c4()], [0, pkt(0x82, [0, 1])]]);
  add("v4 UNSUBSCRIBE without filters", [4], [[0, c4()], [0, pkt(0xa2, [0, 1])]]);
  add("v4 UNSUBSCRIBE unknown filter", [4], [[0, c4()], [0, unsubscribe(1, ["nope"])]]);
  add("v4 $-topic not matched by #", [4, 4], [
    [0, c4()],
    [0, subscribe(1, [["#", 0], ["$x/#", 0]])],
    [1, c4("c1")],
    [1, publish("$x/a", "d")],
    [1, publish("y/a", "n")],
  ]);
  add("v4 leading U+FEFF kept in topic", [4, 4], [
    [0, c4()],
    [0, SUB_OK(1, "#", 0)],
    [1, c4("c1")],
    [1, publish([0xef, 0xbb, 0xbf, 0x61], "x")],
  ]);

  // ---- QoS flows and packet ids ----
  add("v4 QoS 1 publish to a subscriber", [4, 4], [
    [0, c4()],
    [0, SUB_OK(1, "q/#")],
    [1, c4("c1")],
    [1, publish("q/a", "m", { qos: 1, id: 7 })],
    [0, ack(0x40, 1)],
  ]);
  add("v4 QoS 2 inbound with a duplicate before PUBREL", [4, 4], [
    [0, c4()],
    [0, SUB_OK(1, "q/#", 0)],
    [1, c4("c1")],
    [1, publish("q/a", "m", { qos: 2, id: 9 })],
    [1, publish("q/a", "m", { qos: 2, id: 9, dup: true })],
    [1, ack(0x62, 9)],
    [1, ack(0x62, 9)],
  ]);
  add("v4 QoS 2 outbound flow", [4, 4], [
    [0, c4()],
    [0, SUB_OK(1, "q/#", 2)],
    [1, c4("c1")],
    [1, publish("q/a", "m", { qos: 2, id: 3 })],
    [1, ack(0x62, 3)],
    [0, ack(0x50, 1)],
    [0, ack(0x70, 1)],
  ]);
  add("v4 PUBREL for an unknown id", [4], [[0, c4()], [0, ack(0x62, 77)]]);
  add("v4 PUBACK for an unknown id", [4], [[0, c4()], [0, ack(0x40, 77)], [0, PINGREQ]]);
  add("v4 PUBLISH QoS 1 with packet id 0", [4], [[0, c4()], [
    0,
    publish("t", "x", { qos: 1, id: 0 }),
  ]]);
  add("v4 SUBSCRIBE with packet id 0", [4], [[0, c4()], [0, subscribe(0, [["t", 0]])]]);
  add("v4 overlapping subscriptions", [4, 4], [
    [0, c4()],
    [0, subscribe(1, [["o/#", 0], ["o/a", 1]])],
    [1, c4("c1")],
    [1, publish("o/a", "m", { qos: 1, id: 1 })],
  ]);
  add("v4 subscription downgrades QoS 2 to 1", [4, 4], [
    [0, c4()],
    [0, SUB_OK(1, "d/a", 1)],
    [1, c4("c1")],
    [1, publish("d/a", "m", { qos: 2, id: 1 })],
  ]);

  // ---- retained ----
  add("v4 retained message sent on subscribe", [4, 4], [
    [1, c4("c1")],
    [1, publish("r/a", "keep", { retain: true, qos: 1, id: 1 })],
    [0, c4()],
    [0, SUB_OK(1, "r/#")],
  ]);
  add("v4 retained message cleared by empty payload", [4, 4], [
    [1, c4("c1")],
    [1, publish("r/a", "keep", { retain: true })],
    [1, publish("r/a", "", { retain: true })],
    [1, PINGREQ],
    [0, c4()],
    [0, SUB_OK(1, "r/#")],
    [0, PINGREQ],
  ]);
  add("v4 resubscribe sends retained again", [4, 4], [
    [1, c4("c1")],
    [1, publish("r/a", "keep", { retain: true })],
    [1, PINGREQ],
    [0, c4()],
    [0, SUB_OK(1, "r/#", 0)],
    [0, SUB_OK(2, "r/#", 0)],
  ]);
  add("v4 live delivery of a retained publish has RETAIN 0", [4, 4], [
    [0, c4()],
    [0, SUB_OK(1, "r/#", 0)],
    [1, c4("c1")],
    [1, publish("r/b", "live", { retain: true })],
  ]);

  // ---- will, session, takeover ----
  const will = { topic: "w/a", payload: "gone", qos: 1 };
  add("v4 will published on socket close", [4, 4], [
    [0, c4()],
    [0, SUB_OK(1, "w/#")],
    [1, c4("c1", { will })],
    ["close", 1],
  ]);
  add("v4 will not published after DISCONNECT", [4, 4], [
    [0, c4()],
    [0, SUB_OK(1, "w/#")],
    [1, c4("c1", { will })],
    [1, DISCONNECT],
    [0, PINGREQ],
  ]);
  add("v4 will published after a protocol error", [4, 4], [
    [0, c4()],
    [0, SUB_OK(1, "w/#")],
    [1, c4("c1", { will })],
    [1, Uint8Array.from([0x00, 0])],
  ]);
  add("v4 will with a wildcard topic", [4], [[
    0,
    c4("c0", { will: { topic: "w/#", payload: "x" } }),
  ]]);
  add("v4 persistent session keeps subscription and queues QoS 1", [4, 4, 4], [
    [0, c4("p0", { clean: false })],
    [0, SUB_OK(1, "s/#")],
    [0, DISCONNECT],
    [1, c4("c1")],
    [1, publish("s/a", "queued", { qos: 1, id: 1 })],
    [2, c4("p0", { clean: false })],
  ]);
  add("v4 clean session reconnect has session present 0", [4, 4], [
    [0, c4("p0", { clean: false })],
    [0, DISCONNECT],
    [1, c4("p0", { clean: true })],
  ]);
  add("v4 takeover closes the first connection", [4, 4], [
    [0, c4("same")],
    [1, c4("same")],
    [1, PINGREQ],
  ]);
  add("v4 in-flight QoS 1 resent with DUP on reconnect", [4, 4, 4], [
    [0, c4("p0", { clean: false })],
    [0, SUB_OK(1, "s/#")],
    [1, c4("c1")],
    [1, publish("s/a", "m", { qos: 1, id: 1 })],
    ["close", 0],
    [2, c4("p0", { clean: false })],
  ]);

  // ---- MQTT 5 CONNECT ----
  add("v5 CONNECT valid", [5], [[0, c5()]]);
  add("v5 CONNECT empty id gets an assigned id", [5], [[0, c5("")]]);
  add("v5 CONNECT empty id, Clean Start 0", [5], [[0, c5("", { clean: false })]]);
  add("v5 CONNECT Receive Maximum 0", [5], [[0, c5("c0", { props: [0x21, ...u16(0)] })]]);
  add("v5 CONNECT Maximum Packet Size 0", [5], [[0, c5("c0", { props: [0x27, ...u32(0)] })]]);
  add("v5 CONNECT Request Problem Information 2", [5], [[0, c5("c0", { props: [0x17, 2] })]]);
  add("v5 CONNECT Request Response Information 2", [5], [[0, c5("c0", { props: [0x19, 2] })]]);
  add("v5 CONNECT Session Expiry twice", [5], [[
    0,
    c5("c0", { props: [0x11, ...u32(0), 0x11, ...u32(5)] }),
  ]]);
  add("v5 CONNECT Topic Alias (not a CONNECT property)", [5], [[
    0,
    c5("c0", { props: [0x23, ...u16(1)] }),
  ]]);
  add("v5 CONNECT unknown property 0x7f", [5], [[0, c5("c0", { props: [0x7f, 0] })]]);
  add("v5 CONNECT Authentication Method", [5], [[
    0,
    c5("c0", { props: [0x15, ...str("SCRAM-SHA-1")] }),
  ]]);
  add("v5 CONNECT will Payload Format 1 with bad UTF-8", [5], [[
    0,
    connect({
      v: 5,
      id: "c0",
      will: { topic: "w", payload: "\u00ff", props: [0x01, 1] },
      flags: 0x06,
    }),
  ], [0, PINGREQ]]);
  add("v5 CONNECT password without user name", [5], [[0, c5("c0", { pass: "p" })], [0, PINGREQ]]);
  add("v5 second CONNECT", [5], [[0, c5()], [0, c5()]]);
  add("v5 AUTH without enhanced auth", [5], [[0, c5()], [0, pkt(0xf0, [0x18, 0])]]);
  add("v5 AUTH with flags 1", [5], [[0, c5()], [0, Uint8Array.from([0xf1, 0])]]);
  add("v5 keepalive 0 server keep alive", [5], [[0, c5("c0", { ka: 0 })], [0, PINGREQ]]);

  // ---- MQTT 5 packets ----
  add("v5 PUBLISH Payload Format 2", [5], [[0, c5()], [
    0,
    publish("t", "x", { ...V5, props: [0x01, 2] }),
  ]]);
  add("v5 PUBLISH Payload Format 1 with bad UTF-8", [5], [[0, c5()], [
    0,
    publish("t", [0xff], { ...V5, qos: 1, id: 1, props: [0x01, 1] }),
  ]]);
  add("v5 PUBLISH with Subscription Identifier", [5], [[0, c5()], [
    0,
    publish("t", "x", { ...V5, props: [0x0b, 1] }),
  ]]);
  add("v5 PUBLISH with a wildcard Response Topic", [5], [[0, c5()], [
    0,
    publish("t", "x", { ...V5, qos: 1, id: 1, props: [0x08, ...str("r/#")] }),
  ]]);
  add("v5 PUBLISH Message Expiry twice", [5], [[0, c5()], [
    0,
    publish("t", "x", { ...V5, props: [0x02, ...u32(0), 0x02, ...u32(9)] }),
  ]]);
  add("v5 PUBLISH Session Expiry (not a PUBLISH property)", [5], [[0, c5()], [
    0,
    publish("t", "x", { ...V5, props: [0x11, ...u32(1)] }),
  ]]);
  add("v5 topic alias set then used", [5, 5], [
    [0, c5()],
    [0, SUB5(1, "ta/#", 0)],
    [1, c5("c1")],
    [1, publish("ta/a", "1", { ...V5, props: [0x23, ...u16(1)] })],
    [1, publish("", "2", { ...V5, props: [0x23, ...u16(1)] })],
  ]);
  add("v5 topic alias 0", [5], [[0, c5()], [
    0,
    publish("t", "x", { ...V5, props: [0x23, ...u16(0)] }),
  ]]);
  add("v5 topic alias above the maximum", [5], [[0, c5()], [
    0,
    publish("t", "x", { ...V5, props: [0x23, ...u16(1000)] }),
  ]]);
  add("v5 unknown topic alias with an empty topic", [5], [[0, c5()], [
    0,
    publish("", "x", { ...V5, props: [0x23, ...u16(1)] }),
  ]]);
  add("v5 PUBLISH QoS 1 packet id 0", [5], [[0, c5()], [
    0,
    publish("t", "x", { ...V5, qos: 1, id: 0 }),
  ]]);
  add("v5 No Local", [5], [[0, c5()], [0, SUB5(1, "nl/a", 0x04)], [0, publish("nl/a", "x", V5)], [
    0,
    PINGREQ,
  ]]);
  add("v5 Retain As Published", [5, 5], [
    [0, c5()],
    [0, SUB5(1, "rap/a", 0x08)],
    [1, c5("c1")],
    [1, publish("rap/a", "x", { ...V5, retain: true })],
  ]);
  add("v5 Retain Handling 1 and 2", [5, 5], [
    [1, c5("c1")],
    [1, publish("rh/a", "keep", { ...V5, retain: true })],
    [1, PINGREQ],
    [0, c5()],
    [0, SUB5(1, "rh/#", 0x10)],
    [0, SUB5(2, "rh/#", 0x10)],
    [0, SUB5(3, "rh/+", 0x20)],
  ]);
  add("v5 Retain Handling 3", [5], [[0, c5()], [0, SUB5(1, "t", 0x30)]]);
  add("v5 SUBSCRIBE reserved option bits", [5], [[0, c5()], [0, SUB5(1, "t", 0x40)]]);
  add("v5 Subscription Identifier delivered", [5, 5], [
    [0, c5()],
    [0, SUB5(1, "si/#", 0, [0x0b, 5])],
    [1, c5("c1")],
    [1, publish("si/a", "x", V5)],
  ]);
  add("v5 Subscription Identifier 0", [5], [[0, c5()], [0, SUB5(1, "t", 0, [0x0b, 0])]]);
  add("v5 SUBSCRIBE Subscription Identifier twice", [5], [[0, c5()], [
    0,
    SUB5(1, "t", 0, [0x0b, 1, 0x0b, 2]),
  ]]);
  add("v5 shared subscription delivery", [5, 5], [
    [0, c5()],
    [0, SUB5(1, "$share/g/sh/#", 1)],
    [1, c5("c1")],
    [1, publish("sh/a", "x", { ...V5, qos: 1, id: 1 })],
  ]);
  add("v5 shared subscription with No Local", [5], [[0, c5()], [0, SUB5(1, "$share/g/t", 0x05)]]);
  add("v5 malformed shared filters", [5], [[0, c5()], [
    0,
    subscribe(1, [["$share/g", 0], ["$share//a", 0], ["$share/g+/a", 0], ["$share/g/a", 0]], V5),
  ]]);
  add("v5 UNSUBSCRIBE unknown filter", [5], [[0, c5()], [0, unsubscribe(1, ["nope"], V5)]]);
  add("v5 SUBSCRIBE without filters", [5], [[0, c5()], [0, pkt(0x82, [0, 1, 0])]]);
  add("v5 message too large for the client's Maximum Packet Size", [5, 5], [
    [0, c5("c0", { props: [0x27, ...u32(20)] })],
    [0, SUB5(1, "big/#", 0)],
    [1, c5("c1")],
    [1, publish("big/a", "x".repeat(40), V5)],
    [1, publish("big/a", "s", V5)],
  ]);
  add("v5 client Receive Maximum 1 bounds QoS 1 deliveries", [5, 5], [
    [0, c5("c0", { props: [0x21, ...u16(1)] })],
    [0, SUB5(1, "rm/#", 1)],
    [1, c5("c1")],
    [1, publish("rm/a", "1", { ...V5, qos: 1, id: 1 })],
    [1, publish("rm/a", "2", { ...V5, qos: 1, id: 2 })],
    [0, ack(0x40, 1)],
  ]);
  add("v5 PUBREL for an unknown id", [5], [[0, c5()], [0, ack(0x62, 5)]]);
  add("v5 PUBACK with Reason String twice", [5], [[0, c5()], [
    0,
    ack(0x40, 5, 0, [0x1f, 0, 0, 0x1f, 0, 0]),
  ]]);
  add("v5 DISCONNECT 0x04 publishes the will", [5, 5], [
    [0, c5()],
    [0, SUB5(1, "w/#", 0)],
    [1, c5("c1", { will: { topic: "w/a", payload: "gone" } })],
    [1, pkt(0xe0, [0x04])],
  ]);
  add("v5 DISCONNECT Session Expiry after 0 at CONNECT", [5], [[0, c5()], [
    0,
    pkt(0xe0, [0, ...props([0x11, ...u32(10)])]),
  ]]);
  add("v5 DISCONNECT with Session Expiry twice", [5], [[0, c5()], [
    0,
    pkt(0xe0, [0, ...props([0x11, ...u32(0), 0x11, ...u32(0)])]),
  ]]);
  add("v5 persistent session resumed", [5, 5, 5], [
    [0, c5("p0", { clean: false, props: [0x11, ...u32(60)] })],
    [0, SUB5(1, "s/#", 1)],
    [0, DISCONNECT],
    [1, c5("c1")],
    [1, publish("s/a", "queued", { ...V5, qos: 1, id: 1 })],
    [2, c5("p0", { clean: false, props: [0x11, ...u32(60)] })],
  ]);
  add("v5 takeover sends DISCONNECT 0x8E", [5, 5], [[0, c5("same")], [1, c5("same")]]);
  add("v5 resend on reconnect respects the new Receive Maximum", [5, 5, 5], [
    [0, c5("p0", { clean: false, props: [0x11, ...u32(60)] })],
    [0, SUB5(1, "s/#", 1)],
    [1, c5("c1")],
    [1, publish("s/a", "1", { ...V5, qos: 1, id: 1 })],
    [1, publish("s/a", "2", { ...V5, qos: 1, id: 2 })],
    [1, publish("s/a", "3", { ...V5, qos: 1, id: 3 })],
    ["close", 0],
    [2, c5("p0", { clean: false, props: [0x11, ...u32(60), 0x21, ...u16(1)] })],
    [2, ack(0x40, 1)],
  ]);

  // ---- issue #14 item 1: malformed MQTT 5 property sections, every packet type ----
  const tb = (x: string) => [...te.encode(x)];
  const malformed5 = (name: string, bytes: Uint8Array) =>
    add(`v5 ${name}`, [5, 5], [
      [0, c5()],
      [0, SUB5(1, "#", 1)],
      [1, c5("c1")],
      [1, bytes],
      [0, PINGREQ],
    ]);
  malformed5(
    "PUBLISH Message Expiry overrunning a 1-byte Property Length (the issue's bytes)",
    pkt(0x32, [...str("topic"), 0x12, 0x34, 1, 0x02, ...tb("payload")]),
  );
  malformed5(
    "PUBLISH User Property without its value",
    pkt(0x32, [...str("t"), 0, 1, 4, 0x26, ...str("a"), ...tb("x")]),
  );
  malformed5("PUBLISH Content Type without its string", pkt(0x32, [...str("t"), 0, 1, 1, 0x03]));
  malformed5(
    "PUBLISH Content Type longer than its section",
    pkt(0x32, [...str("t"), 0, 1, 4, 0x03, 0, 5, 0x61, ...tb("bcdef")]),
  );
  malformed5("PUBLISH Property Length past the packet", pkt(0x30, [...str("t"), 9, 0x01, 0]));
  malformed5("PUBLISH unknown property 0x7f", pkt(0x30, [...str("t"), 2, 0x7f, 0, ...tb("x")]));
  malformed5(
    "PUBLISH Content Type of ill-formed UTF-8",
    pkt(0x30, [...str("t"), 4, 0x03, 0, 1, 0xff, ...tb("x")]),
  );
  malformed5(
    "SUBSCRIBE Property Length past the filters",
    pkt(0x82, [0, 1, 9, ...str("f"), 0]),
  );
  malformed5("UNSUBSCRIBE unknown property 0x7f", pkt(0xa2, [0, 1, 2, 0x7f, 0, ...str("f")]));
  malformed5("PUBACK Property Length past the end", pkt(0x40, [0, 1, 0, 5, 0x1f, 0]));
  malformed5("PUBREC User Property without its value", pkt(0x50, [0, 1, 0, 4, 0x26, 0, 1, 0x61]));
  malformed5("PUBREL unknown property 0x7f", pkt(0x62, [0, 1, 0, 2, 0x7f, 0]));
  malformed5(
    "PUBCOMP Reason String of ill-formed UTF-8",
    pkt(0x70, [0, 1, 0, 4, 0x1f, 0, 1, 0xc0]),
  );
  malformed5("DISCONNECT Session Expiry cut off", pkt(0xe0, [0x00, 3, 0x11, 0, 0]));
  malformed5("AUTH Authentication Method without its string", pkt(0xf0, [0x18, 1, 0x15]));
  add("v5 CONNECT property overrun", [5], [[
    0,
    pkt(0x10, [...str("MQTT"), 5, 0x02, 0, 0, 5, 0x11, 0, 0, ...str("c0")]),
  ]]);
  add("v5 CONNECT will property overrun", [5], [[
    0,
    pkt(0x10, [
      ...str("MQTT"),
      5,
      0x06,
      0,
      0,
      0,
      ...str("c0"),
      4,
      0x03,
      0,
      5,
      0x61,
      ...str("w"),
      ...str("x"),
    ]),
  ]]);

  // ---- items 2, 3: truncated and misplaced acknowledgements ----
  const raw = (...b: number[]) => Uint8Array.from(b);
  for (
    const [name, bytes] of [
      ["PUBREC 50 00", raw(0x50, 0)],
      ["PUBREL 62 00", raw(0x62, 0)],
      ["PUBACK 40 00", raw(0x40, 0)],
      ["PUBACK 40 01 00", raw(0x40, 1, 0)],
      ["PUBCOMP 70 01 00", raw(0x70, 1, 0)],
      ["PUBACK with a byte after its properties", raw(0x40, 5, 0, 1, 0, 0, 0xff)],
      ["PUBCOMP with a byte after its properties", raw(0x70, 5, 0, 1, 0, 0, 0xff)],
      ["PUBACK of remaining length 3 (reason code only)", raw(0x40, 3, 0, 1, 0x10)],
      ["PUBACK with packet id 0", raw(0x40, 2, 0, 0)],
    ] as Array<[string, Uint8Array]>
  ) add(`v5 ${name}`, [5], [[0, c5()], [0, bytes], [0, PINGREQ]]);
  for (
    const [name, bytes] of [
      ["PUBACK with packet id 0", raw(0x40, 2, 0, 0)],
      ["PUBREC with packet id 0", raw(0x50, 2, 0, 0)],
      ["PUBREL with packet id 0", raw(0x62, 2, 0, 0)],
      ["PUBCOMP with packet id 0", raw(0x70, 2, 0, 0)],
    ] as Array<[string, Uint8Array]>
  ) add(`v4 ${name}`, [4], [[0, c4()], [0, bytes], [0, PINGREQ]]);
  const delivery = (v: 4 | 5, qos: number, reply: Uint8Array) =>
    [
      [0, v === 5 ? c5() : c4()],
      [0, v === 5 ? SUB5(1, "k/#", qos) : SUB_OK(1, "k/#", qos)],
      [1, v === 5 ? c5("c1") : c4("c1")],
      [1, publish("k/a", "m", { qos, id: 1, v5: v === 5 })],
      [0, reply],
      [0, PINGREQ],
    ] as Step[];
  add("v4 PUBREC for a QoS 1 delivery", [4, 4], delivery(4, 1, ack(0x50, 1)));
  add("v4 PUBACK for a QoS 2 delivery", [4, 4], delivery(4, 2, ack(0x40, 1)));
  add("v4 PUBCOMP before PUBREC", [4, 4], delivery(4, 2, ack(0x70, 1)));
  add("v5 PUBREC for a QoS 1 delivery", [5, 5], delivery(5, 1, ack(0x50, 1)));
  add("v5 PUBREC 0x80 for a QoS 2 delivery: no PUBREL", [5, 5], delivery(5, 2, ack(0x50, 1, 0x80)));
  add("v5 PUBREC 0x80 for an unknown id: no PUBREL", [5], [
    [0, c5()],
    [0, ack(0x50, 9, 0x80)],
    [0, PINGREQ],
  ]);
  add("v4 UNSUBSCRIBE empty filter", [4], [[0, c4()], [0, unsubscribe(1, [""])], [0, PINGREQ]]);
  add("v4 UNSUBSCRIBE a/#/b", [4], [[0, c4()], [0, unsubscribe(1, ["a/#/b"])], [0, PINGREQ]]);
  add("v5 UNSUBSCRIBE empty filter", [5], [[0, c5()], [0, unsubscribe(1, [""], V5)], [
    0,
    PINGREQ,
  ]]);

  // ---- item 4: CONNECT fields without their flag; a small client Maximum Packet Size ----
  const tail = (o: ConnectOpts, extra: Bytes) => {
    const c = connect(o);
    return pkt(c[0], [...c.subarray(c[1] & 0x80 ? 3 : 2), ...extra]);
  };
  add("v4 CONNECT user name present, User Name Flag 0", [4], [[0, tail({ id: "c0" }, str("u"))]]);
  add("v4 CONNECT password present, Password Flag 0", [4], [[
    0,
    tail({ id: "c0", user: "u" }, str("p")),
  ]]);
  add("v5 CONNECT user name present, User Name Flag 0", [5], [[
    0,
    tail({ v: 5, id: "c0" }, str("u")),
  ]]);
  add("v5 CONNECT password present, Password Flag 0", [5], [[
    0,
    tail({ v: 5, id: "c0", user: "u" }, str("p")),
  ]]);
  add("v5 CONNECT Maximum Packet Size 12", [5], [[
    0,
    c5("c0", { props: [0x27, ...u32(12)] }),
  ], [0, PINGREQ]]);
  add("v5 CONNECT Maximum Packet Size 12, empty client id", [5], [[
    0,
    c5("", { props: [0x27, ...u32(12)] }),
  ], [0, PINGREQ]]);

  // ---- item 5: MQTT 3.1 has no 3.1.1 flag rules ----
  add("v3 PUBREL sent again with DUP", [3], [
    [0, connect({ v: 3, id: "c0" })],
    [0, publish("q/a", "m", { qos: 2, id: 7 })],
    [0, pkt(0x6a, [0, 7])],
  ]);
  add("v3 CONNECT reserved flag set", [3], [[0, connect({ v: 3, id: "c0", flags: 0x03 })], [
    0,
    PINGREQ,
  ]]);
  add("v3 SUBSCRIBE with DUP", [3], [[0, connect({ v: 3, id: "c0" })], [
    0,
    subscribe(1, [["t", 0]], { first: 0x8a }),
  ]]);
  add("v4 PUBREL with DUP", [4], [
    [0, c4()],
    [0, publish("q/a", "m", { qos: 2, id: 7 })],
    [0, pkt(0x6a, [0, 7])],
  ]);

  // ---- item 6: wills on takeover and with Session Expiry 0 ----
  const persistent = [0x11, ...u32(60)];
  const willOf = (delay: number) => ({
    topic: "w/a",
    payload: "gone",
    props: delay ? [0x18, ...u32(delay)] : [],
  });
  add("v5 takeover resuming the session: will (delay 0) not published", [5, 5, 5], [
    [0, c5()],
    [0, SUB5(1, "w/#", 0)],
    [1, c5("p1", { clean: false, props: persistent, will: willOf(0) })],
    [2, c5("p1", { clean: false, props: persistent })],
    [0, PINGREQ],
  ]);
  add("v5 takeover resuming the session: will (delay 1) not published", [5, 5, 5], [
    [0, c5()],
    [0, SUB5(1, "w/#", 0)],
    [1, c5("p1", { clean: false, props: persistent, will: willOf(1) })],
    [2, c5("p1", { clean: false, props: persistent })],
    ["wait", 1500],
    [0, PINGREQ],
  ]);
  add("v5 takeover with Clean Start 1: delayed will published at once", [5, 5, 5], [
    [0, c5()],
    [0, SUB5(1, "w/#", 0)],
    [1, c5("p1", { clean: false, props: persistent, will: willOf(60) })],
    [2, c5("p1")],
    [0, PINGREQ],
  ]);
  add("v4 takeover resuming the session (clean session 0): will", [4, 4, 4], [
    [0, c4()],
    [0, SUB_OK(1, "w/#", 0)],
    [1, c4("p1", { clean: false, will: { topic: "w/a", payload: "gone" } })],
    [2, c4("p1", { clean: false })],
    [0, PINGREQ],
  ]);
  add("v5 Will Delay 1 with Session Expiry 0: socket closed, then Clean Start 1", [5, 5, 5], [
    [0, c5()],
    [0, SUB5(1, "w/#", 0)],
    [1, c5("p1", { will: willOf(1) })],
    ["close", 1],
    [2, c5("p1")],
    ["wait", 1500],
    [0, PINGREQ],
  ]);

  // ---- item 8: where the spec leaves a choice ----
  add("v5 CONNACK from a client", [5], [[0, c5()], [0, raw(0x20, 3, 0, 0, 0)]]);
  add("v5 SUBACK from a client", [5], [[0, c5()], [0, raw(0x90, 4, 0, 1, 0, 0)]]);
  add("v5 PINGRESP from a client", [5], [[0, c5()], [0, raw(0xd0, 0)]]);
  add("v4 retained messages to a new subscriber, order", [4, 4], [
    [1, c4("c1")],
    [1, publish("r/b/x", "1", { retain: true })],
    [1, publish("r/a", "2", { retain: true })],
    [1, publish("r/b/y", "3", { retain: true })],
    [1, PINGREQ],
    [0, c4()],
    [0, SUB_OK(1, "r/#", 0)],
  ]);
  add("v5 PUBLISH QoS 1 to $SYS/x", [5], [[0, c5()], [
    0,
    publish("$SYS/x", "m", { ...V5, qos: 1, id: 1 }),
  ]]);
  add("v5 PUBLISH QoS 1 to $x/a", [5, 5], [
    [0, c5()],
    [0, SUB5(1, "$x/#", 0)],
    [1, c5("c1")],
    [1, publish("$x/a", "m", { ...V5, qos: 1, id: 1 })],
  ]);
  add("v4 PUBLISH QoS 1 to $SYS/x", [4], [[0, c4()], [
    0,
    publish("$SYS/x", "m", { qos: 1, id: 1 }),
  ]]);
  add("v5 will topic $CONTROL/x", [5], [[
    0,
    c5("c0", { will: { topic: "$CONTROL/x", payload: "w" } }),
  ]]);
  add("v4 will topic $CONTROL/x", [4], [[
    0,
    c4("c0", { will: { topic: "$CONTROL/x", payload: "w" } }),
  ]]);
  add("v5 will topic $SYS/x", [5], [[0, c5("c0", { will: { topic: "$SYS/x", payload: "w" } })]]);
  const deep = (n: number) => Array.from({ length: n }, () => "a").join("/");
  add("v5 PUBLISH to a topic of 201 levels", [5], [[0, c5()], [
    0,
    publish(deep(201), "m", { ...V5, qos: 1, id: 1 }),
  ]]);
  add("v5 PUBLISH to a topic of 202 levels", [5], [[0, c5()], [
    0,
    publish(deep(202), "m", { ...V5, qos: 1, id: 1 }),
  ]]);
  add("v5 SUBSCRIBE to a filter of 202 levels", [5], [[0, c5()], [0, SUB5(1, deep(202), 0)]]);
  add("v5 PUBLISH QoS 1 without subscribers", [5], [[0, c5()], [
    0,
    publish("nobody/here", "m", { ...V5, qos: 1, id: 1 }),
  ]]);
  add("v4 PINGREQ with a body byte (3.1.1)", [4], [[0, c4()], [0, raw(0xc0, 1, 0)]]);
  add("v4 DISCONNECT with a body byte", [4, 4], [
    [0, c4()],
    [0, SUB_OK(1, "w/#", 0)],
    [1, c4("c1", { will })],
    [1, raw(0xe0, 1, 0)],
    [0, PINGREQ],
  ]);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Reading what the server sent

const NAMES = [
  "RESERVED",
  "CONNECT",
  "CONNACK",
  "PUBLISH",
  "PUBACK",
  "PUBREC",
  "PUBREL",
  "PUBCOMP",
  "SUBSCRIBE",
  "SUBACK",
  "UNSUBSCRIBE",
  "UNSUBACK",
  "PINGREQ",
  "PINGRESP",
  "DISCONNECT",
  "AUTH",
];
const hex = (n: number) => n.toString(16).padStart(2, "0");
const hexBytes = (b: Uint8Array) => [...b].map(hex).join(" ");

/** Property ids of a section at `i`, and the offset after it (values of some kept). */
function readProps(b: Uint8Array, i: number): { ids: string[]; end: number } {
  let len = 0;
  let mul = 1;
  for (;;) {
    const x = b[i++];
    len += (x & 0x7f) * mul;
    mul *= 128;
    if (!(x & 0x80) || i >= b.length) break;
  }
  const end = i + len;
  const ids: string[] = [];
  while (i < end) {
    const id = b[i++];
    let size = 0;
    if ([0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2a].includes(id)) size = 1;
    else if ([0x13, 0x21, 0x22, 0x23].includes(id)) size = 2;
    else if ([0x02, 0x11, 0x18, 0x27].includes(id)) size = 4;
    else if (id === 0x0b) {
      let v = 0;
      let m = 1;
      for (;;) {
        const x = b[i++];
        v += (x & 0x7f) * m;
        m *= 128;
        if (!(x & 0x80)) break;
      }
      ids.push(`subId=${v}`);
      continue;
    } else if (id === 0x26) {
      size = 4 + ((b[i] << 8) | b[i + 1]) +
        ((b[i + 2 + ((b[i] << 8) | b[i + 1])] << 8) | b[i + 3 + ((b[i] << 8) | b[i + 1])]);
    } else size = 2 + ((b[i] << 8) | b[i + 1]);
    ids.push(hex(id));
    i += size;
  }
  return { ids, end };
}

/**
 * One server packet as a short, comparable line: type, flags and reason codes. Values a broker may
 * choose (its own packet ids, property values of CONNACK, reason strings) are left out.
 */
function describe(f: Uint8Array, v: 3 | 4 | 5): string {
  const type = f[0] >> 4;
  let i = 1;
  while (f[i] & 0x80) i++;
  i++;
  const rl = f.length - i;
  const name = NAMES[type];
  switch (type) {
    case 2: {
      const out = `CONNACK sp=${f[i] & 1} rc=${hex(f[i + 1])}`;
      if (rl <= 2) return out;
      const { ids } = readProps(f, i + 2);
      // Only the Assigned Client Identifier: the other CONNACK properties describe the broker
      // (limits, Server Keep Alive, which mosquitto always sends: MQTT 5 §3.2.2.3.14 MAY).
      const kept = ids.filter((x) => x === "12");
      return kept.length ? `${out} props=${kept.join(",")}` : out;
    }
    case 3: {
      const qos = (f[0] >> 1) & 3;
      const tlen = (f[i] << 8) | f[i + 1];
      const topic = new TextDecoder().decode(f.subarray(i + 2, i + 2 + tlen));
      let j = i + 2 + tlen + (qos ? 2 : 0);
      let ids: string[] = [];
      if (v === 5) {
        const r = readProps(f, j);
        ids = r.ids.filter((x) => x !== "23"); // outbound topic aliases are the broker's choice
        j = r.end;
      }
      const payload = new TextDecoder().decode(f.subarray(j));
      return `PUBLISH ${JSON.stringify(topic)} q${qos}${f[0] & 8 ? " dup" : ""}${
        f[0] & 1 ? " retain" : ""
      } ${JSON.stringify(payload.length > 24 ? payload.slice(0, 24) + "…" : payload)}${
        ids.length ? ` props=${ids.join(",")}` : ""
      }`;
    }
    case 4:
    case 5:
    case 6:
    case 7: {
      const id = (f[i] << 8) | f[i + 1];
      return `${name} id=${id}${rl > 2 ? ` rc=${hex(f[i + 2])}` : ""}`;
    }
    case 9:
    case 11: {
      let j = i + 2;
      if (v === 5) j = readProps(f, j).end;
      const codes = [...f.subarray(j)].map(hex).join(",");
      return `${name} [${codes}]`;
    }
    case 14:
      return rl > 0 ? `DISCONNECT rc=${hex(f[i])}` : "DISCONNECT";
    default:
      return name;
  }
}

// ---------------------------------------------------------------------------------------------
// Playing a scenario

interface Peer {
  name: string;
  port: number;
  close(): Promise<void>;
}

async function startFerry(): Promise<Peer> {
  const core = new Core({ anonymous: true, log: new Logger({ level: "error", sink: () => {} }) });
  const server = new MqttServer(core, { hostname: "127.0.0.1", port: 0 });
  const { port } = await server.listen();
  return {
    name: "ferry",
    port,
    async close() {
      await server.close();
      await core.close();
    },
  };
}

async function startMosq(): Promise<Peer> {
  const m = await startMosquitto();
  return { name: "mosquitto", port: m.port, close: async () => await m[Symbol.asyncDispose]() };
}

class Client {
  #conn: Deno.TcpConn;
  #buf = new Uint8Array(0);
  events: string[] = [];
  closed = false;
  done: Promise<void>;

  constructor(conn: Deno.TcpConn, readonly version: 3 | 4 | 5) {
    this.#conn = conn;
    this.done = this.#read();
  }

  async #read() {
    const chunk = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        const b = new Uint8Array(this.#buf.length + n);
        b.set(this.#buf);
        b.set(chunk.subarray(0, n), this.#buf.length);
        this.#buf = b;
        this.#frames();
      }
    } catch { /* reset, or closed by us */ }
    if (!this.closed) {
      if (this.#buf.length) this.events.push(`TRUNCATED(${hexBytes(this.#buf)})`);
      this.events.push("closed");
    }
    this.closed = true;
  }

  #frames() {
    for (;;) {
      const b = this.#buf;
      if (b.length < 2) return;
      let len = 0;
      let mul = 1;
      let i = 1;
      for (;;) {
        if (i >= b.length) return;
        const x = b[i++];
        len += (x & 0x7f) * mul;
        mul *= 128;
        if (!(x & 0x80)) break;
      }
      if (b.length < i + len) return;
      const frame = b.subarray(0, i + len);
      const bad = checkServerPacket(frame, this.version);
      this.events.push(bad ? `MALFORMED(${bad})` : describe(frame, this.version));
      this.#buf = b.slice(i + len);
    }
  }

  async send(bytes: Uint8Array) {
    try {
      let off = 0;
      while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
    } catch { /* the server closed */ }
  }

  /** Closes our side (the server's close is not recorded after this). */
  close() {
    if (this.closed) return;
    this.closed = true;
    try {
      this.#conn.close();
    } catch { /* closed */ }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How long nothing new must arrive before a step counts as settled (`--quiet`). */
let QUIET_MS = 150;

/** Waits until no client has seen anything new for `quietMs` (at most `maxMs`). */
async function settle(clients: Client[], quietMs = QUIET_MS, maxMs = 10 * QUIET_MS) {
  const count = () => clients.reduce((n, c) => n + c.events.length, 0);
  const end = Date.now() + maxMs;
  let last = count();
  let quietSince = Date.now();
  while (Date.now() < end) {
    await sleep(15);
    const n = count();
    if (n !== last) {
      last = n;
      quietSince = Date.now();
    } else if (Date.now() - quietSince >= quietMs) return;
  }
}

/** Plays a scenario; returns the transcript, one line per step with what each client saw. */
async function play(sc: Scenario, peer: Peer): Promise<string[]> {
  const clients: Array<Client | undefined> = [];
  const all = () => clients.filter((c): c is Client => c !== undefined);
  const lines: string[] = [];
  const seen = new Map<Client, number>();
  for (const [k, step] of sc.steps.entries()) {
    if (step[0] === "wait") await sleep(step[1]);
    else if (step[0] === "close") clients[step[1]]?.close();
    else {
      const [ci, bytes] = step;
      let c = clients[ci];
      if (!c) {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: peer.port });
        c = clients[ci] = new Client(conn, sc.clients[ci]);
      }
      await c.send(bytes);
    }
    await settle(all());
    const got: string[] = [];
    for (const [i, c] of clients.entries()) {
      if (!c) continue;
      const from = seen.get(c) ?? 0;
      const evs = c.events.slice(from);
      seen.set(c, c.events.length);
      if (evs.length) got.push(`c${i}: ${evs.join(" | ")}`);
    }
    lines.push(`${k}: ${got.join("; ") || "-"}`);
  }
  for (const c of all()) c.close();
  await Promise.all(all().map((c) => c.done));
  return lines;
}

// ---------------------------------------------------------------------------------------------

/**
 * The differences "Differences from the reference broker" in `docs/mqtt.md` argues, by scenario
 * name: the row of that table each belongs to.
 */
export const KNOWN: Record<string, string> = {
  "v3 client id of 24 characters": "3.1 client id of 24 characters",
  "v4 PINGREQ with flags 1": "reserved fixed-header flags",
  "v4 PUBLISH QoS 0 with DUP": "3.1.1 PUBLISH QoS 0 with DUP",
  "v4 Remaining Length not minimal (PINGREQ 80 00)": "Remaining Length not minimal",
  "v4 PUBACK with Remaining Length 3": "3.1.1 acknowledgement of the wrong length",
  "v4 oversize CONNECT length announced": "CONNECT announcing 268 MB",
  "v5 SUBSCRIBE to a filter of 202 levels": "a limit on topic levels",
  "v4 QoS 2 inbound with a duplicate before PUBREL": "QoS 2 delivery on PUBLISH (method B)",
  "v4 QoS 2 outbound flow": "QoS 2 delivery on PUBLISH (method B)",
  "v4 subscription downgrades QoS 2 to 1": "QoS 2 delivery on PUBLISH (method B)",
  "v5 CONNECT Receive Maximum 0": "CONNACK before closing a refused v5 CONNECT",
  "v5 CONNECT Maximum Packet Size 0": "CONNACK before closing a refused v5 CONNECT",
  "v5 second CONNECT": "DISCONNECT before closing (v5)",
  "v5 AUTH without enhanced auth": "DISCONNECT before closing (v5)",
  "v5 AUTH with flags 1": "DISCONNECT before closing (v5)",
  "v5 PUBLISH Message Expiry twice": "DISCONNECT before closing (v5)",
  "v5 SUBSCRIBE Subscription Identifier twice": "DISCONNECT before closing (v5)",
  "v5 PUBACK with Reason String twice": "DISCONNECT before closing (v5)",
  "v5 DISCONNECT with Session Expiry twice": "DISCONNECT before closing (v5)",
  "v5 CONNACK from a client": "DISCONNECT before closing (v5)",
  "v5 SUBACK from a client": "DISCONNECT before closing (v5)",
  "v5 PINGRESP from a client": "DISCONNECT before closing (v5)",
  "v5 takeover sends DISCONNECT 0x8E": "DISCONNECT before closing (v5)",
  "v5 PUBLISH Payload Format 2": "v5 Payload Format Indicator 2",
  "v5 PUBLISH Payload Format 1 with bad UTF-8": "v5 payload not UTF-8 under Payload Format 1",
  "v5 PUBLISH with a wildcard Response Topic": "v5 wildcard Response Topic",
  "v5 PUBLISH with Subscription Identifier": "v5 PUBLISH with a Subscription Identifier",
  "v5 topic alias 0": "v5 reason codes the spec names",
  "v5 Retain Handling 3": "v5 reason codes the spec names",
  "v5 Subscription Identifier 0": "v5 reason codes the spec names",
  "v5 SUBSCRIBE without filters": "v5 reason codes the spec names",
  "v5 shared subscription with No Local": "v5 No Local on a shared subscription",
  "v5 PUBREL for an unknown id": "v5 PUBREL for an unknown packet id",
  "v5 resend on reconnect respects the new Receive Maximum":
    "v5 resend with a lower Receive Maximum",
  "v4 $-topic not matched by #": "$ topics published by clients",
  "v5 PUBLISH QoS 1 to $x/a": "$ topics published by clients",
  "v5 PUBLISH QoS 1 without subscribers": "PUBACK 0x10 No matching subscribers",
  "v4 retained messages to a new subscriber, order": "retained messages in store order",
  "v4 PINGREQ with a body byte": "3.1.1 PINGREQ with a body",
  "v4 PINGREQ with a body byte (3.1.1)": "3.1.1 PINGREQ with a body",
  "v4 PUBACK for a QoS 2 delivery": "acknowledgement of the wrong kind",
  "v4 PUBCOMP before PUBREC": "acknowledgement of the wrong kind",
  "v5 PUBREC for a QoS 1 delivery": "DISCONNECT before closing (v5)",
  "v5 PUBREC 0x80 for a QoS 2 delivery: no PUBREL": "QoS 2 delivery on PUBLISH (method B)",
  "v5 CONNECT Maximum Packet Size 12": "CONNACK that fits the client's Maximum Packet Size",
  "v5 CONNECT Maximum Packet Size 12, empty client id":
    "CONNACK that fits the client's Maximum Packet Size",
  "v5 takeover resuming the session: will (delay 0) not published":
    "DISCONNECT before closing (v5)",
  "v5 takeover resuming the session: will (delay 1) not published":
    "DISCONNECT before closing (v5)",
  "v5 takeover with Clean Start 1: delayed will published at once":
    "delayed will when the session ends",
  "v5 Will Delay 1 with Session Expiry 0: socket closed, then Clean Start 1":
    "delayed will when the session ends",
  "v4 takeover resuming the session (clean session 0): will":
    "will of a 3.1.1 connection taken over",
  "v5 will topic $CONTROL/x": "$ will topics",
  "v4 will topic $CONTROL/x": "$ will topics",
  "v5 will topic $SYS/x": "$ will topics",
  "v5 PUBLISH to a topic of 201 levels": "PUBACK 0x10 No matching subscribers",
  "v5 PUBLISH to a topic of 202 levels": "a limit on topic levels",
  "v5 PUBLISH Content Type of ill-formed UTF-8": "DISCONNECT before closing (v5)",
  "v5 PUBACK Property Length past the end": "DISCONNECT before closing (v5)",
  "v5 PUBREC User Property without its value": "DISCONNECT before closing (v5)",
  "v5 PUBREL unknown property 0x7f": "DISCONNECT before closing (v5)",
  "v5 PUBCOMP Reason String of ill-formed UTF-8": "DISCONNECT before closing (v5)",
  "v5 DISCONNECT Session Expiry cut off": "DISCONNECT before closing (v5)",
  "v5 AUTH Authentication Method without its string": "DISCONNECT before closing (v5)",
  "v5 PUBREC 50 00": "DISCONNECT before closing (v5)",
  "v5 PUBREL 62 00": "DISCONNECT before closing (v5)",
  "v5 PUBACK 40 00": "DISCONNECT before closing (v5)",
  "v5 PUBACK 40 01 00": "DISCONNECT before closing (v5)",
  "v5 PUBCOMP 70 01 00": "DISCONNECT before closing (v5)",
  "v5 PUBACK with a byte after its properties": "DISCONNECT before closing (v5)",
  "v5 PUBCOMP with a byte after its properties": "DISCONNECT before closing (v5)",
  "v5 PUBACK with packet id 0": "DISCONNECT before closing (v5)",
};

/** Plays a scenario on fresh brokers of both kinds. */
async function playBoth(sc: Scenario): Promise<[string[], string[]]> {
  const [ferry, mosq] = await Promise.all([startFerry(), startMosq()]);
  try {
    return await Promise.all([play(sc, ferry), play(sc, mosq)]);
  } finally {
    await Promise.all([ferry.close(), mosq.close()]);
  }
}

if (import.meta.main) {
  const args = Deno.args;
  const only = args.includes("--only") ? args[args.indexOf("--only") + 1] : undefined;
  if (args.includes("--quiet")) QUIET_MS = Number(args[args.indexOf("--quiet") + 1]);
  const list = scenarios().filter((s) => !only || s.name.includes(only));
  const differ: string[] = [];
  const undocumented: string[] = [];
  const malformed: string[] = [];
  const rows: string[] = [];
  for (const sc of list) {
    let a: string[] = [];
    let b: string[] = [];
    let same = false;
    for (let attempt = 0; attempt < 3 && !same; attempt++) {
      [a, b] = await playBoth(sc);
      same = a.join("\n") === b.join("\n");
    }
    if (a.some((l) => /MALFORMED|TRUNCATED/.test(l))) malformed.push(sc.name);
    if (!same) {
      differ.push(sc.name);
      if (!KNOWN[sc.name]) undocumented.push(sc.name);
    }
    if (!same || args.includes("--all")) {
      const verdict = same
        ? "same"
        : KNOWN[sc.name]
        ? `DIFFERS (${KNOWN[sc.name]})`
        : "DIFFERS, UNDOCUMENTED";
      rows.push(`### ${verdict}: ${sc.name}`);
      for (let i = 0; i < a.length; i++) {
        if (a[i] === b[i]) rows.push(`  = ${a[i]}`);
        else rows.push(`  ferry     ${a[i]}`, `  mosquitto ${b[i]}`);
      }
    }
  }
  console.log(rows.join("\n"));
  console.log(
    `\n${list.length} scenarios, ${differ.length} differ: ${
      differ.length - undocumented.length
    } documented in docs/mqtt.md, ${undocumented.length} undocumented`,
  );
  for (const name of undocumented) console.log(`  undocumented: ${name}`);
  console.log(`Ferry sent a malformed or truncated packet in ${malformed.length} scenarios`);
  for (const name of malformed) console.log(`  malformed: ${name}`);
  if (undocumented.length || malformed.length) Deno.exit(1);
}
