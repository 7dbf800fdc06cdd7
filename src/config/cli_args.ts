/**
 * Command-line flags. Flags override the config file; each flag maps onto one config key.
 *
 * @module
 */

import { configSchema } from "./config.ts";
import { ConfigError, defaults } from "./schema.ts";

/** Parsed command line. */
export interface CliArgs {
  /** Positional words (`[]` = run the gateway). */
  command: string[];
  /** `--config FILE`. */
  configFile?: string;
  /** `--help`. */
  help: boolean;
  /** `--version`. */
  version: boolean;
  /** Config overrides as a nested object, e.g. `{ binary: { port: 0 } }`. */
  overrides: Record<string, unknown>;
  /** `--publish FILTER` (repeatable): a new service account's publish ACL (`ferry account add`). */
  publish: string[];
  /** `--subscribe FILTER` (repeatable): its subscribe ACL. */
  subscribe: string[];
}

interface FlagSpec {
  key: string; // dotted config path
  kind: "port" | "string" | "level" | "format";
}

/** Flags that set config keys. */
export const FLAGS: Record<string, FlagSpec> = {
  "--host": { key: "host", kind: "string" },
  "--binary-port": { key: "binary.port", kind: "port" },
  "--mqtt-port": { key: "mqtt.port", kind: "port" },
  "--mqtt-ws-port": { key: "mqtt.websocket.port", kind: "port" },
  "--coap-port": { key: "coap.port", kind: "port" },
  "--http-port": { key: "http.port", kind: "port" },
  "--data-dir": { key: "dataDir", kind: "string" },
  "--log-level": { key: "log.level", kind: "level" },
  "--log-format": { key: "log.format", kind: "format" },
  "--upstream": { key: "northbound.url", kind: "string" },
  "--gateway-id": { key: "northbound.gatewayId", kind: "string" },
};

/** The synopsis: every form of the command line (the README's "Command line" shows it). */
export const SYNOPSIS =
  `ferry [--config FILE] [--host H] [--binary-port N] [--mqtt-port N] [--mqtt-ws-port N]
      [--coap-port N] [--http-port N] [--data-dir DIR] [--log-level L] [--log-format json|pretty]
      [--upstream mqtt[s]://HOST:PORT] [--gateway-id ID]
ferry config check [--config FILE] [flags]   check the config without starting
ferry config schema                          print the config's JSON Schema
ferry device add|rotate|remove <id> [--config FILE] [--data-dir DIR]
ferry device list [--config FILE] [--data-dir DIR]
ferry account add <name> [--publish FILTER]... [--subscribe FILTER]... [--config FILE] [--data-dir DIR]
ferry account remove <name> | ferry account list [--config FILE] [--data-dir DIR]
ferry coap-plugtest [--host H] [--coap-port N]   ETSI CoAP plugtest resources only
ferry rule test FILE [--input samples.jsonl] [--advance MS]   run a rule on samples
ferry --version | --help`;

/** The embedded defaults, for the usage text (written once, in the schema fragments). */
const d = defaults(configSchema);

