import { assert, assertEquals } from "./_assert.ts";
import { runMain, startGateway } from "./_process.ts";
import { FbpClient, HelloRefusedError } from "../src/protocols/binary/client.ts";
import { ErrorCode, HelloStatus } from "../src/protocols/binary/frame.ts";

const PORTS = [
  "--binary-port",
  "0",
  "--http-port",
  "0",
  "--mqtt-port",
  "0",
  "--mqtt-ws-port",
  "0",
  "--coap-port",
  "0",
];

async function refusedStatus(port: number, id: string, token: string): Promise<number | undefined> {
  try {
    const c = await FbpClient.connect({ port, id, token });
    await c.close();
    return undefined;
  } catch (err) {
    return err instanceof HelloRefusedError ? err.status : -1;
  }
}

Deno.test("ferry device add prints a token once and stores only a salted hash; list, rotate and remove work", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const add = await runMain(["device", "add", "sensor-1", "--data-dir", dir]);
    assertEquals(add.code, 0, add.stderr);
    const token = add.stdout.trim();
    assert(token.length >= 40, `token too short: ${token}`);
    const text = await Deno.readTextFile(`${dir}/devices.json`);
    assert(!text.includes(token), "the token itself was stored");
    assert(text.includes("sha256:"), "no hash stored");
    assertEquals((await Deno.stat(`${dir}/devices.json`)).mode! & 0o777, 0o600);
    const again = await runMain(["device", "add", "sensor-1", "--data-dir", dir]);
    assertEquals(again.code, 2);
    assert(again.stderr.includes("exists"), again.stderr);
    const list = await runMain(["device", "list", "--data-dir", dir]);
    assert(list.stdout.startsWith("sensor-1\t"), list.stdout);
    const rot = await runMain(["device", "rotate", "sensor-1", "--data-dir", dir]);
    assertEquals(rot.code, 0);
    assert(rot.stdout.trim() !== token, "rotate kept the token");
    assertEquals((await runMain(["device", "remove", "sensor-1", "--data-dir", dir])).code, 0);
    const gone = await runMain(["device", "remove", "sensor-1", "--data-dir", dir]);
    assertEquals(gone.code, 2);
    const bad = await runMain(["device", "add", "bad id", "--data-dir", dir]);
    assertEquals(bad.code, 2);
    assert(bad.stderr.includes("ids are"), bad.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("A running gateway picks up device add, rotate and remove without restart and disconnects removed devices", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await using gw = await startGateway([...PORTS, "--data-dir", dir]);
    const port = gw.addresses.binary.port;
    // Empty registry on loopback: anonymous devices are let in.
    const anon = await FbpClient.connect({ port, id: "anon-1" });
    const add = await runMain(["device", "add", "sensor-1", "--data-dir", dir]);
    const token = add.stdout.trim();
    // Once the registry holds a device, anonymous access is off: the anonymous session is closed.
    assertEquals((await anon.nextError(10_000))?.code, ErrorCode.NOT_AUTHENTICATED);
    await anon.close();
    assertEquals(await refusedStatus(port, "anon-2", ""), HelloStatus.BAD_CREDENTIALS);
    const dev = await FbpClient.connect({ port, id: "sensor-1", token });
    // Rotation: the old session goes, the old token no longer works, the new one does.
    const rot = await runMain(["device", "rotate", "sensor-1", "--data-dir", dir]);
    const token2 = rot.stdout.trim();
    assertEquals((await dev.nextError(10_000))?.code, ErrorCode.NOT_AUTHENTICATED);
    await dev.close();
    assertEquals(await refusedStatus(port, "sensor-1", token), HelloStatus.BAD_CREDENTIALS);
    const dev2 = await FbpClient.connect({ port, id: "sensor-1", token: token2 });
    // Removal disconnects.
    await runMain(["device", "remove", "sensor-1", "--data-dir", dir]);
    assertEquals((await dev2.nextError(10_000))?.code, ErrorCode.NOT_AUTHENTICATED);
    await dev2.close();
    assert(
      !gw.stderr().includes(token) && !gw.stderr().includes(token2),
      "a token reached the log",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("A broken device file at runtime is reported and the previous registry stays in force (SIGHUP reload)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const token = (await runMain(["device", "add", "s1", "--data-dir", dir])).stdout.trim();
    await using gw = await startGateway([...PORTS, "--data-dir", dir]);
    const port = gw.addresses.binary.port;
    await Deno.writeTextFile(`${dir}/devices.json`, "{ not json");
    gw.child.kill("SIGHUP");
    await gw.waitForLine((l) =>
      l.msg === "device file not reloaded; keeping the previous registry"
    );
    const c = await FbpClient.connect({ port, id: "s1", token });
    await c.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("A gateway refuses to start on an unusable device file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/devices.json`,
      `{"version":1,"devices":[{"id":"x","tokenHash":"plain"}]}`,
    );
    const r = await runMain([...PORTS, "--data-dir", dir]);
    assertEquals(r.code, 2);
    assert(r.stderr.includes("tokenHash is malformed"), r.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ferry config check validates and ferry config schema prints a JSON Schema", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ok = await runMain(["config", "check", "--data-dir", dir]);
    assertEquals(ok.code, 0, ok.stderr);
    await Deno.writeTextFile(`${dir}/bad.json`, `{"mqtt":{"port":-1}}`);
    const bad = await runMain(["config", "check", "--config", `${dir}/bad.json`]);
    assertEquals(bad.code, 2);
    assert(bad.stderr.includes(`"mqtt.port"`), bad.stderr);
    const schema = JSON.parse((await runMain(["config", "schema"])).stdout);
    assertEquals(schema.type, "object");
    assertEquals(schema.additionalProperties, false);
    assertEquals(schema.properties.binary.properties.port.default, 7883);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
