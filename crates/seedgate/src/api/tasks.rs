//! Task endpoints: create, read, list, cancel. Each handler extracts, calls one service
//! function and renders the task object.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use seedgate_contract::{
    ApiError, CreateVideoRequest, DurationRequest, ErrorCode, SCENARIO_HEADER,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Authed;
use super::error::{error_responses, invalid_query, HttpError};
use super::query::Query;
use super::view::{json_body, task_object, BaseUrl};
use super::ApiState;
use crate::ids::{AnyTaskId, TaskId};
use crate::service::CreateContext;
use crate::store::{now_ms, PublicStatus};
use crate::task_view::TaskObject;
use crate::telemetry::RequestId;

fn now_s() -> u64 {
    (now_ms() / 1000) as u64
}

/// Maps a body that could not be read: too large is `request_too_large`, anything else
/// `invalid_body`.
pub(super) fn body_error(rejection: BytesRejection) -> HttpError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        HttpError(ApiError::new(
            ErrorCode::RequestTooLarge,
            "The request body is larger than this server accepts. Send large media as URLs.",
        ))
    } else {
        HttpError(ApiError::new(
            ErrorCode::InvalidBody,
            format!("The request body could not be read: {rejection}"),
        ))
    }
}

error_responses! {
    /// The refusals of a create.
    struct CreateErrors(Platform) {
        InvalidJson | UnknownField | InvalidType | MissingField =>
            "Invalid request; `code` names the rule and `param` the field.";
        InsufficientBalance: "the reservation does not fit the balance.";
        KeyLimitExceeded: "the reservation would take the key past its spending cap.";
        ModelNotAllowed: "the key may not use the model.";
        IdempotencyConflict;
        RequestTooLarge;
    }
}

