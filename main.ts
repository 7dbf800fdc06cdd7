/**
 * Ferry's command line.
 *
 * - `ferry [flags]`: run the gateway (see `--help`).
 * - `ferry config check` / `ferry config schema`: check the config without starting (every key,
 *   files readable, host resolves, data dir writable), print its JSON Schema.
 * - `ferry device add|rotate|remove|list`: manage the device registry file.
 * - `ferry account add|remove|list`: manage the service accounts in the same file.
 * - `ferry rule test FILE --input samples.jsonl`: run a rule on sample messages (docs/rules.md).
 * - `ferry --version`, `ferry --help`.
 *
 * @module
 */

import {
  anonymousAllowed,
  deviceFilePath,
  type FerryConfig,
  loadConfigFile,
  mergeOverrides,
  parseCliArgs,
  resolveConfig,
  USAGE,
} from "./src/config/mod.ts";
import { ConfigError } from "./src/config/schema.ts";
import { versionLine } from "./src/version.ts";
import {
  addAccount,
  addDevice,
  DeviceFileError,
  readDeviceFile,
  removeAccount,
  removeDevice,
} from "./src/config/device_file.ts";
import { Gateway } from "./src/gateway.ts";
// `config schema`/`config check` and `rule test` import what they need when run: the gateway's
// start does not load them.

/** A command-line error: printed as `ferry: message`, exit code 2. */
class UsageError extends Error {
  override name = "UsageError";
}

async function loadConfig(
  configFile: string | undefined,
  overrides: Record<string, unknown>,
): Promise<FerryConfig> {
  const raw = configFile ? await loadConfigFile(configFile) : {};
  return resolveConfig(mergeOverrides(raw, overrides));
}

async function runGateway(
  config: FerryConfig,
  coapMode?: "plugtest",
  reread?: () => Promise<FerryConfig>,
  configFile?: string,
): Promise<number> {
  const gateway = new Gateway(config, { coapMode, configFile });
  const stopped = Promise.withResolvers<void>();
  const stop = () => {
    gateway.stop().then(stopped.resolve, stopped.reject);
  };
  // The northbound bridges follow the config file (added, removed, changed: spool kept), on
  // SIGHUP and when the file changes.
  const reloadBridges = () => {
    if (!config.northbound || !reread) return;
    reread().then(
      (c) => gateway.reloadNorthbound(c.northbound),
      (err) => console.error(`ferry: config not reloaded: ${(err as Error).message}`),
    );
  };
  const reload = () => {
    gateway.reloadDevices();
    reloadBridges();
  };
  const watching = config.northbound && configFile
    ? watchFile(configFile, reloadBridges)
    : undefined;
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGHUP", reload);
  try {
    await gateway.start();
  } catch (err) {
    throw new UsageError(`cannot start: ${(err as Error).message}`);
  }
  await stopped.promise;
  await watching?.close();
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  Deno.removeSignalListener("SIGHUP", reload);
  return 0;
}

/** Says so when a change of the registry turned anonymous access off or on (`auto`). */
function noteAnonymous(config: FerryConfig, before: number, after: number): void {
  const was = anonymousAllowed(config, before);
  const now = anonymousAllowed(config, after);
  if (was && !now) {
    console.error(
      `ferry: anonymous access is now off (auth.anonymous "auto"): every device needs its id and token`,
    );
  } else if (!was && now) {
    console.error(
      `ferry: no device is registered any more: anonymous access is on again on loopback (auth.anonymous "auto"; set it to false to keep unregistered devices out)`,
    );
  }
}

/** Calls `fn` (debounced) when `file` changes; the watcher's directory is the file's. */
function watchFile(file: string, fn: () => void): { close(): Promise<void> } | undefined {
  const path = file.startsWith("/") ? file : `${Deno.cwd()}/${file}`;
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  const name = path.slice(path.lastIndexOf("/") + 1);
  let watcher: Deno.FsWatcher;
  try {
    watcher = Deno.watchFs(dir, { recursive: false });
  } catch {
    return undefined; // SIGHUP still works
  }
  const loop = (async () => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    for await (const ev of watcher) {
      if (!ev.paths.some((p) => p.endsWith(`/${name}`))) continue;
      clearTimeout(timer); // editors write in several steps
      timer = setTimeout(fn, 200);
    }
    clearTimeout(timer);
  })();
  return {
    async close() {
      try {
        watcher.close();
      } catch { /* closed */ }
      await loop;
    },
  };
}

async function deviceCommand(config: FerryConfig, words: string[]): Promise<number> {
  const path = deviceFilePath(config);
  const [verb, id, ...rest] = words;
  if (rest.length) throw new UsageError(`unexpected arguments: ${rest.join(" ")}`);
  const before = verb === "list" ? 0 : (await readDeviceFile(path)).devices.length;
  switch (verb) {
    case "add":
    case "rotate": {
      if (!id) throw new UsageError(`usage: ferry device ${verb} <id>`);
      const token = await addDevice(path, id, { rotate: verb === "rotate" });
      console.log(token);
      console.error(
        `ferry: device "${id}" ${
          verb === "add" ? "added" : "rotated"
        } in ${path}; the token above is shown once and stored only as a hash`,
      );
      noteAnonymous(config, before, before + (verb === "add" ? 1 : 0));
      return 0;
    }
    case "remove":
      if (!id) throw new UsageError("usage: ferry device remove <id>");
      await removeDevice(path, id);
      console.error(`ferry: device "${id}" removed from ${path}`);
      noteAnonymous(config, before, before - 1);
      return 0;
    case "list": {
      const file = await readDeviceFile(path);
      for (const d of file.devices) console.log(`${d.id}\t${d.updated}`);
      return 0;
    }
    default:
      throw new UsageError("usage: ferry device add|rotate|remove <id> | ferry device list");
  }
}

