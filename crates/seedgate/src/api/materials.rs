//! The material library (`/v1/videos/assets*`), with an API key: an organization's reusable
//! reference material, used in generation requests as `asset://<id>`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use seedgate_contract::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Authed;
use super::error::{error_responses, invalid_query, HttpError};
use super::query::Query;
use super::tasks::body_error;
use super::ApiState;
use crate::ids::{MaterialGroupId, MaterialId};
use crate::materials::{
    parse_asset_update, parse_group_update, parse_new_asset, parse_new_group, DEFAULT_PROJECT,
};
use crate::store::materials::{
    AssetFilter, GroupFilter, GroupStatus, LibraryType, MaterialAsset, MaterialGroup,
    MaterialStatus,
};

/// A material asset and how far its processing got. Fields without a value are left out
/// (the platform's schema has them objects or strings, not null).
#[derive(Serialize, ToSchema)]
pub struct MaterialAssetObject {
    /// Use it as `asset://<id>` once `status` is `ACTIVE`.
    id: String,
    /// `seedance.material_asset`.
    object: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_id: Option<String>,
    project_name: String,
    /// `aigc_avatar`.
    library_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    asset_name: Option<String>,
    /// `Image`, `Video` or `Audio`.
    asset_type: &'static str,
    /// `PROCESSING`, `ACTIVE`, `FAILED` or `DELETED`.
    status: &'static str,
    /// True when `ACTIVE`.
    ready: bool,
    /// Why processing failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
    /// `seedance_material_source_invalid` when processing failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
    /// Unix seconds.
    created_at: i64,
    updated_at: i64,
}

fn metadata(text: Option<&str>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(t).ok())
}

fn asset_object(asset: &MaterialAsset) -> MaterialAssetObject {
    MaterialAssetObject {
        id: asset.id.to_string(),
        object: "seedance.material_asset",
        group_id: asset.group_id.as_ref().map(ToString::to_string),
        project_name: asset.project_name.clone(),
        library_type: asset.library_type.as_str(),
        asset_name: asset.asset_name.clone(),
        asset_type: asset.asset_type.as_str(),
        status: asset.status.as_str(),
        ready: asset.status == MaterialStatus::Active,
        error_message: asset.error_message.clone(),
        error_code: (asset.status == MaterialStatus::Failed)
            .then_some("seedance_material_source_invalid"),
        metadata: metadata(asset.metadata.as_deref()),
        created_at: asset.created_at_ms / 1000,
        updated_at: asset.updated_at_ms / 1000,
    }
}

#[derive(Serialize, ToSchema)]
pub struct MaterialGroupObject {
    /// Give it as `group_id` when creating assets.
    id: String,
    /// `seedance.material_asset_group`.
    object: &'static str,
    library_type: &'static str,
    project_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// `ACTIVE` or `DELETED`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
    created_at: i64,
    updated_at: i64,
}

fn group_object(group: &MaterialGroup) -> MaterialGroupObject {
    MaterialGroupObject {
        id: group.id.to_string(),
        object: "seedance.material_asset_group",
        library_type: group.library_type.as_str(),
        project_name: group.project_name.clone(),
        group_name: group.group_name.clone(),
        description: group.description.clone(),
        status: group.status.as_str(),
        metadata: metadata(group.metadata.as_deref()),
        created_at: group.created_at_ms / 1000,
        updated_at: group.updated_at_ms / 1000,
    }
}

#[derive(Serialize, ToSchema)]
pub struct MaterialAssetList {
    assets: Vec<MaterialAssetObject>,
    /// Pass as `page_token` for the next page; null on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MaterialGroupList {
    groups: Vec<MaterialGroupObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    deleted: bool,
    id: String,
}

/// The project a lookup is scoped to; another project's asset is not found.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectQuery {
    /// Default `default`.
    project_name: Option<String>,
}

error_responses! {
    /// The refusals of an asset's creation.
    struct NewAssetErrors(Platform) {
        SeedanceMaterialSourceInvalid | LivenessFaceUnsupported | InputUrlForbidden
            | UnknownMaterialGroup | InvalidJson | UnknownField | InvalidField | MissingField;
        MaterialGroupDeleted;
    }
}

