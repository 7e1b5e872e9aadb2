//! Surfaces that speak another vendor's wire (`/api/v3` Ark's, `/api/v1/videos` OpenRouter's)
//! answer the platform's refusals in that vendor's words: the same status and headers
//! (`Retry-After`, `WWW-Authenticate`), only the body rewritten by the surface's [`Dialect`].

use std::marker::PhantomData;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use seedgate_contract::{ApiError, Catalog, ErrorCode, WebhookFormat};
use serde_json::Value;

use super::auth::Authed;
use super::error::HttpError;
use super::tasks::{body_error, create_context};
use super::ApiState;
use crate::service::CreateContext;
use crate::store::{Account, Created};
use crate::telemetry::RequestId;

/// How a surface words the platform's errors.
pub trait Dialect: Send + Sync + 'static {
    fn in_its_words(error: &ApiError) -> Value;
}

/// Any refusal of a surface: the platform's error, answered in the surface's words.
pub struct DialectError<D>(ApiError, PhantomData<D>);

impl<D> std::fmt::Debug for DialectError<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<D> From<ApiError> for DialectError<D> {
    fn from(e: ApiError) -> Self {
        Self(e, PhantomData)
    }
}

impl<D> From<HttpError> for DialectError<D> {
    fn from(HttpError(e): HttpError) -> Self {
        Self(e, PhantomData)
    }
}

impl<D: Dialect> IntoResponse for DialectError<D> {
    fn into_response(self) -> Response {
        reworded::<D>(HttpError(self.0).into_response())
    }
}

/// The calling key, as [`Authed`] reads it (rate limit included), refused in the surface's
/// words.
pub struct DialectAuthed<D>(pub Arc<Account>, pub PhantomData<D>);

impl<D: Dialect> FromRequestParts<ApiState> for DialectAuthed<D> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Response> {
        match Authed::from_request_parts(parts, state).await {
            Ok(Authed(account)) => Ok(Self(account, PhantomData)),
            Err(refusal) => Err(reworded::<D>(refusal)),
        }
    }
}

/// A refusal rendered in the platform's words, reworded: its status and headers stay, only
/// the body changes.
pub fn reworded<D: Dialect>(mut response: Response) -> Response {
    let Some(error) = response.extensions().get::<ApiError>() else {
        return response;
    };
    let body = D::in_its_words(error).to_string();
    *response.body_mut() = Body::from(body);
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}

/// Creates the task a surface's create body asks for: `translate` reads it into the
/// platform's create body, which goes through the one parser and the one service, as `/v1`'s.
pub async fn create_translated(
    state: &ApiState,
    account: &Account,
    body: Result<Bytes, BytesRejection>,
    headers: &HeaderMap,
    request_id: &Option<Extension<RequestId>>,
    translate: fn(&Catalog, &[u8]) -> Result<Value, ApiError>,
    webhook_format: Option<WebhookFormat>,
) -> Result<Created, ApiError> {
    let body = body.map_err(|rejection| body_error(rejection).0)?;
    let request = translate(state.services.catalog.catalog(), &body)?;
    let request = serde_json::to_vec(&request)
        .map_err(|e| ApiError::new(ErrorCode::InvalidJson, e.to_string()))?;
    let context = CreateContext {
        webhook_format,
        ..create_context(headers, request_id).map_err(|e| e.0)?
    };
    state
        .services
        .tasks
        .create_task(account, &request, context)
        .await
}
