/**
 * CoAP benchmark: Confirmable requests per second from 1,000 simulated devices (one UDP socket
 * each, one request outstanding each) with p50/p99 latency, against Ferry (`POST
 * /d/{id}/telemetry?token=…`, authenticated and published into the core) and libcoap's
 * `coap-server` (`PUT /example_data`, answered from memory) in the same run; plus memory per
 * observed registration for both. Run alone with `deno run -A --unstable-net bench/coap_bench.ts
 * [--quick]`, or through `bench/run.ts`.
 *
 * @module
 */

import { encodeMessage } from "../src/protocols/coap/codec.ts";
import { type CoapOption, CoapType, Code } from "../src/protocols/coap/message.ts";
import { encodeString, encodeUint, Opt } from "../src/protocols/coap/option_codec.ts";
import { type ChildServer, percentile, progress, rssOf, sleep, spawnServer } from "./_util.ts";

const FERRY = new URL("./coap_ferry_server.ts", import.meta.url).pathname;

function libcoapServer(): string {
  for (const n of ["coap-server", "coap-server-notls"]) {
    try {
      Deno.statSync(`/usr/bin/${n}`);
      return `/usr/bin/${n}`;
    } catch { /* next */ }
  }
  return "coap-server";
}

/** Starts Ferry's CoAP server in a child process. */
export function startFerry(): Promise<ChildServer> {
  return spawnServer(Deno.execPath(), [
    "run",
    "-A",
    "--unstable-net",
    "--v8-flags=--expose-gc",
    FERRY,
  ], (l) => {
    const m = /^listening (\d+)/.exec(l);
    return m ? Number(m[1]) : undefined;
  });
}

/** Starts libcoap's example server on a free port. */
export async function startLibcoap(): Promise<ChildServer> {
  const probe = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const child = new Deno.Command(libcoapServer(), {
    args: ["-A", "127.0.0.1", "-p", String(port), "-v", "0"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await sleep(300);
  return {
    pid: child.pid,
    port,
    child,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
    },
  };
}

/** Makes the request bytes of device `i` with message ID `mid`. */
type RequestFactory = (i: number) => Uint8Array;

/** Request template for Ferry: CON POST /d/dev{i}/telemetry?token=tok, 2-byte token. */
export function ferryRequest(i: number): Uint8Array {
  return encodeMessage({
    type: CoapType.CON,
    code: Code.POST,
    messageId: 0,
    token: new Uint8Array([i >> 8, i & 0xff]),
    options: [
      { number: Opt.URI_PATH, value: encodeString("d") },
      { number: Opt.URI_PATH, value: encodeString(`dev${i % 1000}`) },
      { number: Opt.URI_PATH, value: encodeString("telemetry") },
      { number: Opt.URI_QUERY, value: encodeString("token=tok") },
    ],
    payload: encodeString('{"t":21.5,"h":40}'),
  });
}

/** Request template for libcoap: CON PUT /example_data, 2-byte token, same payload. */
export function libcoapRequest(i: number): Uint8Array {
  return encodeMessage({
    type: CoapType.CON,
    code: Code.PUT,
    messageId: 0,
    token: new Uint8Array([i >> 8, i & 0xff]),
    options: [{ number: Opt.URI_PATH, value: encodeString("example_data") }],
    payload: encodeString('{"t":21.5,"h":40}'),
  });
}

/** Closed-loop load: each device keeps one CON outstanding for `seconds`. */
export async function load(
  port: number,
  options: { devices: number; seconds: number; make: RequestFactory; timeoutMs?: number },
): Promise<Record<string, number>> {
  const addr: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port };
  const timeoutMs = options.timeoutMs ?? 2000;
  const latencies: number[] = [];
  let ok = 0;
  let errors = 0;
  let timeouts = 0;
  const socks: Deno.DatagramConn[] = [];
  for (let i = 0; i < options.devices; i++) {
    socks.push(Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 }));
  }
  const start = performance.now();
  const end = start + options.seconds * 1000;
  let stop = false;
  const device = async (i: number) => {
    const sock = socks[i];
    const bytes = options.make(i);
    let mid = (i * 977) & 0xffff;
    let waiting: ((v: Uint8Array | undefined) => void) | undefined;
    const reader = (async () => {
      for (;;) {
        try {
          const [d] = await sock.receive();
          waiting?.(d);
        } catch {
          return;
        }
      }
    })();
    while (!stop && performance.now() < end) {
      mid = (mid + 1) & 0xffff;
      bytes[2] = mid >> 8;
      bytes[3] = mid & 0xff;
      const t0 = performance.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const got = new Promise<Uint8Array | undefined>((resolve) => {
        waiting = (d) => {
          if (!d || (d[2] === bytes[2] && d[3] === bytes[3])) resolve(d);
        };
        timer = setTimeout(() => resolve(undefined), timeoutMs);
      });
      await sock.send(bytes, addr).catch(() => {});
      const d = await got;
      clearTimeout(timer);
      if (!d) {
        timeouts++;
        continue;
      }
      const code = d[1];
      if (code >> 5 === 2) {
        ok++;
        latencies.push(performance.now() - t0);
      } else errors++;
    }
    waiting = undefined;
    return { reader };
  };
  const readers = (await Promise.all(socks.map((_, i) => device(i)))).map((d) => d.reader);
  const elapsed = (performance.now() - start) / 1000;
  stop = true;
  for (const s of socks) s.close();
  await Promise.all(readers);
  return {
    devices: options.devices,
    seconds: Number(elapsed.toFixed(2)),
    requests: ok,
    requestsPerSecond: Math.round(ok / elapsed),
    p50Ms: Number(percentile(latencies, 50).toFixed(2)),
    p99Ms: Number(percentile(latencies, 99).toFixed(2)),
    errors,
    timeouts,
  };
}

