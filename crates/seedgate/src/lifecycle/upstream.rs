//! What providers answer, in the words the lifecycle decides on: an upstream task's status,
//! where it lives, and how a call failed.

use std::time::Duration;

use seedgate_contract::VideoJob;

use crate::ids::ChannelId;

/// Where an accepted upstream task lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamRef {
    pub channel: ChannelId,
    pub upstream_id: String,
    /// The vendor the channel speaks to (`ark`, `fal`, …), recorded as the task's provider.
    pub vendor: String,
}

/// What a vendor reported for a finished task, each as far as it tells: the tokens it
/// counted (Ark), the compute time it bills by (fal, Replicate) and the money it charged
/// (OpenRouter). Kept on the task for the operator's cost records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VendorUsage {
    pub tokens: Option<u64>,
    pub compute_ms: Option<i64>,
    pub cost_usd_micros: Option<i64>,
}

/// An upstream task as last seen.
#[derive(Debug, PartialEq)]
pub enum UpstreamStatus {
    /// Waiting in the upstream's queue: it can still be withdrawn.
    Queued,
    Running,
    Succeeded {
        video_url: String,
        last_frame_url: Option<String>,
        usage: VendorUsage,
    },
    Failed {
        code: String,
        message: String,
    },
    Cancelled,
    Expired,
}

/// Whether the client left the seed to chance (none, or -1): then the seed is ours to pick.
pub fn seed_is_ours(job: &VideoJob) -> bool {
    job.seed.is_none_or(|seed| seed < 0)
}

/// How a provider call failed, which decides what the engine does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderErrorKind {
    /// The request itself is refused; trying again cannot help. The task fails uncharged.
    Permanent,
    /// Nothing was created; another attempt may succeed (429, refused connection, …).
    Retryable,
    /// Every channel that could take the task is full or resting; waiting is not an attempt.
    AwaitingCapacity,
    /// The request reached `channel` but its answer was lost (timeout, reset, 5xx, garbage):
    /// a task may exist there. It must be reconciled before anything is submitted again.
    InDoubt { channel: ChannelId },
}

/// A provider failure: retryable ones are tried again later, the rest fail the task uncharged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProviderError {
    pub kind: ProviderErrorKind,
    pub code: String,
    pub message: String,
    /// The upstream's own `Retry-After`, when it gave one.
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    pub fn new(
        kind: ProviderErrorKind,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ProviderErrorKind::Permanent, code, message)
    }

    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ProviderErrorKind::Retryable, code, message)
    }

    pub fn retryable(&self) -> bool {
        self.kind != ProviderErrorKind::Permanent
    }
}
