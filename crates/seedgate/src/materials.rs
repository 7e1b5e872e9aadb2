//! The material library's work: an asset's source is fetched through the guarded client, held
//! to the upstream's input rules and kept in the asset store (`PROCESSING` → `ACTIVE` or
//! `FAILED`, never left processing: a processor that dies leaves its lease to run out, and the
//! background loop takes the asset again). A task's `asset://` inputs reach providers as the
//! bytes they name. Also the rules of the library's request bodies, apart from HTTP.

use std::sync::Arc;
use std::time::Duration;

use seedgate_contract::{ApiError, ClipLimits, ErrorCode, MediaInput, VideoJob};
use serde_json::{Map, Value};
use tracing::{info, warn};

use crate::blobs::{BlobError, Blobs};
use crate::fetch::{Fetcher, MediaKind};
use crate::ids::{MaterialGroupId, MaterialId};
use crate::inputs::{check_input, content_type};
use crate::store::materials::{
    AssetType, AssetUpdate, GroupUpdate, LibraryType, MaterialAsset, MaterialStatus, Processed,
};
use crate::store::{Store, StoreError};

/// How long a processor holds an asset: a fetch (bounded by `fetch.timeout_seconds`), the
/// checks and the upload fit well within it.
pub const PROCESS_LEASE_MS: i64 = 5 * 60 * 1000;

/// Where an asset's bytes are kept in the asset store.
pub fn blob_key(id: &MaterialId) -> String {
    format!("materials/{id}")
}

fn media_kind(asset_type: AssetType) -> MediaKind {
    match asset_type {
        AssetType::Image => MediaKind::Image,
        AssetType::Video => MediaKind::Video,
        AssetType::Audio => MediaKind::Audio,
    }
}

/// Why a task's `asset://` input cannot be used.
#[derive(Debug)]
pub enum Unusable {
    /// For good: the task fails uncharged with this code and message.
    Refused(&'static str, String),
    /// The store could not be read; try again later.
    Unavailable(String),
}

pub struct Materials {
    store: Store,
    fetcher: Fetcher,
    blobs: Arc<dyn Blobs>,
}

impl Materials {
    pub fn new(store: Store, fetcher: Fetcher, blobs: Arc<dyn Blobs>) -> Self {
        Self {
            store,
            fetcher,
            blobs,
        }
    }

    /// Processes an asset whose lease this process holds; returns it as it now stands.
    pub async fn process(&self, asset: MaterialAsset) -> Result<MaterialAsset, StoreError> {
        let outcome = match self.ingest(&asset).await {
            Ok(outcome) => outcome,
            Err(e) => {
                // Left PROCESSING under its lease: the background loop takes it again.
                warn!(asset = %asset.id, error = %e, "storing a material failed; will retry");
                return Ok(asset);
            }
        };
        match self
            .store
            .finish_asset(&asset.id, &asset.source_url, &outcome)
            .await?
        {
            Some(done) => {
                info!(asset = %done.id, status = done.status.as_str(), "material processed");
                Ok(done)
            }
            // Deleted, or given another source, meanwhile: that change stands.
            None => {
                if matches!(outcome, Processed::Active { .. })
                    && self
                        .store
                        .material(&asset.id)
                        .await?
                        .is_some_and(|now| now.status == MaterialStatus::Deleted)
                {
                    self.delete_files(std::slice::from_ref(&asset.id)).await;
                }
                Ok(self.store.material(&asset.id).await?.unwrap_or(asset))
            }
        }
    }

