//! The real Seedance: the Ark / ModelArk content-generation task API (docs/ark.md). Volcengine Ark
//! and BytePlus ModelArk differ only in base URL and model ids, so one provider serves every
//! configured channel, choosing among healthy ones by weight and failing over on 429, 5xx and
//! timeouts before a task is accepted upstream.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use seedgate_contract::{
    AspectRatio, DraftSource, DurationRequest, MediaInput, Operation, VideoJob,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    task_seed, BoxFuture, CancelOutcome, PollChannel, Polled, Provider, ProviderError,
    ProviderErrorKind, Submission, SubmitRequest, UpstreamRef, UpstreamStatus,
};
use crate::config::ChannelConfig;
use crate::ids::{ChannelId, TaskId};
use crate::secret::Secret;
use crate::telemetry::{BreakerState, Telemetry};

/// Prompt sent for a video-extension that came without one.
const CONTINUE_PROMPT: &str = "Continue this video seamlessly from its last frame.";

/// Seconds an upstream's clock may run behind ours when matching task creation times.
const CLOCK_SKEW_S: i64 = 5;
/// Reconciliation reads the upstream's task list newest first, this many at a time…
const LIST_PAGE_SIZE: usize = 100;
/// …and gives up (to try again later) past this many pages since the submission.
const MAX_LIST_PAGES: usize = 20;
/// The most ids Ark's list takes at once (its largest `page_size`).
const MAX_POLL_BATCH: u32 = 500;

/// Start-up problems with the channel configuration.
#[derive(Debug, thiserror::Error)]
pub enum ChannelSetupError {
    #[error("channel {channel}: environment variable {env} (api_key_env) is not set")]
    MissingKey { channel: ChannelId, env: String },
    #[error("channel {channel}: unknown provider `{provider}` (only `ark` exists)")]
    UnknownProvider {
        channel: ChannelId,
        provider: String,
    },
    #[error("channel {0} is configured twice")]
    Duplicate(ChannelId),
    #[error("channel {channel}: {reason}")]
    Invalid { channel: ChannelId, reason: String },
}

/// Circuit breaker of one channel: closed, open for a cooldown after repeated failures, then
/// one probe request decides. A probe whose outcome never comes back (its task went elsewhere,
/// its worker lost the task) gives way to another after a further cooldown.
#[derive(Default)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probe_since: Option<Instant>,
}

impl Breaker {
    fn allows(&mut self, now: Instant, cooldown: Duration) -> bool {
        match self.open_until {
            None => true,
            Some(until) if now < until => false,
            Some(_)
                if self
                    .probe_since
                    .is_some_and(|since| now.duration_since(since) < cooldown) =>
            {
                false
            }
            Some(_) => {
                self.probe_since = Some(now);
                true
            }
        }
    }

    fn record(&mut self, ok: bool, threshold: u32, cooldown: Duration) {
        self.probe_since = None;
        if ok {
            self.consecutive_failures = 0;
            self.open_until = None;
        } else {
            self.consecutive_failures += 1;
            if self.consecutive_failures >= threshold {
                self.open_until = Some(Instant::now() + cooldown);
            }
        }
    }
}

/// How much later than its turn a read may reach the upstream (its way through the runtime,
/// the connection pool and the network) without the upstream seeing more than the budget in
/// any one second. The budget's reads are spread over a second and this slack, so the pacer
/// uses about 95 % of a budget of 50 reads a second or more.
const READ_TRANSIT_SLACK: Duration = Duration::from_millis(50);
/// The span a budget's worth of reads is spread over.
const PACED_SPAN: Duration = Duration::from_secs(1).saturating_add(READ_TRANSIT_SLACK);

/// Spaces a channel's status reads to this replica's share of the channel's budget. Turns are
/// even; a read whose turn came late does not let the ones after it catch up, because no read
/// leaves within a second and the slack of the read `per_second` turns before it.
struct Pacer {
    per_second: u32,
    interval: Duration,
    turns: tokio::sync::Mutex<Turns>,
}

