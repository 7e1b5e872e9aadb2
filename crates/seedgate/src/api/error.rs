//! The one place an error becomes an HTTP response, in the platform's shape
//! `{"error":{"message","type","code","param",…}}`, and the one place the OpenAPI document
//! describes error responses: both take the status from the code.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use seedgate_contract::{ApiError, ErrorCode};
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::response::Response as DocResponse;
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::PartialSchema;

/// Wraps the contract's error so it can leave a handler.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

/// The HTTP status of a code. The contract's tests hold every code to a 4xx or 5xx, so the
/// fallback is never taken.
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Ark's error code for one of our refusals, with the `type` Ark gives it (docs/ark.md has the
/// table). `None` where Ark documents no refusal of its own for it: the client then gets ours.
/// Codes not named here are refusals of the request itself when they answer Bad Request or
/// Payload Too Large (Ark's `InvalidParameter`), and our own faults when a server error.
pub fn ark_code(code: ErrorCode) -> Option<(&'static str, &'static str)> {
    const BAD_REQUEST: &str = "BadRequest";
    Some(match code {
        ErrorCode::MissingField | ErrorCode::MissingVisualReference => {
            ("MissingParameter", BAD_REQUEST)
        }
        ErrorCode::UnknownModel | ErrorCode::ModelNotFound => {
            ("InvalidEndpointOrModel.NotFound", "NotFound")
        }
        ErrorCode::ModelNotAllowed => ("ModelNotOpen", "NotFound"),
        ErrorCode::InvalidApiKey | ErrorCode::ExpiredApiKey => {
            ("AuthenticationError", "Unauthorized")
        }
        ErrorCode::InsufficientBalance => ("AccountOverdueError", "Forbidden"),
        ErrorCode::KeyLimitExceeded => ("QuotaExceeded", "TooManyRequests"),
        ErrorCode::RateLimitExceeded => ("ModelAccountRpmRateLimitExceeded", "TooManyRequests"),
        ErrorCode::AsyncTaskNotFound => ("ResourceNotFound", "NotFound"),
        ErrorCode::UpstreamUnavailable => ("ServerOverloaded", "TooManyRequests"),
        ErrorCode::IdempotencyConflict
        | ErrorCode::TaskNotCancellable
        | ErrorCode::SeedanceMaterialPreparing => return None,
        _ => {
            let status = status_of(code);
            if status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE {
                ("InvalidParameter", BAD_REQUEST)
            } else if status.is_server_error() {
                ("InternalServiceError", "InternalServerError")
            } else {
                return None;
            }
        }
    })
}

/// How long a client is told to wait while the database or the result store is down: a
/// restart or a failover takes seconds.
const STORAGE_RETRY_AFTER_SECONDS: &str = "5";

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.code);
        let mut response = (status, axum::Json(self.0.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.0.code == ErrorCode::StorageUnavailable {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(STORAGE_RETRY_AFTER_SECONDS),
            );
        }
        // Kept beside the body so the Ark surface can reword a refusal an extractor has
        // already rendered (with its headers) without reading the body back.
        response.extensions_mut().insert(self.0);
        response
    }
}

pub fn not_found() -> HttpError {
    HttpError(ApiError::new(
        ErrorCode::NotFound,
        "No such endpoint. See /v1/models, /v1/videos/generations and /v1/tasks.",
    ))
}

pub fn method_not_allowed() -> HttpError {
    HttpError(ApiError::new(
        ErrorCode::MethodNotAllowed,
        "This endpoint does not accept that HTTP method.",
    ))
}

/// A query string that does not fit its endpoint: an unknown or repeated parameter, a value
/// of the wrong type.
pub fn invalid_query(rejection: QueryRejection) -> HttpError {
    HttpError(ApiError::new(
        ErrorCode::InvalidQuery,
        format!("Invalid query string: {}", rejection.body_text()),
    ))
}

/// The body an operation's errors come in.
#[derive(Clone, Copy)]
pub enum Surface {
    /// `/v1`: `ErrorBody`.
    Platform,
    /// `/api/v3`: `ArkErrorBody`, Ark's code first and ours beside it.
    Ark,
    /// `/api/v1/videos`: `OpenRouterErrorBody`, the HTTP status as the code and ours in
    /// `metadata`.
    OpenRouter,
}

