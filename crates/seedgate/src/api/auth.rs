//! `Authorization: Bearer <key>` → the key's account, or `invalid_api_key` (`expired_api_key`
//! past its expiry); then the key's request rate, or `rate_limit_exceeded` with
//! `Retry-After` and `X-RateLimit-*`. The management API takes an organization's management
//! token the same way; neither kind of secret opens the other's paths.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use seedgate_contract::{ApiError, ErrorCode};

use super::error::HttpError;
use super::ApiState;
use crate::limits::Decision;
use crate::store::{now_ms, Account, Organization};

/// The authenticated caller.
pub struct Authed(pub Arc<Account>);

/// The organization whose management token came with the request.
pub struct OrgAuthed(pub Organization);

fn unauthorized(message: &str) -> HttpError {
    HttpError(ApiError::new(ErrorCode::InvalidApiKey, message))
}

/// `rate_limit_exceeded` with the headers clients need to back off, as the platform's
/// document gives them: the limit per minute and the reset as a Unix time; `Retry-After` in
/// seconds.
fn rate_limited(decision: Decision) -> Response {
    let mut response = HttpError(ApiError::new(
        ErrorCode::RateLimitExceeded,
        format!(
            "Too many requests for this key; retry in {} s.",
            decision.retry_after_seconds
        ),
    ))
    .into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("retry-after", decision.retry_after_seconds),
        ("x-ratelimit-limit", u64::from(decision.limit_per_minute)),
        ("x-ratelimit-remaining", u64::from(decision.remaining)),
        (
            "x-ratelimit-reset",
            (now_ms() / 1000).max(0) as u64 + decision.reset_seconds,
        ),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    response
}

impl FromRequestParts<ApiState> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Response> {
        let secret = bearer(parts, "API key").map_err(IntoResponse::into_response)?;
        let accounts = &state.services.accounts;
        let account = accounts
            .authenticate(secret)
            .await
            .map_err(|e| HttpError(e).into_response())?;
        let decision = accounts.admit(&account);
        if !decision.allowed {
            return Err(rate_limited(decision));
        }
        Ok(Authed(account))
    }
}

/// The bearer secret of a request.
fn bearer<'a>(parts: &'a Parts, kind: &str) -> Result<&'a str, HttpError> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            unauthorized(&format!(
                "Missing {kind}. Send it as `Authorization: Bearer <{kind}>`."
            ))
        })?;
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unauthorized("Malformed Authorization header. Use `Bearer <secret>`."))
}

impl FromRequestParts<ApiState> for OrgAuthed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Response> {
        let token = bearer(parts, "management token").map_err(IntoResponse::into_response)?;
        let management = &state.services.management;
        let organization = management
            .authenticate(token)
            .await
            .map_err(|e| HttpError(e).into_response())?;
        let decision = management.admit(&organization);
        if !decision.allowed {
            return Err(rate_limited(decision));
        }
        Ok(OrgAuthed(organization))
    }
}
