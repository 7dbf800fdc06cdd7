/**
 * CoAP (RFC 7252) for battery devices over UDP: codec, message layer, Observe (RFC 7641),
 * block-wise transfers (RFC 7959), link format (RFC 6690), Ferry's device resources and the ETSI
 * plugtest resource set. See docs/coap.md.
 *
 * @module
 */

export * from "./block.ts";
export * from "./codec.ts";
export * from "./device_resources.ts";
export * from "./exchange_cache.ts";
export * from "./link_format.ts";
export * from "./message.ts";
export * from "./message_layer.ts";
export * from "./notifier.ts";
export * from "./observe.ts";
export * from "./option_codec.ts";
export * from "./options.ts";
export * from "./plugtest/resources.ts";
export * from "./request.ts";
export * from "./resource.ts";
export * from "./resource_host.ts";
export * from "./responder.ts";
export * from "./retransmitter.ts";
export * from "./server.ts";
export * from "./transmission.ts";
export * from "./well_known.ts";
