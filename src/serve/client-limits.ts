/**
 * What one client (one remote address) may hold of a `fnrun serve` listening
 * beyond loopback: connections open at once, and request bytes in flight. A
 * client over either is turned away (its connection closed, or 429) before it
 * can take the server's memory or its sockets from the others.
 */
import type { Socket } from "node:net";

export class ClientLimits {
  readonly #connections = new Map<string, number>();
  readonly #bytes = new Map<string, number>();

  constructor(
    readonly maxConnections: number,
    readonly maxBodyBytes: number,
  ) {}

  /** Counts a new connection; false (and the socket destroyed) when its client has too many. */
  admit(socket: Socket): boolean {
    const client = socket.remoteAddress ?? "?";
    const open = this.#connections.get(client) ?? 0;
    if (open >= this.maxConnections) {
      socket.destroy();
      return false;
    }
    this.#connections.set(client, open + 1);
    socket.once("close", () => {
      const left = (this.#connections.get(client) ?? 1) - 1;
      if (left > 0) this.#connections.set(client, left);
      else this.#connections.delete(client);
    });
    return true;
  }

  /** Takes `bytes` of the client's budget for request bodies; false when it is spent. */
  reserve(client: string, bytes: number): boolean {
    const used = this.#bytes.get(client) ?? 0;
    if (used + bytes > this.maxBodyBytes) return false;
    this.#bytes.set(client, used + bytes);
    return true;
  }

  release(client: string, bytes: number): void {
    const left = (this.#bytes.get(client) ?? 0) - bytes;
    if (left > 0) this.#bytes.set(client, left);
    else this.#bytes.delete(client);
  }
}
