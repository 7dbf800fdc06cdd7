/**
 * A JSONC reader: JSON plus `//` and `/* *\/` comments and trailing commas, with errors that name
 * the line and column.
 *
 * @module
 */

/**
 * Parses JSONC text.
 *
 * @example
 * ```ts
 * import { parseJsonc } from "./jsonc.ts";
 * const v = parseJsonc('{ "a": 1, // one\n "b": [2,], }') as { a: number; b: number[] };
 * if (v.a !== 1 || v.b[0] !== 2) throw new Error();
 * ```
 */
export function parseJsonc(text: string): unknown {
  let out = "";
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < n && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (c === "/" && text[i + 1] === "/") {
      while (i < n && text[i] !== "\n") i++;
    } else if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      const stop = end < 0 ? n : end + 2;
      out += text.slice(i, stop).replace(/[^\n]/g, " ");
      i = stop;
    } else if (c === ",") {
      let j = i + 1;
      while (j < n && /\s/.test(text[j])) j++;
      if (text[j] === "}" || text[j] === "]") out += " ";
      else out += c;
      i++;
    } else {
      out += c;
      i++;
    }
  }
  try {
    return JSON.parse(out);
  } catch (err) {
    const m = /position (\d+)/.exec(String(err));
    if (m) {
      const pos = Number(m[1]);
      const before = out.slice(0, pos);
      const line = before.split("\n").length;
      const col = pos - before.lastIndexOf("\n");
      throw new SyntaxError(
        `Cannot parse config: ${(err as Error).message} (line ${line}, column ${col})`,
      );
    }
    throw new SyntaxError(`Cannot parse config: ${(err as Error).message}`);
  }
}
