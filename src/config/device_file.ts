/**
 * The device registry file, managed by `ferry device add|list|remove|rotate`: JSON with one entry
 * per device holding only a salted token hash (the token is printed once, at creation or
 * rotation, and never stored). Writes are atomic (temp file + rename), so a running gateway that
 * reloads on change never reads half a file.
 *
 * The file keeps its owner and mode across writes; a new one belongs to the owner of its
 * directory (mode 0600). So `sudo ferry device add` on a gateway that runs as its own user writes a
 * file that user can still read, and a user who cannot keep the owner is refused with a message
 * saying which user to run as.
 *
 * @module
 */

import { dirname } from "../core/path.ts";
import { hashToken, isTokenHash } from "../core/credentials.ts";
import { isDeviceId } from "../core/topics.ts";
import { validateFilter } from "../core/topic_router.ts";

/** One device in the file. */
export interface DeviceEntry {
  /** Device id. */
  id: string;
  /** `sha256:<salt>:<digest>`. */
  tokenHash: string;
  /** When it was added or last rotated (ISO 8601). */
  updated: string;
}

/** One service account in the file (`ferry account add`, the management API). */
export interface AccountEntry {
  /** Account name (MQTT username, HTTP Basic user). */
  name: string;
  /** `sha256:<salt>:<digest>`. */
  tokenHash: string;
  /** Topic filters it may publish to. */
  publish: string[];
  /** Topic filters it may subscribe to. */
  subscribe: string[];
  /** When it was added (ISO 8601). */
  updated: string;
}

/** The file's content. */
export interface DeviceFile {
  /** Format version. */
  version: 1;
  /** Devices, sorted by id. */
  devices: DeviceEntry[];
  /** Service accounts, sorted by name (absent in files written before accounts were kept here). */
  services?: AccountEntry[];
}

const ACCOUNT_NAME = /^[A-Za-z0-9._:-]{1,64}$/;

/** True when `name` can be a service account's name (1..64 characters of `[A-Za-z0-9._:-]`). */
export function isAccountName(name: string): boolean {
  return ACCOUNT_NAME.test(name);
}

/** A device file that cannot be used; the message says why and where. */
export class DeviceFileError extends Error {
  override name = "DeviceFileError";
}

