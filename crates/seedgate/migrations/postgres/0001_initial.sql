-- The schema the SQLite migrations arrive at, for PostgreSQL. Times are milliseconds since the
-- Unix epoch (BIGINT) and money is integer micro-dollars, as on SQLite, so both backends share
-- their queries. Replicas coordinate through row locks and the constraints below; the in-flight
-- counters are kept by triggers in the statement that moves a task.

CREATE TABLE api_keys (
    id                   TEXT PRIMARY KEY,
    name                 TEXT NOT NULL,
    key_hash             BYTEA NOT NULL UNIQUE,
    key_prefix           TEXT NOT NULL,
    mode                 TEXT NOT NULL CHECK (mode IN ('live', 'test')),
    balance_usd_micros   BIGINT NOT NULL DEFAULT 0,
    created_at           BIGINT NOT NULL,
    revoked_at           BIGINT,
    requests_per_second  BIGINT,
    max_concurrent_tasks BIGINT,
    webhook_url          TEXT,
    webhook_secret       TEXT,
    in_flight            BIGINT NOT NULL DEFAULT 0
);

-- Ids compare bytewise, as on SQLite, so `id < $after` pages the same on both.
CREATE TABLE tasks (
    id                     TEXT COLLATE "C" PRIMARY KEY,
    account_id             TEXT NOT NULL REFERENCES api_keys (id),
    model                  TEXT NOT NULL,
    operation              TEXT NOT NULL,
    provider               TEXT NOT NULL,
    state                  TEXT NOT NULL CHECK (state IN
                             ('queued', 'submitting', 'running', 'succeeded', 'failed', 'cancelled', 'expired')),
    job                    TEXT NOT NULL,
    request                TEXT NOT NULL,
    reserved_usd_micros    BIGINT NOT NULL,
    estimated_tokens       BIGINT NOT NULL,
    usage_tokens           BIGINT,
    cost_usd_micros        BIGINT,
    cost_cny               TEXT,
    result                 TEXT,
    error_code             TEXT,
    error_message          TEXT,
    attempts               BIGINT NOT NULL DEFAULT 0,
    lease_owner            TEXT,
    lease_until_ms         BIGINT,
    next_attempt_at_ms     BIGINT NOT NULL,
    created_at_ms          BIGINT NOT NULL,
    updated_at_ms          BIGINT NOT NULL,
    completed_at_ms        BIGINT,
    channel                TEXT,
    upstream_id            TEXT,
    next_poll_at_ms        BIGINT,
    polls                  BIGINT NOT NULL DEFAULT 0,
    deadline_at_ms         BIGINT,
    submit_started_at_ms   BIGINT,
    callback_url           TEXT,
    doubt_channel          TEXT,
    doubt_since_ms         BIGINT,
    upstream_phase         TEXT CHECK (upstream_phase IN ('queued', 'running', 'succeeded')),
    upstream_expires_at_ms BIGINT,
    upstream_usage_tokens  BIGINT,
    result_copy_failures   BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX tasks_by_account ON tasks (account_id, id DESC);
CREATE INDEX tasks_waiting ON tasks (next_attempt_at_ms) WHERE state = 'queued';
CREATE INDEX tasks_leased ON tasks (lease_until_ms) WHERE state IN ('submitting', 'running');
CREATE INDEX tasks_due_polls ON tasks (next_poll_at_ms) WHERE state = 'running' AND upstream_id IS NOT NULL;
-- One upstream task never belongs to two of ours.
CREATE UNIQUE INDEX tasks_by_upstream ON tasks (channel, upstream_id) WHERE upstream_id IS NOT NULL;

-- Append-only. A task is reserved, released and charged at most once each, so a replayed
-- settlement can never bill twice.
CREATE TABLE ledger (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES api_keys (id),
    task_id     TEXT REFERENCES tasks (id),
    kind        TEXT NOT NULL CHECK (kind IN ('top_up', 'reserve', 'release', 'charge')),
    usd_micros  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (task_id, kind)
);

CREATE INDEX ledger_by_account ON ledger (account_id);

CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE idempotency_keys (
    account_id     TEXT NOT NULL REFERENCES api_keys (id),
    key            TEXT NOT NULL,
    request_hash   BYTEA NOT NULL,
    task_id        TEXT NOT NULL REFERENCES tasks (id),
    created_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (account_id, key)
);

CREATE TABLE webhook_deliveries (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id             TEXT NOT NULL REFERENCES tasks (id),
    account_id          TEXT NOT NULL REFERENCES api_keys (id),
    url                 TEXT NOT NULL,
    event               TEXT NOT NULL,
    state               TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms  BIGINT NOT NULL,
    lease_owner         TEXT,
    lease_until_ms      BIGINT,
    last_status         BIGINT,
    last_error          TEXT,
    created_at_ms       BIGINT NOT NULL,
    delivered_at_ms     BIGINT,
    UNIQUE (task_id, url)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at_ms) WHERE state = 'pending';

-- Tasks in flight per upstream channel. A row exists before any task takes a place on its
-- channel, so the row lock of a reservation covers every place of that channel.
CREATE TABLE channel_load (
    id         TEXT PRIMARY KEY,
    in_flight  BIGINT NOT NULL
);

CREATE FUNCTION task_in_flight(state TEXT) RETURNS BOOLEAN
    LANGUAGE SQL IMMUTABLE AS $$ SELECT state IN ('submitting', 'running') $$;

-- A task leaves its old places (if it held them) and takes its new ones (if it holds them).
CREATE FUNCTION tasks_count_in_flight() RETURNS TRIGGER LANGUAGE plpgsql AS $$
DECLARE
    was BOOLEAN := TG_OP <> 'INSERT' AND task_in_flight(OLD.state);
    now_held BOOLEAN := TG_OP <> 'DELETE' AND task_in_flight(NEW.state);
BEGIN
    IF was AND (NOT now_held OR OLD.account_id <> NEW.account_id) THEN
        UPDATE api_keys SET in_flight = in_flight - 1 WHERE id = OLD.account_id;
    END IF;
    IF now_held AND (NOT was OR OLD.account_id <> NEW.account_id) THEN
        UPDATE api_keys SET in_flight = in_flight + 1 WHERE id = NEW.account_id;
    END IF;
    IF was AND OLD.channel IS NOT NULL
       AND (NOT now_held OR OLD.channel IS DISTINCT FROM NEW.channel) THEN
        UPDATE channel_load SET in_flight = in_flight - 1 WHERE id = OLD.channel;
    END IF;
    IF now_held AND NEW.channel IS NOT NULL
       AND (NOT was OR OLD.channel IS DISTINCT FROM NEW.channel) THEN
        INSERT INTO channel_load (id, in_flight) VALUES (NEW.channel, 1)
            ON CONFLICT (id) DO UPDATE SET in_flight = channel_load.in_flight + 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_in_flight AFTER INSERT OR DELETE OR UPDATE OF state, channel ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_count_in_flight();

-- Every replica's engine listens: a new task wakes them all and the first to claim it takes it.
CREATE FUNCTION tasks_announce() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('seedgate_work', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_announce AFTER INSERT ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION tasks_announce();
