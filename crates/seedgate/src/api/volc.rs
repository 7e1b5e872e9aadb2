//! The Ark-compatible surface, `/api/v3/contents/generations/tasks`: the wire format of
//! Volcengine Ark and BytePlus ModelArk (docs/ark.md), so Ark's own SDKs and clients work
//! unchanged. A create body is read into the platform's create body and goes through the one
//! parser and the one service; tasks are the same tasks as on `/v1` (`cgt-…` here is
//! `vtask_…` there), rendered in Ark's shape.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use seedgate_contract::{ApiError, Catalog, ErrorCode, OutputFormat, RequestEcho};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::dialect::{create_translated, Dialect, DialectAuthed, DialectError};
use super::error::{ark_code, error_responses};
use super::tasks::with_replay_mark;
use super::view::BaseUrl;
use super::ApiState;
use crate::ids::TaskId;
use crate::providers::seed_in_force;
use crate::store::{now_ms, PublicStatus, TaskFilter, TaskRecord, TaskState};
use crate::task_view::TaskError;
use crate::telemetry::RequestId;

fn invalid(code: ErrorCode, param: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message).with_param(param)
}

/// Whether a field's value asks for nothing.
type IsNoOp = fn(&Value) -> bool;

/// Ark request fields this gateway cannot honour for Seedance 2.0, each with the one value
/// that asks for nothing (`None`: every value asks for something). That value is a no-op,
/// since it is what every task gets anyway; any other is refused, never dropped. `draft` and
/// `camera_fixed` are not here: the platform request has them, and its parser takes `false`
/// and refuses `true`, the same on both surfaces.
const UNSUPPORTED: [(&str, Option<IsNoOp>, &str); 3] = [
    ("frames", None, "set `duration` instead"),
    (
        "tools",
        Some(|v| v.as_array().is_some_and(Vec::is_empty)),
        "no tools are available for Seedance 2.0",
    ),
    (
        "omni_reference_task_type",
        None,
        "Seedance 2.0 does not take it",
    ),
];

/// The media of an Ark `content` array, by role.
#[derive(Default)]
struct Content {
    prompt: Option<Value>,
    first_frame: Vec<Value>,
    last_frame: Vec<Value>,
    reference_images: Vec<Value>,
    reference_videos: Vec<Value>,
    reference_audios: Vec<Value>,
    /// A final's draft: `{"type": "draft_task", "draft_task": {"id": …}}`.
    draft_task: Option<Value>,
}

/// A media item's URL: Ark sends `{"url": "…"}`; a plain string is taken too.
fn item_url(item: &Map<String, Value>, kind: &str) -> Result<Value, ApiError> {
    match item.get(kind) {
        Some(Value::String(url)) => Ok(Value::String(url.clone())),
        Some(Value::Object(object)) => match object.get("url") {
            Some(Value::String(url)) => Ok(Value::String(url.clone())),
            _ => Err(invalid(
                ErrorCode::InvalidContent,
                "content",
                format!("`{kind}.url` must be a string."),
            )),
        },
        _ => Err(invalid(
            ErrorCode::InvalidContent,
            "content",
            format!("A `{kind}` item needs `{kind}: {{\"url\": \"…\"}}`."),
        )),
    }
}

fn read_content(items: &[Value]) -> Result<Content, ApiError> {
    let mut content = Content::default();
    for item in items {
        let Some(item) = item.as_object() else {
            return Err(invalid(
                ErrorCode::InvalidContent,
                "content",
                "Each `content` item must be an object.",
            ));
        };
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
        let role = item.get("role").and_then(Value::as_str);
        let bad_role = |role: &str| {
            invalid(
                ErrorCode::InvalidContent,
                "content",
                format!("A `{kind}` item cannot have role `{role}`."),
            )
        };
        match kind {
            "text" => {
                let text = item.get("text").cloned().unwrap_or(Value::Null);
                if content.prompt.replace(text).is_some() {
                    return Err(invalid(
                        ErrorCode::InvalidContent,
                        "content",
                        "Send the prompt as one `text` item.",
                    ));
                }
            }
            "image_url" => {
                let url = item_url(item, kind)?;
                match role.unwrap_or("first_frame") {
                    "first_frame" => content.first_frame.push(url),
                    "last_frame" => content.last_frame.push(url),
                    "reference_image" => content.reference_images.push(url),
                    other => return Err(bad_role(other)),
                }
            }
            "video_url" => match role.unwrap_or("reference_video") {
                "reference_video" => content.reference_videos.push(item_url(item, kind)?),
                other => return Err(bad_role(other)),
            },
            "audio_url" => match role.unwrap_or("reference_audio") {
                "reference_audio" => content.reference_audios.push(item_url(item, kind)?),
                other => return Err(bad_role(other)),
            },
            "draft_task" => {
                let id = item
                    .get("draft_task")
                    .and_then(|draft| draft.get("id"))
                    .filter(|id| id.is_string())
                    .ok_or_else(|| {
                        invalid(
                            ErrorCode::InvalidContent,
                            "content",
                            "A `draft_task` item is `{\"type\": \"draft_task\", \"draft_task\": {\"id\": \"<draft task id>\"}}`.",
                        )
                    })?;
                if content.draft_task.replace(id.clone()).is_some() {
                    return Err(invalid(
                        ErrorCode::InvalidContent,
                        "content",
                        "A final renders one draft: send one `draft_task` item.",
                    ));
                }
            }
            other => {
                return Err(invalid(
                    ErrorCode::InvalidContent,
                    "content",
                    format!(
                    "Unknown content type `{other}`; use text, image_url, video_url, audio_url or draft_task."
                ),
                ))
            }
        }
    }
    Ok(content)
}

