import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { FOLDER_PATCH, pickFolderQemu } from "../../../src/host/qemu-binary.ts";

describe("pickFolderQemu", () => {
  const own = "/cache/microvm-qemu/bin/qemu-system-x86_64";
  const fetched = "/cache/folder-qemu/qemu-system-x86_64";

  it("takes fnrun's own QEMU when it was built with the patch that restores vhost-user-fs", () => {
    expect(pickFolderQemu({ own: { path: own, patches: [FOLDER_PATCH] }, fetched })).toBe(own);
  });

  it("takes the fetched QEMU 10 when fnrun's own lacks the patch or is not there", () => {
    expect(pickFolderQemu({ own: { path: own, patches: [] }, fetched })).toBe(fetched);
    expect(pickFolderQemu({ own: { path: own, patches: ["another"] }, fetched })).toBe(fetched);
    expect(pickFolderQemu({ fetched })).toBe(fetched);
  });

  it("takes FNRUN_FOLDER_QEMU over both, and none when there is nothing", () => {
    expect(
      pickFolderQemu({ override: "/x/qemu", own: { path: own, patches: [FOLDER_PATCH] }, fetched }),
    ).toBe("/x/qemu");
    expect(pickFolderQemu({ own: { path: own, patches: [] } })).toBeUndefined();
    expect(pickFolderQemu({})).toBeUndefined();
  });
});

it("names a patch the QEMU build applies", () => {
  expect(existsSync(`scripts/qemu-patches/${FOLDER_PATCH}.patch`)).toBe(true);
});
