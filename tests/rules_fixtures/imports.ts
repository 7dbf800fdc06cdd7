/** Imports a local file and the SDK. */
import { scale } from "ferry/rules";
import { FACTOR } from "./imports_lib.ts";

export default (msg: { payload: Uint8Array }) => ({
  topic: "rules/imports/out",
  payload: String(scale(new TextDecoder().decode(msg.payload), { factor: FACTOR })),
});