/// A line of an operation's documented errors: codes, and when they are answered.
pub struct Documented {
    codes: &'static [ErrorCode],
    when: Option<&'static str>,
    whole: Option<&'static str>,
}

impl Documented {
    /// `when` follows the codes' names; `whole` is the description instead, for a line that
    /// speaks of a family of codes through a few of them.
    pub fn new(codes: &'static [ErrorCode], when: &[&'static str], whole: &[&'static str]) -> Self {
        Self {
            codes,
            when: when.first().copied(),
            whole: whole.first().copied(),
        }
    }
}

/// `a`, `a or b`, `a, b or c`.
fn one_of(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// The codes as a client of the surface sees them: ours on `/v1`; on `/api/v3` Ark's, each
/// with ours in brackets, or ours alone where Ark has no code of its own.
fn names(surface: Surface, codes: &[ErrorCode]) -> String {
    let mut items: Vec<(Option<&str>, Vec<String>)> = Vec::new();
    for &code in codes {
        let ours = format!("`{}`", code.as_str());
        let ark = match surface {
            Surface::Platform | Surface::OpenRouter => None,
            Surface::Ark => ark_code(code).map(|(ark, _)| ark),
        };
        match items.iter_mut().find(|(a, wire)| {
            (ark.is_some() && *a == ark) || (ark.is_none() && a.is_none() && wire[0] == ours)
        }) {
            Some((_, wire)) if !wire.contains(&ours) => wire.push(ours),
            Some(_) => {}
            None => items.push((ark, vec![ours])),
        }
    }
    let items: Vec<String> = items
        .into_iter()
        .map(|(ark, ours)| match ark {
            Some(ark) => format!("`{ark}` ({})", one_of(&ours)),
            None => one_of(&ours),
        })
        .collect();
    one_of(&items)
}

fn integer_header(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::Integer))
        .description(Some(description))
        .build()
}

/// The headers an answer with these codes carries, as [`HttpError`] and the rate limiter
/// write them.
fn with_headers(mut response: ResponseBuilder, codes: &[ErrorCode]) -> ResponseBuilder {
    if codes
        .iter()
        .any(|&code| status_of(code) == StatusCode::UNAUTHORIZED)
    {
        response = response.header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(String::schema())
                .description(Some("`Bearer`"))
                .build(),
        );
    }
    if codes.contains(&ErrorCode::StorageUnavailable) {
        response = response.header("Retry-After", integer_header("Seconds to wait."));
    }
    if codes.contains(&ErrorCode::RateLimitExceeded) {
        response = response
            .header("Retry-After", integer_header("Seconds to wait."))
            .header(
                "X-RateLimit-Limit",
                integer_header("Requests per minute allowed."),
            )
            .header(
                "X-RateLimit-Remaining",
                integer_header("Requests left now."),
            )
            .header(
                "X-RateLimit-Reset",
                integer_header("Unix time (seconds) when the limit is whole again."),
            );
    }
    response
}

/// The error responses of an operation, keyed by status: each code under its own status, so
/// the document cannot give a code another status than the one it is answered with. Lines
/// whose codes share a status share one response.
pub fn documented_errors(
    surface: Surface,
    lines: &[Documented],
) -> BTreeMap<String, RefOr<DocResponse>> {
    let mut by_status: BTreeMap<u16, (Vec<String>, Vec<ErrorCode>)> = BTreeMap::new();
    for line in lines {
        let mut statuses: Vec<u16> = line.codes.iter().map(|code| code.status()).collect();
        statuses.dedup();
        for status in statuses {
            let codes: Vec<ErrorCode> = line
                .codes
                .iter()
                .copied()
                .filter(|code| code.status() == status)
                .collect();
            let description = match (line.whole, line.when) {
                (Some(whole), _) => whole.to_owned(),
                (None, Some(when)) => format!("{}: {when}", names(surface, &codes)),
                (None, None) => format!("{}.", names(surface, &codes)),
            };
            let (descriptions, all) = by_status.entry(status).or_default();
            descriptions.push(description);
            all.extend(codes);
        }
    }
    let schema = match surface {
        Surface::Platform => "ErrorBody",
        Surface::Ark => "ArkErrorBody",
        Surface::OpenRouter => "OpenRouterErrorBody",
    };
    by_status
        .into_iter()
        .map(|(status, (descriptions, codes))| {
            let response = ResponseBuilder::new()
                .description(descriptions.join(" "))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(schema)))
                        .build(),
                );
            (
                status.to_string(),
                with_headers(response, &codes).build().into(),
            )
        })
        .collect()
}

