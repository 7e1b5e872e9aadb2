//! The engine: workers that lease tasks and move them forward. It is the lifecycle's I/O
//! shell: it gathers what a task's provider, inputs and storage say, asks
//! [`lifecycle::decide`] what follows, does that, and has the store apply the move it ends
//! with. Every move is a write guarded by the lease, so a crash at any point leaves work the
//! next lease holder finishes.

mod polling;
mod results;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use seedgate_contract::{Catalog, VideoJob};
use tokio::sync::{Notify, Semaphore};
use tracing::{info, warn, Instrument};

use crate::blobs::Blobs;
use crate::config::EngineConfig;
use crate::fetch::Fetcher;
use crate::ids::ChannelId;
use crate::lifecycle::{
    self, Check, Decision, Event, InputTrouble, Moment, Move, Origin, Policy, Runner, Sent,
    Subject, TaskRecord,
};
use crate::materials::{Materials, Unusable};
use crate::providers::{
    BoxFuture, ChannelSlots, Provider, ProviderError, Registry, Submission, SubmitRequest,
    UpstreamRef,
};
use crate::signing::UrlSigner;
use crate::store::{now_ms, Lease, Store, StoreError};
use crate::telemetry::{TaskEnding, Telemetry};
pub use lifecycle::StoredResult;

/// What one step of a worker did: tests call [`Engine::run_one`] until it reports `Empty`.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Empty,
}

/// The engine's time. Production reads the system clock; the lifecycle never reads one.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// What the engine works through.
pub struct Ports {
    pub store: Store,
    pub providers: Arc<Registry>,
    pub blobs: Arc<dyn Blobs>,
    pub fetcher: Fetcher,
    pub materials: Arc<Materials>,
    pub telemetry: Arc<Telemetry>,
    pub clock: Arc<dyn Clock>,
    /// Signs the links an upstream is given: callbacks, and source videos to extend.
    pub signer: UrlSigner,
    /// Where upstreams reach this server; without one they get no callback and source
    /// videos go inline.
    pub public_url: Option<String>,
}

