//! The engine: workers that lease queued tasks, run their provider, store the result and settle
//! the money. Every step is a conditional update on the task row, so a crash at any point leaves
//! work that the next lease holder (this process after a restart, or another one) finishes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use seedgate_contract::{pricing, Catalog, VideoJob};
use tokio::sync::Notify;
use tracing::{info, warn, Instrument};

use crate::assets::{AssetKind, AssetStore};
use crate::config::EngineConfig;
use crate::providers::{Generated, Provider, ProviderError};
use crate::store::{Settlement, Store, StoreError, TaskRecord};

/// What one step of a worker did: tests call [`Engine::run_one`] until it reports `Empty`.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Empty,
}

pub struct Engine {
    store: Store,
    catalog: Arc<Catalog>,
    assets: AssetStore,
    providers: HashMap<&'static str, Arc<dyn Provider>>,
    config: EngineConfig,
    owner: String,
    wake: Arc<Notify>,
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

impl Engine {
    pub fn new(
        store: Store,
        catalog: Arc<Catalog>,
        assets: AssetStore,
        providers: Vec<Arc<dyn Provider>>,
        config: EngineConfig,
    ) -> Self {
        Self {
            store,
            catalog,
            assets,
            providers: providers.into_iter().map(|p| (p.name(), p)).collect(),
            config,
            owner: format!("worker_{}", ulid::Ulid::new()),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Signalled on every new task so an idle worker starts at once instead of at its next poll.
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

    /// Leases and processes at most one task.
    pub async fn run_one(&self) -> Result<Outcome, StoreError> {
        let Some((task, job_json)) = self.store.claim_task(&self.owner, self.lease_ms()).await?
        else {
            return Ok(Outcome::Empty);
        };
        let span = tracing::info_span!("task", task_id = %task.id, provider = %task.provider);
        self.process(task, &job_json).instrument(span).await?;
        Ok(Outcome::Done)
    }

    async fn process(&self, task: TaskRecord, job_json: &str) -> Result<(), StoreError> {
        if task.attempts > self.config.max_attempts {
            warn!(attempts = task.attempts, "giving up on task");
            self.store
                .finish_failed(
                    &task.id,
                    &self.owner,
                    "too_many_attempts",
                    "The task failed repeatedly and was abandoned.",
                )
                .await?;
            return Ok(());
        }
        let job: VideoJob = match serde_json::from_str(job_json) {
            Ok(job) => job,
            Err(e) => {
                warn!(error = %e, "stored job is unreadable");
                self.store
                    .finish_failed(
                        &task.id,
                        &self.owner,
                        "internal_error",
                        "The stored request could not be read.",
                    )
                    .await?;
                return Ok(());
            }
        };
        let Some(provider) = self.providers.get(task.provider.as_str()).cloned() else {
            self.store
                .finish_failed(
                    &task.id,
                    &self.owner,
                    "provider_unavailable",
                    "The task's provider is not configured on this server.",
                )
                .await?;
            return Ok(());
        };
        info!(attempt = task.attempts, "task started");
        let Some(outcome) = self.run_with_heartbeat(&*provider, &task, &job).await? else {
            warn!("lease lost; another worker owns the task now");
            return Ok(());
        };
        match outcome {
            Ok(generated) => self.settle_success(&task, &job, generated).await,
            Err(e) => self.settle_failure(&task, e).await,
        }
    }

    /// Runs the provider while renewing the lease; None when the lease was lost meanwhile.
    async fn run_with_heartbeat(
        &self,
        provider: &dyn Provider,
        task: &TaskRecord,
        job: &VideoJob,
    ) -> Result<Option<Result<Generated, ProviderError>>, StoreError> {
        let work = provider.generate(&task.id, job);
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

    async fn settle_success(
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
            Err(e) => {
                return self
                    .settle_failure(
                        task,
                        ProviderError::permanent("pricing_unavailable", e.message),
                    )
                    .await
            }
        };
        let stored = self
            .assets
            .put(&task.id, AssetKind::Video, &generated.video)
            .await
            .and(
                self.assets
                    .put(&task.id, AssetKind::LastFrame, &generated.last_frame_png)
                    .await,
            );
        if let Err(e) = stored {
            return self
                .settle_failure(
                    task,
                    ProviderError::transient("asset_write_failed", e.to_string()),
                )
                .await;
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

    async fn settle_failure(
        &self,
        task: &TaskRecord,
        error: ProviderError,
    ) -> Result<(), StoreError> {
        if error.retryable && task.attempts < self.config.max_attempts {
            let delay_ms = 1000_i64 << task.attempts.clamp(0, 6);
            warn!(code = %error.code, delay_ms, "transient failure; retrying");
            self.store.requeue(&task.id, &self.owner, delay_ms).await?;
            return Ok(());
        }
        warn!(code = %error.code, message = %error.message, "task failed");
        self.store
            .finish_failed(&task.id, &self.owner, &error.code, &error.message)
            .await?;
        Ok(())
    }
}
