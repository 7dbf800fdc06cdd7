import { resolveNorthboundOptions } from "../src/northbound/options.ts";
import { TokenBucket } from "../src/northbound/token_bucket.ts";
import { TopicMap } from "../src/northbound/topic_map.ts";
import { FakeClock } from "../src/core/clock.ts";
import { assert, assertEquals, assertThrows } from "./_assert.ts";

Deno.test("Northbound options take credentials from the URL without showing them in logs", () => {
  const o = resolveNorthboundOptions({ url: "mqtt://us%40r:p%3Ass@h.example", gatewayId: "gw" });
  assertEquals([o.hostname, o.port, o.tls, o.username, o.password], [
    "h.example",
    1883,
    false,
    "us@r",
    "p:ss",
  ]);
  assertEquals(o.displayUrl, "mqtt://h.example");
  const t = resolveNorthboundOptions({ url: "mqtts://[::1]", gatewayId: "gw", username: "u" });
  assertEquals([t.hostname, t.port, t.tls, t.username], ["::1", 8883, true, "u"]);
});

Deno.test("Northbound options refuse a bad URL, gateway id, window, policy or backoff", () => {
  assertThrows(
    () => resolveNorthboundOptions({ url: "http://h", gatewayId: "g" }),
    TypeError,
    "scheme",
  );
  assertThrows(
    () => resolveNorthboundOptions({ url: "not a url", gatewayId: "g" }),
    TypeError,
    "URL",
  );
  assertThrows(
    () => resolveNorthboundOptions({ url: "mqtt://h", gatewayId: "a/b" }),
    TypeError,
    "gatewayId",
  );
  assertThrows(
    () => resolveNorthboundOptions({ url: "mqtt://h", gatewayId: "g", inflight: 70000 }),
    RangeError,
    "inflight",
  );
  assertThrows(
    () =>
      resolveNorthboundOptions({
        url: "mqtt://h",
        gatewayId: "g",
        spool: { fullPolicy: "x" as "drop-oldest" },
      }),
    RangeError,
    "fullPolicy",
  );
  assertThrows(
    () =>
      resolveNorthboundOptions({
        url: "mqtt://h",
        gatewayId: "g",
        backoffBaseMs: 500,
        backoffCapMs: 100,
      }),
    RangeError,
    "backoffCapMs",
  );
});

Deno.test("TopicMap applies custom forward and exclude filters and a custom prefix", () => {
  const m = new TopicMap({
    gatewayId: "g7",
    prefix: "site/3/{gatewayId}",
    forward: ["devices/+/telemetry/#", "devices/+/acks/#"],
    exclude: ["devices/noisy/#"],
  });
  assert(m.forwards("devices/a/telemetry/t"));
  assert(m.forwards("devices/a/acks/reboot"));
  assert(!m.forwards("devices/a/status"), "not in forward");
  assert(!m.forwards("devices/noisy/telemetry"), "excluded");
  assertEquals(m.toUpstream("devices/a/telemetry"), "site/3/g7/devices/a/telemetry");
  assertEquals(m.downlinkFilter, "site/3/g7/devices/+/commands/#");
  assertEquals(m.fromUpstream("site/3/g7/devices/a/commands/x"), "devices/a/commands/x");
  assertEquals(m.fromUpstream("site/3/g8/devices/a/commands/x"), undefined);
  assertEquals(m.fromUpstream("site/3/g7/devices/a/commands/x/y"), undefined);
  assertThrows(() => new TopicMap({ gatewayId: "g", forward: ["a/#/b"] }), TypeError, "filter");
  assertThrows(() => new TopicMap({ gatewayId: "g", prefix: "a/+" }), TypeError, "prefix");
});

Deno.test("TokenBucket paces to its rate after the burst and pays back overspending", () => {
  const clock = new FakeClock(0);
  const b = new TokenBucket({ ratePerSec: 1000, burst: 50, clock });
  assertEquals(b.available(), 50);
  b.spend(60);
  assertEquals(b.available(), 0);
  assertEquals(b.msUntil(1), 11);
  clock.tick(1000);
  assertEquals(b.available(), 50, "capped at the burst");
  assert(new TokenBucket({ ratePerSec: 0 }).unlimited);
});
