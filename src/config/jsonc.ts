/**
 * A JSONC reader: JSON plus `//` and `/* *\/` comments and trailing commas, with errors that name
 * the line and column. A key given twice in one object is an error (JSON.parse would keep the last
 * silently: `{"host":"127.0.0.1","host":"0.0.0.0"}` would bind every interface).
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
  const out = stripTrailingCommas(stripComments(text));
  let value: unknown;
  try {
    value = JSON.parse(out);
  } catch (err) {
    const message = (err as Error).message;
    const m = /position (\d+)/.exec(message);
    if (m && !/line \d+/.test(message)) {
      const pos = Number(m[1]);
      const before = out.slice(0, pos);
      const line = before.split("\n").length;
      const col = pos - before.lastIndexOf("\n");
      throw new SyntaxError(`Cannot parse config: ${message} (line ${line}, column ${col})`);
    }
    throw new SyntaxError(`Cannot parse config: ${message}`);
  }
  checkDuplicateKeys(out);
  return value;
}

/** Line and column (1-based) of offset `pos`. */
function lineColumn(text: string, pos: number): string {
  const before = text.slice(0, pos);
  return `line ${before.split("\n").length}, column ${pos - before.lastIndexOf("\n")}`;
}

/**
 * Throws a SyntaxError naming the first key that appears twice in one object, with its dotted
 * path. `text` is valid JSON (comments and trailing commas already blanked).
 *
 * @example
 * ```ts
 * import { parseJsonc } from "./jsonc.ts";
 * try { parseJsonc('{"mqtt":{"port":1,"port":2}}'); throw new Error("accepted"); }
 * catch (e) { if (!(e instanceof SyntaxError) || !e.message.includes('"mqtt.port"')) throw e; }
 * ```
 */
function checkDuplicateKeys(text: string): void {
  let i = 0;
  const ws = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  const value = (path: string): void => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const seen = new Set<string>();
      ws();
      if (text[i] === "}") {
        i++;
        return;
      }
      for (;;) {
        ws();
        const at = i;
        const end = skipString(text, i);
        const key = JSON.parse(text.slice(i, end)) as string;
        i = end;
        const keyPath = path ? `${path}.${key}` : key;
        if (seen.has(key)) {
          throw new SyntaxError(
            `Cannot parse config: key "${keyPath}" appears twice (${lineColumn(text, at)})`,
          );
        }
        seen.add(key);
        ws();
        i++; // ':'
        value(keyPath);
        ws();
        if (text[i++] === "}") return;
      }
    } else if (c === "[") {
      i++;
      ws();
      if (text[i] === "]") {
        i++;
        return;
      }
      for (let n = 0;; n++) {
        value(`${path}[${n}]`);
        ws();
        if (text[i++] === "]") return;
      }
    } else if (c === '"') {
      i = skipString(text, i);
    } else {
      while (i < text.length && !/[\s,\]}]/.test(text[i])) i++;
    }
  };
  value("");
}

/** Index just past the string literal starting at `i` (a `"`). */
function skipString(text: string, i: number): number {
  let j = i + 1;
  while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
  return j + 1;
}

/** Replaces comments with spaces (newlines kept, so positions and lines stay right). */
function stripComments(text: string): string {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      const j = skipString(text, i);
      out += text.slice(i, j);
      i = j;
    } else if (c === "/" && text[i + 1] === "/") {
      const end = text.indexOf("\n", i);
      const stop = end < 0 ? text.length : end;
      out += " ".repeat(stop - i);
      i = stop;
    } else if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      const stop = end < 0 ? text.length : end + 2;
      out += text.slice(i, stop).replace(/[^\n]/g, " ");
      i = stop;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Replaces a comma followed (after whitespace) by `}` or `]` with a space. */
function stripTrailingCommas(text: string): string {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      const j = skipString(text, i);
      out += text.slice(i, j);
      i = j;
      continue;
    }
    if (c === ",") {
      let j = i + 1;
      while (j < text.length && /\s/.test(text[j])) j++;
      out += text[j] === "}" || text[j] === "]" ? " " : c;
    } else out += c;
    i++;
  }
  return out;
}
