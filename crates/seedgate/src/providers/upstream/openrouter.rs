//! OpenRouter's video API as an upstream (docs/vendors.md, docs/openrouter.md for its wire):
//! a job per task, read one at a time, its video taken from the signed storage URL. Jobs
//! cannot be listed or cancelled there, so a submission whose answer was lost fails uncharged
//! instead of being sent again, and a started job runs to its end.

use seedgate_contract::{
    AspectRatio, DurationRequest, MediaInput, Operation, Resolution, VideoJob,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{failure, portable, ratio, usd_micros, CallError, Channel};
use crate::providers::{
    task_seed, CancelOutcome, ProviderError, SubmitRequest, UpstreamStatus, VendorUsage,
};

pub(super) const BASE_URL: &str = "https://openrouter.ai/api/v1";

pub(super) const OPERATIONS: &[Operation] = &[
    Operation::TextToVideo,
    Operation::ImageToVideo,
    Operation::StartEndToVideo,
    Operation::ReferenceToVideo,
];

/// Words a refusal on content grounds is worded with, in a failed job's `error`.
const MODERATION_MARKS: [&str; 4] = ["moderat", "sensitive", "content policy", "safety"];

pub(super) fn carries(job: &VideoJob) -> bool {
    portable(job)
}

#[derive(Deserialize)]
struct Job {
    id: String,
    status: String,
    error: Option<String>,
    #[serde(default)]
    urls: Vec<String>,
    usage: Option<JobUsage>,
}

/// A completed job's bill, in dollars.
#[derive(Deserialize)]
struct JobUsage {
    cost: Option<serde_json::Number>,
}

#[derive(Deserialize)]
struct ErrorObject {
    message: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<ErrorObject>,
}

/// `{"error": {"code": <HTTP status>, "message"}}`: the status is the code.
pub(super) fn error_of(body: &[u8]) -> (String, String) {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.error)
        .and_then(|e| e.message)
        .unwrap_or_default();
    (String::new(), message)
}

fn media(kind: &str, input: &MediaInput) -> Value {
    json!({"type": kind, kind: {"url": input.as_str()}})
}

/// The create body for one submission. `adaptive` and a length left to the model are what
/// OpenRouter does when the field is absent.
fn body(request: &SubmitRequest<'_>, upstream_model: &str) -> Value {
    let job = request.job;
    let i = &job.inputs;
    let mut body = json!({
        "model": upstream_model,
        "prompt": job.prompt.as_deref().unwrap_or_default(),
        "resolution": match job.resolution {
            Resolution::K4 => "4K",
            other => other.as_str(),
        },
        "generate_audio": job.generate_audio,
        "seed": task_seed(request.task_id, job),
    });
    let ratio = ratio(job);
    if ratio != AspectRatio::Adaptive.as_str() {
        body["aspect_ratio"] = ratio.into();
    }
    if let DurationRequest::Seconds(seconds) = job.duration {
        body["duration"] = seconds.into();
    }
    let mut frames = Vec::new();
    if let Some(first) = i.image.as_ref().or(i.start_image.as_ref()) {
        let mut frame = media("image_url", first);
        frame["frame_type"] = "first_frame".into();
        frames.push(frame);
    }
    if let Some(last) = &i.end_image {
        let mut frame = media("image_url", last);
        frame["frame_type"] = "last_frame".into();
        frames.push(frame);
    }
    if !frames.is_empty() {
        body["frame_images"] = frames.into();
    }
    let references: Vec<Value> = i
        .reference_images
        .iter()
        .map(|m| media("image_url", m))
        .chain(i.reference_videos.iter().map(|m| media("video_url", m)))
        .chain(i.reference_audios.iter().map(|m| media("audio_url", m)))
        .collect();
    if !references.is_empty() {
        body["input_references"] = references.into();
    }
    body
}

pub(super) async fn create(
    channel: &Channel,
    request: &SubmitRequest<'_>,
    upstream_model: &str,
) -> Result<String, CallError> {
    channel
        .call::<Job>(
            channel
                .client
                .post(channel.endpoint("/videos"))
                .json(&body(request, upstream_model)),
        )
        .await
        .map(|job| job.id)
}

fn status_of(job: Job) -> Result<UpstreamStatus, ProviderError> {
    Ok(match job.status.as_str() {
        "pending" => UpstreamStatus::Queued,
        "in_progress" => UpstreamStatus::Running,
        // The signed storage URL needs no key; the content proxy would.
        "completed" => UpstreamStatus::Succeeded {
            video_url: job.urls.into_iter().next().ok_or_else(|| {
                ProviderError::transient(
                    "upstream_bad_response",
                    "a completed job without a signed URL in `urls`",
                )
            })?,
            last_frame_url: None,
            usage: VendorUsage {
                cost_usd_micros: job.usage.and_then(|u| u.cost).as_ref().and_then(usd_micros),
                ..VendorUsage::default()
            },
        },
        "failed" => failure(
            job.error
                .unwrap_or_else(|| "The upstream failed the job.".to_owned()),
            &MODERATION_MARKS,
        ),
        "cancelled" => UpstreamStatus::Cancelled,
        "expired" => UpstreamStatus::Expired,
        other => {
            return Err(ProviderError::transient(
                "upstream_bad_response",
                format!("unknown job status `{other}`"),
            ))
        }
    })
}

pub(super) async fn fetch(
    channel: &Channel,
    upstream_id: &str,
) -> Result<UpstreamStatus, ProviderError> {
    let job = channel
        .get::<Job>(&format!("/videos/{upstream_id}"))
        .await
        .map_err(CallError::into_read_error)?;
    status_of(job)
}

/// OpenRouter's API has no way to stop a job.
pub(super) async fn cancel(
    _channel: &Channel,
    _upstream_id: &str,
) -> Result<CancelOutcome, ProviderError> {
    Ok(CancelOutcome::NotCancellable)
}

/// The key's own record: reachability and the key's validity in one read.
pub(super) async fn check(channel: &Channel) -> Result<(), CallError> {
    channel
        .call::<Value>(channel.client.get(channel.endpoint("/key")))
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_map_to_our_statuses_and_take_the_signed_url() {
        let job = |value: Value| status_of(serde_json::from_value(value).unwrap());
        assert_eq!(
            job(json!({"id": "j", "status": "completed",
                "unsigned_urls": ["https://openrouter.ai/api/v1/videos/j/content?index=0"],
                "urls": ["https://storage.example/j.mp4?sig=1"],
                "usage": {"cost": 0.220879, "is_byok": false}}))
            .unwrap(),
            UpstreamStatus::Succeeded {
                video_url: "https://storage.example/j.mp4?sig=1".into(),
                last_frame_url: None,
                usage: VendorUsage {
                    cost_usd_micros: Some(220_879),
                    ..VendorUsage::default()
                }
            }
        );
        assert!(job(json!({"id": "j", "status": "completed"})).is_err());
        assert!(matches!(
            job(json!({"id": "j", "status": "failed", "error": "Blocked by content moderation"})).unwrap(),
            UpstreamStatus::Failed { code, .. } if code == "OutputVideoSensitiveContentDetected"
        ));
        assert_eq!(
            job(json!({"id": "j", "status": "expired"})).unwrap(),
            UpstreamStatus::Expired
        );
    }
}