struct Turns {
    next: tokio::time::Instant,
    /// When the last `per_second` reads left their turns, oldest first.
    departed: VecDeque<tokio::time::Instant>,
}

impl Pacer {
    fn new(per_second: u32) -> Self {
        let per_second = per_second.max(1);
        Self {
            per_second,
            interval: PACED_SPAN / per_second,
            turns: tokio::sync::Mutex::new(Turns {
                next: tokio::time::Instant::now(),
                departed: VecDeque::with_capacity(per_second as usize),
            }),
        }
    }

    /// Waits for this read's turn. Turns are taken one at a time, in the order asked.
    async fn turn(&self) {
        let mut turns = self.turns.lock().await;
        let mut at = turns.next.max(tokio::time::Instant::now());
        if turns.departed.len() >= self.per_second as usize {
            if let Some(oldest) = turns.departed.pop_front() {
                at = at.max(oldest + PACED_SPAN);
            }
        }
        tokio::time::sleep_until(at).await;
        turns.departed.push_back(tokio::time::Instant::now());
        turns.next = at + self.interval;
    }
}

struct Channel {
    config: ChannelConfig,
    api_key: Secret,
    client: reqwest::Client,
    breaker: Mutex<Breaker>,
    telemetry: Arc<Telemetry>,
    reads: Pacer,
}

/// How an upstream call failed, before it is judged.
#[derive(Debug)]
enum CallError {
    /// Non-2xx with the upstream's error body.
    Status {
        status: StatusCode,
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// No connection was made: the request never left.
    NotSent(String),
    /// Timeout or reset once connected: the request may have arrived.
    Transport(String),
    /// A 2xx whose body is not what docs/ark.md describes.
    BadBody(String),
}

impl CallError {
    /// 429, 5xx, timeouts and garbage are worth another try.
    fn retryable(&self) -> bool {
        match self {
            CallError::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
            CallError::NotSent(_) | CallError::Transport(_) | CallError::BadBody(_) => true,
        }
    }

    /// Whether a create that failed this way may still have made a task upstream: a 5xx, a
    /// timeout, a reset or a garbled answer all leave that open; a 4xx (429 included) or a
    /// connection never made do not.
    fn leaves_doubt(&self) -> bool {
        match self {
            CallError::Status { status, .. } => status.is_server_error(),
            CallError::Transport(_) | CallError::BadBody(_) => true,
            CallError::NotSent(_) => false,
        }
    }

    /// The error of a create on `channel`, in doubt when the task may exist there.
    fn into_submit_error(self, channel: &ChannelId) -> ProviderError {
        let in_doubt = self.leaves_doubt();
        let mut error = self.into_provider_error();
        if in_doubt {
            error.kind = ProviderErrorKind::InDoubt {
                channel: channel.clone(),
            };
        }
        error
    }

