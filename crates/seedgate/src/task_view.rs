//! The public task object (docs/tasks-and-errors.md), built from a stored task at read time so
//! result URLs are freshly signed and absolute, and withheld once the files have expired. API
//! answers and webhook bodies both carry it, so it sits below `api` and `notify` alike.

use seedgate_contract::drafts::draft_expires_at_ms;
use seedgate_contract::{Catalog, OutputFormat, RequestEcho};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::assets::{ResultFiles, ResultLinks};
use crate::lifecycle::StoredResult;
use crate::store::{PublicStatus, TaskRecord, TaskState};

/// A video generation task (docs/tasks-and-errors.md). `result`, `usage` and `cost` are filled
/// once it is `completed`; `error` once it has `failed`.
#[derive(Serialize, ToSchema)]
pub struct TaskObject {
    /// The task id (`vtask_…`), sortable by creation time.
    #[schema(example = "vtask_01JF3Q7Z8X9Y0A1B2C3D4E5F6G")]
    pub id: String,
    /// Alias of `id` for the platform's clients.
    pub task_id: String,
    /// Always `video.task`.
    #[schema(example = "video.task")]
    pub object: &'static str,
    pub model: String,
    /// `sandbox` or the upstream provider serving the task (`ark`).
    pub provider: String,
    #[schema(value_type = seedgate_contract::Operation)]
    pub operation: String,
    pub status: PublicStatus,
    /// True when the task was cancelled (its `status` is then `failed`).
    pub cancelled: bool,
    /// `cancelled` when the task was cancelled; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancellation_status: Option<&'static str>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Same as `created_at`, under the platform's name.
    pub created: i64,
    /// Same as `updated_at`, under the platform's name.
    pub updated: i64,
    /// Unix seconds, once the task has ended.
    pub completed_at: Option<i64>,
    /// Where to poll this task; join it to the API's base URL.
    #[schema(example = "/v1/tasks/vtask_01JF3Q7Z8X9Y0A1B2C3D4E5F6G")]
    pub poll_url: String,
    /// What was asked for, after defaults.
    #[schema(value_type = Option<RequestEcho>)]
    pub request: Option<Box<RawValue>>,
    pub result: Option<TaskResult>,
    pub usage: Option<Usage>,
    /// What was charged; only a completed task costs anything.
    pub cost: Option<Cost>,
    /// What was reserved from the balance when the task was created.
    pub estimated_cost: EstimatedCost,
    /// Why it failed; absent unless it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    /// Same as `result.video_url`, for the platform's clients; completed tasks only, while
    /// their files are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_url: Option<String>,
    /// Same as `result.last_frame_url`; completed tasks only, while their files are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_frame_url: Option<String>,
    /// The video in the platform's older shape; completed tasks only, while their files are
    /// kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoSummary>,
    /// A completed draft's handle for the final that renders from it (its own id); drafts
    /// only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft_task_id: Option<String>,
    /// Unix seconds until which a completed draft can be rendered as a final (its model's
    /// `tokenlab.draft.valid_days` after it completed); drafts only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft_expires_at: Option<i64>,
}

