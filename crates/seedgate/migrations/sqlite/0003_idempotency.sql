-- Idempotency-Key records: a retried create with the same key and body returns the original task.
CREATE TABLE idempotency_keys (
    account_id     TEXT NOT NULL REFERENCES api_keys (id),
    key            TEXT NOT NULL,
    request_hash   BLOB NOT NULL,
    task_id        TEXT NOT NULL REFERENCES tasks (id),
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
);
