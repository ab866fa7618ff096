/**
 * A function with an npm dependency (`ms`, from functions/node_modules),
 * bundled into the VM with the function.
 *
 *     fnrun invoke functions/duration.ts --event '{"ms":90061000}'
 */
import ms from "ms";

export const handler = async (event: { ms?: number }) => {
  const milliseconds = typeof event.ms === "number" ? event.ms : 0;
  return { short: ms(milliseconds), long: ms(milliseconds, { long: true }) };
};
