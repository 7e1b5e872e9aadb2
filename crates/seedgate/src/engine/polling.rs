//! The pollers: each channel's upstream tasks are read many at a time, on an adaptive
//! schedule; the tasks a batch answer cannot settle are finished one by one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use seedgate_contract::VideoJob;
use tracing::{warn, Instrument};

use super::{task_span, Engine, Outcome};
use crate::ids::ChannelId;
use crate::lifecycle::{self, Runner, Subject, TaskRecord};
use crate::providers::{PollChannel, Provider, ProviderError, UpstreamStatus};
use crate::store::StoreError;

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
pub(super) struct Attention {
    task: TaskRecord,
    job_json: String,
    status: Option<Result<UpstreamStatus, ProviderError>>,
}

impl Engine {
    pub(super) fn spawn_pollers(self: &Arc<Self>) {
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
            let in_flight = match engine.ports.store.in_flight_by_channel().await {
                Ok(in_flight) => in_flight,
                Err(e) => return warn!(error = %e, "cannot look for removed channels' tasks"),
            };
            for channel in in_flight.into_keys() {
                if configured.iter().all(|(_, known)| known.id != channel) {
                    warn!(%channel, "tasks in flight on a channel no longer configured");
                    let engine = engine.clone();
                    let provider = engine.ports.providers.upstream.name();
                    tokio::spawn(async move { engine.poll_loop(provider, channel, 1).await });
                }
            }
        });
    }

    fn poll_channels(&self) -> Vec<(&'static str, PollChannel)> {
        self.ports
            .providers
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

    /// One batch of every channel with polls due, finishing what they found ended.
    pub(super) async fn poll_every_channel_once(&self) -> Result<Outcome, StoreError> {
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

    /// Polls up to `batch` of `channel`'s due tasks with one upstream request and schedules
    /// the next poll of those still under way. Returns how many were polled and the ones that
    /// need more (None when none were due).
    async fn poll_round(
        &self,
        provider_name: &str,
        channel: &ChannelId,
        batch: usize,
    ) -> Result<Option<(usize, Vec<Attention>)>, StoreError> {
        let Some(provider) = self.ports.providers.get(provider_name) else {
            return Ok(None);
        };
        let claimed = self
            .ports
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
            let next = serde_json::from_str::<VideoJob>(&job_json)
                .ok()
                .and_then(|job| {
                    let subject = Subject {
                        task: &task,
                        job: &job,
                        runner: Runner::Upstream,
                    };
                    lifecycle::triage(&subject, status.as_ref(), self.moment(), &self.policy)
                });
            match next {
                Some(poll) => scheduled.push(poll),
                None => attention.push(Attention {
                    task,
                    job_json,
                    status,
                }),
            }
        }
        if !scheduled.is_empty() {
            self.ports.store.schedule_polls(&scheduled).await?;
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
        let leased = self
            .ports
            .store
            .lease_polled(&task.id, &self.owner, self.lease_ms())
            .await?;
        if !leased {
            return Ok(());
        }
        let span = task_span(&task);
        self.advance(&task, &job_json, status)
            .instrument(span)
            .await
    }
}
