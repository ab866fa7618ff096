/**
 * Which failures of a clone leave its snapshot to be used again: only those of
 * what the clone has of its own (its network card, its RAM copy).
 */
import { describe, expect, it } from "vitest";
import { snapshotBlameless } from "../../../src/start/snapshot.ts";
import { BootError } from "../../../src/util/errors.ts";
import { RamCopyError } from "../../../src/vm/launch.ts";

describe("snapshotBlameless", () => {
  const refused = new BootError("QEMU exited before restoring: refused", "");
  const copyFailed = new RamCopyError("copying the snapshot's RAM failed (3): no room");

  it("keeps the snapshot when the clone's own RAM copy failed, with or without a network", () => {
    expect(snapshotBlameless({ network: false }, copyFailed)).toBe(true);
    expect(snapshotBlameless({ network: true }, copyFailed)).toBe(true);
  });

  it("keeps it when a clone with a network card failed: the card is what the others lack", () => {
    expect(snapshotBlameless({ network: true }, refused)).toBe(true);
  });

  it("blames the snapshot when a clone with nothing of its own failed to restore", () => {
    expect(snapshotBlameless({ network: false }, refused)).toBe(false);
  });
});
