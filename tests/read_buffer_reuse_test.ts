/**
 * A connection's read buffer is reused once the port kept nothing of a read (`DevicePort.held`):
 * every message the gateway keeps must then own its payload. A publisher sends each PUBLISH in a
 * read of its own (so consecutive reads share one buffer) while subscribers keep the messages in
 * every way the gateway keeps them: in flight awaiting PUBACK, queued behind a full window, queued
 * for an offline persistent session (and written to the MQTT state file). Every payload must
 * arrive exactly as sent. (A real gateway process, real TCP sockets.)
 *
 * @module
 */

import { assertEquals } from "./_assert.ts";
import { startFerry } from "./_ferry_process.ts";
import { RawClient } from "./_mqtt_harness.ts";
import type { Packet } from "mqtt-packet";
import { Buffer } from "node:buffer";

const N = 150;
const TOPIC = "devices/dev1/telemetry";
const payloadOf = (i: number) => `reading-${String(i).padStart(4, "0")}-${"x".repeat(i % 23)}`;

/** Reads PUBLISHes, acknowledging each (QoS 1), until `n` arrived; returns their payloads. */
async function collect(c: RawClient, n: number): Promise<string[]> {
  const got: string[] = [];
  while (got.length < n) {
    const p = await c.next(30_000) as Packet & { payload?: Buffer; messageId?: number };
    if (p.cmd !== "publish") continue;
    got.push(new TextDecoder().decode(p.payload));
    if (p.qos === 1) await c.send({ cmd: "puback", messageId: p.messageId! } as Packet);
  }
  return got;
}

Deno.test("Payloads kept by the gateway stay intact while the publisher's read buffer is reused", async () => {
  await using g = await startFerry({});
  const port = g.addresses.mqtt.port;

  // An offline persistent session subscribed at QoS 1: the gateway queues every message for it.
  const keeper = await RawClient.connect(port);
  await keeper.connect({ clientId: "keeper", clean: false });
  await keeper.send({
    cmd: "subscribe",
    messageId: 1,
    subscriptions: [{ topic: "devices/+/telemetry", qos: 1 }],
  } as Packet);
  assertEquals((await keeper.next()).cmd, "suback");
  await keeper.send({ cmd: "disconnect" } as Packet);
  keeper.close();

  // An online subscriber that does not acknowledge yet: its window fills, the rest queue.
  const slow = await RawClient.connect(port);
  await slow.connect({ clientId: "slow", clean: true });
  await slow.send({
    cmd: "subscribe",
    messageId: 1,
    subscriptions: [{ topic: "devices/+/telemetry", qos: 1 }],
  } as Packet);
  assertEquals((await slow.next()).cmd, "suback");

  const pub = await RawClient.connect(port);
  await pub.connect({ clientId: "dev1", clean: true });
  for (let i = 0; i < N; i++) {
    await pub.send({
      cmd: "publish",
      topic: TOPIC,
      payload: Buffer.from(payloadOf(i)),
      qos: 1,
      messageId: i + 1,
      retain: false,
      dup: false,
    } as Packet);
    // PUBACK, then PINGRESP: the gateway has finished with this read before the next is sent.
    await pub.ping();
  }
  pub.close();

  const expected = Array.from({ length: N }, (_, i) => payloadOf(i));
  assertEquals(await collect(slow, N), expected);
  slow.close();

  const back = await RawClient.connect(port);
  const connack = await back.connect({ clientId: "keeper", clean: false }) as Packet & {
    sessionPresent?: boolean;
  };
  assertEquals(connack.sessionPresent, true);
  assertEquals(await collect(back, N), expected);
  back.close();
});