/** Reads the file; a missing file is an empty registry. */
export async function readDeviceFile(path: string): Promise<DeviceFile> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { version: 1, devices: [] };
    throw new DeviceFileError(`Cannot read device file ${path}: ${(err as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new DeviceFileError(`Cannot parse device file ${path}: ${(err as Error).message}`);
  }
  const f = data as Partial<DeviceFile>;
  if (f?.version !== 1 || !Array.isArray(f.devices)) {
    throw new DeviceFileError(
      `Cannot use device file ${path}: expected {"version":1,"devices":[…]}`,
    );
  }
  f.devices.forEach((d, i) => {
    if (!d || typeof d.id !== "string" || !isDeviceId(d.id)) {
      throw new DeviceFileError(
        `Cannot use device file ${path}: devices[${i}].id is not a device id`,
      );
    }
    if (typeof d.tokenHash !== "string" || !isTokenHash(d.tokenHash)) {
      throw new DeviceFileError(
        `Cannot use device file ${path}: devices[${i}].tokenHash is malformed`,
      );
    }
  });
  if (f.services !== undefined && !Array.isArray(f.services)) {
    throw new DeviceFileError(`Cannot use device file ${path}: services is not a list`);
  }
  (f.services ?? []).forEach((a, i) => {
    const where = `Cannot use device file ${path}: services[${i}]`;
    if (!a || typeof a.name !== "string" || !isAccountName(a.name)) {
      throw new DeviceFileError(`${where}.name is not an account name`);
    }
    if (typeof a.tokenHash !== "string" || !isTokenHash(a.tokenHash)) {
      throw new DeviceFileError(`${where}.tokenHash is malformed`);
    }
    for (const key of ["publish", "subscribe"] as const) {
      const list = a[key];
      if (!Array.isArray(list) || list.some((x) => typeof x !== "string" || validateFilter(x))) {
        throw new DeviceFileError(`${where}.${key} is not a list of topic filters`);
      }
    }
  });
  return f as DeviceFile;
}

/** Owner and mode a written device file gets. */
export interface FileOwner {
  /** User id. */
  uid: number;
  /** Group id. */
  gid: number;
  /** Permission bits. */
  mode: number;
}

/** The name of user `uid` from /etc/passwd, else the number. */
function userName(uid: number): string {
  try {
    for (const line of Deno.readTextFileSync("/etc/passwd").split("\n")) {
      const f = line.split(":");
      if (f.length > 2 && Number(f[2]) === uid) return f[0];
    }
  } catch { /* no passwd file */ }
  return String(uid);
}

/**
 * The owner and mode `path` must keep: the existing file's, else its directory's owner with mode
 * 0600 (the file holds credential hashes). `undefined` when there is nothing to keep (no owner
 * known). Throws {@link DeviceFileError} when user `uid` could not give the file that owner: only
 * root can give a file to another user.
 *
 * @example
 * ```ts
 * import { DeviceFileError, ownerToKeep } from "./device_file.ts";
 * const dir = await Deno.makeTempDir();
 * const me = Deno.uid() ?? 0;
 * const o = ownerToKeep(`${dir}/devices.json`, me);
 * if (o?.uid !== me || o.mode !== 0o600) throw new Error();
 * try { ownerToKeep(`${dir}/devices.json`, me + 1); throw new Error("kept"); }
 * catch (e) { if (!(e instanceof DeviceFileError) || !e.message.includes("sudo -u")) throw e; }
 * await Deno.remove(dir);
 * ```
 */
export function ownerToKeep(path: string, uid: number): FileOwner | undefined {
  let info: Deno.FileInfo;
  let mode = 0o600;
  try {
    info = Deno.statSync(path);
    mode = (info.mode ?? 0o600) & 0o7777;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    try {
      info = Deno.statSync(dirname(path));
    } catch {
      return undefined; // the directory is made by this write: the writer owns it
    }
  }
  if (info.uid === null || info.gid === null) return undefined;
  if (uid !== 0 && uid !== info.uid) {
    const owner = userName(info.uid);
    throw new DeviceFileError(
      `Cannot write device file ${path}: it must stay owned by ${owner}, the owner of ${
        info.isFile ? "the file" : "its directory"
      }, so the gateway can read it; run the command as that user (sudo -u ${owner} ferry device|account …) or as root`,
    );
  }
  return { uid: info.uid, gid: info.gid, mode };
}

/**
 * Writes the file atomically, keeping its owner and mode (see {@link ownerToKeep}; a new file is
 * 0600: it holds credential hashes).
 */
export async function writeDeviceFile(path: string, file: DeviceFile): Promise<void> {
  const dir = dirname(path);
  const owner = ownerToKeep(path, Deno.uid() ?? 0);
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${path}.tmp-${Deno.pid}`;
  file.devices.sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  file.services?.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  try {
    await Deno.writeTextFile(tmp, JSON.stringify(file, null, 2) + "\n", { mode: 0o600 });
    if (owner) {
      const now = await Deno.stat(tmp);
      if (now.uid !== owner.uid || now.gid !== owner.gid) {
        await Deno.chown(tmp, owner.uid, owner.gid);
      }
      await Deno.chmod(tmp, owner.mode);
    }
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw new DeviceFileError(`Cannot write device file ${path}: ${(err as Error).message}`);
  }
}

/** A fresh random token: 32 bytes, base64url. */
export function newToken(): string {
  const b = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...b)).replaceAll("+", "-").replaceAll("/", "_").replace(
    /=+$/,
    "",
  );
}

/**
 * Adds a device (or rotates its token with `rotate`); returns the new token.
 *
 * @example
 * ```ts
 * import { addDevice, readDeviceFile, removeDevice } from "./device_file.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.remove(path);
 * const token = await addDevice(path, "sensor-1");
 * const f = await readDeviceFile(path);
 * if (f.devices[0].id !== "sensor-1" || f.devices[0].tokenHash.includes(token)) throw new Error();
 * await removeDevice(path, "sensor-1");
 * await Deno.remove(path);
 * ```
 */
