//! The one place an error becomes an HTTP response, in the platform's shape
//! `{"error":{"message","type","code","param",…}}`.

use axum::extract::rejection::QueryRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use seedgate_contract::{ApiError, ErrorType};

/// Wraps the contract's error so it can leave a handler.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.0.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub fn not_found() -> HttpError {
    HttpError(ApiError::new(
        404,
        ErrorType::InvalidRequestError,
        "not_found",
        "No such endpoint. See /v1/models, /v1/videos/generations and /v1/tasks.",
    ))
}

pub fn method_not_allowed() -> HttpError {
    HttpError(ApiError::new(
        405,
        ErrorType::InvalidRequestError,
        "method_not_allowed",
        "This endpoint does not accept that HTTP method.",
    ))
}

/// A query string that does not fit its endpoint: an unknown or repeated parameter, a value
/// of the wrong type.
pub fn invalid_query(rejection: QueryRejection) -> HttpError {
    HttpError(ApiError::invalid(
        "invalid_query",
        None,
        format!("Invalid query string: {}", rejection.body_text()),
    ))
}
