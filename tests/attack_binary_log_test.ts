/**
 * Attack (#13): a device that floods FBP/1 with frames the gateway rejects gets an ERROR frame
 * for each on the wire, while the gateway's log gets a handful of lines per kind and a count of
 * the rest (a real gateway process, a real TCP socket).
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import { startGateway } from "./_process.ts";
import { FbpClient, HelloRefusedError } from "../src/protocols/binary/client.ts";
import { encodeFrame, ErrorCode } from "../src/protocols/binary/frame.ts";

const FLOOD = 300;

async function gateway() {
  const dir = await Deno.makeTempDir({ prefix: "ferry-attack-fbp-" });
  const file = `${dir}/ferry.json`;
  await Deno.writeTextFile(
    file,
    JSON.stringify({
      dataDir: dir,
      binary: { port: 0 },
      mqtt: { port: 0, websocket: { port: 0 } },
      coap: { port: 0 },
      http: { port: 0 },
      auth: { devices: [{ id: "dev1", token: "t1" }] },
    }),
  );
  const g = await startGateway(["--config", file]);
  return Object.assign(g, {
    async [Symbol.asyncDispose]() {
      try {
        g.child.kill("SIGTERM");
      } catch { /* gone */ }
      await g.status;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  });
}

Deno.test("Attack: a flood of rejected FBP/1 frames is answered frame by frame but logged a few lines per kind", async () => {
  await using g = await gateway();
  const port = g.addresses.binary.port;
  await using c = await FbpClient.connect({ port, id: "dev1", token: "t1", timeoutMs: 30_000 });
  // Unknown frame types (0x7e) and HELLO again: both rejected without closing the link.
  const frames: Uint8Array[] = [];
  for (let i = 0; i < FLOOD; i++) {
    frames.push(encodeFrame({ type: 0x7e, flags: 0, seq: 1000 + i, payload: new Uint8Array(0) }));
  }
  const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  frames.reduce((at, f) => (all.set(f, at), at + f.length), 0);
  await c.sendRaw(all);
  for (let i = 0; i < 600 && c.errors.length < FLOOD; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assertEquals(c.errors.length, FLOOD, "every rejected frame gets its ERROR");
  assert(c.errors.every((e) => e.code === ErrorCode.UNKNOWN_TYPE));
  assertEquals(c.errors.map((e) => e.seq), frames.map((_, i) => 1000 + i));
  assert(!c.ended, "an unknown frame type does not close the link");
  // The link still works: a telemetry frame is acknowledged.
  assertEquals(await c.telemetry(new TextEncoder().encode("21.5"), { ack: true }), 0);

  // Wrong tokens on fresh connections: each refused, logged a few times.
  for (let i = 0; i < 30; i++) {
    const e = await FbpClient.connect({ port, id: "dev1", token: `bad${i}`, timeoutMs: 30_000 })
      .then(() => undefined, (err) => err);
    assert(e instanceof HelloRefusedError, String(e));
  }

  const rejected = () => g.lines.filter((l) => l.msg === "frame rejected");
  // A failed login is logged by the core's port, for every protocol alike (docs/operations.md).
  const refused = () =>
    g.lines.filter((l) => l.msg === "login refused" && l.component === "binary");
  assert(rejected().length >= 1, "the first rejected frame is logged");
  assert(
    rejected().length <= 10,
    `${rejected().length} 'frame rejected' lines for ${FLOOD} frames`,
  );
  assert(
    refused().length >= 1 && refused().length <= 10,
    `${refused().length} 'login refused' lines`,
  );
  assert(
    rejected().every((l) => l.reason !== undefined && l.code === ErrorCode.UNKNOWN_TYPE),
    "each line says what was wrong",
  );
});
