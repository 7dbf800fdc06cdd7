import { Core } from "../src/core/core.ts";
import { createMessage } from "../src/core/message.ts";
import { startNorthbound } from "../src/northbound/mod.ts";
import { assert, assertEquals } from "./_assert.ts";
import { enc, memoryLogger, waitFor } from "./_harness.ts";
import { freePort, startMosquitto, subscribe } from "./_mosquitto.ts";

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`. */
async function makePki(dir: string): Promise<void> {
  await openssl(
    dir,
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "2",
    "-subj",
    "/CN=Ferry Test CA",
  );
  for (
    const [name, ext] of [["server", "subjectAltName=IP:127.0.0.1,DNS:localhost"], [
      "client",
      "extendedKeyUsage=clientAuth",
    ]]
  ) {
    await openssl(
      dir,
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      `/CN=${name}`,
    );
    await Deno.writeTextFile(`${dir}/${name}.ext`, ext + "\n");
    await openssl(
      dir,
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.crt`,
      "-days",
      "2",
      "-extfile",
      `${name}.ext`,
    );
  }
  for (const f of ["ca.crt", "server.crt", "server.key"]) await Deno.chmod(`${dir}/${f}`, 0o644);
}

Deno.test("Bridge connects over mutual TLS with a private CA and a client certificate", async () => {
  const pki = await Deno.makeTempDir({ prefix: "ferry-pki-" });
  await Deno.chmod(pki, 0o755);
  const data = await Deno.makeTempDir({ prefix: "ferry-nb-tls-" });
  try {
    await makePki(pki);
    const tlsPort = freePort();
    await using broker = await startMosquitto({
      prelude: ["per_listener_settings true"],
      extra: [
        `listener ${tlsPort} 127.0.0.1`,
        "allow_anonymous true",
        `cafile ${pki}/ca.crt`,
        `certfile ${pki}/server.crt`,
        `keyfile ${pki}/server.key`,
        "require_certificate true",
      ],
    });
    await using sub = await subscribe(broker.url, "ferry/tls1/devices/#");
    const { log, lines } = memoryLogger();
    const core = new Core({ log });
    const nb = await startNorthbound(core, {
      url: `mqtts://127.0.0.1:${tlsPort}`,
      gatewayId: "tls1",
      caFile: `${pki}/ca.crt`,
      certFile: `${pki}/client.crt`,
      keyFile: `${pki}/client.key`,
      backoffBaseMs: 20,
      backoffCapMs: 100,
    }, data);
    try {
      await waitFor(() => nb.state === "live", "a TLS link", 10_000).catch((e) => {
        throw new Error(
          `${e.message}\n${lines.filter((l) => l.includes("northbound")).join("\n")}`,
        );
      });
      await core.publish(
        createMessage({ topic: "devices/d1/telemetry", payload: enc("secure"), qos: 1 }),
      );
      await waitFor(() => sub.received.some((r) => r.text === "secure"), "the message upstream");
    } finally {
      await core.close();
      await nb.close();
    }
  } finally {
    await Deno.remove(pki, { recursive: true });
    await Deno.remove(data, { recursive: true });
  }
});

Deno.test("Bridge without the client certificate is refused by a broker that requires one, and backs off", async () => {
  const pki = await Deno.makeTempDir({ prefix: "ferry-pki-" });
  await Deno.chmod(pki, 0o755);
  const data = await Deno.makeTempDir({ prefix: "ferry-nb-tls-" });
  try {
    await makePki(pki);
    const tlsPort = freePort();
    await using _broker = await startMosquitto({
      prelude: ["per_listener_settings true"],
      extra: [
        `listener ${tlsPort} 127.0.0.1`,
        "allow_anonymous true",
        `cafile ${pki}/ca.crt`,
        `certfile ${pki}/server.crt`,
        `keyfile ${pki}/server.key`,
        "require_certificate true",
      ],
    });
    const core = new Core({ log: memoryLogger().log });
    const nb = await startNorthbound(core, {
      url: `mqtts://127.0.0.1:${tlsPort}`,
      gatewayId: "tls2",
      caFile: `${pki}/ca.crt`,
      backoffBaseMs: 20,
      backoffCapMs: 100,
    }, data);
    try {
      await waitFor(() => nb.bridge.stats.failures >= 2, "refused attempts");
      assertEquals(nb.bridge.stats.connects, 0);
      assert(nb.state === "backing_off" || nb.state === "connecting", nb.state);
    } finally {
      await core.close();
      await nb.close();
    }
  } finally {
    await Deno.remove(pki, { recursive: true });
    await Deno.remove(data, { recursive: true });
  }
});

Deno.test("Bridge authenticates with a username and password", async () => {
  const authPort = freePort();
  // mosquitto_passwd writes the hashed file.
  const dir = await Deno.makeTempDir({ prefix: "ferry-pw-" });
  await Deno.chmod(dir, 0o755);
  const data = await Deno.makeTempDir({ prefix: "ferry-nb-pw-" });
  try {
    await Deno.writeTextFile(`${dir}/passwd`, "");
    const pw = await new Deno.Command("mosquitto_passwd", {
      args: ["-b", `${dir}/passwd`, "gw", "s3cret"],
      stdout: "null",
      stderr: "null",
    }).output();
    assert(pw.success, "mosquitto_passwd");
    await Deno.chmod(`${dir}/passwd`, 0o644);
    await using broker = await startMosquitto({
      prelude: ["per_listener_settings true"],
      extra: [
        `listener ${authPort} 127.0.0.1`,
        "allow_anonymous false",
        `password_file ${dir}/passwd`,
      ],
    });
    await using sub = await subscribe(broker.url, "ferry/pw/devices/#");
    const core = new Core({ log: memoryLogger().log });
    const bad = await startNorthbound(core, {
      url: `mqtt://gw:wrong@127.0.0.1:${authPort}`,
      gatewayId: "pw",
      backoffBaseMs: 20,
      backoffCapMs: 100,
      spool: { file: "bad.db" },
    }, data);
    await waitFor(() => bad.bridge.stats.failures >= 1, "a refused attempt");
    assertEquals(bad.bridge.stats.connects, 0);
    await bad.close();
    const nb = await startNorthbound(core, {
      url: `mqtt://gw:s3cret@127.0.0.1:${authPort}`,
      gatewayId: "pw",
    }, data);
    try {
      await waitFor(() => nb.state === "live", "an authenticated link");
      await core.publish(
        createMessage({ topic: "devices/d1/telemetry", payload: enc("pw"), qos: 1 }),
      );
      await waitFor(() => sub.received.some((r) => r.text === "pw"), "the message upstream");
    } finally {
      await core.close();
      await nb.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(data, { recursive: true });
  }
});
