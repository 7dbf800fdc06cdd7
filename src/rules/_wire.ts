/**
 * The messages between a rule's worker and the gateway, and the packing of a batch: every payload
 * of a batch is copied into one `ArrayBuffer` (a payload is often a view into a 16 KiB socket
 * read, and structured clone would copy the whole read), topics, device ids and protocols into a
 * table of distinct strings, the rest into typed arrays: a batch is a handful of objects whatever
 * its size. The gateway keeps what it sent (to run it again on a new worker after a timeout), so
 * batches are cloned (a memcpy); results come back transferred.
 *
 * @module
 */

/** Item flags: bits 0-1 QoS, bit 2 retain, bit 3 a tick (no message). */
export const F_RETAIN = 4;
/** The item is a clock tick, not a message. */
export const F_TICK = 8;

/** Output flags: bits 0-1 QoS, bit 2 QoS given, bit 3 retain, bits 4-5 route (0 default). */
export const O_QOS_SET = 4;
/** Output retain flag. */
export const O_RETAIN = 8;
/** Route: the core. */
export const O_CORE = 16;
/** Route: the northbound. */
export const O_NORTHBOUND = 32;

/** Per-item status in a result. */
export const S_OK = 0;
/** The rule returned null/undefined. */
export const S_DROPPED = 1;
/** The rule threw (or returned something invalid). */
export const S_ERROR = 2;

/** Parent → worker: load the module. */
export interface InitRequest {
  t: "init";
  /** URL of the entry module (a data: URL built by the module loader). */
  url: string;
  /** The rule's name. */
  rule: string;
  /** Shared progress counters: [messages started, messages finished]. */
  progress: SharedArrayBuffer;
  /** Largest output (topic + payload), bytes. */
  maxMessageBytes: number;
  /** Largest state, bytes of JSON. */
  maxStateBytes: number;
  /** Most outputs of one message. */
  maxOutputs: number;
  /** Largest sum of one message's output payloads, bytes. */
  maxOutputBytes: number;
  /** data: URL → file path, to make error messages readable. */
  names: Array<[string, string]>;
}

/** Parent → worker: replace the state (before the first batch of a worker). */
export interface StateRequest {
  t: "state";
  /** Key and value as JSON text. */
  entries: Array<[string, string]>;
}

/** Parent → worker: a batch of items. */
export interface BatchRequest {
  t: "batch";
  /** The gateway clock when the batch was sent. */
  now: number;
  /** Distinct strings of the batch (topics, device ids, protocols repeat: each is sent once). */
  strings: string[];
  /** Topic of each item (index into `strings`). */
  topics: Uint32Array;
  /** Device of each item (index + 1 into `strings`; 0: none). */
  devices: Uint32Array;
  /** Protocol of each item (index into `strings`). */
  protocols: Uint32Array;
  ts: Float64Array;
  flags: Uint8Array;
  /** End offset of each payload in `payload`. */
  ends: Uint32Array;
  payload: ArrayBuffer;
  /** Item index, content type, user properties (only items that have any). */
  props: Array<[number, string | undefined, Array<[string, string]> | undefined]>;
}

/** Worker → parent. */
export type WorkerReply =
  | { t: "host" }
  | { t: "ready"; hasTick: boolean; tickMs: number }
  | { t: "fail"; name: string; message: string }
  | { t: "uncaught"; name: string; message: string }
  | BatchResult;

/** Worker → parent: the results of one batch, in item order. */
export interface BatchResult {
  t: "done";
  status: Uint8Array;
  /** Item index, error name, message (items with status S_ERROR). */
  errors: Array<[number, string, string]>;
  /** Item index of each output (outputs are in item order). */
  outItem: Uint32Array;
  outTopics: string[];
  outFlags: Uint8Array;
  outEnds: Uint32Array;
  outPayload: ArrayBuffer;
  /** Output index and user properties. */
  outProps: Array<[number, Array<[string, string]>]>;
  /** State keys changed by the batch, value as JSON text (`undefined`: deleted), if any. */
  state?: Array<[string, string | undefined]>;
  /** The worker's JavaScript heap in use after the batch, bytes. */
  heap: number;
}

/** A message-like item to pack. */
export interface PackItem {
  topic: string;
  payload: Uint8Array;
  qos: 0 | 1 | 2;
  retain: boolean;
  ts: number;
  protocol: string;
  deviceId?: string;
  properties?: { contentType?: string; userProperties?: Array<[string, string]> };
}

const EMPTY = new Uint8Array(0);

/**
 * Packs items into a batch as they arrive: the payload bytes are copied into one growing buffer
 * and topics, device ids and protocols into a table of distinct strings, so the batch holds no
 * reference to the messages. (Keeping thousands of messages alive across event-loop turns, each
 * pinning the socket read its payload is a view of, costs more garbage collection than the copy.)
 */
export class BatchBuilder {
  /** Items added. */
  length = 0;
  /** Items that are messages (not ticks). */
  messages = 0;
  /** Bytes of the messages' topics and payloads. */
  bytes = 0;
  #strings: string[] = [];
  #index = new Map<string, number>();
  #topics = new Uint32Array(64);
  #devices = new Uint32Array(64);
  #protocols = new Uint32Array(64);
  #ts = new Float64Array(64);
  #flags = new Uint8Array(64);
  #ends = new Uint32Array(64);
  #payload = new Uint8Array(4096);
  #bytes = 0;
  #props: BatchRequest["props"] = [];
  // Consecutive items mostly share their topic, device and protocol: compare before hashing.
  #lastTopic = "";
  #lastTopicIx = -1;
  #lastDevice = "";
  #lastDeviceIx = -1;
  #lastProtocol = "";
  #lastProtocolIx = -1;

