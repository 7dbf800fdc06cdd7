/**
 * Helpers of the northbound attack tests: a real gateway process (`main.ts --config`) with every
 * listener on a free port, its `/metrics`, and a small tmpfs to fill (a disk that runs full, as
 * an SD card does). The tests run as root (CI does): `mount -t tmpfs` is available.
 *
 * @module
 */

import { type GatewayProcess, runMain, startGateway } from "./_process.ts";

/** Writes `config` to a file outside the data directory; returns its path. */
export async function writeConfig(config: unknown): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "ferry-cfg-", suffix: ".json" });
  await Deno.writeTextFile(path, JSON.stringify(config, null, 2));
  return path;
}

function ports(dataDir: string, cfg: string): string[] {
  return [
    "--config",
    cfg,
    "--data-dir",
    dataDir,
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
  ];
}

/**
 * Starts the gateway with `config` and `dataDir` (default: a temporary directory, removed when
 * the process is disposed); waits for `ready`.
 */
export async function startFerry(config: unknown, dataDir?: string): Promise<GatewayProcess> {
  const dir = dataDir ?? await Deno.makeTempDir({ prefix: "ferry-data-" });
  const cfg = await writeConfig(config);
  let proc: GatewayProcess;
  try {
    proc = await startGateway(ports(dir, cfg));
  } catch (err) {
    await Deno.remove(cfg).catch(() => {});
    throw err;
  }
  const dispose = proc[Symbol.asyncDispose].bind(proc);
  proc[Symbol.asyncDispose] = async () => {
    await dispose();
    await Deno.remove(cfg).catch(() => {});
    if (dataDir === undefined) await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  return proc;
}

/** Runs the gateway expecting it to refuse to start; returns exit code and output. */
export async function ferryRefuses(
  config: unknown,
  dataDir: string,
): Promise<{ code: number; stderr: string }> {
  const cfg = await writeConfig(config);
  try {
    const r = await runMain(ports(dataDir, cfg));
    return { code: r.code, stderr: r.stderr };
  } finally {
    await Deno.remove(cfg).catch(() => {});
  }
}

/** Scrapes `/metrics`; returns value by exact series (`name{labels}`) and by name (summed). */
export async function metrics(proc: GatewayProcess): Promise<(series: string) => number> {
  const res = await fetch(`http://127.0.0.1:${proc.addresses.http.port}/metrics`);
  const text = await res.text();
  const exact = new Map<string, number>();
  const byName = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    const key = line.slice(0, i);
    const v = Number(line.slice(i + 1));
    exact.set(key, v);
    const name = key.replace(/\{.*$/, "");
    byName.set(name, (byName.get(name) ?? 0) + v);
  }
  return (series) => exact.get(series) ?? (series.includes("{") ? 0 : byName.get(series) ?? 0);
}

/** Sends SIGTERM and waits for the exit. */
export async function stopFerry(proc: GatewayProcess): Promise<Deno.CommandStatus> {
  try {
    proc.child.kill("SIGTERM");
  } catch { /* gone */ }
  return await proc.status;
}

/** Kills with SIGKILL and waits. */
export async function killFerry(proc: GatewayProcess): Promise<void> {
  try {
    proc.child.kill("SIGKILL");
  } catch { /* gone */ }
  await proc.status;
}

/** A small tmpfs mounted on a fresh directory. */
export interface SmallDisk extends AsyncDisposable {
  /** Mount point. */
  readonly path: string;
  /** Fills what is left with a filler file (until ENOSPC). */
  fill(): Promise<void>;
  /** Takes `bytes` of the disk with a ballast file (what an operator can delete later). */
  ballast(bytes: number): Promise<void>;
  /** Removes the filler and the ballast. */
  free(): Promise<void>;
}

/** Mounts a tmpfs of `mib` MiB (root only). */
export async function smallDisk(mib: number): Promise<SmallDisk> {
  const path = await Deno.makeTempDir({ prefix: "ferry-disk-" });
  const out = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${mib}m,mode=0755`, "tmpfs", path],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (out.code !== 0) {
    throw new Error(`cannot mount a tmpfs: ${new TextDecoder().decode(out.stderr)}`);
  }
  const filler = `${path}/.filler`;
  return {
    path,
    async fill() {
      const f = await Deno.open(filler, { write: true, create: true, append: true });
      const chunk = new Uint8Array(64 * 1024);
      try {
        for (let i = 0; i < 1_000_000; i++) await f.write(chunk);
      } catch { /* ENOSPC: full */ }
      const small = new Uint8Array(512);
      try {
        for (let i = 0; i < 1_000_000; i++) await f.write(small);
      } catch { /* the last bytes */ }
      f.close();
    },
    async ballast(bytes: number) {
      await Deno.writeFile(`${path}/.ballast`, new Uint8Array(bytes));
    },
    async free() {
      await Deno.remove(filler).catch(() => {});
      await Deno.remove(`${path}/.ballast`).catch(() => {});
    },
    async [Symbol.asyncDispose]() {
      await new Deno.Command("umount", { args: ["-l", path], stdout: "null", stderr: "null" })
        .output();
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** Names in `dir` (no recursion). */
export function listDir(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

/**
 * Waits until every key in `expected` was received (`keyOf` maps a received payload text to its
 * key); throws naming how many are missing. Builds the received set once per check.
 */
export async function waitAllArrived(
  received: Array<{ text: string }> | Array<Array<{ text: string }>>,
  expected: string[],
  keyOf: (text: string) => string = (t) => t,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // Several live arrays (one per broker's subscriber) or one.
  const lists =
    (received.length > 0 && Array.isArray(received[0]) ? received : [received]) as Array<
      Array<{ text: string }>
    >;
  const seen = lists.map(() => 0);
  const got = new Set<string>();
  for (;;) {
    lists.forEach((list, i) => {
      for (; seen[i] < list.length; seen[i]++) got.add(keyOf(list[seen[i]].text));
    });
    const missing = expected.filter((k) => !got.has(k));
    if (missing.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(
        `${missing.length} of ${expected.length} acknowledged messages never arrived upstream, e.g. ${
          missing.slice(0, 5).join(", ")
        }`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Polls `/metrics` until `cond` holds (every 100 ms, at most `timeoutMs`). */
export async function waitMetric(
  proc: GatewayProcess,
  cond: (m: (series: string) => number) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (cond(await metrics(proc))) return;
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
