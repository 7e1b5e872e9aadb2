//! Task endpoints: create, read, list, cancel. Each handler extracts, calls one service
//! function and renders the task object.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use seedgate_contract::{ApiError, ErrorType};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Authed;
use super::error::HttpError;
use super::view::{task_object, BaseUrl};
use super::ApiState;
use crate::store::now_ms;

fn now_s() -> u64 {
    (now_ms() / 1000) as u64
}

/// Maps a body that could not be read: too large is 413, anything else 400.
fn body_error(rejection: BytesRejection) -> HttpError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        HttpError(ApiError::new(
            413,
            ErrorType::InvalidRequestError,
            "request_too_large",
            "The request body is larger than this server accepts. Send large media as URLs.",
        ))
    } else {
        HttpError(ApiError::invalid(
            "invalid_body",
            None,
            format!("The request body could not be read: {rejection}"),
        ))
    }
}

pub async fn create(
    State(state): State<ApiState>,
    Authed(account): Authed,
    BaseUrl(base): BaseUrl,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let body = body.map_err(body_error)?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            HttpError(ApiError::invalid(
                "invalid_idempotency_key",
                Some("Idempotency-Key"),
                "Idempotency-Key must be visible ASCII.",
            ))
        })?),
    };
    let created = state
        .services
        .create_task(&account, &body, idempotency_key)
        .await?;
    let object = task_object(&created.task, &state.services, &base, now_s());
    let mut response = (StatusCode::ACCEPTED, Json(object)).into_response();
    if created.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

pub async fn get(
    State(state): State<ApiState>,
    Authed(account): Authed,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let task = state.services.task(&account, &id).await?;
    Ok(Json(task_object(&task, &state.services, &base, now_s())))
}

pub async fn cancel(
    State(state): State<ApiState>,
    Authed(account): Authed,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let task = state.services.cancel_task(&account, &id).await?;
    Ok(Json(task_object(&task, &state.services, &base, now_s())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    model: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
}

pub async fn list(
    State(state): State<ApiState>,
    Authed(account): Authed,
    BaseUrl(base): BaseUrl,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    let Query(query) = query.map_err(|e| {
        HttpError(ApiError::invalid(
            "invalid_query",
            None,
            format!("Invalid query string: {}", e.body_text()),
        ))
    })?;
    let page = state
        .services
        .list_tasks(
            &account,
            query.status.as_deref(),
            query.model.as_deref(),
            query.limit,
            query.after.as_deref(),
        )
        .await?;
    let now = now_s();
    let data: Vec<Value> = page
        .tasks
        .iter()
        .map(|t| task_object(t, &state.services, &base, now))
        .collect();
    let next_cursor = if page.has_more {
        page.tasks.last().map(|t| t.id.clone())
    } else {
        None
    };
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "has_more": page.has_more,
        "next_cursor": next_cursor,
    })))
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    token: Option<String>,
}

/// Upstream task notifications (the `callback_url` we hand the upstream): a hint to poll the
/// task now. Authenticated by a per-task token; the body is not trusted.
pub async fn upstream_callback(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    let token = query.ok().and_then(|Query(q)| q.token).unwrap_or_default();
    state.services.upstream_callback(&id, &token).await?;
    Ok(Json(json!({"received": true})))
}
