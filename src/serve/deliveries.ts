/**
 * The webhook deliveries `fnrun serve` has accepted, kept in its state database
 * so that a delivery sent again (a captured one replayed, or a sender's retry of
 * one already queued) is recognised, across restarts too. Kept a day: long past
 * the five minutes a signed timestamp is good for, and long enough for GitHub's,
 * which carry none.
 */
import type Database from "better-sqlite3";

const KEPT_MS = 24 * 60 * 60 * 1000;

export class DeliveryLog {
  constructor(private readonly database: Database.Database) {
    database.exec(`
      CREATE TABLE IF NOT EXISTS webhook_deliveries (
        function_name TEXT NOT NULL,
        delivery_key TEXT NOT NULL,
        accepted_at INTEGER NOT NULL,
        PRIMARY KEY (function_name, delivery_key)
      );
      CREATE INDEX IF NOT EXISTS webhook_deliveries_age ON webhook_deliveries (accepted_at);
    `);
  }

  /** Records a delivery; false when it was recorded already (a replay). */
  remember(functionName: string, key: string, now = Date.now()): boolean {
    this.database.prepare("DELETE FROM webhook_deliveries WHERE accepted_at < ?").run(now - KEPT_MS);
    return (
      this.database
        .prepare(
          "INSERT OR IGNORE INTO webhook_deliveries (function_name, delivery_key, accepted_at) VALUES (?, ?, ?)",
        )
        .run(functionName, key, now).changes === 1
    );
  }

  /** Forgets a delivery that could not be queued after all, so that its sender's retry is taken. */
  forget(functionName: string, key: string): void {
    this.database
      .prepare("DELETE FROM webhook_deliveries WHERE function_name = ? AND delivery_key = ?")
      .run(functionName, key);
  }
}
