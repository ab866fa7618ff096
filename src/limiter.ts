/**
 * A counting semaphore. fnrun bounds the VMs it runs at once: under TCG every VM
 * wants a whole core, and more VMs than cores only make each one slower.
 */
import { availableParallelism } from "node:os";

export class Limiter {
  #active = 0;
  readonly #waiting: Array<() => void> = [];

  constructor(readonly limit: number) {}

  get active(): number {
    return this.#active;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  async run<T>(work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    await this.#acquire(signal);
    try {
      return await work();
    } finally {
      this.#release();
    }
  }

  #acquire(signal?: AbortSignal): Promise<void> {
    if (this.#active < this.limit) {
      this.#active++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener("abort", onAbort);
        this.#active++;
        resolve();
      };
      const onAbort = () => {
        const index = this.#waiting.indexOf(grant);
        if (index >= 0) this.#waiting.splice(index, 1);
        reject(signal?.reason ?? new Error("aborted"));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(grant);
    });
  }

  #release(): void {
    this.#active--;
    this.#waiting.shift()?.();
  }
}

/** VMs running at once in this process: FNRUN_MAX_VMS, else two per core. */
export function defaultVmLimit(env: NodeJS.ProcessEnv = process.env): number {
  const fromEnv = Number.parseInt(env.FNRUN_MAX_VMS ?? "", 10);
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : 2 * availableParallelism();
}

/** The limiter every VM this process starts goes through. */
export const vmSlots = new Limiter(defaultVmLimit());
