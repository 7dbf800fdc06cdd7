/**
 * RFC 7641 §4.2 over the wire: a notification keeps the Content-Format of the registration's
 * response; when the resource can no longer provide it the observer gets a final 4.06 and is
 * removed (issue #14, item 10). Raw datagrams in, raw datagrams out.
 *
 * @module
 */

import { createMessage } from "../src/core/message.ts";
import { type CoapMessage, CoapType, Code, ContentFormat } from "../src/protocols/coap/message.ts";
import { decodeUint, encodeUint, Opt } from "../src/protocols/coap/option_codec.ts";
import type { CoapRequest, CoapResource } from "../src/protocols/coap/resource.ts";
import { assert, assertEquals } from "./_assert.ts";
import { opt, request, startCoap, TestPeer, textOf } from "./_coap_harness.ts";
import { enc, waitFor } from "./_harness.ts";

const ack = (mid: number) => new Uint8Array([0x60, 0, mid >> 8, mid & 0xff]);
const observeOpt = { number: Opt.OBSERVE, value: encodeUint(0) };
const formatOf = (m: CoapMessage) => {
  const v = opt(m, Opt.CONTENT_FORMAT);
  return v === undefined ? undefined : decodeUint(v);
};

/** A resource whose state (body and format) the test sets; it ignores Accept. */
function settable(path: string) {
  const state: { body?: string; format?: number; accepts: Array<number | undefined> } = {
    accepts: [],
  };
  const resource: CoapResource = {
    path,
    methods: [Code.GET],
    observable: true,
    handle(req: CoapRequest) {
      if (req.notification) state.accepts.push(req.accept);
      return state.body === undefined
        ? { code: Code.CONTENT }
        : { code: Code.CONTENT, contentFormat: state.format, payload: enc(state.body) };
    },
  };
  return { state, resource };
}

Deno.test("Observe: a notification whose format differs from the registration's becomes a final 4.06", async () => {
  const { state, resource } = settable("/sensor");
  state.body = "21.5";
  state.format = ContentFormat.TEXT;
  await using h = await startCoap({ server: { resources: [resource] } });
  await using peer = new TestPeer(h.port);
  const reg = await peer.exchange(request({
    path: "sensor",
    token: new Uint8Array([0xa1]),
    options: [observeOpt],
  }));
  assertEquals([reg.code, formatOf(reg)], [Code.CONTENT, ContentFormat.TEXT]);
  state.body = "<t>21.5</t>";
  state.format = ContentFormat.XML;
  h.server.notify("/sensor");
  const fin = await peer.recv();
  // CON (a non-2.xx notification is Confirmable), code 4.06, token a1, no Observe option
  const raw = peer.raw.at(-1)!;
  assertEquals([raw[0], raw[1], raw[4]], [0x41, 0x86, 0xa1]);
  assertEquals([fin.type, fin.code, opt(fin, Opt.OBSERVE)], [
    CoapType.CON,
    Code.NOT_ACCEPTABLE,
    undefined,
  ]);
  assertEquals(textOf(fin), "Content-Format changed from 0 to 41");
  assertEquals(h.server.observerCount, 0);
  await peer.send(ack(fin.messageId));
  await waitFor(() => h.server.outstanding === 0, "4.06 acknowledged");
  assert(h.lines.some((l) => l.includes("observation ended: content format changed")));
  h.server.notify("/sensor"); // nobody observes any more
  await peer.quiet(80);
});

Deno.test("Observe: notifications in the registration's format go on; the re-render is asked for it", async () => {
  const { state, resource } = settable("/sensor");
  state.body = "{}";
  state.format = ContentFormat.JSON;
  await using h = await startCoap({ server: { resources: [resource] } });
  await using peer = new TestPeer(h.port);
  await peer.exchange(request({ type: CoapType.NON, path: "sensor", options: [observeOpt] }));
  state.body = '{"t":1}';
  h.server.notify("/sensor");
  const n = await peer.recv();
  assertEquals([n.code, formatOf(n), textOf(n)], [Code.CONTENT, ContentFormat.JSON, '{"t":1}']);
  // registered without Accept: the resource is asked for the format the observation is bound to
  assertEquals(state.accepts, [ContentFormat.JSON]);
  assertEquals(h.server.observerCount, 1);
});

Deno.test("Observe: a registration answered without a body is bound by the first body's format", async () => {
  const { state, resource } = settable("/sensor");
  await using h = await startCoap({ server: { resources: [resource] } });
  await using peer = new TestPeer(h.port);
  const reg = await peer.exchange(
    request({ type: CoapType.NON, path: "sensor", options: [observeOpt] }),
  );
  assertEquals([reg.code, reg.payload.length, formatOf(reg)], [Code.CONTENT, 0, undefined]);
  state.body = "{}";
  state.format = ContentFormat.JSON;
  h.server.notify("/sensor");
  assertEquals(formatOf(await peer.recv()), ContentFormat.JSON);
  state.body = "plain";
  state.format = undefined; // a body without Content-Format is a different format too
  h.server.notify("/sensor");
  const fin = await peer.recv();
  assertEquals([fin.code, textOf(fin)], [
    Code.NOT_ACCEPTABLE,
    "Content-Format changed from 50 to none",
  ]);
  await peer.send(ack(fin.messageId));
  assertEquals(h.server.observerCount, 0);
});

Deno.test("Observe on commands: a command in another format ends the observation with 4.06 and stays pending", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  await peer.exchange(request({
    path: "d/s1/commands",
    query: ["token=t1"],
    options: [observeOpt],
  }));
  const cmd = (name: string, payload: string, contentType: string) =>
    h.core.publish(createMessage({
      topic: `devices/s1/commands/${name}`,
      payload: enc(payload),
      qos: 1,
      properties: { contentType },
    }));
  await cmd("a", "on", "text/plain;charset=utf-8");
  const n1 = await peer.recv();
  assertEquals([n1.code, formatOf(n1), textOf(n1)], [Code.CONTENT, ContentFormat.TEXT, "on"]);
  await peer.send(ack(n1.messageId));
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/acks/a"), "first ack");
  await cmd("b", '{"x":1}', "application/json");
  const fin = await peer.recv();
  assertEquals([fin.code, opt(fin, Opt.OBSERVE)], [Code.NOT_ACCEPTABLE, undefined]);
  await peer.send(ack(fin.messageId));
  assertEquals(h.server.observerCount, 0);
  // not delivered: a GET (or a new registration) hands it over in its own format
  const g = await peer.exchange(request({ path: "d/s1/commands", query: ["token=t1"] }));
  assertEquals([textOf(g), formatOf(g)], ['{"x":1}', ContentFormat.JSON]);
});
