/**
 * Attack: the disk under the spool and the MQTT state file runs full (issue #13, items 12 and 10).
 * A real gateway process over real sockets, its data directory on a small tmpfs, a real mosquitto
 * upstream.
 *
 * @module
 */

import { mqtt } from "./_dev_deps.ts";
import { FbpClient } from "../src/protocols/binary/client.ts";
import { AckStatus } from "../src/protocols/binary/frame.ts";
import { assert, assertEquals } from "./_assert.ts";
import {
  ferryRefuses,
  listDir,
  metrics,
  smallDisk,
  startFerry,
  stopFerry,
  waitAllArrived,
} from "./_ferry_process.ts";
import { enc, waitFor } from "./_harness.ts";
import { startMosquitto, subscribe } from "./_mosquitto.ts";

function config(url: string | undefined) {
  return {
    log: { level: "info" },
    ...(url ? { northbound: { url, gatewayId: "gw1", backoffBaseMs: 20, backoffCapMs: 200 } } : {}),
  };
}

async function sendAll(port: number, devices: number, per: number, tag: string) {
  const acked: string[] = [];
  await Promise.all(Array.from({ length: devices }, async (_, d) => {
    const c = await FbpClient.connect({ port, id: `${tag}${d}` });
    for (let i = 0; i < per; i++) {
      const s = await c.telemetry(enc(`${tag}${d}:${i}`), { ack: true, timeoutMs: 10_000 });
      if (s === AckStatus.OK) acked.push(`${tag}${d}:${i}`);
    }
    await c.close();
  }));
  return acked;
}

async function retained(url: string, filter: string, count: number): Promise<string[]> {
  const got: string[] = [];
  const c = mqtt.connect(url, { clientId: `check-${crypto.randomUUID().slice(0, 6)}` });
  c.on("error", () => {});
  c.on("message", (_t, p, packet) => {
    if (packet.retain) got.push(new TextDecoder().decode(p));
  });
  await new Promise<void>((r) =>
    c.once("connect", () => c.subscribe(filter, { qos: 1 }, () => r()))
  );
  await waitFor(() => got.length >= count, `${count} retained messages`).catch(() => {});
  await new Promise<void>((r) => c.end(true, {}, () => r()));
  return got.sort();
}

Deno.test("attack: a full disk at start-up never sets a healthy spool or state file aside; Ferry refuses to start naming the file, and every acknowledged message survives", async () => {
  await using disk = await smallDisk(24);
  await using broker = await startMosquitto({ persistence: true });
  await using sub = await subscribe(broker.url, "ferry/gw1/devices/+/telemetry");
  await broker.stop(); // the upstream is down: what devices send stays in the spool
  const gw = await startFerry(config(broker.url), disk.path);
  const acked = await sendAll(gw.addresses.binary.port, 10, 30, "d");
  assertEquals(acked.length, 300);
  // Retained messages go to the MQTT state file.
  const m = mqtt.connect(`mqtt://127.0.0.1:${gw.addresses.mqtt.port}`, { clientId: "m1" });
  m.on("error", () => {});
  await new Promise<void>((r) => m.once("connect", () => r()));
  for (let i = 0; i < 5; i++) {
    await m.publishAsync(`devices/m1/telemetry/c${i}`, `r${i}`, { qos: 1, retain: true });
  }
  await new Promise<void>((r) => m.end(false, {}, () => r()));
  assertEquals((await stopFerry(gw)).code, 0);
  const sizes = new Map(
    listDir(disk.path).map((n) => [n, Deno.statSync(`${disk.path}/${n}`).size]),
  );

  await disk.fill();
  const spoolRefusal = await ferryRefuses(config(broker.url), disk.path);
  assertEquals(spoolRefusal.code, 2, spoolRefusal.stderr);
  assert(
    spoolRefusal.stderr.includes(`${disk.path}/northbound-spool.db`) &&
      spoolRefusal.stderr.includes("the disk is full"),
    `the refusal names the spool file and the reason:\n${spoolRefusal.stderr}`,
  );
  // Without a bridge the state file is the first to meet the full disk.
  const stateRefusal = await ferryRefuses(config(undefined), disk.path);
  assertEquals(stateRefusal.code, 2, stateRefusal.stderr);
  assert(
    stateRefusal.stderr.includes(`${disk.path}/mqtt-state.db`) &&
      stateRefusal.stderr.includes("the disk is full"),
    `the refusal names the state file and the reason:\n${stateRefusal.stderr}`,
  );
  assert(!listDir(disk.path).some((n) => n.includes("corrupt")), "a healthy file was set aside");
  for (const f of ["northbound-spool.db", "mqtt-state.db"]) {
    assertEquals(Deno.statSync(`${disk.path}/${f}`).size, sizes.get(f), `${f} changed`);
  }

  await disk.free();
  await broker.start();
  await using gw2 = await startFerry(config(broker.url), disk.path);
  // A failure deadline, not a speed claim: two helpers saw 30 s run out at load ~20.
  await waitAllArrived(sub.received, acked, (t) => t, 90_000);
  assertEquals(
    await retained(`mqtt://127.0.0.1:${gw2.addresses.mqtt.port}`, "devices/m1/telemetry/#", 5),
    ["r0", "r1", "r2", "r3", "r4"],
  );
  assert(!gw2.lines.some((l) => String(l.msg).includes("set aside")), "nothing set aside");
});

