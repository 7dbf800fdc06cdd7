/**
 * Ferry's command line: `ferry [flags]` starts the gateway (see `--help`).
 *
 * @module
 */

import {
  loadConfigFile,
  mergeOverrides,
  parseCliArgs,
  resolveConfig,
  USAGE,
} from "./src/config/mod.ts";
import { ConfigError } from "./src/config/schema.ts";
import { Gateway } from "./src/gateway.ts";

function fail(message: string): never {
  console.error(`ferry: ${message}`);
  Deno.exit(2);
}

/** Runs the CLI with `args`; resolves to the exit code. */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseCliArgs(args);
  } catch (err) {
    fail((err as Error).message);
  }
  if (parsed.help) {
    console.log(USAGE);
    return 0;
  }
  if (parsed.command.length) fail(`unknown command "${parsed.command.join(" ")}" (see --help)`);
  let config;
  try {
    const raw = parsed.configFile ? await loadConfigFile(parsed.configFile) : {};
    config = resolveConfig(mergeOverrides(raw, parsed.overrides));
  } catch (err) {
    if (err instanceof ConfigError || err instanceof SyntaxError) fail(err.message);
    throw err;
  }
  const gateway = new Gateway(config);
  const stopped = Promise.withResolvers<void>();
  const stop = () => {
    gateway.stop().then(stopped.resolve, stopped.reject);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  try {
    await gateway.start();
  } catch (err) {
    fail(`cannot start: ${(err as Error).message}`);
  }
  await stopped.promise;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
