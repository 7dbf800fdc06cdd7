/**
 * Test certificates made with openssl: a CA and a server certificate for localhost/127.0.0.1.
 *
 * @module
 */

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  if (out.code !== 0) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Files of a test PKI. */
export interface TestPki {
  dir: string;
  caPem: string;
  certFile: string;
  keyFile: string;
}

/** Makes a CA and a server key pair in `dir` (files `server.pem`, `server.key`, `ca.pem`). */
export async function makePki(dir: string, name = "server"): Promise<TestPki> {
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}-ca.key`,
    "-out",
    `${name}-ca.pem`,
    "-days",
    "2",
    "-subj",
    `/CN=Ferry test CA ${name}`,
  ], dir);
  await openssl([
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    "/CN=localhost",
  ], dir);
  await Deno.writeTextFile(`${dir}/${name}.ext`, "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  await openssl([
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${name}-ca.pem`,
    "-CAkey",
    `${name}-ca.key`,
    "-CAcreateserial",
    "-out",
    `${name}.pem`,
    "-days",
    "2",
    "-extfile",
    `${name}.ext`,
  ], dir);
  return {
    dir,
    caPem: await Deno.readTextFile(`${dir}/${name}-ca.pem`),
    certFile: `${dir}/${name}.pem`,
    keyFile: `${dir}/${name}.key`,
  };
}
