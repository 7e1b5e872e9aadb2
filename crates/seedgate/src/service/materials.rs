//! The material library's use cases: an organization's groups and assets, scoped by project.
//! The rules of its requests live in `crate::materials`, beside the processor that imports
//! an asset's source.
//!
//! A lookup by id reads the asset or group in the caller's organization and project before
//! an update or a delete writes it. That read cannot go stale: neither the organization nor
//! the project of a row ever changes, and each write checks the row's status again itself.

use std::sync::Arc;

use seedgate_contract::{ApiError, ErrorCode};

use super::internal;
use crate::fetch::Fetcher;
use crate::ids::{MaterialGroupId, MaterialId};
use crate::materials::{
    Materials, NewAssetRequest, NewGroupRequest, DEFAULT_PROJECT, PROCESS_LEASE_MS,
};
use crate::store::materials::{
    AssetFilter, AssetUpdate, GroupFilter, GroupRefused, GroupUpdate, LibraryType, MaterialAsset,
    MaterialGroup, MaterialStatus, NewAsset, NewGroup,
};
use crate::store::{Account, Store};

pub struct MaterialService {
    pub(super) store: Store,
    /// The outbound guard, consulted for sources it would never fetch.
    pub(super) fetcher: Fetcher,
    /// Imports an asset's source; deletes its stored file.
    pub(super) processor: Arc<Materials>,
}

fn not_found(what: &str, code: ErrorCode) -> ApiError {
    ApiError::new(code, format!("{what} not found."))
}

fn asset_not_found() -> ApiError {
    not_found("Material asset", ErrorCode::MaterialAssetNotFound)
}

fn group_not_found() -> ApiError {
    not_found("Material group", ErrorCode::MaterialGroupNotFound)
}

fn asset_deleted() -> ApiError {
    ApiError::new(
        ErrorCode::MaterialAssetDeleted,
        "This material asset is deleted.",
    )
}

fn group_deleted() -> ApiError {
    ApiError::new(
        ErrorCode::MaterialGroupDeleted,
        "This material group is deleted.",
    )
}

fn source_invalid(code: ErrorCode, asset: &MaterialAsset) -> ApiError {
    ApiError::new(
        code,
        asset
            .error_message
            .clone()
            .unwrap_or_else(|| "The source is not usable.".into()),
    )
    .with_param("asset_url")
    .with_extra("asset_id", asset.id.to_string().into())
}

/// Whether a row is in the project a request names (`default` when it names none).
fn in_project(project: Option<&str>, row_project: &str) -> bool {
    project.unwrap_or(DEFAULT_PROJECT) == row_project
}

impl MaterialService {
    /// Refuses, before anything is stored, a source the outbound guard would never fetch.
    fn check_source(&self, url: &str) -> Result<(), ApiError> {
        match self.fetcher.refusal(url) {
            None => Ok(()),
            Some(forbidden) => Err(ApiError::new(
                ErrorCode::InputUrlForbidden,
                format!("`asset_url`: {forbidden}; materials are never fetched from there."),
            )
            .with_param("asset_url")),
        }
    }

    /// Stores an asset and imports its source; a source that breaks a rule leaves the asset
    /// `FAILED` and answers `seedance_material_source_invalid`.
    pub async fn create_asset(
        &self,
        account: &Account,
        request: &NewAssetRequest,
    ) -> Result<MaterialAsset, ApiError> {
        self.check_source(&request.asset_url)?;
        let asset = self
            .store
            .create_asset_in_group(&NewAsset {
                organization_id: &account.organization_id,
                project_name: &request.project_name,
                group_id: request.group_id.as_ref(),
                library_type: LibraryType::AigcAvatar,
                asset_name: request.asset_name.as_deref(),
                asset_type: request.asset_type,
                source_url: &request.asset_url,
                metadata: request.metadata.as_deref(),
                lease_ms: PROCESS_LEASE_MS,
            })
            .await
            .map_err(internal)?
            .map_err(|refused| match refused {
                GroupRefused::Unknown => ApiError::new(
                    ErrorCode::UnknownMaterialGroup,
                    "No material group with this id exists in this project.",
                )
                .with_param("group_id"),
                GroupRefused::Deleted => group_deleted(),
            })?;
        let asset = self.processor.process(asset).await.map_err(internal)?;
        if asset.status == MaterialStatus::Failed {
            return Err(source_invalid(
                ErrorCode::SeedanceMaterialSourceInvalid,
                &asset,
            ));
        }
        Ok(asset)
    }

