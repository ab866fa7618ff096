import { describe, expect, it } from "vitest";
import { confineToWorker } from "../../../src/jobs/confine.ts";

const allowance = {
  mounts: [
    { source: "/srv/data", target: "/mnt/data", readOnly: true },
    { source: "/srv/out", target: "/mnt/out", readOnly: false },
  ],
  net: false,
};

describe("confineToWorker", () => {
  it("gives the worker's folders at the guest paths asked for, never the job's host paths", () => {
    expect(
      confineToWorker(
        {
          timeout: 5,
          mounts: [
            { source: "/", target: "/mnt/data", readOnly: false },
            { source: "/etc", target: "/mnt/out/", readOnly: true },
          ],
        },
        allowance,
      ),
    ).toEqual({
      config: {
        timeout: 5,
        mounts: [
          { source: "/srv/data", target: "/mnt/data", readOnly: true },
          { source: "/srv/out", target: "/mnt/out", readOnly: true },
        ],
      },
    });
    expect(confineToWorker({ handler: "h" }, allowance)).toEqual({ config: { handler: "h" } });
  });

  it("refuses a job asking for a folder or a network the worker does not give", () => {
    expect(
      confineToWorker({ mounts: [{ source: "/", target: "/mnt/h", readOnly: false }] }, allowance),
    ).toEqual({
      refused:
        "the job asks for a shared folder at /mnt/h, which this worker does not allow (fnrun worker --allow-mount HOST_DIR:/mnt/h[:ro|rw])",
    });
    expect(confineToWorker({ net: true }, allowance)).toMatchObject({
      refused: expect.stringContaining("--allow-net"),
    });
    expect(confineToWorker({ net: true }, { ...allowance, net: true })).toEqual({ config: { net: true } });
  });
});
