//! Replicate's predictions API (docs/vendors.md): a prediction per task on an official model
//! (`bytedance/seedance-2.0`), read one at a time. Its list of predictions, filtered by
//! creation time, echoes each one's input, so a lost submission is found by the seed and
//! shape it sent, as on Ark.

use seedgate_contract::{MediaInput, Operation, VideoJob};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{compute_ms, duration, failure, portable, ratio, CallError, Channel, CLOCK_SKEW_S};
use crate::ids::TaskId;
use crate::providers::{
    task_seed, CancelOutcome, ProviderError, SubmitRequest, UpstreamStatus, VendorUsage,
};

pub(super) const BASE_URL: &str = "https://api.replicate.com/v1";

pub(super) const OPERATIONS: &[Operation] = &[
    Operation::TextToVideo,
    Operation::ImageToVideo,
    Operation::StartEndToVideo,
    Operation::ReferenceToVideo,
];

/// Reconciliation pages through the predictions made since the submission, and gives up (to
/// try again later) past this many pages of 100.
const MAX_LIST_PAGES: usize = 20;

/// How Replicate words a moderation failure (`E005`): "The input or output was flagged as
/// sensitive".
const MODERATION_MARKS: [&str; 2] = ["(E005)", "flagged as sensitive"];

pub(super) fn carries(job: &VideoJob) -> bool {
    portable(job)
}

#[derive(Deserialize)]
struct Prediction {
    id: String,
    status: String,
    #[serde(default)]
    output: Value,
    error: Option<Value>,
    model: Option<String>,
    created_at: Option<String>,
    metrics: Option<Metrics>,
    #[serde(default)]
    input: Map<String, Value>,
}

/// A finished prediction's timings; Replicate bills by the seconds it predicted.
#[derive(Deserialize)]
struct Metrics {
    predict_time: Option<f64>,
}

#[derive(Deserialize)]
struct PredictionList {
    next: Option<String>,
    results: Vec<Prediction>,
}

/// RFC 7807 problem details (`{"title", "detail", "status"}`); a throttled request's body
/// has only `detail`.
#[derive(Deserialize)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
}

/// Replicate's problem details carry no stable code: the HTTP status stands for it.
pub(super) fn error_of(body: &[u8]) -> (String, String) {
    let message = serde_json::from_slice::<Problem>(body)
        .ok()
        .and_then(|p| p.detail.or(p.title))
        .unwrap_or_default();
    (String::new(), message)
}

async fn prediction(channel: &Channel, upstream_id: &str) -> Result<Prediction, CallError> {
    channel.get(&format!("/predictions/{upstream_id}")).await
}

fn urls(inputs: &[MediaInput]) -> Value {
    inputs.iter().map(MediaInput::as_str).collect()
}

/// The model's input (its schema on the model page) for one submission.
fn input(request: &SubmitRequest<'_>) -> Value {
    let job = request.job;
    let i = &job.inputs;
    let mut input = json!({
        "prompt": job.prompt.as_deref().unwrap_or_default(),
        "duration": duration(job),
        "resolution": job.resolution.as_str(),
        "aspect_ratio": ratio(job),
        "generate_audio": job.generate_audio,
        "seed": task_seed(request.task_id, job),
    });
    let first = i.image.as_ref().or(i.start_image.as_ref());
    if let Some(image) = first {
        input["image"] = image.as_str().into();
    }
    if let Some(last) = &i.end_image {
        input["last_frame_image"] = last.as_str().into();
    }
    if job.operation == Operation::ReferenceToVideo {
        input["reference_images"] = urls(&i.reference_images);
        input["reference_videos"] = urls(&i.reference_videos);
    }
    if !i.reference_audios.is_empty() {
        input["reference_audios"] = urls(&i.reference_audios);
    }
    input
}

pub(super) async fn create(
    channel: &Channel,
    request: &SubmitRequest<'_>,
    upstream_model: &str,
) -> Result<String, CallError> {
    let path = format!("/models/{upstream_model}/predictions");
    channel
        .call::<Prediction>(
            channel
                .client
                .post(channel.endpoint(&path))
                .json(&json!({"input": input(request)})),
        )
        .await
        .map(|prediction| prediction.id)
}

