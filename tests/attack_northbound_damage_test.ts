/**
 * Attack: the spool file is damaged behind Ferry's back (issue #13, item 14): a WAL deleted or a
 * flipped WAL frame after a crash, a flipped byte in a data page. A real gateway process, real
 * sockets, a real mosquitto upstream.
 *
 * @module
 */

import { FbpClient } from "../src/protocols/binary/client.ts";
import { AckStatus } from "../src/protocols/binary/frame.ts";
import { assert, assertEquals } from "./_assert.ts";
import {
  killFerry,
  metrics,
  startFerry,
  stopFerry,
  waitAllArrived,
  waitMetric,
} from "./_ferry_process.ts";
import { enc } from "./_harness.ts";
import { startMosquitto, subscribe } from "./_mosquitto.ts";

function config(url: string) {
  return { northbound: { url, gatewayId: "gw1", backoffBaseMs: 20, backoffCapMs: 200 } };
}

async function spoolSome(port: number, n: number, tag: string): Promise<string[]> {
  const acked: string[] = [];
  const c = await FbpClient.connect({ port, id: tag });
  for (let i = 0; i < n; i++) {
    const text = `${tag}-${String(i).padStart(4, "0")}-payload`;
    assertEquals(await c.telemetry(enc(text), { ack: true }), AckStatus.OK);
    acked.push(text);
  }
  await c.close();
  return acked;
}

function flipByte(path: string, at: number): void {
  const f = Deno.openSync(path, { read: true, write: true });
  const b = new Uint8Array(1);
  f.seekSync(at, Deno.SeekMode.Start);
  f.readSync(b);
  b[0] ^= 0x40;
  f.seekSync(at, Deno.SeekMode.Start);
  f.writeSync(b);
  f.close();
}

for (const damage of ["deleted", "flipped frame"] as const) {
  Deno.test(`attack: a crash then a ${damage} WAL: the next start says loudly that acknowledged messages are missing (log and metric)`, async () => {
    await using broker = await startMosquitto();
    await broker.stop(); // upstream down: the messages stay in the spool
    const dir = await Deno.makeTempDir({ prefix: "ferry-wal-" });
    try {
      const gw = await startFerry(config(broker.url), dir);
      const acked = await spoolSome(gw.addresses.binary.port, 300, "w");
      assertEquals(acked.length, 300);
      // The mark trails the commits by at most ~100 ms plus an fsync.
      await new Promise((r) => setTimeout(r, 500));
      await killFerry(gw); // kill -9: the last commits live only in the WAL
      const wal = `${dir}/northbound-spool.db-wal`;
      const size = Deno.statSync(wal).size;
      assert(size > 32 + 24 + 4096, `WAL of ${size} bytes`);
      if (damage === "deleted") {
        Deno.removeSync(wal);
        Deno.removeSync(`${dir}/northbound-spool.db-shm`);
      } else {
        flipByte(wal, 32 + 24 + 100); // inside the first frame's page: its checksum fails
      }
      await using gw2 = await startFerry(config(broker.url), dir);
      const line = gw2.lines.find((l) => String(l.msg).includes("lost acknowledged messages"));
      assert(line !== undefined, `no error line; log:\n${gw2.stderr().slice(-3000)}`);
      assertEquals(line.level, "error");
      const lost = (await metrics(gw2))("ferry_spool_lost_on_start");
      assert(lost >= 1 && lost <= 320, `ferry_spool_lost_on_start ${lost}`);
      assertEquals(line.upTo, lost);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("attack: a flipped byte in a spool data page never reaches the upstream: the row is quarantined and counted, the rest is forwarded", async () => {
  await using broker = await startMosquitto({ persistence: true });
  await using sub = await subscribe(broker.url, "ferry/gw1/devices/+/telemetry");
  await broker.stop();
  const dir = await Deno.makeTempDir({ prefix: "ferry-page-" });
  try {
    const gw = await startFerry(config(broker.url), dir);
    const acked = await spoolSome(gw.addresses.binary.port, 200, "p");
    assertEquals((await stopFerry(gw)).code, 0); // clean stop: everything checkpointed in the file
    const file = `${dir}/northbound-spool.db`;
    const bytes = Deno.readFileSync(file);
    const victim = "p-0123-payload";
    const at = new TextDecoder("latin1").decode(bytes).indexOf(victim);
    assert(at > 0, "the payload is in a data page");
    flipByte(file, at + 2); // "p-0123" → "p-p123": still a valid page, a wrong payload
    await broker.start();
    await using gw2 = await startFerry(config(broker.url), dir);
    const good = acked.filter((t) => t !== victim);
    await waitAllArrived(sub.received, good, (t) => t, 30_000);
    await waitMetric(gw2, (m) => m("ferry_spool_depth") === 0, "the spool to drain");
    const texts = new Set(sub.received.map((r) => r.text));
    assert(!texts.has(victim) && !texts.has("p-p123-payload"), "the damaged row was forwarded");
    const m = await metrics(gw2);
    assertEquals(m('ferry_spool_quarantined_total{bridge="default"}'), 1);
    assertEquals(m("ferry_dead_letters"), 1);
    assertEquals(m('ferry_dead_letters_total{bridge="default",reason="checksum"}'), 1);
    assert(
      gw2.lines.some((l) => l.level === "error" && String(l.msg).includes("checksum")),
      "an error line says so",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
