//! The OpenRouter-compatible surface, `/api/v1/videos`: the video API OpenRouter published in
//! March 2026, which multi-vendor video clients now speak (docs/openrouter.md). A create body is
//! read into the platform's create body and goes through the one parser and the one service;
//! jobs are the same tasks as on `/v1` and `/api/v3`, rendered in OpenRouter's shape, read,
//! cancelled and billed the same everywhere.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use seedgate_contract::{
    ApiError, AspectRatio, Catalog, ErrorCode, ModelSpec, Operation, OutputFormat, RequestEcho,
    Resolution, WebhookFormat,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::assets::serve_file;
use super::dialect::{create_translated, Dialect, DialectAuthed, DialectError};
use super::error::error_responses;
use super::query::Query;
use super::tasks::with_replay_mark;
use super::view::BaseUrl;
use super::ApiState;
use crate::assets::AssetKind;
use crate::ids::TaskId;
use crate::openrouter_view::{job_status, render_video_job, VideoJob, VENDOR_PREFIX};
use crate::store::{now_ms, TaskRecord, TaskState};
use crate::telemetry::RequestId;

/// Provider slugs whose `provider.options` this gateway honours: OpenRouter forwards only the
/// matched provider's options and ignores the rest, and Seedance is served there by BytePlus.
const OUR_SLUGS: [&str; 3] = ["byteplus", "seed", "seedgate"];

/// The platform request fields `provider.options.<slug>` may set (the models list names them
/// in `allowed_passthrough_parameters`); OpenRouter drops any other key silently.
/// `output_format` is not among them: OpenRouter's clients take only MP4 from `/content`.
const PASSTHROUGH: [&str; 6] = [
    "watermark",
    "return_last_frame",
    "service_tier",
    "execution_expires_after",
    "draft",
    "safety_identifier",
];

/// Fields OpenRouter's request has that only its upscaling models read.
const UPSCALING_ONLY: [&str; 2] = ["creativity", "upscale_factor"];

/// Observability fields OpenRouter never sends to a provider.
const NOT_FORWARDED: [&str; 3] = ["session_id", "trace", "user"];

fn invalid(code: ErrorCode, param: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message).with_param(param)
}

/// An `{"url": "…"}` object's URL, under `kind` of `item`.
fn media_url(item: &Map<String, Value>, kind: &str, param: &str) -> Result<Value, ApiError> {
    match item.get(kind).and_then(|v| v.get("url")) {
        Some(Value::String(url)) => Ok(Value::String(url.clone())),
        _ => Err(invalid(
            ErrorCode::InvalidContent,
            param,
            format!("`{param}` items need `{kind}.url`, a string."),
        )),
    }
}

/// `frame_images`: at most one `first_frame`, and a `last_frame` only beside it.
fn frames(value: &Value) -> Result<(Option<Value>, Option<Value>), ApiError> {
    let param = "frame_images";
    let Some(items) = value.as_array() else {
        return Err(invalid(
            ErrorCode::InvalidContent,
            param,
            "`frame_images` must be an array.",
        ));
    };
    let (mut first, mut last) = (None, None);
    for item in items {
        let Some(item) = item.as_object() else {
            return Err(invalid(
                ErrorCode::InvalidContent,
                param,
                "Each frame image is an object.",
            ));
        };
        let url = media_url(item, "image_url", param)?;
        let slot = match item.get("frame_type").and_then(Value::as_str) {
            Some("first_frame") => &mut first,
            Some("last_frame") => &mut last,
            _ => {
                return Err(invalid(
                    ErrorCode::InvalidContent,
                    param,
                    "`frame_type` must be `first_frame` or `last_frame`.",
                ))
            }
        };
        if slot.replace(url).is_some() {
            return Err(invalid(
                ErrorCode::InvalidContent,
                param,
                "Send each frame_type at most once.",
            ));
        }
    }
    if last.is_some() && first.is_none() {
        return Err(invalid(
            ErrorCode::MissingField,
            param,
            "A `last_frame` needs a `first_frame` beside it.",
        ));
    }
    Ok((first, last))
}

