import { assert, assertEquals } from "./_assert.ts";
import { runMain } from "./_process.ts";
import { parseYaml } from "./_dev_deps.ts";
import { mergeOverrides, parseCliArgs } from "../src/config/cli_args.ts";
import { loadConfigFile, resolveConfig } from "../src/config/config.ts";
import { MetricsRegistry } from "../src/core/metrics.ts";
import { Core } from "../src/core/core.ts";
import { silentLogger } from "../src/core/logger.ts";
import { HttpServer } from "../src/http/server.ts";

const root = new URL("../", import.meta.url).pathname;

/** The install guide's layout: the arm64 Deno, the bundle, and the `ferry` wrapper. */
const PI = {
  deno: "/usr/local/bin/deno",
  bundle: "/opt/ferry/ferry.js",
  ferry: "/usr/local/bin/ferry",
};

/**
 * The install guide's start command, made real under `dir`: the bundle built by `deno task
 * bundle`, deploy/pi/ferry pointing at it and at this machine's Deno, and the unit with its
 * ExecStart pointing at that wrapper.
 */
async function installLikeThePi(dir: string): Promise<{ ferry: string; unit: string }> {
  await Deno.chmod(dir, 0o755); // the service user must reach the wrapper and the bundle
  const bundle = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--platform", "deno", `${root}main.ts`, "-o", `${dir}/ferry.js`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(bundle.code, 0, new TextDecoder().decode(bundle.stderr));
  const wrapper = await Deno.readTextFile(`${root}deploy/pi/ferry`);
  assert(wrapper.includes(PI.deno) && wrapper.includes(PI.bundle), "deploy/pi/ferry moved");
  await Deno.writeTextFile(
    `${dir}/ferry`,
    wrapper.replaceAll(PI.deno, Deno.execPath()).replaceAll(PI.bundle, `${dir}/ferry.js`),
    { mode: 0o755 },
  );
  await Deno.chmod(`${dir}/ferry`, 0o755);
  const unit = await Deno.readTextFile(`${root}deploy/systemd/ferry.service`);
  assert(unit.includes(`ExecStart=${PI.ferry} `), "the unit does not start the guide's command");
  await Deno.writeTextFile(`${dir}/ferry.service`, unit.replaceAll(PI.ferry, `${dir}/ferry`));
  return { ferry: `${dir}/ferry`, unit: `${dir}/ferry.service` };
}

/** `Key=value` settings of a unit (the last one wins, as in systemd). */
function unitSettings(unit: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of unit.split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) out.set(m[1], m[2]);
  }
  return out;
}