/// Imports a material from `asset_url`: fetched through the outbound guard, held to the
/// upstream's input rules and stored here. Answers once it is processed (`ACTIVE`); a source
/// that breaks a rule is `seedance_material_source_invalid` (the asset stays readable as
/// `FAILED`). Real-person (`liveness_face`) material is refused: it needs an identity check this
/// server cannot make.
#[utoipa::path(
    post,
    path = "/v1/videos/assets",
    operation_id = "create_material_asset",
    tag = "materials",
    request_body(content = serde_json::Value, description = "`asset_url` (required), `asset_name`, `asset_type` (`Image`, `Video`, `Audio`; default `Image`), `library_type` (`aigc_avatar`), `group_id`, `project_name` (default `default`), `metadata`."),
    responses(
        (status = 201, description = "The asset, `ACTIVE` (or `PROCESSING` when its storage is briefly unavailable).", body = MaterialAssetObject),
        NewAssetErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn create_asset(
    State(state): State<ApiState>,
    Authed(account): Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let body = body.map_err(body_error)?;
    let request = parse_new_asset(&body)?;
    let asset = state
        .services
        .materials
        .create_asset(&account, &request)
        .await?;
    Ok((StatusCode::CREATED, Json(asset_object(&asset))).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AssetListQuery {
    /// 1–100; default 20.
    page_size: Option<i64>,
    /// The `next_page_token` of the previous page.
    page_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_id: Option<String>,
    /// `PROCESSING`, `ACTIVE`, `FAILED` or `DELETED`.
    status: Option<String>,
    /// `aigc_avatar` or `liveness_face`.
    library_type: Option<String>,
    /// Default `default`.
    project_name: Option<String>,
}

fn page_size(size: Option<i64>) -> Result<i64, HttpError> {
    let size = size.unwrap_or(20);
    if !(1..=100).contains(&size) {
        return Err(HttpError(
            ApiError::new(
                ErrorCode::InvalidPageSize,
                "page_size must be between 1 and 100.",
            )
            .with_param("page_size"),
        ));
    }
    Ok(size)
}

/// Cuts a listing fetched with one row more than `limit` to its page; returns the token of
/// the next page, when there is one.
fn cut_page<T>(rows: &mut Vec<T>, limit: i64, id: impl Fn(&T) -> String) -> Option<String> {
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    more.then(|| rows.last().map(id)).flatten()
}

fn filter_value<T>(
    param: &str,
    value: Option<&str>,
    parse: fn(&str) -> Option<T>,
    names: &str,
) -> Result<Option<T>, HttpError> {
    value
        .map(|v| {
            parse(v).ok_or_else(|| {
                HttpError(
                    ApiError::new(
                        ErrorCode::InvalidQuery,
                        format!("{param} must be one of {names}."),
                    )
                    .with_param(param),
                )
            })
        })
        .transpose()
}

error_responses! {
    /// The refusals of the asset and group lists.
    struct AssetListErrors(Platform) {
        InvalidQuery | InvalidPageSize;
    }
}

/// The organization's material assets in one project, newest first.
#[utoipa::path(
    get,
    path = "/v1/videos/assets",
    operation_id = "list_material_assets",
    tag = "materials",
    params(AssetListQuery),
    responses(
        (status = 200, description = "One page of assets.", body = MaterialAssetList),
        AssetListErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn list_assets(
    State(state): State<ApiState>,
    Authed(account): Authed,
    query: Result<Query<AssetListQuery>, QueryRejection>,
) -> Result<Json<MaterialAssetList>, HttpError> {
    let Query(query) = query.map_err(invalid_query)?;
    let limit = page_size(query.page_size)?;
    let filter = AssetFilter {
        project_name: query.project_name.as_deref().unwrap_or(DEFAULT_PROJECT),
        group_id: query.group_id.as_deref(),
        status: filter_value(
            "status",
            query.status.as_deref(),
            MaterialStatus::parse,
            "PROCESSING, ACTIVE, FAILED, DELETED",
        )?,
        library_type: filter_value(
            "library_type",
            query.library_type.as_deref(),
            LibraryType::parse,
            "aigc_avatar, liveness_face",
        )?,
        after: query.page_token.as_deref(),
        limit: limit + 1,
    };
    let mut assets = state
        .services
        .materials
        .list_assets(&account, &filter)
        .await?;
    let next_page_token = cut_page(&mut assets, limit, |a| a.id.to_string());
    Ok(Json(MaterialAssetList {
        next_page_token,
        assets: assets.iter().map(asset_object).collect(),
    }))
}

error_responses! {
    /// The refusals of an asset's read and deletion.
    struct AssetErrors(Platform) {
        MaterialAssetNotFound: "no such asset of this organization in this project.";
    }
}

/// One material asset and its processing status.
#[utoipa::path(
    get,
    path = "/v1/videos/assets/{assetId}",
    operation_id = "get_material_asset",
    tag = "materials",
    params(("assetId" = String, Path, description = "The asset's `id`."), ProjectQuery),
    responses(
        (status = 200, description = "The asset.", body = MaterialAssetObject),
        AssetErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn get_asset(
    State(state): State<ApiState>,
    Authed(account): Authed,
    Path(id): Path<MaterialId>,
    query: Result<Query<ProjectQuery>, QueryRejection>,
) -> Result<Json<MaterialAssetObject>, HttpError> {
    let Query(project) = query.map_err(invalid_query)?;
    let asset = state
        .services
        .materials
        .asset(&account, &id, project.project_name.as_deref())
        .await?;
    Ok(Json(asset_object(&asset)))
}

error_responses! {
    /// The refusals of an asset's update.
    struct AssetUpdateErrors(Platform) {
        EmptyUpdate | InputUrlForbidden | InvalidJson | UnknownField | InvalidField;
        MaterialAssetNotFound;
        MaterialAssetDeleted;
        SeedanceMaterialNewSourceInvalid: "the new source breaks a rule.";
    }
}

/// Renames an asset or changes its metadata; a new `asset_url` (or `asset_type`) imports it
/// again, and a source that breaks a rule is `seedance_material_source_invalid`, with the
/// status of a change made but unusable.
#[utoipa::path(
    put,
    path = "/v1/videos/assets/{assetId}",
    operation_id = "update_material_asset",
    tag = "materials",
    params(("assetId" = String, Path, description = "The asset's `id`.")),
    request_body(content = serde_json::Value, description = "At least one of `asset_url`, `asset_name`, `asset_type`, `metadata`; `project_name` scopes the lookup."),
    responses(
        (status = 200, description = "The asset as it now stands.", body = MaterialAssetObject),
        AssetUpdateErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn update_asset(
    State(state): State<ApiState>,
    Authed(account): Authed,
    Path(id): Path<MaterialId>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MaterialAssetObject>, HttpError> {
    let body = body.map_err(body_error)?;
    let (update, project_name) = parse_asset_update(&body)?;
    let asset = state
        .services
        .materials
        .update_asset(&account, &id, &update, project_name.as_deref())
        .await?;
    Ok(Json(asset_object(&asset)))
}

/// Deletes an asset and its stored file; it stays readable as `DELETED`.
#[utoipa::path(
    delete,
    path = "/v1/videos/assets/{assetId}",
    operation_id = "delete_material_asset",
    tag = "materials",
    params(("assetId" = String, Path, description = "The asset's `id`."), ProjectQuery),
    responses(
        (status = 200, description = "Deleted.", body = Deleted),
        AssetErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn delete_asset(
    State(state): State<ApiState>,
    Authed(account): Authed,
    Path(id): Path<MaterialId>,
    query: Result<Query<ProjectQuery>, QueryRejection>,
) -> Result<Json<Deleted>, HttpError> {
    let Query(project) = query.map_err(invalid_query)?;
    state
        .services
        .materials
        .delete_asset(&account, &id, project.project_name.as_deref())
        .await?;
    Ok(Json(Deleted {
        deleted: true,
        id: id.to_string(),
    }))
}

error_responses! {
    /// The refusals of a group's creation.
    struct NewGroupErrors(Platform) {
        LivenessFaceUnsupported | InvalidJson | UnknownField | InvalidField;
    }
}

/// Creates a virtual-avatar material group.
#[utoipa::path(
    post,
    path = "/v1/videos/assets/groups",
    operation_id = "create_material_group",
    tag = "materials",
    request_body(content = serde_json::Value, description = "`group_name`, `description`, `library_type` (`aigc_avatar`), `project_name`, `metadata`."),
    responses(
        (status = 201, description = "The group.", body = MaterialGroupObject),
        NewGroupErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn create_group(
    State(state): State<ApiState>,
    Authed(account): Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let body = body.map_err(body_error)?;
    let request = parse_new_group(&body)?;
    let group = state
        .services
        .materials
        .create_group(&account, &request)
        .await?;
    Ok((StatusCode::CREATED, Json(group_object(&group))).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GroupListQuery {
    /// 1–100; default 20.
    page_size: Option<i64>,
    page_token: Option<String>,
    /// `ACTIVE` or `DELETED`.
    status: Option<String>,
    library_type: Option<String>,
    /// Default `default`.
    project_name: Option<String>,
}

/// The organization's material groups in one project, newest first.
#[utoipa::path(
    get,
    path = "/v1/videos/assets/groups",
    operation_id = "list_material_groups",
    tag = "materials",
    params(GroupListQuery),
    responses(
        (status = 200, description = "One page of groups.", body = MaterialGroupList),
        AssetListErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn list_groups(
    State(state): State<ApiState>,
    Authed(account): Authed,
    query: Result<Query<GroupListQuery>, QueryRejection>,
) -> Result<Json<MaterialGroupList>, HttpError> {
    let Query(query) = query.map_err(invalid_query)?;
    let limit = page_size(query.page_size)?;
    let filter = GroupFilter {
        project_name: query.project_name.as_deref().unwrap_or(DEFAULT_PROJECT),
        status: filter_value(
            "status",
            query.status.as_deref(),
            GroupStatus::parse,
            "ACTIVE, DELETED",
        )?,
        library_type: filter_value(
            "library_type",
            query.library_type.as_deref(),
            LibraryType::parse,
            "aigc_avatar, liveness_face",
        )?,
        after: query.page_token.as_deref(),
        limit: limit + 1,
    };
    let mut groups = state
        .services
        .materials
        .list_groups(&account, &filter)
        .await?;
    let next_page_token = cut_page(&mut groups, limit, |g| g.id.to_string());
    Ok(Json(MaterialGroupList {
        next_page_token,
        groups: groups.iter().map(group_object).collect(),
    }))
}

error_responses! {
    /// The refusals of a group's read and deletion.
    struct GroupErrors(Platform) {
        MaterialGroupNotFound;
    }
}

/// One material group.
#[utoipa::path(
    get,
    path = "/v1/videos/assets/groups/{groupId}",
    operation_id = "get_material_group",
    tag = "materials",
    params(("groupId" = String, Path, description = "The group's `id`."), ProjectQuery),
    responses(
        (status = 200, description = "The group.", body = MaterialGroupObject),
        GroupErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn get_group(
    State(state): State<ApiState>,
    Authed(account): Authed,
    Path(id): Path<MaterialGroupId>,
    query: Result<Query<ProjectQuery>, QueryRejection>,
) -> Result<Json<MaterialGroupObject>, HttpError> {
    let Query(project) = query.map_err(invalid_query)?;
    let group = state
        .services
        .materials
        .group(&account, &id, project.project_name.as_deref())
        .await?;
    Ok(Json(group_object(&group)))
}

error_responses! {
    /// The refusals of a group's update.
    struct GroupUpdateErrors(Platform) {
        EmptyUpdate | InvalidJson | UnknownField | InvalidField;
        MaterialGroupNotFound;
        MaterialGroupDeleted;
    }
}

/// Changes a group's name, description or metadata.
#[utoipa::path(
    put,
    path = "/v1/videos/assets/groups/{groupId}",
    operation_id = "update_material_group",
    tag = "materials",
    params(("groupId" = String, Path, description = "The group's `id`.")),
    request_body(content = serde_json::Value, description = "At least one of `group_name`, `description`, `metadata`; `project_name` scopes the lookup."),
    responses(
        (status = 200, description = "The group as it now stands.", body = MaterialGroupObject),
        GroupUpdateErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn update_group(
    State(state): State<ApiState>,
    Authed(account): Authed,
    Path(id): Path<MaterialGroupId>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MaterialGroupObject>, HttpError> {
    let body = body.map_err(body_error)?;
    let (update, project_name) = parse_group_update(&body)?;
    let group = state
        .services
        .materials
        .update_group(&account, &id, &update, project_name.as_deref())
        .await?;
    Ok(Json(group_object(&group)))
}

/// Deletes a group and every asset in it, with their stored files.
#[utoipa::path(
    delete,
    path = "/v1/videos/assets/groups/{groupId}",
    operation_id = "delete_material_group",
    tag = "materials",
    params(("groupId" = String, Path, description = "The group's `id`."), ProjectQuery),
    responses(
        (status = 200, description = "Deleted, with its assets.", body = Deleted),
        GroupErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn delete_group(
    State(state): State<ApiState>,
    Authed(account): Authed,
    Path(id): Path<MaterialGroupId>,
    query: Result<Query<ProjectQuery>, QueryRejection>,
) -> Result<Json<Deleted>, HttpError> {
    let Query(project) = query.map_err(invalid_query)?;
    state
        .services
        .materials
        .delete_group(&account, &id, project.project_name.as_deref())
        .await?;
    Ok(Json(Deleted {
        deleted: true,
        id: id.to_string(),
    }))
}
