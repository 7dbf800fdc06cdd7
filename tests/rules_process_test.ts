/**
 * Rules attacked in a real gateway process: `main.ts --config` started as a user starts it (the
 * worker permission option comes from `deno.json`), MQTT.js devices publishing, `mosquitto_sub`
 * as the application that sees the rules' outputs, the gateway's own log (stderr) and `/metrics`.
 * Each hostile rule (file, network, environment and subprocess access; a loop; floods of output;
 * throwing on every message) is contained: its message fails with a clear, rate-limited log line
 * and a counter, nothing leaks to the peer, and the gateway keeps serving devices and other rules.
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import { waitFor } from "./_harness.ts";
import { mqtt } from "./_dev_deps.ts";
import { metrics } from "./_ferry_process.ts";
import { type GatewayProcess, startGateway } from "./_process.ts";
import { FIXTURES } from "./_rules_harness.ts";

const DEVICES = ["s1", "s2"];
const token = (id: string) => `t-${id}`;
/** The escape rules: one per way out, each with its own log line and counters. */
const ESCAPES = ["read", "readFile", "write", "fetch", "connect", "env", "run"];
/** A rule name and telemetry channel of an escape (channels are lower case). */
const esc = (e: string) => `escape-${e.toLowerCase()}`;

/** `mosquitto_sub -v` as the application: every line it prints, as `topic payload`. */
function mosquittoSub(port: number, filter: string) {
  const child = new Deno.Command("mosquitto_sub", {
    args: [
      ...["-h", "127.0.0.1", "-p", String(port), "-i", "app", "-u", "app", "-P", "app-secret"],
      ...["-t", filter, "-q", "1", "-v"],
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const reading = (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    }
  })();
  const stderr = new Response(child.stderr).text();
  return {
    lines,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await Promise.all([child.status, reading, stderr]);
    },
  };
}

/** Log lines of `rule` with message `msg`. */
function ruleLines(proc: GatewayProcess, rule: string, msg: string) {
  return proc.lines.filter((l) => l.rule === rule && l.msg === msg);
}