    /// Fetches, checks and stores the source; an unusable source is a `Failed` outcome, a
    /// storage failure an error.
    async fn ingest(&self, asset: &MaterialAsset) -> Result<Processed, BlobError> {
        let kind = media_kind(asset.asset_type);
        let failed = |message: String| Processed::Failed { message };
        let bytes = match self
            .fetcher
            .fetch_url(&asset.source_url, self.fetcher.limit(kind))
            .await
        {
            Ok(bytes) => bytes,
            Err(e) => return Ok(failed(format!("The source could not be fetched: {e}."))),
        };
        if let Err(e) = check_input("asset_url", kind, &bytes, ClipLimits::default()) {
            return Ok(failed(e.message));
        }
        let Some(content_type) = content_type(kind, &bytes) else {
            return Ok(failed(
                "The source is not a JPEG, PNG or WebP image.".into(),
            ));
        };
        let size_bytes = self.blobs.put_bytes(&blob_key(&asset.id), bytes).await?;
        Ok(Processed::Active {
            content_type: content_type.to_owned(),
            size_bytes: i64::try_from(size_bytes).unwrap_or(i64::MAX),
        })
    }

    /// Takes over, every `interval`, assets whose processor died mid-way.
    pub fn spawn(self: Arc<Self>, interval: Duration) {
        tokio::spawn(async move {
            loop {
                loop {
                    match self.store.claim_unprocessed_asset(PROCESS_LEASE_MS).await {
                        Ok(Some(asset)) => {
                            if let Err(e) = self.process(asset).await {
                                warn!(error = %e, "processing a material failed");
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            warn!(error = %e, "looking for unprocessed materials failed");
                            break;
                        }
                    }
                }
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// Deletes the stored bytes of deleted assets; what fails to go is only space.
    pub async fn delete_files(&self, ids: &[MaterialId]) {
        for id in ids {
            if let Err(e) = self.blobs.delete(&blob_key(id)).await {
                warn!(asset = %id, error = %e, "deleting a material's file failed");
            }
        }
    }

    /// The job with each `asset://` input replaced by the bytes it names, inline; the job as
    /// it is when it names none.
    pub async fn resolve(&self, job: &VideoJob) -> Result<VideoJob, Unusable> {
        let mut job = job.clone();
        let inputs = &mut job.inputs;
        let slots = inputs
            .image
            .iter_mut()
            .chain(inputs.start_image.iter_mut())
            .chain(inputs.end_image.iter_mut())
            .chain(inputs.reference_images.iter_mut());
        for input in slots {
            let Some(id) = input.asset_id() else { continue };
            let id = MaterialId::new(id);
            let asset = self
                .store
                .material(&id)
                .await
                .map_err(|e| Unusable::Unavailable(e.to_string()))?;
            let usable = asset
                .filter(|a| a.status == MaterialStatus::Active && a.asset_type == AssetType::Image);
            let Some(asset) = usable else {
                return Err(Unusable::Refused(
                    "asset_not_found",
                    format!("The material asset `{id}` is no longer available."),
                ));
            };
            let bytes = self
                .blobs
                .read(&blob_key(&id))
                .await
                .map_err(|e| Unusable::Unavailable(e.to_string()))?;
            let mime = asset.content_type.as_deref().unwrap_or("image/png");
            *input = MediaInput::inline(mime, &bytes);
        }
        Ok(job)
    }
}

// ---------------------------------------------------------------------------------------
// Request bodies

/// Longest asset or group name, project name; longest group description.
const MAX_NAME_CHARS: usize = 128;
const MAX_DESCRIPTION_CHARS: usize = 500;
pub const DEFAULT_PROJECT: &str = "default";

/// An asset to create, as the client asked for it.
#[derive(Debug, PartialEq)]
pub struct NewAssetRequest {
    pub asset_url: String,
    pub asset_name: Option<String>,
    pub asset_type: AssetType,
    pub group_id: Option<MaterialGroupId>,
    pub project_name: String,
    pub metadata: Option<String>,
}

/// A group to create.
#[derive(Debug, PartialEq)]
pub struct NewGroupRequest {
    pub group_name: Option<String>,
    pub description: Option<String>,
    pub project_name: String,
    pub metadata: Option<String>,
}

/// The library's request fields, read one by one with the platform's rules.
struct Body(Map<String, Value>);

fn invalid(code: ErrorCode, param: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message).with_param(param)
}

impl Body {
    fn parse(body: &[u8], allowed: &[&str]) -> Result<Self, ApiError> {
        let map = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidJson,
                    "The body must be a JSON object.",
                ))
            }
            Err(e) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidJson,
                    format!("The body is not valid JSON: {e}."),
                ))
            }
        };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(invalid(
                ErrorCode::UnknownField,
                unknown,
                format!(
                    "Unknown field `{unknown}`. Accepted fields: {}.",
                    allowed.join(", ")
                ),
            ));
        }
        Ok(Self(map))
    }

    fn given(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    /// A string of 1–`max` characters (after trimming), or None when absent.
    fn text(&self, field: &str, max: usize) -> Result<Option<String>, ApiError> {
        match self.0.get(field) {
            None => Ok(None),
            Some(Value::String(text)) => {
                let text = text.trim();
                if text.is_empty() || text.chars().count() > max || text.contains('\0') {
                    return Err(invalid(
                        ErrorCode::InvalidField,
                        field,
                        format!("`{field}` must be 1 to {max} characters."),
                    ));
                }
                Ok(Some(text.to_owned()))
            }
            Some(_) => Err(invalid(
                ErrorCode::InvalidField,
                field,
                format!("`{field}` must be a string."),
            )),
        }
    }

    /// Like [`Body::text`], but `null` is a value: Some(None).
    fn nullable_text(&self, field: &str, max: usize) -> Result<Option<Option<String>>, ApiError> {
        match self.0.get(field) {
            Some(Value::Null) => Ok(Some(None)),
            _ => Ok(self.text(field, max)?.map(Some)),
        }
    }

    /// A JSON object kept as text, `null` clearing it.
    fn metadata(&self) -> Result<Option<Option<String>>, ApiError> {
        match self.0.get("metadata") {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(object @ Value::Object(_)) => {
                let text = object.to_string();
                if text.len() > 16 * 1024 || text.contains('\0') {
                    return Err(invalid(
                        ErrorCode::InvalidField,
                        "metadata",
                        "`metadata` is at most 16 KiB of JSON.",
                    ));
                }
                Ok(Some(Some(text)))
            }
            Some(_) => Err(invalid(
                ErrorCode::InvalidField,
                "metadata",
                "`metadata` must be an object or null.",
            )),
        }
    }

    fn choice<T: Copy>(
        &self,
        field: &str,
        parse: fn(&str) -> Option<T>,
        names: &str,
    ) -> Result<Option<T>, ApiError> {
        match self.0.get(field) {
            None => Ok(None),
            Some(Value::String(text)) => parse(text).map(Some).ok_or_else(|| {
                invalid(
                    ErrorCode::InvalidField,
                    field,
                    format!("`{field}` must be one of {names}."),
                )
            }),
            Some(_) => Err(invalid(
                ErrorCode::InvalidField,
                field,
                format!("`{field}` must be one of {names}."),
            )),
        }
    }

    fn project(&self) -> Result<String, ApiError> {
        Ok(self
            .text("project_name", MAX_NAME_CHARS)?
            .unwrap_or_else(|| DEFAULT_PROJECT.to_owned()))
    }

    fn asset_type(&self) -> Result<Option<AssetType>, ApiError> {
        self.choice("asset_type", AssetType::parse, "Image, Video, Audio")
    }

    /// Real-person material needs the platform's identity check, which this server cannot
    /// make: refused, whatever else the body says.
    fn library_type(&self) -> Result<LibraryType, ApiError> {
        let library = self
            .choice(
                "library_type",
                LibraryType::parse,
                "aigc_avatar, liveness_face",
            )?
            .unwrap_or(LibraryType::AigcAvatar);
        if library == LibraryType::LivenessFace {
            return Err(ApiError::new(
                ErrorCode::LivenessFaceUnsupported,
                "Real-person (`liveness_face`) material needs an identity check this server \
                 cannot make; only `aigc_avatar` material is accepted.",
            )
            .with_param("library_type"));
        }
        Ok(library)
    }

    fn asset_url(&self) -> Result<Option<String>, ApiError> {
        let Some(url) = self.text("asset_url", seedgate_contract::parse::MAX_URL_CHARS)? else {
            return Ok(None);
        };
        let parsed = reqwest::Url::parse(&url).ok();
        let web =
            parsed.is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !web {
            return Err(invalid(
                ErrorCode::InvalidField,
                "asset_url",
                "`asset_url` must be an http(s) URL the server can fetch.",
            ));
        }
        Ok(Some(url))
    }
}

