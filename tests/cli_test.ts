/**
 * The command line as the README shows it, run as a subprocess: --version, --help, config check
 * (what it checks without binding), duplicate keys, start-up errors that name the listener, and
 * the device registry's owner and the anonymous-access notes.
 */
import { assert, assertEquals } from "./_assert.ts";
import { runMain, startGateway } from "./_process.ts";
import { parseCliArgs, SYNOPSIS } from "../src/config/cli_args.ts";

const root = new URL("../", import.meta.url);
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

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function check(dir: string, config: string, ...args: string[]) {
  await Deno.writeTextFile(`${dir}/c.jsonc`, config);
  return await runMain(["config", "check", "--config", `${dir}/c.jsonc`, ...args]);
}

Deno.test("ferry --version prints the version in deno.json and exits 0", async () => {
  const { version } = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));
  const r = await runMain(["--version"]);
  assertEquals(r.code, 0, r.stderr);
  assert(r.stdout.startsWith(`ferry ${version} (deno `), r.stdout);
});

Deno.test("ferry --help shows the synopsis the README shows under 'Command line'", async () => {
  const r = await runMain(["--help"]);
  assertEquals(r.code, 0);
  for (const line of SYNOPSIS.split("\n")) assert(r.stdout.includes(line.trim()), line);
  const readme = await Deno.readTextFile(new URL("README.md", root));
  const block = /## Command line\n\n```\n([\s\S]*?)\n```/.exec(readme)?.[1];
  assertEquals(block, SYNOPSIS);
});

