/**
 * Footprint of the gateway as `deno task start` runs it (every listener on): start-up time to
 * ready, idle RSS, and RSS with 1,000 connected FBP/1 devices. Medians of `runs` starts.
 *
 * @module
 */

import { encodeFrame, encodeHello, FrameType } from "../src/protocols/binary/frame.ts";
import { median, progress, rssOf, sleep } from "./_util.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function once(
  devices: number,
): Promise<{ startMs: number; idleRss: number; rssWithDevices: number }> {
  const dir = await Deno.makeTempDir();
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-net",
      "--v8-flags=--optimize-for-size",
      MAIN,
      "--binary-port",
      "0",
      "--mqtt-port",
      "0",
      "--coap-port",
      "0",
      "--http-port",
      "0",
      "--data-dir",
      dir,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let port = 0;
  while (!port) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`gateway exited:\n${text}`);
    text += value;
    const m = /"msg":"ready","addresses":\{"binary":\{"hostname":"[^"]+","port":(\d+)/.exec(text);
    if (m) port = Number(m[1]);
  }
  const startMs = performance.now() - t0;
  const drain = (async () => {
    while (!(await reader.read()).done) { /* keep the pipe empty */ }
  })();
  await sleep(1000);
  const idleRss = rssOf(child.pid);
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < devices; i++) {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    await c.write(
      encodeFrame({
        type: FrameType.HELLO,
        flags: 0,
        seq: 1,
        payload: encodeHello({ id: `fp-${i}`, token: "", keepAlive: 600 }),
      }),
    );
    await c.read(new Uint8Array(64));
    conns.push(c);
  }
  await sleep(2500);
  const rssWithDevices = rssOf(child.pid);
  for (const c of conns) c.close();
  child.kill("SIGTERM");
  await child.status;
  await drain;
  await Deno.remove(dir, { recursive: true });
  return { startMs, idleRss, rssWithDevices };
}

/** Runs the footprint scenario `runs` times and reports medians. */
export async function run(
  options: { runs: number; devices: number },
): Promise<Record<string, unknown>> {
  const results = [];
  for (let i = 0; i < options.runs; i++) {
    progress(`footprint run ${i + 1}/${options.runs}`);
    results.push(await once(options.devices));
  }
  return {
    runs: options.runs,
    devices: options.devices,
    startToReadyMs: Math.round(median(results.map((r) => r.startMs))),
    idleRssMiB: Number((median(results.map((r) => r.idleRss)) / 1048576).toFixed(1)),
    rssWithDevicesMiB: Number((median(results.map((r) => r.rssWithDevices)) / 1048576).toFixed(1)),
  };
}