    fn into_provider_error(self) -> ProviderError {
        let kind = if self.retryable() {
            ProviderErrorKind::Retryable
        } else {
            ProviderErrorKind::Permanent
        };
        match self {
            CallError::Status {
                status,
                code,
                message,
                retry_after,
            } => ProviderError {
                kind,
                code: if code.is_empty() {
                    format!("upstream_http_{}", status.as_u16())
                } else {
                    code
                },
                message: if message.is_empty() {
                    format!("upstream answered HTTP {status}")
                } else {
                    message
                },
                retry_after,
            },
            CallError::NotSent(reason) | CallError::Transport(reason) => {
                ProviderError::transient("upstream_unreachable", reason)
            }
            CallError::BadBody(reason) => ProviderError::transient("upstream_bad_response", reason),
        }
    }
}

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

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl Channel {
    fn url(&self, path: &str) -> String {
        format!(
            "{}/contents/generations/tasks{path}",
            self.config.base_url.trim_end_matches('/')
        )
    }

    /// Sends a request and decodes a 2xx body as `T`; anything else is a [`CallError`]. Each
    /// call is counted and timed by channel and outcome.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, CallError> {
        let started = Instant::now();
        let result = self.send(request).await;
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(CallError::Status { status, .. }) => format!("http_{}", status.as_u16()),
            Err(CallError::Transport(_)) => "transport".to_owned(),
            Err(CallError::NotSent(_)) => "not_sent".to_owned(),
            Err(CallError::BadBody(_)) => "bad_body".to_owned(),
        };
        self.telemetry
            .upstream_call(&self.config.id, &outcome, started.elapsed());
        result
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, CallError> {
        let response = request
            .bearer_auth(self.api_key.expose())
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    CallError::NotSent(crate::fetch::describe(e))
                } else {
                    CallError::Transport(crate::fetch::describe(e))
                }
            })?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| CallError::Transport(crate::fetch::describe(e)))?;
        if !status.is_success() {
            let error = serde_json::from_slice::<ErrorBody>(&body)
                .ok()
                .and_then(|b| b.error);
            return Err(CallError::Status {
                status,
                code: error
                    .as_ref()
                    .and_then(|e| e.code.clone())
                    .unwrap_or_default(),
                message: error.and_then(|e| e.message).unwrap_or_default(),
                retry_after,
            });
        }
        // DELETE may answer with an empty body.
        let body: &[u8] = if body.is_empty() { b"null" } else { &body };
        serde_json::from_slice(body).map_err(|e| CallError::BadBody(e.to_string()))
    }

    /// A status read (a task, a list page), in its turn within the channel's budget.
    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, CallError> {
        self.reads.turn().await;
        self.call(request).await
    }

    /// Whether this channel can make the job; a final only on the channel that holds its
    /// draft.
    /// This channel's priority and weight for `model`'s tasks.
    fn routing(&self, model: &str) -> (u32, u32) {
        let own = self.config.routing.get(model).copied().unwrap_or_default();
        (
            own.priority.unwrap_or(self.config.priority),
            own.weight.unwrap_or(self.config.weight),
        )
    }

    fn serves(&self, job: &VideoJob) -> bool {
        let holds_the_draft = job.final_of.as_ref().is_none_or(|source| {
            source
                .upstream
                .as_ref()
                .is_some_and(|draft| draft.channel == self.config.id.as_str())
        });
        holds_the_draft
            && self.config.models.contains_key(&job.model)
            && self.config.resolutions.contains(&job.resolution)
    }
}

/// `pool` (each with its priority and weight) in the order to try: lowest priority first;
/// among equal priorities, a random order in which each goes first in proportion to its
/// weight.
fn routing_order<T>(mut pool: Vec<(T, (u32, u32))>, rng: &mut impl Rng) -> Vec<T> {
    pool.sort_by_key(|(_, (priority, _))| *priority);
    let mut ordered = Vec::with_capacity(pool.len());
    while !pool.is_empty() {
        let priority = pool[0].1 .0;
        let tier = pool.iter().take_while(|(_, (p, _))| *p == priority).count();
        let total: u32 = pool[..tier].iter().map(|(_, (_, weight))| weight).sum();
        let mut pick = rng.gen_range(0..total.max(1));
        let index = pool[..tier]
            .iter()
            .position(|(_, (_, weight))| {
                if pick < *weight {
                    true
                } else {
                    pick -= weight;
                    false
                }
            })
            .unwrap_or(0);
        ordered.push(pool.remove(index).0);
    }
    ordered
}

/// The `ark` provider: every configured Ark/ModelArk channel.
pub struct Ark {
    channels: Vec<Channel>,
    breaker_failures: u32,
    breaker_cooldown: Duration,
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

/// The ratio the quote counted: `adaptive` is passed on only when it follows an input, since
/// the upstream then reads the input's shape itself.
fn ratio(job: &VideoJob) -> &'static str {
    job.output_ratio(None)
        .map_or("adaptive", AspectRatio::as_str)
}

