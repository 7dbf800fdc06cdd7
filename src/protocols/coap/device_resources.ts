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

import {
  ackTopic,
  CHANNEL_RE,
  type CloseReason,
  COMMAND_NAME_RE,
  type Draft,
  type Identity,
  isDeviceId,
  payloadText,
  type PendingCommand,
  type PublishResult,
  type Refusal,
  telemetryTopic,
} from "../../core/mod.ts";
import { EndpointLogins } from "./_endpoint_logins.ts";
import { Code, ContentFormat } from "./message.ts";
import { tokenKey } from "./observe.ts";
import { encodeString, encodeUint, Opt } from "./option_codec.ts";
import { type CoapRequest, type CoapResource, type CoapResponse, queryParam } from "./resource.ts";
import type { ResourceHost } from "./resource_host.ts";

/** Ferry's device resources and what they hold. */
export interface DeviceResources {
  /** The resources to serve. */
  resources: CoapResource[];
  /** Gives the core's command store back. */
  close(): void;
}

const text = new TextEncoder();

/** Content-Format numbers ⇄ MIME types carried in `Message.properties.contentType`. */
const FORMATS: Array<[number, string]> = [
  [ContentFormat.TEXT, "text/plain;charset=utf-8"],
  [ContentFormat.LINK_FORMAT, "application/link-format"],
  [ContentFormat.XML, "application/xml"],
  [ContentFormat.OCTET_STREAM, "application/octet-stream"],
  [ContentFormat.JSON, "application/json"],
  [60, "application/cbor"],
];

const MIME_BY_FORMAT = new Map(FORMATS);

/** MIME type of a Content-Format number, RFC 7252 §12.3. */
export function mimeOf(format: number | undefined): string | undefined {
  return format === undefined ? undefined : MIME_BY_FORMAT.get(format);
}

/** Content-Format number of a MIME type (parameters other than charset ignored). */
export function formatOf(mime: string | undefined): number | undefined {
  if (!mime) return undefined;
  const m = mime.toLowerCase().replace(/\s/g, "");
  const hit = FORMATS.find(([, t]) => t === m || t.split(";")[0] === m.split(";")[0]);
  return hit?.[0];
}

type Auth = { ok: true; identity: Identity; who: string } | { ok: false; res: CoapResponse };

/**
 * The response to a refusal by the core: 4.01 for a refused login, 4.03 for the ACL, 4.13 for
 * size, 4.29 with Max-Age for rate and throttling (RFC 8516), 5.03 with Max-Age for the rest.
 */
export function refusalResponse(r: Refusal): CoapResponse {
  const maxAge = r.retryAfterMs === undefined
    ? undefined
    : Math.max(1, Math.ceil(r.retryAfterMs / 1000));
  switch (r.reason) {
    case "bad_id":
    case "bad_credentials":
    case "no_credentials":
      return { code: Code.UNAUTHORIZED, payload: text.encode(r.message) };
    case "not_authorized":
      return { code: Code.FORBIDDEN, payload: text.encode(r.message) };
    case "throttled":
    case "rate_limited":
      return { code: Code.TOO_MANY_REQUESTS, maxAge: maxAge ?? 1 };
    case "too_large":
      return { code: Code.REQUEST_ENTITY_TOO_LARGE, payload: text.encode(r.message) };
    case "unavailable":
    case "overloaded":
    case "quota":
    case "shutting_down":
    case "failed":
      return { code: Code.SERVICE_UNAVAILABLE, maxAge };
  }
}

/**
 * The final notification of an observation the core closed: 4.01 when the credentials it was
 * registered with were revoked, 5.03 with Max-Age when the gateway is going away, 5.03 for the
 * rest.
 */
