/**
 * Admission control shared by every listener: a cap on connections per source address. Loopback
 * addresses can be exempted from it (local tools, benchmarks). (Failed logins are throttled by the
 * login gate, `login.ts`.)
 *
 * @module
 */

import { isLoopback } from "./address.ts";
import { defaultLimits } from "./options.ts";

/** Tunables of {@link Admission}. */
export interface AdmissionOptions {
  /** Concurrent connections per source address (0 = no limit). @default 1024 */
  maxConnectionsPerAddress?: number;
  /** Exempt loopback addresses from the per-address cap. @default true */
  exemptLoopback?: boolean;
}

/**
 * Counts connections per source address.
 *
 * @example
 * ```ts
 * import { Admission } from "./admission.ts";
 * const a = new Admission({ maxConnectionsPerAddress: 1, exemptLoopback: false });
 * if (!a.admit("10.0.0.1") || a.admit("10.0.0.1")) throw new Error();
 * a.release("10.0.0.1");
 * if (!a.admit("10.0.0.1")) throw new Error();
 * ```
 */
export class Admission {
  #perAddress = new Map<string, number>();
  #max: number;
  #exempt: boolean;

  /** Creates the controller. */
  constructor(options: AdmissionOptions = {}) {
    this.#max = options.maxConnectionsPerAddress ?? defaultLimits.maxConnectionsPerAddress;
    this.#exempt = options.exemptLoopback ?? defaultLimits.exemptLoopback;
  }

  /** Takes a connection slot for `address`; false when its cap is reached. */
  admit(address: string): boolean {
    const n = this.#perAddress.get(address) ?? 0;
    if (this.#max > 0 && n >= this.#max && !(this.#exempt && isLoopback(address))) {
      return false;
    }
    this.#perAddress.set(address, n + 1);
    return true;
  }

  /** Gives a slot back. */
  release(address: string): void {
    const n = (this.#perAddress.get(address) ?? 1) - 1;
    if (n <= 0) this.#perAddress.delete(address);
    else this.#perAddress.set(address, n);
  }

  /** Connections open from `address`. */
  connections(address: string): number {
    return this.#perAddress.get(address) ?? 0;
  }
}
