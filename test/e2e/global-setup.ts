// Builds (or finds in the cache) the guest kernel and runtime image once,
// before the VM tests run: the first build takes minutes.
import { resolveHost } from "../../src/host/setup.ts";

export default async function setup(): Promise<void> {
  const host = await resolveHost({ progress: (line) => console.log(`fnrun: ${line}`) });
  console.log(
    `e2e: kernel ${host.kernel.origin} (${host.kernel.entry}), runtime ${host.runtime.layout}, accel ${host.accel.accel}`,
  );
}
