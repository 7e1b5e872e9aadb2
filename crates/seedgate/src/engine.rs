//! The engine: workers that lease tasks and move them forward — submit queued ones to their
//! provider, poll upstream ones on an adaptive schedule, copy results into our assets, settle
//! the money, expire what missed its deadline. Every step is a conditional update on the task
//! row, so a crash at any point leaves work the next lease holder finishes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::StreamExt;
use rand::Rng;
use seedgate_contract::{pricing, Catalog, DurationRequest, Resolution, VideoJob};
use tokio::sync::{Notify, Semaphore};
use tracing::{info, warn, Instrument};

use crate::assets::AssetKind;
use crate::blobs::{BlobError, Blobs};
use crate::config::EngineConfig;
use crate::fetch::Fetcher;
use crate::ids::{ChannelId, TaskId};
use crate::materials::{Materials, Unusable};
use crate::mp4_header::Mp4Header;
use crate::providers::{
    seed_is_ours, BoxFuture, ChannelSlots, Generated, PollChannel, Provider, ProviderError,
    ProviderErrorKind, Registry, Submission, SubmitRequest, UpstreamRef, UpstreamStatus,
};
use crate::signing::UrlSigner;
use crate::store::{
    now_ms, PollSeen, ScheduledPoll, Settlement, Store, StoreError, TaskFailure, TaskRecord,
    Transition, Unpaid, UpstreamPhase, UpstreamSubmission,
};
use crate::telemetry::Telemetry;

/// What one step of a worker did: tests call [`Engine::run_one`] until it reports `Empty`.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Empty,
}

/// What the public task object shows under `result` (plus signed URLs added at read time).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct StoredResult {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub duration: f64,
    pub has_audio: bool,
}

/// A finished video whose files are stored: what its task shows, and the usage it is charged.
struct Stored {
    result: StoredResult,
    usage_tokens: u64,
}

/// Why an upstream's result is not stored yet.
enum CopyError {
    /// The upstream's files could not be had, or are no video: counted towards giving up.
    Upstream(ProviderError),
    /// Our own storage failed: tried again, not held against the upstream.
    Storage(BlobError),
}

/// Why a finished video could not be kept here, which names the task's failure when the
/// tries run out: the upstream's files could not be had, or our own result store refused them.
#[derive(Clone, Copy)]
enum KeepFailure {
    Copy,
    Store,
}

impl KeepFailure {
    fn failure(self, upstream_usage_tokens: Option<i64>) -> TaskFailure<'static> {
        let (code, message) = match self {
            Self::Copy => (
                "result_unavailable",
                "The upstream finished the task but its video could not be retrieved; nothing was charged.",
            ),
            Self::Store => (
                "result_store_failed",
                "The video was generated but this server could not store it (its result storage refused the write, for example because its disk is full); nothing was charged.",
            ),
        };
        TaskFailure {
            code,
            message,
            upstream_usage_tokens,
        }
    }
}

/// The largest last frame copied from an upstream.
const MAX_LAST_FRAME_BYTES: u64 = 64 * 1024 * 1024;

pub struct Engine {
    store: Store,
    catalog: Arc<Catalog>,
    blobs: Arc<dyn Blobs>,
    signer: UrlSigner,
    providers: Arc<Registry>,
    fetcher: Fetcher,
    materials: Arc<Materials>,
    telemetry: Arc<Telemetry>,
    config: EngineConfig,
    public_url: Option<String>,
    owner: String,
    wake: Arc<Notify>,
    poll_wake: Arc<Notify>,
    /// Bounds the polled tasks being finished at once (results copied, money settled), so
    /// pollers keep polling meanwhile.
    finishing: Arc<Semaphore>,
    /// When a claim next looks for tasks whose holder's lease ran out.
    next_abandoned_check_ms: AtomicI64,
    /// The channels' load as last read, and when.
    load_hint: Mutex<Option<(Instant, ChannelLoad)>>,
}

/// Tasks in flight on each channel that has any.
type ChannelLoad = Arc<HashMap<ChannelId, i64>>;

/// How long one read of the channels' load serves submissions. It only spares a submission the
/// channels that looked full: each reservation checks the limit itself, and a task that found
/// every channel full waits longer than this before it looks again.
const LOAD_HINT_TTL: Duration = Duration::from_millis(100);

/// How often claims look for abandoned leases while none are found: small beside a lease.
const ABANDONED_CHECK_MS: i64 = 1_000;

/// A channel's status reads a second per poll loop. A round (claim, read, upstream, schedule)
/// takes 15–30 ms on a busy 2-core machine, so one loop per 60 reads uses the budget while
/// each waits on the database and the upstream; its pacer keeps them within it together. More
/// loops than that only queue on SQLite's one writer, ahead of new tasks' submissions.
const READS_PER_POLLER: u32 = 60;
/// The fewest and most poll loops one channel gets, whatever its budget.
const MIN_POLLERS_PER_CHANNEL: u32 = 2;
const MAX_POLLERS_PER_CHANNEL: u32 = 16;
/// How long a poller with nothing due waits before looking again (a callback wakes it sooner).
const POLLER_IDLE: Duration = Duration::from_millis(200);

/// A polled task that needs more than another poll later: its upstream ended it, or its
/// status is unknown (left out of the answer, or expired here), and it is looked at alone.
struct Attention {
    task: TaskRecord,
    job_json: String,
    status: Option<Result<UpstreamStatus, ProviderError>>,
}

/// Longest wait before retrying a submission.
const MAX_RETRY_DELAY_MS: i64 = 60_000;

/// The range Ark accepts for `execution_expires_after`, in seconds, and its default.
const UPSTREAM_EXPIRY_S: std::ops::RangeInclusive<i64> = 3_600..=259_200;
const UPSTREAM_DEFAULT_EXPIRY_S: i64 = 172_800;
/// After the upstream's own expiry, how long its last word is awaited before the task is
/// ended here anyway.
const UPSTREAM_EXPIRY_GRACE_MS: i64 = 10 * 60 * 1000;
/// Least wait between a submission whose answer was lost and the look upstream for its task,
/// so that a task the upstream was still creating shows up in its list.
const MIN_RECONCILE_DELAY_MS: i64 = 2_000;