Deno.test("hostile rules in a real gateway process are contained: refused by the sandbox, stopped at their budget, floods and throws fail their message with a rate-limited log line, and devices and other rules keep flowing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ferry-rules-proc-" });
  await using _cleanup = {
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
  await Deno.mkdir(`${dir}/rules`);
  for (const f of ["escape.ts", "throws.ts", "hang.ts", "huge.ts", "leak.ts", "celsius.ts"]) {
    await Deno.copyFile(`${FIXTURES}${f}`, `${dir}/rules/${f}`);
  }
  // What a rule must not reach: a file, a variable of the gateway's environment, an HTTP server
  // and a TCP listener on loopback.
  const secret = crypto.randomUUID();
  await Deno.writeTextFile(`${dir}/secret.txt`, secret);
  let fetched = 0;
  await using web = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    fetched++;
    return new Response(secret);
  });
  const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let connected = 0;
  const accepting = (async () => {
    try {
      for await (const c of tcp) {
        connected++;
        c.close();
      }
    } catch { /* closed */ }
  })();
  const probe: Record<string, unknown> = {
    read: `${dir}/secret.txt`,
    readFile: `${dir}/secret.txt`,
    write: `${dir}/pwned.txt`,
    fetch: `http://127.0.0.1:${web.addr.port}/`,
    connect: tcp.addr.port,
    env: "FERRY_RULES_PROC_SECRET",
    run: "true",
  };
  const config = {
    dataDir: `${dir}/data`,
    auth: {
      anonymous: false,
      devices: DEVICES.map((id) => ({ id, token: token(id) })),
      services: [{ name: "app", token: "app-secret", subscribe: ["#"], publish: [] }],
    },
    mqtt: { persistence: { enabled: false } },
    rules: [
      ...ESCAPES.map((e) => ({
        name: esc(e),
        from: [`devices/+/telemetry/${esc(e)}`],
        module: "rules/escape.ts",
        publish: ["rules/escape/#"],
      })),
      { name: "throws", from: ["devices/+/telemetry/throws"], module: "rules/throws.ts" },
      {
        name: "hang",
        from: ["devices/+/telemetry/hang"],
        module: "rules/hang.ts",
        timeoutMs: 1000,
      },
      // Its floods are stopped by the output bounds, not by time: building a million outputs
      // may take over the default 1 s on a loaded machine.
      {
        name: "huge",
        from: ["devices/+/telemetry/huge"],
        module: "rules/huge.ts",
        timeoutMs: 60_000,
      },
      {
        name: "leak",
        from: ["devices/+/telemetry/leak"],
        module: "rules/leak.ts",
        maxHeapBytes: 16 * 1024 * 1024,
      },
      { name: "celsius", from: ["devices/+/telemetry/temp"], module: "rules/celsius.ts" },
    ],
  };
  await Deno.writeTextFile(`${dir}/ferry.json`, JSON.stringify(config));
  const ports = ["--binary-port", "--mqtt-port", "--mqtt-ws-port", "--coap-port", "--http-port"]
    .flatMap((f) => [f, "0"]);
  await using proc = await startGateway(["--config", `${dir}/ferry.json`, ...ports], {
    FERRY_RULES_PROC_SECRET: secret,
  });
  const mqttPort = proc.addresses.mqtt.port;
  await using app = mosquittoSub(mqttPort, "rules/#");
  const dev = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
    clientId: "s1",
    username: "s1",
    password: token("s1"),
    reconnectPeriod: 0,
  });
  const other = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
    clientId: "s2",
    username: "s2",
    password: token("s2"),
    reconnectPeriod: 0,
  });
  // mosquitto_sub prints nothing when subscribed: a rule output it must see tells it is.
  for (let i = 0; i < 200 && app.lines.length === 0; i++) {
    await other.publishAsync("devices/s2/telemetry/temp", '{"temp_f":212}', { qos: 1 });
    await new Promise((r) => setTimeout(r, 50));
  }
  assert(app.lines.length > 0, "mosquitto_sub subscribed");
  await using _tcp = { [Symbol.asyncDispose]: () => (tcp.close(), accepting) };
  const send = (channel: string, payload: string) =>
    dev.publishAsync(`devices/s1/telemetry/${channel}`, payload, { qos: 1 });
  const seen = (line: string) => app.lines.includes(line);
  try {
    // The sandbox: every way out is refused, with the permission named in the log.
    for (const e of ESCAPES) await send(esc(e), JSON.stringify({ [e]: probe[e] }));
    await send("escape-read", "{}");
    const need: Record<string, string> = {
      read: "read",
      readFile: "read",
      write: "write",
      fetch: "net",
      connect: "net",
      env: "env",
      run: "run",
    };
    for (const e of ESCAPES) {
      const line = await proc.waitForLine((l) =>
        l.rule === esc(e) && l.msg === "rule failed on a message"
      );
      assert(
        String(line.error).startsWith(`NotCapable: Requires ${need[e]} access`),
        JSON.stringify(line),
      );
    }
    await waitFor(() => seen('rules/escape/got {"got":null}'), "the harmless probe's output");

    // Throwing on every message: counted each time, logged once per period, the next one flows.
    for (let i = 0; i < 30; i++) await send("throws", "bad");
    await send("throws", "good");
    await waitFor(() => seen("rules/throws/ok good"), "the good message after 30 bad ones");

    // A loop: stopped at its 1 s budget while another device and another rule are served.
    await send("hang", "before");
    await send("hang", "hang");
    await other.publishAsync("devices/s2/telemetry/temp", '{"temp_f":32}', { qos: 1 });
    await waitFor(() => seen('rules/celsius/s2/temp {"temp_c":0}'), "the other rule meanwhile");
    await send("hang", "after");
    await waitFor(() => seen("rules/hang/ok after"), "the message after the loop");

    // Floods of output: each fails its own message; the next one flows.
    for (const p of ["big", "many", "wide", "small"]) await send("huge", p);
    await waitFor(() => seen("rules/huge/ok small"), "the message after the floods");

    // A leak: 4 MiB kept per message; the worker is restarted past 16 MiB, nothing is lost.
    // One at a time, so that each is a batch of its own: the heap is read between batches.
    for (let i = 0; i < 8; i++) {
      await send("leak", `m${i}`);
      await waitFor(
        () => app.lines.filter((l) => l.startsWith("rules/leak/")).length === i + 1,
        `the leaking rule's output ${i}`,
      );
    }
  } finally {
    await dev.endAsync();
    await other.endAsync();
  }

  // What the application saw: the harmless outputs, nothing of the floods, never the secret.
  const mine = app.lines.filter((l) => !/^rules\/(celsius|leak)\//.test(l));
  assertEquals(mine, [
    'rules/escape/got {"got":null}',
    "rules/throws/ok good",
    "rules/hang/ok before",
    "rules/hang/ok after",
    "rules/huge/ok small",
  ]);
  assert(!app.lines.some((l) => l.includes(secret)), "the secret never left the gateway");
  assertEquals([fetched, connected], [0, 0], "no request or connection reached the servers");
  assert(!(await Deno.stat(`${dir}/pwned.txt`).then(() => true, () => false)), "no file written");
  assert(!proc.stderr().includes(secret), "nor did it reach the log");

  // The log: clear lines, rate limited (30 throws, far fewer lines), restarts said.
  const throwLines = ruleLines(proc, "throws", "rule failed on a message");
  assert(throwLines.length >= 1 && throwLines.length < 10, `${throwLines.length} lines`);
  assertEquals(throwLines[0].error, "RangeError: bad reading on devices/s1/telemetry/throws");
  assert(ruleLines(proc, "throws", "rule restarted").length >= 1, "10 errors in a row restart it");
  const [timeout] = ruleLines(proc, "hang", "rule failed on a message");
  assertEquals(timeout.kind, "timeout");
  assert(String(timeout.error).includes("1000 ms"), JSON.stringify(timeout));
  assert(ruleLines(proc, "hang", "rule restarted").length === 1, "the loop's worker restarted");
  const hugeLines = ruleLines(proc, "huge", "rule failed on a message");
  assert(hugeLines.length >= 1 && hugeLines.length <= 3, `${hugeLines.length} lines`);
  assert(String(hugeLines[0].error).includes("byte limit"), JSON.stringify(hugeLines[0]));

  const leaked = app.lines.filter((l) => l.startsWith("rules/leak/")).map((l) => l.split(" "));
  assertEquals(leaked.map(([, m]) => m), [...Array(8).keys()].map((i) => `m${i}`));
  assert(leaked.every(([, , held]) => Number(held) <= 4), `never over 16 MiB: ${leaked}`);
  const leakRestarts = ruleLines(proc, "leak", "rule restarted");
  assert(leakRestarts.length >= 1, "the leaking worker was restarted");
  assert(/heap grew to .* over its 16\.0 MiB limit/.test(String(leakRestarts[0].reason)));

  // The counters behind it, as /metrics shows them.
  const m = await metrics(proc);
  assertEquals(m('ferry_rule_errors_total{kind="throw",rule="throws"}'), 30);
  assertEquals(m('ferry_rule_errors_total{kind="timeout",rule="hang"}'), 1);
  assertEquals(m('ferry_rule_errors_total{kind="throw",rule="huge"}'), 3);
  for (const e of ESCAPES) {
    assertEquals(m(`ferry_rule_errors_total{kind="throw",rule="${esc(e)}"}`), 1, e);
  }
  assertEquals(m('ferry_rule_messages_out_total{route="core",rule="huge"}'), 1);
  assertEquals(m('ferry_rule_enabled{rule="throws"}'), 1, "not disabled: 3 restarts in a minute");

  proc.child.kill("SIGTERM");
  assertEquals((await proc.status).code, 0, "the gateway stops cleanly");
});

