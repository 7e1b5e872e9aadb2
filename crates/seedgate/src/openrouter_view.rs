//! A task in OpenRouter's shape: the job object of `/api/v1/videos`, and the event its
//! webhooks carry for tasks made there (`video.generation.*`, signed as OpenRouter signs:
//! `X-OpenRouter-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>,<body>")>`).

use seedgate_contract::{OutputFormat, RequestEcho};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::assets::ResultLinks;
use crate::management::rfc3339;
use crate::signing::timestamped_signature;
use crate::store::{now_ms, PublicStatus, TaskRecord, TaskState};
use crate::task_view::usd_number;

/// OpenRouter names Seedance `bytedance/<model>`.
pub const VENDOR_PREFIX: &str = "bytedance/";

/// A video job: the answer to a create and to a poll.
#[derive(Serialize, ToSchema)]
pub struct VideoJob {
    /// The job's id: the task's `vtask_…` id on every surface.
    id: String,
    /// Where to poll it (absolute).
    polling_url: String,
    /// `pending`, `in_progress`, `completed`, `failed`, `cancelled` or `expired`.
    #[schema(example = "pending")]
    status: &'static str,
    /// Why a job failed, was cancelled or expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The generation's id: the job's own.
    generation_id: String,
    /// How far along the job is, 0–100: 0 waiting, 100 done (the platform's own addition).
    progress: u8,
    /// The video through this API, with the key: `…/content?index=0`. Once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    unsigned_urls: Option<Vec<String>>,
    /// The video by signed URL, no key needed, until `expires_at`. Once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    urls: Option<Vec<String>>,
    /// Unix seconds when `urls` stop working.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    /// What the job cost. Once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<VideoUsage>,
}

/// A completed job's bill.
#[derive(Serialize, ToSchema)]
pub struct VideoUsage {
    /// USD charged, exact to the micro-dollar.
    #[schema(value_type = f64, example = 0.220879)]
    cost: Value,
    /// Always false: the gateway's own accounts served it.
    is_byok: bool,
}

/// OpenRouter's status for a task.
pub fn job_status(task: &TaskRecord) -> &'static str {
    match task.state {
        TaskState::Succeeded => "completed",
        TaskState::Failed => "failed",
        TaskState::Cancelled => "cancelled",
        TaskState::Expired => "expired",
        _ if task.public_status() == PublicStatus::Pending => "pending",
        _ => "in_progress",
    }
}

/// The job object of `task`: what `GET /api/v1/videos/{id}` answers, with its files linked
/// by `links` from `base` as they stand at `now_s`.
pub fn render_video_job(
    task: &TaskRecord,
    links: &ResultLinks,
    base: &str,
    now_s: u64,
) -> VideoJob {
    let id = task.id.to_string();
    let status = job_status(task);
    let echo: Option<RequestEcho> = serde_json::from_str(&task.request_json).ok();
    let format = echo.as_ref().map_or(OutputFormat::Mp4, |e| e.output_format);
    let files = links.files(task, format, base, now_s);
    let video = files
        .as_ref()
        .and_then(|f| f.urls.as_ref())
        .map(|(video, _)| video.clone());
    let completed = task.state == TaskState::Succeeded;
    VideoJob {
        polling_url: format!("{base}/api/v1/videos/{id}"),
        status,
        error: match status {
            "failed" | "cancelled" | "expired" => Some(
                task.error_message
                    .clone()
                    .unwrap_or_else(|| format!("The job {status}.")),
            ),
            _ => None,
        },
        generation_id: id.clone(),
        progress: match status {
            "pending" => 0,
            "in_progress" => 50,
            _ => 100,
        },
        unsigned_urls: video
            .is_some()
            .then(|| vec![format!("{base}/api/v1/videos/{id}/content?index=0")]),
        expires_at: video.as_ref().and(files.as_ref()).map(|f| f.expires_at),
        urls: video.map(|url| vec![url]),
        usage: completed.then(|| VideoUsage {
            cost: usd_number(task.cost_usd_micros.unwrap_or(0)),
            is_byok: false,
        }),
        id,
    }
}

/// The body of a webhook for `task` made on the OpenRouter surface: OpenRouter's event
/// envelope around the job.
pub fn webhook_event(task: &TaskRecord, links: &ResultLinks, base: &str, now_s: u64) -> Value {
    let job = render_video_job(task, links, base, now_s);
    let mut data = json!({
        "id": job.id,
        "status": job.status,
        "generation_id": job.generation_id,
        "model": format!("{VENDOR_PREFIX}{}", task.model),
    });
    // As OpenRouter sends them: a failure's `error`, or a completion's URLs and usage; never
    // a null in their place.
    for (key, value) in [
        (
            "unsigned_urls",
            serde_json::to_value(job.unsigned_urls).ok(),
        ),
        ("usage", serde_json::to_value(job.usage).ok()),
        ("error", serde_json::to_value(job.error).ok()),
    ] {
        if let Some(value) = value.filter(|v| !v.is_null()) {
            data[key] = value;
        }
    }
    json!({
        "type": format!("video.generation.{}", job.status),
        "created_at": rfc3339(now_ms()),
        "data": data,
    })
}

/// `t=<unix>,v1=<hex>` over `"<t>,<body>"`, as OpenRouter signs its webhooks.
pub fn signature_header(secret: &str, timestamp: u64, body: &str) -> String {
    timestamped_signature(secret, timestamp, ",", body)
}
