-- Organizations hold the money; API keys belong to one. A live key spends its organization's
-- balance; a test key keeps spending its own play money (`api_keys.balance_usd_micros`), as
-- before. A key may carry a spending cap, a model allow-list, an expiry and a status.
--
-- Upgrade: every existing key becomes an organization of its own (id `org_` + the key's
-- ULID) holding that key's live balance; tasks, the ledger and idempotency records keep
-- pointing at the key, so nothing moves but the money's owner.
CREATE TABLE organizations (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    balance_usd_micros  INTEGER NOT NULL DEFAULT 0,
    -- The management token, hashed like API keys; NULL until one is issued.
    token_hash          BLOB UNIQUE,
    token_prefix        TEXT,
    created_at          INTEGER NOT NULL
);

INSERT INTO organizations (id, name, balance_usd_micros, created_at)
    SELECT 'org_' || substr(id, 5), name,
           CASE WHEN mode = 'live' THEN balance_usd_micros ELSE 0 END, created_at
    FROM api_keys;

ALTER TABLE api_keys ADD COLUMN organization_id TEXT REFERENCES organizations (id);
ALTER TABLE api_keys ADD COLUMN status TEXT NOT NULL DEFAULT 'active'
    CHECK (status IN ('active', 'inactive', 'revoked'));
-- The cap (NULL: unlimited) bounds `committed_usd_micros`: what the key has been charged plus
-- what its unfinished tasks hold reserved. `used_usd_micros` is what it has been charged.
ALTER TABLE api_keys ADD COLUMN limit_usd_micros INTEGER;
ALTER TABLE api_keys ADD COLUMN committed_usd_micros INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN used_usd_micros INTEGER NOT NULL DEFAULT 0;
-- A JSON array of model names; empty: every model.
ALTER TABLE api_keys ADD COLUMN models TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_keys ADD COLUMN expires_at_ms INTEGER;
ALTER TABLE api_keys ADD COLUMN last_used_at_ms INTEGER;

UPDATE api_keys SET
    organization_id = 'org_' || substr(id, 5),
    status = CASE WHEN revoked_at IS NULL THEN 'active' ELSE 'revoked' END,
    committed_usd_micros = COALESCE((SELECT -SUM(usd_micros) FROM ledger
        WHERE ledger.account_id = api_keys.id AND kind <> 'top_up'), 0),
    used_usd_micros = COALESCE((SELECT -SUM(usd_micros) FROM ledger
        WHERE ledger.account_id = api_keys.id AND kind = 'charge'), 0),
    balance_usd_micros = CASE WHEN mode = 'test' THEN balance_usd_micros ELSE 0 END;

CREATE INDEX api_keys_by_organization ON api_keys (organization_id, created_at);

-- Every entry now names the organization whose money it moves; an organization's top-up
-- names no key.
CREATE TABLE ledger_by_organization (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    account_id       TEXT REFERENCES api_keys (id),
    task_id          TEXT REFERENCES tasks (id),
    kind             TEXT NOT NULL CHECK (kind IN ('top_up', 'reserve', 'release', 'charge')),
    usd_micros       INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    UNIQUE (task_id, kind)
);
INSERT INTO ledger_by_organization
        (id, organization_id, account_id, task_id, kind, usd_micros, created_at)
    SELECT id, 'org_' || substr(account_id, 5), account_id, task_id, kind, usd_micros, created_at
    FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_by_organization RENAME TO ledger;
CREATE INDEX ledger_by_account ON ledger (account_id);
CREATE INDEX ledger_by_organization ON ledger (organization_id);
-- Usage and billing read a key's charges by time.
CREATE INDEX ledger_charges ON ledger (account_id, created_at) WHERE kind = 'charge';