const ASSET_FIELDS: [&str; 7] = [
    "asset_url",
    "asset_name",
    "asset_type",
    "library_type",
    "group_id",
    "project_name",
    "metadata",
];

/// `POST /v1/videos/assets`.
pub fn parse_new_asset(body: &[u8]) -> Result<NewAssetRequest, ApiError> {
    let body = Body::parse(body, &ASSET_FIELDS)?;
    let asset_url = body.asset_url()?.ok_or_else(|| {
        invalid(
            ErrorCode::MissingField,
            "asset_url",
            "`asset_url` is required.",
        )
    })?;
    let request = NewAssetRequest {
        asset_url,
        asset_name: body.text("asset_name", MAX_NAME_CHARS)?,
        asset_type: body.asset_type()?.unwrap_or(AssetType::Image),
        group_id: body
            .text("group_id", MAX_NAME_CHARS)?
            .map(MaterialGroupId::new),
        project_name: body.project()?,
        metadata: body.metadata()?.flatten(),
    };
    body.library_type()?;
    Ok(request)
}

/// `PUT /v1/videos/assets/{id}`: at least one field; the project names the asset's scope.
pub fn parse_asset_update(body: &[u8]) -> Result<(AssetUpdate, Option<String>), ApiError> {
    let allowed = [
        "asset_url",
        "asset_name",
        "asset_type",
        "project_name",
        "metadata",
    ];
    let body = Body::parse(body, &allowed)?;
    if body.0.is_empty() {
        return Err(ApiError::new(
            ErrorCode::EmptyUpdate,
            "Give at least one of asset_url, asset_name, asset_type or metadata.",
        ));
    }
    let update = AssetUpdate {
        asset_name: body.text("asset_name", MAX_NAME_CHARS)?,
        asset_type: body.asset_type()?,
        source_url: body.asset_url()?,
        metadata: body.metadata()?,
    };
    let project = body
        .given("project_name")
        .then(|| body.project())
        .transpose()?;
    Ok((update, project))
}