export function closeResponse(reason: CloseReason, retryAfterSec = 2): CoapResponse {
  const payload = text.encode(reason.message);
  return reason.code === "removed"
    ? { code: Code.UNAUTHORIZED, payload }
    : { code: Code.SERVICE_UNAVAILABLE, maxAge: retryAfterSec, payload };
}

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
  const { port, options } = host;
  const commandsOf = port.commands;
  // A device's login is remembered per endpoint until its credentials change (see
  // _endpoint_logins.ts); presence is refreshed at most once a second per endpoint.
  const logins = new EndpointLogins(port, { max: options.maxExchanges, refreshMs: 1000 });

  /**
   * Logs the request in with `?token=` (or `?t=`) as the device in `?id=` (else the path's) and
   * refreshes presence. Failed logins are throttled by the core (4.29 Too Many Requests with
   * Max-Age, RFC 8516).
   */
  function authenticate(req: CoapRequest, pathId: string): Auth {
    const token = queryParam(req.query, "token") ?? queryParam(req.query, "t");
    const who = queryParam(req.query, "id") ?? pathId;
    const r = logins.login(req.endpoint, who, token, req.remoteAddress);
    if ("refused" in r) {
      port.stats.error("unauthorized");
      return { ok: false, res: refusalResponse(r.refused) };
    }
    if (r.refresh) {
      if (!port.closing) port.seen(who, options.idleTimeoutMs, req.endpoint);
      host.bindEndpoint(req.endpoint, who);
    }
    return { ok: true, identity: r.identity, who };
  }

  const forbidden = (msg: string): CoapResponse => {
    port.stats.error("forbidden");
    return { code: Code.FORBIDDEN, payload: text.encode(msg) };
  };

  /**
   * Publishes a device's message. The answer comes once the core accepted it and, when a spool is
   * configured, once it is stored: for a CON that is when the 2.04 goes out (as a separate
   * response if it takes longer than `separateResponseAfterMs`). UDP cannot be paused: a full
   * pipeline is refused (5.03 with Max-Age) rather than waited for.
   */
  function publish(
    req: CoapRequest,
    identity: Identity,
    topic: string,
  ): CoapResponse | Promise<CoapResponse> {
    const contentType = mimeOf(req.contentFormat);
    const draft: Draft = {
      topic,
      payload: req.payload,
      qos: req.confirmable ? 1 : 0,
      retain: false,
      origin: `coap:${req.endpoint}`,
      properties: contentType !== undefined ? { contentType } : undefined,
    };
    const r = port.publish(identity, draft);
    return r instanceof Promise ? r.then(answer) : answer(r);
  }

  function answer(r: PublishResult): CoapResponse {
    if (r.ok) return { code: Code.CHANGED };
    const res = refusalResponse(r);
    // 5.03 says when to retry as configured for this listener (`coap.retryAfterSec`).
    if (res.code === Code.SERVICE_UNAVAILABLE) res.maxAge = options.retryAfterSec;
    return res;
  }

  /** Checks path, credentials and ACL of a telemetry request; the topic when allowed. */
  function checkTelemetry(
    req: CoapRequest,
  ): { topic: string; identity: Identity } | { res: CoapResponse } {
    const { id, channel } = req.params;
    if (!isDeviceId(id) || (channel !== undefined && (!channel || !CHANNEL_RE.test(channel)))) {
      return { res: { code: Code.NOT_FOUND } };
    }
    const auth = authenticate(req, id);
    if (!auth.ok) return { res: auth.res };
    const topic = telemetryTopic(id, channel);
    if (auth.who !== id || !port.mayPublish(auth.identity, topic)) {
      return { res: forbidden(`Not allowed to publish for device ${id}`) };
    }
    return { topic, identity: auth.identity };
  }

  function telemetry(req: CoapRequest): CoapResponse | Promise<CoapResponse> {
    const c = checkTelemetry(req);
    return "res" in c ? c.res : publish(req, c.identity, c.topic);
  }

  function telemetryPreflight(req: CoapRequest): CoapResponse | undefined {
    const c = checkTelemetry(req);
    return "res" in c ? c.res : undefined;
  }

  function publishAck(identity: Identity, deviceId: string, name: string): void {
    const draft: Draft = {
      topic: ackTopic(deviceId, name),
      payload: new Uint8Array(),
      qos: 1,
      retain: false,
    };
    const logged = (r: PublishResult) => {
      if (!r.ok) host.log.warn("delivery ack not published", { device: deviceId, why: r.message });
    };
    const r = port.publish(identity, draft);
    if (r instanceof Promise) r.then(logged);
    else logged(r);
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
        ? Math.max(0, Math.ceil((exp - port.clock.now()) / 1000))
        : undefined,
      options: [{ number: Opt.FERRY_COMMAND, value: encodeString(cmd.name) }],
    };
    if (accept === ContentFormat.JSON) {
      const t = payloadText(cmd.msg.payload);
      const body = t.encoding === "utf8"
        ? { name: cmd.name, seq: cmd.seq, payload: t.payload }
        : { name: cmd.name, seq: cmd.seq, payload: t.payload, encoding: "base64" };
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

  /** Identities of live observations of commands, by `endpoint|token`. */
  const observing = new Map<string, Identity>();
  const observationKey = (req: CoapRequest) => `${req.endpoint}|${tokenKey(req.message.token)}`;

  /**
   * An observation of a device's commands is a stream of that device: attached to the identity
   * it was registered with (no presence of its own), so revoking the device's credentials ends
   * it at once with a final 4.01 (RFC 7641 §3.2), and detached when it ends for any reason.
   */
  function observed(req: CoapRequest, identity: Identity) {
    return (end: (final: CoapResponse) => void): () => void => {
      const key = observationKey(req);
      observing.set(key, identity);
      const attachment = port.attach(identity, {
        sessionId: `coap:${key}`,
        protocol: port.protocol,
        close: (reason) => {
          host.log.info("observation ended", {
            endpoint: req.endpoint,
            device: identity.deviceId,
            why: reason.code,
            detail: reason.message,
          });
          end(closeResponse(reason, options.retryAfterSec));
        },
      }, false);
      return () => {
        if (observing.get(key) === identity) observing.delete(key);
        attachment.detach();
      };
    };
  }

  function commands(req: CoapRequest): CoapResponse | null {
    const { id } = req.params;
    if (req.notification) {
      // The identity the observation was registered with; its credentials are not checked again
      // (a revocation ends the observation through the port, see `observed`).
      const identity = observing.get(observationKey(req));
      if (!identity) return null;
      // RFC 7641 §4.2: the new state is the oldest pending command. It is claimed for CoAP (no
      // other protocol hands it out meanwhile) and stays pending until the client acknowledges
      // the Confirmable notification (then devices/{id}/acks/{name}); a lost one is released.
      const head = commandsOf.next(id);
      if (!head || !commandsOf.claim(head)) return null;
      return {
        ...commandResponse(head, req.accept),
        onDelivered: (confirmed) => {
          if (!commandsOf.delivered(head)) return;
          if (confirmed) publishAck(identity, id, head.name);
          if (commandsOf.next(id)) host.notify(commandsTarget(id));
        },
        onLost: () => commandsOf.release(head),
      };
    }
    if (!isDeviceId(id)) return { code: Code.NOT_FOUND };
    const auth = authenticate(req, id);
    if (!auth.ok) return auth.res;
    if (auth.who !== id) return forbidden(`Not allowed to read commands of device ${id}`);
    const head = commandsOf.next(id);
    // After a registration, the rest of the queue follows as notifications.
    if (req.observe === 0 && commandsOf.pending(id).length > 1) {
      queueMicrotask(() => host.notify(commandsTarget(id)));
    }
    const onObserved = req.observe === 0 ? observed(req, auth.identity) : undefined;
    if (!head) return { code: Code.CONTENT, onObserved };
    // A direct read hands the command over: deduplication replays this response to a
    // retransmitted request, so it is not lost when only the ACK was.
    commandsOf.delivered(head);
    return { ...commandResponse(head, req.accept), onObserved };
  }

  function acks(req: CoapRequest): CoapResponse | Promise<CoapResponse> {
    const { id, name } = req.params;
    if (!isDeviceId(id) || !COMMAND_NAME_RE.test(name)) return { code: Code.NOT_FOUND };
    const auth = authenticate(req, id);
    if (!auth.ok) return auth.res;
    const topic = ackTopic(id, name);
    if (auth.who !== id || !port.mayPublish(auth.identity, topic)) {
      return forbidden(`Not allowed to acknowledge for device ${id}`);
    }
    return publish(req, auth.identity, topic);
  }

  // Commands come from the core's store; an observer of the device hears of each new one.
  const release = commandsOf.open();
  const stopWatching = commandsOf.watch((cmd) => host.notify(commandsTarget(cmd.deviceId)));

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
  return { resources, close: () => (stopWatching(), release(), logins.close()) };
}
