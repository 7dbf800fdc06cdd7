/**
 * Ferry's CoAP resources for devices (docs/coap.md):
 *
 * | method | path                                 | topic / effect                                  |
 * |--------|--------------------------------------|-------------------------------------------------|
 * | POST   | `/d/{id}/telemetry[/{channel}]`      | publishes `devices/{id}/telemetry[/{channel}]`  |
 * | GET    | `/d/{id}/commands` (+Observe)        | oldest pending `devices/{id}/commands/{name}`   |
 * | POST   | `/d/{id}/acks/{name}`                | publishes `devices/{id}/acks/{name}`            |
 * | GET    | `/d`                                 | a short description (listed in well-known/core) |
 *
 * Credentials travel in the query: `?token=…` (or `?t=…`), and optionally `&id=…` when the
 * authenticating device is not the one in the path (then 4.03). DTLS is not available on Deno, so
 * the token crosses the network in clear text: see the security note in docs/coap.md.
 *
 * @module
 */

import { canPublish, type Principal } from "../../core/acl.ts";
import type { PendingCommand } from "../../core/command_store.ts";
import { createMessage, type Message } from "../../core/message.ts";
import {
  ackTopic,
  CHANNEL_RE,
  COMMAND_NAME_RE,
  isDeviceId,
  telemetryTopic,
} from "../../core/topics.ts";
import { Code, ContentFormat } from "./message.ts";
import { encodeString, encodeUint, Opt } from "./option_codec.ts";
import { type CoapRequest, type CoapResource, type CoapResponse, queryParam } from "./resource.ts";
import type { ResourceHost } from "./server.ts";

/** Ferry's device resources and what they hold. */
export interface DeviceResources {
  /** The resources to serve. */
  resources: CoapResource[];
  /** Gives the core's command store back. */
  close(): void;
}

const text = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function base64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/** Content-Format numbers ⇄ MIME types carried in `Message.properties.contentType`. */
const FORMATS: Array<[number, string]> = [
  [ContentFormat.TEXT, "text/plain;charset=utf-8"],
  [ContentFormat.LINK_FORMAT, "application/link-format"],
  [ContentFormat.XML, "application/xml"],
  [ContentFormat.OCTET_STREAM, "application/octet-stream"],
  [ContentFormat.JSON, "application/json"],
  [60, "application/cbor"],
];

/** MIME type of a Content-Format number, RFC 7252 §12.3. */
export function mimeOf(format: number | undefined): string | undefined {
  return FORMATS.find(([n]) => n === format)?.[1];
}

/** Content-Format number of a MIME type (parameters other than charset ignored). */
export function formatOf(mime: string | undefined): number | undefined {
  if (!mime) return undefined;
  const m = mime.toLowerCase().replace(/\s/g, "");
  const hit = FORMATS.find(([, t]) => t === m || t.split(";")[0] === m.split(";")[0]);
  return hit?.[0];
}

type Auth = { ok: true; principal: Principal; who: string } | { ok: false; res: CoapResponse };

/**
 * Builds the device resources on a server's host.
 *
 * @example
 * ```ts
 * import { Core } from "../../core/core.ts";
 * import { silentLogger } from "../../core/logger.ts";
 * import { CoapServer } from "./server.ts";
 * // The server builds them itself in its default "ferry" mode:
 * const core = new Core({ anonymous: true, log: silentLogger });
 * const server = new CoapServer(core, { port: 0, mode: "ferry" });
 * await server.close();
 * await core.close();
 * ```
 */
