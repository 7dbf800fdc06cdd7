import { assert, assertEquals } from "./_assert.ts";
import { enc, startBinary, waitFor } from "./_harness.ts";
import { makePki } from "./_tls.ts";
import { FbpClient } from "../src/protocols/binary/client.ts";
import { AckStatus } from "../src/protocols/binary/frame.ts";

Deno.test("FBP/1 over TLS: a device that trusts the CA connects and gets ACKs; a plain-TCP client gets nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const pki = await makePki(dir);
    await using h = await startBinary({
      server: { tls: { certFile: pki.certFile, keyFile: pki.keyFile } },
    });
    const c = await FbpClient.connect({ port: h.port, id: "secure-1", caCerts: [pki.caPem] });
    assertEquals(await c.telemetry(enc("over tls"), { ack: true }), AckStatus.OK);
    // A device speaking plain FBP/1 to the TLS port never gets a HELLO_ACK.
    let plainFailed = false;
    try {
      const p = await FbpClient.connect({ port: h.port, id: "plain-1", timeoutMs: 1500 });
      await p.close();
    } catch {
      plainFailed = true;
    }
    assert(plainFailed, "plain TCP was served on the TLS port");
    // A device that does not trust the server's CA is refused by its own TLS stack.
    const other = await makePki(dir, "other");
    let untrusted = false;
    try {
      const u = await FbpClient.connect({
        port: h.port,
        id: "u",
        caCerts: [other.caPem],
        timeoutMs: 1500,
      });
      await u.close();
    } catch {
      untrusted = true;
    }
    assert(untrusted, "connected without trusting the CA");
    assertEquals(await c.telemetry(enc("still fine"), { ack: true }), AckStatus.OK);
    await c.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FBP/1 TLS certificate files changing on disk are reloaded without dropping connected devices", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const first = await makePki(dir, "first");
    const certFile = `${dir}/live.pem`;
    const keyFile = `${dir}/live.key`;
    await Deno.copyFile(first.certFile, certFile);
    await Deno.copyFile(first.keyFile, keyFile);
    await using h = await startBinary({ server: { tls: { certFile, keyFile } } });
    const old = await FbpClient.connect({ port: h.port, id: "old", caCerts: [first.caPem] });
    const second = await makePki(dir, "second");
    await Deno.copyFile(second.keyFile, keyFile);
    await Deno.copyFile(second.certFile, certFile);
    await waitFor(
      () => h.lines.some((l) => l.includes("TLS certificate reloaded")),
      "the reload",
      5000,
    );
    // The old listener's socket is released shortly after close(); a connection the kernel hands
    // it in that moment is reset (see src/net/tcp_listener.ts). Connect after it is gone.
    await new Promise((r) => setTimeout(r, 300));
    const fresh = await FbpClient.connect({ port: h.port, id: "fresh", caCerts: [second.caPem] });
    assertEquals(await fresh.telemetry(enc("new cert"), { ack: true }), AckStatus.OK);
    assertEquals(await old.telemetry(enc("old session"), { ack: true }), AckStatus.OK);
    await Promise.all([old.close(), fresh.close()]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
