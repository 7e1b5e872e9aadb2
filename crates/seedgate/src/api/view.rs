//! What a task answer needs from the request: the base URL absolute download links start
//! with. The task object itself is `task_view`, shared with webhooks.

use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::HttpError;
use super::ApiState;
use crate::service::TaskService;
use crate::store::TaskRecord;
use crate::task_view::{render_task, TaskObject};

/// The scheme and host clients reached us by, for absolute download URLs.
pub struct BaseUrl(pub String);

impl FromRequestParts<ApiState> for BaseUrl {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, HttpError> {
        if let Some(url) = state.services.tasks.public_url() {
            return Ok(BaseUrl(url.trim_end_matches('/').to_owned()));
        }
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let scheme = parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .filter(|p| *p == "https")
            .unwrap_or("http");
        Ok(BaseUrl(format!("{scheme}://{host}")))
    }
}

/// Renders one task for its owner.
pub fn task_object(
    task: &TaskRecord,
    tasks: &TaskService,
    base_url: &str,
    now_s: u64,
) -> TaskObject {
    render_task(task, tasks.links(), tasks.catalog(), base_url, now_s)
}

/// `value` encoded as JSON (types whose encoding cannot fail).
pub(super) fn to_bytes<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// An answer already encoded as JSON.
pub(super) fn json_body(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
