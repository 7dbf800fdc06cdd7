/**
 * Benchmark helpers: child processes, RSS, percentiles, progress on the terminal.
 *
 * @module
 */

/** Resident set size of a process in bytes (Linux `/proc`). */
export function rssOf(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** The p-th percentile (0..100) of `values` (sorted copy). */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** Median. */
export function median(values: number[]): number {
  return percentile(values, 50);
}

/** Writes a progress line to stderr. */
export function progress(msg: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`[bench] ${msg}\n`));
}

/** A server started as a child process that prints its port. */
export interface ChildServer extends AsyncDisposable {
  pid: number;
  port: number;
  child: Deno.ChildProcess;
}

/**
 * Spawns a command and waits until `findPort` extracts the port from its stderr/stdout lines.
 */
export async function spawnServer(
  cmd: string,
  args: string[],
  findPort: (line: string) => number | undefined,
  timeoutMs = 20_000,
): Promise<ChildServer> {
  const child = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).spawn();
  const found = Promise.withResolvers<number>();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of stream) {
      buf += dec.decode(chunk, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const p = findPort(line);
        if (p) found.resolve(p);
      }
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const timer = setTimeout(
    () => found.reject(new Error(`${cmd} did not report a port`)),
    timeoutMs,
  );
  const port = await found.promise.finally(() => clearTimeout(timer));
  return {
    pid: child.pid,
    port,
    child,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      const t = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5000);
      await child.status;
      clearTimeout(t);
      await pumps;
    },
  };
}

/** Sleeps. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
