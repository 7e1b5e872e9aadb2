//! The public task object (SPEC §3), built from a stored task at read time so result URLs are
//! freshly signed and absolute.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use serde_json::{json, Value};

use super::error::HttpError;
use super::ApiState;
use crate::assets::{AssetKind, AssetStore};
use crate::engine::StoredResult;
use crate::service::{usd, Services};
use crate::store::{TaskRecord, TaskState};

/// The scheme and host clients reached us by, for absolute download URLs.
pub struct BaseUrl(pub String);

impl FromRequestParts<ApiState> for BaseUrl {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, HttpError> {
        if let Some(url) = &state.services.public_url {
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

fn seconds(ms: i64) -> i64 {
    ms / 1000
}

/// Renders one task for its owner.
pub fn task_object(task: &TaskRecord, services: &Services, base_url: &str, now_s: u64) -> Value {
    render_task(
        task,
        &services.assets,
        services.url_ttl_seconds,
        base_url,
        now_s,
    )
}

/// The task object with result URLs signed by `assets` for `url_ttl_seconds`; also the body of
/// webhooks.
pub fn render_task(
    task: &TaskRecord,
    assets: &AssetStore,
    url_ttl_seconds: u64,
    base_url: &str,
    now_s: u64,
) -> Value {
    let cancelled = task.state == TaskState::Cancelled;
    let request: Value = serde_json::from_str(&task.request_json).unwrap_or(Value::Null);
    let mut object = json!({
        "id": task.id,
        "task_id": task.id,
        "object": "video.task",
        "model": task.model,
        "provider": task.provider,
        "operation": task.operation,
        "status": task.state.public_status(),
        "cancelled": cancelled,
        "created_at": seconds(task.created_at_ms),
        "updated_at": seconds(task.updated_at_ms),
        "completed_at": task.completed_at_ms.map(seconds),
        "poll_url": format!("/v1/tasks/{}", task.id),
        "request": request,
        "result": null,
        "usage": null,
        "cost": null,
        "estimated_cost": {"currency": "USD", "amount": usd(task.reserved_usd_micros), "tokens": task.estimated_tokens},
        "error": null,
    });
    if cancelled {
        object["cancellation_status"] = "cancelled".into();
    }
    if let (Some(code), Some(message)) = (&task.error_code, &task.error_message) {
        object["error"] = json!({"code": code, "message": message});
    }
    if task.state == TaskState::Succeeded {
        add_result(&mut object, task, assets, url_ttl_seconds, base_url, now_s);
    }
    object
}

fn add_result(
    object: &mut Value,
    task: &TaskRecord,
    assets: &AssetStore,
    url_ttl_seconds: u64,
    base_url: &str,
    now_s: u64,
) {
    let Some(result) = task
        .result_json
        .as_deref()
        .and_then(|r| serde_json::from_str::<StoredResult>(r).ok())
    else {
        return;
    };
    let expires = now_s + url_ttl_seconds;
    let video_url = format!(
        "{base_url}{}",
        assets.signed_path(&task.id, AssetKind::Video, expires)
    );
    let last_frame_url = format!(
        "{base_url}{}",
        assets.signed_path(&task.id, AssetKind::LastFrame, expires)
    );
    object["result"] = json!({
        "video_url": video_url,
        "last_frame_url": last_frame_url,
        "width": result.width,
        "height": result.height,
        "fps": result.fps,
        "duration": result.duration,
        "has_audio": result.has_audio,
        "expires_at": expires,
    });
    object["usage"] = json!({"tokens": task.usage_tokens});
    if let Some(micros) = task.cost_usd_micros {
        object["cost"] = json!({"currency": "USD", "amount": usd(micros), "cny": task.cost_cny});
    }
    object["video_url"] = video_url.clone().into();
    object["last_frame_url"] = last_frame_url.into();
    object["video"] = json!({
        "url": video_url,
        "duration": result.duration,
        "width": result.width,
        "height": result.height,
    });
}
