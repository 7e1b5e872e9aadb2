//! One error shape for the whole API: an HTTP status plus
//! `{"error":{"message","type","code","param",…extra}}`, with stable machine-readable codes.
//! The contract produces the `400`s; the server maps every other failure onto the same type,
//! so clients parse exactly one shape.

use serde_json::{Map, Value};

/// The error families clients branch on (the `type` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// Bad input (400, or 409/413 for conflicts and oversized bodies).
    InvalidRequestError,
    /// Missing, unknown or revoked key (401).
    InvalidApiKey,
    /// The key has expired (401).
    ExpiredApiKey,
    /// The key may not do this, e.g. use a model outside its allow-list (403).
    PermissionError,
    /// The reservation does not fit the balance (402).
    InsufficientBalance,
    /// The reservation would take the key past its spending cap (402).
    QuotaExceeded,
    /// The model id is not in the catalog.
    ModelNotFound,
    /// Too many requests (429, with `Retry-After`).
    RateLimitExceeded,
    /// An upstream provider failed (5xx from us only when it did).
    UpstreamError,
    /// Every channel that could serve the request failed.
    AllChannelsFailed,
    /// Unknown task id, or another account's task (404).
    AsyncTaskNotFound,
    /// Our own fault (500); never used for bad input.
    ServerError,
}

impl ErrorType {
    /// The `type` string of the error body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequestError => "invalid_request_error",
            ErrorType::InvalidApiKey => "invalid_api_key",
            ErrorType::ExpiredApiKey => "expired_api_key",
            ErrorType::PermissionError => "permission_error",
            ErrorType::InsufficientBalance => "insufficient_balance",
            ErrorType::QuotaExceeded => "quota_exceeded",
            ErrorType::ModelNotFound => "model_not_found",
            ErrorType::RateLimitExceeded => "rate_limit_exceeded",
            ErrorType::UpstreamError => "upstream_error",
            ErrorType::AllChannelsFailed => "all_channels_failed",
            ErrorType::AsyncTaskNotFound => "async_task_not_found",
            ErrorType::ServerError => "server_error",
        }
    }
}

/// An error as the API reports it. `code` is stable (clients match on it), `message` is for
/// humans and may change, `param` names the offending request field.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The `type` field: the family of the error.
    pub error_type: ErrorType,
    /// The `code` field: the specific, stable reason.
    pub code: &'static str,
    /// The `message` field: what went wrong and how to fix it.
    pub message: String,
    /// The `param` field: the request field at fault, if one is.
    pub param: Option<String>,
    /// Further fields of the error object, e.g. `allowed_resolutions`.
    pub extra: Map<String, Value>,
}

impl ApiError {
    /// A `400 invalid_request_error`: the usual answer to bad input.
    pub fn invalid(code: &'static str, param: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            error_type: ErrorType::InvalidRequestError,
            code,
            message: message.into(),
            param: param.map(str::to_owned),
            extra: Map::new(),
        }
    }

    /// Any error; add `param` and extras with the builder methods.
    pub fn new(
        status: u16,
        error_type: ErrorType,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error_type,
            code,
            message: message.into(),
            param: None,
            extra: Map::new(),
        }
    }

    /// Names the request field at fault.
    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    /// Adds a helpful field next to `code`, e.g. `allowed_resolutions`.
    pub fn with_extra(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    /// The response body: `{"error":{"message","type","code","param",…extra}}`, without
    /// `param` when no field is at fault (the platform's schema has it a string or absent). Extras never overwrite the four standard keys.
    pub fn body(&self) -> Value {
        let extra = self
            .extra
            .iter()
            .filter(|(key, _)| !STANDARD_FIELDS.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let body = ErrorBody {
            error: ErrorObject {
                message: self.message.clone(),
                error_type: self.error_type,
                code: self.code.to_owned(),
                param: self.param.clone(),
                extra,
            },
        };
        serde_json::to_value(body).unwrap_or(Value::Null)
    }
}

/// The keys of the error object that extras may not replace.
const STANDARD_FIELDS: [&str; 4] = ["message", "type", "code", "param"];

/// Every error response of the API.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorObject,
}

/// The error object: a stable `code` to branch on, a `message` for humans.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorObject {
    /// What went wrong and how to fix it; wording may change.
    pub message: String,
    /// The family of the error.
    #[serde(rename = "type")]
    pub error_type: ErrorType,
    /// The specific, stable reason, e.g. `unsupported_resolution`.
    #[schema(example = "unsupported_resolution")]
    pub code: String,
    /// The request field at fault, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// Helpful extras next to `code`, e.g. `allowed_resolutions`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_platform_shape() {
        let e = ApiError::invalid("unsupported_resolution", Some("resolution"), "no")
            .with_extra("allowed_resolutions", serde_json::json!(["480p"]));
        assert_eq!(
            e.body(),
            serde_json::json!({"error": {"message": "no", "type": "invalid_request_error",
                "code": "unsupported_resolution", "param": "resolution", "allowed_resolutions": ["480p"]}})
        );
        let e = ApiError::new(
            404,
            ErrorType::AsyncTaskNotFound,
            "async_task_not_found",
            "gone",
        );
        assert!(e.body()["error"].get("param").is_none());
        assert_eq!(e.body()["error"]["type"], "async_task_not_found");
    }

    #[test]
    fn extras_cannot_overwrite_the_standard_fields() {
        let e = ApiError::invalid("invalid_seed", Some("seed"), "bad")
            .with_extra("code", "other".into())
            .with_extra("min", (-1).into());
        assert_eq!(e.body()["error"]["code"], "invalid_seed");
        assert_eq!(e.body()["error"]["min"], -1);
        assert_eq!(e.to_string(), "invalid_seed: bad");
    }

    #[test]
    fn types_serialize_as_their_wire_names() {
        for t in [
            ErrorType::InvalidRequestError,
            ErrorType::InvalidApiKey,
            ErrorType::InsufficientBalance,
            ErrorType::ModelNotFound,
            ErrorType::RateLimitExceeded,
            ErrorType::UpstreamError,
            ErrorType::AllChannelsFailed,
            ErrorType::AsyncTaskNotFound,
            ErrorType::ServerError,
        ] {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }
}
