//! `Authorization: Bearer <key>` → the key's account, or `401 invalid_api_key`.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use seedgate_contract::{ApiError, ErrorType};

use super::error::HttpError;
use super::ApiState;
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

impl FromRequestParts<ApiState> for Authed {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, HttpError> {
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
        let account = state
            .services
            .store
            .account_by_secret(secret)
            .await
            .map_err(|e| HttpError(internal(e)))?
            .ok_or_else(|| unauthorized("Invalid or revoked API key."))?;
        Ok(Authed(account))
    }
}
