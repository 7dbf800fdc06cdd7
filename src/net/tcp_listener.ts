/**
 * A TCP listener, plain or TLS, whose certificate reloads when its files change: the listener is
 * re-bound on the same port with the new key pair (open connections keep the old one). Used by
 * every TCP protocol.
 *
 * The new listener is bound (SO_REUSEPORT) before the old one closes, so a reload refuses no
 * connection; but one the kernel queues on the old socket in the instant it is released is reset
 * (Linux migrates such requests only with the `tcp_migrate_req` sysctl), and the client retries.
 * Deno cannot swap the key pair of a live listener.
 *
 * Deno's `Deno.listenTls` cannot request client certificates, so mutual TLS is not available; say
 * so in the docs rather than pretend.
 *
 * @module
 */

/** TLS files. */
export interface TlsFiles {
  /** PEM certificate chain. */
  certFile: string;
  /** PEM private key. */
  keyFile: string;
}

/** Options of {@link TcpListener}. */
export interface TcpListenerOptions {
  /** Address to bind. */
  hostname: string;
  /** Port (0 = free port; a reload re-binds the port first chosen). */
  port: number;
  /** Serve TLS with these files. */
  tls?: TlsFiles;
  /** Called when a reload fails (the previous certificate stays in force). */
  onReloadError?: (err: unknown) => void;
  /** Called after a successful reload. */
  onReload?: () => void;
}

function readTls(tls: TlsFiles): { cert: string; key: string } {
  return { cert: Deno.readTextFileSync(tls.certFile), key: Deno.readTextFileSync(tls.keyFile) };
}

/**
 * Accepts connections; `accept()` resolves `null` once closed.
 *
 * @example
 * ```ts
 * import { TcpListener } from "./tcp_listener.ts";
 * const l = new TcpListener({ hostname: "127.0.0.1", port: 0 });
 * if (!(l.port > 0)) throw new Error();
 * l.close();
 * if (await l.accept() !== null) throw new Error();
 * ```
 */
export class TcpListener {
  #opts: TcpListenerOptions;
  #listener: Deno.Listener;
  #closed = false;
  #watcher: Deno.FsWatcher | undefined;
  #watching: Promise<void> | undefined;
  /** Bound address. */
  readonly hostname: string;
  /** Bound port. */
  readonly port: number;

  /** Binds now (throws on a bad certificate or a taken port). */
  constructor(options: TcpListenerOptions) {
    this.#opts = options;
    this.#listener = this.#bind(options.port);
    const addr = this.#listener.addr as Deno.NetAddr;
    this.hostname = addr.hostname;
    this.port = addr.port;
    if (options.tls) this.#watch(options.tls);
  }

  /** Whether TLS is served. */
  get tls(): boolean {
    return this.#opts.tls !== undefined;
  }

  #bind(port: number): Deno.Listener {
    const { hostname, tls } = this.#opts;
    // TLS listeners bind with SO_REUSEPORT so a reload can bind the new key pair before the old
    // listener lets go: no window in which connections are refused.
    return tls
      ? Deno.listenTls({ hostname, port, reusePort: true, ...readTls(tls) })
      : Deno.listen({ hostname, port, transport: "tcp" });
  }

  #watch(tls: TlsFiles): void {
    try {
      this.#watcher = Deno.watchFs([tls.certFile, tls.keyFile]);
    } catch (err) {
      this.#opts.onReloadError?.(err);
      return;
    }
    const watcher = this.#watcher;
    this.#watching = (async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      for await (const _ of watcher) {
        clearTimeout(timer);
        timer = setTimeout(() => this.reload(), 200); // certificate and key are written in turn
      }
      clearTimeout(timer);
    })();
  }

  /** Re-reads the certificate and re-binds; on failure keeps serving the old one. */
  reload(): void {
    if (this.#closed || !this.#opts.tls) return;
    let fresh: Deno.Listener;
    try {
      fresh = this.#bind(this.port); // a bad key pair throws here; the old listener keeps serving
    } catch (err) {
      this.#opts.onReloadError?.(err);
      return;
    }
    const old = this.#listener;
    this.#listener = fresh;
    old.close();
    this.#opts.onReload?.();
  }

  /** Next connection, or `null` once closed. A reload does not end the accept loop. */
  async accept(): Promise<Deno.Conn | null> {
    for (;;) {
      if (this.#closed) return null;
      const l = this.#listener;
      try {
        return await l.accept();
      } catch (err) {
        if (this.#closed) return null;
        if (l !== this.#listener) continue; // re-bound by a reload
        throw err;
      }
    }
  }

  /** Stops listening. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#listener.close();
    } catch { /* closed */ }
    try {
      this.#watcher?.close();
    } catch { /* closed */ }
  }

  /** Resolves when the certificate watcher has stopped. */
  async closed(): Promise<void> {
    await this.#watching;
  }
}
