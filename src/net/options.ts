/**
 * Config-schema fields every listener shares: its port and its TLS files. Each listener's
 * `options.ts` puts them in its fragment with its own default port.
 *
 * @module
 */

import { int, type NumberField, obj, optional, str } from "../config/schema.ts";

/**
 * The `port` field of a listener.
 *
 * @example
 * ```ts
 * import { portField } from "./options.ts";
 * if (portField(1883, "MQTT").default !== 1883) throw new Error();
 * ```
 */
export function portField(defaultPort: number, what: string): NumberField {
  return int(`${what} port (0 picks a free port; the log says which)`, {
    min: 0,
    max: 65535,
    default: defaultPort,
  });
}

/**
 * The `tls` field of a listener: PEM files, absent = plain TCP.
 *
 * @example
 * ```ts
 * import { tlsField } from "./options.ts";
 * if (!tlsField().optional || tlsField().fields.certFile.type !== "string") throw new Error();
 * ```
 */
export function tlsField(doc = "Serve TLS (PEM files, reloaded when they change)") {
  return optional(obj(doc, {
    certFile: str("PEM certificate chain"),
    keyFile: str("PEM private key"),
  }));
}
