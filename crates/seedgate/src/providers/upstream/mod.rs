//! The real Seedance, from whichever vendor hosts it (docs/vendors.md). Every configured
//! channel is one vendor account speaking that vendor's wire (Ark/ModelArk, fal, Replicate,
//! OpenRouter); one provider chooses among the healthy channels by priority and weight and
//! moves a task to the next only when the one before refused it for sure. Each vendor's
//! module maps the task to its wire and its answers back to ours.

mod ark;
mod fal;
mod openrouter;
mod replicate;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use seedgate_contract::{AspectRatio, DurationRequest, Operation, VideoJob};

use super::{
    BoxFuture, CancelOutcome, PollChannel, Polled, Provider, ProviderError, ProviderErrorKind,
    Submission, SubmitRequest, UpstreamRef, UpstreamStatus,
};
use crate::config::ChannelConfig;
use crate::ids::{ChannelId, TaskId};
use crate::secret::Secret;
use crate::telemetry::{BreakerState, Telemetry};

/// The tasks one poll asks about when the channel does not say (at most the vendor's limit).
const DEFAULT_POLL_BATCH: u32 = 100;

/// Seconds an upstream's clock may run behind ours when matching task creation times.
pub(super) const CLOCK_SKEW_S: i64 = 5;

/// Start-up problems with the channel configuration.
#[derive(Debug, thiserror::Error)]
pub enum ChannelSetupError {
    #[error("channel {channel}: environment variable {env} (api_key_env) is not set")]
    MissingKey { channel: ChannelId, env: String },
    #[error(
        "channel {channel}: unknown provider `{provider}` (one of ark, fal, replicate, openrouter)"
    )]
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

/// The vendors whose wire a channel speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Ark,
    Fal,
    Replicate,
    OpenRouter,
}

impl Vendor {
    pub const ALL: [Vendor; 4] = [
        Vendor::Ark,
        Vendor::Fal,
        Vendor::Replicate,
        Vendor::OpenRouter,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|vendor| vendor.name() == name)
    }

    /// The name in a channel's `provider`, in reports and in a task's `provider`.
    pub fn name(self) -> &'static str {
        match self {
            Vendor::Ark => "ark",
            Vendor::Fal => "fal",
            Vendor::Replicate => "replicate",
            Vendor::OpenRouter => "openrouter",
        }
    }

    /// The operations this vendor's wire can express.
    pub fn operations(self) -> &'static [Operation] {
        match self {
            Vendor::Ark => &Operation::ALL,
            Vendor::Fal => fal::OPERATIONS,
            Vendor::Replicate => replicate::OPERATIONS,
            Vendor::OpenRouter => openrouter::OPERATIONS,
        }
    }

    /// Whether this vendor's wire can carry everything the job asks for. What only Ark has
    /// (drafts, offline tier, a watermark, a QuickTime file, a length left to the model) is
    /// refused elsewhere rather than silently dropped.
    fn carries(self, job: &VideoJob) -> bool {
        if !self.operations().contains(&job.operation) {
            return false;
        }
        match self {
            Vendor::Ark => true,
            Vendor::Fal => fal::carries(job),
            Vendor::Replicate => replicate::carries(job),
            Vendor::OpenRouter => openrouter::carries(job),
        }
    }

    /// Where the vendor's API lives, for a channel that does not say.
    fn default_base_url(self) -> Option<&'static str> {
        match self {
            // Two regions, two accounts: the channel must choose.
            Vendor::Ark => None,
            Vendor::Fal => Some(fal::BASE_URL),
            Vendor::Replicate => Some(replicate::BASE_URL),
            Vendor::OpenRouter => Some(openrouter::BASE_URL),
        }
    }

    /// The most ids one status read can ask about.
    fn max_poll_batch(self) -> u32 {
        match self {
            Vendor::Ark => ark::MAX_POLL_BATCH,
            // One read per task, made side by side within the channel's read budget.
            Vendor::Fal | Vendor::Replicate | Vendor::OpenRouter => 32,
        }
    }
}

struct Channel {
    config: ChannelConfig,
    vendor: Vendor,
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
    /// A 2xx whose body is not what the vendor documents.
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