/// `POST /v1/videos/assets/groups`.
pub fn parse_new_group(body: &[u8]) -> Result<NewGroupRequest, ApiError> {
    let body = Body::parse(
        body,
        &[
            "group_name",
            "description",
            "library_type",
            "project_name",
            "metadata",
        ],
    )?;
    let request = NewGroupRequest {
        group_name: body.text("group_name", MAX_NAME_CHARS)?,
        description: body
            .nullable_text("description", MAX_DESCRIPTION_CHARS)?
            .flatten(),
        project_name: body.project()?,
        metadata: body.metadata()?.flatten(),
    };
    body.library_type()?;
    Ok(request)
}

/// `PUT /v1/videos/assets/groups/{id}`.
pub fn parse_group_update(body: &[u8]) -> Result<(GroupUpdate, Option<String>), ApiError> {
    let body = Body::parse(
        body,
        &["group_name", "description", "project_name", "metadata"],
    )?;
    let update = GroupUpdate {
        group_name: body.text("group_name", MAX_NAME_CHARS)?,
        description: body.nullable_text("description", MAX_DESCRIPTION_CHARS)?,
        metadata: body.metadata()?,
    };
    let project = body
        .given("project_name")
        .then(|| body.project())
        .transpose()?;
    if update.group_name.is_none() && update.description.is_none() && update.metadata.is_none() {
        return Err(ApiError::new(
            ErrorCode::EmptyUpdate,
            "Give at least one of group_name, description or metadata.",
        ));
    }
    Ok((update, project))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(value: serde_json::Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    #[test]
    fn a_new_asset_takes_the_documents_defaults() {
        let asset = parse_new_asset(&json(
            serde_json::json!({"asset_url": "https://e.com/a.png"}),
        ))
        .unwrap();
        assert_eq!(
            asset,
            NewAssetRequest {
                asset_url: "https://e.com/a.png".into(),
                asset_name: None,
                asset_type: AssetType::Image,
                group_id: None,
                project_name: "default".into(),
                metadata: None,
            }
        );
        let full = parse_new_asset(&json(serde_json::json!({"asset_url": "http://e.com/v.mp4",
            "asset_name": "Front", "asset_type": "Video", "library_type": "aigc_avatar",
            "group_id": "group-20260720123456-vrt01", "project_name": "ads",
            "metadata": {"by": "team"}})))
        .unwrap();
        assert_eq!(full.asset_type, AssetType::Video);
        assert_eq!(full.metadata.as_deref(), Some(r#"{"by":"team"}"#));
    }

    #[test]
    fn bad_asset_bodies_name_their_field() {
        for (body, code, param) in [
            (serde_json::json!({}), "missing_field", Some("asset_url")),
            (
                serde_json::json!({"asset_url": "ftp://e.com/a"}),
                "invalid_field",
                Some("asset_url"),
            ),
            (
                serde_json::json!({"asset_url": "asset://x"}),
                "invalid_field",
                Some("asset_url"),
            ),
            (
                serde_json::json!({"asset_url": "https://e.com/a", "asset_type": "Gif"}),
                "invalid_field",
                Some("asset_type"),
            ),
            (
                serde_json::json!({"asset_url": "https://e.com/a", "extra": 1}),
                "unknown_field",
                Some("extra"),
            ),
            (
                serde_json::json!({"asset_url": "https://e.com/a", "asset_name": ""}),
                "invalid_field",
                Some("asset_name"),
            ),
            (
                serde_json::json!({"asset_url": "https://e.com/a", "metadata": [1]}),
                "invalid_field",
                Some("metadata"),
            ),
            (
                serde_json::json!({"asset_url": "https://e.com/a", "library_type": "liveness_face"}),
                "liveness_face_unsupported",
                Some("library_type"),
            ),
        ] {
            let error = parse_new_asset(&json(body.clone())).unwrap_err();
            assert_eq!(
                (error.code.as_str(), error.param.as_deref()),
                (code, param),
                "{body}"
            );
        }
    }

    #[test]
    fn updates_need_a_field_and_null_clears() {
        assert_eq!(
            parse_asset_update(b"{}").unwrap_err().code.as_str(),
            "empty_update"
        );
        let (update, project) = parse_asset_update(&json(
            serde_json::json!({"metadata": null, "project_name": "ads"}),
        ))
        .unwrap();
        assert_eq!(update.metadata, Some(None));
        assert_eq!(project.as_deref(), Some("ads"));
        let (group, _) =
            parse_group_update(&json(serde_json::json!({"description": null}))).unwrap();
        assert_eq!(group.description, Some(None));
        assert_eq!(
            parse_group_update(&json(serde_json::json!({"project_name": "ads"})))
                .unwrap_err()
                .code
                .as_str(),
            "empty_update"
        );
        assert_eq!(
            parse_new_group(&json(serde_json::json!({"library_type": "liveness_face"})))
                .unwrap_err()
                .code
                .as_str(),
            "liveness_face_unsupported"
        );
    }
}
