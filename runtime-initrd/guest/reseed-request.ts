/**
 * The stage-0 agent's reseed request (runtime-initrd/init.c): the host's
 * entropy, and the time to set. Pure, so that it can be tested on the host.
 */

/**
 * "reseed SECONDS NANOSECONDS READ_AT_NS HEX": the host's clock as it read
 * it (`epochMs`), and when the guest read that (`readAtMs`, the monotonic
 * clock, which Node's hrtime and the agent's CLOCK_MONOTONIC share). The agent
 * sets the wall clock to the host's reading plus everything that passed in the
 * guest since: decoding the wake-up, this round trip, its own parsing. Under
 * TCG that is ~80 ms a clone would otherwise run behind the host.
 */
export function reseedRequest(entropy: string, epochMs: number, readAtMs: number): string {
  const seconds = Math.floor(epochMs / 1000);
  const nanoseconds = Math.round((epochMs - seconds * 1000) * 1e6);
  return `reseed ${seconds} ${nanoseconds} ${Math.round(readAtMs * 1e6)} ${entropy}`;
}