    /// One page of the organization's assets, newest first.
    pub async fn list_assets(
        &self,
        account: &Account,
        filter: &AssetFilter<'_>,
    ) -> Result<Vec<MaterialAsset>, ApiError> {
        self.store
            .list_assets(&account.organization_id, filter)
            .await
            .map_err(internal)
    }

    /// An asset of the caller's organization in the named project; another project's asset
    /// is not found.
    pub async fn asset(
        &self,
        account: &Account,
        id: &MaterialId,
        project: Option<&str>,
    ) -> Result<MaterialAsset, ApiError> {
        self.store
            .asset(&account.organization_id, id)
            .await
            .map_err(internal)?
            .filter(|asset| in_project(project, &asset.project_name))
            .ok_or_else(asset_not_found)
    }

    /// Changes an asset; a new source imports it again, and one that breaks a rule answers
    /// `seedance_material_new_source_invalid`.
    pub async fn update_asset(
        &self,
        account: &Account,
        id: &MaterialId,
        update: &AssetUpdate,
        project: Option<&str>,
    ) -> Result<MaterialAsset, ApiError> {
        if let Some(url) = &update.source_url {
            self.check_source(url)?;
        }
        let current = self.asset(account, id, project).await?;
        if current.status == MaterialStatus::Deleted {
            return Err(asset_deleted());
        }
        let asset = self
            .store
            .update_asset(&account.organization_id, id, update, PROCESS_LEASE_MS)
            .await
            .map_err(internal)?
            .ok_or_else(asset_deleted)?;
        let asset = if asset.status == MaterialStatus::Processing {
            self.processor.process(asset).await.map_err(internal)?
        } else {
            asset
        };
        if asset.status == MaterialStatus::Failed && update.source_url.is_some() {
            return Err(source_invalid(
                ErrorCode::SeedanceMaterialNewSourceInvalid,
                &asset,
            ));
        }
        Ok(asset)
    }

    /// Marks an asset deleted and deletes its stored file.
    pub async fn delete_asset(
        &self,
        account: &Account,
        id: &MaterialId,
        project: Option<&str>,
    ) -> Result<(), ApiError> {
        self.asset(account, id, project).await?;
        self.store
            .delete_asset(&account.organization_id, id)
            .await
            .map_err(internal)?
            .ok_or_else(asset_not_found)?;
        self.processor.delete_files(std::slice::from_ref(id)).await;
        Ok(())
    }

    pub async fn create_group(
        &self,
        account: &Account,
        request: &NewGroupRequest,
    ) -> Result<MaterialGroup, ApiError> {
        self.store
            .create_group(&NewGroup {
                organization_id: &account.organization_id,
                project_name: &request.project_name,
                library_type: LibraryType::AigcAvatar,
                group_name: request.group_name.as_deref(),
                description: request.description.as_deref(),
                metadata: request.metadata.as_deref(),
            })
            .await
            .map_err(internal)
    }

    /// One page of the organization's groups, newest first.
    pub async fn list_groups(
        &self,
        account: &Account,
        filter: &GroupFilter<'_>,
    ) -> Result<Vec<MaterialGroup>, ApiError> {
        self.store
            .list_groups(&account.organization_id, filter)
            .await
            .map_err(internal)
    }

    /// A group of the caller's organization in the named project.
    pub async fn group(
        &self,
        account: &Account,
        id: &MaterialGroupId,
        project: Option<&str>,
    ) -> Result<MaterialGroup, ApiError> {
        self.store
            .group(&account.organization_id, id)
            .await
            .map_err(internal)?
            .filter(|group| in_project(project, &group.project_name))
            .ok_or_else(group_not_found)
    }

    /// Changes a group's name, description or metadata; a deleted group is not changed.
    pub async fn update_group(
        &self,
        account: &Account,
        id: &MaterialGroupId,
        update: &GroupUpdate,
        project: Option<&str>,
    ) -> Result<MaterialGroup, ApiError> {
        self.group(account, id, project).await?;
        self.store
            .update_group(&account.organization_id, id, update)
            .await
            .map_err(internal)?
            .ok_or_else(group_deleted)
    }

    /// Marks a group and every asset in it deleted, and deletes their stored files.
    pub async fn delete_group(
        &self,
        account: &Account,
        id: &MaterialGroupId,
        project: Option<&str>,
    ) -> Result<(), ApiError> {
        self.group(account, id, project).await?;
        let assets = self
            .store
            .delete_group(&account.organization_id, id)
            .await
            .map_err(internal)?
            .ok_or_else(group_not_found)?;
        self.processor.delete_files(&assets).await;
        Ok(())
    }
}
