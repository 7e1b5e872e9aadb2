//! The Ark / ModelArk content-generation task API (docs/ark.md). Volcengine Ark and BytePlus
//! ModelArk differ only in base URL and model ids. Its list answers many ids in one read and
//! echoes each task's request, so a lost submission is found by what it sent.

use seedgate_contract::{
    AspectRatio, DraftSource, DurationRequest, MediaInput, Operation, VideoJob,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{duration, ratio, CallError, Channel, CLOCK_SKEW_S};
use crate::ids::TaskId;
use crate::providers::{
    task_seed, CancelOutcome, Polled, ProviderError, SubmitRequest, UpstreamStatus, VendorUsage,
};

/// Prompt sent for a video-extension that came without one.
pub(super) const CONTINUE_PROMPT: &str = "Continue this video seamlessly from its last frame.";

/// Where tasks live under the base URL.
const TASKS: &str = "/contents/generations/tasks";

/// Reconciliation reads the upstream's task list newest first, this many at a time…
const LIST_PAGE_SIZE: usize = 100;
/// …and gives up (to try again later) past this many pages since the submission.
const MAX_LIST_PAGES: usize = 20;
/// The most ids Ark's list takes at once (its largest `page_size`).
pub(super) const MAX_POLL_BATCH: u32 = 500;

#[derive(Deserialize)]
struct CreatedTask {
    id: String,
}

#[derive(Deserialize, Default)]
struct TaskContent {
    video_url: Option<String>,
    last_frame_url: Option<String>,
}

#[derive(Deserialize)]
struct TaskUsage {
    completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct TaskError {
    code: Option<String>,
    message: Option<String>,
}

/// A task as `GET …/tasks/{id}` and the list endpoint return it, with the request fields it
/// echoes (which reconciliation matches on).
#[derive(Deserialize)]
struct ArkTask {
    id: String,
    status: String,
    content: Option<TaskContent>,
    usage: Option<TaskUsage>,
    error: Option<TaskError>,
    created_at: Option<i64>,
    seed: Option<i64>,
    resolution: Option<String>,
    ratio: Option<String>,
    duration: Option<i64>,
    generate_audio: Option<bool>,
}

#[derive(Deserialize)]
struct TaskList {
    items: Vec<ArkTask>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<TaskError>,
}
fn media(kind: &str, role: &str, input: &str) -> Value {
    json!({"type": format!("{kind}_url"), format!("{kind}_url"): {"url": input}, "role": role})
}

/// The create body (docs/ark.md, "Create") for one submission.
fn create_body(request: &SubmitRequest<'_>, upstream_model: &str) -> Value {
    let job = request.job;
    let mut body = match &job.final_of {
        Some(source) => final_body(source, upstream_model),
        None => content_body(request, upstream_model),
    };
    body["resolution"] = job.resolution.as_str().into();
    body["watermark"] = job.watermark.into();
    body["return_last_frame"] = true.into();
    body["execution_expires_after"] = request.expires_after_seconds.into();
    if let Some(url) = &request.callback_url {
        body["callback_url"] = url.as_str().into();
    }
    if let Some(tier) = job.service_tier {
        body["service_tier"] = tier.as_str().into();
    }
    if let Some(priority) = job.priority {
        body["priority"] = priority.into();
    }
    if let Some(identifier) = &job.safety_identifier {
        body["safety_identifier"] = identifier.as_str().into();
    }
    if !job.output_format.is_mp4() {
        body["output_format"] = job.output_format.as_str().into();
    }
    if job.draft {
        body["draft"] = true.into();
    }
    body
}

/// A final names its draft's upstream task; the upstream reuses the draft's prompt, inputs,
/// length, ratio, audio and seed, so none of them is sent again.
fn final_body(source: &DraftSource, upstream_model: &str) -> Value {
    let draft_id = source.upstream.as_ref().map(|draft| draft.task_id.as_str());
    json!({
        "model": upstream_model,
        "content": [{"type": "draft_task", "draft_task": {"id": draft_id}}],
    })
}

/// What the video shows: the prompt, the media by role, and the knobs of size and length.
fn content_body(request: &SubmitRequest<'_>, upstream_model: &str) -> Value {
    let job = request.job;
    let source_video = request.source_video.as_deref();
    let i = &job.inputs;
    let text = job
        .prompt
        .clone()
        .unwrap_or_else(|| CONTINUE_PROMPT.to_owned());
    let mut content = vec![json!({"type": "text", "text": text})];
    let url = MediaInput::as_str;
    match job.operation {
        Operation::TextToVideo => {}
        Operation::ImageToVideo => content.extend(
            i.image
                .iter()
                .map(|m| media("image", "first_frame", url(m))),
        ),
        Operation::StartEndToVideo => {
            content.extend(
                i.start_image
                    .iter()
                    .map(|m| media("image", "first_frame", url(m))),
            );
            content.extend(
                i.end_image
                    .iter()
                    .map(|m| media("image", "last_frame", url(m))),
            );
        }
        Operation::ReferenceToVideo => {
            content.extend(
                i.reference_images
                    .iter()
                    .map(|m| media("image", "reference_image", url(m))),
            );
            content.extend(
                i.reference_videos
                    .iter()
                    .map(|m| media("video", "reference_video", url(m))),
            );
        }
        Operation::VideoToVideo | Operation::VideoExtension => {
            let video = i.video.as_ref().map(|m| m.as_str()).or(source_video);
            content.extend(video.map(|v| media("video", "reference_video", v)));
        }
    }
    // With whichever operation the model's entry lets take it (create checked that).
    content.extend(
        i.reference_audios
            .iter()
            .map(|m| media("audio", "reference_audio", url(m))),
    );
    json!({
        "model": upstream_model,
        "content": content,
        "ratio": ratio(job),
        "duration": duration(job),
        "generate_audio": job.generate_audio,
        "seed": task_seed(request.task_id, job),
    })
}

/// Whether an upstream task echoes what a submission of this task sent. A field the upstream
/// does not echo, or fills in itself (`adaptive` ratio, model-decided length), cannot tell.
fn echoes_submission(task: &ArkTask, task_id: &TaskId, job: &VideoJob) -> bool {
    let differs = |echo: Option<bool>| echo == Some(false);
    let fixed_ratio = job.aspect_ratio != AspectRatio::Adaptive;
    // A final's length is its draft's, which the upstream may echo as the draft asked it.
    let fixed_length = job.duration != DurationRequest::ModelDecides && job.final_of.is_none();
    !(differs(task.seed.map(|s| s == task_seed(task_id, job)))
        || differs(
            task.resolution
                .as_deref()
                .map(|r| r == job.resolution.as_str()),
        )
        || (fixed_ratio && differs(task.ratio.as_deref().map(|r| r == ratio(job))))
        || (fixed_length && differs(task.duration.map(|d| d == duration(job))))
        || differs(task.generate_audio.map(|a| a == job.generate_audio)))
}

fn status_of(task: ArkTask) -> Result<UpstreamStatus, ProviderError> {
    Ok(match task.status.as_str() {
        "queued" => UpstreamStatus::Queued,
        "running" => UpstreamStatus::Running,
        "succeeded" => {
            let content = task.content.unwrap_or_default();
            let video_url = content.video_url.ok_or_else(|| {
                ProviderError::transient(
                    "upstream_bad_response",
                    "a succeeded task without content.video_url",
                )
            })?;
            UpstreamStatus::Succeeded {
                video_url,
                last_frame_url: content.last_frame_url,
                usage: VendorUsage {
                    tokens: task.usage.and_then(|u| u.completion_tokens),
                    ..VendorUsage::default()
                },
            }
        }
        "failed" => {
            let error = task.error;
            UpstreamStatus::Failed {
                code: error
                    .as_ref()
                    .and_then(|e| e.code.clone())
                    .unwrap_or_else(|| "upstream_failed".into()),
                message: error
                    .and_then(|e| e.message)
                    .unwrap_or_else(|| "The upstream failed the task.".into()),
            }
        }
        "cancelled" => UpstreamStatus::Cancelled,
        "expired" => UpstreamStatus::Expired,
        other => {
            return Err(ProviderError::transient(
                "upstream_bad_response",
                format!("unknown upstream status `{other}`"),
            ))
        }
    })
}

/// The upstream's `{"error": {"code", "message"}}`, as far as it can be read.
pub(super) fn error_of(body: &[u8]) -> (String, String) {
    let error = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.error);
    (
        error
            .as_ref()
            .and_then(|e| e.code.clone())
            .unwrap_or_default(),
        error.and_then(|e| e.message).unwrap_or_default(),
    )
}

fn url(channel: &Channel, path: &str) -> String {
    channel.endpoint(&format!("{TASKS}{path}"))
}

pub(super) async fn create(
    channel: &Channel,
    request: &SubmitRequest<'_>,
    upstream_model: &str,
) -> Result<String, CallError> {
    let body = create_body(request, upstream_model);
    channel
        .call::<CreatedTask>(channel.client.post(url(channel, "")).json(&body))
        .await
        .map(|created| created.id)
}

pub(super) async fn fetch(
    channel: &Channel,
    upstream_id: &str,
) -> Result<UpstreamStatus, ProviderError> {
    let task = channel
        .get::<ArkTask>(&format!("{TASKS}/{upstream_id}"))
        .await
        .map_err(CallError::into_read_error)?;
    status_of(task)
}

/// One list request for many tasks (`filter.task_ids` repeated). A task the answer leaves
/// out is not in the result: the engine asks for it alone.
pub(super) async fn fetch_many(
    channel: &Channel,
    upstream_ids: &[String],
) -> Result<Polled, ProviderError> {
    let size = upstream_ids.len().to_string();
    let mut query = vec![("page_num", "1"), ("page_size", size.as_str())];
    query.extend(
        upstream_ids
            .iter()
            .map(|id| ("filter.task_ids", id.as_str())),
    );
    let list = channel
        .read::<TaskList>(channel.client.get(url(channel, "")).query(&query))
        .await
        .map_err(CallError::into_provider_error)?;
    Ok(list
        .items
        .into_iter()
        // An answer about a task not asked for is no answer about ours.
        .filter(|task| upstream_ids.contains(&task.id))
        .map(|task| (task.id.clone(), status_of(task)))
        .collect())
}

pub(super) async fn cancel(
    channel: &Channel,
    upstream_id: &str,
) -> Result<CancelOutcome, ProviderError> {
    let path = format!("/{upstream_id}");
    let task = channel
        .get::<ArkTask>(&format!("{TASKS}{path}"))
        .await
        .map_err(CallError::into_provider_error)?;
    // Deleting a finished upstream task erases its record, so only a queued one is touched.
    channel
        .withdraw(
            task.status == "queued",
            channel.client.delete(url(channel, &path)),
        )
        .await
}

/// Upstream tasks of `upstream_model` created since `since_ms` that echo this task's
/// submission, oldest first.
pub(super) async fn find(
    channel: &Channel,
    task_id: &TaskId,
    job: &VideoJob,
    upstream_model: &str,
    since_ms: i64,
) -> Result<Vec<String>, ProviderError> {
    // Clocks differ: accept tasks created a little before our submission started.
    let since_s = since_ms / 1000 - CLOCK_SKEW_S;
    let mut found = Vec::new();
    // Newest first: page until the pages reach back before the submission.
    for page in 1..=MAX_LIST_PAGES {
        let list = channel
            .read::<TaskList>(channel.client.get(url(channel, "")).query(&[
                ("page_num", page.to_string().as_str()),
                ("page_size", LIST_PAGE_SIZE.to_string().as_str()),
                ("filter.model", upstream_model),
            ]))
            .await
            .map_err(CallError::into_provider_error)?;
        let full_page = list.items.len() >= LIST_PAGE_SIZE;
        let mut reached_older = false;
        for task in list.items {
            match task.created_at {
                Some(created) if created < since_s => reached_older = true,
                Some(created) if echoes_submission(&task, task_id, job) => {
                    found.push((created, task.id))
                }
                _ => {}
            }
        }
        if reached_older || !full_page {
            found.sort();
            return Ok(found.into_iter().map(|(_, id)| id).collect());
        }
    }
    Err(ProviderError::transient(
        "upstream_list_too_long",
        format!("more than {MAX_LIST_PAGES} pages of upstream tasks since the submission"),
    ))
}

/// One page of one task: reachability and the key's validity.
pub(super) async fn check(channel: &Channel) -> Result<(), CallError> {
    channel
        .call::<TaskList>(
            channel
                .client
                .get(url(channel, ""))
                .query(&[("page_num", "1"), ("page_size", "1")]),
        )
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(seed: Option<i64>) -> VideoJob {
        let body = serde_json::json!({"model": "seedance-2.0", "operation": "text-to-video",
            "prompt": "p", "resolution": "480p", "duration": 5, "aspect_ratio": "16:9",
            "generate_audio": false, "seed": seed});
        let mut body = body;
        if seed.is_none() {
            body.as_object_mut().map(|o| o.remove("seed"));
        }
        match seedgate_contract::parse_create_request(
            &seedgate_contract::Catalog::builtin(),
            body.to_string().as_bytes(),
        )
        .unwrap()
        {
            seedgate_contract::CreateRequest::Job(job) => *job,
            other => panic!("{other:?}"),
        }
    }

    fn echoed(seed: i64, resolution: &str, duration: i64, audio: bool) -> ArkTask {
        serde_json::from_value(serde_json::json!({"id": "cgt-1", "status": "queued",
            "created_at": 1, "seed": seed, "resolution": resolution, "ratio": "16:9",
            "duration": duration, "generate_audio": audio}))
        .unwrap()
    }

    #[test]
    fn an_upstream_task_is_ours_only_if_it_echoes_what_we_sent() {
        let ours = job(None);
        let seed = task_seed(&TaskId::new("vtask_a"), &ours);
        assert!(echoes_submission(
            &echoed(seed, "480p", 5, false),
            &TaskId::new("vtask_a"),
            &ours
        ));
        // Another task's seed, size, length or audio: not ours.
        assert!(!echoes_submission(
            &echoed(seed, "480p", 5, false),
            &TaskId::new("vtask_b"),
            &ours
        ));
        assert!(!echoes_submission(
            &echoed(seed, "720p", 5, false),
            &TaskId::new("vtask_a"),
            &ours
        ));
        assert!(!echoes_submission(
            &echoed(seed, "480p", 6, false),
            &TaskId::new("vtask_a"),
            &ours
        ));
        assert!(!echoes_submission(
            &echoed(seed, "480p", 5, true),
            &TaskId::new("vtask_a"),
            &ours
        ));
        // A client's seed is sent as given.
        let seeded = job(Some(42));
        assert_eq!(task_seed(&TaskId::new("vtask_a"), &seeded), 42);
        assert!(echoes_submission(
            &echoed(42, "480p", 5, false),
            &TaskId::new("vtask_z"),
            &seeded
        ));
        // A field the upstream does not echo cannot rule a task out.
        let bare: ArkTask =
            serde_json::from_value(serde_json::json!({"id": "cgt-2", "status": "queued"})).unwrap();
        assert!(echoes_submission(&bare, &TaskId::new("vtask_a"), &ours));
    }
}
