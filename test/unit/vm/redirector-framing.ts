/** A frame as QEMU's filter-redirector sends it: its length (4 bytes, big-endian), then the frame. */
export function framed(frame: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(frame.length);
  return Buffer.concat([length, frame]);
}
