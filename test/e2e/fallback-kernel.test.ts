// The fallback for machines that cannot build the kernel: Debian's cloud kernel,
// extracted from its package. Its virtio drivers are modules, so this also covers
// the initrd layout (Node in the initramfs), the UART channel and qboot + bzImage.
import { afterAll, expect, it } from "vitest";
import { resolveHost } from "../../src/host/setup.ts";
import { invoke } from "../../src/index.ts";
import { expectNothingLeftBehind } from "./helpers.ts";

afterAll(() => expectNothingLeftBehind(expect));

it("runs hello on Debian's cloud kernel, over the serial console", async () => {
  const host = await resolveHost({ env: { ...process.env, FNRUN_KERNEL_SOURCE: "debian-cloud" } });
  expect(host.kernel.origin).toBe("debian-cloud");
  expect(host.kernel.entry).toBe("bios");
  expect(host.channel).toBe("serial");
  expect(host.runtime.layout).toBe("initrd");

  const { result, logs } = await invoke("functions/hello.ts", { event: { name: "Cloud" }, host });
  expect(result).toMatchObject({ message: "Hello, Cloud!" });
  expect((result as { ranIn: string }).ranIn).toMatch(/Linux 6\.1\.\d+-\d+-cloud-amd64, pid 1/);
  expect(logs).toContain("saying hello to Cloud");
  expect(logs).not.toContain("Probing EDD");
});
