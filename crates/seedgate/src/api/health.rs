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
    reason: Option<String>,
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

/// Prometheus metrics: requests and their latency by route and status; tasks open by model and
/// status, tasks ended by model, provider, status and failure code, their queue wait and
/// generation time; the queue, upstream calls by channel and outcome, circuit breakers, the
/// webhook backlog, money charged (a counter) and balances and reservations (gauges), and the
/// build. OpenMetrics by default; the classic text format (0.0.4) when the `Accept` header asks
/// for `text/plain` and not OpenMetrics. No key: keep it on the private network.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses(
        (status = 200, description = "The metrics.", content(
            (String = "application/openmetrics-text"),
            (String = "text/plain"),
        )),
    ),
)]
pub async fn metrics(
    State(state): State<ApiState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, HttpError> {
    let text = state.services.operations.metrics().await?;
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let classic = accept.contains("text/plain") && !accept.contains("application/openmetrics-text");
    Ok(if classic {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            crate::telemetry::classic_text(&text),
        )
            .into_response()
    } else {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response()
    })
}