/**
 * Registers `n` observers (distinct endpoint/token pairs, one registration at a time per socket,
 * retried when lost) and reports the server's RSS growth per observer, measured after a warm-up
 * fifth of the registrations so JIT and pool growth are not counted.
 */
export async function observeMemory(
  server: ChildServer,
  options: {
    n: number;
    sockets: number;
    path: (i: number) => string[];
    query?: string;
    heap?: boolean;
  },
): Promise<Record<string, number>> {
  const addr: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: server.port };
  const socks: Deno.DatagramConn[] = [];
  for (let i = 0; i < options.sockets; i++) {
    socks.push(Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 }));
  }
  const waiting = new Map<Deno.DatagramConn, (d: Uint8Array | undefined) => void>();
  const readers = socks.map(async (sock) => {
    for (;;) {
      let d: Uint8Array;
      try {
        [d] = await sock.receive();
      } catch {
        return;
      }
      const type = (d[0] >> 4) & 3;
      if (type === 2) waiting.get(sock)?.(d); // ACK: a registration response
      else if (type === 0) { // CON notification: acknowledge so the observer stays
        await sock.send(new Uint8Array([0x60, 0, d[2], d[3]]), addr).catch(() => {});
      }
    }
  });
  let registered = 0;
  let mid = 1;
  const register = async (i: number) => {
    const sock = socks[i % socks.length];
    const opts: CoapOption[] = [{ number: Opt.OBSERVE, value: encodeUint(0) }];
    for (const p of options.path(i)) opts.push({ number: Opt.URI_PATH, value: encodeString(p) });
    if (options.query) opts.push({ number: Opt.URI_QUERY, value: encodeString(options.query) });
    const m = mid++ & 0xffff;
    const bytes = encodeMessage({
      type: CoapType.CON,
      code: Code.GET,
      messageId: m,
      token: new Uint8Array([(i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff, 0x0b]),
      options: opts,
      payload: new Uint8Array(),
    });
    for (let attempt = 0; attempt < 4; attempt++) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const got = new Promise<Uint8Array | undefined>((resolve) => {
        waiting.set(sock, (d) => {
          if (!d || ((d[2] << 8) | d[3]) === m) resolve(d);
        });
        timer = setTimeout(() => resolve(undefined), 1000);
      });
      await sock.send(bytes, addr).catch(() => {});
      const d = await got;
      clearTimeout(timer);
      if (d) {
        if (d[1] >> 5 === 2) registered++;
        return;
      }
    }
  };
  const batch = async (from: number, to: number) => {
    let next = from;
    await Promise.all(socks.map(async () => {
      while (next < to) await register(next++);
    }));
  };
  const warm = Math.floor(options.n / 5);
  await batch(0, warm);
  await sleep(500);
  const heapBefore = options.heap ? await heapOf(server.port) : NaN;
  const before = rssOf(server.pid);
  const first = registered;
  await batch(warm, options.n);
  await sleep(500);
  const after = rssOf(server.pid);
  const heapAfter = options.heap ? await heapOf(server.port) : NaN;
  for (const s of socks) s.close();
  await Promise.all(readers);
  const measured = registered - first;
  return {
    observers: registered,
    rssBeforeBytes: before,
    rssAfterBytes: after,
    bytesPerObserver: measured > 0 ? Math.round((after - before) / measured) : NaN,
    heapBytesPerObserver: measured > 0 ? Math.round((heapAfter - heapBefore) / measured) : NaN,
  };
}

