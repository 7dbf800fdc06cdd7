/**
 * Admission control shared by every listener: one descriptor budget for the whole process, and a
 * cap on connections per source address. Every listener's accept asks {@link Admission.admit}
 * before it keeps a connection (FBP/1, MQTT and HTTP alike), so together they never take the
 * descriptors the spool, the state file, the upstream link and the runtime need: the budget is the
 * process's open-file limit (read from `/proc/self/limits`) minus a reserve. Loopback addresses can
 * be exempted from the per-address cap (local tools, benchmarks), never from the budget. (Failed
 * logins are throttled by the login gate, `login.ts`.)
 *
 * @module
 */

import { isLoopback } from "./address.ts";
import { defaultLimits } from "./options.ts";

/** Why a connection was not admitted. */
export type AdmissionRefusal = "descriptors" | "address_limit";

/** Tunables of {@link Admission}. */
export interface AdmissionOptions {
  /** Concurrent connections per source address (0 = no limit). @default 1024 */
  maxConnectionsPerAddress?: number;
  /** Exempt loopback addresses from the per-address cap. @default true */
  exemptLoopback?: boolean;
  /**
   * Descriptors kept back from the listeners for everything else the process opens (spool and
   * state files with their WAL, the upstream link, watchers, the runtime). @default 256
   */
  reservedDescriptors?: number;
  /**
   * The process's open-file limit. @default the soft limit in `/proc/self/limits` (no budget when
   * it cannot be read)
   */
  maxDescriptors?: number;
  /** Called when a connection is refused (count it, log it: rate-limited). */
  onRefuse?: (reason: AdmissionRefusal, address: string) => void;
}

/**
 * The soft open-file limit of this process (`Max open files` in `/proc/self/limits`), or
 * `Infinity` when it cannot be read (no permission, not Linux, unlimited).
 *
 * @example
 * ```ts
 * import { processDescriptorLimit } from "./admission.ts";
 * const n = processDescriptorLimit();
 * if (!(n > 0)) throw new Error(`limit ${n}`);
 * ```
 */
export function processDescriptorLimit(): number {
  try {
    const text = Deno.readTextFileSync("/proc/self/limits");
    const m = /^Max open files\s+(\S+)/m.exec(text);
    if (!m || m[1] === "unlimited") return Infinity;
    const n = Number(m[1]);
    return Number.isFinite(n) && n > 0 ? n : Infinity;
  } catch {
    return Infinity;
  }
}

/**
 * Counts connections against the descriptor budget and per source address.
 *
 * @example
 * ```ts
 * import { Admission } from "./admission.ts";
 * const a = new Admission({ maxConnectionsPerAddress: 1, exemptLoopback: false });
 * if (!a.admit("10.0.0.1") || a.admit("10.0.0.1")) throw new Error();
 * a.release("10.0.0.1");
 * if (!a.admit("10.0.0.1")) throw new Error();
 * const b = new Admission({ maxDescriptors: 300, reservedDescriptors: 298 }); // a budget of 2
 * if (!b.admit("127.0.0.1") || !b.admit("127.0.0.2") || b.admit("127.0.0.3")) throw new Error();
 * if (b.lastRefusal !== "descriptors" || b.total !== 2) throw new Error();
 * ```
 */
export class Admission {
  #perAddress = new Map<string, number>();
  #max: number;
  #exempt: boolean;
  #budget: number;
  #total = 0;
  #onRefuse: AdmissionOptions["onRefuse"];
  #lastRefusal: AdmissionRefusal | undefined;

  /** Creates the controller. */
  constructor(options: AdmissionOptions = {}) {
    this.#max = options.maxConnectionsPerAddress ?? defaultLimits.maxConnectionsPerAddress;
    this.#exempt = options.exemptLoopback ?? defaultLimits.exemptLoopback;
    const limit = options.maxDescriptors ?? processDescriptorLimit();
    const reserve = options.reservedDescriptors ?? defaultLimits.reservedDescriptors;
    this.#budget = Math.max(1, limit - reserve);
    this.#onRefuse = options.onRefuse;
  }

  /** Connections every listener together may hold (the descriptor budget). */
  get budget(): number {
    return this.#budget;
  }

  /** Connections admitted and not yet released, on every listener. */
  get total(): number {
    return this.#total;
  }

  /** Why the last refused connection was refused. */
  get lastRefusal(): AdmissionRefusal | undefined {
    return this.#lastRefusal;
  }

  /**
   * Takes a connection slot for `address`: false when the descriptor budget is spent or the
   * address is at its cap ({@link lastRefusal} says which).
   */
  admit(address: string): boolean {
    if (this.#total >= this.#budget) return this.#refuse("descriptors", address);
    const n = this.#perAddress.get(address) ?? 0;
    if (this.#max > 0 && n >= this.#max && !(this.#exempt && isLoopback(address))) {
      return this.#refuse("address_limit", address);
    }
    this.#perAddress.set(address, n + 1);
    this.#total++;
    return true;
  }

  /** Gives a slot back. */
  release(address: string): void {
    const had = this.#perAddress.get(address);
    if (had === undefined) return;
    this.#total--;
    if (had <= 1) this.#perAddress.delete(address);
    else this.#perAddress.set(address, had - 1);
  }

  /** Connections open from `address`. */
  connections(address: string): number {
    return this.#perAddress.get(address) ?? 0;
  }

  #refuse(reason: AdmissionRefusal, address: string): false {
    this.#lastRefusal = reason;
    this.#onRefuse?.(reason, address);
    return false;
  }
}