/// Create a video generation task. Validation is fail-closed: the first broken rule answers
/// with a stable `code`, and nothing is stored, queued or charged. The estimated cost is
/// reserved from the balance until the task ends; only a completed task is charged.
#[utoipa::path(
    post,
    path = "/v1/videos/generations",
    operation_id = "create_task",
    tag = "tasks",
    request_body = CreateVideoRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header,
            description = "1–255 visible ASCII characters. The same key and job (compared after parsing, on either surface) within 24 h return the original task; another job is refused with `idempotency_conflict`."),
        ("Seedgate-Sandbox-Scenario" = Option<String>, Header,
            description = "Test keys only (live keys' requests ignore it): an outcome for the sandbox to play out — `input_moderation`, `output_moderation`, `expire; after=N`, `rate_limited; count=N`, `slow_queue; wait=N`, `result_unavailable` or `cancel_race; wait=N` (docs/tasks-and-errors.md, Sandbox scenarios). Anything else is `invalid_sandbox_scenario`."),
    ),
    responses(
        (status = 200, description = "The task was accepted (status `pending`).", body = TaskObject,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the original task of a repeated request.")),
            links(
                ("GetTask" = (operation_id = "get_task", parameters(("id" = "$response.body#/id")))),
                ("CancelTask" = (operation_id = "cancel_task", parameters(("id" = "$response.body#/id")))),
            )),
        CreateErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn create(
    State(state): State<ApiState>,
    Authed(account): Authed,
    BaseUrl(base): BaseUrl,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let body = body.map_err(body_error)?;
    let created = state
        .services
        .tasks
        .create_task(&account, &body, create_context(&headers, &request_id)?)
        .await?;
    let object = task_object(&created.task, &state.services.tasks, &base, now_s());
    Ok(with_replay_mark(
        Json(object).into_response(),
        created.replayed,
    ))
}

/// What a create would cost, counted as a create counts it.
#[derive(Serialize, ToSchema)]
pub struct QuoteObject {
    /// `video.quote`.
    object: &'static str,
    model: String,
    operation: &'static str,
    resolution: &'static str,
    /// The size the video is made at (the tier's largest for `adaptive` following an input
    /// given by URL, whose shape is known only when the task runs).
    width: u32,
    height: u32,
    /// Output seconds counted (the model's longest for `duration: -1`).
    output_seconds: u32,
    /// True for `duration: -1`: the model picks the length, so the quote and the reservation
    /// count the longest it may pick (`output_seconds`), and a completed task is charged for
    /// the length it made.
    model_decides_duration: bool,
    /// Input video counted, in seconds; 0 without video input.
    input_video_seconds: f64,
    tokens: QuoteTokens,
    /// What the create would reserve; a completed task is charged its actual usage, at most
    /// this.
    cost: QuoteCost,
}

#[derive(Serialize, ToSchema)]
pub struct QuoteTokens {
    output: u64,
    input: u64,
    /// What is billed: output + input, at least the model's video-input minimum.
    billed: u64,
}

#[derive(Serialize, ToSchema)]
pub struct QuoteCost {
    /// `USD`.
    currency: &'static str,
    #[schema(example = "0.596277")]
    amount: String,
    /// The official price in CNY it derives from (USD = CNY / 6.8).
    #[schema(example = "4.054684")]
    cny: String,
    /// The rate applied, CNY per million tokens.
    cny_per_million_tokens: String,
    /// Whether the video-input rate applies.
    video_input: bool,
}

error_responses! {
    /// The refusals of a quote.
    struct QuoteErrors(Platform) {
        InvalidJson | UnknownField | InvalidType | MissingField =>
            "Invalid request, exactly as a create would answer.";
        ModelNotAllowed: "the key may not use the model.";
        RequestTooLarge;
    }
}

/// Prices a create request without creating anything: the same body and the same validation
/// as `POST /v1/videos/generations` (a request it refuses is refused here with the same code),
/// then the tokens and the cost in USD and CNY.
#[utoipa::path(
    post,
    path = "/v1/videos/quote",
    operation_id = "quote_task",
    tag = "tasks",
    request_body = CreateVideoRequest,
    responses(
        (status = 200, description = "What the create would cost.", body = QuoteObject),
        QuoteErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn quote(
    State(state): State<ApiState>,
    Authed(account): Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<QuoteObject>, HttpError> {
    let body = body.map_err(body_error)?;
    let priced = state.services.tasks.price(&account, &body).await?;
    let (job, quote) = (&priced.job, &priced.quote);
    Ok(Json(QuoteObject {
        object: "video.quote",
        model: job.model.clone(),
        operation: job.operation.as_str(),
        resolution: job.resolution.as_str(),
        width: quote.width,
        height: quote.height,
        output_seconds: quote.output_seconds,
        model_decides_duration: job.duration == DurationRequest::ModelDecides,
        input_video_seconds: quote.input_video_millis as f64 / 1000.0,
        tokens: QuoteTokens {
            output: quote.output_tokens,
            input: quote.input_tokens,
            billed: quote.billed_tokens,
        },
        cost: QuoteCost {
            currency: "USD",
            amount: quote.cost.usd_string(),
            cny: quote.cost.cny_string(),
            cny_per_million_tokens: quote.cny_per_million.to_string(),
            video_input: quote.video_input,
        },
    }))
}

/// Marks the answer to a repeated create (`Idempotent-Replayed: true`), on every surface.
pub(super) fn with_replay_mark(mut response: Response, replayed: bool) -> Response {
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// What a create carries beside its body: its idempotency key, its request id, and the
/// sandbox scenario a test key may name (a value that is not text names none there is).
pub(super) fn create_context<'a>(
    headers: &'a HeaderMap,
    request_id: &'a Option<Extension<RequestId>>,
) -> Result<CreateContext<'a>, HttpError> {
    Ok(CreateContext {
        idempotency_key: idempotency_key(headers)?,
        request_id: request_id.as_ref().map(|Extension(id)| id),
        scenario: headers
            .get(SCENARIO_HEADER)
            .map(|value| value.to_str().unwrap_or("\u{fffd}")),
        webhook_format: None,
    })
}

/// The `Idempotency-Key` header, when sent; every surface's create honours it alike.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, HttpError> {
    headers
        .get("idempotency-key")
        .map(|value| {
            value.to_str().map_err(|_| {
                HttpError(
                    ApiError::new(
                        ErrorCode::InvalidIdempotencyKey,
                        "Idempotency-Key must be visible ASCII.",
                    )
                    .with_param("Idempotency-Key"),
                )
            })
        })
        .transpose()
}

error_responses! {
    /// The refusals of a task's read.
    pub(super) struct TaskErrors(Platform) {
        AsyncTaskNotFound: "unknown id, or another account's task.";
    }
}

/// Read a task: poll this until `status` is `completed` or `failed`.
#[utoipa::path(
    get,
    path = "/v1/tasks/{id}",
    operation_id = "get_task",
    tag = "tasks",
    params(("id" = String, Path, description = "The task id: `vtask_…`, or the same task's `cgt-…` id from the Ark-compatible surface.")),
    responses(
        (status = 200, description = "The task.", body = TaskObject, links(
            ("CancelTask" = (operation_id = "cancel_task", parameters(("id" = "$response.body#/id")))),
        )),
        TaskErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn get(
    State(state): State<ApiState>,
    Authed(account): Authed,
    BaseUrl(base): BaseUrl,
    Path(AnyTaskId(id)): Path<AnyTaskId>,
) -> Result<Response, HttpError> {
    let tasks = &state.services.tasks;
    let task = tasks.task(&account, &id).await?;
    let body = state
        .polls
        .answer(&task, || task_object(&task, tasks, &base, now_s()));
    Ok(json_body(body))
}

error_responses! {
    /// The refusals of a cancel.
    struct CancelErrors(Platform) {
        AsyncTaskNotFound;
        TaskNotCancellable: "generating or already ended.";
        UpstreamUnavailable: "the upstream could not be asked; retry.";
    }
}

/// Cancel a task that has not started generating: it ends `failed` with `cancelled: true` and
/// its reservation is released. Cancelling a cancelled task answers the task again.
#[utoipa::path(
    delete,
    path = "/v1/tasks/{id}",
    operation_id = "cancel_task",
    tag = "tasks",
    params(("id" = String, Path, description = "The task id: `vtask_…`, or the same task's `cgt-…` id from the Ark-compatible surface.")),
    responses(
        (status = 200, description = "The cancelled task.", body = TaskObject),
        CancelErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn cancel(
    State(state): State<ApiState>,
    Authed(account): Authed,
    BaseUrl(base): BaseUrl,
    Path(AnyTaskId(id)): Path<AnyTaskId>,
) -> Result<Json<TaskObject>, HttpError> {
    let tasks = &state.services.tasks;
    let task = tasks.cancel_task(&account, &id).await?;
    Ok(Json(task_object(&task, tasks, &base, now_s())))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tasks with this public status.
    #[param(value_type = Option<PublicStatus>)]
    status: Option<String>,
    /// Only tasks of this model.
    model: Option<String>,
    /// Page size, 1–100; default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    after: Option<String>,
}

/// A page of tasks, newest first.
#[derive(Serialize, ToSchema)]
pub struct TaskList {
    /// Always `list`.
    object: &'static str,
    data: Vec<TaskObject>,
    /// Whether another page follows.
    has_more: bool,
    /// Pass as `after` for the next page; null on the last.
    next_cursor: Option<String>,
}

error_responses! {
    /// The refusals of the task list.
    struct TaskListErrors(Platform) {
        InvalidQuery | InvalidStatus | InvalidLimit;
    }
}

/// List this account's tasks, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/tasks",
    operation_id = "list_tasks",
    tag = "tasks",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of tasks.", body = TaskList),
        TaskListErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn list(
    State(state): State<ApiState>,
    Authed(account): Authed,
    BaseUrl(base): BaseUrl,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<TaskList>, HttpError> {
    let Query(query) = query.map_err(invalid_query)?;
    let page = state
        .services
        .tasks
        .list_tasks(
            &account,
            query.status.as_deref(),
            query.model.as_deref(),
            query.limit,
            query.after.map(TaskId::new).as_ref(),
        )
        .await?;
    let now = now_s();
    let next_cursor = if page.has_more {
        page.tasks.last().map(|t| t.id.to_string())
    } else {
        None
    };
    let data = page
        .tasks
        .iter()
        .map(|t| task_object(t, &state.services.tasks, &base, now))
        .collect();
    Ok(Json(TaskList {
        object: "list",
        data,
        has_more: page.has_more,
        next_cursor,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The per-task token of the callback URL handed to the upstream.
    token: Option<String>,
}

/// The acknowledgement of an upstream notification.
#[derive(Serialize, ToSchema)]
pub struct CallbackReceived {
    /// Always true.
    received: bool,
}

error_responses! {
    /// The refusals of an upstream's notification.
    struct CallbackErrors(Platform) {
        AsyncTaskNotFound: "unknown task or wrong token.";
    }
}

/// Upstream task notifications (the `callback_url` we hand the upstream): a hint to poll the
/// task now. Authenticated by a per-task token; the body is not trusted.
#[utoipa::path(
    post,
    path = "/v1/upstream/callback/{id}",
    operation_id = "upstream_callback",
    tag = "upstream",
    params(("id" = String, Path, description = "Our task id."), CallbackQuery),
    responses(
        (status = 200, description = "Noted; the task is polled now.", body = CallbackReceived),
        CallbackErrors,
    ),
)]
pub async fn upstream_callback(
    State(state): State<ApiState>,
    Path(id): Path<TaskId>,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> Result<Json<CallbackReceived>, HttpError> {
    let token = query.ok().and_then(|Query(q)| q.token).unwrap_or_default();
    state.services.tasks.upstream_callback(&id, &token).await?;
    Ok(Json(CallbackReceived { received: true }))
}