/** Usage text. */
export const USAGE = `Usage:
${SYNOPSIS.replace(/^/gm, "  ")}

Starts the Ferry IoT gateway. With no config file it runs on the embedded defaults:
every listener on ${d.host}, devices without credentials let in only on loopback and only
until the first \`ferry device add\` (auth.anonymous "auto").

  --config FILE      JSON/JSONC config file (flags override it)
  --host H           address every listener binds (default ${d.host})
  --binary-port N    FBP/1 TCP port (default ${d.binary.port}; 0 = pick a free port)
  --mqtt-port N      MQTT port (default ${d.mqtt.port})
  --mqtt-ws-port N   MQTT over WebSocket port (default ${d.mqtt.websocket.port}; mqtt.websocket.enabled false: off)
  --coap-port N      CoAP UDP port (default ${d.coap.port})
  --http-port N      HTTP port for /healthz and /metrics (default ${d.http.port})
  --data-dir DIR     directory for durable state (default ${d.dataDir})
  --log-level L      debug | info | warn | error (default ${d.log.level})
  --log-format F     json | pretty (default ${d.log.format})
  --upstream URL     bridge to an upstream broker: mqtt://host:port or mqtts://host:port
  --gateway-id ID    this gateway's id upstream (default: the host name)
  --publish F        ferry account add: a topic filter the account may publish to (repeat it)
  --subscribe F      ferry account add: a topic filter the account may subscribe to (repeat it)
  --version          print the version and exit
  --help             this text
`;

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split(".");
  let o = obj;
  for (const p of parts.slice(0, -1)) {
    if (typeof o[p] !== "object" || o[p] === null) o[p] = {};
    o = o[p] as Record<string, unknown>;
  }
  o[parts[parts.length - 1]] = value;
}

/**
 * Parses argv (without the program name). Throws {@link ConfigError} naming the flag.
 *
 * @example
 * ```ts
 * import { parseCliArgs } from "./cli_args.ts";
 * const a = parseCliArgs(["--binary-port", "0", "--host=0.0.0.0"]);
 * const o = a.overrides as { binary: { port: number }; host: string };
 * if (o.binary.port !== 0 || o.host !== "0.0.0.0") throw new Error();
 * ```
 */
export function parseCliArgs(argv: string[]): CliArgs {
  const out: CliArgs = {
    command: [],
    help: false,
    version: false,
    overrides: {},
    publish: [],
    subscribe: [],
  };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value: string | undefined;
    const eq = arg.indexOf("=");
    if (arg.startsWith("--") && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    if (arg === "--help" || arg === "-h") {
      out.help = true;
      continue;
    }
    if (arg === "--version" || arg === "-V") {
      out.version = true;
      continue;
    }
    if (!arg.startsWith("-")) {
      out.command.push(arg);
      continue;
    }
    const takeValue = () => {
      if (value !== undefined) return value;
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) throw new ConfigError(arg, "needs a value");
      return v;
    };
    if (arg === "--config") {
      out.configFile = takeValue();
      continue;
    }
    if (arg === "--publish" || arg === "--subscribe") {
      const v = takeValue();
      if (v === "") throw new ConfigError(arg, "must not be empty");
      out[arg === "--publish" ? "publish" : "subscribe"].push(v);
      continue;
    }
    const spec = FLAGS[arg];
    if (!spec) throw new ConfigError(arg, `unknown flag (see --help)`);
    const v = takeValue();
    switch (spec.kind) {
      case "port": {
        if (!/^\d+$/.test(v) || Number(v) > 65535) {
          throw new ConfigError(arg, `"${v}" is not a port number (0-65535)`);
        }
        setPath(out.overrides, spec.key, Number(v));
        break;
      }
      case "level":
        if (!["debug", "info", "warn", "error"].includes(v)) {
          throw new ConfigError(arg, `"${v}" is not one of debug, info, warn, error`);
        }
        setPath(out.overrides, spec.key, v);
        break;
      case "format":
        if (!["json", "pretty"].includes(v)) {
          throw new ConfigError(arg, `"${v}" is not json or pretty`);
        }
        setPath(out.overrides, spec.key, v);
        break;
      default:
        if (v === "") throw new ConfigError(arg, "must not be empty");
        setPath(out.overrides, spec.key, v);
    }
  }
  return out;
}

/** Deep-merges CLI overrides onto a raw config object (flags win). */
export function mergeOverrides(base: unknown, overrides: Record<string, unknown>): unknown {
  if (typeof base !== "object" || base === null || Array.isArray(base)) return base;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(overrides)) {
    if (typeof v === "object" && v !== null && !Array.isArray(v)) {
      out[k] = mergeOverrides(out[k] ?? {}, v as Record<string, unknown>);
    } else out[k] = v;
  }
  return out;
}
