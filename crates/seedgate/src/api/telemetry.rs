//! Every request gets an id (the client's `X-Request-Id`, or a new one), echoed in the answer
//! and carried by its log lines; and every answer is counted and timed by route and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use super::ApiState;
use crate::telemetry::{HttpLabels, RequestId};

/// The route pattern a request matched, handed from inside the router to [`track`].
#[derive(Clone)]
struct Route(String);

/// Inside the router (where the matched route is known): marks the answer with it.
pub async fn mark_route(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| Route(path.as_str().to_owned()));
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

/// Around everything: the request id, then the request counted and timed once answered.
pub async fn track(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = RequestId::from_header(
        request
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok()),
    );
    let method = request.method().to_string();
    request.extensions_mut().insert(id.clone());
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id.0) {
        response.headers_mut().insert("x-request-id", value);
    }
    let route = response
        .extensions()
        .get::<Route>()
        .map_or_else(|| "unmatched".to_owned(), |route| route.0.clone());
    state.services.operations.http_request(
        HttpLabels {
            route,
            method,
            status: response.status().as_u16(),
        },
        started.elapsed(),
    );
    response
}
