/**
 * Runs `main.ts` as a child process and reads its JSON log lines, for end-to-end tests.
 *
 * @module
 */

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** A running gateway process. */
export interface GatewayProcess extends AsyncDisposable {
  child: Deno.ChildProcess;
  /** Log lines so far (parsed JSON when possible). */
  lines: Array<Record<string, unknown>>;
  /** Raw stderr text so far. */
  stderr: () => string;
  /** Raw stdout text so far (the one-time dashboard login link is printed there). */
  stdout: () => string;
  /** Waits for a log line matching `pred`. */
  waitForLine(
    pred: (l: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** Bound addresses from the `ready` line. */
  addresses: Record<string, { hostname: string; port: number }>;
  /** Exit status (after the process ended). */
  status: Promise<Deno.CommandStatus>;
}

/** Options of {@link startGateway}. */
export interface StartGatewayOptions {
  /** Run with this open-file limit (`ulimit -n`), to exercise the descriptor budget. */
  fileLimit?: number;
}

/** Starts `deno run main.ts ...args` and waits until it logs `ready`. */
export async function startGateway(
  args: string[],
  env: Record<string, string> = {},
  options: StartGatewayOptions = {},
): Promise<GatewayProcess> {
  const deno = [
    Deno.execPath(),
    "run",
    "-A",
    "--unstable-net",
    "--v8-flags=--optimize-for-size",
    MAIN,
    ...args,
  ];
  const child = new Deno.Command(options.fileLimit ? "/bin/sh" : deno[0], {
    // `exec` keeps the pid the gateway's (signals and /proc/<pid> reach it).
    args: options.fileLimit
      ? ["-c", `ulimit -n ${options.fileLimit} && exec "$@"`, "sh", ...deno]
      : deno.slice(1),
    stdout: "piped",
    stderr: "piped",
    env,
  }).spawn();
  const lines: Array<Record<string, unknown>> = [];
  let raw = "";
  const listeners: Array<() => void> = [];
  const readErr = (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of child.stderr) {
      const s = dec.decode(chunk, { stream: true });
      raw += s;
      buf += s;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          lines.push(JSON.parse(line));
        } catch {
          lines.push({ raw: line });
        }
        for (const l of listeners.splice(0)) l();
      }
    }
    for (const l of listeners.splice(0)) l();
  })();
  let out = "";
  const outDecoder = new TextDecoder();
  const drainOut = child.stdout.pipeTo(
    new WritableStream({ write: (c) => void (out += outDecoder.decode(c, { stream: true })) }),
  );
  let exited = false;
  const status = Promise.all([child.status, readErr, drainOut]).then(([s]) => {
    exited = true;
    for (const l of listeners.splice(0)) l();
    return s;
  });
  const waitForLine = async (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 15_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = lines.find(pred);
      if (hit) return hit;
      if (exited) throw new Error(`gateway exited before the expected line; stderr:\n${raw}`);
      if (Date.now() > deadline) {
        throw new Error(`Timed out waiting for a log line; stderr:\n${raw}`);
      }
      let t: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        listeners.push(r);
        t = setTimeout(r, 100);
      });
      clearTimeout(t);
    }
  };
  const proc: GatewayProcess = {
    child,
    lines,
    stderr: () => raw,
    stdout: () => out,
    waitForLine,
    addresses: {},
    status,
    async [Symbol.asyncDispose]() {
      if (!exited) {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }
      await status;
    },
  };
  const ready = await waitForLine((l) => l.msg === "ready");
  proc.addresses = ready.addresses as GatewayProcess["addresses"];
  return proc;
}

/** Runs `main.ts` to completion (for config errors); returns code and output. */
export async function runMain(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-net", "--v8-flags=--optimize-for-size", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}