/// What to ask the upstream for as `execution_expires_after` when submitting at `now_ms`: the
/// time our own deadline leaves, within the upstream's range, so both sides give up together.
pub fn upstream_expiry_seconds(deadline_at_ms: Option<i64>, now_ms: i64) -> i64 {
    match deadline_at_ms {
        Some(deadline) => {
            ((deadline - now_ms) / 1000).clamp(*UPSTREAM_EXPIRY_S.start(), *UPSTREAM_EXPIRY_S.end())
        }
        None => UPSTREAM_DEFAULT_EXPIRY_S,
    }
}

/// The expiry a task's submission at `at_ms` sends: ours, or the client's own when shorter
/// (the parser keeps it within the upstream's range).
fn expiry_for(task: &TaskRecord, job: &VideoJob, at_ms: i64) -> i64 {
    let ours = upstream_expiry_seconds(task.deadline_at_ms, at_ms);
    job.execution_expires_after
        .map_or(ours, |asked| ours.min(i64::from(asked)))
}

/// Whether a task may be ended here for want of time. Nothing submitted upstream: once our
/// deadline passed. Submitted (or possibly submitted): only once the upstream's own expiry
/// has passed too, since until then the upstream may still finish — and bill — the task.
pub fn may_expire(
    now_ms: i64,
    deadline_at_ms: Option<i64>,
    upstream_expires_at_ms: Option<i64>,
) -> bool {
    match upstream_expires_at_ms {
        None => deadline_at_ms.is_some_and(|deadline| now_ms > deadline),
        Some(upstream) => now_ms > upstream + UPSTREAM_EXPIRY_GRACE_MS,
    }
}

/// Whether a submitted task is past the upstream's own expiry (and its grace): ended here.
fn upstream_expired(task: &TaskRecord) -> bool {
    // Rows from before expiries were recorded ran on the upstream's default.
    let upstream_expires_at = task.upstream_expires_at_ms.unwrap_or(
        task.submit_started_at_ms.unwrap_or(task.created_at_ms) + UPSTREAM_DEFAULT_EXPIRY_S * 1000,
    );
    may_expire(now_ms(), task.deadline_at_ms, Some(upstream_expires_at))
}

/// The phase of a task the upstream is still working on; None once it has ended.
fn under_way(status: &UpstreamStatus) -> Option<UpstreamPhase> {
    match status {
        UpstreamStatus::Queued => Some(UpstreamPhase::Queued),
        UpstreamStatus::Running => Some(UpstreamPhase::Running),
        _ => None,
    }
}

