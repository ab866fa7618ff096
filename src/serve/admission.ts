/**
 * How many invocations `fnrun serve` runs at once: at most `maxActive` in all,
 * at most a function's own `concurrency` for it; beyond that, requests wait in
 * a bounded line (first come, first served), and when the line is full they are
 * turned away at once (HTTP 429, Lambda's TooManyRequestsException).
 */

export class TooManyRequests extends Error {
  constructor(readonly reason: string) {
    super(`Rate Exceeded: ${reason}`);
    this.name = "TooManyRequestsException";
  }
}

interface Waiter {
  functionName: string;
  limit: number;
  admit: () => void;
}

export class Admission {
  #active = 0;
  readonly #perFunction = new Map<string, number>();
  readonly #waiting: Waiter[] = [];

  constructor(
    readonly maxActive: number,
    readonly maxWaiting: number,
  ) {}

  get active(): number {
    return this.#active;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  activeFor(functionName: string): number {
    return this.#perFunction.get(functionName) ?? 0;
  }

  #fits(functionName: string, limit: number): boolean {
    return this.#active < this.maxActive && this.activeFor(functionName) < limit;
  }

  #take(functionName: string): () => void {
    this.#active++;
    this.#perFunction.set(functionName, this.activeFor(functionName) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#active--;
      this.#perFunction.set(functionName, this.activeFor(functionName) - 1);
      this.#admitWaiting();
    };
  }

  #admitWaiting(): void {
    for (let index = 0; index < this.#waiting.length; ) {
      const waiter = this.#waiting[index] as Waiter;
      if (this.#fits(waiter.functionName, waiter.limit)) {
        this.#waiting.splice(index, 1);
        waiter.admit();
      } else {
        index++;
      }
    }
  }

  /** Waits for a place; returns the function that gives it back. */
  enter(functionName: string, limit = Number.POSITIVE_INFINITY, signal?: AbortSignal): Promise<() => void> {
    // Waiters are admitted whenever a place frees up, so any still waiting while there
    // is global room are held only by their own function's limit: this one may pass.
    if (this.#fits(functionName, limit)) return Promise.resolve(this.#take(functionName));
    if (this.#waiting.length >= this.maxWaiting) {
      return Promise.reject(
        new TooManyRequests(
          `${this.#active} invocations running and ${this.#waiting.length} waiting (the limit)`,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        functionName,
        limit,
        admit: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve(this.#take(functionName));
        },
      };
      const onAbort = () => {
        const index = this.#waiting.indexOf(waiter);
        if (index >= 0) this.#waiting.splice(index, 1);
        reject(signal?.reason ?? new Error("aborted"));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }
}
