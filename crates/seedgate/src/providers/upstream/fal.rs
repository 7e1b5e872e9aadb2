//! fal's queue API (docs/vendors.md): a request to the operation's app
//! (`bytedance/seedance-2.0/text-to-video`, …), its status read one at a time, its result
//! fetched once it is `COMPLETED`. fal lists no requests by key, so a submission whose answer
//! was lost cannot be found: such a task fails uncharged instead of being sent again.

use reqwest::StatusCode;
use seedgate_contract::{AspectRatio, DurationRequest, MediaInput, Operation, VideoJob};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{compute_ms, portable, ratio, CallError, Channel};
use crate::providers::{CancelOutcome, ProviderError, SubmitRequest, UpstreamStatus, VendorUsage};

pub(super) const BASE_URL: &str = "https://queue.fal.run";

/// The `error_type`s of a request whose time ran out before it was served.
const DEADLINE_ERRORS: [&str; 2] = ["request_timeout", "startup_timeout"];

pub(super) const OPERATIONS: &[Operation] = &[
    Operation::TextToVideo,
    Operation::ImageToVideo,
    Operation::StartEndToVideo,
    Operation::ReferenceToVideo,
];

/// fal's Seedance apps take no seed, so a job that asks for one would come back made with
/// another: it is not sent there.
pub(super) fn carries(job: &VideoJob) -> bool {
    portable(job) && job.seed.is_none()
}

/// The app a job's operation is served by under the model's id.
fn app(upstream_model: &str, operation: Operation) -> String {
    let endpoint = match operation {
        Operation::ImageToVideo | Operation::StartEndToVideo => "image-to-video",
        Operation::ReferenceToVideo => "reference-to-video",
        _ => "text-to-video",
    };
    format!("{upstream_model}/{endpoint}")
}

/// Where a request lives: status, result and cancel take only the app's owner and name
/// (`bytedance/seedance-2.0`), whatever the sub-path the request was submitted to.
fn request_path(upstream_model: &str, request_id: &str) -> String {
    let owner_and_app: Vec<&str> = upstream_model.split('/').take(2).collect();
    format!("{}/requests/{request_id}", owner_and_app.join("/"))
}

#[derive(Deserialize)]
struct Submitted {
    request_id: String,
}

#[derive(Deserialize)]
struct QueueStatus {
    status: String,
    /// A completed request's timings; fal bills by them.
    metrics: Option<QueueMetrics>,
}

#[derive(Deserialize)]
struct QueueMetrics {
    inference_time: Option<f64>,
}

#[derive(Deserialize)]
struct Video {
    url: String,
}

#[derive(Deserialize)]
struct Output {
    video: Video,
}

/// One item of a validation error's `detail` list.
#[derive(Deserialize)]
struct Problem {
    #[serde(default)]
    loc: Vec<Value>,
    msg: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Detail {
    Message(String),
    Problems(Vec<Problem>),
}

#[derive(Deserialize)]
struct ErrorBody {
    detail: Option<Detail>,
    error_type: Option<String>,
}

/// A `content_policy_violation` in the terms our tasks use: which input the vendor flagged,
/// or the video it made.
fn moderation_code(problem: &Problem) -> &'static str {
    let flagged = |name: &str| {
        problem
            .loc
            .iter()
            .any(|part| part.as_str().is_some_and(|part| part.contains(name)))
    };
    if flagged("prompt") {
        "InputTextSensitiveContentDetected"
    } else if flagged("image") {
        "InputImageSensitiveContentDetected"
    } else {
        "OutputVideoSensitiveContentDetected"
    }
}

/// fal's `{"detail": "…"}` or `{"detail": [{"loc", "msg", "type"}]}`, with a moderation
/// refusal named as ours.
pub(super) fn error_of(body: &[u8]) -> (String, String) {
    let Ok(body) = serde_json::from_slice::<ErrorBody>(body) else {
        return Default::default();
    };
    match body.detail {
        Some(Detail::Problems(problems)) => problems
            .first()
            .map(|problem| {
                let code = match problem.kind.as_deref() {
                    Some("content_policy_violation") => moderation_code(problem).to_owned(),
                    other => other.unwrap_or_default().to_owned(),
                };
                (code, problem.msg.clone().unwrap_or_default())
            })
            .unwrap_or_default(),
        Some(Detail::Message(message)) => (body.error_type.unwrap_or_default(), message),
        None => (body.error_type.unwrap_or_default(), String::new()),
    }
}

/// Where the queue keeps a request, and its status.
async fn queue_status(channel: &Channel, upstream_id: &str) -> Result<QueueStatus, CallError> {
    channel.get(&format!("/{upstream_id}/status")).await
}

/// The app's input for one submission.
fn input(request: &SubmitRequest<'_>) -> Value {
    let job = request.job;
    let i = &job.inputs;
    let urls = |inputs: &[MediaInput]| -> Value { inputs.iter().map(MediaInput::as_str).collect() };
    let mut input = json!({
        "prompt": job.prompt.as_deref().unwrap_or_default(),
        "resolution": job.resolution.as_str(),
        "duration": match job.duration {
            DurationRequest::Seconds(s) => s.to_string(),
            DurationRequest::ModelDecides => "auto".to_owned(),
        },
        "aspect_ratio": match ratio(job) {
            r if r == AspectRatio::Adaptive.as_str() => "auto",
            r => r,
        },
        "generate_audio": job.generate_audio,
    });
    if let Some(image) = i.image.as_ref().or(i.start_image.as_ref()) {
        input["image_url"] = image.as_str().into();
    }
    if let Some(last) = &i.end_image {
        input["end_image_url"] = last.as_str().into();
    }
    if job.operation == Operation::ReferenceToVideo {
        input["image_urls"] = urls(&i.reference_images);
        input["video_urls"] = urls(&i.reference_videos);
        input["audio_urls"] = urls(&i.reference_audios);
    }
    input
}