/// An operation's error responses for its `#[utoipa::path(responses(…))]`, one line per
/// group of codes (`A | B: "when";`, `A | B;`, or `A | B => "whole description";`); the
/// statuses come from the codes.
macro_rules! error_responses {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($surface:ident) {
            $($($code:ident)|+ $(: $when:literal)? $(=> $whole:literal)?;)+
        }
    ) => {
        $(#[$meta])*
        $vis struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                $crate::api::error::documented_errors(
                    $crate::api::error::Surface::$surface,
                    &[$($crate::api::error::Documented::new(
                        &[$(seedgate_contract::ErrorCode::$code),+],
                        &[$($when)?],
                        &[$($whole)?],
                    )),+],
                )
            }
        }
    };
}
pub(crate) use error_responses;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_that_is_down_is_a_503_with_retry_after_never_a_500() {
        use crate::store::StoreError;
        let down = crate::service::internal(StoreError::Database(sqlx::Error::PoolTimedOut));
        let response = HttpError(down).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let broken = crate::service::internal(StoreError::Corrupt("unknown task state".into()));
        assert_eq!(
            HttpError(broken).into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn every_code_answers_with_its_own_status() {
        for &code in ErrorCode::ALL {
            let response = HttpError(ApiError::new(code, "x")).into_response();
            assert_eq!(response.status().as_u16(), code.status(), "{code:?}");
            assert_eq!(
                response.headers().contains_key(header::WWW_AUTHENTICATE),
                status_of(code) == StatusCode::UNAUTHORIZED,
                "{code:?}"
            );
        }
    }

    #[test]
    fn documented_errors_take_their_statuses_from_the_codes() {
        let responses = documented_errors(
            Surface::Platform,
            &[
                Documented::new(&[ErrorCode::InvalidQuery, ErrorCode::InvalidDays], &[], &[]),
                Documented::new(&[ErrorCode::ApiKeyNotFound], &["no such key."], &[]),
                Documented::new(&[ErrorCode::InvalidApiKey], &[], &[]),
            ],
        );
        let response = |code: ErrorCode| match &responses[&code.status().to_string()] {
            RefOr::T(response) => response.clone(),
            RefOr::Ref(_) => panic!("{code:?}: a response, not a reference"),
        };
        assert_eq!(responses.len(), 3);
        assert_eq!(
            response(ErrorCode::InvalidDays).description,
            "`invalid_query` or `invalid_days`."
        );
        assert_eq!(
            response(ErrorCode::ApiKeyNotFound).description,
            "`api_key_not_found`: no such key."
        );
        let unauthorized = response(ErrorCode::InvalidApiKey);
        assert!(unauthorized.headers.contains_key("WWW-Authenticate"));
    }

    #[test]
    fn the_ark_surface_names_arks_codes_with_ours() {
        let ark = |codes: &[ErrorCode]| names(Surface::Ark, codes);
        assert_eq!(
            ark(&[
                ErrorCode::InvalidQuery,
                ErrorCode::InvalidStatus,
                ErrorCode::InvalidPage
            ]),
            "`InvalidParameter` (`invalid_query`, `invalid_status` or `invalid_page`)"
        );
        assert_eq!(
            ark(&[ErrorCode::InsufficientBalance, ErrorCode::KeyLimitExceeded]),
            "`AccountOverdueError` (`insufficient_balance`) or `QuotaExceeded` (`key_limit_exceeded`)"
        );
        assert_eq!(
            ark(&[ErrorCode::IdempotencyConflict]),
            "`idempotency_conflict`"
        );
    }
}
