import { FbpClient } from "../src/protocols/binary/client.ts";
import { AckStatus } from "../src/protocols/binary/frame.ts";
import { assertEquals } from "./_assert.ts";
import { waitFor } from "./_harness.ts";
import { startMosquitto, subscribe } from "./_mosquitto.ts";

const GATEWAY = new URL("./_northbound_gateway.ts", import.meta.url).pathname;

interface GatewayProc extends AsyncDisposable {
  port: number;
  backlog: number;
  kill9(): Promise<void>;
}

async function startGatewayProcess(dataDir: string, upstream: string): Promise<GatewayProc> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", GATEWAY, "--data", dataDir, "--upstream", upstream, "--gateway-id", "gw1"],
    stdout: "piped",
    stderr: Deno.env.get("FERRY_TEST_LOG") === undefined ? "null" : "inherit",
    stdin: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  for (let i = 0; i < 100 && !text.includes("\n"); i++) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  const drained = (async () => {
    for (let i = 0; i < 1e6; i++) if ((await reader.read()).done) break;
  })();
  const { port, backlog } = JSON.parse(text.split("\n")[0]);
  let dead = false;
  const kill9 = async () => {
    if (dead) return;
    dead = true;
    child.kill("SIGKILL");
    await child.status;
    await drained;
  };
  return { port, backlog, kill9, [Symbol.asyncDispose]: kill9 };
}

Deno.test("A gateway killed with SIGKILL mid-stream loses none of the messages its devices got acknowledged", async () => {
  await using broker = await startMosquitto({ persistence: true });
  await using sub = await subscribe(broker.url, "ferry/gw1/devices/+/telemetry");
  const dir = await Deno.makeTempDir({ prefix: "ferry-nb-crash-" });
  const DEVICES = 20;
  const PER = 60;
  const acked = new Set<string>();
  const next = new Array(DEVICES).fill(0);
  // Devices send until their gateway goes away; `next` remembers where each one stopped.
  const run = (port: number, until: number) =>
    Promise.all(Array.from({ length: DEVICES }, async (_, d) => {
      let c: FbpClient;
      try {
        c = await FbpClient.connect({ port, id: `d${d}` });
      } catch {
        return;
      }
      try {
        for (; next[d] < until; next[d]++) {
          const seq = next[d];
          const status = await c.telemetry(new TextEncoder().encode(String(seq)), {
            ack: true,
            timeoutMs: 2000,
          });
          if (status !== AckStatus.OK) break;
          acked.add(`d${d}:${seq}`);
        }
      } catch { /* the gateway died */ }
      await c.close();
    }));
  try {
    const gw1 = await startGatewayProcess(dir, broker.url);
    const stream = run(gw1.port, PER);
    await waitFor(() => acked.size >= DEVICES * 10, "some traffic");
    await broker.stop("SIGTERM"); // the link is down: the rest piles up in the spool
    await waitFor(() => acked.size >= DEVICES * PER * 0.6, "a backlog");
    await gw1.kill9();
    await stream;
    const ackedBeforeCrash = acked.size;
    await broker.start();
    await using gw2 = await startGatewayProcess(dir, broker.url);
    await run(gw2.port, PER); // the devices come back and finish their stream
    const got = () => new Set(sub.received.map((r) => `${r.topic.split("/")[3]}:${r.text}`));
    await waitFor(() => [...acked].every((k) => got().has(k)), "every acknowledged message", 20_000)
      .catch((err) => {
        const missing = [...acked].filter((k) => !got().has(k));
        throw new Error(`${err.message}: ${missing.length} missing, e.g. ${missing.slice(0, 10)}`);
      });
    console.log(
      `gateway kill -9: ${ackedBeforeCrash} acknowledged before the crash, ${gw2.backlog} in the ` +
        `spool at restart, ${acked.size} acknowledged in all, ${sub.received.length} received ` +
        `upstream (${sub.received.length - got().size} duplicates)`,
    );
    assertEquals(acked.size, DEVICES * PER);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("The upstream learns from the gateway's will that a killed gateway is offline", async () => {
  await using broker = await startMosquitto();
  await using sub = await subscribe(broker.url, "ferry/gw1/status");
  const dir = await Deno.makeTempDir({ prefix: "ferry-nb-will-" });
  try {
    const gw = await startGatewayProcess(dir, broker.url);
    await waitFor(() => sub.received.at(-1)?.text === "online", "online");
    await gw.kill9();
    await waitFor(() => sub.received.at(-1)?.text === "offline", "the will");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
