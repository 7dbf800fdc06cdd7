/**
 * The host inside a rule's worker (started with no permissions at all: no read, net, env, run).
 * It imports the rule from the data: URL the gateway built (a worker without read permission
 * cannot load files; the SDK modules below are imported statically, so a rule's `ferry/rules`
 * import, rewritten to their URL, finds them already loaded), then runs batches one item at a time,
 * in order, counting progress in shared memory for the gateway's watchdog.
 *
 * @module
 */

import "./sdk.ts";
import "./types.ts";
import "./helpers.ts";
import type {
  RuleContext,
  RuleFunction,
  RuleOutput,
  RuleResult,
  RuleState,
  TickFunction,
} from "./types.ts";
import {
  type BatchRequest,
  type BatchResult,
  F_TICK,
  type InitRequest,
  O_CORE,
  O_NORTHBOUND,
  O_QOS_SET,
  O_RETAIN,
  payloadAt,
  S_DROPPED,
  S_ERROR,
  S_OK,
  type StateRequest,
  type WorkerReply,
} from "./_wire.ts";

interface WorkerScope {
  postMessage(message: WorkerReply, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent<InitRequest | StateRequest | BatchRequest>) => void) | null;
  addEventListener(
    type: string,
    fn: (e: Event & { reason?: unknown; error?: unknown }) => void,
  ): void;
}

const scope = globalThis as unknown as WorkerScope;
const encoder = new TextEncoder();

let ruleName = "";
let rule: RuleFunction | undefined;
let tick: TickFunction | undefined;
let progress: Int32Array<ArrayBufferLike> = new Int32Array(2);
let maxMessageBytes = Infinity;
let maxStateBytes = Infinity;
// Read before the rule's module runs: a rule cannot replace what the host measures with.
const heapUsed = ((m) => () => m().heapUsed)(Deno.memoryUsage);
let maxOutputs = Infinity;
let maxOutputBytes = Infinity;
let names: Array<[string, string]> = [];
let chain: Promise<void> = Promise.resolve();

// The state: JSON text per key, so that its size is known and the gateway persists it as is.
const state = new Map<string, string>();
let stateBytes = 0;
let dirty = new Map<string, string | undefined>();

const ruleState: RuleState = {
  get<T>(key: string): T | undefined {
    const s = state.get(key);
    return s === undefined ? undefined : JSON.parse(s) as T;
  },
  set(key: string, value: unknown): void {
    if (typeof key !== "string") throw new TypeError("Cannot set state: the key must be a string");
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch (err) {
      throw new TypeError(`Cannot set state "${key}": ${(err as Error).message}`);
    }
    if (text === undefined) {
      throw new TypeError(`Cannot set state "${key}": ${typeof value} has no JSON form`);
    }
    const old = state.get(key);
    const size = stateBytes - (old === undefined ? 0 : key.length + old.length) + key.length +
      text.length;
    if (size > maxStateBytes) {
      throw new RangeError(
        `Cannot set state "${key}": the rule's state would be ${size} bytes, over its ${maxStateBytes} byte limit`,
      );
    }
    stateBytes = size;
    state.set(key, text);
    dirty.set(key, text);
  },
  delete(key: string): boolean {
    const old = state.get(key);
    if (old === undefined) return false;
    stateBytes -= key.length + old.length;
    state.delete(key);
    dirty.set(key, undefined);
    return true;
  },
  keys(): string[] {
    return [...state.keys()];
  },
};

function readable(message: string): string {
  for (const [url, name] of names) message = message.replaceAll(url, name);
  return message.replace(/data:application\/[a-z]+;base64,[A-Za-z0-9+/=]+/g, "<rule module>");
}

function errorOf(err: unknown): { name: string; message: string } {
  if (err instanceof Error) return { name: err.name, message: readable(err.message) };
  return { name: "Error", message: `the rule threw a non-Error: ${readable(String(err))}` };
}

/**
 * Outputs of one batch being collected: payloads copied at once into one growing buffer, so
 * nothing of a rule's result is kept alive until the batch ends.
 */
class Outputs {
  n = 0;
  item = new Uint32Array(64);
  flags = new Uint8Array(64);
  ends = new Uint32Array(64);
  topics: string[] = [];
  props: Array<[number, Array<[string, string]>]> = [];
  buf = new Uint8Array(4096);
  bytes = 0;

  /** Empties it for the next batch, keeping its grown buffers (the reply holds copies). */
  reset(): void {
    this.n = 0;
    this.topics = [];
    this.props = [];
    this.bytes = 0;
  }

