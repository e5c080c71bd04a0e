-- Durable subscriptions (see the Postgres migration). SQLite has no session locks that other
-- processes see, so the runtime running a subscription holds a lease on its row instead:
-- `holder` (a runtime's id) until `lease_until` (Unix milliseconds), renewed while it runs.
CREATE TABLE subscriptions (
    name           TEXT    PRIMARY KEY,
    transaction_id INTEGER NOT NULL DEFAULT 0,
    position       INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    holder         TEXT,
    lease_until    INTEGER NOT NULL DEFAULT 0,
    updated_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
