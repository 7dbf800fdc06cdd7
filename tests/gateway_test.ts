import { assert, assertEquals } from "./_assert.ts";
import { runMain, startGateway } from "./_process.ts";
import { enc } from "./_harness.ts";
import { FbpClient } from "../src/protocols/binary/client.ts";
import { AckStatus, ErrorCode } from "../src/protocols/binary/frame.ts";

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

Deno.test("Gateway starts with no config on loopback, logs the free ports it picked, and serves /healthz and /metrics", async () => {
  await using gw = await startGateway(PORTS);
  const start = gw.lines.find((l) => l.msg === "starting")!;
  assertEquals([start.host, start.anonymous], ["127.0.0.1", true]);
  const { binary, http } = gw.addresses;
  assert(binary.port > 0 && http.port > 0, "ports not reported");
  const c = await FbpClient.connect({ port: binary.port, id: "e2e-1" });
  assertEquals(await c.telemetry(enc("1"), { ack: true }), AckStatus.OK);
  const health = await fetch(`http://127.0.0.1:${http.port}/healthz`);
  assertEquals([health.status, await health.json()], [200, { status: "ok" }]);
  const ready = await fetch(`http://127.0.0.1:${http.port}/readyz`);
  assertEquals(ready.status, 200);
  await ready.body?.cancel();
  const metrics = await (await fetch(`http://127.0.0.1:${http.port}/metrics`)).text();
  for (
    const needle of [
      'ferry_connections{protocol="binary"} 1',
      'ferry_messages_received_total{protocol="binary"} 1',
      "ferry_pipeline_queue_depth 0",
      "ferry_pipeline_handlers_in_use",
      "ferry_event_loop_lag_seconds",
      'ferry_devices_online{protocol="binary"} 1',
      "# TYPE ferry_frames_received_total counter",
    ]
  ) assert(metrics.includes(needle), `metrics lack ${needle}:\n${metrics}`);
  await c.close();
});

Deno.test("Gateway on SIGTERM tells devices (ERROR 9), drains and exits 0", async () => {
  await using gw = await startGateway(PORTS);
  const c = await FbpClient.connect({ port: gw.addresses.binary.port, id: "e2e-2" });
  gw.child.kill("SIGTERM");
  assertEquals((await c.nextError(10_000))?.code, ErrorCode.SHUTTING_DOWN);
  await c.finished;
  const status = await gw.status;
  assertEquals(status.code, 0);
  assert(gw.lines.some((l) => l.msg === "stopped"), "no 'stopped' log line");
  await c.close();
});

Deno.test("Gateway on SIGINT exits 0", async () => {
  await using gw = await startGateway(PORTS);
  gw.child.kill("SIGINT");
  assertEquals((await gw.status).code, 0);
});