pub struct Engine {
    ports: Ports,
    policy: Policy,
    config: EngineConfig,
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

/// The first and the longest wait before a worker tries the database again while it cannot be
/// written: short, so work resumes within a couple of seconds of its return.
const DATABASE_RETRY_FIRST: Duration = Duration::from_millis(250);
const DATABASE_RETRY_MAX: Duration = Duration::from_secs(2);

/// How often claims look for abandoned leases while none are found: small beside a lease.
const ABANDONED_CHECK_MS: i64 = 1_000;

impl Engine {
    pub fn new(ports: Ports, config: EngineConfig, catalog: Arc<Catalog>) -> Self {
        Self {
            policy: Policy::new(&config, catalog),
            ports,
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

    /// Signalled when an upstream callback flags a task, so an idle poller looks at once.
    pub fn poll_waker(&self) -> Arc<Notify> {
        self.poll_wake.clone()
    }

    fn now_ms(&self) -> i64 {
        self.ports.clock.now_ms()
    }

    fn moment(&self) -> Moment {
        Moment {
            now_ms: self.now_ms(),
            jitter: rand::thread_rng().gen_range(0.0..=1.0),
        }
    }

    fn lease_ms(&self) -> i64 {
        (self.config.lease_seconds * 1000) as i64
    }

    async fn channel_load(&self) -> Result<ChannelLoad, StoreError> {
        let hint = self.load_hint.lock().ok().and_then(|hint| hint.clone());
        if let Some((read_at, load)) = hint {
            if read_at.elapsed() < LOAD_HINT_TTL {
                return Ok(load);
            }
        }
        let load = Arc::new(self.ports.store.in_flight_by_channel().await?);
        if let Ok(mut hint) = self.load_hint.lock() {
            *hint = Some((Instant::now(), load.clone()));
        }
        Ok(load)
    }

    /// Starts the configured number of workers and each channel's pollers; they run until the
    /// process ends. With none configured this process serves the API only, and the tasks it
    /// takes are worked by another replica on the same database.
    pub fn spawn_workers(self: &Arc<Self>) {
        if self.config.workers == 0 {
            info!("no engine workers: this process serves the API only");
            return;
        }
        for index in 0..self.config.workers {
            let engine = self.clone();
            tokio::spawn(async move { engine.work_loop(index).await });
        }
        self.spawn_pollers();
    }

    async fn work_loop(self: Arc<Self>, index: usize) {
        let idle = Duration::from_millis(self.config.idle_poll_ms);
        // While the database cannot be written, claims pause, longer each time it still
        // cannot, and resume at the first that works.
        let mut paused: Option<(Instant, Duration)> = None;
        loop {
            let wait = match self.claim_one().await {
                Ok(outcome) => {
                    if let Some((since, _)) = paused.take() {
                        info!(
                            worker = index,
                            paused_ms = since.elapsed().as_millis() as u64,
                            "database available again; claims resumed"
                        );
                    }
                    if outcome == Outcome::Done {
                        continue;
                    }
                    idle
                }
                Err(e) if e.is_unavailable() => {
                    let (since, wait) = match paused {
                        None => {
                            warn!(worker = index, error = %e, "database unavailable; claims paused");
                            (Instant::now(), DATABASE_RETRY_FIRST)
                        }
                        Some((since, wait)) => (since, (wait * 2).min(DATABASE_RETRY_MAX)),
                    };
                    paused = Some((since, wait));
                    wait
                }
                Err(e) => {
                    warn!(worker = index, error = %e, "engine step failed");
                    idle
                }
            };
            let _ = tokio::time::timeout(wait, self.wake.notified()).await;
        }
    }

    /// Leases and advances one task, or else polls one batch of every channel with polls due
    /// (finishing what they found ended): one step of all the engine does, for tests.
    pub async fn run_one(&self) -> Result<Outcome, StoreError> {
        if self.claim_one().await? == Outcome::Done {
            return Ok(Outcome::Done);
        }
        self.poll_every_channel_once().await
    }

    /// Leases and advances at most one task: a queued one, or one a dead worker left.
    async fn claim_one(&self) -> Result<Outcome, StoreError> {
        let (owner, lease_ms, store) = (&self.owner, self.lease_ms(), &self.ports.store);
        let max_per_key = self.config.max_concurrent_tasks_per_key;
        // Abandoned leases are rare (a worker died): looking for them before every claim would
        // cost each submission a write, so they are looked for at most once a period, and again
        // at once while some are found.
        let look_for_abandoned =
            self.now_ms() >= self.next_abandoned_check_ms.load(Ordering::Relaxed);
        let claimed = if look_for_abandoned {
            store.claim_task(owner, lease_ms, max_per_key).await?
        } else {
            store
                .claim_queued_task(owner, lease_ms, max_per_key)
                .await?
        };
        if look_for_abandoned && !claimed.as_ref().is_some_and(|(task, _)| task.reclaimed) {
            self.next_abandoned_check_ms
                .store(self.now_ms() + ABANDONED_CHECK_MS, Ordering::Relaxed);
        }
        let Some((task, job_json)) = claimed else {
            return Ok(Outcome::Empty);
        };
        let span = task_span(&task);
        self.advance(&task, &job_json, None)
            .instrument(span)
            .await?;
        Ok(Outcome::Done)
    }

    /// Moves a leased task on from `event` (None: just claimed), step by step, until a move
    /// is applied or the lease is lost.
    async fn advance(
        &self,
        task: &TaskRecord,
        job_json: &str,
        polled: Option<Result<lifecycle::upstream::UpstreamStatus, ProviderError>>,
    ) -> Result<(), StoreError> {
        let mut job: VideoJob = match serde_json::from_str(job_json) {
            Ok(job) => job,
            Err(e) => {
                warn!(error = %e, "stored job is unreadable");
                let failed = Move::fail("internal_error", "The stored request could not be read.");
                return self.apply(task, failed).await;
            }
        };
        let providers = self.ports.providers.clone();
        let Some(provider) = providers.get(&task.provider) else {
            let failed = Move::fail(
                "provider_unavailable",
                "The task's provider is not configured on this server.",
            );
            return self.apply(task, failed).await;
        };
        let runner = if provider.is_local() {
            Runner::Local
        } else {
            Runner::Upstream
        };
        let decide = |job: &VideoJob, event: Event<'_>| {
            let subject = Subject { task, job, runner };
            lifecycle::decide(&subject, event, self.moment(), &self.policy)
        };
        let mut decision = match &polled {
            Some(status) => decide(&job, Event::Polled(status.as_ref())),
            None => decide(&job, Event::Claimed),
        };
        // For an extension of one of our tasks, its video as the upstream can fetch it.
        let mut source_video = None;
        // What the last submission rendered, kept for the decision that stores it.
        let mut rendered = None;
        loop {
            decision = match decision {
                Decision::Apply(step) => return self.apply(task, step).await,
                Decision::Poll => {
                    let upstream = upstream_of(task);
                    let status = match &upstream {
                        Some(upstream) => provider.poll(upstream).await,
                        None => Err(ProviderError::permanent(
                            "internal_error",
                            "The task has no upstream task to poll.",
                        )),
                    };
                    decide(&job, Event::Polled(status.as_ref()))
                }
                Decision::CheckInputs(check) => {
                    let Some(outcome) = self
                        .check_inputs(task, &mut job, &mut source_video, check)
                        .await?
                    else {
                        return lease_lost();
                    };
                    let trouble = outcome.as_ref().map_err(InputFailure::trouble).err();
                    decide(
                        &job,
                        Event::InputsChecked(check, trouble.map_or(Ok(()), Err)),
                    )
                }
                Decision::Reconcile { channel, since } => {
                    let orphans = self.orphans(task, &job, provider, &channel, since).await?;
                    let orphans = orphans.as_ref().map(Vec::as_slice);
                    let event = Event::CandidatesListed {
                        channel: &channel,
                        since,
                        orphans,
                    };
                    if matches!(orphans, Ok(found) if found.len() > 1) {
                        warn!(%channel, count = orphans.map_or(0, <[_]>::len), "several upstream tasks match a lost submission");
                    }
                    decide(&job, event)
                }
                Decision::Adopt { record, withdraw } => {
                    for duplicate in &withdraw {
                        // Best effort: a duplicate still queued upstream is withdrawn.
                        let outcome = provider.cancel(duplicate).await;
                        warn!(upstream_id = %duplicate.upstream_id, ?outcome, "withdrawing a duplicate upstream task");
                    }
                    info!("adopting the upstream task of a lost submission");
                    return self.apply(task, record).await;
                }
                Decision::Submit {
                    start,
                    sent_at_ms,
                    expires_after_s,
                } => {
                    if start {
                        // A local provider fetches and checks the inputs it renders from itself.
                        self.apply_patiently(task, &Move::Start).await?;
                    }
                    let Some(result) = self
                        .submit(task, &job, provider, source_video.take(), expires_after_s)
                        .await?
                    else {
                        return lease_lost();
                    };
                    let outcome = match &result {
                        Ok(Submission::Finished(_)) => Ok(Sent::Rendered),
                        Ok(Submission::Accepted(upstream)) => Ok(Sent::Accepted(upstream)),
                        Err(e) => Err(e),
                    };
                    let decision = decide(
                        &job,
                        Event::Submitted {
                            sent_at_ms,
                            expires_after_s,
                            outcome,
                        },
                    );
                    if let Ok(Submission::Finished(generated)) = result {
                        rendered = Some(generated);
                    }
                    decision
                }
                Decision::KeepRendered => {
                    let Some(generated) = rendered.take() else {
                        return self
                            .apply(
                                task,
                                Move::fail("internal_error", "No rendered video to keep."),
                            )
                            .await;
                    };
                    let Some(outcome) = self.store_rendered_patiently(task, generated).await?
                    else {
                        return lease_lost();
                    };
                    let event = Event::Stored {
                        origin: Origin::Rendered,
                        outcome: outcome.as_ref().map_err(|kind| *kind),
                    };
                    decide(&job, event)
                }
                Decision::CopyResult {
                    video_url,
                    last_frame_url,
                    usage,
                } => {
                    // A large result takes a while to stream; the lease is kept meanwhile.
                    let copy = self.copy_result(
                        &task.id,
                        &video_url,
                        last_frame_url.as_deref(),
                        usage.tokens,
                    );
                    let Some(outcome) = self.with_heartbeat(task, copy).await? else {
                        return lease_lost();
                    };
                    let event = Event::Stored {
                        origin: Origin::Copied { usage },
                        outcome: outcome.as_ref().map_err(|kind| *kind),
                    };
                    decide(&job, event)
                }
            };
        }
    }

    /// Runs one input check; None when the lease was lost meanwhile. Materials resolved
    /// replace the job's references.
    async fn check_inputs(
        &self,
        task: &TaskRecord,
        job: &mut VideoJob,
        source_video: &mut Option<String>,
        check: Check,
    ) -> Result<Option<Result<(), InputFailure>>, StoreError> {
        Ok(Some(match check {
            Check::Materials => match self.ports.materials.resolve(job).await {
                Ok(resolved) => {
                    *job = resolved;
                    Ok(())
                }
                Err(Unusable::Refused(code, message)) => {
                    Err(InputFailure::Refused(code.into(), message))
                }
                Err(Unusable::Unavailable(e)) => {
                    warn!(error = %e, "a material could not be read; will retry");
                    Err(InputFailure::Unavailable)
                }
            },
            Check::Media => {
                let clips = crate::inputs::clip_limits(&self.policy.catalog, &job.model);
                let checked = crate::inputs::fetch_checked(&self.ports.fetcher, job, clips, false);
                match self.with_heartbeat(task, checked).await? {
                    None => return Ok(None),
                    Some(Err(e)) => Err(InputFailure::Refused(e.code.clone(), e.message.clone())),
                    Some(Ok(_)) => Ok(()),
                }
            }
            Check::SourceVideo => match self.source_video(job).await {
                Ok(source) => {
                    *source_video = source;
                    Ok(())
                }
                Err(e) => {
                    warn!(error = %e, "the source video could not be read; will retry");
                    Err(InputFailure::Unavailable)
                }
            },
        }))
    }

    /// Sends the task to its provider while renewing the lease; None when the lease was lost.
    async fn submit(
        &self,
        task: &TaskRecord,
        job: &VideoJob,
        provider: &dyn Provider,
        source_video: Option<String>,
        expires_after_s: i64,
    ) -> Result<Option<Result<Submission, ProviderError>>, StoreError> {
        let in_flight = self.channel_load().await?;
        info!(attempt = task.attempts, "submitting");
        let slots = TaskSlots {
            store: &self.ports.store,
            lease: self.lease(task),
        };
        let request = SubmitRequest {
            task_id: &task.id,
            job,
            attempts: task.attempts,
            in_flight: &in_flight,
            slots: &slots,
            callback_url: self.callback_url(&task.id),
            source_video,
            expires_after_seconds: expires_after_s as u64,
        };
        self.with_heartbeat(task, provider.submit(request)).await
    }

    /// The lookup of a lost submission: the upstream tasks that could be it and belong to no
    /// other task of ours.
    async fn orphans(
        &self,
        task: &TaskRecord,
        job: &VideoJob,
        provider: &dyn Provider,
        channel: &ChannelId,
        since: i64,
    ) -> Result<Result<Vec<UpstreamRef>, ProviderError>, StoreError> {
        let candidates = match provider.find_submitted(&task.id, job, channel, since).await {
            Ok(candidates) => candidates,
            Err(e) => return Ok(Err(e)),
        };
        let mut orphans = Vec::new();
        for candidate in candidates {
            let known = self
                .ports
                .store
                .upstream_id_known(&candidate.channel, &candidate.upstream_id)
                .await?;
            if !known {
                orphans.push(candidate);
            }
        }
        Ok(Ok(orphans))
    }

    fn lease<'a>(&'a self, task: &'a TaskRecord) -> Lease<'a> {
        Lease {
            task_id: &task.id,
            owner: &self.owner,
        }
    }

    /// Has the store apply a move, and counts an ending this worker made (not one another
    /// worker beat it to).
    async fn apply(&self, task: &TaskRecord, step: Move) -> Result<(), StoreError> {
        match &step {
            Move::Requeue {
                delay_ms, cause, ..
            } => warn!(delay_ms, cause, "requeued"),
            Move::EndUnpaid { code, message, .. } => warn!(code, message, "task ended uncharged"),
            _ => {}
        }
        let made = self.apply_patiently(task, &step).await?;
        if !made {
            return Ok(());
        }
        if let Some(ending) = TaskEnding::of(task, &step, self.now_ms()) {
            self.ports.telemetry.task_ended(&ending);
        }
        if let Move::Succeed { usage_tokens, .. } = step {
            info!(tokens = usage_tokens, "task succeeded");
        }
        Ok(())
    }

    /// Has the store apply a move, waiting out a database that cannot be written: the work
    /// the move records (a render, a copy, an upstream's answer) is kept, not done again. The
    /// lease guards the write, so a move made by a try whose answer was lost is not made
    /// twice: the next try finds the lease gone and reports it not made.
    async fn apply_patiently(&self, task: &TaskRecord, step: &Move) -> Result<bool, StoreError> {
        let mut wait = DATABASE_RETRY_FIRST;
        loop {
            match self.ports.store.apply(&self.lease(task), step).await {
                Err(e) if e.is_unavailable() => {
                    warn!(error = %e, wait_ms = wait.as_millis() as u64, "database unavailable; keeping the task's move to record it again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(DATABASE_RETRY_MAX);
                }
                made => return made,
            }
        }
    }

    /// Runs a provider call while renewing the lease; None when the lease was lost meanwhile.
    /// A renewal the database cannot take does not stop the work: the move it ends with
    /// checks the lease.
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
                    match self.ports.store.extend_lease(&task.id, &self.owner, self.lease_ms()).await {
                        Ok(true) => {}
                        Ok(false) => return Ok(None),
                        Err(e) if e.is_unavailable() => {
                            warn!(error = %e, "database unavailable; the lease could not be renewed");
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
}

/// Why an input check failed, owned until the decision borrows it.
enum InputFailure {
    Refused(String, String),
    Unavailable,
}

impl InputFailure {
    fn trouble(&self) -> InputTrouble<'_> {
        match self {
            Self::Refused(code, message) => InputTrouble::Refused { code, message },
            Self::Unavailable => InputTrouble::Unavailable,
        }
    }
}

fn lease_lost() -> Result<(), StoreError> {
    warn!("lease lost; another worker owns the task now");
    Ok(())
}

fn task_span(task: &TaskRecord) -> tracing::Span {
    tracing::info_span!(
        "task",
        task_id = %task.id,
        provider = %task.provider,
        request_id = task.request_id.as_deref().unwrap_or_default()
    )
}

fn upstream_of(task: &TaskRecord) -> Option<UpstreamRef> {
    task.channel
        .clone()
        .zip(task.upstream_id.clone())
        .map(|(channel, upstream_id)| UpstreamRef {
            channel,
            upstream_id,
            vendor: task.provider.clone(),
        })
}

/// Channel places backed by the task row being submitted.
struct TaskSlots<'a> {
    store: &'a Store,
    lease: Lease<'a>,
}

impl ChannelSlots for TaskSlots<'_> {
    fn reserve<'a>(
        &'a self,
        channel: &'a ChannelId,
        limit: u32,
    ) -> BoxFuture<'a, Result<bool, ProviderError>> {
        Box::pin(async move {
            self.store
                .reserve_channel(self.lease.task_id, self.lease.owner, channel, limit)
                .await
                .map_err(|e| ProviderError::transient("store_unavailable", e.to_string()))
        })
    }
}