/// `input_references`, by kind: images, videos, audios.
fn references(value: &Value) -> Result<[Vec<Value>; 3], ApiError> {
    let param = "input_references";
    let Some(items) = value.as_array() else {
        return Err(invalid(
            ErrorCode::InvalidContent,
            param,
            "`input_references` must be an array.",
        ));
    };
    let mut found: [Vec<Value>; 3] = Default::default();
    for item in items {
        let Some(item) = item.as_object() else {
            return Err(invalid(
                ErrorCode::InvalidContent,
                param,
                "Each reference is an object.",
            ));
        };
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
        let slot = match kind {
            "image_url" => 0,
            "video_url" => 1,
            "audio_url" => 2,
            _ => {
                return Err(invalid(
                    ErrorCode::InvalidContent,
                    param,
                    "A reference's `type` is `image_url`, `video_url` or `audio_url`.",
                ))
            }
        };
        found[slot].push(media_url(item, kind, param)?);
    }
    Ok(found)
}

/// OpenRouter spells the 4k tier `4K`; the platform `4k`.
const OPENROUTER_4K: &str = "4K";

/// A resolution in the platform's spelling.
fn ours(resolution: &Value) -> Value {
    match resolution.as_str() {
        Some(OPENROUTER_4K) => Value::String(Resolution::K4.as_str().to_owned()),
        _ => resolution.clone(),
    }
}

/// A resolution in OpenRouter's spelling.
fn theirs(resolution: Resolution) -> String {
    match resolution {
        Resolution::K4 => OPENROUTER_4K.to_owned(),
        other => other.as_str().to_owned(),
    }
}

/// `size` (`"1280x720"`) as the model's resolution and ratio that give it.
fn size_of(
    catalog: &Catalog,
    spec: Option<&ModelSpec>,
    size: &Value,
) -> Result<(String, String), ApiError> {
    let refused = || {
        invalid(
            ErrorCode::UnsupportedResolution,
            "size",
            "`size` must be one of the model's `supported_sizes` (GET /api/v1/videos/models).",
        )
    };
    let (w, h) = size
        .as_str()
        .and_then(|s| s.split_once('x'))
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .ok_or_else(refused)?;
    let spec = spec.ok_or_else(refused)?;
    spec.resolutions
        .iter()
        .flat_map(|&r| spec.aspect_ratios.iter().map(move |&a| (r, a)))
        .find(|&(r, a)| catalog.output_size(r, a) == Some((w, h)))
        .map(|(r, a)| (r.as_str().to_owned(), a.as_str().to_owned()))
        .ok_or_else(refused)
}

