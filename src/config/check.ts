/**
 * `ferry config check`: what can be checked of a validated config without binding a port. Every
 * file the gateway will read is readable (TLS certificates and keys, the upstream CA, the device
 * registry), `host` parses and resolves, and the data directory (and any state file outside it)
 * is writable. Each problem names its key, as validation does.
 *
 * @module
 */

import { dirname } from "../core/path.ts";
import { resolveNorthboundOptions } from "../northbound/options.ts";
import { deviceFilePath, type FerryConfig } from "./config.ts";
import { readDeviceFile } from "./device_file.ts";
import { ConfigError } from "./schema.ts";

/** Resolves a host name to addresses (getaddrinfo, like the listeners); throws when it cannot. */
export type HostLookup = (host: string) => Promise<void>;

async function lookupHost(host: string): Promise<void> {
  const dns = await import("node:dns/promises");
  await dns.lookup(host, { all: true });
}

/**
 * Why `host` cannot be bound, or `undefined`: an IPv4 address must have four parts of 0..255, an
 * IPv6 address must parse, and a name must resolve.
 *
 * @example
 * ```ts
 * import { checkHost } from "./check.ts";
 * if (await checkHost("127.0.0.1") !== undefined) throw new Error();
 * if (!(await checkHost("999.1.1.1"))?.includes("not an IPv4 address")) throw new Error();
 * ```
 */
export async function checkHost(
  host: string,
  lookup: HostLookup = lookupHost,
): Promise<string | undefined> {
  if (/^[0-9.]+$/.test(host)) {
    const parts = host.split(".");
    const ok = parts.length === 4 &&
      parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
    return ok ? undefined : `"${host}" is not an IPv4 address`;
  }
  if (host.includes(":")) {
    try {
      new URL(`http://[${host.replace(/^\[(.*)\]$/, "$1")}]/`);
      return undefined;
    } catch {
      return `"${host}" is not an IPv6 address`;
    }
  }
  try {
    await lookup(host);
    return undefined;
  } catch (err) {
    const code = (err as { code?: string }).code;
    return `"${host}" does not resolve to an address${code ? ` (${code})` : ""}`;
  }
}

/** A file-system error in a few words ("no such file", "permission denied", …). */
function reason(err: unknown): string {
  if (err instanceof Deno.errors.NotFound) return "no such file or directory";
  if (err instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (err instanceof Deno.errors.NotADirectory) return "not a directory";
  if (err instanceof Deno.errors.IsADirectory) return "is a directory";
  return (err as Error).message.replace(/ \(os error \d+\).*$/, "");
}

/** Why `path` cannot be read as a PEM file, or `undefined`. */
async function checkPem(path: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    return `cannot read ${path}: ${reason(err)}`;
  }
  return text.includes("-----BEGIN ") ? undefined : `${path} is not a PEM file`;
}

/**
 * Why files cannot be created in directory `dir` (made with its parents when missing, as the
 * gateway does), or `undefined`. Tries it: creates and removes a temporary file in `dir`, or in
 * the nearest existing ancestor when `dir` does not exist yet.
 *
 * @example
 * ```ts
 * import { checkWritableDir } from "./check.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/f`, "");
 * if (await checkWritableDir(`${dir}/new/data`) !== undefined) throw new Error();
 * if (!(await checkWritableDir(`${dir}/f/data`))?.includes("not a directory")) throw new Error();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function checkWritableDir(dir: string): Promise<string | undefined> {
  let probe = dir.replace(/\/+$/, "") || "/";
  for (;;) {
    try {
      const info = await Deno.stat(probe);
      if (!info.isDirectory) return `${probe} is not a directory`;
      break;
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) {
        return `cannot use ${probe}: ${reason(err)}`;
      }
      probe = dirname(probe);
    }
  }
  try {
    const tmp = await Deno.makeTempFile({ dir: probe, prefix: ".ferry-check-" });
    await Deno.remove(tmp);
  } catch (err) {
    return `cannot write in ${probe}${probe === dir ? "" : ` (to create ${dir})`}: ${reason(err)}`;
  }
  return undefined;
}

/**
 * Checks what can be checked without binding; resolves to the problems found (empty: the config
 * can start, ports permitting).
 *
 * @example
 * ```ts
 * import { resolveConfig } from "./config.ts";
 * import { checkConfig } from "./check.ts";
 * const dir = await Deno.makeTempDir();
 * const ok = await checkConfig(resolveConfig({ dataDir: dir }));
 * const bad = await checkConfig(resolveConfig({
 *   dataDir: dir, mqtt: { tls: { certFile: `${dir}/no.pem`, keyFile: `${dir}/no.key` } },
 * }));
 * await Deno.remove(dir, { recursive: true });
 * if (ok.length !== 0 || bad[0].key !== "mqtt.tls.certFile") throw new Error();
 * ```
 */
export async function checkConfig(
  c: FerryConfig,
  options: { lookup?: HostLookup } = {},
): Promise<ConfigError[]> {
  const problems: ConfigError[] = [];
  const report = (key: string, message: string | undefined) => {
    if (message !== undefined) problems.push(new ConfigError(key, message));
  };
  report("host", await checkHost(c.host, options.lookup));
  report("dataDir", await checkWritableDir(c.dataDir));
  for (const name of ["binary", "mqtt", "http"] as const) {
    const tls = c[name].tls;
    if (!c[name].enabled || !tls) continue;
    report(`${name}.tls.certFile`, await checkPem(tls.certFile));
    report(`${name}.tls.keyFile`, await checkPem(tls.keyFile));
  }
  const ws = c.mqtt.websocket;
  if (c.mqtt.enabled && ws.enabled && ws.tls) {
    report("mqtt.websocket.tls.certFile", await checkPem(ws.tls.certFile));
    report("mqtt.websocket.tls.keyFile", await checkPem(ws.tls.keyFile));
  }
  const state = c.mqtt.persistence.file;
  if (c.mqtt.enabled && c.mqtt.persistence.enabled && state.startsWith("/")) {
    report("mqtt.persistence.file", await checkWritableDir(dirname(state)));
  }
  const bridges = c.northbound === undefined
    ? []
    : Array.isArray(c.northbound)
    ? c.northbound
    : [c.northbound];
  for (const [i, nb] of bridges.entries()) {
    const at = Array.isArray(c.northbound) ? `northbound[${i}]` : "northbound";
    try {
      resolveNorthboundOptions({ ...nb, gatewayId: nb.gatewayId || "check" });
    } catch (err) {
      report(at, (err as Error).message);
    }
    for (const key of ["caFile", "certFile", "keyFile"] as const) {
      const file = nb[key];
      if (file !== undefined) report(`${at}.${key}`, await checkPem(file));
    }
    const spoolFile = nb.spool?.file;
    if (spoolFile?.startsWith("/")) {
      report(`${at}.spool.file`, await checkWritableDir(dirname(spoolFile)));
    }
  }
  const dataDirBad = problems.some((p) => p.key === "dataDir");
  if (c.auth.deviceFile || !dataDirBad) {
    try {
      await readDeviceFile(deviceFilePath(c));
    } catch (err) {
      report(c.auth.deviceFile ? "auth.deviceFile" : "dataDir", (err as Error).message);
    }
  }
  return problems;
}
