/**
 * A minimal QMP (QEMU Machine Protocol) client, for snapshots: on one end of a
 * socket pair whose other end QEMU inherits (so there is no race on start-up,
 * and no connection to accept), QEMU greets, then answers JSON commands one
 * line at a time. Commands may be written before QEMU has even started: they
 * wait in the socket, and QEMU answers them in order.
 */
import type { Socket } from "node:net";
import { BootError } from "../util/errors.ts";

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

export class QmpClient {
  #buffer = "";
  #nextId = 1;
  readonly #pending = new Map<string, Pending>();
  #closed = false;
  readonly #eventListeners = new Set<(event: string, data: unknown) => void>();

  constructor(private readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.#buffer += chunk;
      // QMP replies are small; a runaway peer is cut off rather than buffered.
      if (this.#buffer.length > 1024 * 1024) socket.destroy(new Error("QMP: reply too large"));
      for (;;) {
        const newline = this.#buffer.indexOf("\n");
        if (newline < 0) break;
        const line = this.#buffer.slice(0, newline).trim();
        this.#buffer = this.#buffer.slice(newline + 1);
        if (!line) continue;
        let message: Record<string, unknown>;
        try {
          message = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        if (typeof message.event === "string") {
          for (const listener of this.#eventListeners) listener(message.event, message.data);
        }
        const id = typeof message.id === "string" ? message.id : undefined;
        const pending = id ? this.#pending.get(id) : undefined;
        if (!pending || !id) continue;
        this.#pending.delete(id);
        if ("error" in message) {
          const error = message.error as { desc?: string };
          pending.reject(new Error(`QMP: ${error.desc ?? JSON.stringify(message.error)}`));
        } else {
          pending.resolve(message.return);
        }
      }
    });
    const onClose = () => {
      this.#closed = true;
      const error = new BootError("QEMU closed its QMP connection", "");
      for (const pending of this.#pending.values()) pending.reject(error);
      this.#pending.clear();
    };
    socket.on("close", onClose);
    socket.on("error", () => {});
  }

  /**
   * Leaves capabilities negotiation mode. Commands may follow at once, without
   * waiting for the greeting or this reply: QMP answers in order (and one
   * refused would make the next fail too, with QEMU's reason).
   */
  start(): this {
    this.execute("qmp_capabilities").catch(() => {});
    return this;
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.#closed) return Promise.reject(new BootError("QEMU closed its QMP connection", ""));
    const id = String(this.#nextId++);
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.socket.write(
        `${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`,
      );
    });
  }

  /** Calls `listener` with each asynchronous event QEMU sends (RESUME, STOP, ...). */
  onEvent(listener: (event: string, data: unknown) => void): () => void {
    this.#eventListeners.add(listener);
    return () => this.#eventListeners.delete(listener);
  }

  close(): void {
    this.socket.destroy();
  }
}