/// The platform's create body for an OpenRouter create body. The operation follows the
/// inputs: frame images make image-to-video (with a last frame, start-end-to-video), input
/// references reference-to-video, `previous_job_id` a video-extension of that job, and
/// nothing text-to-video. Both frames and references is refused rather than one set dropped.
pub fn to_platform_request(catalog: &Catalog, body: &[u8]) -> Result<Value, ApiError> {
    let Ok(Value::Object(wire)) = serde_json::from_slice::<Value>(body) else {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "The body must be a JSON object.",
        ));
    };
    let mut request = Map::new();
    let (mut frame_images, mut input_references, mut previous, mut size) = (None, None, None, None);
    for (key, value) in wire.into_iter().filter(|(_, value)| !value.is_null()) {
        match key.as_str() {
            "model" => {
                let named = value
                    .as_str()
                    .map(|id| id.strip_prefix(VENDOR_PREFIX).unwrap_or(id));
                let model = match named.and_then(|id| catalog.model_or_upstream(id)) {
                    Some(spec) => Value::String(spec.id.clone()),
                    None => value,
                };
                request.insert(key, model);
            }
            "resolution" => {
                request.insert(key, ours(&value));
            }
            "prompt" | "duration" | "aspect_ratio" | "generate_audio" | "seed" | "callback_url" => {
                request.insert(key, value);
            }
            // An empty list sends nothing, as on `/v1`.
            "frame_images" => {
                frame_images = Some(frames(&value)?).filter(|(first, _)| first.is_some())
            }
            "input_references" => {
                input_references =
                    Some(references(&value)?).filter(|found| found.iter().any(|k| !k.is_empty()))
            }
            "previous_job_id" => previous = Some(value),
            "size" => size = Some(value),
            "provider" => passthrough(&value, &mut request)?,
            _ if NOT_FORWARDED.contains(&key.as_str()) => {}
            _ if UPSCALING_ONLY.contains(&key.as_str()) => {
                return Err(invalid(
                    ErrorCode::UnsupportedParameter,
                    &key,
                    format!("`{key}` is for upscaling models; Seedance does not take it."),
                ))
            }
            _ => {
                return Err(invalid(
                    ErrorCode::UnsupportedParameter,
                    &key,
                    format!("`{key}` is not a field of this API."),
                ))
            }
        }
    }
    if let Some(size) = size {
        let spec = request
            .get("model")
            .and_then(Value::as_str)
            .and_then(|id| catalog.model(id));
        let (resolution, ratio) = size_of(catalog, spec, &size)?;
        for (field, value) in [("resolution", resolution), ("aspect_ratio", ratio)] {
            if request
                .get(field)
                .is_some_and(|given| given.as_str() != Some(&value))
            {
                return Err(invalid(
                    ErrorCode::ConflictingInputs,
                    "size",
                    format!("`size` gives `{field}` {value}, which differs from the one sent."),
                ));
            }
            request.insert(field.into(), value.into());
        }
    }
    let operation = match (frame_images, input_references, previous) {
        (Some(_), Some(_), _) => {
            return Err(invalid(
                ErrorCode::ConflictingInputs,
                "input_references",
                "Send `frame_images` or `input_references`, not both: frames make image-to-video, references reference-to-video.",
            ))
        }
        (Some(_), None, Some(_)) | (None, Some(_), Some(_)) => {
            return Err(invalid(
                ErrorCode::ConflictingInputs,
                "previous_job_id",
                "`previous_job_id` continues that job's video; it takes no frames or references.",
            ))
        }
        (None, None, Some(previous)) => {
            request.insert("task_id".into(), previous);
            Operation::VideoExtension
        }
        (Some((Some(first), None)), None, None) => {
            request.insert("image_url".into(), first);
            Operation::ImageToVideo
        }
        (Some((Some(first), Some(last))), None, None) => {
            request.insert("start_image".into(), first);
            request.insert("end_image".into(), last);
            Operation::StartEndToVideo
        }
        (Some((None, _)), None, None) | (None, None, None) => Operation::TextToVideo,
        (None, Some([images, videos, audios]), None) => {
            for (field, items) in [
                ("reference_images", images),
                ("video_urls", videos),
                ("audio_urls", audios),
            ] {
                if !items.is_empty() {
                    request.insert(field.into(), Value::Array(items));
                }
            }
            Operation::ReferenceToVideo
        }
    };
    request.insert("operation".into(), operation.as_str().into());
    Ok(Value::Object(request))
}

