/**
 * Every live session and stream, by the identity it was opened for: an MQTT or FBP/1 connection,
 * an HTTP SSE stream or long-poll, a CoAP observation. When credentials change (a device removed
 * or rotated, a service account removed, anonymous access turned off), every one of them that was
 * opened under the old credentials is closed, on every protocol.
 *
 * @module
 */

import type { Identity } from "./login.ts";
import type { CloseReason, SessionHandle } from "./registry.ts";

/** An open attachment; `detach` ends it (idempotent). */
export interface Attachment {
  /**
   * Forgets the handle (the session or stream ended; `reason` says why, for the presence log:
   * `disconnect`, `peer_closed`, `keepalive_timeout`, …). Idempotent.
   */
  detach(reason?: string): void;
}

class Entry implements Attachment {
  constructor(readonly owner: Attachments, readonly key: string, readonly handle: SessionHandle) {}
  detach(): void {
    this.owner.remove(this);
  }
}

/**
 * Live handles by identity key.
 *
 * @example
 * ```ts
 * import { Attachments } from "./attachments.ts";
 * import { Identity } from "./login.ts";
 * const a = new Attachments();
 * const closed: string[] = [];
 * const handle = { sessionId: "s1", protocol: "test", close: (r: { code: string }) => closed.push(r.code) };
 * a.attach(new Identity({ kind: "device", id: "d1" }, "d1"), handle);
 * a.revoke((key) => key === "device:d1", { code: "removed", message: "gone" });
 * if (closed[0] !== "removed" || a.size !== 0) throw new Error();
 * ```
 */
export class Attachments {
  // One handle per identity is the common case: it is stored as is; a Set only for several.
  #byKey = new Map<string, Entry | Set<Entry>>();
  #size = 0;

  /** Live handles. */
  get size(): number {
    return this.#size;
  }

  /** Tracks `handle`, opened for `who`, until it detaches. */
  attach(who: Identity, handle: SessionHandle): Attachment {
    const key = who.key;
    const e = new Entry(this, key, handle);
    const had = this.#byKey.get(key);
    if (had === undefined) this.#byKey.set(key, e);
    else if (had instanceof Entry) this.#byKey.set(key, new Set([had, e]));
    else had.add(e);
    this.#size++;
    return e;
  }

  /** Internal: forgets `e`. */
  remove(e: Entry): void {
    const had = this.#byKey.get(e.key);
    if (had === e) this.#byKey.delete(e.key);
    else if (had instanceof Set && had.delete(e)) {
      if (had.size === 1) this.#byKey.set(e.key, had.values().next().value!);
    } else return;
    this.#size--;
  }

  /** Closes (and forgets) every handle whose identity key `revoked` says is no longer valid. */
  revoke(revoked: (key: string) => boolean, reason: CloseReason): number {
    let n = 0;
    for (const [key, had] of [...this.#byKey]) {
      if (!revoked(key)) continue;
      for (const e of had instanceof Entry ? [had] : [...had]) {
        this.remove(e);
        n++;
        e.handle.close(reason);
      }
    }
    return n;
  }
}