Deno.test("a rule's state outlives the gateway process: a deadband restarted with the same data directory still knows the last reading", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ferry-rules-state-" });
  await using _cleanup = {
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
  await Deno.mkdir(`${dir}/rules`);
  await Deno.copyFile(`${FIXTURES}deadband.ts`, `${dir}/rules/deadband.ts`);
  await Deno.writeTextFile(
    `${dir}/ferry.json`,
    JSON.stringify({
      dataDir: `${dir}/data`,
      auth: {
        anonymous: false,
        devices: DEVICES.map((id) => ({ id, token: token(id) })),
        services: [{ name: "app", token: "app-secret", subscribe: ["#"], publish: [] }],
      },
      rules: [{ name: "deadband", from: ["devices/+/telemetry"], module: "rules/deadband.ts" }],
    }),
  );
  const ports = ["--binary-port", "--mqtt-port", "--mqtt-ws-port", "--coap-port", "--http-port"]
    .flatMap((f) => [f, "0"]);
  /** Runs the gateway, sends `readings` from s1; returns what the app saw of s1; SIGTERM. */
  const run = async (readings: number[], last: string) => {
    await using proc = await startGateway(["--config", `${dir}/ferry.json`, ...ports]);
    const port = proc.addresses.mqtt.port;
    await using app = mosquittoSub(port, "rules/#");
    const connect = (id: string) =>
      mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
        clientId: id,
        username: id,
        password: token(id),
        reconnectPeriod: 0,
      });
    const [s1, s2] = [await connect("s1"), await connect("s2")];
    try {
      // s2's readings (far apart, so each passes the band) tell when mosquitto_sub is subscribed.
      for (let i = 0; i < 200 && app.lines.length === 0; i++) {
        await s2.publishAsync("devices/s2/telemetry", `{"v":${i % 2 ? 1000 : -1000}}`, { qos: 1 });
        await new Promise((r) => setTimeout(r, 50));
      }
      for (const v of readings) {
        await s1.publishAsync("devices/s1/telemetry", `{"v":${v}}`, { qos: 1 });
      }
      await waitFor(() => app.lines.includes(last), last);
    } finally {
      await s1.endAsync();
      await s2.endAsync();
    }
    proc.child.kill("SIGTERM");
    assertEquals((await proc.status).code, 0);
    return app.lines.filter((l) => l.startsWith("rules/deadband/s1 "));
  };
  assertEquals(await run([5], "rules/deadband/s1 5"), ["rules/deadband/s1 5"]);
  // A new process: 5.3 is within the band of the 5 the first one forwarded, so it is held back
  // (a rule without its state would forward it as a first reading); 7 is not.
  assertEquals(await run([5.3, 7], "rules/deadband/s1 7"), ["rules/deadband/s1 7"]);
});
