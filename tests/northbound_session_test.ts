/**
 * The bridge against a scripted MQTT broker (mqtt-packet over a loopback socket), to pin down
 * session resumption: in-flight messages are resent first with their packet ids and DUP
 * ([MQTT-4.4.0-1]), and the packet ids of rows dropped meanwhile are freed.
 *
 * @module
 */

import mqttPacket, { type Packet } from "mqtt-packet";
import { Buffer } from "node:buffer";
import { Core } from "../src/core/core.ts";
import { createMessage } from "../src/core/message.ts";
import { startNorthbound } from "../src/northbound/mod.ts";
import { recordSize } from "../src/northbound/spool.ts";
import { assert, assertEquals } from "./_assert.ts";
import { enc, memoryLogger, waitFor } from "./_harness.ts";

interface Seen {
  conn: number;
  topic: string;
  messageId: number;
  dup: boolean;
  text: string;
}

/** A broker that answers CONNECT with session present and PUBACKs only when told to. */
function scriptedBroker() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen: Seen[] = [];
  const conns: Deno.Conn[] = [];
  let ack = false;
  let refuse = false;
  let n = 0;
  const serve = async (conn: Deno.Conn, id: number) => {
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const send = (p: Packet) => conn.write(mqttPacket.generate(p)).catch(() => {});
    parser.on("packet", (p: Packet) => {
      if (p.cmd === "connect") send({ cmd: "connack", returnCode: 0, sessionPresent: true });
      if (p.cmd === "subscribe") {
        send({ cmd: "suback", messageId: p.messageId, granted: p.subscriptions.map(() => 1) });
      }
      if (p.cmd === "publish" && p.qos === 1) {
        seen.push({
          conn: id,
          topic: p.topic,
          messageId: p.messageId!,
          dup: p.dup,
          text: String(p.payload),
        });
        if (ack) send({ cmd: "puback", messageId: p.messageId });
      }
    });
    const buf = new Uint8Array(8192);
    try {
      for (;;) {
        const r = await conn.read(buf);
        if (r === null) break;
        parser.parse(Buffer.from(buf.subarray(0, r)));
      }
    } catch { /* closed */ }
  };
  const serving: Promise<void>[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        if (refuse) {
          conn.close();
          continue;
        }
        conns.push(conn);
        serving.push(serve(conn, ++n));
      }
    } catch { /* closed */ }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    seen,
    set acking(v: boolean) {
      ack = v;
    },
    /** While true, new connections are closed at once (the upstream is down). */
    set refusing(v: boolean) {
      refuse = v;
    },
    /** Drops every client connection (the link fails). */
    dropClients() {
      for (const c of conns.splice(0)) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
    get connections() {
      return n;
    },
    async close() {
      listener.close();
      this.dropClients();
      await accepting;
      await Promise.all(serving);
    },
  };
}

Deno.test("After a resumed session the bridge resends in-flight messages first with their packet ids and DUP, and frees the ids of rows dropped meanwhile", async () => {
  const broker = scriptedBroker();
  const dir = await Deno.makeTempDir({ prefix: "ferry-nb-sess-" });
  const core = new Core({ log: memoryLogger().log });
  const one = recordSize("devices/d1/telemetry", enc("00"));
  const nb = await startNorthbound(core, {
    url: `mqtt://127.0.0.1:${broker.port}`,
    gatewayId: "s",
    inflight: 4,
    presence: false,
    backoffBaseMs: 10,
    backoffCapMs: 20,
    spool: { maxBytes: one * 6, maxBytesPerDevice: one * 6, fullPolicy: "drop-oldest" },
  }, dir);
  const publish = (i: number) =>
    core.publish(createMessage({
      topic: "devices/d1/telemetry",
      payload: enc(String(i).padStart(2, "0")),
      qos: 1,
      deviceId: "d1",
    }));
  try {
    await waitFor(() => nb.state === "live", "the link");
    for (let i = 0; i < 6; i++) await publish(i); // 4 go out unacknowledged, 2 wait
    await waitFor(() => broker.seen.length === 4, "a full window");
    assertEquals(nb.bridge.inflight, 4);
    broker.refusing = true;
    broker.dropClients();
    await waitFor(() => nb.bridge.stats.disconnects === 1, "link down");
    // Two more: drop-oldest removes rows 0 and 1, which were in flight.
    for (let i = 6; i < 8; i++) await publish(i);
    assertEquals(nb.spool.depth, 6);
    broker.acking = true;
    broker.refusing = false;
    await waitFor(() => nb.spool.depth === 0, "the spool to drain after the reconnect").catch(
      (e) => {
        throw new Error(`${e.message}: ${JSON.stringify(broker.seen)} depth ${nb.spool.depth}`);
      },
    );
    const second = broker.seen.filter((s) => s.conn === 2);
    assertEquals(second.map((s) => s.text), ["02", "03", "04", "05", "06", "07"]);
    const first = new Map(
      broker.seen.filter((s) => s.conn === 1).map((s) => [s.text, s.messageId]),
    );
    assertEquals(second.slice(0, 2).map((s) => [s.dup, s.messageId]), [
      [true, first.get("02")],
      [true, first.get("03")],
    ]);
    assert(second.slice(2).every((s) => !s.dup), "new messages are not DUP");
    assertEquals(nb.bridge.inflight, 0, "the ids of the dropped in-flight rows were freed");
    assertEquals(nb.bridge.stats.resent, 2);
  } finally {
    await core.close();
    await nb.close();
    await broker.close();
    await Deno.remove(dir, { recursive: true });
  }
});
