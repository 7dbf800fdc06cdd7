/**
 * Benchmark helpers about processes and the machine (Linux `/proc`): resident memory and CPU time
 * of a process, the load average, free loopback ports, progress lines on stderr.
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

/** Clock ticks per second of `/proc/{pid}/stat` (USER_HZ, 100 on every Linux we run on). */
const USER_HZ = 100;

/** CPU seconds (user + system, all threads) a process has used so far (Linux `/proc`). */
export function cpuSecondsOf(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // The command name (field 2) may hold spaces: fields are counted after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / USER_HZ; // utime, stime (fields 14, 15)
}

/** The 1, 5 and 15 minute load averages. */
export function loadavg(): [number, number, number] {
  const [a, b, c] = Deno.loadavg();
  return [a, b, c];
}

/** A loopback port free at the time of the call (TCP or UDP). */
export function freePort(transport: "tcp" | "udp" = "tcp"): number {
  if (transport === "udp") {
    const s = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const port = (s.addr as Deno.NetAddr).port;
    s.close();
    return port;
  }
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Sleeps. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const encoder = new TextEncoder();

/** Writes a progress line to stderr. */
export function progress(msg: string): void {
  Deno.stderr.writeSync(encoder.encode(`[bench] ${msg}\n`));
}

/**
 * Samples a process's RSS every `everyMs` until disposed; `peak` is the largest seen. A sampler
 * always stops: use it with `using`.
 */
export class RssSampler implements Disposable {
  #timer: ReturnType<typeof setInterval>;
  #pid: number;
  /** Largest RSS seen, bytes. */
  peak: number;

  /** Starts sampling `pid`. */
  constructor(pid: number, everyMs = 100) {
    this.#pid = pid;
    this.peak = rssOf(pid);
    this.#timer = setInterval(() => this.sample(), everyMs);
  }

  /** Takes one sample now (a process that is gone is ignored). */
  sample(): void {
    try {
      this.peak = Math.max(this.peak, rssOf(this.#pid));
    } catch { /* gone: the scenario reports it */ }
  }

  /** Stops sampling. */
  [Symbol.dispose](): void {
    clearInterval(this.#timer);
  }
}
