/**
 * A function that throws, to show what an error looks like: its type, message
 * and a stack trace mapped back to this file.
 *
 *     fnrun invoke functions/fails.ts --event '{"order":"A-17"}'
 */
class OrderNotFound extends Error {
  override name = "OrderNotFound";
}

function findOrder(id: unknown): never {
  throw new OrderNotFound(`no order with id ${JSON.stringify(id)}`);
}

export const handler = async (event: { order?: string }) => {
  return findOrder(event.order);
};
