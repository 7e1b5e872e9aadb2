//! `Authorization: Bearer <key>` → the key's account, or `401 invalid_api_key`; then the key's
//! request rate, or `429 rate_limit_exceeded` with `Retry-After` and `X-RateLimit-*`.

use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use seedgate_contract::{ApiError, ErrorType};

use super::error::HttpError;
use super::ApiState;
use crate::limits::Decision;
use crate::service::internal;
use crate::store::Account;

/// The authenticated caller.
pub struct Authed(pub Account);

fn unauthorized(message: &str) -> HttpError {
    HttpError(ApiError::new(
        401,
        ErrorType::InvalidApiKey,
        "invalid_api_key",
        message,
    ))
}

/// A `429` with the headers clients need to back off.
fn rate_limited(decision: Decision) -> Response {
    let mut response = HttpError(ApiError::new(
        429,
        ErrorType::RateLimitExceeded,
        "rate_limit_exceeded",
        format!(
            "Too many requests for this key; retry in {} s.",
            decision.retry_after_seconds
        ),
    ))
    .into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("retry-after", decision.retry_after_seconds),
        ("x-ratelimit-limit", u64::from(decision.limit)),
        ("x-ratelimit-remaining", u64::from(decision.remaining)),
        ("x-ratelimit-reset", decision.reset_seconds),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    response
}

impl FromRequestParts<ApiState> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Response> {
        let account = authenticate(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let services = &state.services;
        let limits = &services.rate_limit;
        let (rate, burst) = match account.requests_per_second {
            // A key's own rate comes with a burst of two seconds' worth.
            Some(rate) => limits.share(rate, rate.saturating_mul(2)),
            None => limits.share(limits.requests_per_second, limits.burst),
        };
        let decision = services
            .limiter
            .check(&account.id, rate, burst, Instant::now());
        if !decision.allowed {
            return Err(rate_limited(decision));
        }
        Ok(Authed(account))
    }
}

async fn authenticate(parts: &Parts, state: &ApiState) -> Result<Account, HttpError> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            unauthorized("Missing API key. Send it as `Authorization: Bearer <key>`.")
        })?;
    let secret = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unauthorized("Malformed Authorization header. Use `Bearer <key>`."))?;
    state
        .services
        .store
        .account_by_secret(secret)
        .await
        .map_err(|e| HttpError(internal(e)))?
        .ok_or_else(|| unauthorized("Invalid or revoked API key."))
}
