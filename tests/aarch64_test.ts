import { assertEquals } from "./_assert.ts";
import { enc } from "./_harness.ts";
import { FbpClient } from "../src/protocols/binary/client.ts";
import { AckStatus } from "../src/protocols/binary/frame.ts";

const root = new URL("../", import.meta.url).pathname;
const DENO_VERSION = "2.9.6";
const cache = `${Deno.env.get("HOME") ?? "/tmp"}/.cache/ferry-test/deno-arm64-${DENO_VERSION}`;

/** The aarch64 Deno from the npm registry (`@deno/linux-arm64-glibc`), fetched once. */
async function arm64Deno(): Promise<string> {
  const bin = `${cache}/package/deno`;
  try {
    await Deno.stat(bin);
    return bin;
  } catch { /* fetch it */ }
  await Deno.mkdir(cache, { recursive: true });
  const pack = await new Deno.Command("npm", {
    args: ["pack", `@deno/linux-arm64-glibc@${DENO_VERSION}`, "--pack-destination", cache],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (pack.code !== 0) throw new Error(`npm pack failed: ${new TextDecoder().decode(pack.stderr)}`);
  const tgz = `${cache}/deno-linux-arm64-glibc-${DENO_VERSION}.tgz`;
  const untar = await new Deno.Command("tar", { args: ["xzf", tgz, "-C", cache] }).output();
  if (untar.code !== 0) throw new Error("cannot unpack the arm64 Deno package");
  return bin;
}

/**
 * The bundle at a path named by its content under the test cache, so that V8's code cache (keyed
 * by path and source) is hit by the next run of the same bundle. Bundles unused for a day go.
 */
async function keptBundle(file: string): Promise<string> {
  const bytes = await Deno.readFile(file);
  const hash = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)))
    .slice(0, 8).map((b) => b.toString(16).padStart(2, "0")).join("");
  const dir = `${cache}/bundles`;
  await Deno.mkdir(dir, { recursive: true });
  for await (const e of Deno.readDir(dir)) {
    const info = await Deno.stat(`${dir}/${e.name}`).catch(() => undefined);
    if (info?.mtime && Date.now() - info.mtime.getTime() > 86_400_000) {
      await Deno.remove(`${dir}/${e.name}`).catch(() => {});
    }
  }
  const kept = `${dir}/ferry-${hash}.js`;
  try {
    await Deno.stat(kept);
    await Deno.utime(kept, new Date(), new Date());
  } catch {
    await Deno.writeFile(`${kept}.tmp-${Deno.pid}`, bytes);
    await Deno.rename(`${kept}.tmp-${Deno.pid}`, kept);
  }
  return kept;
}

Deno.test("The bundled gateway starts under the aarch64 Deno build in qemu-user and serves an FBP/1 device", async () => {
  const qemu = "/usr/bin/qemu-aarch64-static";
  await Deno.stat(qemu); // required peer: apt-get install qemu-user-static libc6-arm64-cross
  await Deno.stat("/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1");
  const deno = await arm64Deno();
  const dir = await Deno.makeTempDir();
  try {
    const bundle = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--platform", "deno", `${root}main.ts`, "-o", `${dir}/ferry.js`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(bundle.code, 0, new TextDecoder().decode(bundle.stderr));
    const script = await keptBundle(`${dir}/ferry.js`);
    const child = new Deno.Command(qemu, {
      args: [
        "-L",
        "/usr/aarch64-linux-gnu",
        deno,
        "run",
        "--unstable-net",
        "-A",
        script,
        "--binary-port",
        "0",
        "--mqtt-port",
        "0",
        "--mqtt-ws-port",
        "0",
        "--coap-port",
        "0",
        "--http-port",
        "0",
        "--data-dir",
        dir,
      ],
      // Deno's cache is kept between runs, as the Pi keeps it (the unit's CacheDirectory): V8's
      // code cache halves the start under qemu after the first run.
      env: { DENO_DIR: `${cache}/deno-dir`, NO_COLOR: "1" },
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    let port = 0;
    // A failure deadline: V8 emulated by qemu starts in ~10 s on an idle machine, and in minutes
    // when every core is busy (CI under load); only a gateway that never starts should fail here.
    const deadline = Date.now() + 300_000;
    while (!port && Date.now() < deadline) {
      const { value, done } = await lines.read();
      if (done) break;
      text += value;
      const m = /"msg":"binary listening","hostname":"[^"]+","port":(\d+)/.exec(text);
      if (m) port = Number(m[1]);
    }
    if (!port) {
      child.kill("SIGKILL");
      await child.status;
      throw new Error(`gateway under qemu did not start:\n${text}`);
    }
    await lines.read(); // the rest of the start-up lines
    const c = await FbpClient.connect({ port, id: "pi-1", timeoutMs: 120_000 });
    assertEquals(await c.telemetry(enc("arm64"), { ack: true, timeoutMs: 120_000 }), AckStatus.OK);
    await c.close();
    child.kill("SIGTERM");
    const drain = (async () => {
      while (!(await lines.read()).done) { /* drain */ }
    })();
    const status = await child.status;
    await drain;
    assertEquals(status.code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
