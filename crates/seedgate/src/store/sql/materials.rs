//! The material library's rows.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{sql, Dialect, SqlStore};
use crate::ids::{MaterialGroupId, MaterialId, OrgId};
use crate::store::materials::{
    AssetFilter, AssetType, AssetUpdate, GroupFilter, GroupRefused, GroupStatus, GroupUpdate,
    LibraryType, MaterialAsset, MaterialGroup, MaterialStatus, NewAsset, NewGroup, Processed,
};
use crate::store::{now_ms, MaterialStore, StoreError};

const GROUP_COLUMNS: &str = "id, organization_id, project_name, library_type, group_name, \
    description, metadata, status, created_at_ms, updated_at_ms";

const ASSET_COLUMNS: &str = "id, organization_id, project_name, group_id, library_type, \
    asset_name, asset_type, source_url, status, error_message, metadata, content_type, \
    size_bytes, created_at_ms, updated_at_ms";

fn group_from_row(row: &AnyRow) -> Result<MaterialGroup, StoreError> {
    Ok(MaterialGroup {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        project_name: row.try_get("project_name")?,
        library_type: LibraryType::read(row.try_get("library_type")?)?,
        group_name: row.try_get("group_name")?,
        description: row.try_get("description")?,
        metadata: row.try_get("metadata")?,
        status: GroupStatus::read(row.try_get("status")?)?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn asset_from_row(row: &AnyRow) -> Result<MaterialAsset, StoreError> {
    Ok(MaterialAsset {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        project_name: row.try_get("project_name")?,
        group_id: row.try_get("group_id")?,
        library_type: LibraryType::read(row.try_get("library_type")?)?,
        asset_name: row.try_get("asset_name")?,
        asset_type: AssetType::read(row.try_get("asset_type")?)?,
        source_url: row.try_get("source_url")?,
        status: MaterialStatus::read(row.try_get("status")?)?,
        error_message: row.try_get("error_message")?,
        metadata: row.try_get("metadata")?,
        content_type: row.try_get("content_type")?,
        size_bytes: row.try_get("size_bytes")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// Inserts a new asset, PROCESSING and leased to its creator, on the caller's connection or
/// transaction.
async fn insert_asset(
    dialect: Dialect,
    connection: &mut AnyConnection,
    asset: &NewAsset<'_>,
) -> Result<MaterialAsset, StoreError> {
    let now = now_ms();
    let row = sqlx::query(sql!(
        dialect,
        format!(
            "INSERT INTO material_assets (id, organization_id, project_name, group_id, \
             library_type, asset_name, asset_type, source_url, status, metadata, \
             lease_until_ms, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'PROCESSING', $9, $10, $11, $11) \
             RETURNING {ASSET_COLUMNS}"
        )
    ))
    .bind(MaterialId::mint())
    .bind(asset.organization_id)
    .bind(asset.project_name)
    .bind(asset.group_id)
    .bind(asset.library_type.as_str())
    .bind(asset.asset_name)
    .bind(asset.asset_type.as_str())
    .bind(asset.source_url)
    .bind(asset.metadata)
    .bind(now + asset.lease_ms)
    .bind(now)
    .fetch_one(connection)
    .await?;
    asset_from_row(&row)
}

/// PostgreSQL text cannot hold NUL, so no stored id or name has one: such a lookup matches
/// nothing, answered without asking the database (which would refuse the value).
fn unmatchable(values: &[&str]) -> bool {
    values.iter().any(|value| value.contains('\0'))
}

#[async_trait]
impl MaterialStore for SqlStore {
    async fn create_group(&self, group: &NewGroup<'_>) -> Result<MaterialGroup, StoreError> {
        let now = now_ms();
        let row = sqlx::query(sql!(
            self.dialect,
            format!(
                "INSERT INTO material_groups (id, organization_id, project_name, library_type, \
                 group_name, description, metadata, status, created_at_ms, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'ACTIVE', $8, $8) RETURNING {GROUP_COLUMNS}"
            )
        ))
        .bind(MaterialGroupId::mint())
        .bind(group.organization_id)
        .bind(group.project_name)
        .bind(group.library_type.as_str())
        .bind(group.group_name)
        .bind(group.description)
        .bind(group.metadata)
        .bind(now)
        .fetch_one(&mut *self.writer.connection().await?)
        .await?;
        group_from_row(&row)
    }

    async fn group(
        &self,
        organization: &OrgId,
        id: &MaterialGroupId,
    ) -> Result<Option<MaterialGroup>, StoreError> {
        if unmatchable(&[id.as_str()]) {
            return Ok(None);
        }
        let row = sqlx::query(sql!(
            self.dialect,
            format!(
                "SELECT {GROUP_COLUMNS} FROM material_groups WHERE id = $1 AND organization_id = $2"
            )
        ))
        .bind(id)
        .bind(organization)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    async fn list_groups(
        &self,
        organization: &OrgId,
        filter: &GroupFilter<'_>,
    ) -> Result<Vec<MaterialGroup>, StoreError> {
        if unmatchable(&[filter.project_name, filter.after.unwrap_or_default()]) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sql!(
            self.dialect,
            format!(
                "SELECT {GROUP_COLUMNS} FROM material_groups WHERE organization_id = $1 \
                 AND project_name = $2 AND ($3 IS NULL OR status = $3) \
                 AND ($4 IS NULL OR library_type = $4) AND ($5 IS NULL OR id < $5) \
                 ORDER BY id DESC LIMIT $6"
            )
        ))
        .bind(organization)
        .bind(filter.project_name)
        .bind(filter.status.map(GroupStatus::as_str))
        .bind(filter.library_type.map(LibraryType::as_str))
        .bind(filter.after)
        .bind(filter.limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(group_from_row).collect()
    }

    async fn update_group(
        &self,
        organization: &OrgId,
        id: &MaterialGroupId,
        update: &GroupUpdate,
    ) -> Result<Option<MaterialGroup>, StoreError> {
        if unmatchable(&[id.as_str()]) {
            return Ok(None);
        }
        let row = sqlx::query(sql!(
            self.dialect,
            format!(
                "UPDATE material_groups SET \
                 group_name = CASE WHEN $1 THEN $2 ELSE group_name END, \
                 description = CASE WHEN $3 THEN $4 ELSE description END, \
                 metadata = CASE WHEN $5 THEN $6 ELSE metadata END, updated_at_ms = $7 \
                 WHERE id = $8 AND organization_id = $9 AND status = 'ACTIVE' \
                 RETURNING {GROUP_COLUMNS}"
            )
        ))
        .bind(update.group_name.is_some())
        .bind(update.group_name.as_deref())
        .bind(update.description.is_some())
        .bind(update.description.clone().flatten())
        .bind(update.metadata.is_some())
        .bind(update.metadata.clone().flatten())
        .bind(now_ms())
        .bind(id)
        .bind(organization)
        .fetch_optional(&mut *self.writer.connection().await?)
        .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    async fn delete_group(
        &self,
        organization: &OrgId,
        id: &MaterialGroupId,
    ) -> Result<Option<Vec<MaterialId>>, StoreError> {
        if unmatchable(&[id.as_str()]) {
            return Ok(None);
        }
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let found: Option<String> = sqlx::query_scalar(
            "UPDATE material_groups SET status = 'DELETED', updated_at_ms = $1 \
             WHERE id = $2 AND organization_id = $3 RETURNING id",
        )
        .bind(now)
        .bind(id)
        .bind(organization)
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            return Ok(None);
        }
        let assets: Vec<MaterialId> = sqlx::query_scalar(
            "UPDATE material_assets SET status = 'DELETED', updated_at_ms = $1 \
             WHERE group_id = $2 AND status <> 'DELETED' RETURNING id",
        )
        .bind(now)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(assets))
    }

    async fn create_asset(&self, asset: &NewAsset<'_>) -> Result<MaterialAsset, StoreError> {
        insert_asset(self.dialect, &mut *self.writer.connection().await?, asset).await
    }

    async fn create_asset_in_group(
        &self,
        asset: &NewAsset<'_>,
    ) -> Result<Result<MaterialAsset, GroupRefused>, StoreError> {
        let Some(group_id) = asset.group_id else {
            return self.create_asset(asset).await.map(Ok);
        };
        if unmatchable(&[group_id.as_str()]) {
            return Ok(Err(GroupRefused::Unknown));
        }
        let mut tx = self.writer.begin().await?;
        // The row lock makes a concurrent `delete_group` wait for this insert, so that its
        // sweep over the group's assets sees this one (SQLite's single writer already does).
        let group: Option<(String, String)> = sqlx::query_as(sql!(
            self.dialect,
            "SELECT project_name, status FROM material_groups \
             WHERE id = $1 AND organization_id = $2@lock"
        ))
        .bind(group_id)
        .bind(asset.organization_id)
        .fetch_optional(&mut *tx)
        .await?;
        let refused = match group {
            Some((project, status)) if project == asset.project_name => {
                (GroupStatus::read(&status)? == GroupStatus::Deleted)
                    .then_some(GroupRefused::Deleted)
            }
            _ => Some(GroupRefused::Unknown),
        };
        if let Some(refused) = refused {
            tx.rollback().await?;
            return Ok(Err(refused));
        }
        let created = insert_asset(self.dialect, &mut tx, asset).await?;
        tx.commit().await?;
        Ok(Ok(created))
    }

    async fn asset(
        &self,
        organization: &OrgId,
        id: &MaterialId,
    ) -> Result<Option<MaterialAsset>, StoreError> {
        if unmatchable(&[id.as_str()]) {
            return Ok(None);
        }
        let row = sqlx::query(sql!(
            self.dialect,
            format!(
                "SELECT {ASSET_COLUMNS} FROM material_assets WHERE id = $1 AND organization_id = $2"
            )
        ))
        .bind(id)
        .bind(organization)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(asset_from_row).transpose()
    }

    async fn material(&self, id: &MaterialId) -> Result<Option<MaterialAsset>, StoreError> {
        if unmatchable(&[id.as_str()]) {
            return Ok(None);
        }
        let row = sqlx::query(sql!(
            self.dialect,
            format!("SELECT {ASSET_COLUMNS} FROM material_assets WHERE id = $1")
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(asset_from_row).transpose()
    }

    async fn list_assets(
        &self,
        organization: &OrgId,
        filter: &AssetFilter<'_>,
    ) -> Result<Vec<MaterialAsset>, StoreError> {
        let texts = [
            filter.project_name,
            filter.group_id.unwrap_or_default(),
            filter.after.unwrap_or_default(),
        ];
        if unmatchable(&texts) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sql!(
            self.dialect,
            format!(
                "SELECT {ASSET_COLUMNS} FROM material_assets WHERE organization_id = $1 \
                 AND project_name = $2 AND ($3 IS NULL OR group_id = $3) \
                 AND ($4 IS NULL OR status = $4) AND ($5 IS NULL OR library_type = $5) \
                 AND ($6 IS NULL OR id < $6) ORDER BY id DESC LIMIT $7"
            )
        ))
        .bind(organization)
        .bind(filter.project_name)
        .bind(filter.group_id)
        .bind(filter.status.map(MaterialStatus::as_str))
        .bind(filter.library_type.map(LibraryType::as_str))
        .bind(filter.after)
        .bind(filter.limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(asset_from_row).collect()
    }

    async fn update_asset(
        &self,
        organization: &OrgId,
        id: &MaterialId,
        update: &AssetUpdate,
        lease_ms: i64,
    ) -> Result<Option<MaterialAsset>, StoreError> {
        if unmatchable(&[id.as_str()]) {
            return Ok(None);
        }
        let now = now_ms();
        // A new source (or type) makes the asset PROCESSING again, leased to its updater.
        let reprocess = update.source_url.is_some() || update.asset_type.is_some();
        let row = sqlx::query(sql!(
            self.dialect,
            format!(
                "UPDATE material_assets SET \
                 asset_name = CASE WHEN $1 THEN $2 ELSE asset_name END, \
                 asset_type = CASE WHEN $3 THEN $4 ELSE asset_type END, \
                 source_url = CASE WHEN $5 THEN $6 ELSE source_url END, \
                 metadata = CASE WHEN $7 THEN $8 ELSE metadata END, \
                 status = CASE WHEN $9 THEN 'PROCESSING' ELSE status END, \
                 error_message = CASE WHEN $9 THEN NULL ELSE error_message END, \
                 lease_until_ms = CASE WHEN $9 THEN $10 ELSE lease_until_ms END, \
                 updated_at_ms = $11 \
                 WHERE id = $12 AND organization_id = $13 AND status <> 'DELETED' \
                 RETURNING {ASSET_COLUMNS}"
            )
        ))
        .bind(update.asset_name.is_some())
        .bind(update.asset_name.as_deref())
        .bind(update.asset_type.is_some())
        .bind(update.asset_type.map(AssetType::as_str))
        .bind(update.source_url.is_some())
        .bind(update.source_url.as_deref())
        .bind(update.metadata.is_some())
        .bind(update.metadata.clone().flatten())
        .bind(reprocess)
        .bind(now + lease_ms)
        .bind(now)
        .bind(id)
        .bind(organization)
        .fetch_optional(&mut *self.writer.connection().await?)
        .await?;
        row.as_ref().map(asset_from_row).transpose()
    }

    async fn delete_asset(
        &self,
        organization: &OrgId,
        id: &MaterialId,
    ) -> Result<Option<MaterialAsset>, StoreError> {
        if unmatchable(&[id.as_str()]) {
            return Ok(None);
        }
        let row = sqlx::query(sql!(
            self.dialect,
            format!(
                "UPDATE material_assets SET status = 'DELETED', updated_at_ms = $1 \
                 WHERE id = $2 AND organization_id = $3 RETURNING {ASSET_COLUMNS}"
            )
        ))
        .bind(now_ms())
        .bind(id)
        .bind(organization)
        .fetch_optional(&mut *self.writer.connection().await?)
        .await?;
        row.as_ref().map(asset_from_row).transpose()
    }

    async fn claim_unprocessed_asset(
        &self,
        lease_ms: i64,
    ) -> Result<Option<MaterialAsset>, StoreError> {
        let row = sqlx::query(sql!(
            self.dialect,
            format!(
                "UPDATE material_assets SET lease_until_ms = @now + $1 \
                 WHERE id = (SELECT id FROM material_assets WHERE status = 'PROCESSING' \
                   AND lease_until_ms < @now ORDER BY lease_until_ms LIMIT 1@skip_locked) \
                 AND status = 'PROCESSING' RETURNING {ASSET_COLUMNS}"
            )
        ))
        .bind(lease_ms)
        .fetch_optional(&mut *self.writer.connection().await?)
        .await?;
        row.as_ref().map(asset_from_row).transpose()
    }

    async fn finish_asset(
        &self,
        id: &MaterialId,
        source_url: &str,
        outcome: &Processed,
    ) -> Result<Option<MaterialAsset>, StoreError> {
        let (status, content_type, size_bytes, message) = match outcome {
            Processed::Active {
                content_type,
                size_bytes,
            } => (
                MaterialStatus::Active,
                Some(content_type.as_str()),
                Some(*size_bytes),
                None,
            ),
            Processed::Failed { message } => {
                (MaterialStatus::Failed, None, None, Some(message.as_str()))
            }
        };
        // Only the processing of the current source ends it: a delete, or a new source sent
        // meanwhile, wins.
        let row = sqlx::query(sql!(
            self.dialect,
            format!(
                "UPDATE material_assets SET status = $1, content_type = $2, size_bytes = $3, \
                 error_message = $4, lease_until_ms = NULL, updated_at_ms = $5 \
                 WHERE id = $6 AND source_url = $7 AND status = 'PROCESSING' \
                 RETURNING {ASSET_COLUMNS}"
            )
        ))
        .bind(status.as_str())
        .bind(content_type)
        .bind(size_bytes)
        .bind(message)
        .bind(now_ms())
        .bind(id)
        .bind(source_url)
        .fetch_optional(&mut *self.writer.connection().await?)
        .await?;
        row.as_ref().map(asset_from_row).transpose()
    }
}