  /** Validates and appends the outputs of item `i`; throws (appending nothing) when invalid. */
  add(result: RuleResult, i: number): boolean {
    if (result === null || result === undefined) return false;
    const n0 = this.n;
    const bytes0 = this.bytes;
    const props0 = this.props.length;
    try {
      if (Array.isArray(result)) {
        if (result.length > maxOutputs) {
          throw new RangeError(
            `Cannot emit ${result.length} outputs for one message: the limit is ${maxOutputs}`,
          );
        }
        for (const o of result) {
          this.#one(o, i);
          if (this.bytes - bytes0 > maxOutputBytes) {
            throw new RangeError(
              `Cannot emit ${
                this.bytes - bytes0
              }+ payload bytes for one message: the limit is ${maxOutputBytes} (${
                maxOutputBytes / maxMessageBytes
              } × the rule's maxMessageBytes)`,
            );
          }
        }
      } else this.#one(result, i);
    } catch (err) {
      this.n = n0; // roll back what this item had appended
      this.topics.length = n0;
      this.bytes = bytes0;
      this.props.length = props0;
      throw err;
    }
    return this.n > n0;
  }

  #one(o: RuleOutput, i: number): void {
    if (typeof o !== "object" || o === null) {
      throw new TypeError(
        `Cannot emit ${o}: a rule returns null, an output { topic, payload } or an array of them`,
      );
    }
    const { topic, payload, qos, retain, route, userProperties } = o;
    if (typeof topic !== "string" || topic === "") {
      throw new TypeError(`Cannot emit an output without a topic (got ${JSON.stringify(topic)})`);
    }
    let bytes: Uint8Array;
    if (typeof payload === "string") bytes = encoder.encode(payload);
    else if (payload instanceof Uint8Array) bytes = payload;
    else {
      throw new TypeError(
        `Cannot emit output on ${topic}: payload must be a Uint8Array or a string, got ${
          payload === null ? "null" : typeof payload
        } (use json.stringify for objects)`,
      );
    }
    const size = bytes.byteLength + topic.length;
    if (size > maxMessageBytes) {
      throw new RangeError(
        `Cannot emit output on ${topic}: ${size} bytes exceed the rule's ${maxMessageBytes} byte limit`,
      );
    }
    let f = retain ? O_RETAIN : 0;
    if (qos !== undefined) {
      if (qos !== 0 && qos !== 1 && qos !== 2) {
        throw new RangeError(`Cannot emit output on ${topic}: qos must be 0, 1 or 2, got ${qos}`);
      }
      f |= qos | O_QOS_SET;
    }
    if (route === "core") f |= O_CORE;
    else if (route === "northbound") f |= O_NORTHBOUND;
    else if (route !== undefined) {
      throw new TypeError(
        `Cannot emit output on ${topic}: route must be "core" or "northbound", got ${route}`,
      );
    }
    if (
      userProperties !== undefined &&
      (!Array.isArray(userProperties) ||
        !userProperties.every((p) =>
          Array.isArray(p) && typeof p[0] === "string" && typeof p[1] === "string"
        ))
    ) {
      throw new TypeError(
        `Cannot emit output on ${topic}: userProperties must be [string, string] pairs`,
      );
    }
    const k = this.n++;
    if (k === this.item.length) {
      const grow = <T extends Uint32Array | Uint8Array>(a: T, b: T) => (b.set(a), b);
      this.item = grow(this.item, new Uint32Array(k * 2));
      this.flags = grow(this.flags, new Uint8Array(k * 2));
      this.ends = grow(this.ends, new Uint32Array(k * 2));
    }
    const need = this.bytes + bytes.byteLength;
    if (need > this.buf.length) {
      const b = new Uint8Array(Math.max(need, this.buf.length * 2));
      b.set(this.buf.subarray(0, this.bytes));
      this.buf = b;
    }
    this.buf.set(bytes, this.bytes);
    this.bytes = need;
    this.ends[k] = need;
    this.item[k] = i;
    this.flags[k] = f;
    this.topics[k] = topic;
    if (userProperties) this.props.push([k, userProperties]);
  }
}

/** One collector for every batch (batches run one at a time, and the reply copies out of it). */
const outputs = new Outputs();

