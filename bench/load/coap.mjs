// CoAP load program, on Node: libuv's UDP costs the client about a third of the CPU that a Deno
// client needs per request, so the client does not cap the server (libcoap in particular). Run by
// bench/run.ts in several processes at once: `node bench/load/coap.mjs '<JSON parameters>'`.
//
// Each client is one UDP socket with one Confirmable request outstanding: Ferry gets
// `POST /d/{id}/telemetry?token=bench` (its device API, topic devices/{id}/telemetry), libcoap
// `PUT /example_data`, same payload. The processes share one window by wall clock (`startAt`);
// each reports the 2.xx responses inside the window, their latency as a histogram in the format
// of bench/_stats.ts LatencyHistogram (buckets 1% wide from 1 µs), and the server's CPU use.
import dgram from "node:dgram";
import { readFileSync } from "node:fs";

const p = JSON.parse(process.argv[2] ?? "null");
if (!p) {
  console.error("usage: node bench/load/coap.mjs '<JSON parameters>'");
  process.exit(2);
}

const STEP = Math.log(1.01);
const buckets = new Map();
let maxMs = 0;
function record(ms) {
  const b = Math.floor(Math.log(Math.max(ms, 0.001) / 0.001) / STEP);
  buckets.set(b, (buckets.get(b) ?? 0) + 1);
  if (ms > maxMs) maxMs = ms;
}

function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

function deviceId(i) {
  return `bench-dev-${String(i).padStart(5, "0")}`;
}

const PAYLOAD = Buffer.from('{"t":21.5,"h":40}');
// A CoAP CON request (RFC 7252 §3): 2-byte token, options in ascending order, payload.
function request(code, options) {
  const parts = [0x42, code, 0, 0, 0, 0]; // ver 1, CON, TKL 2; message id and token patched
  let prev = 0;
  const nib = (x) => (x < 13 ? x : x < 269 ? 13 : 14);
  for (const [num, value] of options) {
    const v = Buffer.from(value);
    const delta = num - prev;
    prev = num;
    parts.push((nib(delta) << 4) | nib(v.length));
    for (const x of [delta, v.length]) {
      if (x >= 269) parts.push((x - 269) >> 8, (x - 269) & 0xff);
      else if (x >= 13) parts.push(x - 13);
    }
    parts.push(...v);
  }
  parts.push(0xff, ...PAYLOAD);
  return Buffer.from(parts);
}

const windowStart = p.startAt + p.warmupMs;
const windowEnd = windowStart + p.windowMs;
let stop = false;
let okInWindow = 0;
let errors = 0;
let timeouts = 0;
const codes = {};
let open = 0;

for (let k = 0; k < p.clients; k++) {
  const i = p.firstClient + k;
  const req = p.target === "ferry"
    ? request(0x02, [[11, "d"], [11, deviceId(i)], [11, "telemetry"], [15, "token=bench"]])
    : request(0x03, [[11, "example_data"]]);
  req[4] = (i >> 8) & 0xff;
  req[5] = i & 0xff;
  let mid = (i * 977) & 0xffff;
  let t0 = 0;
  let timer;
  const sock = dgram.createSocket("udp4");
  const send = () => {
    if (stop) {
      sock.close();
      open--;
      return;
    }
    mid = (mid + 1) & 0xffff;
    req[2] = mid >> 8;
    req[3] = mid & 0xff;
    t0 = performance.now();
    timer = setTimeout(() => {
      timeouts++;
      send();
    }, p.timeoutMs);
    sock.send(req, p.port, "127.0.0.1");
  };
  sock.on("message", (d) => {
    if (d.length < 4 || d[2] !== req[2] || d[3] !== req[3]) return; // a late answer
    clearTimeout(timer);
    const cls = d[1] >> 5;
    const code = `${cls}.${String(d[1] & 31).padStart(2, "0")}`;
    codes[code] = (codes[code] ?? 0) + 1;
    const at = Date.now(); // by wall clock: every process counts the same window
    if (cls !== 2) errors++;
    else if (at >= windowStart && at < windowEnd) {
      okInWindow++;
      record(performance.now() - t0);
    }
    send();
  });
  sock.on("error", () => errors++);
  open++;
  sock.bind(0, "127.0.0.1", send);
}

async function metricsCount() {
  if (!p.metricsUrl || p.firstClient !== 0) return null;
  try {
    const res = await fetch(p.metricsUrl, { signal: AbortSignal.timeout(5000) });
    const text = await res.text();
    let sum = null;
    for (const m of text.matchAll(/^ferry_messages_received_total\{([^}]*)\} (\S+)$/gm)) {
      if (/protocol="coap"/.test(m[1])) sum = (sum ?? 0) + Number(m[2]);
    }
    return sum;
  } catch {
    return null;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const start = windowStart;
if (Date.now() > p.startAt) {
  console.error(`load process started ${Date.now() - p.startAt} ms after the agreed start`);
  process.exit(1);
}
// The window opens and closes at the agreed wall-clock times in every process; the gateway's
// counter is read just after each (its own interval, for the cross-check only).
await sleep(start - Date.now());
const cpu0 = cpuSeconds(p.pid);
const w0 = performance.now();
let tm0 = performance.now();
const m0 = await metricsCount();
tm0 = (tm0 + performance.now()) / 2; // the middle of the request: a busy gateway answers late
await sleep(windowEnd - Date.now());
const w1 = performance.now();
const cpu1 = cpuSeconds(p.pid);
let tm1 = performance.now();
const m1 = await metricsCount();
tm1 = (tm1 + performance.now()) / 2;
stop = true;
const seconds = p.windowMs / 1000; // responses are counted by wall clock, not by the timers
const cpuSecondsWindow = (w1 - w0) / 1000;
const deadline = Date.now() + p.timeoutMs + 1000;
while (open > 0 && Date.now() < deadline) await sleep(20);
console.log(JSON.stringify({
  okInWindow,
  windowSeconds: seconds,
  serverCpuPercent: Math.round((100 * (cpu1 - cpu0)) / cpuSecondsWindow),
  metricsPerSecond: m0 !== null && m1 !== null ? (m1 - m0) / ((tm1 - tm0) / 1000) : null,
  errors,
  timeouts,
  codes,
  latency: { buckets: Object.fromEntries(buckets), max: maxMs },
}));
process.exit(0);
