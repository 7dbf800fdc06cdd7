/**
 * The WebSocket opening handshake on a raw socket (ws_handshake.ts) and MQTT's upgrade policy
 * (ws_upgrade.ts), without sockets.
 */

import { assert, assertEquals } from "./_assert.ts";
import {
  checkUpgrade,
  readUpgradeRequest,
  switchingProtocols,
  WsHandshakeError,
} from "../src/net/ws_handshake.ts";
import { checkMqttUpgrade } from "../src/protocols/mqtt/ws_upgrade.ts";

function reader(chunks: Array<string | Uint8Array>) {
  const bytes = chunks.map((c) => typeof c === "string" ? new TextEncoder().encode(c) : c);
  return {
    read(p: Uint8Array): Promise<number | null> {
      const b = bytes.shift();
      if (!b) return Promise.resolve(null);
      p.set(b.subarray(0, p.length));
      if (b.length > p.length) bytes.unshift(b.subarray(p.length));
      return Promise.resolve(Math.min(b.length, p.length));
    },
  };
}

function refusal(fn: () => unknown): WsHandshakeError {
  try {
    fn();
  } catch (e) {
    if (e instanceof WsHandshakeError) return e;
    throw e;
  }
  throw new Error("not refused");
}

const policy = { path: "/mqtt", allowedOrigins: ["*"] };

Deno.test("readUpgradeRequest finds the end of the head split across reads and keeps the bytes after it", async () => {
  const r = await readUpgradeRequest(
    reader([
      "GET /mqtt?x=1 HTTP/1.1\r\nHo",
      "st: a\r\nX-Y:  v \r\n\r",
      Uint8Array.from([10, 0x82, 0x80]),
    ]),
    4096,
  );
  assertEquals(r?.request.method, "GET");
  assertEquals(r?.request.target, "/mqtt?x=1");
  assertEquals(r?.request.headers.get("x-y"), "v");
  assertEquals([...r!.rest!], [0x82, 0x80]);
  assertEquals(await readUpgradeRequest(reader(["GET / HTTP/1.1\r\n"]), 4096), null);
});

Deno.test("readUpgradeRequest refuses a head past its cap (431) and malformed lines (400)", async () => {
  for (
    const [chunks, status] of [
      [["GET / HTTP/1.1\r\n", "X: " + "y".repeat(5000)], 431],
      [["GET / HTTP/1.1\r\n folded: no\r\n\r\n"], 400],
      [["GET / HTTP/1.1\r\nno colon\r\n\r\n"], 400],
      [["BREW /pot HTCPCP/1.0\r\n\r\n"], 400],
    ] as Array<[string[], number]>
  ) {
    let status0 = 0;
    try {
      await readUpgradeRequest(reader(chunks), 1024);
    } catch (e) {
      if (e instanceof WsHandshakeError) status0 = e.status;
    }
    assertEquals(status0, status, chunks.join().slice(0, 30));
  }
});

Deno.test("checkUpgrade accepts token lists in any case and answers with the accept value and one subprotocol", async () => {
  const headers = new Headers({
    host: "gw",
    upgrade: "WebSocket",
    connection: "keep-alive, Upgrade",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    "sec-websocket-version": "13",
  });
  const key = checkUpgrade({ method: "GET", target: "/mqtt", headers });
  const text = new TextDecoder().decode(await switchingProtocols(key, "mqtt"));
  assert(text.startsWith("HTTP/1.1 101 Switching Protocols\r\n"));
  assert(text.includes("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
  assert(text.endsWith("Sec-WebSocket-Protocol: mqtt\r\n\r\n"));
});

Deno.test("checkMqttUpgrade prefers mqtt, accepts mqttv3.1, refuses other subprotocols with 400", () => {
  const url = new URL("http://gw/mqtt");
  const h = (p: string) => new Headers({ "sec-websocket-protocol": p });
  assertEquals(checkMqttUpgrade(url, h("mqttv3.1, mqtt"), policy).protocol, "mqtt");
  assertEquals(checkMqttUpgrade(url, h("mqttv3.1"), policy).protocol, "mqttv3.1");
  assertEquals(refusal(() => checkMqttUpgrade(url, h("MQTT"), policy)).status, 400);
  assertEquals(
    refusal(() => checkMqttUpgrade(new URL("http://gw/"), h("mqtt"), policy)).status,
    404,
  );
});

Deno.test("checkMqttUpgrade compares origins without case; * lets any through; a missing Origin passes", () => {
  const url = new URL("http://gw/mqtt");
  const only = { path: "/mqtt", allowedOrigins: ["https://Dash.example.com:8443"] };
  const h = (origin?: string) =>
    new Headers({ "sec-websocket-protocol": "mqtt", ...(origin ? { origin } : {}) });
  checkMqttUpgrade(url, h("https://dash.example.com:8443"), only);
  checkMqttUpgrade(url, h(), only);
  assertEquals(
    refusal(() => checkMqttUpgrade(url, h("https://dash.example.com"), only)).status,
    403,
  );
  assertEquals(refusal(() => checkMqttUpgrade(url, h("null"), only)).status, 403);
  checkMqttUpgrade(url, h("https://anything"), policy);
});

Deno.test("checkMqttUpgrade reads credentials: access_token, Bearer, Basic user:password (UTF-8, colons in the password); refuses the unusable", () => {
  const h = (auth?: string) =>
    new Headers({ "sec-websocket-protocol": "mqtt", ...(auth ? { authorization: auth } : {}) });
  const at = (q: string, auth?: string) =>
    checkMqttUpgrade(new URL(`http://gw/mqtt${q}`), h(auth), policy).credentials;
  assertEquals(at("?access_token=abc"), { secret: "abc" });
  assertEquals(at("", "Bearer xyz"), { secret: "xyz" });
  const basic = btoa(String.fromCharCode(...new TextEncoder().encode("dév:pa:ss")));
  assertEquals(at("", `Basic ${basic}`), { user: "dév", secret: "pa:ss" });
  assertEquals(at(""), undefined);
  for (
    const [q, auth] of [
      ["?access_token=", undefined],
      ["?access_token=a&access_token=b", undefined],
      ["?access_token=a", "Bearer b"],
      ["", "Basic !!!"],
      ["", `Basic ${btoa("nocolon")}`],
      ["", "Bearer"],
      ["", "Negotiate abc"],
    ] as Array<[string, string | undefined]>
  ) {
    assertEquals(refusal(() => at(q, auth)).status, 400, `${q} ${auth}`);
  }
});
