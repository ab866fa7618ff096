/**
 * The keys the guest's frames are signed with (runtime-initrd/guest/frames.ts):
 * fresh for each invocation, chosen here and given to the guest before any of
 * the function's code runs; before that, the boot nonce serves (it is on the
 * kernel command line, so it is only good for "ready", before an invocation).
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { type FrameFormat, signedFormat } from "./protocol.ts";

export function newFrameKey(): string {
  return randomBytes(32).toString("hex");
}

/** Frames signed with `key`: HMAC-SHA256, its first 16 bytes in hex. */
export function framesSignedWith(key: string): FrameFormat {
  return signedFormat((signed, tag) =>
    timingSafeEqual(
      Buffer.from(createHmac("sha256", key).update(signed).digest("hex").slice(0, 32)),
      Buffer.from(tag),
    ),
  );
}
