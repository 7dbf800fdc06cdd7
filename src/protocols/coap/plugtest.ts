/**
 * The ETSI CoAP plugtest resource set (as served by the Californium and libcoap plugtest servers),
 * on Ferry's own CoAP stack, so third-party plugtest tools can check the message layer:
 * `/test`, `/separate`, `/seg1/seg2/seg3`, `/query`, `/location-query`, `/multi-format`,
 * `/validate`, `/create1`, `/large`, `/large-update`, `/large-create`, `/large-post`, `/obs`,
 * `/obs-non`, `/obs-reset`, `/path`, `/path/sub1` (and `/path/sub2`, `/path/sub3`).
 * `ferry coap-plugtest` serves exactly these (CoapServer `mode: "plugtest"`).
 *
 * @module
 */

import { Code, codeString, ContentFormat } from "./message.ts";
import { Opt } from "./option_codec.ts";
import type { CoapRequest, CoapResource, CoapResponse } from "./resource.ts";
import type { ResourceHost } from "./server.ts";

const text = new TextEncoder();
const TYPES = ["CON", "NON", "ACK", "RST"];

/** Period of the observable plugtest resources (`/obs`, `/obs-non`), ms. */
export const PLUGTEST_OBSERVE_PERIOD_MS = 5000;

/** Delay of `/separate` beyond the server's separate-response threshold, ms. */
export const PLUGTEST_SEPARATE_EXTRA_MS = 1000;

function describe(req: CoapRequest): Uint8Array {
  const m = req.message;
  return text.encode(
    `Type: ${m.type} (${TYPES[m.type]})\nCode: ${m.code} (${
      codeString(m.code)
    })\nMID: ${m.messageId}`,
  );
}

