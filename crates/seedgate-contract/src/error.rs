//! One error shape for the whole API: an HTTP status plus
//! `{"error":{"message","type","code","param",…extra}}`, with stable machine-readable codes.
//! Every error names an [`ErrorCode`], and the code alone decides the status and the `type`,
//! so no two places can answer the same refusal differently.

use std::fmt;

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

/// Writes [`ErrorCode`] from one row per code, so that a code cannot exist without its wire
/// string, its status and its type, and [`ErrorCode::ALL`] cannot leave one out.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $code:ident = $wire:literal, $status:literal, $kind:ident;)+) => {
        /// Every stable `code` the API answers a request with, each with the HTTP status and
        /// the `type` it always comes with. Handlers name a code; the status follows from it.
        ///
        /// Codes a failed task carries (`error.code` of a task) are not here: those are
        /// whatever the upstream reported, kept as strings.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $code,)+
        }

        impl ErrorCode {
            /// Every code, in the order of the table.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$code),+];

            /// The `code` field: what clients branch on, so never renamed.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$code => $wire,)+
                }
            }

            /// The HTTP status of every answer with this code.
            pub const fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$code => $status,)+
                }
            }

            /// The `type` field: the family of the code.
            pub const fn error_type(self) -> ErrorType {
                match self {
                    $(ErrorCode::$code => ErrorType::$kind,)+
                }
            }
        }
    };
}

