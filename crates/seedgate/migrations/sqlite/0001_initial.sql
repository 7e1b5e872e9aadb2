-- Accounts are API keys: each key owns its balance and its tasks.
CREATE TABLE api_keys (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    key_hash            BLOB NOT NULL UNIQUE,
    key_prefix          TEXT NOT NULL,
    mode                TEXT NOT NULL CHECK (mode IN ('live', 'test')),
    balance_usd_micros  INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL,
    revoked_at          INTEGER
);

CREATE TABLE tasks (
    id                   TEXT PRIMARY KEY,
    account_id           TEXT NOT NULL REFERENCES api_keys (id),
    model                TEXT NOT NULL,
    operation            TEXT NOT NULL,
    provider             TEXT NOT NULL,
    state                TEXT NOT NULL CHECK (state IN
                           ('queued', 'submitting', 'running', 'succeeded', 'failed', 'cancelled', 'expired')),
    job                  TEXT NOT NULL,
    request              TEXT NOT NULL,
    reserved_usd_micros  INTEGER NOT NULL,
    estimated_tokens     INTEGER NOT NULL,
    usage_tokens         INTEGER,
    cost_usd_micros      INTEGER,
    cost_cny             TEXT,
    result               TEXT,
    error_code           TEXT,
    error_message        TEXT,
    attempts             INTEGER NOT NULL DEFAULT 0,
    lease_owner          TEXT,
    lease_until_ms       INTEGER,
    next_attempt_at_ms   INTEGER NOT NULL,
    created_at_ms        INTEGER NOT NULL,
    updated_at_ms        INTEGER NOT NULL,
    completed_at_ms      INTEGER
);

CREATE INDEX tasks_by_account ON tasks (account_id, id DESC);
CREATE INDEX tasks_waiting ON tasks (next_attempt_at_ms) WHERE state = 'queued';
CREATE INDEX tasks_leased ON tasks (lease_until_ms) WHERE state IN ('submitting', 'running');

-- Append-only. A task is reserved, released and charged at most once each, so a replayed
-- settlement can never bill twice.
CREATE TABLE ledger (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  TEXT NOT NULL REFERENCES api_keys (id),
    task_id     TEXT REFERENCES tasks (id),
    kind        TEXT NOT NULL CHECK (kind IN ('top_up', 'reserve', 'release', 'charge')),
    usd_micros  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (task_id, kind)
);

CREATE INDEX ledger_by_account ON ledger (account_id);

CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
