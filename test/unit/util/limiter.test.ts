import { describe, expect, it } from "vitest";
import { Limiter } from "../../../src/util/limiter.ts";

describe("Limiter", () => {
  it("never runs more than its limit at once, and runs everything", async () => {
    const limiter = new Limiter(2);
    let running = 0;
    let peak = 0;
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, index) =>
        limiter.run(async () => {
          running++;
          peak = Math.max(peak, running);
          await new Promise((resolve) => setTimeout(resolve, 5));
          running--;
          return index;
        }),
      ),
    );
    expect(results).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(peak).toBe(2);
    expect(limiter.active).toBe(0);
  });

  it("lets a waiter give up when its signal aborts", async () => {
    const limiter = new Limiter(1);
    let release: () => void = () => {};
    const holder = limiter.run(() => new Promise<void>((resolve) => (release = resolve)));
    const controller = new AbortController();
    const waiter = limiter.run(async () => "never", controller.signal);
    expect(limiter.waiting).toBe(1);
    controller.abort(new Error("stop"));
    await expect(waiter).rejects.toThrow("stop");
    expect(limiter.waiting).toBe(0);
    release();
    await holder;
    expect(await limiter.run(async () => "free again")).toBe("free again");
  });
});