// A wire code names one reason. Three reasons are answered with one status where the thing is
// the request's own path and another where a request field names it, as they always have
// been; each such pair is two codes with the same wire string and type (see the tests).
error_codes! {
    /// The body could not be read.
    InvalidBody = "invalid_body", 400, InvalidRequestError;
    /// The body exceeds `max_body_bytes`.
    RequestTooLarge = "request_too_large", 413, InvalidRequestError;
    /// The `Idempotency-Key` header is not 1–255 visible ASCII characters.
    InvalidIdempotencyKey = "invalid_idempotency_key", 400, InvalidRequestError;
    /// Not JSON, not an object, or a key sent twice.
    InvalidJson = "invalid_json", 400, InvalidRequestError;
    /// A field the API does not know.
    UnknownField = "unknown_field", 400, InvalidRequestError;
    /// A field of the wrong JSON type.
    InvalidType = "invalid_type", 400, InvalidRequestError;
    /// A material library field that breaks its rule.
    InvalidField = "invalid_field", 400, InvalidRequestError;
    /// A required field is missing.
    MissingField = "missing_field", 400, InvalidRequestError;
    /// Both names of a setting sent, with different values.
    AliasConflict = "alias_conflict", 400, InvalidRequestError;
    /// A prompt command disagrees with its field, or is given twice with two values.
    PromptCommandConflict = "prompt_command_conflict", 400, InvalidRequestError;
    /// A prompt command without a value, or with a value of the wrong kind.
    InvalidPromptCommand = "invalid_prompt_command", 400, InvalidRequestError;
    /// A request's `model` names no model of the catalog.
    UnknownModel = "model_not_found", 400, ModelNotFound;
    /// The path names no model of the catalog.
    ModelNotFound = "model_not_found", 404, ModelNotFound;
    /// The operation is unknown or not served by the model.
    UnsupportedOperation = "unsupported_operation", 400, InvalidRequestError;
    /// `operation` omitted and the inputs point to different operations.
    AmbiguousOperation = "ambiguous_operation", 400, InvalidRequestError;
    /// The prompt is empty, too long or holds a control character.
    InvalidPrompt = "invalid_prompt", 400, InvalidRequestError;
    /// A media field the operation does not take.
    InputNotAllowed = "input_not_allowed", 400, InvalidRequestError;
    /// Audio outside reference-to-video.
    AudioNotAllowed = "audio_not_allowed", 400, InvalidRequestError;
    /// Reference-to-video without images or videos.
    MissingVisualReference = "missing_visual_reference", 400, InvalidRequestError;
    /// Reference-to-video with audio but no image or video.
    AudioRequiresVisualReference = "audio_requires_visual_reference", 400, InvalidRequestError;
    /// Inputs that cannot go together.
    ConflictingInputs = "conflicting_inputs", 400, InvalidRequestError;
    /// An Ark `content` item of the wrong shape.
    InvalidContent = "invalid_content", 400, InvalidRequestError;
    /// `task_id` is not a task id.
    InvalidTaskId = "invalid_task_id", 400, InvalidRequestError;
    /// Not an http(s) URL or a base64 data: URI.
    InvalidMediaUrl = "invalid_media_url", 400, InvalidRequestError;
    /// `callback_url` is not http(s), or names an address webhooks are never sent to.
    InvalidCallbackUrl = "invalid_callback_url", 400, InvalidRequestError;
    /// The model does not offer the resolution.
    UnsupportedResolution = "unsupported_resolution", 400, InvalidRequestError;
    /// A duration outside the model's range.
    InvalidDuration = "invalid_duration", 400, InvalidRequestError;
    /// Not a ratio the model accepts.
    InvalidAspectRatio = "invalid_aspect_ratio", 400, InvalidRequestError;
    /// A seed out of range.
    InvalidSeed = "invalid_seed", 400, InvalidRequestError;
    /// More references than the model's limit.
    TooManyReferences = "too_many_references", 400, InvalidRequestError;
    /// Inline media of a type the slot does not take.
    UnsupportedMediaType = "unsupported_media_type", 400, InvalidRequestError;
    /// Inline media over its size cap.
    MediaTooLarge = "media_too_large", 400, InvalidRequestError;
    /// An inline image outside the allowed sides or aspect.
    InvalidImageDimensions = "invalid_image_dimensions", 400, InvalidRequestError;
    /// A URL that names an address inputs are never fetched from.
    InputUrlForbidden = "input_url_forbidden", 400, InvalidRequestError;
    /// An `asset://` reference names no active material asset of the organization.
    AssetNotFound = "asset_not_found", 400, InvalidRequestError;
    /// A video or audio material in an image field.
    AssetNotAnImage = "asset_not_an_image", 400, InvalidRequestError;
    /// The material is still being processed.
    SeedanceMaterialPreparing = "seedance_material_preparing", 409, InvalidRequestError;
    /// A material id of another shape.
    InvalidMaterialAssetId = "invalid_material_asset_id", 400, InvalidRequestError;
    /// `material_asset_ids` on the Ark paths.
    AmbiguousMaterialAssetIds = "ambiguous_material_asset_ids", 400, InvalidRequestError;
    /// A new material's source could not be fetched or breaks an input rule.
    SeedanceMaterialSourceInvalid = "seedance_material_source_invalid", 400, InvalidRequestError;
    /// A material's replacement source could not be fetched or breaks an input rule; the
    /// update itself was taken, hence not a plain `400`.
    SeedanceMaterialNewSourceInvalid = "seedance_material_source_invalid", 422, InvalidRequestError;
    /// Real-person material, which needs an identity check this server cannot make.
    LivenessFaceUnsupported = "liveness_face_unsupported", 400, InvalidRequestError;
    /// The path names no material asset of the organization in the project.
    MaterialAssetNotFound = "material_asset_not_found", 404, InvalidRequestError;
    /// The path names no material group of the organization in the project.
    MaterialGroupNotFound = "material_group_not_found", 404, InvalidRequestError;
    /// A new asset's `group_id` names no material group of the organization in the project.
    UnknownMaterialGroup = "material_group_not_found", 400, InvalidRequestError;
    /// A deleted material asset cannot be changed.
    MaterialAssetDeleted = "material_asset_deleted", 409, InvalidRequestError;
    /// A deleted material group cannot be changed.
    MaterialGroupDeleted = "material_group_deleted", 409, InvalidRequestError;
    /// A field of another model family, or an Ark field Seedance 2.0 cannot honour.
    UnsupportedParameter = "unsupported_parameter", 400, InvalidRequestError;
    /// A `service_tier` other than `default`.
    UnsupportedServiceTier = "unsupported_service_tier", 400, InvalidRequestError;
    /// An `output_format` the model does not make.
    UnsupportedOutputFormat = "unsupported_output_format", 400, InvalidRequestError;
    /// `execution_expires_after` out of range.
    InvalidExecutionExpiresAfter = "invalid_execution_expires_after", 400, InvalidRequestError;
    /// `priority` out of range.
    InvalidPriority = "invalid_priority", 400, InvalidRequestError;
    /// `safety_identifier` (or `user`) empty, too long or holding a control character.
    InvalidSafetyIdentifier = "invalid_safety_identifier", 400, InvalidRequestError;
    /// A live request no configured upstream channel serves.
    NoChannelForRequest = "no_channel_for_request", 400, InvalidRequestError;
    /// Video-extension of a task that is not a completed task of this account with its files.
    SourceTaskNotUsable = "source_task_not_usable", 400, InvalidRequestError;
    /// A final's `draft_task_id` names no task of this key.
    DraftTaskNotFound = "draft_task_not_found", 400, InvalidRequestError;
    /// A final's `draft_task_id` names a task that is not a draft.
    NotADraftTask = "not_a_draft_task", 400, InvalidRequestError;
    /// A final's draft failed, was cancelled or has not finished.
    DraftTaskNotCompleted = "draft_task_not_completed", 400, InvalidRequestError;
    /// A final's draft is past the days its model keeps drafts.
    DraftTaskExpired = "draft_task_expired", 400, InvalidRequestError;
    /// A final names another model than its draft's.
    DraftModelMismatch = "draft_model_mismatch", 400, InvalidRequestError;
    /// A `Seedgate-Sandbox-Scenario` header (test keys) that names no scenario, or a parameter
    /// out of its range.
    InvalidSandboxScenario = "invalid_sandbox_scenario", 400, InvalidRequestError;
    /// The model is outside the key's allow-list.
    ModelNotAllowed = "model_not_allowed", 403, PermissionError;
    /// The balance does not cover the reservation.
    InsufficientBalance = "insufficient_balance", 402, InsufficientBalance;
    /// The reservation would take the key past its spending cap.
    KeyLimitExceeded = "key_limit_exceeded", 402, QuotaExceeded;
    /// The `Idempotency-Key` was used with another request in the last 24 hours.
    IdempotencyConflict = "idempotency_conflict", 409, InvalidRequestError;
    /// Missing, unknown, inactive or revoked key or management token.
    InvalidApiKey = "invalid_api_key", 401, InvalidApiKey;
    /// The key is past its expiry.
    ExpiredApiKey = "expired_api_key", 401, ExpiredApiKey;
    /// The management API names no key of the organization.
    ApiKeyNotFound = "api_key_not_found", 404, InvalidRequestError;
    /// A revoked key cannot be changed.
    ApiKeyRevoked = "api_key_revoked", 409, InvalidRequestError;
    /// An update that changes nothing.
    EmptyUpdate = "empty_update", 400, InvalidRequestError;
    /// A key's name empty or too long.
    InvalidName = "invalid_name", 400, InvalidRequestError;
    /// A status that is not one of the listed ones.
    InvalidStatus = "invalid_status", 400, InvalidRequestError;
    /// A key's spending cap out of range.
    InvalidLimitAmount = "invalid_limit_amount", 400, InvalidRequestError;
    /// A cap in CNY, which is no longer taken.
    CurrencyRetired = "currency_retired", 400, InvalidRequestError;
    /// A cap currency other than USD.
    InvalidCurrency = "invalid_currency", 400, InvalidRequestError;
    /// A key's model allow-list that is not a list of known model ids.
    InvalidModels = "invalid_models", 400, InvalidRequestError;
    /// A key's expiry that is not an RFC 3339 time, or not in the future.
    InvalidExpiresAt = "invalid_expires_at", 400, InvalidRequestError;
    /// A date query that is not a date.
    InvalidDate = "invalid_date", 400, InvalidRequestError;
    /// A page number out of range.
    InvalidPage = "invalid_page", 400, InvalidRequestError;
    /// A page size out of range.
    InvalidPageSize = "invalid_page_size", 400, InvalidRequestError;
    /// A list limit out of range.
    InvalidLimit = "invalid_limit", 400, InvalidRequestError;
    /// A usage window out of range.
    InvalidDays = "invalid_days", 400, InvalidRequestError;
    /// A query string that does not fit its endpoint.
    InvalidQuery = "invalid_query", 400, InvalidRequestError;
    /// A `category` outside the platform's list.
    InvalidCategory = "invalid_category", 400, InvalidRequestError;
    /// A `recommended_for` outside the platform's list.
    InvalidRecommendedFor = "invalid_recommended_for", 400, InvalidRequestError;
    /// A `view` other than `full` or `compact`.
    InvalidView = "invalid_view", 400, InvalidRequestError;
    /// The key's request rate is exceeded.
    RateLimitExceeded = "rate_limit_exceeded", 429, RateLimitExceeded;
    /// Unknown task id, or another account's task.
    AsyncTaskNotFound = "async_task_not_found", 404, AsyncTaskNotFound;
    /// The task is processing or has ended.
    TaskNotCancellable = "task_not_cancellable", 409, InvalidRequestError;
    /// A job's video asked for before the job has completed.
    VideoNotReady = "video_not_ready", 409, InvalidRequestError;
    /// The upstream could not be asked to withdraw the task.
    UpstreamUnavailable = "upstream_unavailable", 503, UpstreamError;
    /// A download link is invalid or expired.
    InvalidSignature = "invalid_signature", 403, InvalidRequestError;
    /// A download's `Range` lies outside the file.
    RangeNotSatisfiable = "range_not_satisfiable", 416, InvalidRequestError;
    /// A genuine download link to files deleted after their retention.
    ResultExpired = "result_expired", 410, InvalidRequestError;
    /// A result file could not be read from storage.
    StorageUnavailable = "storage_unavailable", 503, ServerError;
    /// No such endpoint, or a result file missing from the store within its retention.
    NotFound = "not_found", 404, InvalidRequestError;
    /// The endpoint does not take that method.
    MethodNotAllowed = "method_not_allowed", 405, InvalidRequestError;
    /// Our own fault.
    InternalError = "internal_error", 500, ServerError;
    /// A computed price out of range: our fault, never the request's.
    AmountOutOfRange = "amount_out_of_range", 500, ServerError;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request's refusal can become a task's failure (inputs are checked again when fetched),
/// and those codes are strings.
impl From<ErrorCode> for String {
    fn from(code: ErrorCode) -> Self {
        code.as_str().to_owned()
    }
}

/// An error as the API reports it. `code` is stable (clients match on it) and decides the
/// status and `type`; `message` is for humans and may change, `param` names the offending
/// request field.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The `code` field, which gives the status and the `type` field.
    pub code: ErrorCode,
    /// The `message` field: what went wrong and how to fix it.
    pub message: String,
    /// The `param` field: the request field at fault, if one is.
    pub param: Option<String>,
    /// Further fields of the error object, e.g. `allowed_resolutions`.
    pub extra: Map<String, Value>,
}