Deno.test("Gateway reads a JSONC config file and flags override it", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/ferry.jsonc`;
  await Deno.writeTextFile(
    file,
    `{
      // devices with credentials: anonymous access turns off
      "auth": { "devices": [{ "id": "cfg-1", "token": "s3cret" },], },
      "binary": { "port": 1, "helloTimeoutMs": 5000 }, /* overridden below */
    }`,
  );
  try {
    await using gw = await startGateway(["--config", file, ...PORTS]);
    assertEquals(gw.lines.find((l) => l.msg === "starting")?.anonymous, false);
    const port = gw.addresses.binary.port;
    assert(port > 1, "flag did not override the file");
    const ok = await FbpClient.connect({ port, id: "cfg-1", token: "s3cret" });
    await ok.close();
    let refused = false;
    try {
      await FbpClient.connect({ port, id: "cfg-1", token: "nope" });
    } catch {
      refused = true;
    }
    assert(refused, "a wrong token was accepted");
    assert(!gw.stderr().includes("s3cret"), "the token appeared in the log");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (
  const [name, content, key] of [
    ["an unknown key", `{ "binary": { "prot": 1 } }`, `"binary.prot"`],
    ["a port out of range", `{ "mqtt": { "port": 70000 } }`, `"mqtt.port"`],
    ["a wrong type", `{ "pipeline": { "concurrency": "many" } }`, `"pipeline.concurrency"`],
    ["a bad log level", `{ "log": { "level": "loud" } }`, `"log.level"`],
    ["a device without a token", `{ "auth": { "devices": [{ "id": "x" }] } }`, `"auth.devices[0]"`],
    ["a malformed file", `{ "host": "a", oops }`, "line 1"],
  ]
) {
  Deno.test(`Gateway refuses to start on a config with ${name} and names the key`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/c.json`, content);
      const r = await runMain(["--config", `${dir}/c.json`]);
      assertEquals(r.code, 2, r.stderr);
      assert(r.stderr.includes(key), `stderr does not name ${key}: ${r.stderr}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

for (
  const [args, needle] of [
    [["--binary-port", "http"], "--binary-port"],
    [["--http-port", "65536"], "--http-port"],
    [["--log-level", "chatty"], "--log-level"],
    [["--frobnicate", "1"], "--frobnicate"],
    [["--config", "/nonexistent/ferry.json"], "/nonexistent/ferry.json"],
  ] as Array<[string[], string]>
) {
  Deno.test(`Gateway refuses bad command line ${args.join(" ")}`, async () => {
    const r = await runMain(args);
    assertEquals(r.code, 2, r.stderr);
    assert(r.stderr.includes(needle), `stderr does not name ${needle}: ${r.stderr}`);
  });
}

Deno.test("Gateway --help prints usage and exits 0", async () => {
  const r = await runMain(["--help"]);
  assertEquals(r.code, 0);
  assert(r.stdout.includes("--binary-port"));
});

Deno.test("Gateway serves the HTTP device API: telemetry POST is 202 and reaches an FBP/1 subscriber's namespace", async () => {
  await using gw = await startGateway(PORTS);
  const base = `http://127.0.0.1:${gw.addresses.http.port}`;
  const doc = await fetch(`${base}/api/v1/openapi.json`);
  assertEquals(doc.status, 200);
  assert((await doc.json()).openapi.startsWith("3.1"));
  const r = await fetch(`${base}/api/v1/devices/http-1/telemetry/temp`, {
    method: "POST",
    headers: { authorization: "Bearer any", "content-type": "application/json" },
    body: JSON.stringify({ c: 20 }),
  });
  assertEquals(r.status, 202, await r.text());
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert(metrics.includes('ferry_messages_received_total{protocol="http"} 1'), metrics);
});

Deno.test("Gateway serves HTTPS on the HTTP listener when http.tls is configured", async () => {
  const { makePki } = await import("./_tls.ts");
  const dir = await Deno.makeTempDir();
  try {
    const pki = await makePki(dir);
    await Deno.writeTextFile(
      `${dir}/c.json`,
      JSON.stringify({
        http: { tls: { certFile: pki.certFile, keyFile: pki.keyFile } },
        dataDir: dir,
      }),
    );
    await using gw = await startGateway(["--config", `${dir}/c.json`, ...PORTS]);
    const client = Deno.createHttpClient({ caCerts: [pki.caPem] });
    const r = await fetch(`https://127.0.0.1:${gw.addresses.http.port}/healthz`, { client });
    assertEquals(r.status, 200);
    await r.body?.cancel();
    client.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Gateway HTTP device API throttles repeated failed logins per address (429 login-throttled), even with the right token", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/c.json`,
      JSON.stringify({
        auth: { devices: [{ id: "h1", token: "right" }] },
        limits: { authFailuresPerMinute: 3 },
        dataDir: dir,
      }),
    );
    await using gw = await startGateway(["--config", `${dir}/c.json`, ...PORTS]);
    const post = async (token: string) => {
      const r = await fetch(
        `http://127.0.0.1:${gw.addresses.http.port}/api/v1/devices/h1/telemetry`,
        {
          method: "POST",
          headers: { authorization: `Bearer ${token}` },
          body: "1",
        },
      );
      const body = await r.json();
      return [r.status, body.type as string] as const;
    };
    for (let i = 0; i < 3; i++) assertEquals((await post("wrong"))[0], 401);
    const [status, type] = await post("right");
    assertEquals(status, 429);
    assert(type.endsWith("/login-throttled"), type);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
