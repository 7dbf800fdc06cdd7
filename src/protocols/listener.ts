/**
 * What the gateway needs of every southbound listener: start on a host/port (port 0 picks a free
 * one, reported back), and shut down gracefully, telling connected devices why.
 *
 * @module
 */

/** A started listener's address. */
export interface ListenAddress {
  /** Host or address bound. */
  hostname: string;
  /** Port bound (the real one when 0 was asked). */
  port: number;
}

/** A southbound (or HTTP) listener owned by the gateway. */
export interface Listener extends AsyncDisposable {
  /** Short name used in logs and metrics (`binary`, `mqtt`, `coap`, `http`). */
  readonly name: string;
  /** Binds and starts serving; resolves with the bound address. */
  listen(): Promise<ListenAddress>;
  /**
   * Stops accepting, tells connected peers the gateway is shutting down, closes their
   * connections, and resolves when every session has ended. Idempotent.
   */
  close(): Promise<void>;
}
