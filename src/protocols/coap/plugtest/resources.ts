/**
 * The ETSI CoAP plugtest resource set (as served by the Californium and libcoap plugtest servers),
 * on Ferry's own CoAP stack, so third-party plugtest tools can run the test descriptions
 * (TD_COAP_CORE, _LINK, _BLOCK, _OBS; docs/coap.md §7 maps each one to what serves it):
 * `/test`, `/separate`, `/seg1/seg2/seg3`, `/query`, `/location-query`, `/multi-format`,
 * `/validate`, `/create1`, `/large`, `/large-update`, `/large-create`, `/large-post`, `/obs`,
 * `/obs-non`, `/obs-large`, `/obs-reset`, `/link1`..`/link3`, `/path` and `/path/sub1`..`sub3`.
 * `ferry coap-plugtest` serves exactly these (CoapServer `mode: "plugtest"`).
 *
 * @module
 */

import { Code, codeString, ContentFormat } from "../message.ts";
import { Opt } from "../option_codec.ts";
import type { CoapRequest, CoapResource, CoapResponse } from "../resource.ts";
import type { ResourceHost } from "../resource_host.ts";
import { encodeCborMap } from "./cbor.ts";

const text = new TextEncoder();
const TYPES = ["CON", "NON", "ACK", "RST"];

/** Content-Format of CBOR, RFC 7049 §7.4 (RFC 8949 §9.5). */
const CBOR = 60;

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

/** What `/multi-format` says about a request, in whichever format was asked. */
function summary(req: CoapRequest): Record<string, string | number> {
  const m = req.message;
  return { type: TYPES[m.type], code: codeString(m.code), mid: m.messageId };
}

/**
 * Builds the plugtest resources on a server's host. The observable ones change every 5 s on the
 * host's clock, until the host's signal aborts.
 *
 * @example
 * ```ts
 * import { Core } from "../../../core/core.ts";
 * import { silentLogger } from "../../../core/logger.ts";
 * import { CoapServer } from "../server.ts";
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

  // /multi-format: text/plain, application/xml, application/json or application/cbor by Accept
  // (TD_COAP_CORE_20, Californium's set of four); 4.06 for any other Accept (RFC 7252 §5.10.4).
  const multiFormat: CoapResource = {
    path: "/multi-format",
    methods: [Code.GET],
    produces: [ContentFormat.TEXT, ContentFormat.XML, ContentFormat.JSON, CBOR],
    attributes: { ct: "0 41 50 60", title: "Resource that exists in different content formats" },
    handle(req) {
      const s = summary(req);
      switch (req.accept) {
        case ContentFormat.XML:
          return {
            code: Code.CONTENT,
            contentFormat: ContentFormat.XML,
            payload: text.encode(`<msg type="${s.type}" code="${s.code}" mid="${s.mid}"/>`),
          };
        case ContentFormat.JSON:
          return {
            code: Code.CONTENT,
            contentFormat: ContentFormat.JSON,
            payload: text.encode(JSON.stringify(s)),
          };
        case CBOR:
          return { code: Code.CONTENT, contentFormat: CBOR, payload: encodeCborMap(s) };
      }
      return { code: Code.CONTENT, contentFormat: ContentFormat.TEXT, payload: describe(req) };
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

  // Observable resources (TD_COAP_OBS): a clock that changes every 5 s in text/plain. A PUT sets
  // a value and content format until the next tick, which restores the clock in text/plain (as
  // Californium's plugtest does), so the descriptions run in sequence: OBS_08's PUT of XML ends
  // text observers with 4.06 (RFC 7641 §4.2) and OBS_09 finds text/plain again. DELETE ends
  // every observation with a final 4.04 (OBS_07) and drops the PUT value; the resource itself
  // survives (GET answers the clock again), and the next PUT answers 2.01 Created.
  let tick = 0;
  const clockText = () => text.encode(`${new Date(clock.now()).toISOString()} #${tick}`);
  const resets: Array<() => void> = [];
  const observable = (path: string, title: string, notifications?: "non-confirmable") => {
    let value: { payload: Uint8Array; format: number } | undefined;
    let deleted = false;
    resets.push(() => value = undefined);
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
          // RFC 7641 §3.2: a non-2.xx notification ends the observations (after the 2.02 is out).
          queueMicrotask(() => host.endObservations(path, { code: Code.NOT_FOUND }));
          return { code: Code.DELETED };
        }
        if (req.method === Code.PUT) {
          const created = deleted;
          deleted = false;
          value = { payload: req.payload.slice(), format: req.contentFormat ?? ContentFormat.TEXT };
          queueMicrotask(() => host.notify(path));
          return { code: created ? Code.CREATED : Code.CHANGED };
        }
        const format = value?.format ?? ContentFormat.TEXT;
        // RFC 7252 §5.10.4, RFC 7641 §4.2: a representation the observer cannot accept → 4.06.
        if (req.accept !== undefined && req.accept !== format) return { code: Code.NOT_ACCEPTABLE };
        return {
          code: Code.CONTENT,
          contentFormat: format,
          payload: value?.payload ?? clockText(),
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
  // /obs-large: observable and larger than a block, so notifications go block-wise
  // (TD_COAP_OBS_13/14, RFC 7959 §3.4).
  const obsLarge: CoapResource = {
    path: "/obs-large",
    methods: [Code.GET],
    observable: true,
    // rt "block" (it is the large one; `obs` marks it observable): `?rt=observe` keeps listing
    // the three small observable resources the descriptions filter for.
    attributes: { rt: "block", title: "Large observable resource which changes every 5 seconds" },
    handle: () => ({
      code: Code.CONTENT,
      contentFormat: ContentFormat.TEXT,
      payload: large(1280, `/obs-large #${tick}`),
      maxAge: 5,
    }),
  };
  // /obs-reset: observable; a PUT/POST resets it to its initial state and notifies observers, and
  // a POST of "sesame" (the plugtest servers' convention for resetting a test run) forgets every
  // observation of every resource, silently, as Californium's clearObserveRelations does.
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
      if (req.method === Code.POST && new TextDecoder().decode(req.payload) === "sesame") {
        const n = host.endObservations();
        host.log.info("plugtest observations cleared", { observers: n });
        return { code: Code.CHANGED };
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
      for (const reset of resets) reset();
      host.notify("/obs");
      host.notify("/obs-non");
      host.notify("/obs-large");
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

  // /link1../link3: targets of the link-format filtering descriptions (TD_COAP_LINK_02..08):
  // ?rt=Type1 → link1, link3; ?rt=Type2 → link1, link2; ?if=If* → link1, link2; ?href=/link* → all.
  const link = (n: number, rt: string, iface: string): CoapResource => ({
    path: `/link${n}`,
    methods: [Code.GET],
    attributes: { rt, if: iface, title: "Link test resource" },
    handle: () => ({
      code: Code.CONTENT,
      contentFormat: ContentFormat.TEXT,
      payload: text.encode(`/link${n}`),
    }),
  });

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
    obsLarge,
    obsReset,
    link(1, "Type1 Type2", "If1"),
    link(2, "Type2 Type3", "If2"),
    link(3, "Type1 Type3", "foo"),
    path,
    simple("/path/sub1", "Hierarchical link description sub-resource"),
    simple("/path/sub2", "Hierarchical link description sub-resource"),
    simple("/path/sub3", "Hierarchical link description sub-resource"),
  ];
}
