//! Downloads of result files through signed URLs: no API key needed, but a tampered or expired
//! signature is `403`. Range requests are served, so players can seek.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use seedgate_contract::{ApiError, ErrorBody, ErrorType};
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;
use utoipa::IntoParams;

use super::error::HttpError;
use super::ApiState;
use crate::assets::AssetKind;
use crate::store::now_ms;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Signature {
    /// Unix seconds after which the link stops working.
    exp: Option<u64>,
    /// The link's signature.
    sig: Option<String>,
}

fn forbidden() -> HttpError {
    HttpError(ApiError::new(
        403,
        ErrorType::InvalidRequestError,
        "invalid_signature",
        "This download link is invalid or has expired. Fetch the task again for a fresh link.",
    ))
}

/// Download a result file through the signed URL of a task object (`result.video_url`,
/// `result.last_frame_url`). No API key: the signature is the permission. Range requests are
/// served (`206`), so players can seek.
#[utoipa::path(
    get,
    path = "/v1/assets/{task_id}/{file}",
    operation_id = "download_asset",
    tag = "tasks",
    params(
        ("task_id" = String, Path, description = "The task id."),
        ("file" = String, Path, description = "`video.mp4` or `last_frame.png`."),
        Signature,
    ),
    responses(
        (status = 200, description = "The file.", content(("video/mp4"), ("image/png"))),
        (status = 206, description = "The requested byte range.", content(("video/mp4"), ("image/png"))),
        (status = 403, description = "`invalid_signature`: tampered or expired; read the task again for a fresh link.", body = ErrorBody),
        (status = 404, description = "`not_found`: an empty path segment.", body = ErrorBody),
    ),
)]
pub async fn download(
    State(state): State<ApiState>,
    Path((task_id, file)): Path<(String, String)>,
    signature: Result<Query<Signature>, QueryRejection>,
    request: Request<Body>,
) -> Result<Response, HttpError> {
    // A malformed query is as good as no signature.
    let Ok(Query(signature)) = signature else {
        return Err(forbidden());
    };
    let (Some(exp), Some(sig)) = (signature.exp, signature.sig) else {
        return Err(forbidden());
    };
    let kind = AssetKind::from_file_name(&file).ok_or_else(forbidden)?;
    let now = (now_ms() / 1000) as u64;
    if !state
        .services
        .assets
        .verify(&task_id, &file, exp, &sig, now)
    {
        return Err(forbidden());
    }
    let path = state.services.assets.path(&task_id, kind);
    match ServeFile::new(path).oneshot(request).await {
        Ok(response) => Ok(response.into_response()),
        Err(never) => match never {},
    }
}