/// An Ark create body, read into the platform's create body: the model by its upstream id,
/// the operation from the content's roles, every other field by its own name (`ratio` is an
/// accepted alias). The platform parser then applies every rule, so nothing is checked twice.
pub fn to_platform_request(catalog: &Catalog, body: &[u8]) -> Result<Value, ApiError> {
    let Ok(Value::Object(ark)) = serde_json::from_slice::<Value>(body) else {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "The body must be a JSON object.",
        ));
    };
    let mut request = Map::new();
    let mut content = None;
    let mut material = None;
    // Ark's SDKs send every field they know, `null` when unset: null is absent.
    for (key, value) in ark.into_iter().filter(|(_, value)| !value.is_null()) {
        if let Some((_, off, why)) = UNSUPPORTED.iter().find(|(field, ..)| *field == key) {
            if off.is_some_and(|off| off(&value)) {
                continue;
            }
            return Err(invalid(
                ErrorCode::UnsupportedParameter,
                &key,
                format!("`{key}` is not supported here: {why}."),
            ));
        }
        match key.as_str() {
            "model" => {
                let model = match value.as_str().and_then(|id| catalog.model_or_upstream(id)) {
                    Some(spec) => Value::String(spec.id.clone()),
                    None => value,
                };
                request.insert(key, model);
            }
            "content" => content = Some(value),
            "material_asset_id" => material = Some(material_reference(&value)?),
            "material_asset_ids" => {
                return Err(invalid(
                    ErrorCode::AmbiguousMaterialAssetIds,
                    &key,
                    "`material_asset_ids` does not say which role each material plays; put each \
                     as an `image_url` content item (`asset://<id>`) with its role.",
                ))
            }
            _ => {
                request.insert(key, value);
            }
        }
    }
    let Some(Value::Array(items)) = content else {
        return Err(invalid(
            ErrorCode::MissingField,
            "content",
            "`content` must be an array with a `text` item and the media, each with its role.",
        ));
    };
    let mut content = read_content(&items)?;
    let media = content.first_frame.len()
        + content.last_frame.len()
        + content.reference_images.len()
        + content.reference_videos.len()
        + content.reference_audios.len();
    if let Some(draft) = content.draft_task {
        if media > 0 || content.prompt.is_some() || material.is_some() {
            return Err(invalid(
                ErrorCode::ConflictingInputs,
                "content",
                "A final renders its draft's own prompt and media: send the `draft_task` item alone.",
            ));
        }
        request.insert("draft_task_id".into(), draft);
        return Ok(Value::Object(request));
    }
    if let Some(material) = material {
        if media > 0 {
            return Err(invalid(
                ErrorCode::ConflictingInputs,
                "material_asset_id",
                "`material_asset_id` is the first frame and cannot be combined with media content items.",
            ));
        }
        content.first_frame.push(material);
    }
    if let Some(prompt) = content.prompt {
        request.insert("prompt".into(), prompt);
    }
    let references = !(content.reference_images.is_empty()
        && content.reference_videos.is_empty()
        && content.reference_audios.is_empty());
    let frames = !(content.first_frame.is_empty() && content.last_frame.is_empty());
    let operation = match (references, content.first_frame.len(), content.last_frame.len()) {
        (true, _, _) if frames => {
            return Err(invalid(
                ErrorCode::ConflictingInputs,
                "content",
                "first_frame and last_frame images cannot be mixed with reference_* items.",
            ))
        }
        (true, _, _) => {
            for (field, items) in [
                ("reference_images", content.reference_images),
                ("video_urls", content.reference_videos),
                ("audio_urls", content.reference_audios),
            ] {
                if !items.is_empty() {
                    request.insert(field.into(), Value::Array(items));
                }
            }
            "reference-to-video"
        }
        (false, 0, 0) => "text-to-video",
        (false, 1, 0) => {
            request.insert("image_url".into(), content.first_frame[0].clone());
            "image-to-video"
        }
        (false, 1, 1) => {
            request.insert("start_image".into(), content.first_frame[0].clone());
            request.insert("end_image".into(), content.last_frame[0].clone());
            "start-end-to-video"
        }
        _ => {
            return Err(invalid(
                ErrorCode::InvalidContent,
                "content",
                "Send at most one first_frame image, and a last_frame image only with a first_frame one.",
            ))
        }
    };
    request.insert("operation".into(), operation.into());
    Ok(Value::Object(request))
}