async function runBatch(b: BatchRequest): Promise<void> {
  const n = b.topics.length;
  const str = b.strings;
  const status = new Uint8Array(n);
  const errors: BatchResult["errors"] = [];
  const out = outputs;
  out.reset();
  const clock = { now: () => b.now };
  const props = new Map(b.props.map(([i, ct, up]) => [i, { ct, up }]));
  let ctx: RuleContext | undefined;
  for (let i = 0; i < n; i++) {
    Atomics.add(progress, 0, 1);
    try {
      const tickItem = (b.flags[i] & F_TICK) !== 0;
      const dev = b.devices[i];
      const deviceId = dev === 0 ? undefined : str[dev - 1];
      const protocol = str[b.protocols[i]];
      // Consecutive messages of one device share their (frozen) context.
      if (ctx === undefined || ctx.deviceId !== deviceId || ctx.protocol !== protocol) {
        ctx = Object.freeze({ rule: ruleName, deviceId, protocol, state: ruleState, clock });
      }
      let r: RuleResult | Promise<RuleResult>;
      if (tickItem) r = tick ? tick(ctx) : null;
      else {
        const p = props.get(i);
        r = rule!({
          topic: str[b.topics[i]],
          payload: payloadAt(b.payload, b.ends, i),
          qos: (b.flags[i] & 3) as 0 | 1 | 2,
          retain: (b.flags[i] & 4) !== 0,
          ts: b.ts[i],
          protocol,
          deviceId,
          contentType: p?.ct,
          userProperties: p?.up,
        }, ctx);
      }
      if (r instanceof Promise || (r && typeof (r as { then?: unknown }).then === "function")) {
        r = await r;
      }
      status[i] = out.add(r as RuleResult, i) ? S_OK : S_DROPPED;
    } catch (err) {
      status[i] = S_ERROR;
      const e = errorOf(err);
      errors.push([i, e.name, e.message]);
    }
    Atomics.add(progress, 1, 1);
  }
  const outPayload = out.buf.buffer.slice(0, out.bytes) as ArrayBuffer;
  const outItem = out.item.slice(0, out.n);
  const outFlags = out.flags.slice(0, out.n);
  const outEnds = out.ends.slice(0, out.n);
  const reply: BatchResult = {
    t: "done",
    status,
    errors,
    outItem,
    outTopics: out.topics,
    outFlags,
    outEnds,
    outPayload,
    outProps: out.props,
    heap: heapUsed(),
  };
  if (dirty.size) {
    reply.state = [...dirty];
    dirty = new Map();
  }
  scope.postMessage(reply, [
    status.buffer,
    outItem.buffer,
    outFlags.buffer,
    outEnds.buffer,
    outPayload,
  ]);
}

async function init(req: InitRequest): Promise<void> {
  ruleName = req.rule;
  progress = new Int32Array(req.progress);
  maxMessageBytes = req.maxMessageBytes;
  maxStateBytes = req.maxStateBytes;
  maxOutputs = req.maxOutputs;
  maxOutputBytes = req.maxOutputBytes;
  names = req.names;
  try {
    const mod = await import(req.url);
    if (typeof mod.default !== "function") {
      throw new TypeError("the module's default export is not a function (msg, ctx) => result");
    }
    if (mod.tick !== undefined && typeof mod.tick !== "function") {
      throw new TypeError("its tick export is not a function (ctx) => result");
    }
    const tickMs = mod.tickMs ?? 1000;
    if (typeof tickMs !== "number" || !(tickMs >= 1)) {
      throw new TypeError(`its tickMs export must be a number >= 1, got ${mod.tickMs}`);
    }
    rule = mod.default;
    tick = mod.tick;
    scope.postMessage({ t: "ready", hasTick: tick !== undefined, tickMs });
  } catch (err) {
    scope.postMessage({ t: "fail", ...errorOf(err) });
  }
}

function setState(entries: Array<[string, string]>): void {
  state.clear();
  stateBytes = 0;
  for (const [k, v] of entries) {
    state.set(k, v);
    stateBytes += k.length + v.length;
  }
  dirty = new Map();
}

scope.onmessage = (e) => {
  const m = e.data;
  if (m.t === "batch") chain = chain.then(() => runBatch(m));
  else if (m.t === "state") chain = chain.then(() => setState(m.entries));
  else if (m.t === "init") chain = chain.then(() => init(m));
};

// A rule's stray async failure (a rejected promise nobody awaited, a throwing timer callback) must
// not end the worker: it is reported and counted.
scope.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  scope.postMessage({ t: "uncaught", ...errorOf(e.reason) });
});
scope.addEventListener("error", (e) => {
  e.preventDefault();
  scope.postMessage({ t: "uncaught", ...errorOf(e.error) });
});

// The host's own code has loaded (under `deno test` that includes type-checking it): from now on
// the time the rule's module takes to load counts against its budget.
scope.postMessage({ t: "host" });
