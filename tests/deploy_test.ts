import { assert, assertEquals } from "./_assert.ts";
import { runMain } from "./_process.ts";
import { MetricsRegistry } from "../src/core/metrics.ts";
import { Core } from "../src/core/core.ts";
import { silentLogger } from "../src/core/logger.ts";
import { HttpServer } from "../src/http/server.ts";

const root = new URL("../", import.meta.url).pathname;

Deno.test("deploy/systemd/ferry.service passes systemd-analyze verify", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const stub = `${dir}/ferry`;
    await Deno.writeTextFile(stub, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    const unit = (await Deno.readTextFile(`${root}deploy/systemd/ferry.service`))
      .replaceAll("/usr/local/bin/ferry", stub);
    await Deno.writeTextFile(`${dir}/ferry.service`, unit);
    const out = await new Deno.Command("systemd-analyze", {
      args: ["verify", `${dir}/ferry.service`],
      stderr: "piped",
      stdout: "piped",
    })
      .output();
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    assertEquals(out.code, 0, text);
    assertEquals(text.trim(), "", "systemd-analyze printed warnings");
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