fn status_of(prediction: Prediction) -> Result<UpstreamStatus, ProviderError> {
    Ok(match prediction.status.as_str() {
        "starting" => UpstreamStatus::Queued,
        "processing" => UpstreamStatus::Running,
        "succeeded" => {
            // One URI; a list's first, should the model ever answer with one.
            let video_url = match prediction.output {
                Value::String(url) => url,
                Value::Array(items) => items
                    .into_iter()
                    .find_map(|item| item.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            if video_url.is_empty() {
                return Err(ProviderError::transient(
                    "upstream_bad_response",
                    "a succeeded prediction without an output URL",
                ));
            }
            UpstreamStatus::Succeeded {
                video_url,
                last_frame_url: None,
                usage: VendorUsage {
                    compute_ms: compute_ms(prediction.metrics.and_then(|m| m.predict_time)),
                    ..VendorUsage::default()
                },
            }
        }
        "failed" => failure(
            match prediction.error {
                Some(Value::String(message)) => message,
                Some(other) => other.to_string(),
                None => "The upstream failed the prediction.".to_owned(),
            },
            &MODERATION_MARKS,
        ),
        "canceled" => UpstreamStatus::Cancelled,
        // Its deadline passed before it started.
        "aborted" => UpstreamStatus::Expired,
        other => {
            return Err(ProviderError::transient(
                "upstream_bad_response",
                format!("unknown prediction status `{other}`"),
            ))
        }
    })
}

pub(super) async fn fetch(
    channel: &Channel,
    upstream_id: &str,
) -> Result<UpstreamStatus, ProviderError> {
    let prediction = prediction(channel, upstream_id)
        .await
        .map_err(CallError::into_read_error)?;
    status_of(prediction)
}

/// Only a prediction still `starting` is cancelled: one already running is billed for the
/// seconds it ran, cancelled or not.
pub(super) async fn cancel(
    channel: &Channel,
    upstream_id: &str,
) -> Result<CancelOutcome, ProviderError> {
    let prediction = prediction(channel, upstream_id)
        .await
        .map_err(CallError::into_provider_error)?;
    channel
        .withdraw(
            prediction.status == "starting",
            channel
                .client
                .post(channel.endpoint(&format!("/predictions/{upstream_id}/cancel"))),
        )
        .await
}

/// Whether a prediction's input echoes what a submission of this task sent.
fn echoes_submission(prediction: &Prediction, task_id: &TaskId, job: &VideoJob) -> bool {
    let input = &prediction.input;
    let same = |field: &str, sent: Value| input.get(field).is_none_or(|echo| *echo == sent);
    same("seed", task_seed(task_id, job).into())
        && same("resolution", job.resolution.as_str().into())
        && same("duration", duration(job).into())
        && same("generate_audio", job.generate_audio.into())
        && same("aspect_ratio", ratio(job).into())
}

/// Predictions of `upstream_model` created since `since_ms` whose input echoes this task's,
/// oldest first.
pub(super) async fn find(
    channel: &Channel,
    task_id: &TaskId,
    job: &VideoJob,
    upstream_model: &str,
    since_ms: i64,
) -> Result<Vec<String>, ProviderError> {
    // Clocks differ: accept predictions created a little before our submission started.
    let since = chrono::DateTime::<chrono::Utc>::from_timestamp(since_ms / 1000 - CLOCK_SKEW_S, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut page = channel
        .client
        .get(channel.endpoint("/predictions"))
        .query(&[("created_after", since.as_str())]);
    let mut found = Vec::new();
    for _ in 0..MAX_LIST_PAGES {
        let list = channel
            .read::<PredictionList>(page)
            .await
            .map_err(CallError::into_provider_error)?;
        found.extend(
            list.results
                .into_iter()
                .filter(|p| p.model.as_deref().is_none_or(|m| m == upstream_model))
                .filter(|p| echoes_submission(p, task_id, job))
                .map(|p| (p.created_at.unwrap_or_default(), p.id)),
        );
        // The next page's address comes from the upstream: it is followed only on the
        // channel's own host, so a key is never sent elsewhere.
        match list.next {
            Some(next) if next.starts_with(channel.config.base_url.trim_end_matches('/')) => {
                page = channel.client.get(next);
            }
            _ => {
                found.sort();
                return Ok(found.into_iter().map(|(_, id)| id).collect());
            }
        }
    }
    Err(ProviderError::transient(
        "upstream_list_too_long",
        format!("more than {MAX_LIST_PAGES} pages of predictions since the submission"),
    ))
}

/// The account behind the key: reachability and the key's validity in one read.
pub(super) async fn check(channel: &Channel) -> Result<(), CallError> {
    channel
        .call::<Value>(channel.client.get(channel.endpoint("/account")))
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction(value: Value) -> Prediction {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn prediction_statuses_and_failures_map_to_ours() {
        let status = |value| status_of(prediction(value)).unwrap();
        assert_eq!(
            status(json!({"id": "p", "status": "starting"})),
            UpstreamStatus::Queued
        );
        assert_eq!(
            status(
                json!({"id": "p", "status": "succeeded", "output": "https://replicate.delivery/x.mp4",
                    "metrics": {"predict_time": 42.5005, "total_time": 43.0}})
            ),
            UpstreamStatus::Succeeded {
                video_url: "https://replicate.delivery/x.mp4".into(),
                last_frame_url: None,
                usage: VendorUsage {
                    compute_ms: Some(42_501),
                    ..VendorUsage::default()
                }
            }
        );
        assert_eq!(
            status(json!({"id": "p", "status": "failed",
                "error": "The input or output was flagged as sensitive. Please try again with different inputs. (E005) (uIJ6l3ruRD)"})),
            UpstreamStatus::Failed {
                code: "OutputVideoSensitiveContentDetected".into(),
                message: "The input or output was flagged as sensitive. Please try again with different inputs. (E005) (uIJ6l3ruRD)".into()
            }
        );
        assert!(matches!(
            status(json!({"id": "p", "status": "failed", "error": "CUDA out of memory (E1000)"})),
            UpstreamStatus::Failed { code, .. } if code == "upstream_failed"
        ));
        assert_eq!(
            status(json!({"id": "p", "status": "aborted"})),
            UpstreamStatus::Expired
        );
        assert!(status_of(prediction(
            json!({"id": "p", "status": "succeeded", "output": null})
        ))
        .is_err());
        assert!(status_of(prediction(json!({"id": "p", "status": "melted"}))).is_err());
    }
}
