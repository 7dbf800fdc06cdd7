/**
 * Headless Chromium (Debian's `chromium`) driven over the DevTools protocol with Deno's own
 * WebSocket: no browser download, no npm tooling. Enough for end-to-end page tests: navigate,
 * evaluate, wait for a condition, screenshot.
 *
 * @module
 */

/** A page in a headless browser. */
export interface BrowserPage extends AsyncDisposable {
  /** Navigates and waits for the load event. */
  goto(url: string): Promise<void>;
  /** Evaluates an expression in the page (awaiting promises) and returns its JSON value. */
  evaluate<T = unknown>(expression: string): Promise<T>;
  /** Polls an expression until it is truthy; fails after `timeoutMs`. */
  waitFor(expression: string, what: string, timeoutMs?: number): Promise<void>;
  /** Saves a PNG screenshot. */
  screenshot(path: string): Promise<void>;
}

/** Finds the Chromium binary; throws (never skips) when it is missing. */
export function chromiumPath(): string {
  for (const p of ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]) {
    try {
      Deno.statSync(p);
      return p;
    } catch { /* next */ }
  }
  throw new Error("Chromium is required for this test: apt-get install chromium");
}

/** Launches headless Chromium and opens one page. */
export async function openPage(): Promise<BrowserPage> {
  const profile = await Deno.makeTempDir({ prefix: "ferry-chromium-" });
  const child = new Deno.Command(chromiumPath(), {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
      `--user-data-dir=${profile}`,
      "--remote-debugging-port=0",
      "--window-size=1280,900",
      "about:blank",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/…"
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let port = 0;
  const deadline = Date.now() + 20_000;
  while (!port) {
    if (Date.now() > deadline) throw new Error(`Chromium did not start:\n${text}`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`Chromium exited:\n${text}`);
    text += value;
    const m = /DevTools listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(text);
    if (m) port = Number(m[1]);
  }
  const drain = (async () => {
    try {
      while (!(await reader.read()).done) { /* keep the pipe empty */ }
    } catch { /* closed */ }
  })();
  const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json() as Array<
    { type: string; webSocketDebuggerUrl: string }
  >;
  const page = targets.find((t) => t.type === "page");
  if (!page) throw new Error("no page target");
  const ws = new WebSocket(page.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let nextId = 1;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const events: Array<{ method: string; params: unknown }> = [];
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.id && pending.has(msg.id)) {
      const p = pending.get(msg.id)!;
      pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`${msg.error.message}`));
      else p.resolve(msg.result);
    } else if (msg.method) events.push(msg);
  };
  const send = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve: (v) => resolve(v as Record<string, unknown>), reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  await send("Page.enable");
  await send("Runtime.enable");
  const evaluate = async <T>(expression: string): Promise<T> => {
    const r = await send("Runtime.evaluate", {
      expression,
      awaitPromise: true,
      returnByValue: true,
    });
    if (r.exceptionDetails) {
      throw new Error(`page threw: ${JSON.stringify(r.exceptionDetails).slice(0, 500)}`);
    }
    return (r.result as { value: T }).value;
  };
  return {
    async goto(url) {
      events.length = 0;
      await send("Page.navigate", { url });
      const until = Date.now() + 15_000;
      while (!events.some((e) => e.method === "Page.loadEventFired")) {
        if (Date.now() > until) throw new Error(`page ${url} did not load`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    evaluate,
    async waitFor(expression, what, timeoutMs = 20_000) {
      const until = Date.now() + timeoutMs;
      while (!(await evaluate<boolean>(`!!(${expression})`))) {
        if (Date.now() > until) {
          throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async screenshot(path) {
      const r = await send("Page.captureScreenshot", { format: "png" });
      const bin = atob(r.data as string);
      await Deno.writeFile(path, Uint8Array.from(bin, (c) => c.charCodeAt(0)));
    },
    async [Symbol.asyncDispose]() {
      try {
        ws.close();
      } catch { /* closed */ }
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
      await drain;
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    },
  };
}

/** Signs in on the dashboard's login form as account `a` and waits for the app to show. */
export async function signIn(page: BrowserPage, a: { name: string; token: string }): Promise<void> {
  await page.waitFor(`!document.getElementById("login").classList.contains("hidden")`, "login");
  await page.evaluate(`(() => {
    document.getElementById("login-name").value = ${JSON.stringify(a.name)};
    document.getElementById("login-token").value = ${JSON.stringify(a.token)};
    document.getElementById("login-submit").click();
  })()`);
  await page.waitFor(`!document.getElementById("app").classList.contains("hidden")`, "signed in");
}