  #intern(s: string): number {
    let i = this.#index.get(s);
    if (i === undefined) {
      this.#index.set(s, i = this.#strings.length);
      this.#strings.push(s);
    }
    return i;
  }

  #grow(): void {
    const n = this.#topics.length * 2;
    const grow = <T extends Uint32Array | Float64Array | Uint8Array>(
      a: T,
      make: (n: number) => T,
    ) => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.#topics = grow(this.#topics, (n) => new Uint32Array(n));
    this.#devices = grow(this.#devices, (n) => new Uint32Array(n));
    this.#protocols = grow(this.#protocols, (n) => new Uint32Array(n));
    this.#ts = grow(this.#ts, (n) => new Float64Array(n));
    this.#flags = grow(this.#flags, (n) => new Uint8Array(n));
    this.#ends = grow(this.#ends, (n) => new Uint32Array(n));
  }

  /** Adds a message, or a tick (`undefined`) stamped `now`. */
  add(m: PackItem | undefined, now: number): void {
    const i = this.length++;
    if (i === this.#topics.length) this.#grow();
    if (!m) {
      this.#topics[i] = this.#intern("");
      this.#devices[i] = 0;
      this.#protocols[i] = this.#intern("system");
      this.#ts[i] = now;
      this.#flags[i] = F_TICK;
      this.#ends[i] = this.#bytes;
      return;
    }
    this.messages++;
    const t = m.topic;
    this.bytes += t.length + m.payload.byteLength;
    this.#topics[i] = t === this.#lastTopic
      ? this.#lastTopicIx
      : (this.#lastTopicIx = this.#intern(this.#lastTopic = t));
    const d = m.deviceId;
    this.#devices[i] = d === undefined
      ? 0
      : d === this.#lastDevice
      ? this.#lastDeviceIx
      : (this.#lastDeviceIx = this.#intern(this.#lastDevice = d) + 1);
    const p = m.protocol;
    this.#protocols[i] = p === this.#lastProtocol
      ? this.#lastProtocolIx
      : (this.#lastProtocolIx = this.#intern(this.#lastProtocol = p));
    this.#ts[i] = m.ts;
    this.#flags[i] = m.qos | (m.retain ? F_RETAIN : 0);
    const need = this.#bytes + m.payload.byteLength;
    if (need > this.#payload.length) {
      const b = new Uint8Array(Math.max(need, this.#payload.length * 2));
      b.set(this.#payload.subarray(0, this.#bytes));
      this.#payload = b;
    }
    this.#payload.set(m.payload, this.#bytes);
    this.#bytes = need;
    this.#ends[i] = need;
    const props = m.properties;
    if (props && (props.contentType !== undefined || props.userProperties)) {
      this.#props.push([i, props.contentType, props.userProperties]);
    }
  }

  /** The batch (exact-size copies: the builder may be reused or dropped). */
  build(): BatchRequest {
    const n = this.length;
    const b: BatchRequest = {
      t: "batch",
      now: 0,
      strings: this.#strings,
      topics: this.#topics.slice(0, n),
      devices: this.#devices.slice(0, n),
      protocols: this.#protocols.slice(0, n),
      ts: this.#ts.slice(0, n),
      flags: this.#flags.slice(0, n),
      ends: this.#ends.slice(0, n),
      payload: this.#payload.buffer.slice(0, this.#bytes) as ArrayBuffer,
      props: this.#props,
    };
    return b;
  }

  /**
   * Empties the builder for the next batch, keeping its grown buffers: a runner packs batch
   * after batch, and allocating them anew each time (growing 64 → 2048 items, 4 KiB → 128 KiB of
   * payload) made garbage that V8's background threads then spent more CPU on than the rule
   * path itself. Call after {@link build} (the batch holds copies, not these buffers).
   */
  reset(): void {
    this.length = 0;
    this.messages = 0;
    this.bytes = 0;
    this.#bytes = 0;
    this.#strings = [];
    this.#index.clear();
    this.#props = [];
    this.#lastTopic = "";
    this.#lastTopicIx = -1;
    this.#lastDevice = "";
    this.#lastDeviceIx = -1;
    this.#lastProtocol = "";
    this.#lastProtocolIx = -1;
  }
}

/** Item `i` of a batch as a message (a view of its payload), or undefined for a tick. */
export function itemAt(b: BatchRequest, i: number): PackItem | undefined {
  const f = b.flags[i];
  if (f & F_TICK) return undefined;
  const dev = b.devices[i];
  const item: PackItem = {
    topic: b.strings[b.topics[i]],
    payload: payloadAt(b.payload, b.ends, i),
    qos: (f & 3) as 0 | 1 | 2,
    retain: (f & F_RETAIN) !== 0,
    ts: b.ts[i],
    protocol: b.strings[b.protocols[i]],
  };
  if (dev !== 0) item.deviceId = b.strings[dev - 1];
  if (b.props.length) {
    const p = b.props.find(([j]) => j === i);
    if (p) {
      item.properties = {};
      if (p[1] !== undefined) item.properties.contentType = p[1];
      if (p[2]) item.properties.userProperties = p[2];
    }
  }
  return item;
}

/** Payload `i` of a packed batch or result (a view, no copy). */
export function payloadAt(buf: ArrayBuffer, ends: Uint32Array, i: number): Uint8Array {
  const start = i === 0 ? 0 : ends[i - 1];
  return start === ends[i] ? EMPTY : new Uint8Array(buf, start, ends[i] - start);
}
