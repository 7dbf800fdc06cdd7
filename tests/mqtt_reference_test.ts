/**
 * Ferry beside the reference broker (issue #14): the same raw bytes go to a Ferry MQTT listener
 * and to a real mosquitto on a free port, and what each sends back is compared byte for byte
 * (every packet read strictly, tests/_mqtt_wire.ts). These are the cases where the spec leaves a
 * choice and Ferry takes mosquitto's, or where both follow a rule Ferry once broke; the deliberate
 * differences are in docs/mqtt.md ("Differences from the reference broker") and
 * bench/mqtt_differential.ts.
 *
 * @module
 */

import type { IConnackPacket } from "mqtt-packet";
import { assert, assertEquals } from "./_assert.ts";
import { mqttString, RawClient, rawPacket, startMqtt } from "./_mqtt_harness.ts";
import { startMosquitto } from "./_mosquitto.ts";
import type { ProtocolVersion } from "../src/protocols/mqtt/mod.ts";

const hexOf = (f: Uint8Array): string =>
  [...f].map((x) => x.toString(16).padStart(2, "0")).join(" ");

/** What a server sent on one connection: its frames in hex, and whether it closed. */
interface Transcript {
  frames: string[];
  closed: boolean;
}

/**
 * Runs `play` against a fresh Ferry listener and a fresh mosquitto and returns both transcripts of
 * the connection `play` returns.
 */
async function both(
  play: (open: (v: ProtocolVersion) => Promise<RawClient>) => Promise<RawClient>,
): Promise<{ ferry: Transcript; mosquitto: Transcript }> {
  await using ferry = await startMqtt();
  await using mosq = await startMosquitto();
  const run = async (port: number): Promise<Transcript> => {
    const opened: RawClient[] = [];
    try {
      const r = await play(async (v) => {
        const c = await RawClient.connect(port, v);
        opened.push(c);
        return c;
      });
      assertEquals(r.wireProblems, []);
      return { frames: r.frames.map(hexOf), closed: r.closed };
    } finally {
      for (const c of opened) c.close();
    }
  };
  return { ferry: await run(ferry.port), mosquitto: await run(mosq.port) };
}

/** A CONNECT "MQTT" level 4/5 (or "MQIsdp" 3) with `flags`, keepalive 0, id, then `tail`. */
function connectRaw(v: ProtocolVersion, flags: number, id: string, tail: number[] = []) {
  const name = v === 3 ? "MQIsdp" : "MQTT";
  const props = v === 5 ? [0] : [];
  return rawPacket(0x10, [
    ...mqttString(name),
    v,
    flags,
    0,
    0,
    ...props,
    ...mqttString(id),
    ...tail,
  ]);
}

for (const v of [4, 5] as const) {
  Deno.test(`[MQTT-3.1.2-${v === 4 ? 18 : 16}] v${v}: a user name without its flag closes the connection without CONNACK, as mosquitto`, async () => {
    const t = await both(async (open) => {
      const r = await open(v);
      await r.send(connectRaw(v, 0x02, "un", mqttString("user")));
      await r.waitClosed();
      return r;
    });
    assertEquals(t.ferry, { frames: [], closed: true });
    assertEquals(t.ferry, t.mosquitto);
  });

  Deno.test(`[MQTT-3.1.2-${v === 4 ? 20 : 18}] v${v}: a password without its flag closes the connection without CONNACK, as mosquitto`, async () => {
    const t = await both(async (open) => {
      const r = await open(v);
      await r.send(connectRaw(v, 0x82, "pw", [...mqttString("u"), ...mqttString("p")]));
      await r.waitClosed();
      return r;
    });
    assertEquals(t.ferry, { frames: [], closed: true });
    assertEquals(t.ferry, t.mosquitto);
  });

  Deno.test(`[MQTT-4.7.1-2] [MQTT-4.8.0-1] v${v}: a SUBSCRIBE with a misplaced # closes the connection, as mosquitto`, async () => {
    const t = await both(async (open) => {
      const r = await open(v);
      await r.send(connectRaw(v, 0x02, "sf"));
      await r.next();
      const props = v === 5 ? [0] : [];
      await r.send(
        rawPacket(0x82, [0, 5, ...props, ...mqttString("ok"), 1, ...mqttString("a/#/b"), 1]),
      );
      await r.waitClosed();
      return r;
    });
    // 3.1.1: closed without SUBACK; v5: DISCONNECT 0x81 Malformed Packet first.
    assertEquals(t.ferry.frames.slice(1).map((f) => f.slice(0, 2)), v === 5 ? ["e0"] : []);
    assertEquals(t.ferry.closed, true);
    if (v === 5) {
      // mosquitto's DISCONNECT carries no properties, Ferry's a Reason String: compare the code.
      assertEquals(t.mosquitto.frames.slice(1).map((f) => f.split(" ")[2]), ["81"]);
      assertEquals(t.ferry.frames.slice(1).map((f) => f.split(" ")[2]), ["81"]);
    } else assertEquals(t.ferry, t.mosquitto);
  });
}