/**
 * `ferry account add|remove|list`: service accounts (name, token, ACL) in the registry file, the
 * file a running gateway reloads on change; accounts of the config are listed, not changed.
 */
async function accountCommand(
  config: FerryConfig,
  words: string[],
  acl: { publish: string[]; subscribe: string[] },
): Promise<number> {
  const path = deviceFilePath(config);
  const [verb, name, ...rest] = words;
  if (rest.length) throw new UsageError(`unexpected arguments: ${rest.join(" ")}`);
  if (verb !== "add" && (acl.publish.length || acl.subscribe.length)) {
    throw new UsageError("--publish and --subscribe go with ferry account add");
  }
  const inConfig = (n: string) => config.auth.services.some((a) => a.name === n);
  switch (verb) {
    case "add": {
      if (!name) {
        throw new UsageError(
          "usage: ferry account add <name> [--publish FILTER]... [--subscribe FILTER]...",
        );
      }
      if (config.auth.devices.some((d) => d.id === name)) {
        throw new UsageError(`"${name}" is a device's id (auth.devices): pick another name`);
      }
      const token = await addAccount(path, name, acl, { reserved: inConfig });
      console.log(token);
      console.error(
        `ferry: account "${name}" added in ${path} (publish: ${
          acl.publish.join(" ") || "nothing"
        }; subscribe: ${
          acl.subscribe.join(" ") || "nothing"
        }); the token above is shown once and stored only as a hash`,
      );
      return 0;
    }
    case "remove":
      if (!name) throw new UsageError("usage: ferry account remove <name>");
      if (inConfig(name)) {
        throw new UsageError(
          `account "${name}" is defined in the config (auth.services): remove it there`,
        );
      }
      await removeAccount(path, name);
      console.error(`ferry: account "${name}" removed from ${path}`);
      return 0;
    case "list": {
      if (name) throw new UsageError("usage: ferry account list");
      const rows = [
        ...config.auth.services.map((a) => ({ ...a, source: "config" })),
        ...((await readDeviceFile(path)).services ?? [])
          .filter((a) => !inConfig(a.name))
          .map((a) => ({ ...a, source: "file" })),
      ].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
      for (const a of rows) {
        console.log(
          `${a.name}\t${a.source}\tpublish=${a.publish.join(",")}\tsubscribe=${
            a.subscribe.join(",")
          }`,
        );
      }
      return 0;
    }
    default:
      throw new UsageError("usage: ferry account add|remove <name> | ferry account list");
  }
}

/** Runs the CLI with `args`; resolves to the exit code. */
export async function main(args: string[]): Promise<number> {
  try {
    if (args[0] === "rule") { // flags of its own
      const { ruleCommand } = await import("./src/rules/test_command.ts");
      return await ruleCommand(args.slice(1));
    }
    const parsed = parseCliArgs(args);
    if (parsed.help) {
      console.log(USAGE);
      return 0;
    }
    if (parsed.version) {
      console.log(versionLine());
      return 0;
    }
    const [cmd, ...words] = parsed.command;
    if (cmd !== "account" && (parsed.publish.length || parsed.subscribe.length)) {
      throw new UsageError("--publish and --subscribe go with ferry account add");
    }
    if (cmd === "config" && words[0] === "schema") {
      const { configJsonSchema } = await import("./src/config/reference.ts");
      console.log(JSON.stringify(configJsonSchema(), null, 2));
      return 0;
    }
    const config = await loadConfig(parsed.configFile, parsed.overrides);
    switch (cmd) {
      case undefined:
        return await runGateway(
          config,
          undefined,
          () => loadConfig(parsed.configFile, parsed.overrides),
          parsed.configFile,
        );
      case "config":
        if (words[0] !== "check" || words.length > 1) {
          throw new UsageError("usage: ferry config check|schema");
        }
        {
          const { checkConfig } = await import("./src/config/check.ts");
          const problems = await checkConfig(config);
          for (const p of problems) console.error(`ferry: ${p.message}`);
          if (problems.length) return 2;
        }
        console.log(`ferry: config ${parsed.configFile ?? "(embedded default)"} is valid`);
        return 0;
      case "device":
        return await deviceCommand(config, words);
      case "account":
        return await accountCommand(config, words, parsed);
      case "coap-plugtest":
        // The ETSI CoAP plugtest resource set on Ferry's CoAP stack, and nothing else.
        if (words.length) {
          throw new UsageError("usage: ferry coap-plugtest [--host H] [--coap-port N]");
        }
        config.binary.enabled = false;
        config.mqtt.enabled = false;
        config.http.enabled = false;
        config.coap.enabled = true;
        return await runGateway(config, "plugtest");
      default:
        throw new UsageError(`unknown command "${parsed.command.join(" ")}" (see --help)`);
    }
  } catch (err) {
    if (
      err instanceof UsageError || err instanceof ConfigError || err instanceof SyntaxError ||
      err instanceof DeviceFileError
    ) {
      console.error(`ferry: ${err.message}`);
      return 2;
    }
    throw err;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
