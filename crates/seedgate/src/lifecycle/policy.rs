//! The timing rules of the lifecycle, read once from the configuration: how long to wait
//! before a retry, a reconciliation, the next poll, and when a task may be given up on.

use std::sync::Arc;
use std::time::Duration;

use seedgate_contract::{Catalog, DurationRequest, Resolution, VideoJob};

use super::states::TaskRecord;
use crate::config::EngineConfig;

/// The range Ark accepts for `execution_expires_after`, in seconds, and its default.
const UPSTREAM_EXPIRY_S: std::ops::RangeInclusive<i64> = 3_600..=259_200;
const UPSTREAM_DEFAULT_EXPIRY_S: i64 = 172_800;
/// The length a poll schedule expects of a `duration: -1` task whose model the catalog no
/// longer has: Seedance 2.0's longest.
const DURATION_FALLBACK_S: u32 = 15;

#[derive(Clone, Debug)]
pub struct Policy {
    /// Attempts before a task that keeps failing transiently fails.
    pub max_attempts: i64,
    /// The first retry's wait; each next one waits twice as long, up to `max_retry_delay_ms`.
    pub retry_backoff_ms: i64,
    pub max_retry_delay_ms: i64,
    /// Least wait between a submission whose answer was lost and the look upstream for its
    /// task, so that a task the upstream was still creating shows up in its list.
    pub reconcile_delay_ms: i64,
    /// After the upstream's own expiry, how long its last word is awaited before the task is
    /// ended here anyway.
    pub upstream_expiry_grace_ms: i64,
    pub first_poll_ms: i64,
    pub max_poll_interval_ms: i64,
    pub expected_ms_per_output_second: i64,
    pub result_copy_attempts: i64,
    pub result_copy_backoff_ms: i64,
    /// Prices a finished task.
    pub catalog: Arc<Catalog>,
}

impl Policy {
    pub fn new(config: &EngineConfig, catalog: Arc<Catalog>) -> Self {
        let ms = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        Self {
            max_attempts: config.max_attempts,
            retry_backoff_ms: ms(config.retry_backoff_ms),
            max_retry_delay_ms: ms(config.max_retry_delay_ms),
            reconcile_delay_ms: ms(config.reconcile_delay_ms),
            upstream_expiry_grace_ms: ms(config.upstream_expiry_grace_ms),
            first_poll_ms: ms(config.first_poll_ms),
            max_poll_interval_ms: ms(config.max_poll_interval_ms),
            expected_ms_per_output_second: ms(config.expected_ms_per_output_second),
            result_copy_attempts: config.result_copy_attempts,
            result_copy_backoff_ms: ms(config.result_copy_backoff_ms),
            catalog,
        }
    }

    /// Exponential backoff, spread by `jitter` (0 to 1) over a quarter more, never sooner than
    /// the upstream's `Retry-After`.
    pub fn retry_delay_ms(&self, attempt: i64, retry_after: Option<Duration>, jitter: f64) -> i64 {
        let base = (self.retry_backoff_ms << attempt.clamp(0, 6)).min(self.max_retry_delay_ms);
        let jittered = base + ((base / 4) as f64 * jitter.clamp(0.0, 1.0)).round() as i64;
        let floor = retry_after.map_or(0, |d| d.as_millis() as i64);
        jittered.max(floor)
    }

    /// Polls cluster around the expected finish (by length and size), then back off to a cap.
    pub fn next_poll_delay_ms(&self, task: &TaskRecord, job: &VideoJob, now_ms: i64) -> i64 {
        let seconds = match job.duration {
            DurationRequest::Seconds(s) => s,
            DurationRequest::ModelDecides => self
                .catalog
                .model(&job.model)
                .map_or(DURATION_FALLBACK_S, |m| m.duration.max),
        };
        let seconds = i64::from(seconds);
        let size_factor = match job.resolution {
            Resolution::P480 => 0.5,
            Resolution::P720 => 1.0,
            Resolution::P1080 => 2.0,
            Resolution::K4 => 6.0,
        };
        let expected = (self.expected_ms_per_output_second * seconds) as f64 * size_factor;
        let (first, cap) = (self.first_poll_ms, self.max_poll_interval_ms);
        let elapsed = now_ms - task.submit_started_at_ms.unwrap_or(task.created_at_ms);
        let until_expected = expected as i64 - elapsed;
        if until_expected > 0 {
            until_expected.clamp(first, cap)
        } else {
            (first << task.polls.clamp(0, 8)).min(cap)
        }
    }

    /// After a poll that learnt nothing: the next poll as planned, or the upstream's
    /// `Retry-After` when later. The pacer already spaces reads within the channel's budget,
    /// and a longer backoff would leave a finished task unnoticed past the poll interval.
    pub fn poll_retry_delay_ms(
        &self,
        task: &TaskRecord,
        job: &VideoJob,
        retry_after: Option<Duration>,
        now_ms: i64,
    ) -> i64 {
        let asked = retry_after.map_or(0, |d| d.as_millis() as i64);
        self.next_poll_delay_ms(task, job, now_ms).max(asked)
    }

    /// The wait before copying a finished result again, after `failures` failed copies.
    /// How long a result our own store refused waits before it is written again: the
    /// store's outage is not the file's fault, so the wait does not grow with the tries.
    pub fn store_retry_delay_ms(&self) -> i64 {
        self.result_copy_backoff_ms
    }

    pub fn result_copy_delay_ms(&self, failures: i64) -> i64 {
        self.result_copy_backoff_ms << (failures - 1).clamp(0, 10)
    }

    /// Whether a task may be ended here for want of time. Nothing submitted upstream: once
    /// our deadline passed. Submitted (or possibly submitted): only once the upstream's own
    /// expiry has passed too, since until then the upstream may still finish — and bill — it.
    pub fn may_expire(
        &self,
        now_ms: i64,
        deadline_at_ms: Option<i64>,
        upstream_expires_at_ms: Option<i64>,
    ) -> bool {
        match upstream_expires_at_ms {
            None => deadline_at_ms.is_some_and(|deadline| now_ms > deadline),
            Some(upstream) => now_ms > upstream + self.upstream_expiry_grace_ms,
        }
    }

    /// Whether a submitted task is past the upstream's own expiry (and its grace).
    pub fn upstream_expired(&self, task: &TaskRecord, now_ms: i64) -> bool {
        // Rows from before expiries were recorded ran on the upstream's default.
        let upstream_expires_at = task.upstream_expires_at_ms.unwrap_or(
            task.submit_started_at_ms.unwrap_or(task.created_at_ms)
                + UPSTREAM_DEFAULT_EXPIRY_S * 1000,
        );
        self.may_expire(now_ms, task.deadline_at_ms, Some(upstream_expires_at))
    }
}

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
pub fn expiry_for(task: &TaskRecord, job: &VideoJob, at_ms: i64) -> i64 {
    let ours = upstream_expiry_seconds(task.deadline_at_ms, at_ms);
    job.execution_expires_after
        .map_or(ours, |asked| ours.min(i64::from(asked)))
}