Deno.test("MQTT 3.1 §3.6: a PUBREL resent with DUP gets PUBCOMP, as mosquitto", async () => {
  const t = await both(async (open) => {
    const r = await open(3);
    await r.send(connectRaw(3, 0x02, "d31"));
    await r.next();
    await r.send(rawPacket(0x34, [...mqttString("q31/a"), 0, 7, 0x6d])); // QoS 2, id 7
    await r.next();
    await r.send(Uint8Array.from([0x6a, 2, 0, 7])); // PUBREL with DUP 1
    await r.next();
    return r;
  });
  assertEquals(t.ferry, { frames: ["20 02 00 00", "50 02 00 07", "70 02 00 07"], closed: false });
  assertEquals(t.ferry, t.mosquitto);
});

Deno.test("MQTT 3.1 §3.1: a CONNECT with the reserved flag bit set is accepted, as mosquitto", async () => {
  const t = await both(async (open) => {
    const r = await open(3);
    await r.send(connectRaw(3, 0x03, "r31"));
    await r.next();
    return r;
  });
  assertEquals(t.ferry, { frames: ["20 02 00 00"], closed: false });
  assertEquals(t.ferry, t.mosquitto);
});

Deno.test("[MQTT-3.1.3-6] [MQTT-3.2.2-16] v5: an empty client id with Clean Start 0 is accepted with an Assigned Client Identifier, as mosquitto", async () => {
  const acks: IConnackPacket[] = [];
  await both(async (open) => {
    const r = await open(5);
    // Clean Start 0, Session Expiry Interval 60, client id ""
    await r.send(rawPacket(0x10, [...mqttString("MQTT"), 5, 0, 0, 0, 5, 0x11, 0, 0, 0, 60, 0, 0]));
    acks.push(await r.next() as IConnackPacket);
    return r;
  });
  const [ferry, mosq] = acks.map((a) => ({
    code: a.reasonCode,
    present: a.sessionPresent,
    assigned: (a.properties?.assignedClientIdentifier ?? "").length > 0,
  }));
  assertEquals(ferry, { code: 0, present: false, assigned: true });
  assertEquals(ferry, mosq);
});

Deno.test("[MQTT-3.1.3-9] v5: a takeover that resumes the session publishes no will, as mosquitto", async () => {
  const seen: string[][] = [];
  await both(async (open) => {
    const watch = await open(5);
    await watch.connect({ clientId: "watch" });
    await watch.send({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: [{ topic: "tk/#", qos: 0, nl: false, rap: false, rh: 0 }],
    });
    await watch.next();
    const session = { clientId: "tk1", clean: false, properties: { sessionExpiryInterval: 60 } };
    const first = await open(5);
    await first.connect({
      ...session,
      will: { topic: "tk/will", payload: "gone" as never, qos: 0, retain: false, properties: {} },
    });
    const second = await open(5);
    const ack = await second.connect(session) as IConnackPacket;
    assert(ack.sessionPresent, "session not resumed");
    await first.waitClosed();
    await second.ping(); // the takeover is done
    await watch.ping(); // a will would have been delivered before this PINGRESP
    seen.push(watch.frames.slice(2).map((f) => hexOf(f).slice(0, 2)));
    return watch;
  });
  assertEquals(seen, [["d0"], ["d0"]]);
});