    /// The error of a status read: a task the upstream no longer knows is gone for good.
    fn into_read_error(self) -> ProviderError {
        match self {
            CallError::Status {
                status: StatusCode::NOT_FOUND,
                ..
            } => ProviderError::permanent(
                "upstream_task_missing",
                "The upstream no longer knows this task.",
            ),
            other => other.into_provider_error(),
        }
    }
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
        let request = match self.vendor {
            Vendor::Fal => request.header(
                reqwest::header::AUTHORIZATION,
                format!("Key {}", self.api_key.expose()),
            ),
            Vendor::Ark | Vendor::Replicate | Vendor::OpenRouter => {
                request.bearer_auth(self.api_key.expose())
            }
        };
        let response = request.send().await.map_err(|e| {
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
            let (code, message) = match self.vendor {
                Vendor::Ark => ark::error_of(&body),
                Vendor::Fal => fal::error_of(&body),
                Vendor::Replicate => replicate::error_of(&body),
                Vendor::OpenRouter => openrouter::error_of(&body),
            };
            return Err(CallError::Status {
                status,
                code,
                message,
                retry_after,
            });
        }
        // DELETE may answer with an empty body.
        let body: &[u8] = if body.is_empty() { b"null" } else { &body };
        serde_json::from_slice(body).map_err(|e| CallError::BadBody(e.to_string()))
    }

    /// `path` under the channel's base URL.
    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    /// A status read of `path` under the base URL.
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, CallError> {
        self.read(self.client.get(self.endpoint(path))).await
    }

    /// Cancels a task the vendor still holds queued (a running one is paid for either way);
    /// a refusal means it started meanwhile.
    async fn withdraw(
        &self,
        queued: bool,
        cancel: reqwest::RequestBuilder,
    ) -> Result<CancelOutcome, ProviderError> {
        if !queued {
            return Ok(CancelOutcome::NotCancellable);
        }
        match self.call::<serde_json::Value>(cancel).await {
            Ok(_) => Ok(CancelOutcome::Cancelled),
            Err(e) if e.retryable() => Err(e.into_provider_error()),
            Err(_) => Ok(CancelOutcome::NotCancellable),
        }
    }

    /// A status read (a task, a list page), in its turn within the channel's budget.
    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, CallError> {
        self.reads.turn().await;
        self.call(request).await
    }

    /// This channel's priority and weight for `model`'s tasks.
    fn routing(&self, model: &str) -> (u32, u32) {
        let own = self.config.routing.get(model).copied().unwrap_or_default();
        (
            own.priority.unwrap_or(self.config.priority),
            own.weight.unwrap_or(self.config.weight),
        )
    }

    /// Whether this channel can make the job; a final only on the channel that holds its
    /// draft.
    fn serves(&self, job: &VideoJob) -> bool {
        let holds_the_draft = job.final_of.as_ref().is_none_or(|source| {
            source
                .upstream
                .as_ref()
                .is_some_and(|draft| draft.channel == self.config.id.as_str())
        });
        holds_the_draft
            && self.vendor.carries(job)
            && self
                .config
                .operations
                .as_ref()
                .is_none_or(|operations| operations.contains(&job.operation))
            && self.config.models.contains_key(&job.model)
            && self.config.resolutions.contains(&job.resolution)
    }

    /// Creates the upstream task; its id on success.
    async fn create(
        &self,
        request: &SubmitRequest<'_>,
        upstream_model: &str,
    ) -> Result<String, CallError> {
        match self.vendor {
            Vendor::Ark => ark::create(self, request, upstream_model).await,
            Vendor::Fal => fal::create(self, request, upstream_model).await,
            Vendor::Replicate => replicate::create(self, request, upstream_model).await,
            Vendor::OpenRouter => openrouter::create(self, request, upstream_model).await,
        }
    }

    async fn fetch(&self, upstream_id: &str) -> Result<UpstreamStatus, ProviderError> {
        match self.vendor {
            Vendor::Ark => ark::fetch(self, upstream_id).await,
            Vendor::Fal => fal::fetch(self, upstream_id).await,
            Vendor::Replicate => replicate::fetch(self, upstream_id).await,
            Vendor::OpenRouter => openrouter::fetch(self, upstream_id).await,
        }
    }

    async fn fetch_many(&self, upstream_ids: &[String]) -> Result<Polled, ProviderError> {
        if self.vendor == Vendor::Ark {
            return ark::fetch_many(self, upstream_ids).await;
        }
        // One read each, side by side: the pacer keeps them within the channel's budget.
        let reads = upstream_ids.iter().map(|id| async move {
            let status = self.fetch(id).await;
            (id.clone(), status)
        });
        let polled: Polled = futures_util::future::join_all(reads).await;
        // A channel that answers no read at all is down, not each of its tasks.
        if let Some((_, Err(error))) = polled.first() {
            if polled.iter().all(|(_, status)| status.is_err())
                && error.code != "upstream_task_missing"
            {
                return Err(error.clone());
            }
        }
        Ok(polled)
    }

