//! Downloads of result files through signed URLs: no API key needed, but a tampered or expired
//! signature is `403`. Range requests are served, so players can seek.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use seedgate_contract::{ApiError, ErrorType};
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::error::HttpError;
use super::ApiState;
use crate::assets::AssetKind;
use crate::store::now_ms;

#[derive(Deserialize)]
pub struct Signature {
    exp: Option<u64>,
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
