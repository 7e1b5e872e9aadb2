-- Webhooks: a task's own callback_url and an account-wide endpoint, signed with the account's
-- secret. Deliveries are rows, enqueued in the transaction that ends the task, so none is lost.
ALTER TABLE tasks ADD COLUMN callback_url TEXT;
ALTER TABLE api_keys ADD COLUMN webhook_url TEXT;
ALTER TABLE api_keys ADD COLUMN webhook_secret TEXT;

CREATE TABLE webhook_deliveries (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id             TEXT NOT NULL REFERENCES tasks (id),
    account_id          TEXT NOT NULL REFERENCES api_keys (id),
    url                 TEXT NOT NULL,
    event               TEXT NOT NULL,
    state               TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms  INTEGER NOT NULL,
    lease_owner         TEXT,
    lease_until_ms      INTEGER,
    last_status         INTEGER,
    last_error          TEXT,
    created_at_ms       INTEGER NOT NULL,
    delivered_at_ms     INTEGER,
    UNIQUE (task_id, url)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at_ms) WHERE state = 'pending';