/// The output of a completed task. URLs are absolute, signed and expire at `expires_at`;
/// read the task again for fresh ones until `files_expire_at`, when the files are deleted:
/// from then on `expired` is true and the URLs are null, and the rest stays.
#[derive(Serialize, ToSchema)]
pub struct TaskResult {
    /// Null once the files have expired.
    pub video_url: Option<String>,
    /// A PNG of the last frame; null once the files have expired.
    pub last_frame_url: Option<String>,
    /// Real pixel size of the file.
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Seconds.
    pub duration: f64,
    pub has_audio: bool,
    /// The file's container: `mp4`, or `mov` when the request asked for it.
    pub container: OutputFormat,
    /// Unix seconds after which the URLs stop working: `assets.url_ttl_seconds` after this
    /// read, or `files_expire_at` if that comes first.
    pub expires_at: u64,
    /// Unix seconds when the files are deleted: `assets.retention_seconds` (30 days by
    /// default) after the task ended.
    pub files_expire_at: u64,
    /// True once the files have expired: no URL is given, since none would work.
    pub expired: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Usage {
    /// Tokens billed (output, plus input when video is an input).
    pub tokens: Option<i64>,
}

/// Exact decimal amounts as strings.
#[derive(Serialize, ToSchema)]
pub struct Cost {
    /// Always `USD`.
    pub currency: &'static str,
    #[schema(example = "0.592544")]
    pub amount: String,
    /// The official price in CNY it derives from.
    #[schema(example = "4.029300")]
    pub cny: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EstimatedCost {
    /// Always `USD`.
    pub currency: &'static str,
    #[schema(example = "0.592544")]
    pub amount: String,
    /// Tokens the reservation covers.
    pub tokens: i64,
}

/// Why a task failed: `cancelled`; `task_expired`; an input that failed its checks
/// (`input_url_forbidden`, `input_fetch_failed`, `input_too_large`, `input_image_unreadable`,
/// `input_video_unreadable`, `input_video_unsupported`, `input_audio_unreadable`, `invalid_image_dimensions`,
/// `invalid_media_duration`); `result_unavailable` (the upstream finished but its video could
/// not be retrieved); `result_store_failed` (the video was made but this server could not
/// store it, e.g. a full disk); `submission_unresolved`; `too_many_attempts`; or the upstream's own code.
/// A failed task is never charged.
#[derive(Serialize, ToSchema)]
pub struct TaskError {
    pub code: String,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct VideoSummary {
    pub url: String,
    pub duration: f64,
    pub width: u32,
    pub height: u32,
}

fn seconds(ms: i64) -> i64 {
    ms / 1000
}

/// Whether the task object follows from the record alone: until a task completes it has no
/// result links, which are signed for the asking host and the hour.
pub fn renders_from_record_alone(task: &TaskRecord) -> bool {
    task.state != TaskState::Succeeded
}

/// The task object with its result linked by `links`; also the body of webhooks.
pub fn render_task(
    task: &TaskRecord,
    links: &ResultLinks,
    catalog: &Catalog,
    base_url: &str,
    now_s: u64,
) -> TaskObject {
    let cancelled = task.state == TaskState::Cancelled;
    let mut object = TaskObject {
        id: task.id.to_string(),
        task_id: task.id.to_string(),
        object: "video.task",
        model: task.model.clone(),
        provider: task.provider.clone(),
        operation: task.operation.clone(),
        status: task.public_status(),
        cancelled,
        cancellation_status: cancelled.then_some("cancelled"),
        created_at: seconds(task.created_at_ms),
        updated_at: seconds(task.updated_at_ms),
        created: seconds(task.created_at_ms),
        updated: seconds(task.updated_at_ms),
        completed_at: task.completed_at_ms.map(seconds),
        poll_url: format!("/v1/tasks/{}", task.id),
        // Stored as the echo's own JSON, so it goes out as stored: a poll does not decode and
        // encode it again.
        request: RawValue::from_string(task.request_json.clone()).ok(),
        result: None,
        usage: None,
        cost: None,
        estimated_cost: EstimatedCost {
            currency: "USD",
            amount: usd(task.reserved_usd_micros),
            tokens: task.estimated_tokens,
        },
        error: None,
        video_url: None,
        last_frame_url: None,
        video: None,
        draft_task_id: None,
        draft_expires_at: None,
    };
    if let (Some(code), Some(message)) = (&task.error_code, &task.error_message) {
        object.error = Some(TaskError {
            code: code.clone(),
            message: message.clone(),
        });
    }
    if renders_from_record_alone(task) {
        return object;
    }
    let asked: Asked = serde_json::from_str(&task.request_json).unwrap_or_default();
    if let (true, Some(completed_at_ms)) = (asked.draft, task.completed_at_ms) {
        object.draft_task_id = Some(task.id.to_string());
        object.draft_expires_at = catalog
            .model(&task.model)
            .and_then(|model| draft_expires_at_ms(model, completed_at_ms))
            .map(seconds);
    }
    if let Some(files) = links.files(task, asked.output_format, base_url, now_s) {
        add_result(&mut object, task, files);
    }
    object
}

/// What of the request shapes a completed task's object.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Asked {
    output_format: OutputFormat,
    draft: bool,
}

fn add_result(object: &mut TaskObject, task: &TaskRecord, files: ResultFiles) {
    let Some(result) = task
        .result_json
        .as_deref()
        .and_then(|r| serde_json::from_str::<StoredResult>(r).ok())
    else {
        return;
    };
    object.usage = Some(Usage {
        tokens: task.usage_tokens,
    });
    object.cost = task.cost_usd_micros.map(|micros| Cost {
        currency: "USD",
        amount: usd(micros),
        cny: task.cost_cny.clone(),
    });
    let (video_url, last_frame_url) = files.urls.unzip();
    if let Some(url) = &video_url {
        object.video = Some(VideoSummary {
            url: url.clone(),
            duration: result.duration,
            width: result.width,
            height: result.height,
        });
    }
    object.video_url.clone_from(&video_url);
    object.last_frame_url.clone_from(&last_frame_url);
    object.result = Some(TaskResult {
        expired: video_url.is_none(),
        video_url,
        last_frame_url,
        width: result.width,
        height: result.height,
        fps: result.fps,
        duration: result.duration,
        has_audio: result.has_audio,
        container: result.container,
        expires_at: files.expires_at,
        files_expire_at: files.files_expire_at,
    });
}

/// Micro-dollars as the API shows money: six decimals, exact.
pub fn usd(micros: i64) -> String {
    rust_decimal::Decimal::new(micros, 6).to_string()
}

/// Micro-dollars as a JSON number, where the platform's schema wants one. Below 2^53
/// micro-dollars (billions of dollars) the shortest printing of the double is the exact
/// decimal, so nothing is rounded; the ledger itself stays in integers.
pub fn usd_number(micros: i64) -> serde_json::Value {
    serde_json::Number::from_f64(micros as f64 / 1e6)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}