fn duration(job: &VideoJob) -> i64 {
    match job.duration {
        DurationRequest::Seconds(s) => i64::from(s),
        DurationRequest::ModelDecides => -1,
    }
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
                usage_tokens: task.usage.and_then(|u| u.completion_tokens),
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

impl Ark {
    /// Builds the channels, reading each key from its environment variable now, so a missing
    /// key stops start-up instead of failing tasks later.
    pub fn new(
        configs: &[ChannelConfig],
        breaker_failures: u32,
        breaker_cooldown: Duration,
        replicas: u32,
        telemetry: Arc<Telemetry>,
    ) -> Result<Self, ChannelSetupError> {
        let mut channels: Vec<Channel> = Vec::new();
        for config in configs {
            let invalid = |reason: &str| ChannelSetupError::Invalid {
                channel: config.id.clone(),
                reason: reason.to_owned(),
            };
            if config.provider != "ark" {
                return Err(ChannelSetupError::UnknownProvider {
                    channel: config.id.clone(),
                    provider: config.provider.clone(),
                });
            }
            if channels.iter().any(|c| c.config.id == config.id) {
                return Err(ChannelSetupError::Duplicate(config.id.clone()));
            }
            if !(config.base_url.starts_with("https://") || config.base_url.starts_with("http://"))
            {
                return Err(invalid("base_url must be an http(s) URL"));
            }
            if config.weight == 0 || config.max_concurrent_tasks == 0 {
                return Err(invalid("weight and max_concurrent_tasks must be positive"));
            }
            for (model, routing) in &config.routing {
                if !config.models.contains_key(model) {
                    return Err(invalid(&format!(
                        "routing.\"{model}\" names a model the channel does not serve"
                    )));
                }
                if routing.weight == Some(0) {
                    return Err(invalid(&format!(
                        "routing.\"{model}\".weight must be positive"
                    )));
                }
            }
            if config.polls_per_second == 0 || !(1..=MAX_POLL_BATCH).contains(&config.poll_batch) {
                return Err(invalid(&format!(
                    "polls_per_second must be positive and poll_batch 1 to {MAX_POLL_BATCH}"
                )));
            }
            let key =
                std::env::var(&config.api_key_env).map_err(|_| ChannelSetupError::MissingKey {
                    channel: config.id.clone(),
                    env: config.api_key_env.clone(),
                })?;
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(config.timeout_seconds))
                .connect_timeout(Duration::from_secs(config.timeout_seconds.min(10)))
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("seedgate/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| invalid(&e.to_string()))?;
            channels.push(Channel {
                config: config.clone(),
                api_key: Secret::new(key),
                client,
                breaker: Mutex::new(Breaker::default()),
                telemetry: telemetry.clone(),
                reads: Pacer::new(config.polls_per_second.div_ceil(replicas.max(1))),
            });
        }
        Ok(Self {
            channels,
            breaker_failures,
            breaker_cooldown,
        })
    }

    /// Each channel's circuit breaker as it stands now, for the metrics.
    pub fn breaker_states(&self) -> Vec<(ChannelId, BreakerState)> {
        let now = Instant::now();
        self.channels
            .iter()
            .map(|c| {
                let state = match c.breaker.lock().map(|b| b.open_until) {
                    Ok(None) | Err(_) => BreakerState::Closed,
                    Ok(Some(until)) if now < until => BreakerState::Open,
                    Ok(Some(_)) => BreakerState::HalfOpen,
                };
                (c.config.id.clone(), state)
            })
            .collect()
    }

    pub fn has_channels(&self) -> bool {
        !self.channels.is_empty()
    }

    pub fn channel_names(&self) -> Vec<&ChannelId> {
        self.channels.iter().map(|c| &c.config.id).collect()
    }

    fn channel(&self, id: &ChannelId) -> Result<&Channel, ProviderError> {
        self.channels
            .iter()
            .find(|c| &c.config.id == id)
            .ok_or_else(|| {
                ProviderError::permanent(
                    "channel_removed",
                    format!("channel {id} is no longer configured"),
                )
            })
    }

    fn record(&self, channel: &Channel, ok: bool) {
        if let Ok(mut breaker) = channel.breaker.lock() {
            breaker.record(ok, self.breaker_failures, self.breaker_cooldown);
        }
    }

    /// Channels to try for a job, best first: serving it, under their concurrency limit,
    /// not tripped, in their routing order for its model.
    fn candidates(
        &self,
        job: &VideoJob,
        in_flight: &HashMap<ChannelId, i64>,
    ) -> (Vec<&Channel>, bool) {
        let now = Instant::now();
        let serving: Vec<&Channel> = self.channels.iter().filter(|c| c.serves(job)).collect();
        let with_room: Vec<&Channel> = serving
            .iter()
            .copied()
            .filter(|c| {
                in_flight.get(&c.config.id).copied().unwrap_or(0)
                    < i64::from(c.config.max_concurrent_tasks)
            })
            .collect();
        let all_full = !serving.is_empty() && with_room.is_empty();
        let pool: Vec<(&Channel, (u32, u32))> = with_room
            .into_iter()
            .filter(|c| {
                c.breaker
                    .lock()
                    .map(|mut b| b.allows(now, self.breaker_cooldown))
                    .unwrap_or(true)
            })
            .map(|c| (c, c.routing(&job.model)))
            .collect();
        (routing_order(pool, &mut rand::thread_rng()), all_full)
    }

    async fn submit_job(&self, request: SubmitRequest<'_>) -> Result<Submission, ProviderError> {
        let job = request.job;
        let (channels, all_full) = self.candidates(job, request.in_flight);
        if channels.is_empty() {
            let mut error = ProviderError::new(
                ProviderErrorKind::AwaitingCapacity,
                if all_full {
                    "channels_at_capacity"
                } else {
                    "channels_unavailable"
                },
                if all_full {
                    "Every channel serving this request is at its concurrency limit; the task waits."
                } else {
                    "Every channel serving this request is failing; the task will be retried."
                },
            );
            error.retry_after = Some(Duration::from_secs(if all_full { 1 } else { 5 }));
            return Err(error);
        }
        let mut last_error = None;
        let mut all_taken = true;
        for channel in channels {
            let Some(upstream_model) = channel.config.models.get(&job.model) else {
                continue;
            };
            if !request
                .slots
                .reserve(&channel.config.id, channel.config.max_concurrent_tasks)
                .await?
            {
                continue;
            }
            all_taken = false;
            let body = create_body(&request, upstream_model);
            let result = channel
                .call::<CreatedTask>(channel.client.post(channel.url("")).json(&body))
                .await;
            match result {
                Ok(created) => {
                    self.record(channel, true);
                    tracing::info!(channel = %channel.config.id, upstream_id = %created.id, "submitted upstream");
                    return Ok(Submission::Accepted(UpstreamRef {
                        channel: channel.config.id.clone(),
                        upstream_id: created.id,
                    }));
                }
                Err(e) if e.leaves_doubt() => {
                    // A task may exist there now: nothing is sent anywhere else until the
                    // engine has looked.
                    self.record(channel, false);
                    tracing::warn!(channel = %channel.config.id, error = ?e, "submit outcome unknown; reconciling before any resubmission");
                    return Err(e.into_submit_error(&channel.config.id));
                }
                Err(e) if e.retryable() => {
                    self.record(channel, false);
                    tracing::warn!(channel = %channel.config.id, error = ?e, "submit refused; trying the next channel");
                    last_error = Some(e.into_provider_error());
                }
                Err(e) => {
                    // The request itself was refused: another channel would refuse it too.
                    self.record(channel, true);
                    return Err(e.into_provider_error());
                }
            }
        }
        if all_taken {
            let mut error = ProviderError::new(
                ProviderErrorKind::AwaitingCapacity,
                "channels_at_capacity",
                "Every channel serving this request is at its concurrency limit; the task waits.",
            );
            error.retry_after = Some(Duration::from_secs(1));
            return Err(error);
        }
        let mut error = last_error.unwrap_or_else(|| {
            ProviderError::transient("all_channels_failed", "no channel accepted the task")
        });
        error.message = format!("All channels failed; last: {}", error.message);
        error.code = "all_channels_failed".into();
        Err(error)
    }

    async fn poll_task(&self, upstream: &UpstreamRef) -> Result<UpstreamStatus, ProviderError> {
        let channel = self.channel(&upstream.channel)?;
        let task = channel
            .read::<ArkTask>(
                channel
                    .client
                    .get(channel.url(&format!("/{}", upstream.upstream_id))),
            )
            .await;
        match task {
            Ok(task) => status_of(task),
            Err(CallError::Status {
                status: StatusCode::NOT_FOUND,
                ..
            }) => Err(ProviderError::permanent(
                "upstream_task_missing",
                "The upstream no longer knows this task.",
            )),
            Err(e) => Err(e.into_provider_error()),
        }
    }

    /// One list request for many tasks (`filter.task_ids` repeated). A task the answer leaves
    /// out is not in the result: the engine asks for it alone.
    async fn poll_tasks(
        &self,
        channel_id: &ChannelId,
        upstream_ids: &[String],
    ) -> Result<Polled, ProviderError> {
        let channel = self.channel(channel_id)?;
        let size = upstream_ids.len().to_string();
        let mut query = vec![("page_num", "1"), ("page_size", size.as_str())];
        query.extend(
            upstream_ids
                .iter()
                .map(|id| ("filter.task_ids", id.as_str())),
        );
        let list = channel
            .read::<TaskList>(channel.client.get(channel.url("")).query(&query))
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

    async fn cancel_task(&self, upstream: &UpstreamRef) -> Result<CancelOutcome, ProviderError> {
        let channel = self.channel(&upstream.channel)?;
        let path = format!("/{}", upstream.upstream_id);
        let task = channel
            .read::<ArkTask>(channel.client.get(channel.url(&path)))
            .await
            .map_err(CallError::into_provider_error)?;
        // Deleting a finished upstream task erases its record, so only a queued one is touched.
        if task.status != "queued" {
            return Ok(CancelOutcome::NotCancellable);
        }
        match channel
            .call::<Value>(channel.client.delete(channel.url(&path)))
            .await
        {
            Ok(_) => Ok(CancelOutcome::Cancelled),
            Err(e) if e.retryable() => Err(e.into_provider_error()),
            // It started running in the meantime.
            Err(_) => Ok(CancelOutcome::NotCancellable),
        }
    }

    async fn find_task(
        &self,
        task_id: &TaskId,
        job: &VideoJob,
        channel_id: &ChannelId,
        since_ms: i64,
    ) -> Result<Vec<UpstreamRef>, ProviderError> {
        let channel = self.channel(channel_id)?;
        let model = channel.config.models.get(&job.model).ok_or_else(|| {
            ProviderError::permanent(
                "channel_removed",
                format!("channel {channel_id} no longer serves {}", job.model),
            )
        })?;
        // Clocks differ: accept tasks created a little before our submission started.
        let since_s = since_ms / 1000 - CLOCK_SKEW_S;
        let mut found = Vec::new();
        // Newest first: page until the pages reach back before the submission.
        for page in 1..=MAX_LIST_PAGES {
            let list = channel
                .read::<TaskList>(channel.client.get(channel.url("")).query(&[
                    ("page_num", page.to_string().as_str()),
                    ("page_size", LIST_PAGE_SIZE.to_string().as_str()),
                    ("filter.model", model.as_str()),
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
                return Ok(found
                    .into_iter()
                    .map(|(_, upstream_id)| UpstreamRef {
                        channel: channel_id.clone(),
                        upstream_id,
                    })
                    .collect());
            }
        }
        Err(ProviderError::transient(
            "upstream_list_too_long",
            format!("more than {MAX_LIST_PAGES} pages of upstream tasks since the submission"),
        ))
    }

    /// Lists each channel's tasks once: reachability, key validity and latency for operators.
    pub async fn check_channels(&self) -> Vec<ChannelCheck> {
        let mut checks = Vec::new();
        for channel in &self.channels {
            let started = Instant::now();
            let result = channel
                .call::<TaskList>(
                    channel
                        .client
                        .get(channel.url(""))
                        .query(&[("page_num", "1"), ("page_size", "1")]),
                )
                .await;
            let latency = started.elapsed();
            let (reachable, auth_ok, detail) = match result {
                Ok(_) => (true, true, "ok".to_owned()),
                Err(CallError::Status {
                    status,
                    code,
                    message,
                    ..
                }) => (
                    true,
                    !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                    format!("HTTP {} {code} {message}", status.as_u16()),
                ),
                Err(CallError::NotSent(reason) | CallError::Transport(reason)) => {
                    (false, false, reason)
                }
                Err(CallError::BadBody(reason)) => {
                    (true, true, format!("unexpected body: {reason}"))
                }
            };
            checks.push(ChannelCheck {
                channel: channel.config.id.clone(),
                base_url: channel.config.base_url.clone(),
                reachable,
                auth_ok,
                latency,
                detail,
            });
        }
        checks
    }
}

/// The result of `seedgate channels check` for one channel.
pub struct ChannelCheck {
    pub channel: ChannelId,
    pub base_url: String,
    pub reachable: bool,
    pub auth_ok: bool,
    pub latency: Duration,
    pub detail: String,
}

impl Provider for Ark {
    fn name(&self) -> &'static str {
        "ark"
    }

    fn can_serve(&self, job: &VideoJob) -> bool {
        self.channels.iter().any(|c| c.serves(job))
    }

    fn submit<'a>(
        &'a self,
        request: SubmitRequest<'a>,
    ) -> BoxFuture<'a, Result<Submission, ProviderError>> {
        Box::pin(self.submit_job(request))
    }

    fn poll<'a>(
        &'a self,
        upstream: &'a UpstreamRef,
    ) -> BoxFuture<'a, Result<UpstreamStatus, ProviderError>> {
        Box::pin(self.poll_task(upstream))
    }

    fn cancel<'a>(
        &'a self,
        upstream: &'a UpstreamRef,
    ) -> BoxFuture<'a, Result<CancelOutcome, ProviderError>> {
        Box::pin(self.cancel_task(upstream))
    }

    fn poll_channels(&self) -> Vec<PollChannel> {
        self.channels
            .iter()
            .map(|c| PollChannel {
                id: c.config.id.clone(),
                batch: c.config.poll_batch as usize,
                reads_per_second: c.reads.per_second,
            })
            .collect()
    }

    fn poll_batch<'a>(
        &'a self,
        channel: &'a ChannelId,
        upstream_ids: &'a [String],
    ) -> BoxFuture<'a, Result<Polled, ProviderError>> {
        Box::pin(self.poll_tasks(channel, upstream_ids))
    }

    fn find_submitted<'a>(
        &'a self,
        task_id: &'a TaskId,
        job: &'a VideoJob,
        channel: &'a ChannelId,
        since_ms: i64,
    ) -> BoxFuture<'a, Result<Vec<UpstreamRef>, ProviderError>> {
        Box::pin(self.find_task(task_id, job, channel, since_ms))
    }
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
    fn channels_go_by_priority_then_by_weight() {
        let mut rng = rand::thread_rng();
        let mut first = HashMap::new();
        for _ in 0..2000 {
            let order = routing_order(
                vec![("backup", (1, 1000)), ("light", (0, 1)), ("heavy", (0, 3))],
                &mut rng,
            );
            assert_eq!(order[2], "backup", "a higher priority number always waits");
            *first.entry(order[0]).or_insert(0) += 1;
        }
        // Among equals, first in proportion to weight: 3 to 1 (expected 1500 of 2000).
        let heavy = first["heavy"];
        assert!((1350..1650).contains(&heavy), "{first:?}");
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

    #[test]
    fn only_a_create_that_may_have_arrived_leaves_doubt() {
        let status = |code: u16| CallError::Status {
            status: StatusCode::from_u16(code).unwrap(),
            code: String::new(),
            message: String::new(),
            retry_after: None,
        };
        assert!(status(500).leaves_doubt());
        assert!(status(503).leaves_doubt());
        assert!(CallError::Transport("timed out".into()).leaves_doubt());
        assert!(CallError::BadBody("eof".into()).leaves_doubt());
        assert!(!status(429).leaves_doubt());
        assert!(!status(400).leaves_doubt());
        assert!(!CallError::NotSent("refused".into()).leaves_doubt());
        assert_eq!(
            CallError::Transport("timed out".into())
                .into_submit_error(&ChannelId::new("volc"))
                .kind,
            ProviderErrorKind::InDoubt {
                channel: ChannelId::new("volc")
            }
        );
        assert_eq!(
            status(429).into_submit_error(&ChannelId::new("volc")).kind,
            ProviderErrorKind::Retryable
        );
    }

    #[test]
    fn breaker_opens_after_repeated_failures_and_probes_back() {
        let mut b = Breaker::default();
        let cooldown = Duration::from_millis(20);
        for _ in 0..2 {
            b.record(false, 3, cooldown);
            assert!(b.allows(Instant::now(), cooldown));
        }
        b.record(false, 3, cooldown);
        assert!(!b.allows(Instant::now(), cooldown));
        std::thread::sleep(Duration::from_millis(25));
        assert!(
            b.allows(Instant::now(), cooldown),
            "one probe after the cooldown"
        );
        assert!(
            !b.allows(Instant::now(), cooldown),
            "only one probe at a time"
        );
        // A probe that never reports back does not keep the channel out for good.
        std::thread::sleep(Duration::from_millis(25));
        assert!(b.allows(Instant::now(), cooldown), "another probe");
        b.record(true, 3, cooldown);
        assert!(b.allows(Instant::now(), cooldown));
        assert!(b.allows(Instant::now(), cooldown));
    }

    /// Reads from several pollers at once, each reaching the upstream 0–45 ms after its turn:
    /// no second at the upstream sees more than the budget, and the budget is used.
    #[tokio::test(start_paused = true)]
    async fn paced_reads_stay_within_the_budget_at_the_upstream_and_use_it() {
        let budget = 10;
        let pacer = Arc::new(Pacer::new(budget));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let started = tokio::time::Instant::now();
        let pollers: Vec<_> = (0..5u64)
            .map(|poller| {
                let (pacer, arrivals) = (pacer.clone(), arrivals.clone());
                tokio::spawn(async move {
                    for read in 0..20u64 {
                        pacer.turn().await;
                        let transit = Duration::from_millis((poller * 20 + read) * 37 % 46);
                        let arrivals = arrivals.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(transit).await;
                            arrivals.lock().unwrap().push(tokio::time::Instant::now());
                        });
                    }
                })
            })
            .collect();
        for poller in pollers {
            poller.await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut arrivals = arrivals.lock().unwrap().clone();
        arrivals.sort();
        assert_eq!(arrivals.len(), 100);
        let mut first = 0;
        for (last, at) in arrivals.iter().enumerate() {
            while at.duration_since(arrivals[first]) >= Duration::from_secs(1) {
                first += 1;
            }
            assert!(
                last + 1 - first <= budget as usize,
                "{} reads arrived within one second",
                last + 1 - first
            );
        }
        let took = arrivals[99].duration_since(started);
        assert!(
            took <= Duration::from_millis(10_600),
            "100 reads at 10 a second took {took:?}"
        );
    }
}
