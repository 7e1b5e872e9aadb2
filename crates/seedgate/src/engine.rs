//! The engine: workers that lease tasks and move them forward — submit queued ones to their
//! provider, poll upstream ones on an adaptive schedule, copy results into our assets, settle
//! the money, expire what missed its deadline. Every step is a conditional update on the task
//! row, so a crash at any point leaves work the next lease holder finishes.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rand::Rng;
use seedgate_contract::{pricing, Catalog, DurationRequest, Resolution, VideoJob};
use tokio::sync::Notify;
use tracing::{info, warn, Instrument};

use crate::assets::{AssetKind, AssetStore};
use crate::config::EngineConfig;
use crate::fetch::Fetcher;
use crate::providers::{
    BoxFuture, ChannelSlots, Generated, Provider, ProviderError, Registry, Submission,
    SubmitRequest, UpstreamRef, UpstreamStatus,
};
use crate::store::{now_ms, Settlement, Store, StoreError, TaskRecord, TaskState};

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

pub struct Engine {
    store: Store,
    catalog: Arc<Catalog>,
    assets: AssetStore,
    providers: Arc<Registry>,
    fetcher: Fetcher,
    config: EngineConfig,
    public_url: Option<String>,
    owner: String,
    wake: Arc<Notify>,
}

/// Longest wait before retrying a submission.
const MAX_RETRY_DELAY_MS: i64 = 60_000;

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        catalog: Arc<Catalog>,
        assets: AssetStore,
        providers: Arc<Registry>,
        fetcher: Fetcher,
        config: EngineConfig,
        public_url: Option<String>,
    ) -> Self {
        Self {
            store,
            catalog,
            assets,
            providers,
            fetcher,
            config,
            public_url,
            owner: format!("worker_{}", ulid::Ulid::new()),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Signalled on every new task or callback so an idle worker starts at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    fn lease_ms(&self) -> i64 {
        (self.config.lease_seconds * 1000) as i64
    }

    /// Starts the configured number of workers; they run until the process ends.
    pub fn spawn_workers(self: &Arc<Self>) {
        for index in 0..self.config.workers.max(1) {
            let engine = self.clone();
            tokio::spawn(async move { engine.work_loop(index).await });
        }
    }

    async fn work_loop(self: Arc<Self>, index: usize) {
        let idle = Duration::from_millis(self.config.idle_poll_ms);
        loop {
            match self.run_one().await {
                Ok(Outcome::Done) => continue,
                Ok(Outcome::Empty) => {}
                Err(e) => warn!(worker = index, error = %e, "engine step failed"),
            }
            let _ = tokio::time::timeout(idle, self.wake.notified()).await;
        }
    }

    /// Leases and advances at most one task.
    pub async fn run_one(&self) -> Result<Outcome, StoreError> {
        let Some((task, job_json)) = self
            .store
            .claim_task(
                &self.owner,
                self.lease_ms(),
                self.config.max_concurrent_tasks_per_key,
            )
            .await?
        else {
            return Ok(Outcome::Empty);
        };
        let span = tracing::info_span!("task", task_id = %task.id, provider = %task.provider);
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
        if task.deadline_at_ms.is_some_and(|d| now_ms() > d) {
            return self.expire(&task, provider, upstream.as_ref()).await;
        }
        match upstream {
            Some(upstream) => self.poll(&task, &job, provider, &upstream).await,
            None => self.submit(&task, &job, provider).await,
        }
    }

    async fn fail(&self, task: &TaskRecord, code: &str, message: &str) -> Result<(), StoreError> {
        warn!(code, message, "task failed");
        self.store
            .finish_failed(&task.id, &self.owner, code, message)
            .await?;
        Ok(())
    }

    async fn expire(
        &self,
        task: &TaskRecord,
        provider: &dyn Provider,
        upstream: Option<&UpstreamRef>,
    ) -> Result<(), StoreError> {
        if let Some(upstream) = upstream {
            // Best effort: a task still queued upstream is withdrawn; a running one cannot be.
            if let Err(e) = provider.cancel(upstream).await {
                warn!(error = %e, "could not withdraw the expired upstream task");
            }
        }
        warn!("task expired");
        self.store
            .finish_unpaid(
                &task.id,
                &self.owner,
                TaskState::Expired,
                "task_expired",
                "The task did not finish before its deadline.",
            )
            .await?;
        Ok(())
    }

    async fn submit(
        &self,
        task: &TaskRecord,
        job: &VideoJob,
        provider: &dyn Provider,
    ) -> Result<(), StoreError> {
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
            self.store.mark_running(&task.id, &self.owner).await?;
        } else if task.reclaimed && self.adopt_orphan(task, job, provider).await? {
            return Ok(());
        }
        let in_flight = self.store.in_flight_by_channel().await?;
        let source_video = match provider.is_local() {
            true => None,
            false => self.source_video(job).await,
        };
        info!(attempt = task.attempts, "submitting");
        let slots = TaskSlots {
            store: &self.store,
            task_id: &task.id,
            owner: &self.owner,
        };
        let request = SubmitRequest {
            task_id: &task.id,
            job,
            in_flight: &in_flight,
            slots: &slots,
            callback_url: self.callback_url(&task.id),
            source_video,
        };
        let Some(result) = self.with_heartbeat(task, provider.submit(request)).await? else {
            warn!("lease lost; another worker owns the task now");
            return Ok(());
        };
        match result {
            Ok(Submission::Finished(generated)) => self.settle(task, job, generated).await,
            Ok(Submission::Accepted(upstream)) => {
                let next = now_ms() + self.config.first_poll_ms as i64;
                self.store
                    .record_submission(
                        &task.id,
                        &self.owner,
                        &upstream.channel,
                        &upstream.upstream_id,
                        next,
                    )
                    .await?;
                Ok(())
            }
            Err(e) if e.retryable && task.attempts < self.config.max_attempts => {
                // Waiting for a free or recovering channel is not a failed attempt.
                let counts = !matches!(
                    e.code.as_str(),
                    "channels_at_capacity" | "channels_unavailable"
                );
                let delay = retry_delay_ms(task.attempts, e.retry_after);
                warn!(code = %e.code, delay_ms = delay, "submission will be retried");
                self.store
                    .requeue(&task.id, &self.owner, delay, counts)
                    .await?;
                Ok(())
            }
            Err(e) => self.fail(task, &e.code, &e.message).await,
        }
    }

    /// After a crash between an upstream's acceptance and our record of it, the upstream task
    /// exists but no task of ours names it. Only a task taken over from a dead holder can be in
    /// that state (a task requeued after a refused attempt is not), and it adopts the upstream
    /// task when exactly one such task of this model appeared since its submission began;
    /// otherwise it submits anew.
    async fn adopt_orphan(
        &self,
        task: &TaskRecord,
        job: &VideoJob,
        provider: &dyn Provider,
    ) -> Result<bool, StoreError> {
        let since = task.submit_started_at_ms.unwrap_or(task.created_at_ms);
        let candidates = match provider.recent_tasks(job, since).await {
            Ok(candidates) => candidates,
            Err(e) => {
                warn!(error = %e, "could not list upstream tasks to reconcile; submitting anew");
                return Ok(false);
            }
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
        let [orphan] = orphans.as_slice() else {
            return Ok(false);
        };
        info!(upstream_id = %orphan.upstream_id, "adopting the upstream task of an interrupted submission");
        let next = now_ms() + self.config.first_poll_ms as i64;
        self.store
            .record_submission(
                &task.id,
                &self.owner,
                &orphan.channel,
                &orphan.upstream_id,
                next,
            )
            .await
    }

    /// For video-extension of one of our tasks: its video as the upstream can fetch it — a
    /// signed URL when we have a public address, else a data: URI.
    async fn source_video(&self, job: &VideoJob) -> Option<String> {
        let source = job.inputs.source_task_id.as_deref()?;
        if let Some(base) = &self.public_url {
            let expires = (now_ms() / 1000) as u64 + 24 * 3600;
            return Some(format!(
                "{}{}",
                base.trim_end_matches('/'),
                self.assets.signed_path(source, AssetKind::Video, expires)
            ));
        }
        let bytes = self.assets.read(source, AssetKind::Video).await.ok()?;
        Some(format!(
            "data:video/mp4;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ))
    }

    fn callback_url(&self, task_id: &str) -> Option<String> {
        let base = self.public_url.as_deref()?;
        Some(format!(
            "{}/v1/upstream/callback/{task_id}?token={}",
            base.trim_end_matches('/'),
            self.assets.callback_token(task_id)
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
        match provider.poll(upstream).await {
            Ok(UpstreamStatus::Pending) => {
                let next = now_ms() + self.next_poll_delay_ms(task, job);
                self.store
                    .schedule_poll(&task.id, &self.owner, next)
                    .await?;
                Ok(())
            }
            Ok(UpstreamStatus::Succeeded {
                video_url,
                last_frame_url,
                usage_tokens,
            }) => match self
                .copy_result(&video_url, last_frame_url.as_deref(), usage_tokens)
                .await
            {
                Ok(generated) => self.settle(task, job, generated).await,
                Err(e) => {
                    warn!(error = %e, "copying the upstream result failed; will retry");
                    let next = now_ms() + retry_delay_ms(task.polls, None);
                    self.store
                        .schedule_poll(&task.id, &self.owner, next)
                        .await?;
                    Ok(())
                }
            },
            Ok(UpstreamStatus::Failed { code, message }) => self.fail(task, &code, &message).await,
            Ok(UpstreamStatus::Cancelled) => {
                self.store
                    .finish_unpaid(
                        &task.id,
                        &self.owner,
                        TaskState::Cancelled,
                        "cancelled",
                        "The upstream cancelled the task.",
                    )
                    .await?;
                Ok(())
            }
            Ok(UpstreamStatus::Expired) => {
                self.store
                    .finish_unpaid(
                        &task.id,
                        &self.owner,
                        TaskState::Expired,
                        "task_expired",
                        "The upstream let the task expire.",
                    )
                    .await?;
                Ok(())
            }
            Err(e) if e.retryable => {
                let next = now_ms() + retry_delay_ms(task.polls.min(6), e.retry_after);
                warn!(code = %e.code, "poll failed; will retry");
                self.store
                    .schedule_poll(&task.id, &self.owner, next)
                    .await?;
                Ok(())
            }
            Err(e) => self.fail(task, &e.code, &e.message).await,
        }
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

    /// Copies an upstream result into our assets' shape (upstream URLs die after 24 h) and
    /// reads its real size, length and audio from the file itself.
    async fn copy_result(
        &self,
        video_url: &str,
        last_frame_url: Option<&str>,
        usage_tokens: Option<u64>,
    ) -> Result<Generated, ProviderError> {
        let transient = |e: &dyn std::fmt::Display| {
            ProviderError::transient("result_copy_failed", e.to_string())
        };
        let video = self
            .fetcher
            .fetch_url(video_url, self.config.max_result_bytes)
            .await
            .map_err(|e| transient(&e))?;
        let info = seedgate_media::probe_mp4(&video).map_err(|e| transient(&e))?;
        let last_frame_png = match last_frame_url {
            Some(url) => self
                .fetcher
                .fetch_url(url, 64 * 1024 * 1024)
                .await
                .map_err(|e| transient(&e))?,
            None => {
                let video = video.clone();
                tokio::task::spawn_blocking(move || seedgate_media::last_frame_png(&video))
                    .await
                    .map_err(|e| transient(&e))?
                    .map_err(|e| transient(&e))?
            }
        };
        let seconds = info.duration_secs.round().max(1.0) as u32;
        let usage_tokens = usage_tokens.unwrap_or_else(|| {
            // Without a reported usage, count by the file we received.
            pricing::output_tokens(info.width, info.height, seconds)
        });
        Ok(Generated {
            video,
            last_frame_png,
            width: info.width,
            height: info.height,
            fps: 24,
            duration_secs: info.duration_secs,
            has_audio: info.has_audio,
            usage_tokens,
        })
    }

    /// Stores the result files, then marks the task succeeded and settles it in one
    /// transaction: charge the real cost, release the reservation.
    async fn settle(
        &self,
        task: &TaskRecord,
        job: &VideoJob,
        generated: Generated,
    ) -> Result<(), StoreError> {
        let cost = match pricing::price_tokens(
            &self.catalog,
            &job.model,
            job.resolution,
            job.has_video_input(),
            generated.usage_tokens,
        ) {
            Ok(cost) => cost,
            Err(e) => return self.fail(task, "pricing_unavailable", &e.message).await,
        };
        let stored = async {
            self.assets
                .put(&task.id, AssetKind::Video, &generated.video)
                .await?;
            self.assets
                .put(&task.id, AssetKind::LastFrame, &generated.last_frame_png)
                .await
        }
        .await;
        if let Err(e) = stored {
            warn!(error = %e, "storing the result failed; will retry");
            // Keep the task: an upstream one is polled again, a local one re-rendered.
            if task.upstream_id.is_some() {
                self.store
                    .schedule_poll(
                        &task.id,
                        &self.owner,
                        now_ms() + retry_delay_ms(task.polls, None),
                    )
                    .await?;
            } else {
                self.store
                    .requeue(
                        &task.id,
                        &self.owner,
                        retry_delay_ms(task.attempts, None),
                        true,
                    )
                    .await?;
            }
            return Ok(());
        }
        let result = StoredResult {
            width: generated.width,
            height: generated.height,
            fps: generated.fps,
            duration: generated.duration_secs,
            has_audio: generated.has_audio,
        };
        let result_json =
            serde_json::to_string(&result).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let settled = self
            .store
            .finish_succeeded(
                &task.id,
                &self.owner,
                Settlement {
                    result_json: &result_json,
                    usage_tokens: generated.usage_tokens as i64,
                    cost_usd_micros: cost.usd_micros,
                    cost_cny: &cost.cny_string(),
                },
            )
            .await?;
        if settled {
            info!(tokens = generated.usage_tokens, cost_usd = %cost.usd_string(), "task succeeded");
        }
        Ok(())
    }
}

/// Channel places backed by the task row being submitted.
struct TaskSlots<'a> {
    store: &'a Store,
    task_id: &'a str,
    owner: &'a str,
}

impl ChannelSlots for TaskSlots<'_> {
    fn reserve<'a>(
        &'a self,
        channel: &'a str,
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
}
