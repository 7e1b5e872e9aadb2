-- The material library: reusable Seedance reference material, owned by an organization and
-- scoped by project inside it. An asset is fetched from its source URL and checked against the
-- upstream's input rules by a processor that leases it (`lease_until_ms`), so a crash leaves
-- it to the next one rather than stuck in PROCESSING; its bytes live in the asset store.
CREATE TABLE material_groups (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    project_name     TEXT NOT NULL,
    library_type     TEXT NOT NULL CHECK (library_type IN ('aigc_avatar', 'liveness_face')),
    group_name       TEXT,
    description      TEXT,
    metadata         TEXT,
    status           TEXT NOT NULL CHECK (status IN ('ACTIVE', 'DELETED')),
    created_at_ms    BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL
);

CREATE INDEX material_groups_by_organization ON material_groups (organization_id, id);

CREATE TABLE material_assets (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    project_name     TEXT NOT NULL,
    group_id         TEXT REFERENCES material_groups (id),
    library_type     TEXT NOT NULL CHECK (library_type IN ('aigc_avatar', 'liveness_face')),
    asset_name       TEXT,
    asset_type       TEXT NOT NULL CHECK (asset_type IN ('Image', 'Video', 'Audio')),
    source_url       TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('PROCESSING', 'ACTIVE', 'FAILED', 'DELETED')),
    error_message    TEXT,
    metadata         TEXT,
    content_type     TEXT,
    size_bytes       BIGINT,
    lease_until_ms   BIGINT,
    created_at_ms    BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL
);

CREATE INDEX material_assets_by_organization ON material_assets (organization_id, id);
CREATE INDEX material_assets_processing ON material_assets (lease_until_ms) WHERE status = 'PROCESSING';
