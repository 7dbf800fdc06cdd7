/**
 * The shape of the code, checked: protocol adapters reach the core only through its port, the
 * core names no adapter, and storage knows no protocol (docs/architecture.md). Each check reads
 * the source as text with comments stripped (examples in JSDoc may import anything).
 *
 * @module
 */

import { assertEquals } from "./_assert.ts";

const SRC = new URL("../src/", import.meta.url);

/** Files under `dir` (relative to src/), recursively. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (url: URL, rel: string) => {
    for (const e of Deno.readDirSync(url)) {
      if (e.isDirectory) walk(new URL(`${e.name}/`, url), `${rel}${e.name}/`);
      else if (e.name.endsWith(".ts")) out.push(`${rel}${e.name}`);
    }
  };
  walk(new URL(dir, SRC), dir);
  return out.sort();
}

/** The code of a file without its comments (strings and template literals kept). */
function code(rel: string): string {
  const s = Deno.readTextFileSync(new URL(rel, SRC));
  let out = "";
  for (let i = 0; i < s.length;) {
    const c = s[i];
    if (c === "/" && s[i + 1] === "/") {
      while (i < s.length && s[i] !== "\n") i++;
    } else if (c === "/" && s[i + 1] === "*") {
      const end = s.indexOf("*/", i + 2);
      i = end < 0 ? s.length : end + 2;
    } else if (c === "/" && /[(,=:[!&|?{};]$|^$/.test(out.trimEnd())) {
      // A regular expression literal (it may hold quotes): kept whole.
      const start = i++;
      let inClass = false;
      while (i < s.length && (inClass || s[i] !== "/")) {
        if (s[i] === "\\") i++;
        else if (s[i] === "[") inClass = true;
        else if (s[i] === "]") inClass = false;
        i++;
      }
      out += s.slice(start, ++i);
    } else if (c === '"' || c === "'" || c === "`") {
      const start = i++;
      while (i < s.length && s[i] !== c) i += s[i] === "\\" ? 2 : 1;
      out += s.slice(start, ++i);
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** What a protocol adapter may import from the core: the port and plain helpers, no internals. */
const ADAPTER_MAY_IMPORT = new Set([
  // the port
  "Core", // only to ask it for the port (checked below)
  "DevicePort",
  "ProtocolSpec",
  "Identity",
  "Draft",
  "PublishOptions",
  "PublishLane",
  "PublishResult",
  "BatchResult",
  "Refusal",
  "LoginRefusalReason",
  "PublishRefusalReason",
  "Subscriber",
  "SessionHandle",
  "CloseReason",
  "CloseCode",
  "Attachment",
  "DeviceCommands",
  "PendingCommand",
  "CommandListener",
  "CommandStoreLimits",
  "SessionProvider",
  "SessionInfo",
  "SessionDetail",
  "SessionDescription",
  "SubscriptionInfo",
  "DropResult",
  // the message model and namespace
  "Message",
  "MessageProperties",
  "QoS",
  "Protocol",
  "ownPayload",
  "ownBytes",
  "ackTopic",
  "telemetryTopic",
  "commandTopic",
  "statusTopic",
  "parseTopic",
  "isDeviceId",
  "CHANNEL_RE",
  "COMMAND_NAME_RE",
  "DEVICE_ID_RE",
  "validateTopic",
  "validateFilter",
  "topicMatches",
  "encodeBase64",
  "payloadText",
  "errorMessage",
  // primitives
  "Clock",
  "TimerHandle",
  "DeadlineEntry",
  "DeadlineQueue",
  "PayloadBudget",
  "Logger",
  "LogFields",
  "LogThrottle",
]);

const ADAPTERS = [...filesUnder("protocols/"), ...filesUnder("http/device_api/")];

Deno.test("Adapters import from the core only its public face (core/mod.ts), and only the port and plain helpers", () => {
  const problems: string[] = [];
  for (const f of ADAPTERS) {
    const src = code(f);
    for (const m of src.matchAll(/import\s+(type\s+)?\{([^}]*)\}\s+from\s+"([^"]*)"/g)) {
      const from = m[3];
      if (!/(^|\/)core\//.test(from)) continue;
      if (!from.endsWith("core/mod.ts")) problems.push(`${f}: imports ${from} (use core/mod.ts)`);
      for (const raw of m[2].split(",")) {
        const name = raw.trim().replace(/^type\s+/, "").split(/\s+as\s+/)[0];
        if (name && !ADAPTER_MAY_IMPORT.has(name)) problems.push(`${f}: imports ${name}`);
      }
    }
    for (const m of src.matchAll(/import\s+\*\s+as\s+\w+\s+from\s+"([^"]*core\/[^"]*)"/g)) {
      problems.push(`${f}: imports all of ${m[1]}`);
    }
  }
  assertEquals(problems, []);
});

Deno.test("Adapters use a Core only to ask it for their port", () => {
  const problems: string[] = [];
  for (const f of ADAPTERS) {
    for (const m of code(f).matchAll(/\bcore\??\.(\w+)/g)) {
      if (m[1] !== "port") problems.push(`${f}: core.${m[1]}`);
    }
  }
  assertEquals(problems, []);
});

Deno.test("The core names no adapter and imports nothing outside itself", () => {
  const problems: string[] = [];
  for (const f of filesUnder("core/")) {
    const src = code(f);
    for (const m of src.matchAll(/["'`](binary|fbp|mqtt|coap|http|upstream|websocket)["'`]/gi)) {
      problems.push(`${f}: names ${m[0]}`);
    }
    for (const m of src.matchAll(/from\s+"(\.\.\/[^"]*)"/g)) {
      // The schema builder is a library of the config, naming no adapter: the core's config
      // fragments (core/options.ts) are written with it.
      if (m[1] !== "../config/schema.ts") problems.push(`${f}: imports ${m[1]}`);
    }
  }
  assertEquals(problems, []);
});

Deno.test("Storage knows no protocol: the state file's tables belong to the stores that use them", () => {
  const problems: string[] = [];
  for (const f of filesUnder("persistence/")) {
    const src = code(f);
    if (/mqtt/i.test(src)) problems.push(`${f}: mentions MQTT`);
    for (const m of src.matchAll(/from\s+"(\.\.\/protocols\/[^"]*)"/g)) {
      problems.push(`${f}: imports ${m[1]}`);
    }
  }
  assertEquals(problems, []);
});