    async fn cancel(&self, upstream_id: &str) -> Result<CancelOutcome, ProviderError> {
        match self.vendor {
            Vendor::Ark => ark::cancel(self, upstream_id).await,
            Vendor::Fal => fal::cancel(self, upstream_id).await,
            Vendor::Replicate => replicate::cancel(self, upstream_id).await,
            Vendor::OpenRouter => openrouter::cancel(self, upstream_id).await,
        }
    }

    /// One cheap authenticated read: reachability and the key's validity.
    async fn check(&self) -> Result<(), CallError> {
        match self.vendor {
            Vendor::Ark => ark::check(self).await,
            Vendor::Fal => fal::check(self).await,
            Vendor::Replicate => replicate::check(self).await,
            Vendor::OpenRouter => openrouter::check(self).await,
        }
    }
}

/// The ratio the quote counted: `adaptive` is passed on only when it follows an input, since
/// the upstream then reads the input's shape itself.
fn ratio(job: &VideoJob) -> &'static str {
    job.output_ratio(None)
        .map_or("adaptive", AspectRatio::as_str)
}

/// The length asked for in seconds; -1 leaves it to the model (Ark's and Replicate's spelling).
fn duration(job: &VideoJob) -> i64 {
    match job.duration {
        DurationRequest::Seconds(s) => i64::from(s),
        DurationRequest::ModelDecides => -1,
    }
}

/// A vendor's failure, named as our tasks name moderation when its words (any of `marks`,
/// in any case) say the content was refused.
fn failure(message: String, marks: &[&str]) -> UpstreamStatus {
    let lower = message.to_lowercase();
    let moderated = marks
        .iter()
        .any(|mark| lower.contains(&mark.to_lowercase()));
    UpstreamStatus::Failed {
        code: if moderated {
            "OutputVideoSensitiveContentDetected"
        } else {
            "upstream_failed"
        }
        .to_owned(),
        message,
    }
}

/// A vendor's seconds (of compute) as whole milliseconds.
fn compute_ms(seconds: Option<f64>) -> Option<i64> {
    seconds
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| (s * 1000.0).round() as i64)
}

/// A vendor's dollar amount, exact to the micro-dollar (read from the number's own digits,
/// never through a float).
fn usd_micros(amount: &serde_json::Number) -> Option<i64> {
    let amount: rust_decimal::Decimal = amount.to_string().parse().ok()?;
    (amount * rust_decimal::Decimal::from(1_000_000))
        .round()
        .try_into()
        .ok()
}

