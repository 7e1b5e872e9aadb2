//! Every request gets an id (the client's `X-Request-Id`, or a new one), echoed in the answer
//! and carried by its log lines; and every answer is counted and timed by route and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::ApiState;
use crate::telemetry::RequestId;

/// Around every route and the fallback (axum applies a router's layers to each route, after
/// routing, so the matched route is known here): the request's id and span, then the request
/// counted and timed once answered.
pub async fn track(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = RequestId::from_header(
        request
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok()),
    );
    let echoed = HeaderValue::from_str(&id.0).ok();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    // The span's fields are in every line logged while the request is served. Method and path
    // only: query strings hold download signatures.
    let span =
        tracing::info_span!("http", method, path = %request.uri().path(), request_id = %id.0);
    request.extensions_mut().insert(id);
    let mut response = next.run(request).instrument(span.clone()).await;
    let took = started.elapsed();
    let status = response.status();
    if status.is_server_error() {
        tracing::error!(parent: &span, status = status.as_u16(), ?took, "answered with a server error");
    } else {
        tracing::debug!(parent: &span, status = status.as_u16(), ?took, "answered");
    }
    if let Some(echoed) = echoed {
        response.headers_mut().insert("x-request-id", echoed);
    }
    state
        .services
        .operations
        .http_request(&route, method, status.as_u16(), took);
    response
}

/// A method as a metric label: one of the standard ones, or `other`, so a client inventing
/// methods cannot add series without bound.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD
        .iter()
        .find(|standard| *standard == method)
        .map_or("other", Method::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        let invented = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&invented), "other");
    }
}
