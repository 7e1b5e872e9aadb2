//! One error shape for the whole API: an HTTP status plus
//! `{"error":{"message","type","code","param",…extra}}`, with stable machine-readable codes.

use serde_json::{Map, Value};

/// The error families clients branch on (the `type` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequestError,
    InvalidApiKey,
    InsufficientBalance,
    ModelNotFound,
    RateLimitExceeded,
    UpstreamError,
    AllChannelsFailed,
    AsyncTaskNotFound,
    /// Our own fault (500); never used for bad input.
    ApiError,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequestError => "invalid_request_error",
            ErrorType::InvalidApiKey => "invalid_api_key",
            ErrorType::InsufficientBalance => "insufficient_balance",
            ErrorType::ModelNotFound => "model_not_found",
            ErrorType::RateLimitExceeded => "rate_limit_exceeded",
            ErrorType::UpstreamError => "upstream_error",
            ErrorType::AllChannelsFailed => "all_channels_failed",
            ErrorType::AsyncTaskNotFound => "async_task_not_found",
            ErrorType::ApiError => "api_error",
        }
    }
}

/// An error as the API reports it. `code` is stable: clients may match on it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub error_type: ErrorType,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
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

    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    /// Adds a helpful field next to `code`, e.g. `allowed_resolutions`.
    pub fn with_extra(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    /// The response body.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("message".into(), self.message.clone().into());
        error.insert("type".into(), self.error_type.as_str().into());
        error.insert("code".into(), self.code.into());
        error.insert(
            "param".into(),
            self.param.clone().map(Value::String).unwrap_or(Value::Null),
        );
        for (key, value) in &self.extra {
            error.insert(key.clone(), value.clone());
        }
        serde_json::json!({ "error": error })
    }
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
        assert_eq!(e.body()["error"]["param"], Value::Null);
        assert_eq!(e.body()["error"]["type"], "async_task_not_found");
    }
}