/// What every vendor but Ark lacks: drafts and their finals, a watermark, a QuickTime file.
/// A job asking for any of them is not sent where it would silently come back without.
fn portable(job: &VideoJob) -> bool {
    !job.draft && job.final_of.is_none() && !job.watermark && job.output_format.is_mp4()
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

/// The upstream provider: every configured channel, whatever its vendor.
pub struct Upstream {
    channels: Vec<Channel>,
    breaker_failures: u32,
    breaker_cooldown: Duration,
}

impl Upstream {
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
            let vendor = Vendor::parse(&config.provider).ok_or_else(|| {
                ChannelSetupError::UnknownProvider {
                    channel: config.id.clone(),
                    provider: config.provider.clone(),
                }
            })?;
            let mut config = config.clone();
            if config.base_url.is_empty() {
                config.base_url = vendor
                    .default_base_url()
                    .ok_or_else(|| invalid("base_url is required (Ark has one per region)"))?
                    .to_owned();
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
            let max_batch = vendor.max_poll_batch();
            let batch = *config
                .poll_batch
                .get_or_insert(max_batch.min(DEFAULT_POLL_BATCH));
            if config.polls_per_second == 0 || !(1..=max_batch).contains(&batch) {
                return Err(invalid(&format!(
                    "polls_per_second must be positive and poll_batch 1 to {max_batch}"
                )));
            }
            if let Some(operation) = config
                .operations
                .iter()
                .flatten()
                .find(|operation| !vendor.operations().contains(operation))
            {
                return Err(invalid(&format!(
                    "{} does not serve {}",
                    vendor.name(),
                    operation.as_str()
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
            let reads = Pacer::new(config.polls_per_second.div_ceil(replicas.max(1)));
            channels.push(Channel {
                config,
                vendor,
                api_key: Secret::new(key),
                client,
                breaker: Mutex::new(Breaker::default()),
                telemetry: telemetry.clone(),
                reads,
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

    /// The vendor of the channel a job is offered to first while all are healthy: the lowest
    /// priority for its model, the heaviest weight among equals.
    pub fn first_choice(&self, job: &VideoJob) -> Option<Vendor> {
        self.channels
            .iter()
            .filter(|c| c.serves(job))
            .min_by_key(|c| {
                let (priority, weight) = c.routing(&job.model);
                (priority, std::cmp::Reverse(weight))
            })
            .map(|c| c.vendor)
    }

    pub fn has_channels(&self) -> bool {
        !self.channels.is_empty()
    }

    /// Each channel with the vendor it speaks to.
    pub fn channel_names(&self) -> Vec<(&ChannelId, Vendor)> {
        self.channels
            .iter()
            .map(|c| (&c.config.id, c.vendor))
            .collect()
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
            match channel.create(&request, upstream_model).await {
                Ok(upstream_id) => {
                    self.record(channel, true);
                    tracing::info!(channel = %channel.config.id, vendor = channel.vendor.name(), %upstream_id, "submitted upstream");
                    return Ok(Submission::Accepted(UpstreamRef {
                        channel: channel.config.id.clone(),
                        upstream_id,
                        vendor: channel.vendor.name().to_owned(),
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
        self.channel(&upstream.channel)?
            .fetch(&upstream.upstream_id)
            .await
    }

    /// The statuses of many tasks on one channel. A task the answer leaves out is not in the
    /// result: the engine asks for it alone.
    async fn poll_tasks(
        &self,
        channel_id: &ChannelId,
        upstream_ids: &[String],
    ) -> Result<Polled, ProviderError> {
        self.channel(channel_id)?.fetch_many(upstream_ids).await
    }

    async fn cancel_task(&self, upstream: &UpstreamRef) -> Result<CancelOutcome, ProviderError> {
        self.channel(&upstream.channel)?
            .cancel(&upstream.upstream_id)
            .await
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
        let found = match channel.vendor {
            Vendor::Ark => ark::find(channel, task_id, job, model, since_ms).await?,
            Vendor::Replicate => replicate::find(channel, task_id, job, model, since_ms).await?,
            // Nothing there lists a key's requests: a task that may exist cannot be found, so
            // it is neither resubmitted (which could run and bill twice) nor charged.
            Vendor::Fal | Vendor::OpenRouter => {
                return Err(ProviderError::permanent(
                    "submission_unresolved",
                    format!(
                        "The answer to this task's submission to {} was lost, and {} cannot list submissions to find it; nothing was charged.",
                        channel.config.id,
                        channel.vendor.name()
                    ),
                ))
            }
        };
        Ok(found
            .into_iter()
            .map(|upstream_id| UpstreamRef {
                channel: channel_id.clone(),
                upstream_id,
                vendor: channel.vendor.name().to_owned(),
            })
            .collect())
    }

    /// Lists each channel's tasks once: reachability, key validity and latency for operators.
    pub async fn check_channels(&self) -> Vec<ChannelCheck> {
        let mut checks = Vec::new();
        for channel in &self.channels {
            let started = Instant::now();
            let result = channel.check().await;
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

impl Provider for Upstream {
    /// A task names the vendor that holds it; this name (Ark's, from before other vendors
    /// were served, and still on such tasks) finds the provider for the channels' polls.
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
                batch: c.config.poll_batch.unwrap_or(DEFAULT_POLL_BATCH) as usize,
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

    /// The documented three-vendor configuration builds: each vendor known, its default
    /// address filled in, its batch within the vendor's limit.
    #[test]
    fn the_documented_vendor_channels_build_with_their_defaults() {
        let mut config: crate::config::Config =
            toml::from_str(include_str!("../../../../../docs/vendors.toml")).unwrap();
        for channel in &mut config.channels {
            // The key variable set for tests (.cargo/config.toml), in place of the real ones.
            channel.api_key_env = "SEEDGATE_TEST_ARK_KEY".into();
        }
        let upstream = Upstream::new(
            &config.channels,
            3,
            Duration::from_secs(30),
            1,
            Arc::default(),
        )
        .unwrap();
        let vendors: Vec<(&str, &str, u32)> = upstream
            .channels
            .iter()
            .map(|c| {
                (
                    c.vendor.name(),
                    c.config.base_url.as_str(),
                    c.config.poll_batch.unwrap(),
                )
            })
            .collect();
        assert_eq!(
            vendors,
            [
                ("ark", "https://ark.cn-beijing.volces.com/api/v3", 100),
                ("fal", fal::BASE_URL, 32),
                ("replicate", replicate::BASE_URL, 32),
            ]
        );
        // An operation the vendor's wire cannot carry is a start-up error, not a silent gap.
        let mut bad = config.channels[1].clone();
        bad.operations = Some(vec![Operation::VideoToVideo]);
        let refused = Upstream::new(&[bad], 3, Duration::from_secs(30), 1, Arc::default());
        assert!(
            matches!(&refused, Err(ChannelSetupError::Invalid { reason, .. }) if reason == "fal does not serve video-to-video"),
            "{:?}",
            refused.err()
        );
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
