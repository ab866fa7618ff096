/**
 * The stage-0 agent's requests that set the clock (runtime-initrd/init.c).
 * Pure, so that they can be tested on the host.
 */

/**
 * "SECONDS NANOSECONDS READ_AT_NS": the host's clock as it read it
 * (`epochMs`), and when the guest read that (`readAtMs`, the monotonic clock,
 * which Node's hrtime and the agent's CLOCK_MONOTONIC share). The agent sets
 * the wall clock to the host's reading plus everything that passed in the
 * guest since: decoding the message, the round trip to the agent, its own
 * parsing. Under TCG that is ~80 ms a clone would otherwise run behind.
 */
function hostTime(epochMs: number, readAtMs: number): string {
  const seconds = Math.floor(epochMs / 1000);
  const nanoseconds = Math.round((epochMs - seconds * 1000) * 1e6);
  return `${seconds} ${nanoseconds} ${Math.round(readAtMs * 1e6)}`;
}

/** A clone's reseed: the host's time and its fresh entropy (hex). */
export function reseedRequest(entropy: string, epochMs: number, readAtMs: number): string {
  return `reseed ${hostTime(epochMs, readAtMs)} ${entropy}`;
}

/** A booted VM's clock, set from the host's. */
export function clockRequest(epochMs: number, readAtMs: number): string {
  return `clock ${hostTime(epochMs, readAtMs)}`;
}
