/** Tags each message with this file's version (tests rewrite the constant to hot-reload it). */
import type { RuleMessage } from "ferry/rules";

const VERSION = "v1";

export default (msg: RuleMessage) => ({
  topic: msg.deviceId ? `rules/version/out/${msg.deviceId}` : "rules/version/out",
  payload: `${VERSION}:${new TextDecoder().decode(msg.payload)}`,
});