pub(super) async fn create(
    channel: &Channel,
    request: &SubmitRequest<'_>,
    upstream_model: &str,
) -> Result<String, CallError> {
    let submitted = channel
        .call::<Submitted>(
            channel
                .client
                .post(channel.endpoint(&format!("/{}", app(upstream_model, request.job.operation))))
                .json(&input(request)),
        )
        .await?;
    Ok(request_path(upstream_model, &submitted.request_id))
}

pub(super) async fn fetch(
    channel: &Channel,
    upstream_id: &str,
) -> Result<UpstreamStatus, ProviderError> {
    let queued = queue_status(channel, upstream_id)
        .await
        .map_err(CallError::into_read_error)?;
    match queued.status.as_str() {
        "IN_QUEUE" => return Ok(UpstreamStatus::Queued),
        "IN_PROGRESS" => return Ok(UpstreamStatus::Running),
        "COMPLETED" => {}
        other => {
            return Err(ProviderError::transient(
                "upstream_bad_response",
                format!("unknown queue status `{other}`"),
            ))
        }
    }
    // A completed request's result is the app's own answer: its output, or its error.
    match channel.get::<Output>(&format!("/{upstream_id}")).await {
        Ok(output) => Ok(UpstreamStatus::Succeeded {
            video_url: output.video.url,
            last_frame_url: None,
            usage: VendorUsage {
                compute_ms: compute_ms(queued.metrics.and_then(|m| m.inference_time)),
                ..VendorUsage::default()
            },
        }),
        // The app's deadline passed (`X-Fal-Request-Timeout`, or fal's own).
        Err(CallError::Status { code, .. }) if DEADLINE_ERRORS.contains(&code.as_str()) => {
            Ok(UpstreamStatus::Expired)
        }
        // A 4xx is the app refusing the job; a 5xx naming its `error_type` is the app's own
        // failure. A bare 5xx, a 404 or a 429 is the queue's trouble, read again later.
        Err(CallError::Status {
            status,
            code,
            message,
            ..
        }) if (status.is_client_error()
            && !matches!(
                status,
                StatusCode::NOT_FOUND | StatusCode::TOO_MANY_REQUESTS
            ))
            || (status.is_server_error() && !code.is_empty()) =>
        {
            Ok(UpstreamStatus::Failed {
                code: if code.is_empty() {
                    "upstream_failed".to_owned()
                } else {
                    code
                },
                message: if message.is_empty() {
                    format!("The upstream failed the request (HTTP {status}).")
                } else {
                    message
                },
            })
        }
        Err(e) => Err(e.into_read_error()),
    }
}

/// Only a request still in the queue is cancelled: a running one has been paid for.
pub(super) async fn cancel(
    channel: &Channel,
    upstream_id: &str,
) -> Result<CancelOutcome, ProviderError> {
    let queued = queue_status(channel, upstream_id)
        .await
        .map_err(CallError::into_provider_error)?;
    // `ALREADY_COMPLETED` (400) if it started meanwhile.
    channel
        .withdraw(
            queued.status == "IN_QUEUE",
            channel
                .client
                .put(channel.endpoint(&format!("/{upstream_id}/cancel"))),
        )
        .await
}

/// The status of a request that cannot exist: a 404 says the queue is reachable and took
/// the key, a 401 or 403 that it refused it.
pub(super) async fn check(channel: &Channel) -> Result<(), CallError> {
    let model = channel
        .config
        .models
        .values()
        .next()
        .map_or("bytedance/seedance-2.0", String::as_str);
    let probe = request_path(model, "00000000-0000-0000-0000-000000000000");
    match queue_status(channel, &probe).await {
        Ok(_)
        | Err(CallError::Status {
            status: StatusCode::NOT_FOUND,
            ..
        }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_live_under_the_apps_owner_and_name() {
        assert_eq!(
            app("bytedance/seedance-2.0/fast", Operation::StartEndToVideo),
            "bytedance/seedance-2.0/fast/image-to-video"
        );
        assert_eq!(
            request_path("bytedance/seedance-2.0/fast", "r1"),
            "bytedance/seedance-2.0/requests/r1"
        );
    }

    #[test]
    fn errors_name_what_the_vendor_flagged() {
        let body = json!({"detail": [{"loc": ["body", "prompt"], "msg": "flagged",
            "type": "content_policy_violation"}]});
        assert_eq!(
            error_of(body.to_string().as_bytes()),
            ("InputTextSensitiveContentDetected".into(), "flagged".into())
        );
        let body = json!({"detail": [{"loc": ["body"], "msg": "the video was flagged",
            "type": "content_policy_violation"}]});
        assert_eq!(
            error_of(body.to_string().as_bytes()).0,
            "OutputVideoSensitiveContentDetected"
        );
        let body = json!({"detail": "Request timed out", "error_type": "request_timeout"});
        assert_eq!(
            error_of(body.to_string().as_bytes()),
            ("request_timeout".into(), "Request timed out".into())
        );
        assert_eq!(error_of(b"<html>"), (String::new(), String::new()));
    }
}
