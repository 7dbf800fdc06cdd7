/**
 * A small filesystem for disk-full tests: a tmpfs of a given size mounted on a fresh directory
 * (root, or sudo without a password, as CI has). Filling it makes every write on it fail with
 * ENOSPC, deterministically.
 *
 * @module
 */

async function run(args: string[]): Promise<void> {
  const root = Deno.uid() === 0;
  const cmd = root ? args[0] : "sudo";
  const rest = root ? args.slice(1) : ["-n", ...args];
  const out = await new Deno.Command(cmd, { args: rest, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(
      `${args.join(" ")} failed (disk-full tests need root or sudo -n): ${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
}

/** A mounted tmpfs; `fill()` takes all of its free space; disposing unmounts and removes it. */
export interface SmallDisk extends AsyncDisposable {
  /** Mount point. */
  path: string;
  /** Writes a file until the filesystem is full (ENOSPC). */
  fill(): Promise<void>;
  /** Removes the filler file: space again. */
  free(): Promise<void>;
}

/** Mounts a tmpfs of `kib` KiB, writable by this process. */
export async function smallDisk(kib: number): Promise<SmallDisk> {
  const path = await Deno.makeTempDir({ prefix: "ferry-disk-" });
  await run(["mount", "-t", "tmpfs", "-o", `size=${kib}k,mode=0777`, "tmpfs", path]);
  const filler = `${path}/filler`;
  return {
    path,
    async fill() {
      const f = await Deno.open(filler, { create: true, append: true });
      const chunk = new Uint8Array(4096);
      try {
        for (;;) await f.write(chunk);
      } catch (err) {
        if (!(err instanceof Error) || !/space|ENOSPC|os error 28/i.test(err.message)) throw err;
      } finally {
        f.close();
      }
    },
    async free() {
      await Deno.remove(filler).catch(() => {});
    },
    async [Symbol.asyncDispose]() {
      await run(["umount", "-l", path]).catch(() => {});
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}