/** V8 heap in use after GC, read from the bench server's `/_bench/heap` resource. */
async function heapOf(port: number): Promise<number> {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    const req = encodeMessage({
      type: CoapType.CON,
      code: Code.GET,
      messageId: 1,
      token: new Uint8Array([1]),
      options: [
        { number: Opt.URI_PATH, value: encodeString("_bench") },
        { number: Opt.URI_PATH, value: encodeString("heap") },
      ],
      payload: new Uint8Array(),
    });
    await sock.send(req, { transport: "udp", hostname: "127.0.0.1", port });
    const [d] = await sock.receive();
    return Number(new TextDecoder().decode(d.subarray(d.indexOf(0xff) + 1)));
  } finally {
    sock.close();
  }
}

/** Runs the CoAP scenarios side by side. */
export async function run(
  options: { devices: number; seconds: number; observers: number },
): Promise<Record<string, unknown>> {
  const results: Record<string, Record<string, unknown>> = {};
  const peers = [
    [
      "ferry",
      startFerry,
      ferryRequest,
      (i: number) => ["d", `dev${i % 1000}`, "commands"],
      "token=tok",
    ],
    ["libcoap", startLibcoap, libcoapRequest, () => ["time"], undefined],
  ] as const;
  for (const [name, start, make, path, query] of peers) {
    progress(`CoAP ${name}: ${options.devices} devices, CON requests for ${options.seconds} s`);
    {
      await using s = await start();
      results[name] = {
        throughput: await load(s.port, {
          devices: options.devices,
          seconds: options.seconds,
          make,
        }),
      };
    }
    progress(`CoAP ${name}: ${options.observers} observe registrations`);
    {
      await using s = await start();
      results[name].observe = await observeMemory(s, {
        n: options.observers,
        sockets: Math.min(100, options.observers),
        path,
        query,
        heap: name === "ferry",
      });
    }
    progress(`  ${JSON.stringify(results[name])}`);
  }
  const f = (results.ferry.throughput as Record<string, number>).requestsPerSecond;
  const l = (results.libcoap.throughput as Record<string, number>).requestsPerSecond;
  return {
    ...results,
    ratio: { ferryToLibcoapRequestsPerSecond: Number((f / l).toFixed(2)), goal: 0.5 },
  };
}

if (import.meta.main) {
  const quick = Deno.args.includes("--quick");
  const res = await run(
    quick
      ? { devices: 100, seconds: 2, observers: 500 }
      : { devices: 1000, seconds: 8, observers: 5000 },
  );
  console.log(JSON.stringify(res, null, 2));
}
