/**
 * The first function: a greeting built from the event.
 *
 *     fnrun invoke functions/hello.ts --event '{"name":"Ada"}'
 */
import { release } from "node:os";
import type { Context } from "fnrun";

interface HelloEvent {
  name?: string;
}

export const handler = async (event: HelloEvent, context: Context) => {
  const name = typeof event?.name === "string" && event.name.trim() ? event.name.trim() : "world";
  console.log(`saying hello to ${name}`);
  return {
    message: `Hello, ${name}!`,
    requestId: context.awsRequestId,
    // Proof of where it ran: the guest's own kernel, with the runtime as PID 1.
    ranIn: `a microvm: Linux ${release()}, pid ${process.pid}, Node ${process.version}`,
  };
};