Deno.test("attack: a disk that fills while devices send: they are refused (retryable), nothing acknowledged is lost, and the log summarises instead of flooding", async () => {
  await using disk = await smallDisk(10);
  await disk.ballast(3 << 20); // the operator's other files, deleted once the disk is full
  await using broker = await startMosquitto({ persistence: true });
  await using sub = await subscribe(broker.url, "ferry/gw1/devices/+/telemetry");
  await broker.stop();
  await using gw = await startFerry(config(broker.url), disk.path);
  const port = gw.addresses.binary.port;
  const acked: string[] = [];
  let refused = 0;
  const payload = "x".repeat(1000);
  await Promise.all(Array.from({ length: 20 }, async (_, d) => {
    const c = await FbpClient.connect({ port, id: `f${d}` });
    for (let i = 0; i < 400; i++) {
      const s = await c.telemetry(enc(`f${d}:${i}:${payload}`), { ack: true, timeoutMs: 10_000 });
      if (s === AckStatus.OK) acked.push(`f${d}:${i}`);
      else {
        assertEquals(s, AckStatus.OVERLOADED, "refused with the retryable status");
        refused++;
      }
    }
    await c.close();
  }));
  assert(refused > 100, `only ${refused} refused: the disk did not fill`);
  assert(acked.length > 100, `only ${acked.length} accepted`);
  const failed = (await metrics(gw))('ferry_spool_refused_total{reason="failed"}');
  assert(failed >= refused, `ferry_spool_refused_total{reason="failed"} ${failed}`);
  // One line at once, then at most one summary per 10 s: not one per refused message.
  const commitLines = gw.lines.filter((l) =>
    l.component === "northbound" && String(l.msg).startsWith("spool commit failed")
  );
  assert(commitLines.length >= 1 && commitLines.length <= 4, `${commitLines.length} lines`);
  // Space comes back (the operator deletes files): the spool works again and everything
  // acknowledged reaches the upstream.
  await disk.free();
  await broker.start();
  await waitAllArrived(sub.received, acked, (t) => t.split(":").slice(0, 2).join(":"));
  // Drained, the spool gives its pages back and takes messages again (devices retry).
  const c = await FbpClient.connect({ port, id: "after" });
  let status: number = AckStatus.OVERLOADED;
  for (let i = 0; i < 60 && status !== AckStatus.OK; i++) {
    status = await c.telemetry(enc("after"), { ack: true });
    if (status !== AckStatus.OK) await new Promise((r) => setTimeout(r, 500));
  }
  assertEquals(
    status,
    AckStatus.OK,
    `${
      JSON.stringify(listDir(disk.path).map((n) => [n, Deno.statSync(`${disk.path}/${n}`).size]))
    } ${JSON.stringify(gw.lines.filter((l) => l.component === "northbound").slice(-5))}`,
  );
  await c.close();
});
