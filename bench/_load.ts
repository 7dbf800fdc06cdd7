/**
 * The orchestrator's side of the load programs: `runLoad("mqtt", params, timeoutMs)` runs
 * `bench/load/mqtt.ts` in its own process (`coap.mjs` on Node), forwards its progress, and returns
 * its JSON result. The child is killed when the bound passes; its failure is an error of this one
 * run.
 *
 * @module
 */

import { progress } from "./_util.ts";

const LOAD = new URL("./load/", import.meta.url).pathname;

/**
 * Runs `bench/load/{name}.ts` on Deno (or `{name}` itself on Node when it ends in `.mjs`) with
 * `params`; resolves with its result (bounded by `timeoutMs`).
 */
export async function runLoad<T>(
  name: string,
  params: Record<string, unknown>,
  timeoutMs: number,
): Promise<T> {
  const [cmd, args] = name.endsWith(".mjs")
    ? ["node", [`${LOAD}${name}`]]
    : [Deno.execPath(), ["run", "-A", "--unstable-net", `${LOAD}${name}.ts`]];
  const child = new Deno.Command(cmd, {
    args: [...args, JSON.stringify(params)],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lastLines: string[] = [];
  const stderr = (async () => {
    for await (const line of lines(child.stderr)) {
      progress(`  ${line}`);
      lastLines.push(line);
      if (lastLines.length > 12) lastLines.shift();
    }
  })();
  let out = "";
  const stdout = (async () => {
    for await (const s of child.stdout.pipeThrough(new TextDecoderStream())) out += s;
  })();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, timeoutMs);
  try {
    const status = await child.status;
    await Promise.all([stderr, stdout]);
    if (timedOut) throw new Error(`load ${name} killed after ${Math.round(timeoutMs / 1000)} s`);
    if (!status.success) {
      throw new Error(`load ${name} failed (exit ${status.code}): ${lastLines.join(" | ")}`);
    }
    const last = out.trim().split("\n").pop() ?? "";
    return JSON.parse(last) as T;
  } finally {
    clearTimeout(timer);
  }
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buf = "";
  for await (const s of stream.pipeThrough(new TextDecoderStream())) {
    buf += s;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}