/// `material_asset_id`, Ark's shorthand for one material as the first frame, as the
/// `asset://` reference the platform request takes.
fn material_reference(value: &Value) -> Result<Value, ApiError> {
    let id = value.as_str().filter(|id| {
        let mut parts = id.splitn(3, '-');
        let (prefix, time, suffix) = (parts.next(), parts.next(), parts.next());
        prefix == Some("asset")
            && time.is_some_and(|t| t.len() == 14 && t.bytes().all(|b| b.is_ascii_digit()))
            && suffix.is_some_and(|s| {
                s.len() == 5
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
    });
    id.map(|id| Value::String(format!("asset://{id}")))
        .ok_or_else(|| {
            invalid(
                ErrorCode::InvalidMaterialAssetId,
                "material_asset_id",
                "`material_asset_id` looks like asset-YYYYMMDDHHMMSS-xxxxx (14 digits, then 5 lower-case letters or digits).",
            )
        })
}

/// An error's body in Ark's words: the platform's shape with Ark's `code` and `type` where Ark
/// has them, so clients that branch on Ark's codes work, and ours kept in `seedgate_code`.
fn in_arks_words(e: &ApiError) -> Value {
    let mut body = e.body();
    if let Some(error) = body.get_mut("error").and_then(Value::as_object_mut) {
        if let Some((code, kind)) = ark_code(e.code) {
            error.insert("code".into(), code.into());
            error.insert("type".into(), kind.into());
        }
        error.insert("seedgate_code".into(), e.code.as_str().into());
    }
    body
}

/// Ark's words for the platform's errors.
pub struct Ark;

impl Dialect for Ark {
    fn in_its_words(error: &ApiError) -> Value {
        in_arks_words(error)
    }
}

/// Any refusal of this surface, in Ark's words.
pub type ArkError = DialectError<Ark>;

/// The calling key, refused in Ark's words.
pub type ArkAuthed = DialectAuthed<Ark>;

error_responses! {
    /// What every call of this surface may answer besides its own refusals, in Ark's words.
    /// It describes responses for the OpenAPI document; the bodies are written by [`ArkError`].
    pub struct ArkCommonErrors(Ark) {
        InvalidApiKey | ExpiredApiKey: "missing, unknown, revoked or expired key.";
        RateLimitExceeded: "back off for `Retry-After` s.";
        InternalError: "our fault; safe to retry.";
    }
}

/// Every error response of this surface.
#[derive(Serialize, ToSchema)]
pub struct ArkErrorBody {
    error: ArkErrorObject,
}

/// Ark's error object, with our code beside Ark's.
#[derive(Serialize, ToSchema)]
pub struct ArkErrorObject {
    /// Ark's code for the refusal (`InvalidParameter`, `ResourceNotFound`, …), or ours where
    /// Ark has none.
    #[schema(example = "InvalidParameter")]
    code: String,
    /// What went wrong and how to fix it; wording may change.
    message: String,
    /// Ark's error type (`BadRequest`, `NotFound`, …), or the platform's where Ark has none.
    #[serde(rename = "type")]
    kind: String,
    /// The request field at fault, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<String>,
    /// Our own, finer code, as on `/v1` (e.g. `unsupported_resolution`).
    #[schema(example = "unsupported_resolution")]
    seedgate_code: String,
    /// Helpful extras, as on `/v1`, e.g. `allowed_resolutions`.
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// The answer to a create: the task's id.
#[derive(Serialize, ToSchema)]
pub struct ArkCreated {
    /// `cgt-…`; the same task is `vtask_…` on `/v1`.
    id: String,
}

/// A task in Ark's shape (docs/ark.md).
#[derive(Serialize, ToSchema)]
pub struct ArkTask {
    /// `cgt-…`.
    id: String,
    /// The model's upstream id (the first the catalog lists), or ours.
    model: String,
    /// `queued` (cancellable), `running`, `succeeded`, `failed`, `cancelled` or `expired`.
    status: &'static str,
    /// The result, once succeeded: download URLs of the MP4 and its last frame, or, once the
    /// files have expired, `{"expired": true}` alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<ArkContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<ArkUsage>,
    /// Why it failed; `null` otherwise.
    error: Option<TaskError>,
    /// Unix seconds.
    created_at: i64,
    /// Unix seconds.
    updated_at: i64,
    /// The seed the video is made with: the client's, or the one drawn for it when the
    /// client left it to chance (none, or -1).
    seed: i64,
    resolution: String,
    ratio: String,
    /// Seconds; -1 when the model decides.
    duration: i64,
    framespersecond: u32,
    generate_audio: bool,
    watermark: bool,
    /// Always true: the last frame is always kept.
    return_last_frame: bool,
    /// Always `default`, the only tier served.
    service_tier: &'static str,
    /// Seconds from `created_at` until the task is given up: the server's deadline
    /// (`engine.task_deadline_seconds`) until it is sent upstream, then the expiry it was sent
    /// with (the client's own `execution_expires_after` when shorter).
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_expires_after: Option<i64>,
    /// True for a draft, whose id a final names in a `draft_task` content item; absent
    /// otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    draft: bool,
    /// For a final: the draft it renders (`cgt-…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    draft_task_id: Option<String>,
    /// The end user's id the request carried, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    safety_identifier: Option<String>,
    /// The queue priority asked for, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u8>,
}

#[derive(Serialize, ToSchema)]
pub struct ArkContent {
    /// Absent once the files have expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    video_url: Option<String>,
    /// Absent once the files have expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_frame_url: Option<String>,
    /// Present, and true, once the files have been deleted after their retention
    /// (`assets.retention_seconds`); not part of Ark's format.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    expired: bool,
}

/// Tokens, as Ark counts them: everything billed is completion.
#[derive(Serialize, ToSchema)]
pub struct ArkUsage {
    completion_tokens: i64,
    total_tokens: i64,
}

/// Ark's statuses by the same rule as the platform's: `queued` exactly when a cancel
/// succeeds.
fn ark_status(task: &TaskRecord) -> &'static str {
    match task.state {
        TaskState::Succeeded => "succeeded",
        TaskState::Failed => "failed",
        TaskState::Cancelled => "cancelled",
        TaskState::Expired => "expired",
        _ if task.public_status() == PublicStatus::Pending => "queued",
        _ => "running",
    }
}

fn render(state: &ApiState, task: &TaskRecord, base: &str) -> ArkTask {
    let services = &state.services;
    let echo: Option<RequestEcho> = serde_json::from_str(&task.request_json).ok();
    let model = services.catalog.upstream_name(&task.model);
    let succeeded = task.state == TaskState::Succeeded;
    let format = echo.as_ref().map_or(OutputFormat::Mp4, |e| e.output_format);
    let files = services
        .tasks
        .links()
        .files(task, format, base, (now_ms() / 1000) as u64);
    ArkTask {
        id: task.id.ark_spelling(),
        model,
        status: ark_status(task),
        content: files.map(|files| {
            let (video_url, last_frame_url) = files.urls.unzip();
            ArkContent {
                expired: video_url.is_none(),
                video_url,
                last_frame_url,
            }
        }),
        usage: task
            .usage_tokens
            .filter(|_| succeeded)
            .map(|tokens| ArkUsage {
                completion_tokens: tokens,
                total_tokens: tokens,
            }),
        error: task
            .error_code
            .clone()
            .zip(task.error_message.clone())
            .map(|(code, message)| TaskError { code, message }),
        created_at: task.created_at_ms / 1000,
        updated_at: task.updated_at_ms / 1000,
        seed: seed_in_force(&task.id, echo.as_ref().and_then(|e| e.seed)),
        resolution: echo
            .as_ref()
            .map_or_else(String::new, |e| e.resolution.as_str().to_owned()),
        ratio: echo
            .as_ref()
            .map_or_else(String::new, |e| e.aspect_ratio.as_str().to_owned()),
        duration: echo.as_ref().map_or(0, |e| e.duration),
        framespersecond: 24,
        generate_audio: echo.as_ref().is_some_and(|e| e.generate_audio),
        watermark: echo.as_ref().is_some_and(|e| e.watermark),
        return_last_frame: true,
        service_tier: "default",
        execution_expires_after: expires_after(task),
        draft: echo.as_ref().is_some_and(|e| e.draft),
        draft_task_id: echo
            .as_ref()
            .and_then(|e| e.draft_task_id.as_deref())
            .map(|id| TaskId::new(id).ark_spelling()),
        safety_identifier: echo.as_ref().and_then(|e| e.safety_identifier.clone()),
        priority: echo.as_ref().and_then(|e| e.priority),
    }
}

/// Ark counts `execution_expires_after` from the task's creation; the moment the task is given
/// up is the upstream's expiry once it was sent there (our deadline no longer ends it before
/// that), and our own deadline before. Rounded: the deadline and the creation time are taken a
/// few milliseconds apart.
fn expires_after(task: &TaskRecord) -> Option<i64> {
    let ends_at = task.upstream_expires_at_ms.or(task.deadline_at_ms)?;
    Some((ends_at - task.created_at_ms + 500).div_euclid(1000))
}

error_responses! {
    /// The refusals of a create.
    struct ArkCreateErrors(Ark) {
        InvalidJson | MissingField =>
            "`InvalidParameter` or `MissingParameter`; `seedgate_code` names the rule.";
        InsufficientBalance | KeyLimitExceeded;
        ModelNotAllowed: "the key may not use the model.";
        IdempotencyConflict;
        RequestTooLarge;
    }
}

/// Create a task in Ark's wire format: `content` items with roles, Ark or our model ids.
/// Honours `Idempotency-Key`, limits and billing exactly as `POST /v1/videos/generations`.
#[utoipa::path(
    post,
    path = "/api/v3/contents/generations/tasks",
    operation_id = "ark_create_task",
    tag = "ark",
    request_body(content = Object, description = "Ark's create body: `model`, `content` (text, image_url, video_url, audio_url items with roles), `ratio`, `duration`, `resolution`, `generate_audio`, `watermark`, `seed`, `callback_url`, `return_last_frame`."),
    responses(
        (status = 200, description = "The task was accepted.", body = ArkCreated),
        ArkCreateErrors,
        ArkCommonErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn create(
    State(state): State<ApiState>,
    DialectAuthed(account, ..): ArkAuthed,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ArkError> {
    let created = create_translated(
        &state,
        &account,
        body,
        &headers,
        &request_id,
        to_platform_request,
        None,
    )
    .await?;
    let response = Json(ArkCreated {
        id: created.task.id.ark_spelling(),
    })
    .into_response();
    Ok(with_replay_mark(response, created.replayed))
}

error_responses! {
    /// The refusals of a task's read.
    struct ArkTaskErrors(Ark) {
        AsyncTaskNotFound;
    }
}

/// Read a task in Ark's shape (either id spelling).
#[utoipa::path(
    get,
    path = "/api/v3/contents/generations/tasks/{id}",
    operation_id = "ark_get_task",
    tag = "ark",
    params(("id" = String, Path, description = "`cgt-…` (or the `/v1` id).")),
    responses(
        (status = 200, description = "The task.", body = ArkTask),
        ArkTaskErrors,
        ArkCommonErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn get(
    State(state): State<ApiState>,
    DialectAuthed(account, ..): ArkAuthed,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> Result<Json<ArkTask>, ArkError> {
    let task = state
        .services
        .tasks
        .task(&account, &TaskId::from_either(&id))
        .await?;
    Ok(Json(render(&state, &task, &base)))
}

error_responses! {
    /// The refusals of a cancel.
    struct ArkCancelErrors(Ark) {
        AsyncTaskNotFound;
        TaskNotCancellable: "it is running.";
        UpstreamUnavailable: "the upstream could not be asked; retry.";
    }
}

/// Cancel a task still `queued`; a finished task is left as it is (it carries its bill) and
/// the answer is the same empty `200` Ark gives when it deletes one.
#[utoipa::path(
    delete,
    path = "/api/v3/contents/generations/tasks/{id}",
    operation_id = "ark_delete_task",
    tag = "ark",
    params(("id" = String, Path, description = "`cgt-…` (or the `/v1` id).")),
    responses(
        (status = 200, description = "Cancelled, or already finished; the body is empty."),
        ArkCancelErrors,
        ArkCommonErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn delete(
    State(state): State<ApiState>,
    DialectAuthed(account, ..): ArkAuthed,
    Path(id): Path<String>,
) -> Result<Response, ArkError> {
    let id = TaskId::from_either(&id);
    let task = state.services.tasks.task(&account, &id).await?;
    if !task.state.is_terminal() {
        state.services.tasks.cancel_task(&account, &id).await?;
    }
    Ok(().into_response())
}

#[derive(Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ArkListQuery {
    /// From 1; default 1.
    #[param(minimum = 1)]
    page_num: Option<i64>,
    /// 1–500; default 20.
    #[param(minimum = 1, maximum = 500)]
    page_size: Option<i64>,
    /// queued, running, succeeded, failed, cancelled or expired.
    #[param(rename = "filter.status")]
    status: Option<String>,
    /// Task ids: the parameter repeated, or one comma-separated value.
    #[param(rename = "filter.task_ids", value_type = Vec<String>)]
    task_ids: Vec<TaskId>,
    /// An upstream model id, or ours.
    #[param(rename = "filter.model")]
    model: Option<String>,
    /// Only `default` exists here.
    #[param(rename = "filter.service_tier")]
    service_tier: Option<String>,
}

impl ArkListQuery {
    const KEYS: [&'static str; 6] = [
        "page_num",
        "page_size",
        "filter.status",
        "filter.task_ids",
        "filter.model",
        "filter.service_tier",
    ];

    /// Reads the query by hand: Ark clients repeat `filter.task_ids`.
    fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut parsed = Self::default();
        let number = |key: &str, value: &str| {
            value.parse::<i64>().map_err(|_| {
                invalid(
                    ErrorCode::InvalidQuery,
                    key,
                    format!("`{key}` must be an integer."),
                )
            })
        };
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            // An empty value is a filter left blank, not a filter on "".
            let known = ArkListQuery::KEYS.contains(&key.as_ref());
            if value.is_empty() && known {
                continue;
            }
            match key.as_ref() {
                "page_num" => parsed.page_num = Some(number(&key, &value)?),
                "page_size" => parsed.page_size = Some(number(&key, &value)?),
                "filter.status" => parsed.status = Some(value.into_owned()),
                "filter.task_ids" => parsed.task_ids.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|id| !id.is_empty())
                        .map(TaskId::from_either),
                ),
                "filter.model" => parsed.model = Some(value.into_owned()),
                "filter.service_tier" => parsed.service_tier = Some(value.into_owned()),
                other => {
                    return Err(invalid(
                        ErrorCode::InvalidQuery,
                        other,
                        format!("Unknown query parameter `{other}`."),
                    ))
                }
            }
        }
        Ok(parsed)
    }
}

/// One page of tasks and how many match in all.
#[derive(Serialize, ToSchema)]
pub struct ArkTaskList {
    items: Vec<ArkTask>,
    total: i64,
}

error_responses! {
    /// The refusals of the task list.
    struct ArkListErrors(Ark) {
        InvalidQuery | InvalidStatus | InvalidPage;
    }
}

/// List this account's tasks in Ark's shape, newest first, by page.
#[utoipa::path(
    get,
    path = "/api/v3/contents/generations/tasks",
    operation_id = "ark_list_tasks",
    tag = "ark",
    params(ArkListQuery),
    responses(
        (status = 200, description = "One page.", body = ArkTaskList),
        ArkListErrors,
        ArkCommonErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn list(
    State(state): State<ApiState>,
    DialectAuthed(account, ..): ArkAuthed,
    BaseUrl(base): BaseUrl,
    RawQuery(query): RawQuery,
) -> Result<Json<ArkTaskList>, ArkError> {
    let query = ArkListQuery::parse(query.as_deref())?;
    let page = query.page_num.unwrap_or(1);
    let size = query.page_size.unwrap_or(20);
    if page < 1 || !(1..=500).contains(&size) {
        return Err(ApiError::new(
            ErrorCode::InvalidPage,
            "page_num starts at 1; page_size is 1 to 500.",
        )
        .with_param("page_size")
        .into());
    }
    let (status, task_state) = match query.status.as_deref() {
        None => (None, None),
        Some("queued") => (Some(PublicStatus::Pending), None),
        Some("running") => (Some(PublicStatus::Processing), None),
        Some("succeeded") => (None, Some(TaskState::Succeeded)),
        Some("failed") => (None, Some(TaskState::Failed)),
        Some("cancelled") => (None, Some(TaskState::Cancelled)),
        Some("expired") => (None, Some(TaskState::Expired)),
        Some(_) => return Err(invalid(
            ErrorCode::InvalidStatus,
            "filter.status",
            "filter.status must be one of queued, running, succeeded, failed, cancelled, expired.",
        )
        .into()),
    };
    // Every task here runs on the default tier: another tier matches nothing.
    if query
        .service_tier
        .as_deref()
        .is_some_and(|t| t != "default")
    {
        return Ok(Json(ArkTaskList {
            items: Vec::new(),
            total: 0,
        }));
    }
    let model = query
        .model
        .as_deref()
        .map(|id| state.services.catalog.model_id(id));
    let filter = TaskFilter {
        status,
        state: task_state,
        model,
        ids: &query.task_ids,
        offset: (page - 1).saturating_mul(size),
        limit: size,
        ..TaskFilter::default()
    };
    let (tasks, total) = state.services.tasks.task_page(&account, &filter).await?;
    Ok(Json(ArkTaskList {
        items: tasks.iter().map(|t| render(&state, t, &base)).collect(),
        total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::dialect::reworded;
    use crate::api::error::HttpError;
    use axum::http::{header, StatusCode};
    use serde_json::json;

    fn read(body: Value) -> Result<Value, ApiError> {
        to_platform_request(&Catalog::builtin(), body.to_string().as_bytes())
    }

    fn image(url: &str, role: Option<&str>) -> Value {
        let mut item = json!({"type": "image_url", "image_url": {"url": url}});
        if let Some(role) = role {
            item["role"] = role.into();
        }
        item
    }

    #[test]
    fn ark_roles_become_the_platform_operations() {
        let text = json!({"type": "text", "text": "a kite"});
        let cases = [
            (vec![text.clone()], "text-to-video"),
            (
                vec![text.clone(), image("https://e.com/a.png", None)],
                "image-to-video",
            ),
            (
                vec![
                    text.clone(),
                    image("https://e.com/a.png", Some("first_frame")),
                    image("https://e.com/b.png", Some("last_frame")),
                ],
                "start-end-to-video",
            ),
            (
                vec![
                    text.clone(),
                    image("https://e.com/a.png", Some("reference_image")),
                    json!({"type": "video_url", "video_url": {"url": "https://e.com/v.mp4"}, "role": "reference_video"}),
                ],
                "reference-to-video",
            ),
        ];
        for (content, operation) in cases {
            let request = read(
                json!({"model": "doubao-seedance-2-0-260128", "content": content,
                "ratio": "16:9"}),
            )
            .unwrap();
            assert_eq!(request["operation"], operation, "{request}");
            assert_eq!(request["model"], "seedance-2.0");
            assert_eq!(request["prompt"], "a kite");
            assert_eq!(request["ratio"], "16:9");
        }
        let start_end = read(json!({"model": "seedance-2.0", "content": [text.clone(),
            image("https://e.com/a.png", Some("first_frame")), image("https://e.com/b.png", Some("last_frame"))]}))
        .unwrap();
        assert_eq!(
            (&start_end["start_image"], &start_end["end_image"]),
            (&json!("https://e.com/a.png"), &json!("https://e.com/b.png"))
        );
    }

    #[test]
    fn ark_fields_this_gateway_cannot_honour_are_refused_not_dropped() {
        for (field, value) in [
            ("frames", json!(121)),
            ("tools", json!([{"type": "web_search"}])),
            ("tools", json!(true)),
            ("omni_reference_task_type", json!("edit")),
        ] {
            let error = read(
                json!({"model": "seedance-2.0", "content": [{"type": "text", "text": "x"}],
                field: value}),
            )
            .unwrap_err();
            assert_eq!(
                (error.code.as_str(), error.param.as_deref()),
                ("unsupported_parameter", Some(field))
            );
        }
        // The values that ask for nothing are no-ops; `draft`, `camera_fixed` and
        // `output_format` go on to the platform parser, which owns their rule.
        let request = read(
            json!({"model": "seedance-2.0", "content": [{"type": "text", "text": "x"}],
            "tools": [], "output_format": "mp4", "draft": false, "camera_fixed": false}),
        )
        .unwrap();
        assert!(request.get("tools").is_none());
        assert_eq!(request["output_format"], "mp4");
        assert_eq!(
            (&request["draft"], &request["camera_fixed"]),
            (&json!(false), &json!(false))
        );
        let mixed = read(json!({"model": "seedance-2.0", "content": [{"type": "text", "text": "x"},
            image("https://e.com/a.png", None), image("https://e.com/b.png", Some("reference_image"))]}))
        .unwrap_err();
        assert_eq!(mixed.code.as_str(), "conflicting_inputs");
        let missing = read(json!({"model": "seedance-2.0"})).unwrap_err();
        assert_eq!(missing.code.as_str(), "missing_field");
        let garbage = to_platform_request(&Catalog::builtin(), b"[1]").unwrap_err();
        assert_eq!(garbage.code.as_str(), "invalid_json");
    }

    #[test]
    fn material_asset_id_is_the_first_frame_and_ids_are_ambiguous() {
        let text = json!({"type": "text", "text": "x"});
        let request = read(json!({"model": "seedance-2.0", "content": [text.clone()],
            "material_asset_id": "asset-20260720123456-ab1cd"}))
        .unwrap();
        assert_eq!(request["operation"], "image-to-video");
        assert_eq!(request["image_url"], "asset://asset-20260720123456-ab1cd");
        for (extra, code, param) in [
            (
                json!({"material_asset_id": "asset-1"}),
                "invalid_material_asset_id",
                "material_asset_id",
            ),
            (
                json!({"material_asset_ids": ["asset-20260720123456-ab1cd"]}),
                "ambiguous_material_asset_ids",
                "material_asset_ids",
            ),
        ] {
            let mut body = json!({"model": "seedance-2.0", "content": [text.clone()]});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let error = read(body).unwrap_err();
            assert_eq!(
                (error.code.as_str(), error.param.as_deref()),
                (code, Some(param))
            );
        }
        let mixed = read(
            json!({"model": "seedance-2.0", "material_asset_id": "asset-20260720123456-ab1cd",
            "content": [text, image("https://e.com/a.png", Some("reference_image"))]}),
        )
        .unwrap_err();
        assert_eq!(mixed.code.as_str(), "conflicting_inputs");
    }

    /// Our refusals that can reach this surface, and Ark's code for each.
    const ARK_CODES: [(ErrorCode, Option<&str>); 27] = [
        (ErrorCode::MissingField, Some("MissingParameter")),
        (ErrorCode::MissingVisualReference, Some("MissingParameter")),
        (ErrorCode::InvalidJson, Some("InvalidParameter")),
        (ErrorCode::InvalidBody, Some("InvalidParameter")),
        (ErrorCode::UnknownField, Some("InvalidParameter")),
        (ErrorCode::InvalidType, Some("InvalidParameter")),
        (ErrorCode::UnsupportedParameter, Some("InvalidParameter")),
        (ErrorCode::UnsupportedResolution, Some("InvalidParameter")),
        (ErrorCode::InvalidContent, Some("InvalidParameter")),
        (ErrorCode::ConflictingInputs, Some("InvalidParameter")),
        (ErrorCode::NoChannelForRequest, Some("InvalidParameter")),
        (ErrorCode::InvalidQuery, Some("InvalidParameter")),
        (ErrorCode::InvalidStatus, Some("InvalidParameter")),
        (ErrorCode::RequestTooLarge, Some("InvalidParameter")),
        (
            ErrorCode::UnknownModel,
            Some("InvalidEndpointOrModel.NotFound"),
        ),
        (ErrorCode::ModelNotAllowed, Some("ModelNotOpen")),
        (ErrorCode::InvalidApiKey, Some("AuthenticationError")),
        (ErrorCode::ExpiredApiKey, Some("AuthenticationError")),
        (ErrorCode::InsufficientBalance, Some("AccountOverdueError")),
        (ErrorCode::KeyLimitExceeded, Some("QuotaExceeded")),
        (
            ErrorCode::RateLimitExceeded,
            Some("ModelAccountRpmRateLimitExceeded"),
        ),
        (ErrorCode::AsyncTaskNotFound, Some("ResourceNotFound")),
        (ErrorCode::UpstreamUnavailable, Some("ServerOverloaded")),
        (ErrorCode::InternalError, Some("InternalServiceError")),
        (ErrorCode::StorageUnavailable, Some("InternalServiceError")),
        (ErrorCode::IdempotencyConflict, None),
        (ErrorCode::TaskNotCancellable, None),
    ];

    #[test]
    fn our_refusals_carry_arks_codes_where_ark_has_one() {
        for (ours, ark) in ARK_CODES {
            assert_eq!(ark_code(ours).map(|(code, _)| code), ark, "{ours:?}");
        }
        let body = in_arks_words(
            &ApiError::new(ErrorCode::UnsupportedResolution, "no")
                .with_param("resolution")
                .with_extra("allowed_resolutions", json!(["480p"])),
        );
        assert_eq!(
            body,
            json!({"error": {"code": "InvalidParameter", "type": "BadRequest", "message": "no",
                "param": "resolution", "seedgate_code": "unsupported_resolution",
                "allowed_resolutions": ["480p"]}})
        );
        let kept = in_arks_words(&ApiError::new(ErrorCode::IdempotencyConflict, "reused"));
        assert_eq!(
            (
                &kept["error"]["code"],
                &kept["error"]["type"],
                &kept["error"]["seedgate_code"]
            ),
            (
                &json!("idempotency_conflict"),
                &json!("invalid_request_error"),
                &json!("idempotency_conflict")
            )
        );
    }

    /// A refusal an extractor rendered for `/v1`, headers and all, keeps them in Ark's words.
    #[tokio::test]
    async fn a_rendered_refusal_keeps_its_status_and_headers() {
        let error = ApiError::new(ErrorCode::InvalidApiKey, "who?");
        let response = reworded::<Ark>(HttpError(error.clone()).into_response());
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            in_arks_words(&error)
        );
    }

    /// docs/ark.md's table of codes is the function's: a row per code, the same answer, and
    /// the status each code has.
    #[test]
    fn the_documented_ark_codes_are_the_ones_answered() {
        let doc = include_str!("../../../../docs/ark.md");
        let section = doc
            .split("### Errors in Ark's words")
            .nth(1)
            .expect("docs/ark.md has the section");
        let code = |cell: &str| cell.trim().trim_matches('`').to_owned();
        let mut documented = Vec::new();
        let rows = section
            .lines()
            .skip_while(|line| !line.starts_with("| our code"))
            .skip(2)
            .take_while(|line| line.starts_with('|'));
        for line in rows {
            let cells: Vec<&str> = line.split('|').collect();
            let statuses: Vec<u16> = cells[2]
                .split('/')
                .map(|s| s.trim().parse().unwrap())
                .collect();
            let ark = Some(code(cells[3])).filter(|ark| ark != "ours");
            for ours in code(cells[1]).split("`, `") {
                let answered = ErrorCode::ALL
                    .iter()
                    .find(|c| c.as_str() == ours && statuses.contains(&c.status()))
                    .unwrap_or_else(|| panic!("no `{ours}` with a status of {statuses:?}"));
                assert_eq!(
                    ark_code(*answered).map(|(code, _)| code.to_owned()),
                    ark,
                    "{ours}"
                );
                documented.push(*answered);
            }
        }
        for (ours, _) in ARK_CODES {
            assert!(documented.contains(&ours), "{ours:?} is not in docs/ark.md");
        }
    }
}