Deno.test("deploy/systemd/ferry.service passes systemd-analyze verify with the install guide's start command (deploy/pi/ferry running the bundle)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { unit } = await installLikeThePi(dir);
    const out = await new Deno.Command("systemd-analyze", {
      args: ["verify", unit],
      stderr: "piped",
      stdout: "piped",
    })
      .output();
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    assertEquals(out.code, 0, text);
    assertEquals(text.trim(), "", "systemd-analyze printed warnings");
    const guide = await Deno.readTextFile(`${root}docs/install-pi.md`);
    assert(guide.includes("deploy/pi/ferry") && guide.includes("deploy/systemd/ferry.service"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("The unit's hardening leaves the gateway what it needs: its data dir, its config, its ports, JIT memory", async () => {
  const s = unitSettings(await Deno.readTextFile(`${root}deploy/systemd/ferry.service`));
  const exec = s.get("ExecStart")!.split(" ");
  const dataDir = exec[exec.indexOf("--data-dir") + 1];
  const config = exec[exec.indexOf("--config") + 1];
  // ProtectSystem=strict: only the unit's own directories are writable.
  assertEquals(s.get("ProtectSystem"), "strict");
  assertEquals(`/var/lib/${s.get("StateDirectory")}`, dataDir);
  assertEquals(s.get("WorkingDirectory"), dataDir);
  assertEquals(`/etc/${s.get("ConfigurationDirectory")}`, config.slice(0, config.lastIndexOf("/")));
  assert(s.get("Environment")!.includes(`DENO_DIR=/var/cache/${s.get("CacheDirectory")}/`));
  // Every default port is unprivileged, so no capability is needed to bind them.
  const config0 = (await import("../src/config/config.ts")).resolveConfig({});
  for (const l of ["binary", "mqtt", "coap", "http"] as const) assert(config0[l].port >= 1024);
  assertEquals(s.get("CapabilityBoundingSet"), "");
  assert(s.get("RestrictAddressFamilies")!.includes("AF_INET6"));
  assert(!s.has("MemoryDenyWriteExecute"), "V8's JIT needs W+X memory");
  assertEquals(s.get("KillSignal"), "SIGTERM"); // graceful shutdown
});

Deno.test("The unit's start command, run as the service user with the unit's umask and environment, writes its data dir, picks up a device root adds, and stops on SIGTERM", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { ferry } = await installLikeThePi(dir);
    const s = unitSettings(await Deno.readTextFile(`${root}deploy/systemd/ferry.service`));
    const root0 = Deno.uid() === 0;
    const user = 65534; // stands in for the unit's User=ferry
    // As systemd would lay them out: StateDirectory (0700, the user's), config (root's, readable).
    const state = `${dir}/var/lib/ferry`;
    const cache = `${dir}/var/cache/ferry`;
    await Deno.mkdir(`${dir}/var/lib`, { recursive: true, mode: 0o755 });
    await Deno.mkdir(state, { mode: 0o700 });
    await Deno.mkdir(cache, { recursive: true }); // CacheDirectory: Deno makes its deno/ in it
    await Deno.mkdir(`${dir}/etc/ferry`, { recursive: true });
    await Deno.writeTextFile(
      `${dir}/etc/ferry/ferry.jsonc`,
      `{ "binary": { "port": 0 }, "mqtt": { "port": 0, "websocket": { "port": 0 } }, "coap": { "port": 0 }, "http": { "port": 0 } }`,
    );
    if (root0) {
      await Deno.chown(state, user, user);
      await Deno.chown(cache, user, user);
      await Deno.chown(`${dir}/etc/ferry/ferry.jsonc`, 0, user);
      await Deno.chmod(`${dir}/etc/ferry/ferry.jsonc`, 0o640);
    }
    const env: Record<string, string> = {};
    for (const kv of s.get("Environment")!.split(" ")) {
      const [k, v] = kv.split("=");
      env[k] = v.replace("/var/cache/ferry", cache);
    }
    const args = s.get("ExecStart")!.split(" ").slice(1)
      .map((a) => a.startsWith("/etc/") || a.startsWith("/var/") ? `${dir}${a}` : a);
    const umask = s.get("UMask")!;
    const asUser = root0
      ? ["setpriv", `--reuid=${user}`, `--regid=${user}`, "--clear-groups", "--"]
      : [];
    const child = new Deno.Command(asUser[0] ?? "sh", {
      args: [...asUser.slice(1), "sh", "-c", `umask ${umask}; exec "$@"`, "sh", ferry, ...args]
        .slice(asUser.length ? 0 : 1),
      cwd: state,
      env,
      clearEnv: true,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const until = async (needle: string) => {
      while (!text.includes(needle)) {
        const { value, done } = await lines.read();
        if (done) throw new Error(`gateway ended before ${needle}:\n${text}`);
        text += value;
      }
    };
    try {
      await until(`"msg":"ready"`);
      // The admin adds a device as root with the same command; the running gateway reads it.
      const add = await new Deno.Command("sh", {
        args: [ferry, "device", "add", "s1", ...args],
        env,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(add.code, 0, new TextDecoder().decode(add.stderr));
      await until(`"msg":"anonymous access is now off`);
      assert(!text.includes("device file not reloaded"), text);
      const registry = await Deno.stat(`${state}/devices.json`);
      const db = await Deno.stat(`${state}/mqtt-state.db`);
      if (root0) assertEquals([registry.uid, db.uid], [user, user]);
      assertEquals(db.mode! & 0o077, 0, "UMask=0077 not applied");
    } finally {
      child.kill("SIGTERM");
      while (!(await lines.read()).done) { /* drain */ }
    }
    assertEquals((await child.status).code, 0, text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("The example Raspberry Pi config and the compose config pass 'ferry config check'", async () => {
  // `config check` reads every file a config names: the Pi example's certificates live under
  // /etc/ferry on a Pi, so they are made (dummy PEM files) under a temporary root here.
  const dir = await Deno.makeTempDir();
  try {
    for (const f of ["deploy/examples/raspberry-pi.jsonc", "deploy/docker/ferry.jsonc"]) {
      const text = (await Deno.readTextFile(`${root}${f}`))
        .replaceAll('"/etc/ferry/', `"${dir}/etc/ferry/`)
        .replaceAll('"/var/lib/ferry"', `"${dir}/var/lib/ferry"`);
      await Deno.mkdir(`${dir}/etc/ferry`, { recursive: true });
      for (const m of text.matchAll(new RegExp(`"(${dir}/etc/ferry/[^"]+)"`, "g"))) {
        await Deno.writeTextFile(m[1], "-----BEGIN TEST-----\n");
      }
      const name = f.slice(f.lastIndexOf("/") + 1);
      await Deno.writeTextFile(`${dir}/${name}`, text);
      const r = await runMain(["config", "check", "--config", `${dir}/${name}`]);
      assertEquals(r.code, 0, `${f}: ${r.stderr}`);
    }
    // Without those files it cannot start, and the check says which keys name them.
    const r = await runMain([
      "config",
      "check",
      "--config",
      `${root}deploy/examples/raspberry-pi.jsonc`,
      "--data-dir",
      `${dir}/data`,
    ]);
    assertEquals(r.code, 2);
    for (const key of ["mqtt.tls.certFile", "mqtt.tls.keyFile", "northbound.caFile"]) {
      assert(r.stderr.includes(`"${key}"`), r.stderr);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

interface ComposeService {
  image?: string;
  command?: string[];
  depends_on?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
}

Deno.test("deploy/docker: compose bridges Ferry to its mosquitto, and ports, healthcheck and entrypoint agree", async () => {
  const docker = `${root}deploy/docker/`;
  const compose = parseYaml(await Deno.readTextFile(`${docker}compose.yaml`)) as {
    services: Record<string, ComposeService>;
  };
  const { mosquitto, ferry } = compose.services;
  assert(ferry.depends_on?.includes("mosquitto"), "ferry does not wait for mosquitto");
  // The config ferry gets is ./ferry.jsonc, mounted where its command points.
  const mount = ferry.volumes!.map((v) => v.split(":")).find(([from]) => from === "./ferry.jsonc");
  assert(mount, "ferry.jsonc is not mounted");
  const args = parseCliArgs(ferry.command!);
  assertEquals(args.configFile, mount[1]);
  // The entrypoint adds --http-port "$FERRY_HTTP_PORT" (a flag: it wins over the file).
  const dockerfile = await Deno.readTextFile(`${docker}Dockerfile`);
  const entrypoint = JSON.parse(/^ENTRYPOINT (.*)$/m.exec(dockerfile)![1]) as string[];
  assert(entrypoint[2].includes(`--http-port "$FERRY_HTTP_PORT"`), entrypoint[2]);
  const httpPort = ferry.environment?.FERRY_HTTP_PORT ??
    /^ENV FERRY_HTTP_PORT=(\d+)$/m.exec(dockerfile)![1];
  const config = resolveConfig(mergeOverrides(
    await loadConfigFile(`${docker}ferry.jsonc`),
    mergeOverrides(args.overrides, { http: { port: Number(httpPort) } }) as Record<
      string,
      unknown
    >,
  ));
  // Northbound: the upstream is the mosquitto service, on the port it listens on in the network,
  // with no credentials, which mosquitto-no-auth.conf accepts.
  const nb = config.northbound;
  const up = new URL(Array.isArray(nb) ? nb[0].url! : nb!.url!);
  assertEquals(up.hostname, "mosquitto");
  const inner = mosquitto.ports!.map((p) => p.split(":").at(-1));
  assertEquals(Number(up.port || 1883), 1883);
  assert(inner.includes("1883"), "mosquitto's container port is not 1883");
  assertEquals([up.username, up.password], ["", ""]);
  assert(mosquitto.command!.includes("/mosquitto-no-auth.conf"));
  // Every published container port is a listener of that config, with its protocol.
  const listeners = new Set([
    `${config.binary.port}/tcp`,
    `${config.mqtt.port}/tcp`,
    `${config.coap.port}/udp`,
    `${config.http.port}/tcp`,
    ...(config.mqtt.websocket.enabled ? [`${config.mqtt.websocket.port}/tcp`] : []),
  ]);
  const published = new Set(ferry.ports!.map((p) => {
    const target = p.split(":").at(-1)!;
    return target.includes("/") ? target : `${target}/tcp`;
  }));
  assertEquals(published, listeners);
  const exposed = /^EXPOSE (.*)$/m.exec(dockerfile)![1].split(" ")
    .map((p) => p.replace("${FERRY_HTTP_PORT}", httpPort))
    .map((p) => p.includes("/") ? p : `${p}/tcp`);
  assertEquals(new Set(exposed), listeners);
  // The healthcheck asks the port the entrypoint gives the HTTP listener, not a literal.
  const health = /^HEALTHCHECK .*$/m.exec(dockerfile)![0];
  assert(health.includes("FERRY_HTTP_PORT") && !health.includes("8080"), health);
  // The entrypoint runs what `deno task start` runs.
  const start = JSON.parse(await Deno.readTextFile(`${root}deno.json`)).tasks.start as string;
  assert(entrypoint[2].includes(`exec ${start} `), `${entrypoint[2]}\nvs ${start}`);
});

Deno.test("deploy/ferry.schema.json is the schema the CLI prints (regenerate with 'ferry config schema')", async () => {
  const r = await runMain(["config", "schema"]);
  assertEquals(
    JSON.parse(await Deno.readTextFile(`${root}deploy/ferry.schema.json`)),
    JSON.parse(r.stdout),
  );
});

Deno.test("Every metric the Grafana dashboard queries is one the gateway exports", async () => {
  const core = new Core({ log: silentLogger, metrics: new MetricsRegistry() });
  const http = new HttpServer(core, { hostname: "127.0.0.1", port: 0 });
  const text = core.metrics.render();
  await core.close();
  await http.close();
  const exported = new Set([...text.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]));
  const dash = JSON.parse(await Deno.readTextFile(`${root}deploy/grafana/ferry-dashboard.json`));
  const exprs: string[] = dash.panels.flatMap((p: { targets: Array<{ expr: string }> }) =>
    p.targets.map((t) => t.expr)
  );
  const used = new Set(
    exprs.flatMap((e) => [...e.matchAll(/\b(ferry_[a-z_]+)\b/g)].map((m) => m[1])),
  );
  // The bridge registers its metrics only when an upstream is configured: read their names from it.
  for (const e of Deno.readDirSync(`${root}src/northbound`)) {
    const src = Deno.readTextFileSync(`${root}src/northbound/${e.name}`);
    for (const m of src.matchAll(/"(ferry_(?:northbound|spool)_[a-z_]+)"/g)) exported.add(m[1]);
  }
  for (const m of used) {
    assert(exported.has(m), `dashboard queries ${m}, which the gateway does not export`);
  }
});
