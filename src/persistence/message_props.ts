/**
 * Message properties ↔ one JSON text column (correlation data as base64), for the state file.
 *
 * @module
 */

import type { MessageProperties } from "../core/message.ts";

/**
 * The properties as JSON, or `null` when there are none.
 *
 * @example
 * ```ts
 * import { decodeProps, encodeProps } from "./message_props.ts";
 * const s = encodeProps({ contentType: "t", correlationData: new Uint8Array([1, 2]), expiresAt: 5 });
 * const p = decodeProps(s)!;
 * if (p.contentType !== "t" || p.correlationData![1] !== 2 || p.expiresAt !== 5) throw new Error();
 * if (encodeProps(undefined) !== null || decodeProps(null) !== undefined) throw new Error();
 * ```
 */
export function encodeProps(props: MessageProperties | undefined): string | null {
  if (!props) return null;
  const { correlationData, ...rest } = props;
  const o: Record<string, unknown> = { ...rest };
  if (correlationData) o.correlationData = btoa(String.fromCharCode(...correlationData));
  return JSON.stringify(o);
}

/** Reverses {@link encodeProps}. */
export function decodeProps(text: string | null | undefined): MessageProperties | undefined {
  if (!text) return undefined;
  const o = JSON.parse(text) as MessageProperties & { correlationData?: string };
  const props: MessageProperties = { ...o } as MessageProperties;
  if (typeof o.correlationData === "string") {
    props.correlationData = Uint8Array.from(atob(o.correlationData), (c) => c.charCodeAt(0));
  }
  return props;
}
