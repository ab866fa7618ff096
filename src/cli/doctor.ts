/**
 * `fnrun doctor`: checks what fnrun needs on this machine, says what is missing
 * and how to fix it, and explains in one line which accelerator is used and why.
 */
import { execFile } from "node:child_process";
import { access, constants, mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { chooseAccel, kvmProblem, probeAccel } from "../host/accel.ts";
import { findKernelSource, resolveKernel } from "../host/kernel.ts";
import { locateFolderQemu, locateQemu, microvmQemuPath, QBOOT_BIOS } from "../host/qemu-binary.ts";
import { resolveRuntime } from "../host/runtime.ts";
import { DEFAULTS } from "../invoke/options.ts";
import { cacheRoot, directorySize } from "../util/cache.ts";
import { SetupError } from "../util/errors.ts";
import { stateDirectory } from "../util/paths.ts";
import { loadSqlite, SQLITE_FIX, sqliteProblem } from "../util/sqlite.ts";
import { which } from "../util/which.ts";

const run = promisify(execFile);

export type CheckLevel = "ok" | "warn" | "fail";

export interface Check {
  name: string;
  level: CheckLevel;
  detail: string;
  /** What to do about it (for warn and fail). */
  fix?: string;
}

/** better-sqlite3 and its native part (built by npm ci for this Node). */
export function sqliteCheck(load: () => unknown = loadSqlite): Check {
  try {
    load();
    return { name: "SQLite", level: "ok", detail: "better-sqlite3 opens a database (queue and history)" };
  } catch (error) {
    return {
      name: "SQLite",
      level: "warn",
      detail: sqliteProblem(error instanceof SetupError ? error.cause : error),
      fix: SQLITE_FIX,
    };
  }
}

export async function runChecks(env: NodeJS.ProcessEnv = process.env): Promise<Check[]> {
  const checks: Check[] = [];
  const add = (check: Check) => checks.push(check);

  const [major, minor] = process.versions.node.split(".").map(Number) as [number, number];
  add(
    major > 20 || (major === 20 && minor >= 19)
      ? {
          name: "Node.js",
          level: "ok",
          detail: `${process.version} (the guest runs this same binary: ${process.execPath})`,
        }
      : {
          name: "Node.js",
          level: "fail",
          detail: process.version,
          fix: "fnrun needs Node.js 20.19 or newer",
        },
  );

  const probe = await probeAccel();
  const choice = chooseAccel("auto", probe);
  const problem = kvmProblem(probe);
  add(
    choice.accel === "kvm"
      ? { name: "Accelerator", level: "ok", detail: "KVM (hardware virtualisation)" }
      : {
          name: "Accelerator",
          level: "warn",
          detail: `TCG (software emulation; VMs are several times slower): KVM is not used because ${problem}`,
          fix: "nothing to do here, fnrun works under TCG; on a machine with VT-x/AMD-V, KVM is used automatically",
        },
  );

  const qemu = await locateQemu(choice.accel, env);
  if ("missing" in qemu) {
    add({
      name: "QEMU",
      level: "fail",
      detail: qemu.missing,
      fix: "run `make setup` (apt-get install qemu-system-x86)",
    });
  } else {
    const version = await run(qemu.path, ["--version"], { timeout: 10_000 }).then(
      ({ stdout }) => stdout.split("\n")[0] ?? "",
      () => "version unknown",
    );
    const machines = await run(qemu.path, ["-M", "help"], { timeout: 10_000 }).then(
      ({ stdout }) => stdout,
      () => "",
    );
    add(
      machines.includes("microvm")
        ? { name: "QEMU", level: "ok", detail: `${qemu.path} (${version}), microvm machine available` }
        : {
            name: "QEMU",
            level: "fail",
            detail: `${qemu.path} has no microvm machine`,
            fix: "install QEMU 6.0 or newer",
          },
    );
    // Under TCG the system's full QEMU starts ~3 times slower than a reduced build.
    if (choice.accel === "tcg" && !env.FNRUN_QEMU && qemu.path !== microvmQemuPath(env)) {
      add({
        name: "fnrun's QEMU",
        level: "warn",
        detail: "not built: VMs run on the system's full QEMU, which starts slower",
        fix: "run `make setup` (builds QEMU for microvm with TCG from Debian's source, ~5 minutes once)",
      });
    }
  }

  add(
    await access(QBOOT_BIOS).then(
      (): Check => ({ name: "qboot BIOS", level: "ok", detail: QBOOT_BIOS }),
      (): Check => ({
        name: "qboot BIOS",
        level: "fail",
        detail: `${QBOOT_BIOS} is missing (microvm's firmware)`,
        fix: "run `make setup` (apt-get install qemu-system-data)",
      }),
    ),
  );

  try {
    const kernel = await resolveKernel({ env, build: false });
    add({
      name: "Guest kernel",
      level: "ok",
      detail: `${kernel.path} (${kernel.origin}, ${kernel.entry === "pvh" ? "PVH" : "qboot + bzImage"})`,
    });
  } catch (error) {
    const source = await findKernelSource();
    add({
      name: "Guest kernel",
      level: "fail",
      detail: (error as Error).message,
      fix: source ? "run `fnrun setup` (builds it from linux-source: 3-7 minutes, once)" : "run `make setup`",
    });
  }

  for (const [tool, why, fix] of [
    ["gcc", "compiles the guest's tiny init", "apt-get install gcc libc6-dev"],
    ["mkfs.erofs", "builds the read-only runtime disk", "apt-get install erofs-utils"],
    ["setpriv", "makes QEMU die with fnrun", "apt-get install util-linux"],
  ] as const) {
    const path = await which(tool, env);
    add(
      path
        ? { name: tool, level: "ok", detail: `${path} (${why})` }
        : { name: tool, level: tool === "gcc" ? "fail" : "warn", detail: `not found (${why})`, fix: fix },
    );
  }

  try {
    const runtime = await resolveRuntime({
      layout: (await which("mkfs.erofs", env)) ? "disk" : "initrd",
      env,
    });
    add({ name: "Runtime image", level: "ok", detail: `${runtime.layout} layout, ${runtime.bootArchive}` });
  } catch (error) {
    add({
      name: "Runtime image",
      level: "warn",
      detail: (error as Error).message,
      fix: "run `fnrun setup` (or just invoke: it is built on first use)",
    });
  }

  const snapshots = join(cacheRoot(env), "snapshot");
  const snapshotCount = (await readdir(snapshots).catch(() => [] as string[])).filter((name) =>
    /^[0-9a-f]{64}$/.test(name),
  ).length;
  add(
    snapshotCount > 0
      ? { name: "Snapshots", level: "ok", detail: `${snapshotCount} in ${snapshots}` }
      : {
          name: "Snapshots",
          level: "warn",
          detail: "none yet: the first invocation of each memory size boots, then makes one",
          fix: `run \`fnrun snapshot\` (${DEFAULTS.memoryMB} MB) to have fast starts from the first invocation`,
        },
  );

  const virtiofsd = ["/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd", env.FNRUN_VIRTIOFSD ?? ""];
  const foundVirtiofsd = await Promise.all(
    virtiofsd.filter(Boolean).map((path) =>
      access(path, constants.X_OK).then(
        () => path,
        () => "",
      ),
    ),
  );
  const virtiofsdPath = foundVirtiofsd.find(Boolean);
  add(
    virtiofsdPath
      ? { name: "virtiofsd", level: "ok", detail: `${virtiofsdPath} (for --mount)` }
      : {
          name: "virtiofsd",
          level: "warn",
          detail: "not found: --mount will not work",
          fix: "apt-get install qemu-system-common",
        },
  );

  const folderQemu = await locateFolderQemu(env);
  add(
    folderQemu
      ? {
          name: "Folder QEMU",
          level: "ok",
          detail: `${folderQemu} (${await run(folderQemu, ["--version"], { timeout: 10_000 }).then(
            ({ stdout }) => stdout.split("\n")[0]?.trim() ?? "",
            () => "does not run",
          )}): --mount invocations restore clones`,
        }
      : {
          name: "Folder QEMU",
          level: "warn",
          detail: "none: --mount invocations boot (stock QEMU 7.2 cannot restore a shared folder's device)",
          fix: "run `make setup` (it builds fnrun's QEMU, patched so that it can), or set FNRUN_FOLDER_QEMU",
        },
  );

  add(sqliteCheck());

  for (const [name, path] of [
    ["Cache", cacheRoot(env)],
    ["State", stateDirectory(env)],
  ] as const) {
    try {
      await mkdir(path, { recursive: true });
      await access(path, constants.W_OK);
      const size =
        name === "Cache" ? ` (${((await directorySize(path)) / 1024 / 1024).toFixed(0)} MB used)` : "";
      add({ name, level: "ok", detail: `${path}${size}` });
    } catch (error) {
      add({
        name,
        level: "fail",
        detail: `${path} is not writable: ${(error as Error).message}`,
        fix: `set FNRUN_${name === "Cache" ? "CACHE" : "STATE"}_DIR to a writable place`,
      });
    }
  }
  return checks;
}