export async function addDevice(
  path: string,
  id: string,
  options: { rotate?: boolean } = {},
): Promise<string> {
  if (!isDeviceId(id)) {
    throw new DeviceFileError(
      `Cannot add device "${id}": ids are 1..64 characters of [A-Za-z0-9._:-]`,
    );
  }
  const file = await readDeviceFile(path);
  const existing = file.devices.find((d) => d.id === id);
  if (existing && !options.rotate) {
    throw new DeviceFileError(`Cannot add device "${id}": it exists (use rotate)`);
  }
  if (!existing && options.rotate) {
    throw new DeviceFileError(`Cannot rotate device "${id}": no such device`);
  }
  const token = newToken();
  const entry = { id, tokenHash: hashToken(token), updated: new Date().toISOString() };
  if (existing) Object.assign(existing, entry);
  else file.devices.push(entry);
  await writeDeviceFile(path, file);
  return token;
}

/** Removes a device; throws if it is not there. */
export async function removeDevice(path: string, id: string): Promise<void> {
  const file = await readDeviceFile(path);
  const before = file.devices.length;
  file.devices = file.devices.filter((d) => d.id !== id);
  if (file.devices.length === before) {
    throw new DeviceFileError(`Cannot remove device "${id}": no such device`);
  }
  await writeDeviceFile(path, file);
}

/**
 * Adds a service account with its ACL; returns its new token (stored only as a salted hash).
 * `reserved` names accounts defined elsewhere (the config's `auth.services`): refused too.
 *
 * @example
 * ```ts
 * import { addAccount, readDeviceFile, removeAccount } from "./device_file.ts";
 * const path = `${await Deno.makeTempDir()}/devices.json`;
 * const token = await addAccount(path, "ops", { publish: [], subscribe: ["devices/#"] });
 * const a = (await readDeviceFile(path)).services![0];
 * if (a.name !== "ops" || a.tokenHash.includes(token) || a.subscribe[0] !== "devices/#") throw new Error();
 * await removeAccount(path, "ops");
 * if ((await readDeviceFile(path)).services!.length !== 0) throw new Error();
 * await Deno.remove(path);
 * ```
 */
export async function addAccount(
  path: string,
  name: string,
  acl: { publish: string[]; subscribe: string[] },
  options: { reserved?: (name: string) => boolean } = {},
): Promise<string> {
  if (!isAccountName(name)) {
    throw new DeviceFileError(
      `Cannot add account "${name}": names are 1..64 characters of [A-Za-z0-9._:-]`,
    );
  }
  for (const key of ["publish", "subscribe"] as const) {
    for (const f of acl[key]) {
      const bad = validateFilter(f);
      if (bad) throw new DeviceFileError(`Cannot add account "${name}": ${key} "${f}": ${bad}`);
    }
  }
  if (options.reserved?.(name)) {
    throw new DeviceFileError(`Cannot add account "${name}": it is defined in the config`);
  }
  const file = await readDeviceFile(path);
  const services = file.services ??= [];
  if (services.some((a) => a.name === name)) {
    throw new DeviceFileError(`Cannot add account "${name}": it exists`);
  }
  if (file.devices.some((d) => d.id === name)) {
    // A login with a device's id is the device's: the account could never log in.
    throw new DeviceFileError(`Cannot add account "${name}": a device has that id`);
  }
  const token = newToken();
  services.push({
    name,
    tokenHash: hashToken(token),
    publish: [...acl.publish],
    subscribe: [...acl.subscribe],
    updated: new Date().toISOString(),
  });
  await writeDeviceFile(path, file);
  return token;
}

/** Removes a service account; throws if it is not in the file. */
export async function removeAccount(path: string, name: string): Promise<void> {
  const file = await readDeviceFile(path);
  const before = file.services?.length ?? 0;
  file.services = (file.services ?? []).filter((a) => a.name !== name);
  if (file.services.length === before) {
    throw new DeviceFileError(`Cannot remove account "${name}": no such account in ${path}`);
  }
  await writeDeviceFile(path, file);
}
