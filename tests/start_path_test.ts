/**
 * The gateway's start path resolves only what it imports: `deno.lock` pins the npm packages the
 * gateway imports (and theirs), test and bench dependencies are pinned in `dev.lock`, and a first
 * start with an empty Deno cache fetches nothing else.
 */
import { assert, assertEquals } from "./_assert.ts";

const root = new URL("../", import.meta.url);
const read = async (f: string) => JSON.parse(await Deno.readTextFile(new URL(f, root)));

/** Names of the npm packages a lock file pins (`name@version` keys of its `npm` section). */
function pinned(lock: { npm?: Record<string, unknown> }): Set<string> {
  return new Set(Object.keys(lock.npm ?? {}).map((k) => k.slice(0, k.lastIndexOf("@"))));
}

Deno.test("deno.lock pins only the npm packages the gateway imports; tests and bench import theirs by full specifier", async () => {
  const denoJson = await read("deno.json");
  const lock = await read("deno.lock");
  const mapped = Object.values(denoJson.imports as Record<string, string>).sort();
  assertEquals(Object.keys(lock.specifiers).sort(), mapped);
  const sources: string[] = [await Deno.readTextFile(new URL("main.ts", root))];
  for await (const f of Deno.readDir(new URL("src/", root))) {
    if (f.isDirectory) {
      for (const g of await Array.fromAsync(walk(new URL(`src/${f.name}/`, root)))) {
        sources.push(g);
      }
    }
  }
  for (const name of Object.keys(denoJson.imports)) {
    assert(sources.some((s) => s.includes(`from "${name}"`)), `${name} is mapped but not imported`);
  }
  for (const forbidden of ["mqtt", "aedes", "coap", "ws"]) {
    assert(!pinned(lock).has(forbidden), `deno.lock pins ${forbidden}`);
  }
});

async function* walk(dir: URL): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) yield* walk(new URL(`${e.name}/`, dir));
    else if (e.name.endsWith(".ts")) yield await Deno.readTextFile(new URL(e.name, dir));
  }
}

Deno.test("A first start with an empty Deno cache fetches only what deno.lock pins", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--unstable-net",
        "-A",
        new URL("main.ts", root).pathname,
        ...["--binary-port", "0", "--mqtt-port", "0", "--mqtt-ws-port", "0"],
        ...["--coap-port", "0", "--http-port", "0"],
        "--data-dir",
        `${dir}/data`,
      ],
      env: { DENO_DIR: `${dir}/deno`, NO_COLOR: "1" },
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes(`"msg":"ready"`)) {
      const { value, done } = await lines.read();
      if (done) break;
      text += value;
    }
    child.kill("SIGTERM");
    while (!(await lines.read()).done) { /* drain */ }
    assertEquals((await child.status).code, 0, text);
    const fetched = new Set<string>();
    const registry = `${dir}/deno/npm/registry.npmjs.org`;
    for await (const e of Deno.readDir(registry)) {
      if (!e.name.startsWith("@")) fetched.add(e.name);
      else {for await (const s of Deno.readDir(`${registry}/${e.name}`)) {
          fetched.add(`${e.name}/${s.name}`);
        }}
    }
    const lock = pinned(await read("deno.lock"));
    for (const name of fetched) {
      assert(lock.has(name), `fetched ${name}, which deno.lock does not pin`);
    }
    assert(fetched.has("mqtt-packet") && !fetched.has("coap-packet"), [...fetched].join(" "));
    assert(!fetched.has("aedes") && !fetched.has("mqtt"), [...fetched].join(" "));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