export function createDeviceResources(host: ResourceHost): DeviceResources {
  const { core, options } = host;
  const stats = core.stats;
  const store = core.commands;

  const unauthorized = (msg: string): Auth => {
    stats.errors.inc({ protocol: "coap", code: "unauthorized" });
    return { ok: false, res: { code: Code.UNAUTHORIZED, payload: text.encode(msg) } };
  };

  /**
   * Checks `?token=` (or `?t=`) and `?id=`; refreshes presence unless re-checking for a
   * notification. An address with too many failed attempts (the core's admission control, shared
   * with every protocol) gets 4.29 Too Many Requests with Max-Age (RFC 8516) without a check.
   */
  function authenticate(req: CoapRequest, pathId: string): Auth {
    const admission = core.admission;
    if (!req.notification && admission.authBlocked(req.remoteAddress)) {
      stats.drops.inc({ protocol: "coap", reason: "auth_throttled" });
      return { ok: false, res: { code: Code.TOO_MANY_REQUESTS, maxAge: 60 } };
    }
    const token = queryParam(req.query, "token") ?? queryParam(req.query, "t");
    if (token === undefined) {
      if (!req.notification) admission.authFailed(req.remoteAddress);
      return unauthorized("Missing token query parameter");
    }
    const who = queryParam(req.query, "id") ?? pathId;
    const r = core.registry.authenticate(who, token);
    if (!r.ok) {
      if (!req.notification && r.reason === "bad_credentials") {
        admission.authFailed(req.remoteAddress);
      }
      return unauthorized("Bad credentials");
    }
    if (req.notification) return { ok: true, principal: r.principal, who };
    if (!core.closing) core.seen(who, "coap", options.idleTimeoutMs);
    host.bindEndpoint(req.endpoint, who);
    return { ok: true, principal: r.principal, who };
  }

  const forbidden = (msg: string): CoapResponse => {
    stats.errors.inc({ protocol: "coap", code: "forbidden" });
    return { code: Code.FORBIDDEN, payload: text.encode(msg) };
  };

  /**
   * Publishes a device's message. The answer comes once the core accepted it and, when a spool is
   * configured (the core's accept hook), once it is stored: for a CON that is when the 2.04 goes
   * out (as a separate response if it takes longer than `separateResponseAfterMs`). Without a
   * hook the answer is immediate (`tryPublish`, piggybacked); with one (`core.hasAcceptHook`),
   * `publishIfRoom` waits for the durable append.
   */
  function publish(
    req: CoapRequest,
    deviceId: string,
    topic: string,
  ): CoapResponse | Promise<CoapResponse> {
    // The per-device rate shared by every protocol: RFC 8516 4.29 with Max-Age to retry.
    if (!core.rates.allow(deviceId)) {
      stats.drops.inc({ protocol: "coap", reason: "rate_limited" });
      return {
        code: Code.TOO_MANY_REQUESTS,
        maxAge: Math.max(1, core.rates.retryAfterSec(deviceId)),
      };
    }
    const msg = createMessage({
      topic,
      payload: req.payload,
      qos: req.confirmable ? 1 : 0,
      ts: core.clock.now(),
      protocol: "coap",
      deviceId,
      origin: `coap:${req.endpoint}`,
      properties: req.contentFormat !== undefined && mimeOf(req.contentFormat)
        ? { contentType: mimeOf(req.contentFormat) }
        : undefined,
    });
    if (core.closing) return unavailable();
    // UDP cannot be paused: refuse when the pipeline is full (the core counts the drop).
    if (core.hasAcceptHook) return publishDurably(msg, deviceId);
    return core.tryPublish(msg) ? accepted(deviceId) : unavailable();
  }

  async function publishDurably(msg: Message, deviceId: string): Promise<CoapResponse> {
    try {
      return (await core.publishIfRoom(msg)) ? accepted(deviceId) : unavailable();
    } catch (err) { // the accept hook (spool) refused it
      host.log.warn("message refused by the accept hook", { device: deviceId, error: err });
      return unavailable();
    }
  }

  function accepted(deviceId: string): CoapResponse {
    core.registry.device(deviceId).messagesIn++;
    return { code: Code.CHANGED };
  }

  function unavailable(): CoapResponse {
    return { code: Code.SERVICE_UNAVAILABLE, maxAge: options.retryAfterSec };
  }

  /** Checks path, credentials and ACL of a telemetry request; the topic when allowed. */
  function checkTelemetry(req: CoapRequest): { topic: string } | { res: CoapResponse } {
    const { id, channel } = req.params;
    if (!isDeviceId(id) || (channel !== undefined && (!channel || !CHANNEL_RE.test(channel)))) {
      return { res: { code: Code.NOT_FOUND } };
    }
    const auth = authenticate(req, id);
    if (!auth.ok) return { res: auth.res };
    const topic = telemetryTopic(id, channel);
    if (auth.who !== id || !canPublish(auth.principal, topic)) {
      return { res: forbidden(`Not allowed to publish for device ${id}`) };
    }
    return { topic };
  }

  function telemetry(req: CoapRequest): CoapResponse | Promise<CoapResponse> {
    const c = checkTelemetry(req);
    return "res" in c ? c.res : publish(req, req.params.id, c.topic);
  }

  function telemetryPreflight(req: CoapRequest): CoapResponse | undefined {
    const c = checkTelemetry(req);
    return "res" in c ? c.res : undefined;
  }

  function publishAck(deviceId: string, name: string, payload: Uint8Array): void {
    const msg = createMessage({
      topic: ackTopic(deviceId, name),
      payload,
      qos: 1,
      ts: core.clock.now(),
      protocol: "coap",
      deviceId,
    });
    if (core.closing) return;
    core.publishIfRoom(msg).then(
      (ok) => ok || host.log.warn("delivery ack dropped: pipeline full", { device: deviceId }),
      (err) => host.log.warn("delivery ack refused", { device: deviceId, error: err }),
    );
  }

  /**
   * The representation of a command: its payload as published (name in option 65000), or with
   * `Accept: 50` a JSON envelope `{"name","seq","payload"}` (UTF-8 text, or base64 with
   * `"encoding":"base64"` when the payload is not valid UTF-8) for clients that cannot read options.
   */
  function commandResponse(cmd: PendingCommand, accept: number | undefined): CoapResponse {
    const exp = cmd.msg.properties?.expiresAt;
    const base = {
      code: Code.CONTENT,
      etag: encodeUint(cmd.seq).length ? encodeUint(cmd.seq) : new Uint8Array([0]),
      maxAge: exp !== undefined
        ? Math.max(0, Math.ceil((exp - core.clock.now()) / 1000))
        : undefined,
      options: [{ number: Opt.FERRY_COMMAND, value: encodeString(cmd.name) }],
    };
    if (accept === ContentFormat.JSON) {
      let body: Record<string, unknown>;
      try {
        body = { name: cmd.name, seq: cmd.seq, payload: strictUtf8.decode(cmd.msg.payload) };
      } catch {
        body = {
          name: cmd.name,
          seq: cmd.seq,
          payload: base64(cmd.msg.payload),
          encoding: "base64",
        };
      }
      return {
        ...base,
        contentFormat: ContentFormat.JSON,
        payload: text.encode(JSON.stringify(body)),
      };
    }
    return {
      ...base,
      payload: cmd.msg.payload,
      contentFormat: formatOf(cmd.msg.properties?.contentType),
    };
  }

  const commandsTarget = (id: string) => `/d/${id}/commands`;

  function delivered(id: string): void {
    stats.messagesOut.inc({ protocol: "coap" });
    core.registry.device(id).messagesOut++;
  }

  function commands(req: CoapRequest): CoapResponse | null {
    const { id } = req.params;
    if (req.notification) {
      // Credentials are checked again: a device removed or re-keyed since it registered gets a
      // final 4.01 notification, which ends the observation (RFC 7641 §3.2).
      const auth = authenticate(req, id);
      if (!auth.ok) return auth.res;
      // RFC 7641 §4.2: the new state is the oldest pending command. It is claimed for CoAP (no
      // other protocol hands it out meanwhile) and stays pending until the client acknowledges
      // the Confirmable notification (then devices/{id}/acks/{name}); a lost one is released.
      const head = store.next(id, "coap");
      if (!head || !store.claim(head, "coap")) return null;
      return {
        ...commandResponse(head, req.accept),
        onDelivered: (confirmed) => {
          if (!store.remove(id, head.seq)) return;
          delivered(id);
          if (confirmed) publishAck(id, head.name, new Uint8Array());
          if (store.next(id, "coap")) host.notify(commandsTarget(id));
        },
        onLost: () => store.release(head, "coap"),
      };
    }
    if (!isDeviceId(id)) return { code: Code.NOT_FOUND };
    const auth = authenticate(req, id);
    if (!auth.ok) return auth.res;
    if (auth.who !== id) return forbidden(`Not allowed to read commands of device ${id}`);
    const head = store.next(id, "coap");
    // After a registration, the rest of the queue follows as notifications.
    if (req.observe === 0 && store.pending(id, { via: "coap" }).length > 1) {
      queueMicrotask(() => host.notify(commandsTarget(id)));
    }
    if (!head) return { code: Code.CONTENT };
    // A direct read hands the command over: deduplication replays this response to a
    // retransmitted request, so it is not lost when only the ACK was.
    store.remove(id, head.seq);
    delivered(id);
    return commandResponse(head, req.accept);
  }

  function acks(req: CoapRequest): CoapResponse | Promise<CoapResponse> {
    const { id, name } = req.params;
    if (!isDeviceId(id) || !COMMAND_NAME_RE.test(name)) return { code: Code.NOT_FOUND };
    const auth = authenticate(req, id);
    if (!auth.ok) return auth.res;
    const topic = ackTopic(id, name);
    if (auth.who !== id || !canPublish(auth.principal, topic)) {
      return forbidden(`Not allowed to acknowledge for device ${id}`);
    }
    return publish(req, id, topic);
  }

  // Commands come from the core's store; an observer of the device hears of each new one.
  const release = store.open();
  const stopWatching = store.watch((cmd) => host.notify(commandsTarget(cmd.deviceId)));

  const description = [
    "Ferry CoAP device API (token in ?token=):",
    "POST /d/{id}/telemetry[/{channel}]",
    "GET /d/{id}/commands (Observe)",
    "POST /d/{id}/acks/{name}",
  ].join("\n");

  const resources: CoapResource[] = [
    {
      path: "/d",
      methods: [Code.GET],
      attributes: { rt: "ferry.devices", title: "POST /d/{id}/telemetry, GET /d/{id}/commands" },
      handle: () => ({
        code: Code.CONTENT,
        contentFormat: ContentFormat.TEXT,
        payload: text.encode(description),
      }),
    },
    {
      path: "/d/{id}/telemetry",
      methods: [Code.POST],
      preflight: telemetryPreflight,
      handle: telemetry,
    },
    {
      path: "/d/{id}/telemetry/{channel}",
      methods: [Code.POST],
      preflight: telemetryPreflight,
      handle: telemetry,
    },
    { path: "/d/{id}/commands", methods: [Code.GET], observable: true, handle: commands },
    { path: "/d/{id}/acks/{name}", methods: [Code.POST], handle: acks },
  ];
  return { resources, close: () => (stopWatching(), release()) };
}
