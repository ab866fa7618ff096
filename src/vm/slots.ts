/**
 * How many VMs run at once: under TCG every VM wants a whole core, and more VMs
 * than cores only make each one slower. One bound per process (vmSlots) and one
 * shared by every fnrun process of the user (hostSlots).
 */
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { readFile, unlink } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { Limiter } from "../util/limiter.ts";

/** VMs running at once in this process: FNRUN_MAX_VMS, else two per core. */
export function defaultVmLimit(env: NodeJS.ProcessEnv = process.env): number {
  const fromEnv = Number.parseInt(env.FNRUN_MAX_VMS ?? "", 10);
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : 2 * availableParallelism();
}

/** The limiter every VM this process starts goes through. */
export const vmSlots = new Limiter(defaultVmLimit());

/** A process's identity: its pid and start time, so a reused pid is not taken for the same process. */
function processIdentity(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 22 (starttime), counted after the command name, which may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return `${pid}:${fields[19]}`;
  } catch {
    return undefined;
  }
}

const selfIdentity = processIdentity(process.pid) ?? `${process.pid}:?`;

/**
 * Slots shared by every fnrun process of this user on this machine: one file
 * per running VM (`0`, `1`, … in a private directory), holding its owner's pid
 * and start time. Hooks and scripts that start many `fnrun invoke`s at once so
 * queue up instead of starting more VMs than the machine can run. A slot whose
 * owner died (SIGKILL) is taken over.
 */
export class HostSlots {
  constructor(
    readonly limit: number,
    readonly directory: string,
    readonly pollMs = 50,
  ) {}

  /** Takes a slot, waiting for one; returns its release. `onWait` is called once if it has to wait. */
  async acquire(signal?: AbortSignal, onWait?: () => void): Promise<() => Promise<void>> {
    let waited = false;
    for (;;) {
      const release = this.tryAcquire();
      if (release) return release;
      if (signal?.aborted) throw signal.reason ?? new Error("aborted");
      if (!waited) {
        waited = true;
        onWait?.();
      }
      await new Promise((resolve) => setTimeout(resolve, this.pollMs));
    }
  }

  /**
   * Takes a free slot if there is one; returns its release. Without waiting, not
   * even for I/O (a few calls on small local files): a prestart takes its slot so.
   */
  tryAcquire(): (() => Promise<void>) | undefined {
    try {
      mkdirSync(this.directory, { recursive: true, mode: 0o700 });
    } catch {
      return async () => {}; // no shared directory: the per-process bound still holds
    }
    for (let index = 0; index < this.limit; index++) {
      const path = join(this.directory, String(index));
      if (this.#claim(path)) {
        return async () => {
          const owner = await readFile(path, "utf8").catch(() => "");
          if (owner === selfIdentity) await unlink(path).catch(() => {});
        };
      }
    }
    return undefined;
  }

  #claim(path: string): boolean {
    if (create(path)) return true;
    let owner: string;
    try {
      owner = readFileSync(path, "utf8");
    } catch {
      return false;
    }
    if (owner === "") return false; // being written, or just released
    const pid = Number.parseInt(owner, 10);
    if (Number.isInteger(pid) && processIdentity(pid) === owner) return false;
    // Its owner is gone: take the slot over (of two takers racing, one gets it).
    try {
      unlinkSync(path);
    } catch {}
    return create(path);
  }
}

/** Creates a slot file holding this process's identity; false if it exists. */
function create(path: string): boolean {
  try {
    writeFileSync(path, selfIdentity, { flag: "wx", mode: 0o600 });
    return true;
  } catch {
    return false;
  }
}

function slotsDirectory(env: NodeJS.ProcessEnv): string {
  const uid = process.getuid?.() ?? 0;
  const base = env.XDG_RUNTIME_DIR && env.XDG_RUNTIME_DIR.length < 60 ? env.XDG_RUNTIME_DIR : tmpdir();
  return join(base, `fnrun-slots-${uid}`);
}

/** The machine-wide bound, as large as the per-process one. */
export const hostSlots = new HostSlots(defaultVmLimit(), slotsDirectory(process.env));