impl ApiError {
    /// An error with this code; add `param` and extras with the builder methods.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            param: None,
            extra: Map::new(),
        }
    }

    /// The HTTP status, the code's.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The `type` field, the code's.
    pub fn error_type(&self) -> ErrorType {
        self.code.error_type()
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
                error_type: self.error_type(),
                code: self.code.as_str().to_owned(),
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
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    #[test]
    fn body_has_the_platform_shape() {
        let e = ApiError::new(ErrorCode::UnsupportedResolution, "no")
            .with_param("resolution")
            .with_extra("allowed_resolutions", serde_json::json!(["480p"]));
        assert_eq!(
            e.body(),
            serde_json::json!({"error": {"message": "no", "type": "invalid_request_error",
                "code": "unsupported_resolution", "param": "resolution", "allowed_resolutions": ["480p"]}})
        );
        let e = ApiError::new(ErrorCode::AsyncTaskNotFound, "gone");
        assert!(e.body()["error"].get("param").is_none());
        assert_eq!(e.body()["error"]["type"], "async_task_not_found");
        assert_eq!(e.status(), 404);
    }

    #[test]
    fn extras_cannot_overwrite_the_standard_fields() {
        let e = ApiError::new(ErrorCode::InvalidSeed, "bad")
            .with_param("seed")
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

    /// The statuses a type's codes may have: clients that branch on `type` or on the status
    /// family must agree.
    fn family(t: ErrorType) -> &'static [u16] {
        match t {
            ErrorType::InvalidRequestError => &[400, 403, 404, 405, 409, 410, 413, 416, 422],
            ErrorType::InvalidApiKey | ErrorType::ExpiredApiKey => &[401],
            ErrorType::PermissionError => &[403],
            ErrorType::InsufficientBalance | ErrorType::QuotaExceeded => &[402],
            ErrorType::ModelNotFound => &[400, 404],
            ErrorType::RateLimitExceeded => &[429],
            ErrorType::AsyncTaskNotFound => &[404],
            ErrorType::UpstreamError | ErrorType::AllChannelsFailed | ErrorType::ServerError => {
                &[500, 502, 503, 504]
            }
        }
    }

    #[test]
    fn every_code_is_an_error_status_of_its_types_family() {
        for code in ErrorCode::ALL {
            let status = code.status();
            assert!((400..600).contains(&status), "{code:?}: {status}");
            assert!(
                family(code.error_type()).contains(&status),
                "{code:?}: {status} is not a status of {:?}",
                code.error_type()
            );
        }
    }

    /// The reasons answered with one status where the request's path names the thing and
    /// another where a request field does; any other wire code belongs to one code only.
    const SHARED_WIRE_CODES: [(ErrorCode, ErrorCode); 3] = [
        (ErrorCode::ModelNotFound, ErrorCode::UnknownModel),
        (
            ErrorCode::MaterialGroupNotFound,
            ErrorCode::UnknownMaterialGroup,
        ),
        (
            ErrorCode::SeedanceMaterialSourceInvalid,
            ErrorCode::SeedanceMaterialNewSourceInvalid,
        ),
    ];

    #[test]
    fn wire_codes_are_unique_but_for_the_listed_pairs() {
        let mut by_wire: BTreeMap<&str, Vec<ErrorCode>> = BTreeMap::new();
        for &code in ErrorCode::ALL {
            let wire = code.as_str();
            assert!(
                !wire.is_empty() && wire.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{wire}"
            );
            by_wire.entry(wire).or_default().push(code);
        }
        for (wire, codes) in by_wire {
            match codes[..] {
                [_] => {}
                [a, b] => {
                    assert!(
                        SHARED_WIRE_CODES.contains(&(a, b)) || SHARED_WIRE_CODES.contains(&(b, a)),
                        "`{wire}` is the wire code of both {a:?} and {b:?}"
                    );
                    assert_eq!(a.error_type(), b.error_type(), "{wire}");
                    assert_ne!(a.status(), b.status(), "{wire}");
                }
                _ => panic!("`{wire}` is the wire code of {codes:?}"),
            }
        }
    }

    /// The statuses a cell of the docs states, as `` `404` ``.
    fn statuses(cell: &str) -> BTreeSet<u16> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .filter_map(|s| s.parse().ok())
            .filter(|s| (100..600).contains(s))
            .collect()
    }

    /// docs/tasks-and-errors.md lists every code with its status and type, and nothing else:
    /// a row's status is `400` unless it states others, its type `invalid_request_error`
    /// unless it names one.
    #[test]
    fn the_documented_error_codes_are_the_ones_answered() {
        let doc = include_str!("../../../docs/tasks-and-errors.md");
        let section = doc
            .split("## Request error codes")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .unwrap();
        let mut rows: Vec<(Vec<&str>, &str)> = Vec::new();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').collect();
            let codes = cells[1].split('`').skip(1).step_by(2).collect();
            rows.push((codes, cells[2]));
        }
        for &code in ErrorCode::ALL {
            let wire = code.as_str();
            let mine: Vec<&str> = rows
                .iter()
                .filter(|(codes, _)| codes.contains(&wire))
                .map(|(_, when)| *when)
                .collect();
            assert!(
                !mine.is_empty(),
                "`{wire}` is not in docs/tasks-and-errors.md"
            );
            let stated: BTreeSet<u16> = mine
                .iter()
                .flat_map(|when| {
                    let stated = statuses(when);
                    if stated.is_empty() {
                        BTreeSet::from([400])
                    } else {
                        stated
                    }
                })
                .collect();
            assert!(
                stated.contains(&code.status()),
                "`{wire}` ({code:?}) is {} but documented as {stated:?}",
                code.status()
            );
            let kind = format!("type `{}`", code.error_type().as_str());
            let typed: Vec<&&str> = mine.iter().filter(|when| when.contains("type `")).collect();
            if code.error_type() == ErrorType::InvalidRequestError {
                assert!(typed.is_empty(), "`{wire}` is documented with another type");
            } else {
                assert!(
                    !typed.is_empty() && typed.iter().all(|when| when.contains(&kind)),
                    "`{wire}` is not documented as {kind}"
                );
            }
        }
        for (codes, when) in &rows {
            let ours: Vec<&ErrorCode> = ErrorCode::ALL
                .iter()
                .filter(|code| codes.contains(&code.as_str()))
                .collect();
            for wire in codes {
                assert!(
                    ours.iter().any(|code| code.as_str() == *wire),
                    "docs/tasks-and-errors.md names `{wire}`, which no error has"
                );
            }
            for status in statuses(when) {
                assert!(
                    ours.iter().any(|code| code.status() == status),
                    "docs/tasks-and-errors.md gives {codes:?} the status {status}, which none has"
                );
            }
        }
        // And the table of statuses explains each one the codes use.
        let table = doc
            .split("## HTTP statuses")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .unwrap();
        let explained: BTreeSet<u16> = table
            .lines()
            .filter(|l| l.starts_with("| `"))
            .flat_map(|l| statuses(l.split('|').nth(1).unwrap_or_default()))
            .collect();
        for code in ErrorCode::ALL {
            assert!(
                explained.contains(&code.status()),
                "{} is not in docs/tasks-and-errors.md's HTTP statuses",
                code.status()
            );
        }
    }
}