function large(n: number, title: string): Uint8Array {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < n; i++) {
    const l = `${title} ${String(i).padStart(4, "0")}: ${"-".repeat(52)}|\n`;
    lines.push(l);
    size += l.length;
  }
  return text.encode(lines.join("").slice(0, n));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function etagOf(n: number): Uint8Array {
  return new Uint8Array([(n >> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
}

function has(req: CoapRequest, number: number): boolean {
  return req.options.some((o) => o.number === number);
}

/**
 * Builds the plugtest resources on a server's host. The observable ones change every 5 s on the
 * host's clock, until the host's signal aborts.
 *
 * @example
 * ```ts
 * import { Core } from "../../core/core.ts";
 * import { silentLogger } from "../../core/logger.ts";
 * import { CoapServer } from "./server.ts";
 * const core = new Core({ anonymous: true, log: silentLogger });
 * const server = new CoapServer(core, { port: 0, mode: "plugtest" }); // uses createPlugtestResources
 * await server.close();
 * await core.close();
 * ```
 */
export function createPlugtestResources(host: ResourceHost): CoapResource[] {
  const { port, signal } = host;
  const clock = port.clock;

  // /test: the default resource of TD_COAP_CORE_01..04.
  const test: CoapResource = {
    path: "/test",
    attributes: { rt: "test", title: "Default test resource" },
    handle(req) {
      switch (req.method) {
        case Code.GET:
          return { code: Code.CONTENT, contentFormat: ContentFormat.TEXT, payload: describe(req) };
        case Code.POST:
          return { code: Code.CREATED, locationPath: ["location1", "location2", "location3"] };
        case Code.PUT:
          return { code: Code.CHANGED };
        case Code.DELETE:
          return { code: Code.DELETED };
      }
      return { code: Code.METHOD_NOT_ALLOWED };
    },
  };

  // /separate: answered later than the separate-response threshold (TD_COAP_CORE_09).
  const separate: CoapResource = {
    path: "/separate",
    methods: [Code.GET, Code.POST, Code.PUT],
    attributes: { title: "Resource which cannot be served immediately" },
    handle(req) {
      const body = describe(req);
      return new Promise<CoapResponse>((resolve, reject) => {
        if (signal.aborted) return reject(signal.reason);
        const onAbort = () => {
          clock.clearTimeout(t);
          reject(signal.reason);
        };
        const t = clock.setTimeout(() => {
          signal.removeEventListener("abort", onAbort);
          resolve({ code: Code.CONTENT, contentFormat: ContentFormat.TEXT, payload: body });
        }, host.options.separateResponseAfterMs + PLUGTEST_SEPARATE_EXTRA_MS);
        signal.addEventListener("abort", onAbort, { once: true });
      });
    },
  };

  const simple = (path: string, title: string): CoapResource => ({
    path,
    methods: [Code.GET],
    attributes: { title },
    handle: () => ({
      code: Code.CONTENT,
      contentFormat: ContentFormat.TEXT,
      payload: text.encode(title),
    }),
  });

  const query: CoapResource = {
    path: "/query",
    methods: [Code.GET],
    attributes: { title: "Resource accepting query parameters" },
    handle: (req) => ({
      code: Code.CONTENT,
      contentFormat: ContentFormat.TEXT,
      payload: text.encode(`${new TextDecoder().decode(describe(req))}\n?${req.query.join("&")}`),
    }),
  };

  const locationQuery: CoapResource = {
    path: "/location-query",
    methods: [Code.POST],
    attributes: { title: "Perform POST transaction with responses containing Location-Query" },
    handle: () => ({ code: Code.CREATED, locationQuery: ["first=1", "second=2"] }),
  };

  // /multi-format: text/plain or application/xml by Accept (TD_COAP_CORE_19); 4.06 otherwise.
  const multiFormat: CoapResource = {
    path: "/multi-format",
    methods: [Code.GET],
    produces: [ContentFormat.TEXT, ContentFormat.XML],
    attributes: { ct: "0 41", title: "Resource that exists in different content formats" },
    handle(req) {
      const d = new TextDecoder().decode(describe(req));
      if (req.accept === ContentFormat.XML) {
        return {
          code: Code.CONTENT,
          contentFormat: ContentFormat.XML,
          payload: text.encode(`<msg type="${req.message.type}" code="${req.method}">${d}</msg>`),
        };
      }
      return { code: Code.CONTENT, contentFormat: ContentFormat.TEXT, payload: text.encode(d) };
    },
  };

  // /validate: ETag validation (TD_COAP_CORE_20/21/22): GET with a matching ETag → 2.03;
  // PUT with If-Match → 2.04 and a new ETag, 4.12 when it does not match.
  let validateBody = text.encode("validate resource, version 1");
  let validateVersion = 1;
  const validate: CoapResource = {
    path: "/validate",
    methods: [Code.GET, Code.PUT],
    attributes: { title: "Resource which varies" },
    handle(req) {
      const etag = etagOf(validateVersion);
      if (req.method === Code.GET) {
        const asked = req.options.filter((o) => o.number === Opt.ETAG).map((o) => o.value);
        if (asked.some((e) => sameBytes(e, etag))) return { code: Code.VALID, etag }; // §5.9.1.3
        return {
          code: Code.CONTENT,
          contentFormat: ContentFormat.TEXT,
          payload: validateBody,
          etag,
        };
      }
      const ifMatch = req.options.filter((o) => o.number === Opt.IF_MATCH).map((o) => o.value);
      // RFC 7252 §5.10.8.1: If-Match with an empty value matches any current representation.
      if (ifMatch.length > 0 && !ifMatch.some((v) => v.length === 0 || sameBytes(v, etag))) {
        return { code: Code.PRECONDITION_FAILED };
      }
      validateBody = req.payload.slice();
      validateVersion++;
      return { code: Code.CHANGED, etag: etagOf(validateVersion) };
    },
  };

  // /create1: PUT with If-None-Match creates once (TD_COAP_CORE_23), 4.12 when it exists.
  let created: Uint8Array | undefined;
  const create1: CoapResource = {
    path: "/create1",
    methods: [Code.GET, Code.PUT, Code.DELETE],
    attributes: { title: "Resource which does not exist yet (to perform atomic PUT)" },
    handle(req) {
      if (req.method === Code.DELETE) {
        created = undefined;
        return { code: Code.DELETED };
      }
      if (req.method === Code.GET) {
        return created
          ? { code: Code.CONTENT, contentFormat: ContentFormat.TEXT, payload: created }
          : { code: Code.NOT_FOUND };
      }
      // RFC 7252 §5.10.8.2: If-None-Match fails when the target exists.
      if (has(req, Opt.IF_NONE_MATCH) && created) return { code: Code.PRECONDITION_FAILED };
      const was = created;
      created = req.payload.slice();
      return { code: was ? Code.CHANGED : Code.CREATED };
    },
  };

  const largeBody = large(2048, "/large");
  const largeRes: CoapResource = {
    path: "/large",
    methods: [Code.GET],
    attributes: { rt: "block", sz: largeBody.length, title: "Large resource" },
    handle: () => ({ code: Code.CONTENT, contentFormat: ContentFormat.TEXT, payload: largeBody }),
  };

  let updateBody = large(2048, "/large-update");
  let updateFormat: number | undefined = ContentFormat.TEXT;
  const largeUpdate: CoapResource = {
    path: "/large-update",
    methods: [Code.GET, Code.PUT],
    attributes: { rt: "block", title: "Large resource that can be updated using PUT method" },
    handle(req) {
      if (req.method === Code.PUT) {
        updateBody = req.payload.slice();
        updateFormat = req.contentFormat;
        return { code: Code.CHANGED };
      }
      return { code: Code.CONTENT, contentFormat: updateFormat, payload: updateBody };
    },
  };

  const createdLarge = new Map<string, { body: Uint8Array; format?: number }>();
  let nextLarge = 1;
  const largeCreate: CoapResource = {
    path: "/large-create",
    methods: [Code.POST],
    attributes: { rt: "block", title: "Large resource that can be created using POST method" },
    handle(req) {
      const id = String(nextLarge++);
      if (createdLarge.size >= 16) createdLarge.delete(createdLarge.keys().next().value!);
      createdLarge.set(id, { body: req.payload.slice(), format: req.contentFormat });
      return { code: Code.CREATED, locationPath: ["large-create", id] };
    },
  };
  const largeCreated: CoapResource = {
    path: "/large-create/{n}",
    methods: [Code.GET, Code.DELETE],
    handle(req) {
      const c = createdLarge.get(req.params.n);
      if (!c) return { code: Code.NOT_FOUND };
      if (req.method === Code.DELETE) {
        createdLarge.delete(req.params.n);
        return { code: Code.DELETED };
      }
      return { code: Code.CONTENT, contentFormat: c.format, payload: c.body };
    },
  };

  // /large-post: a Block1 upload answered with a large (Block2) body: the upload upper-cased.
  const largePost: CoapResource = {
    path: "/large-post",
    methods: [Code.POST],
    attributes: { rt: "block", title: "Handle POST with two-way blockwise transfer" },
    handle: (req) => ({
      code: Code.CHANGED,
      contentFormat: ContentFormat.TEXT,
      payload: text.encode(new TextDecoder().decode(req.payload).toUpperCase()),
    }),
  };

  // Observable resources (TD_COAP_OBS_01..10): a counter that changes every 5 s; PUT sets a value
  // (and content format) and notifies; DELETE ends every observation with a 4.04 notification.
  let tick = 0;
  const observable = (path: string, title: string, notifications?: "non-confirmable") => {
    let value: { payload: Uint8Array; format: number } | undefined;
    let deleted = false;
    const resource: CoapResource = {
      path,
      methods: [Code.GET, Code.PUT, Code.DELETE],
      observable: true,
      notifications,
      attributes: { rt: "observe", title },
      handle(req) {
        if (req.method === Code.DELETE) {
          deleted = true;
          value = undefined;
          queueMicrotask(() => host.notify(path));
          return { code: Code.DELETED };
        }
        if (req.method === Code.PUT) {
          const created = deleted;
          deleted = false;
          value = { payload: req.payload.slice(), format: req.contentFormat ?? ContentFormat.TEXT };
          queueMicrotask(() => host.notify(path));
          return { code: created ? Code.CREATED : Code.CHANGED };
        }
        if (deleted) return { code: Code.NOT_FOUND }; // RFC 7641 §3.2: ends observations
        const format = value?.format ?? ContentFormat.TEXT;
        // RFC 7641 §3.2 / RFC 7252 §5.10.4: a representation the observer cannot accept → 4.06.
        if (req.accept !== undefined && req.accept !== format) return { code: Code.NOT_ACCEPTABLE };
        return {
          code: Code.CONTENT,
          contentFormat: format,
          payload: value?.payload ??
            text.encode(`${new Date(clock.now()).toISOString()} #${tick}`),
          maxAge: 5,
        };
      },
    };
    return resource;
  };
  const obs = observable("/obs", "Observable resource which changes every 5 seconds");
  const obsNon = observable(
    "/obs-non",
    "Observable resource which changes every 5 seconds (NON)",
    "non-confirmable",
  );
  // /obs-reset: observable; a PUT/POST resets it to its initial state and notifies observers.
  let resetBody = text.encode("initial state");
  const obsReset: CoapResource = {
    path: "/obs-reset",
    methods: [Code.GET, Code.PUT, Code.POST],
    observable: true,
    attributes: { rt: "observe", title: "Observable resource whose state can be reset" },
    handle(req) {
      if (req.method === Code.GET) {
        return { code: Code.CONTENT, contentFormat: ContentFormat.TEXT, payload: resetBody };
      }
      resetBody = req.payload.length ? req.payload.slice() : text.encode("initial state");
      queueMicrotask(() => host.notify("/obs-reset"));
      return { code: Code.CHANGED };
    },
  };
  let timer: number | undefined;
  const schedule = () => {
    timer = clock.setTimeout(() => {
      tick++;
      host.notify("/obs");
      host.notify("/obs-non");
      schedule();
    }, PLUGTEST_OBSERVE_PERIOD_MS);
    clock.unref?.(timer);
  };
  if (!signal.aborted) {
    schedule();
    signal.addEventListener("abort", () => {
      if (timer !== undefined) clock.clearTimeout(timer);
    }, { once: true });
  }

  const path: CoapResource = {
    path: "/path",
    methods: [Code.GET],
    attributes: { ct: ContentFormat.LINK_FORMAT, title: "Hierarchical link description entry" },
    handle: () => ({
      code: Code.CONTENT,
      contentFormat: ContentFormat.LINK_FORMAT,
      payload: text.encode("</path/sub1>,</path/sub2>,</path/sub3>"),
    }),
  };

  return [
    test,
    separate,
    simple("/seg1", "Long path resource"),
    simple("/seg1/seg2", "Long path resource"),
    simple("/seg1/seg2/seg3", "Long path resource"),
    query,
    locationQuery,
    multiFormat,
    validate,
    create1,
    largeRes,
    largeUpdate,
    largeCreate,
    largeCreated,
    largePost,
    obs,
    obsNon,
    obsReset,
    path,
    simple("/path/sub1", "Hierarchical link description sub-resource"),
    simple("/path/sub2", "Hierarchical link description sub-resource"),
    simple("/path/sub3", "Hierarchical link description sub-resource"),
  ];
}