/// What looking upstream for a task's lost submission found.
enum Reconciled {
    /// Its upstream task is now recorded as the task's own.
    Adopted,
    /// Nothing there: submitting anew creates no duplicate.
    Absent,
    /// Several upstream tasks match and nothing tells them apart.
    Ambiguous(usize),
    /// The upstream could not be asked.
    Unknown(ProviderError),
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        catalog: Arc<Catalog>,
        blobs: Arc<dyn Blobs>,
        signer: UrlSigner,
        providers: Arc<Registry>,
        fetcher: Fetcher,
        materials: Arc<Materials>,
        telemetry: Arc<Telemetry>,
        config: EngineConfig,
        public_url: Option<String>,
    ) -> Self {
        Self {
            store,
            catalog,
            blobs,
            signer,
            providers,
            fetcher,
            materials,
            telemetry,
            public_url,
            owner: format!("worker_{}", ulid::Ulid::new()),
            wake: Arc::new(Notify::new()),
            poll_wake: Arc::new(Notify::new()),
            finishing: Arc::new(Semaphore::new(config.workers.max(1))),
            next_abandoned_check_ms: AtomicI64::new(0),
            load_hint: Mutex::new(None),
            config,
        }
    }

    /// Signalled on every new task or callback so an idle worker starts at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    async fn channel_load(&self) -> Result<ChannelLoad, StoreError> {
        let hint = self.load_hint.lock().ok().and_then(|hint| hint.clone());
        if let Some((read_at, load)) = hint {
            if read_at.elapsed() < LOAD_HINT_TTL {
                return Ok(load);
            }
        }
        let load = Arc::new(self.store.in_flight_by_channel().await?);
        if let Ok(mut hint) = self.load_hint.lock() {
            *hint = Some((Instant::now(), load.clone()));
        }
        Ok(load)
    }

    fn lease_ms(&self) -> i64 {
        (self.config.lease_seconds * 1000) as i64
    }

    /// Signalled when an upstream callback flags a task, so an idle poller looks at once.
    pub fn poll_waker(&self) -> Arc<Notify> {
        self.poll_wake.clone()
    }

    /// Starts the configured number of workers and each channel's pollers; they run until the
    /// process ends.
    pub fn spawn_workers(self: &Arc<Self>) {
        for index in 0..self.config.workers.max(1) {
            let engine = self.clone();
            tokio::spawn(async move { engine.work_loop(index).await });
        }
        let configured = self.poll_channels();
        for (provider, channel) in &configured {
            let pollers = channel
                .reads_per_second
                .div_ceil(READS_PER_POLLER)
                .clamp(MIN_POLLERS_PER_CHANNEL, MAX_POLLERS_PER_CHANNEL);
            for _ in 0..pollers {
                let (engine, provider, batch) = (self.clone(), *provider, channel.batch);
                let channel = channel.id.clone();
                tokio::spawn(async move { engine.poll_loop(provider, channel, batch).await });
            }
        }
        // Tasks left on a channel since removed from the config are polled too: the
        // provider refuses them, which ends them uncharged rather than leaving them running.
        let engine = self.clone();
        tokio::spawn(async move {
            let in_flight = match engine.store.in_flight_by_channel().await {
                Ok(in_flight) => in_flight,
                Err(e) => return warn!(error = %e, "cannot look for removed channels' tasks"),
            };
            for channel in in_flight.into_keys() {
                if configured.iter().all(|(_, known)| known.id != channel) {
                    warn!(%channel, "tasks in flight on a channel no longer configured");
                    let engine = engine.clone();
                    let provider = engine.providers.ark.name();
                    tokio::spawn(async move { engine.poll_loop(provider, channel, 1).await });
                }
            }
        });
    }

    fn poll_channels(&self) -> Vec<(&'static str, PollChannel)> {
        self.providers
            .all()
            .into_iter()
            .flat_map(|provider| {
                provider
                    .poll_channels()
                    .into_iter()
                    .map(move |channel| (provider.name(), channel))
            })
            .collect()
    }

    async fn poll_loop(self: Arc<Self>, provider: &'static str, channel: ChannelId, batch: usize) {
        loop {
            match self.poll_round(provider, &channel, batch).await {
                Ok(Some((polled, attention))) => {
                    for item in attention {
                        let Ok(permit) = self.finishing.clone().acquire_owned().await else {
                            return;
                        };
                        let engine = self.clone();
                        tokio::spawn(async move {
                            if let Err(e) = engine.attend(item).await {
                                warn!(error = %e, "finishing a polled task failed");
                            }
                            drop(permit);
                        });
                    }
                    if polled == batch {
                        continue;
                    }
                }
                Ok(None) => {}
                Err(e) => warn!(%channel, error = %e, "polling failed"),
            }
            let _ = tokio::time::timeout(POLLER_IDLE, self.poll_wake.notified()).await;
        }
    }

    async fn work_loop(self: Arc<Self>, index: usize) {
        let idle = Duration::from_millis(self.config.idle_poll_ms);
        loop {
            match self.claim_one().await {
                Ok(Outcome::Done) => continue,
                Ok(Outcome::Empty) => {}
                Err(e) => warn!(worker = index, error = %e, "engine step failed"),
            }
            let _ = tokio::time::timeout(idle, self.wake.notified()).await;
        }
    }

    /// Leases and advances one task, or else polls one batch of every channel with polls due
    /// (finishing what they found ended): one step of all the engine does, for tests.
    pub async fn run_one(&self) -> Result<Outcome, StoreError> {
        if self.claim_one().await? == Outcome::Done {
            return Ok(Outcome::Done);
        }
        let mut outcome = Outcome::Empty;
        for (provider, channel) in self.poll_channels() {
            if let Some((_, attention)) = self
                .poll_round(provider, &channel.id, channel.batch)
                .await?
            {
                outcome = Outcome::Done;
                for item in attention {
                    self.attend(item).await?;
                }
            }
        }
        Ok(outcome)
    }

    /// Polls up to `batch` of `channel`'s due tasks with one upstream request and schedules
    /// the next poll of those still under way. Returns how many were polled and the ones that
    /// need more (None when none were due).
    async fn poll_round(
        &self,
        provider_name: &str,
        channel: &ChannelId,
        batch: usize,
    ) -> Result<Option<(usize, Vec<Attention>)>, StoreError> {
        let Some(provider) = self.providers.get(provider_name) else {
            return Ok(None);
        };
        let claimed = self
            .store
            .claim_polls(channel, self.lease_ms(), batch)
            .await?;
        if claimed.is_empty() {
            return Ok(None);
        }
        let polled = claimed.len();
        let upstream_ids: Vec<String> = claimed
            .iter()
            .filter_map(|(task, _)| task.upstream_id.clone())
            .collect();
        let (mut statuses, failure): (HashMap<_, _>, _) =
            match provider.poll_batch(channel, &upstream_ids).await {
                Ok(listed) => (listed.into_iter().collect(), None),
                Err(e) => {
                    warn!(%channel, code = %e.code, tasks = polled, "a batch poll failed");
                    (HashMap::new(), Some(e))
                }
            };
        let mut scheduled = Vec::with_capacity(polled);
        let mut attention = Vec::new();
        for (task, job_json) in claimed {
            let status = match &failure {
                // Nothing was learnt: every task asked about shares the failure.
                Some(e) => Some(Err(e.clone())),
                None => task.upstream_id.as_ref().and_then(|id| statuses.remove(id)),
            };
            let job = serde_json::from_str::<VideoJob>(&job_json);
            match (status, job) {
                (Some(Ok(status)), Ok(job))
                    if under_way(&status).is_some() && !upstream_expired(&task) =>
                {
                    scheduled.push(ScheduledPoll {
                        next_poll_at_ms: now_ms() + self.next_poll_delay_ms(&task, &job),
                        phase: under_way(&status).filter(|seen| task.upstream_phase != Some(*seen)),
                        id: task.id,
                    });
                }
                (Some(Err(e)), Ok(job)) if e.retryable() && !upstream_expired(&task) => {
                    scheduled.push(ScheduledPoll {
                        next_poll_at_ms: now_ms() + self.poll_retry_delay_ms(&task, &job, &e),
                        phase: None,
                        id: task.id,
                    });
                }
                (status, _) => attention.push(Attention {
                    task,
                    job_json,
                    status,
                }),
            }
        }
        if !scheduled.is_empty() {
            self.store.schedule_polls(&scheduled).await?;
        }
        Ok(Some((polled, attention)))
    }

    /// Finishes what a batch poll left: an ended task settled or failed, an unknown one
    /// advanced alone (looked up, or expired).
    async fn attend(&self, item: Attention) -> Result<(), StoreError> {
        let Attention {
            task,
            job_json,
            status,
        } = item;
        let span = tracing::info_span!(
            "task",
            task_id = %task.id,
            provider = %task.provider,
            request_id = task.request_id.as_deref().unwrap_or_default()
        );
        if !self
            .store
            .lease_polled(&task.id, &self.owner, self.lease_ms())
            .await?
        {
            return Ok(());
        }
        let job = serde_json::from_str::<VideoJob>(&job_json);
        match (status, job) {
            (Some(status), Ok(job)) => {
                self.conclude_poll(&task, &job, status)
                    .instrument(span)
                    .await
            }
            _ => self.advance(task, &job_json).instrument(span).await,
        }
    }

    /// Leases and advances at most one task: a queued one, or one a dead worker left.
    async fn claim_one(&self) -> Result<Outcome, StoreError> {
        let (owner, lease_ms) = (&self.owner, self.lease_ms());
        let max_per_key = self.config.max_concurrent_tasks_per_key;
        // Abandoned leases are rare (a worker died): looking for them before every claim would
        // cost each submission a write, so they are looked for at most once a period, and again
        // at once while some are found.
        let look_for_abandoned = now_ms() >= self.next_abandoned_check_ms.load(Ordering::Relaxed);
        let claimed = if look_for_abandoned {
            self.store.claim_task(owner, lease_ms, max_per_key).await?
        } else {
            self.store
                .claim_queued_task(owner, lease_ms, max_per_key)
                .await?
        };
        if look_for_abandoned && !claimed.as_ref().is_some_and(|(task, _)| task.reclaimed) {
            self.next_abandoned_check_ms
                .store(now_ms() + ABANDONED_CHECK_MS, Ordering::Relaxed);
        }
        let Some((task, job_json)) = claimed else {
            return Ok(Outcome::Empty);
        };
        let span = tracing::info_span!(
            "task",
            task_id = %task.id,
            provider = %task.provider,
            request_id = task.request_id.as_deref().unwrap_or_default()
        );
        self.advance(task, &job_json).instrument(span).await?;
        Ok(Outcome::Done)
    }

    async fn advance(&self, task: TaskRecord, job_json: &str) -> Result<(), StoreError> {
        let job: VideoJob = match serde_json::from_str(job_json) {
            Ok(job) => job,
            Err(e) => {
                warn!(error = %e, "stored job is unreadable");
                return self
                    .fail(
                        &task,
                        "internal_error",
                        "The stored request could not be read.",
                    )
                    .await;
            }
        };
        let providers = self.providers.clone();
        let Some(provider) = providers.get(&task.provider) else {
            return self
                .fail(
                    &task,
                    "provider_unavailable",
                    "The task's provider is not configured on this server.",
                )
                .await;
        };
        let upstream =
            task.channel
                .clone()
                .zip(task.upstream_id.clone())
                .map(|(channel, upstream_id)| UpstreamRef {
                    channel,
                    upstream_id,
                });
        match upstream {
            Some(upstream) => {
                if upstream_expired(&task) {
                    return self
                        .expire(&task, "Neither side finished the task before its deadline.")
                        .await;
                }
                self.poll(&task, &job, provider, &upstream).await
            }
            None => {
                let job = match self.materials.resolve(&job).await {
                    Ok(job) => job,
                    Err(Unusable::Refused(code, message)) => {
                        return self.fail(&task, code, &message).await
                    }
                    Err(Unusable::Unavailable(e)) => {
                        let delay = retry_delay_ms(task.attempts, None);
                        warn!(error = %e, delay_ms = delay, "a material could not be read; will retry");
                        self.store
                            .requeue(&task.id, &self.owner, delay, true, None)
                            .await?;
                        return Ok(());
                    }
                };
                self.submit(&task, &job, provider).await
            }
        }
    }

    /// Counts an ending this worker made (not one another worker beat it to).
    fn ended(&self, task: &TaskRecord, ending: Transition, made: bool) {
        if made {
            self.telemetry.task_ended(&task.model, ending.to().as_str());
        }
    }

    async fn fail(&self, task: &TaskRecord, code: &str, message: &str) -> Result<(), StoreError> {
        warn!(code, message, "task failed");
        let made = self
            .store
            .finish_failed(&task.id, &self.owner, code, message)
            .await?;
        self.ended(task, Transition::EndUnpaid(Unpaid::Failed), made);
        Ok(())
    }

    async fn expire(&self, task: &TaskRecord, message: &str) -> Result<(), StoreError> {
        warn!("task expired");
        let error = TaskFailure {
            code: "task_expired",
            message,
            upstream_usage_tokens: None,
        };
        let made = self
            .store
            .finish_unpaid(&task.id, &self.owner, Unpaid::Expired, &error)
            .await?;
        self.ended(task, Transition::EndUnpaid(Unpaid::Expired), made);
        Ok(())
    }

    /// The submission of this task whose answer was lost, if any: one that failed in doubt,
    /// or one a dead worker had sent (it held a channel place) when its lease ran out.
    fn doubt_of(&self, task: &TaskRecord, provider: &dyn Provider) -> Option<(ChannelId, i64)> {
        if provider.is_local() {
            return None;
        }
        task.doubt.clone().or_else(|| {
            let channel = task.channel.clone().filter(|_| task.reclaimed)?;
            Some((
                channel,
                task.submit_started_at_ms.unwrap_or(task.created_at_ms),
            ))
        })
    }

    async fn submit(
        &self,
        task: &TaskRecord,
        job: &VideoJob,
        provider: &dyn Provider,
    ) -> Result<(), StoreError> {
        if let Some((channel, since)) = self.doubt_of(task, provider) {
            let expires_at = since + expiry_for(task, job, since) * 1000;
            if may_expire(now_ms(), task.deadline_at_ms, Some(expires_at)) {
                return self
                    .expire(task, "Neither side finished the task before its deadline.")
                    .await;
            }
            match self.reconcile(task, job, provider, &channel, since).await? {
                Reconciled::Adopted => return Ok(()),
                Reconciled::Absent => {}
                Reconciled::Ambiguous(count) => {
                    warn!(
                        %channel,
                        count, "several upstream tasks match a lost submission"
                    );
                    return self
                        .fail(
                            task,
                            "submission_unresolved",
                            "The upstream's answer to this task's submission was lost, and its task could not be told apart from others; nothing was charged.",
                        )
                        .await;
                }
                Reconciled::Unknown(e) => {
                    let delay = retry_delay_ms(task.attempts, e.retry_after);
                    warn!(code = %e.code, %channel, delay_ms = delay, "cannot look upstream for a lost submission yet");
                    self.store
                        .requeue(&task.id, &self.owner, delay, false, Some((&channel, since)))
                        .await?;
                    return Ok(());
                }
            }
        }
        if may_expire(now_ms(), task.deadline_at_ms, None) {
            return self
                .expire(task, "The task did not start before its deadline.")
                .await;
        }
        if task.attempts > self.config.max_attempts {
            return self
                .fail(
                    task,
                    "too_many_attempts",
                    "The task could not be started after repeated attempts.",
                )
                .await;
        }
        if provider.is_local() {
            // A local provider fetches and checks the inputs it renders from itself.
            self.store.mark_running(&task.id, &self.owner).await?;
        } else {
            let checked = crate::inputs::fetch_checked(&self.fetcher, job, false);
            match self.with_heartbeat(task, checked).await? {
                None => return Ok(()),
                Some(Err(e)) => return self.fail(task, &e.code, &e.message).await,
                Some(Ok(_)) => {}
            }
        }
        let in_flight = self.channel_load().await?;
        let source_video = match provider.is_local() {
            true => None,
            false => match self.source_video(job).await {
                Ok(source) => source,
                Err(e) => {
                    let delay = retry_delay_ms(task.attempts, None);
                    warn!(error = %e, delay_ms = delay, "the source video could not be read; will retry");
                    self.store
                        .requeue(&task.id, &self.owner, delay, true, None)
                        .await?;
                    return Ok(());
                }
            },
        };
        info!(attempt = task.attempts, "submitting");
        let slots = TaskSlots {
            store: &self.store,
            task_id: &task.id,
            owner: &self.owner,
        };
        let sent_at = now_ms();
        let expires_after = expiry_for(task, job, sent_at);
        let request = SubmitRequest {
            task_id: &task.id,
            job,
            in_flight: &in_flight,
            slots: &slots,
            callback_url: self.callback_url(&task.id),
            source_video,
            expires_after_seconds: expires_after as u64,
        };
        let Some(result) = self.with_heartbeat(task, provider.submit(request)).await? else {
            warn!("lease lost; another worker owns the task now");
            return Ok(());
        };
        match result {
            Ok(Submission::Finished(generated)) => {
                match self.store_rendered(&task.id, generated).await {
                    Ok(stored) => self.settle(task, job, stored, None).await,
                    Err(e) => self.storing_failed(task, &e).await,
                }
            }
            Ok(Submission::Accepted(upstream)) => {
                self.store
                    .record_submission(
                        &task.id,
                        &self.owner,
                        &UpstreamSubmission {
                            channel: &upstream.channel,
                            upstream_id: &upstream.upstream_id,
                            next_poll_at_ms: now_ms() + self.config.first_poll_ms as i64,
                            upstream_expires_at_ms: sent_at + expires_after * 1000,
                        },
                    )
                    .await?;
                Ok(())
            }
            Err(e) => {
                let delay = retry_delay_ms(task.attempts, e.retry_after);
                match &e.kind {
                    ProviderErrorKind::InDoubt { channel } => {
                        let delay = delay.max(MIN_RECONCILE_DELAY_MS);
                        let since = task.submit_started_at_ms.unwrap_or(sent_at);
                        warn!(code = %e.code, %channel, delay_ms = delay, "submission outcome unknown; reconciling before any resubmission");
                        self.store
                            .requeue(&task.id, &self.owner, delay, true, Some((channel, since)))
                            .await?;
                        Ok(())
                    }
                    // Waiting for a free or recovering channel is not a failed attempt.
                    ProviderErrorKind::AwaitingCapacity => {
                        self.store
                            .requeue(&task.id, &self.owner, delay, false, None)
                            .await?;
                        Ok(())
                    }
                    ProviderErrorKind::Retryable if task.attempts < self.config.max_attempts => {
                        warn!(code = %e.code, delay_ms = delay, "submission will be retried");
                        self.store
                            .requeue(&task.id, &self.owner, delay, true, None)
                            .await?;
                        Ok(())
                    }
                    _ => self.fail(task, &e.code, &e.message).await,
                }
            }
        }
    }

    /// Looks on `channel` for the upstream task a lost submission (begun at `since`) may have
    /// made, and adopts it. A candidate must echo this task's submission — model, size, length,
    /// audio and seed — and belong to no other task of ours. When the seed was ours to choose,
    /// every match is this task's own; with a client's seed, two matches cannot be told apart.
    async fn reconcile(
        &self,
        task: &TaskRecord,
        job: &VideoJob,
        provider: &dyn Provider,
        channel: &ChannelId,
        since: i64,
    ) -> Result<Reconciled, StoreError> {
        let candidates = match provider.find_submitted(&task.id, job, channel, since).await {
            Ok(candidates) => candidates,
            Err(e) => return Ok(Reconciled::Unknown(e)),
        };
        let mut orphans = Vec::new();
        for candidate in candidates {
            if !self
                .store
                .upstream_id_known(&candidate.channel, &candidate.upstream_id)
                .await?
            {
                orphans.push(candidate);
            }
        }
        let chosen = match orphans.as_slice() {
            [] => return Ok(Reconciled::Absent),
            [only] => only,
            [first, extra @ ..] if seed_is_ours(job) => {
                for duplicate in extra {
                    // Best effort: a duplicate still queued upstream is withdrawn.
                    let outcome = provider.cancel(duplicate).await;
                    warn!(upstream_id = %duplicate.upstream_id, ?outcome, "withdrawing a duplicate upstream task");
                }
                first
            }
            several => return Ok(Reconciled::Ambiguous(several.len())),
        };
        info!(upstream_id = %chosen.upstream_id, "adopting the upstream task of a lost submission");
        let expires_at = since + expiry_for(task, job, since) * 1000;
        self.store
            .record_submission(
                &task.id,
                &self.owner,
                &UpstreamSubmission {
                    channel: &chosen.channel,
                    upstream_id: &chosen.upstream_id,
                    next_poll_at_ms: now_ms(),
                    upstream_expires_at_ms: expires_at,
                },
            )
            .await?;
        Ok(Reconciled::Adopted)
    }

    /// For video-extension of one of our tasks: its video as the upstream can fetch it — a
    /// signed URL when we have a public address, else a data: URI. None when there is no
    /// source task or its video is gone; an error when the store could not be read.
    async fn source_video(&self, job: &VideoJob) -> Result<Option<String>, BlobError> {
        let Some(source) = job.inputs.source_task_id.clone().map(TaskId::new) else {
            return Ok(None);
        };
        if let Some(base) = &self.public_url {
            let expires = (now_ms() / 1000) as u64 + 24 * 3600;
            return Ok(Some(format!(
                "{}{}",
                base.trim_end_matches('/'),
                self.signer.signed_path(&source, AssetKind::Video, expires)
            )));
        }
        let bytes = match self.blobs.read(&AssetKind::Video.key(&source)).await {
            Ok(bytes) => bytes,
            Err(BlobError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(format!(
            "data:video/mp4;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )))
    }

    fn callback_url(&self, task_id: &TaskId) -> Option<String> {
        let base = self.public_url.as_deref()?;
        Some(format!(
            "{}/v1/upstream/callback/{task_id}?token={}",
            base.trim_end_matches('/'),
            self.signer.callback_token(task_id)
        ))
    }

    /// Runs a provider call while renewing the lease; None when the lease was lost meanwhile.
    async fn with_heartbeat<T>(
        &self,
        task: &TaskRecord,
        work: impl std::future::Future<Output = T>,
    ) -> Result<Option<T>, StoreError> {
        tokio::pin!(work);
        let mut heartbeat =
            tokio::time::interval(Duration::from_millis((self.lease_ms() / 3).max(1) as u64));
        heartbeat.tick().await;
        loop {
            tokio::select! {
                result = &mut work => return Ok(Some(result)),
                _ = heartbeat.tick() => {
                    if !self.store.extend_lease(&task.id, &self.owner, self.lease_ms()).await? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    async fn poll(
        &self,
        task: &TaskRecord,
        job: &VideoJob,
        provider: &dyn Provider,
        upstream: &UpstreamRef,
    ) -> Result<(), StoreError> {
        let status = provider.poll(upstream).await;
        self.conclude_poll(task, job, status).await
    }

    /// Acts on what a poll of an upstream task found.
    async fn conclude_poll(
        &self,
        task: &TaskRecord,
        job: &VideoJob,
        status: Result<UpstreamStatus, ProviderError>,
    ) -> Result<(), StoreError> {
        let unpaid = |state, code, message| async move {
            let error = TaskFailure {
                code,
                message,
                upstream_usage_tokens: None,
            };
            self.store
                .finish_unpaid(&task.id, &self.owner, state, &error)
                .await
                .map(|made| self.ended(task, Transition::EndUnpaid(state), made))
        };
        match status {
            Ok(status @ (UpstreamStatus::Queued | UpstreamStatus::Running)) => {
                let next = now_ms() + self.next_poll_delay_ms(task, job);
                let seen = PollSeen {
                    phase: under_way(&status),
                    ..PollSeen::default()
                };
                self.store
                    .schedule_poll(&task.id, &self.owner, next, &seen)
                    .await?;
                Ok(())
            }
            Ok(UpstreamStatus::Succeeded {
                video_url,
                last_frame_url,
                usage_tokens,
            }) => {
                // A large result takes a while to stream; the lease is kept meanwhile.
                let copy = self.copy_result(
                    &task.id,
                    &video_url,
                    last_frame_url.as_deref(),
                    usage_tokens,
                );
                match self.with_heartbeat(task, copy).await? {
                    None => {
                        warn!(
                            "lease lost while copying the result; another worker owns the task now"
                        );
                        Ok(())
                    }
                    Some(Ok(stored)) => self.settle(task, job, stored, usage_tokens).await,
                    Some(Err(CopyError::Upstream(e))) => {
                        self.result_copy_failed(task, usage_tokens, KeepFailure::Copy, &e)
                            .await
                    }
                    Some(Err(CopyError::Storage(e))) => {
                        self.result_copy_failed(task, usage_tokens, KeepFailure::Store, &e)
                            .await
                    }
                }
            }
            Ok(UpstreamStatus::Failed { code, message }) => self.fail(task, &code, &message).await,
            Ok(UpstreamStatus::Cancelled) => {
                unpaid(
                    Unpaid::Cancelled,
                    "cancelled",
                    "The upstream cancelled the task.",
                )
                .await
            }
            Ok(UpstreamStatus::Expired) => {
                unpaid(
                    Unpaid::Expired,
                    "task_expired",
                    "The upstream let the task expire.",
                )
                .await
            }
            Err(e) if e.retryable() => {
                let next = now_ms() + self.poll_retry_delay_ms(task, job, &e);
                warn!(code = %e.code, "poll failed; will retry");
                self.store
                    .schedule_poll(&task.id, &self.owner, next, &PollSeen::default())
                    .await?;
                Ok(())
            }
            Err(e) => self.fail(task, &e.code, &e.message).await,
        }
    }

    /// The upstream finished but its result could not be copied here, or stored. A few tries
    /// over minutes (a file can appear late, a disk be cleared), then the task fails uncharged,
    /// with the reservation released and a code that says which side failed; the upstream id
    /// and its reported usage stay on the task for the operator.
    async fn result_copy_failed(
        &self,
        task: &TaskRecord,
        usage_tokens: Option<u64>,
        kind: KeepFailure,
        error: &(dyn std::fmt::Display + Sync),
    ) -> Result<(), StoreError> {
        let failures = task.result_copy_failures + 1;
        let upstream_usage_tokens = usage_tokens.map(|t| t as i64);
        if failures >= self.config.result_copy_attempts {
            let failure = kind.failure(upstream_usage_tokens);
            warn!(upstream_id = task.upstream_id.as_deref().unwrap_or(""), ?upstream_usage_tokens,
                failures, error = %error, code = failure.code, "the upstream's result could not be kept; the task fails uncharged");
            let made = self
                .store
                .finish_unpaid(&task.id, &self.owner, Unpaid::Failed, &failure)
                .await?;
            self.ended(task, Transition::EndUnpaid(Unpaid::Failed), made);
            return Ok(());
        }
        let delay = (self.config.result_copy_backoff_ms as i64) << (failures - 1).clamp(0, 10);
        warn!(error = %error, failures, delay_ms = delay, "copying the upstream's result failed; will retry");
        let seen = PollSeen {
            phase: Some(UpstreamPhase::Succeeded),
            usage_tokens: upstream_usage_tokens,
            result_copy_failed: true,
        };
        self.store
            .schedule_poll(&task.id, &self.owner, now_ms() + delay, &seen)
            .await?;
        Ok(())
    }

    /// After a poll that learnt nothing: the next poll as planned, or the upstream's
    /// `Retry-After` when later. The pacer already spaces reads within the channel's budget,
    /// and a longer backoff would leave a finished task unnoticed past the poll interval.
    fn poll_retry_delay_ms(&self, task: &TaskRecord, job: &VideoJob, error: &ProviderError) -> i64 {
        let asked = error.retry_after.map_or(0, |d| d.as_millis() as i64);
        self.next_poll_delay_ms(task, job).max(asked)
    }

    /// Polls cluster around the expected finish (by length and size), then back off to a cap.
    fn next_poll_delay_ms(&self, task: &TaskRecord, job: &VideoJob) -> i64 {
        let seconds = match job.duration {
            DurationRequest::Seconds(s) => u64::from(s),
            DurationRequest::ModelDecides => 15,
        };
        let size_factor = match job.resolution {
            Resolution::P480 => 0.5,
            Resolution::P720 => 1.0,
            Resolution::P1080 => 2.0,
            Resolution::K4 => 6.0,
        };
        let expected = (self.config.expected_ms_per_output_second * seconds) as f64 * size_factor;
        let first = self.config.first_poll_ms as i64;
        let cap = self.config.max_poll_interval_ms as i64;
        let elapsed = now_ms() - task.submit_started_at_ms.unwrap_or(task.created_at_ms);
        let until_expected = expected as i64 - elapsed;
        if until_expected > 0 {
            until_expected.clamp(first, cap)
        } else {
            (first << task.polls.clamp(0, 8)).min(cap)
        }
    }

    /// Copies an upstream result into our storage (upstream URLs die after 24 h), streaming
    /// it from the upstream into the blob store, and reads its real size, length and audio
    /// from the file's header as it passes.
    async fn copy_result(
        &self,
        task_id: &TaskId,
        video_url: &str,
        last_frame_url: Option<&str>,
        usage_tokens: Option<u64>,
    ) -> Result<Stored, CopyError> {
        let upstream = |e: &dyn std::fmt::Display| {
            CopyError::Upstream(ProviderError::transient(
                "result_copy_failed",
                format!("result {e}"),
            ))
        };
        let video_key = AssetKind::Video.key(task_id);
        let body = self
            .fetcher
            .fetch_stream(video_url, self.config.max_result_bytes)
            .await
            .map_err(|e| upstream(&e))?;
        let mut header = Mp4Header::default();
        let body = body.map(|chunk| {
            let chunk = chunk.map_err(std::io::Error::other)?;
            header.feed(&chunk);
            Ok(chunk)
        });
        match self.blobs.put(&video_key, body.boxed()).await {
            Ok(_) => {}
            Err(BlobError::Source(e)) => return Err(upstream(&e)),
            Err(e) => return Err(CopyError::Storage(e)),
        }
        let Ok(info) = seedgate_media::probe_mp4(&header.into_bytes()) else {
            // Never served (no task shows it), but not kept either.
            if let Err(e) = self.blobs.delete(&video_key).await {
                warn!(error = %e, "removing a result that is no video failed");
            }
            return Err(upstream(&format_args!(
                "{video_url} is not a readable MP4 video"
            )));
        };
        let last_frame_png = match last_frame_url {
            Some(url) => self
                .fetcher
                .fetch_url(url, MAX_LAST_FRAME_BYTES)
                .await
                .map_err(|e| upstream(&e))?,
            None => {
                // Upstreams are always asked for the last frame; one that sends none has it
                // decoded here, which needs the whole video.
                let video = self
                    .blobs
                    .read(&video_key)
                    .await
                    .map_err(CopyError::Storage)?;
                tokio::task::spawn_blocking(move || seedgate_media::last_frame_png(&video))
                    .await
                    .map_err(|e| upstream(&e))?
                    .map_err(|e| upstream(&e))?
            }
        };
        self.blobs
            .put_bytes(&AssetKind::LastFrame.key(task_id), last_frame_png)
            .await
            .map_err(CopyError::Storage)?;
        let seconds = info.duration_secs.round().max(1.0) as u32;
        Ok(Stored {
            result: StoredResult {
                width: info.width,
                height: info.height,
                fps: 24,
                duration: info.duration_secs,
                has_audio: info.has_audio,
            },
            // Without a reported usage, count by the file we received.
            usage_tokens: usage_tokens
                .unwrap_or_else(|| pricing::output_tokens(info.width, info.height, seconds)),
        })
    }

    /// Stores the files a local provider rendered in memory.
    async fn store_rendered(
        &self,
        task_id: &TaskId,
        generated: Generated,
    ) -> Result<Stored, BlobError> {
        self.blobs
            .put_bytes(&AssetKind::Video.key(task_id), generated.video)
            .await?;
        self.blobs
            .put_bytes(&AssetKind::LastFrame.key(task_id), generated.last_frame_png)
            .await?;
        Ok(Stored {
            result: StoredResult {
                width: generated.width,
                height: generated.height,
                fps: generated.fps,
                duration: generated.duration_secs,
                has_audio: generated.has_audio,
            },
            usage_tokens: generated.usage_tokens,
        })
    }

    /// Our storage refused a video rendered here: rendered again later, as a failed attempt;
    /// when the attempts run out the task fails uncharged, saying it was the storing that
    /// failed, not the start.
    async fn storing_failed(&self, task: &TaskRecord, error: &BlobError) -> Result<(), StoreError> {
        if task.attempts >= self.config.max_attempts {
            let failure = KeepFailure::Store.failure(None);
            warn!(error = %error, code = failure.code, "storing the result failed; the task fails uncharged");
            let made = self
                .store
                .finish_unpaid(&task.id, &self.owner, Unpaid::Failed, &failure)
                .await?;
            self.ended(task, Transition::EndUnpaid(Unpaid::Failed), made);
            return Ok(());
        }
        warn!(error = %error, "storing the result failed; will retry");
        self.store
            .requeue(
                &task.id,
                &self.owner,
                retry_delay_ms(task.attempts, None),
                true,
                None,
            )
            .await?;
        Ok(())
    }

    /// Marks a task whose files are stored succeeded and settles it in one transaction:
    /// charge the real cost, release the reservation.
    async fn settle(
        &self,
        task: &TaskRecord,
        job: &VideoJob,
        stored: Stored,
        upstream_usage_tokens: Option<u64>,
    ) -> Result<(), StoreError> {
        let cost = match pricing::price_tokens(
            &self.catalog,
            &job.model,
            job.resolution,
            job.has_video_input(),
            stored.usage_tokens,
        ) {
            Ok(cost) => cost,
            Err(e) => return self.fail(task, "pricing_unavailable", &e.message).await,
        };
        let result_json = serde_json::to_string(&stored.result)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let settled = self
            .store
            .finish_succeeded(
                &task.id,
                &self.owner,
                Settlement {
                    result_json: &result_json,
                    usage_tokens: stored.usage_tokens as i64,
                    cost_usd_micros: cost.usd_micros,
                    cost_cny: &cost.cny_string(),
                    upstream_usage_tokens: upstream_usage_tokens.map(|t| t as i64),
                },
            )
            .await?;
        self.ended(task, Transition::Succeed, settled);
        if settled {
            info!(tokens = stored.usage_tokens, cost_usd = %cost.usd_string(), "task succeeded");
        }
        Ok(())
    }
}

/// Channel places backed by the task row being submitted.
struct TaskSlots<'a> {
    store: &'a Store,
    task_id: &'a TaskId,
    owner: &'a str,
}

impl ChannelSlots for TaskSlots<'_> {
    fn reserve<'a>(
        &'a self,
        channel: &'a ChannelId,
        limit: u32,
    ) -> BoxFuture<'a, Result<bool, ProviderError>> {
        Box::pin(async move {
            self.store
                .reserve_channel(self.task_id, self.owner, channel, limit)
                .await
                .map_err(|e| ProviderError::transient("store_unavailable", e.to_string()))
        })
    }
}

/// Exponential backoff with jitter, never sooner than the upstream's `Retry-After`.
fn retry_delay_ms(attempt: i64, retry_after: Option<Duration>) -> i64 {
    let base = (1000_i64 << attempt.clamp(0, 6)).min(MAX_RETRY_DELAY_MS);
    let jittered = base + rand::thread_rng().gen_range(0..=base / 4);
    let floor = retry_after.map(|d| d.as_millis() as i64).unwrap_or(0);
    jittered.max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_grows_is_capped_and_honours_retry_after() {
        assert!((1000..=1250).contains(&retry_delay_ms(0, None)));
        assert!((4000..=5000).contains(&retry_delay_ms(2, None)));
        assert!(retry_delay_ms(20, None) <= MAX_RETRY_DELAY_MS * 5 / 4);
        assert!(retry_delay_ms(0, Some(Duration::from_secs(7))) >= 7000);
    }

    #[test]
    fn the_upstream_expires_a_task_when_our_deadline_does_within_its_range() {
        let now = 1_000_000_000;
        // Six hours left: the upstream is told six hours.
        assert_eq!(upstream_expiry_seconds(Some(now + 21_600_000), now), 21_600);
        // Less than its minimum, or already past: its minimum.
        assert_eq!(upstream_expiry_seconds(Some(now + 2_000), now), 3_600);
        assert_eq!(upstream_expiry_seconds(Some(now - 5_000), now), 3_600);
        // More than its maximum: its maximum.
        assert_eq!(
            upstream_expiry_seconds(Some(now + 10 * 86_400_000), now),
            259_200
        );
        assert_eq!(upstream_expiry_seconds(None, now), 172_800);
    }

    #[test]
    fn a_submitted_task_outlives_our_deadline_until_the_upstream_gives_up() {
        let deadline = 1_000_000;
        // Never submitted: our deadline alone decides.
        assert!(!may_expire(deadline, Some(deadline), None));
        assert!(may_expire(deadline + 1, Some(deadline), None));
        assert!(!may_expire(deadline + 1, None, None));
        // Submitted: the upstream may still finish (and bill) it until its own expiry, and
        // its last word is awaited a little longer.
        let upstream = deadline + 3_600_000;
        assert!(!may_expire(deadline + 1, Some(deadline), Some(upstream)));
        assert!(!may_expire(upstream + 1, Some(deadline), Some(upstream)));
        assert!(may_expire(
            upstream + UPSTREAM_EXPIRY_GRACE_MS + 1,
            Some(deadline),
            Some(upstream)
        ));
    }
}