/// `provider.options`: only our slugs' options are read, and of those only the platform
/// fields in [`PASSTHROUGH`]; everything else is dropped, as OpenRouter documents.
fn passthrough(provider: &Value, request: &mut Map<String, Value>) -> Result<(), ApiError> {
    let Some(provider) = provider.as_object() else {
        return Err(invalid(
            ErrorCode::InvalidContent,
            "provider",
            "`provider` must be an object.",
        ));
    };
    let Some(options) = provider.get("options").filter(|o| !o.is_null()) else {
        return Ok(());
    };
    let Some(options) = options.as_object() else {
        return Err(invalid(
            ErrorCode::InvalidContent,
            "provider.options",
            "`provider.options` maps provider slugs to objects.",
        ));
    };
    for slug in OUR_SLUGS {
        let Some(ours) = options.get(slug).and_then(Value::as_object) else {
            continue;
        };
        for (key, value) in ours {
            if PASSTHROUGH.contains(&key.as_str()) && !value.is_null() {
                request.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(())
}

/// The error object in OpenRouter's shape: its `code` is the HTTP status; our code, the field
/// at fault and the helpful extras ride in `metadata`.
fn in_openrouters_words(e: &ApiError) -> Value {
    let mut metadata = e.extra.clone();
    metadata.insert("seedgate_code".into(), e.code.as_str().into());
    if let Some(param) = &e.param {
        metadata.insert("param".into(), param.clone().into());
    }
    json!({"error": {"code": e.status(), "message": e.message, "metadata": metadata}})
}

/// OpenRouter's words for the platform's errors.
pub struct OpenRouter;

impl Dialect for OpenRouter {
    fn in_its_words(error: &ApiError) -> Value {
        in_openrouters_words(error)
    }
}

/// Any refusal of this surface, in OpenRouter's words.
pub type OpenRouterError = DialectError<OpenRouter>;

/// The calling key, refused in OpenRouter's words.
pub type OpenRouterAuthed = DialectAuthed<OpenRouter>;

error_responses! {
    /// What every call of this surface may answer besides its own refusals, in OpenRouter's
    /// words.
    pub struct OpenRouterCommonErrors(OpenRouter) {
        InvalidApiKey | ExpiredApiKey: "missing, unknown, revoked or expired key.";
        RateLimitExceeded: "back off for `Retry-After` s.";
        InternalError: "our fault; safe to retry.";
    }
}

/// Every error response of this surface.
#[derive(Serialize, ToSchema)]
pub struct OpenRouterErrorBody {
    error: OpenRouterErrorObject,
}

/// OpenRouter's error object.
#[derive(Serialize, ToSchema)]
pub struct OpenRouterErrorObject {
    /// The HTTP status.
    #[schema(example = 400)]
    code: u16,
    /// What went wrong and how to fix it; wording may change.
    message: String,
    /// `seedgate_code`, our finer code (as on `/v1`); `param`, the field at fault; and the
    /// helpful extras, e.g. `allowed_resolutions`.
    metadata: Map<String, Value>,
}

fn render(state: &ApiState, task: &TaskRecord, base: &str) -> VideoJob {
    render_video_job(
        task,
        state.services.tasks.links(),
        base,
        (now_ms() / 1000) as u64,
    )
}

error_responses! {
    /// The refusals of a create.
    struct CreateErrors(OpenRouter) {
        InvalidJson | MissingField | UnsupportedParameter | ConflictingInputs | InvalidContent =>
            "the request breaks a rule; `metadata.seedgate_code` names it.";
        InsufficientBalance | KeyLimitExceeded;
        ModelNotAllowed: "the key may not use the model.";
        IdempotencyConflict;
        RequestTooLarge;
    }
}

/// Submit a video job in OpenRouter's wire format (`frame_images`, `input_references`,
/// `provider.options`); Seedance models as `bytedance/<id>` or our ids. Honours
/// `Idempotency-Key`, limits and billing exactly as `POST /v1/videos/generations`.
#[utoipa::path(
    post,
    path = "/api/v1/videos",
    operation_id = "openrouter_create_video",
    tag = "openrouter",
    request_body(content = Object, description = "OpenRouter's create body: `model`, `prompt`, `duration`, `resolution`, `aspect_ratio` or `size`, `generate_audio`, `seed`, `frame_images`, `input_references`, `previous_job_id`, `callback_url`, `provider.options`."),
    responses(
        (status = 202, description = "The job was accepted.", body = VideoJob),
        CreateErrors,
        OpenRouterCommonErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn create(
    State(state): State<ApiState>,
    DialectAuthed(account, ..): OpenRouterAuthed,
    BaseUrl(base): BaseUrl,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenRouterError> {
    let created = create_translated(
        &state,
        &account,
        body,
        &headers,
        &request_id,
        to_platform_request,
        Some(WebhookFormat::OpenRouter),
    )
    .await?;
    let mut response = Json(render(&state, &created.task, &base)).into_response();
    *response.status_mut() = StatusCode::ACCEPTED;
    Ok(with_replay_mark(response, created.replayed))
}

error_responses! {
    /// The refusals of a job's read.
    struct JobErrors(OpenRouter) {
        AsyncTaskNotFound;
    }
}

/// Poll a job (any surface's task, by either id spelling).
#[utoipa::path(
    get,
    path = "/api/v1/videos/{id}",
    operation_id = "openrouter_get_video",
    tag = "openrouter",
    params(("id" = String, Path, description = "The job id (`vtask_…`, or `cgt-…`).")),
    responses(
        (status = 200, description = "The job.", body = VideoJob),
        JobErrors,
        OpenRouterCommonErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn get(
    State(state): State<ApiState>,
    DialectAuthed(account, ..): OpenRouterAuthed,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> Result<Json<VideoJob>, OpenRouterError> {
    let task = state
        .services
        .tasks
        .task(&account, &TaskId::from_either(&id))
        .await?;
    Ok(Json(render(&state, &task, &base)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContentQuery {
    /// Which output; a Seedance job has one, 0.
    #[param(minimum = 0, maximum = 0)]
    index: Option<u32>,
}

error_responses! {
    /// The refusals of a download.
    struct ContentErrors(OpenRouter) {
        InvalidQuery: "`index` is not 0.";
        AsyncTaskNotFound;
        VideoNotReady: "the job has not completed.";
        ResultExpired: "the job's files were deleted once their retention ended.";
        StorageUnavailable: "the file could not be read from storage; retry.";
    }
}

/// Download a completed job's video, streamed (a single `Range` is served as `206`).
#[utoipa::path(
    get,
    path = "/api/v1/videos/{id}/content",
    operation_id = "openrouter_get_video_content",
    tag = "openrouter",
    params(("id" = String, Path, description = "The job id."), ContentQuery),
    responses(
        (status = 200, description = "The video.", content(("video/mp4"), ("video/quicktime"))),
        (status = 206, description = "The requested byte range.", content(("video/mp4"), ("video/quicktime"))),
        ContentErrors,
        OpenRouterCommonErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn content(
    State(state): State<ApiState>,
    DialectAuthed(account, ..): OpenRouterAuthed,
    Path(id): Path<String>,
    query: Result<Query<ContentQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, OpenRouterError> {
    let Ok(Query(query)) = query else {
        return Err(invalid(ErrorCode::InvalidQuery, "index", "`index` must be 0.").into());
    };
    if query.index.unwrap_or(0) != 0 {
        return Err(invalid(
            ErrorCode::InvalidQuery,
            "index",
            "A Seedance job has one output: index 0.",
        )
        .into());
    }
    let task = state
        .services
        .tasks
        .task(&account, &TaskId::from_either(&id))
        .await?;
    if task.state != TaskState::Succeeded {
        return Err(ApiError::new(
            ErrorCode::VideoNotReady,
            format!(
                "The job is {}; its video exists once it has completed.",
                job_status(&task)
            ),
        )
        .with_extra("status", job_status(&task).into())
        .into());
    }
    let echo: Option<RequestEcho> = serde_json::from_str(&task.request_json).ok();
    let kind = AssetKind::video(echo.map_or(OutputFormat::Mp4, |e| e.output_format));
    Ok(serve_file(&state, &task.id, kind, &headers).await?)
}

/// One model, as OpenRouter's video models list describes it.
#[derive(Serialize, ToSchema)]
pub struct VideoModel {
    /// `bytedance/<id>`; our own id is taken too.
    id: String,
    canonical_slug: String,
    name: String,
    /// Unix seconds.
    created: i64,
    description: String,
    hugging_face_id: Option<String>,
    supported_resolutions: Vec<String>,
    supported_aspect_ratios: Vec<String>,
    /// `WIDTHxHEIGHT`, each one resolution and ratio.
    supported_sizes: Vec<String>,
    supported_durations: Vec<u32>,
    supported_frame_images: Vec<&'static str>,
    generate_audio: bool,
    seed: bool,
    /// Always null: not an upscaling model.
    #[schema(value_type = Option<Object>)]
    upscale_factor: Option<()>,
    /// Always null: not an upscaling model.
    #[schema(value_type = Option<Vec<i64>>)]
    creativity: Option<()>,
    /// The keys `provider.options.byteplus` may set.
    allowed_passthrough_parameters: Vec<&'static str>,
    /// USD per million tokens by resolution, without and with video input: the platform's
    /// token prices, whichever vendor serves the job.
    pricing_skus: std::collections::BTreeMap<String, String>,
}

/// `GET /api/v1/videos/models`, rendered once when the catalog is loaded.
pub fn video_models(catalog: &Catalog, loaded_at: i64) -> Bytes {
    let data: Vec<VideoModel> = catalog
        .models()
        .iter()
        .map(|spec| {
            let slug = format!("{VENDOR_PREFIX}{}", spec.id);
            let fixed: Vec<AspectRatio> = spec
                .aspect_ratios
                .iter()
                .copied()
                .filter(|a| a.ratio().is_some())
                .collect();
            let sizes = spec
                .resolutions
                .iter()
                .flat_map(|&r| fixed.iter().map(move |&a| (r, a)))
                .filter_map(|(r, a)| catalog.output_size(r, a))
                .map(|(w, h)| format!("{w}x{h}"))
                .collect();
            let mut frames = Vec::new();
            if spec.operations.contains(&Operation::ImageToVideo)
                || spec.operations.contains(&Operation::StartEndToVideo)
            {
                frames.push("first_frame");
            }
            if spec.operations.contains(&Operation::StartEndToVideo) {
                frames.push("last_frame");
            }
            let pricing_skus = catalog
                .model_pricing_rows(spec)
                .into_iter()
                .map(|row| {
                    let input = if row.video_input { "-video-input" } else { "" };
                    (
                        format!("per-million-tokens-{}{input}", row.resolution.as_str()),
                        row.usd_per_million_tokens.to_string(),
                    )
                })
                .collect();
            VideoModel {
                canonical_slug: slug.clone(),
                id: slug,
                name: spec.name.clone(),
                created: spec.released.map_or(loaded_at, |d| d.unix_seconds()),
                description: spec.description.clone(),
                hugging_face_id: None,
                supported_resolutions: spec.resolutions.iter().map(|&r| theirs(r)).collect(),
                supported_aspect_ratios: fixed.iter().map(|a| a.as_str().to_owned()).collect(),
                supported_sizes: sizes,
                supported_durations: (spec.duration.min..=spec.duration.max).collect(),
                supported_frame_images: frames,
                // Every Seedance 2.x model makes a sound track on request (`generate_audio`).
                generate_audio: true,
                seed: true,
                upscale_factor: None,
                creativity: None,
                allowed_passthrough_parameters: PASSTHROUGH.to_vec(),
                pricing_skus,
            }
        })
        .collect();
    Bytes::from(serde_json::to_vec(&json!({ "data": data })).unwrap_or_default())
}

/// The models list's body.
#[derive(Serialize, ToSchema)]
pub struct VideoModelList {
    data: Vec<VideoModel>,
}

/// The video models with their capabilities and prices, as OpenRouter lists them. No key
/// needed (OpenRouter's own is public).
#[utoipa::path(
    get,
    path = "/api/v1/videos/models",
    operation_id = "openrouter_list_video_models",
    tag = "openrouter",
    responses((status = 200, description = "The models.", body = VideoModelList)),
)]
pub async fn models(State(state): State<ApiState>) -> Response {
    let mut response = Response::new(Body::from(state.catalog.video_models()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
