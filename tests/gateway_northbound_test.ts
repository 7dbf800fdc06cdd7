import { assert, assertEquals } from "./_assert.ts";
import { startGateway } from "./_process.ts";
import { enc, waitFor } from "./_harness.ts";
import { startMosquitto, subscribe } from "./_mosquitto.ts";
import { FbpClient } from "../src/protocols/binary/client.ts";
import { AckStatus } from "../src/protocols/binary/frame.ts";

Deno.test("Gateway with --upstream and --gateway-id bridges device telemetry to a real mosquitto and commands back down", async () => {
  await using broker = await startMosquitto();
  await using sub = await subscribe(broker.url, "ferry/gw-test/#");
  const dir = await Deno.makeTempDir();
  try {
    await using gw = await startGateway([
      "--upstream",
      broker.url,
      "--gateway-id",
      "gw-test",
      "--data-dir",
      dir,
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
    ]);
    const dev = await FbpClient.connect({ port: gw.addresses.binary.port, id: "pump-1" });
    for (let i = 0; i < 20; i++) {
      assertEquals(await dev.telemetry(enc(`v${i}`), { channel: "flow", ack: true }), AckStatus.OK);
    }
    await waitFor(
      () =>
        sub.received.filter((r) => r.topic === "ferry/gw-test/devices/pump-1/telemetry/flow")
          .length >= 20,
      "20 messages upstream",
      10_000,
    );
    const upstream = sub.received.filter((r) =>
      r.topic === "ferry/gw-test/devices/pump-1/telemetry/flow"
    ).map((r) => r.text);
    assertEquals([...new Set(upstream)], Array.from({ length: 20 }, (_, i) => `v${i}`));
    // Downlink: a command published upstream reaches the FBP/1 device; its ack goes back up.
    await sub.publish("ferry/gw-test/devices/pump-1/commands/stop", "now", 1);
    const cmd = await dev.nextCommand(10_000);
    assertEquals([cmd?.name, new TextDecoder().decode(cmd!.data)], ["stop", "now"]);
    await waitFor(
      () => sub.received.some((r) => r.topic === "ferry/gw-test/devices/pump-1/acks/stop"),
      "the ack upstream",
      10_000,
    );
    const metrics = await (await fetch(`http://127.0.0.1:${gw.addresses.http.port}/metrics`))
      .text();
    assert(/ferry_northbound_connected\S* 1/.test(metrics), "bridge not connected in /metrics");
    await dev.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Gateway refuses a northbound section without a valid url", async () => {
  const { runMain } = await import("./_process.ts");
  const r = await runMain(["--upstream", "http://nope"]);
  assertEquals(r.code, 2);
  assert(r.stderr.includes(`"northbound.url"`), r.stderr);
});
