//! Liveness and readiness for load balancers and orchestrators; no key needed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::HttpError;
use super::ApiState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `unavailable`.
    status: &'static str,
    /// Why the server is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses((status = 200, description = "Up.", body = Health)),
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        reason: None,
    })
}

/// The process is up, and can write its database and its result store.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready to serve.", body = Health),
        (status = StatusCode::SERVICE_UNAVAILABLE, description = "The database is unreachable or refuses writes, or the result store refuses writes (a full disk, say).", body = Health),
    ),
)]
pub async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<Health>) {
    match state.services.operations.readiness().await {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: "ready",
                reason: None,
            }),
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable",
                reason: Some(reason),
            }),
        ),
    }
}

/// Prometheus metrics in the text format: requests and their latency by route and status,
/// tasks by model and state, the queue, upstream calls by channel and outcome, circuit
/// breakers, the webhook backlog and the money. No key: keep it on the private network.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses(
        (status = 200, description = "The metrics.", content_type = "application/openmetrics-text", body = String),
    ),
)]
pub async fn metrics(State(state): State<ApiState>) -> Result<Response, HttpError> {
    let text = state.services.operations.metrics().await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