Deno.test("Every ferry command line in the README parses, and the README names no flag the CLI lacks", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", root));
  assert(!readme.includes("--json-schema"), "README mentions --json-schema");
  const commands = [
    ...readme.matchAll(/^(?:sudo -u \S+ )?(?:ferry|deno task start) (.*?)(?:\s+#.*)?$/gm),
  ]
    .map((m) => m[1].trim())
    .filter((line) => !/[[|]/.test(line)) // the synopsis, checked above
    .map((line) => line.split(/\s+/));
  assert(commands.length >= 6, `found ${commands.length} commands`);
  const known = new Set([
    "",
    "config check",
    "config schema",
    "device add",
    "device rotate",
    "device remove",
    "device list",
    "account add",
    "account remove",
    "account list",
    "coap-plugtest",
  ]);
  for (const words of commands) {
    const a = parseCliArgs(words.map((w) => w === "<id>" ? "x" : w));
    const verb = ["device", "config", "account"].includes(a.command[0])
      ? a.command.slice(0, 2).join(" ")
      : a.command.join(" ");
    assert(known.has(verb), `README: ferry ${words.join(" ")}`);
  }
});

Deno.test("ferry config check names a TLS file that cannot be read", async () => {
  await withDir(async (dir) => {
    const r = await check(
      dir,
      `{ "mqtt": { "tls": { "certFile": "${dir}/gw.pem", "keyFile": "${dir}/gw.key" } } }`,
      "--data-dir",
      dir,
    );
    assertEquals(r.code, 2);
    assert(
      r.stderr.includes(`"mqtt.tls.certFile"`) && r.stderr.includes(`${dir}/gw.pem`),
      r.stderr,
    );
    assert(r.stderr.includes(`"mqtt.tls.keyFile"`), r.stderr);
    await Deno.writeTextFile(`${dir}/gw.pem`, "-----BEGIN CERTIFICATE-----\n");
    await Deno.writeTextFile(`${dir}/gw.key`, "-----BEGIN PRIVATE KEY-----\n");
    const ok = await runMain(["config", "check", "--config", `${dir}/c.jsonc`, "--data-dir", dir]);
    assertEquals(ok.code, 0, ok.stderr);
  });
});

Deno.test("ferry config check refuses a host that is not an address and does not resolve", async () => {
  await withDir(async (dir) => {
    const bad = await check(dir, `{ "host": "999.1.1.1" }`, "--data-dir", dir);
    assertEquals(bad.code, 2);
    assert(bad.stderr.includes(`"host": "999.1.1.1" is not an IPv4 address`), bad.stderr);
    const unknown = await check(dir, `{ "host": "no-such-host.invalid" }`, "--data-dir", dir);
    assertEquals(unknown.code, 2);
    assert(unknown.stderr.includes(`"host"`) && unknown.stderr.includes("does not resolve"));
    const local = await check(dir, `{ "host": "localhost" }`, "--data-dir", dir);
    assertEquals(local.code, 0, local.stderr);
  });
});

Deno.test("ferry config check refuses a data directory it cannot write", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/file`, "");
    const r = await check(dir, `{ "dataDir": "${dir}/file/data" }`);
    assertEquals(r.code, 2);
    assert(r.stderr.includes(`"dataDir"`) && r.stderr.includes("not a directory"), r.stderr);
  });
});

Deno.test("A key given twice in a config file is refused, naming it (check and start)", async () => {
  await withDir(async (dir) => {
    const text = `{\n  "host": "127.0.0.1",\n  "host": "0.0.0.0"\n}`;
    const r = await check(dir, text, "--data-dir", dir);
    assertEquals(r.code, 2);
    assert(r.stderr.includes(`key "host" appears twice (line 3, column 3)`), r.stderr);
    const start = await runMain(["--config", `${dir}/c.jsonc`, ...PORTS, "--data-dir", dir]);
    assertEquals(start.code, 2);
    assert(start.stderr.includes(`key "host" appears twice`), start.stderr);
  });
});

Deno.test("A wrong type says 'an integer'", async () => {
  await withDir(async (dir) => {
    const r = await check(dir, `{ "binary": { "maxPayload": "big" } }`, "--data-dir", dir);
    assertEquals(r.code, 2);
    assert(r.stderr.includes(`"binary.maxPayload": expected an integer, got string`), r.stderr);
  });
});

Deno.test("A port in use at start names the listener and the address", async () => {
  await withDir(async (dir) => {
    using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = taken.addr.port;
    const r = await runMain([...PORTS, "--mqtt-port", String(port), "--data-dir", dir]);
    assertEquals(r.code, 2, r.stderr);
    assert(
      r.stderr.includes(`mqtt: cannot listen on 127.0.0.1:${port}: address already in use`),
      r.stderr,
    );
  });
});

Deno.test("ferry device add keeps the data directory's owner: the file belongs to the gateway's user, mode 0600", async () => {
  await withDir(async (dir) => {
    const service = 65534; // the user the gateway runs as (nobody)
    if (Deno.uid() === 0) {
      await Deno.chown(dir, service, service);
      const r = await runMain(["device", "add", "s1", "--data-dir", dir]);
      assertEquals(r.code, 0, r.stderr);
      const info = await Deno.stat(`${dir}/devices.json`);
      assertEquals([info.uid, info.gid, info.mode! & 0o777], [service, service, 0o600]);
      // A file the admin made group-readable keeps its mode and owner when rotated.
      await Deno.chmod(`${dir}/devices.json`, 0o640);
      assertEquals((await runMain(["device", "rotate", "s1", "--data-dir", dir])).code, 0);
      const again = await Deno.stat(`${dir}/devices.json`);
      assertEquals([again.uid, again.gid, again.mode! & 0o777], [service, service, 0o640]);
    } else {
      // Not root: a directory of another user cannot keep its owner, and the CLI says how to run.
      const r = await runMain(["device", "add", "s1", "--data-dir", "/"]);
      assertEquals(r.code, 2);
      assert(r.stderr.includes("sudo -u root ferry device"), r.stderr);
    }
  });
});

Deno.test("ferry account add run as root keeps the data directory's owner: the file belongs to the gateway's user, mode 0600, the token stored only as a hash", async () => {
  await withDir(async (dir) => {
    const service = 65534; // the user the gateway runs as (nobody)
    if (Deno.uid() === 0) {
      await Deno.chown(dir, service, service);
      const r = await runMain([
        "account",
        "add",
        "dash",
        "--subscribe",
        "devices/#",
        "--data-dir",
        dir,
      ]);
      assertEquals(r.code, 0, r.stderr);
      const info = await Deno.stat(`${dir}/devices.json`);
      assertEquals([info.uid, info.gid, info.mode! & 0o777], [service, service, 0o600]);
      const text = await Deno.readTextFile(`${dir}/devices.json`);
      assert(!text.includes(r.stdout.trim()) && text.includes("sha256:"), text);
      assertEquals((await runMain(["account", "remove", "dash", "--data-dir", dir])).code, 0);
      const again = await Deno.stat(`${dir}/devices.json`);
      assertEquals([again.uid, again.gid, again.mode! & 0o777], [service, service, 0o600]);
    } else {
      const r = await runMain(["account", "add", "dash", "--data-dir", "/"]);
      assertEquals(r.code, 2);
      assert(r.stderr.includes("sudo -u root ferry device|account"), r.stderr);
    }
  });
});

Deno.test("ferry device add says anonymous access is now off, and removing the last device says it is on again", async () => {
  await withDir(async (dir) => {
    const add = await runMain(["device", "add", "s1", "--data-dir", dir]);
    assert(add.stderr.includes("anonymous access is now off"), add.stderr);
    const add2 = await runMain(["device", "add", "s2", "--data-dir", dir]);
    assert(!add2.stderr.includes("anonymous"), add2.stderr);
    await runMain(["device", "remove", "s1", "--data-dir", dir]);
    const last = await runMain(["device", "remove", "s2", "--data-dir", dir]);
    assert(last.stderr.includes("anonymous access is on again"), last.stderr);
  });
});

Deno.test("A running gateway logs when the registry turns anonymous access off and back on", async () => {
  await withDir(async (dir) => {
    await using gw = await startGateway([...PORTS, "--data-dir", dir]);
    await runMain(["device", "add", "s1", "--data-dir", dir]);
    const off = await gw.waitForLine((l) =>
      String(l.msg).startsWith("anonymous access is now off")
    );
    assertEquals(off.level, "warn");
    await runMain(["device", "remove", "s1", "--data-dir", dir]);
    const on = await gw.waitForLine((l) =>
      String(l.msg).startsWith("anonymous access is on again")
    );
    assertEquals(on.level, "warn");
  });
});
