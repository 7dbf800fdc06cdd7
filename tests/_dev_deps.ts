/**
 * The npm packages only the tests use (the MQTT.js client, node-coap), by full specifier: they
 * are pinned in `dev.lock`, not in the gateway's `deno.lock` or import map, so starting the
 * gateway never fetches them. The benchmark's aedes runs on Node (`bench/peers/aedes/`).
 *
 * @module
 */

export { default as mqtt } from "npm:mqtt@5.16.0";
export type { IClientOptions, MqttClient } from "npm:mqtt@5.16.0";
export { default as coap } from "npm:coap@1.5.0";
// The CoAP encoder is checked byte for byte against coap-packet (the gateway no longer uses it).
export { generate as coapGenerate, parse as coapParse } from "npm:coap-packet@1.1.1";
export { parse as parseYaml } from "npm:yaml@2.9.1";
// The OpenAPI document is validated against the OpenAPI 3.x JSON Schemas by a real validator.
export { Validator as OpenApiValidator } from "npm:@seriousme/openapi-schema-validator@2.7.0";
