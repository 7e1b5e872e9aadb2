//! Where videos come from. Each provider sits behind [`Provider`]: the engine submits, polls
//! and cancels without knowing whether a video is rendered here or by an upstream.

pub mod ark;
pub mod sandbox;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use seedgate_contract::VideoJob;

/// A finished video, with the usage the provider reports for settlement.
pub struct Generated {
    pub video: Vec<u8>,
    pub last_frame_png: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub duration_secs: f64,
    pub has_audio: bool,
    pub usage_tokens: u64,
}

/// Where an accepted upstream task lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamRef {
    pub channel: String,
    pub upstream_id: String,
}

/// What a submission produced: a finished video (local rendering) or an upstream task.
pub enum Submission {
    Finished(Generated),
    Accepted(UpstreamRef),
}

/// An upstream task as last seen.
#[derive(Debug, PartialEq)]
pub enum UpstreamStatus {
    Pending,
    Succeeded {
        video_url: String,
        last_frame_url: Option<String>,
        usage_tokens: Option<u64>,
    },
    Failed {
        code: String,
        message: String,
    },
    Cancelled,
    Expired,
}

/// Whether an upstream task could still be stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled,
    NotCancellable,
}

/// Takes a place on a channel for the task being submitted, atomically against its
/// concurrency limit (the engine backs it with the task row).
pub trait ChannelSlots: Sync {
    fn reserve<'a>(
        &'a self,
        channel: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<bool, ProviderError>>;
}

/// What a submission needs besides the job itself.
pub struct SubmitRequest<'a> {
    pub task_id: &'a str,
    pub job: &'a VideoJob,
    /// Upstream tasks in flight per channel, to prefer channels with room.
    pub in_flight: &'a HashMap<String, i64>,
    /// The authoritative check of a channel's concurrency limit.
    pub slots: &'a dyn ChannelSlots,
    /// Where the upstream may notify us (only when the gateway has a public URL).
    pub callback_url: Option<String>,
    /// For video-extension of one of our tasks: its video, as a URL or data: URI.
    pub source_video: Option<String>,
}

/// A provider failure: retryable ones are tried again later, the rest fail the task uncharged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProviderError {
    pub retryable: bool,
    pub code: String,
    pub message: String,
    /// The upstream's own `Retry-After`, when it gave one.
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One source of videos.
pub trait Provider: Send + Sync {
    /// The name clients see as the task's `provider`.
    fn name(&self) -> &'static str;

    /// Whether a submission does the whole job here and now (so the task shows as processing
    /// while it runs).
    fn is_local(&self) -> bool {
        false
    }

    /// Whether some channel of this provider can serve the job (checked at create, before any
    /// charge).
    fn can_serve(&self, job: &VideoJob) -> bool;

    /// Starts (or, for a local provider, does) the work. Safe to call again after a crash:
    /// the engine reconciles upstream tasks first.
    fn submit<'a>(
        &'a self,
        request: SubmitRequest<'a>,
    ) -> BoxFuture<'a, Result<Submission, ProviderError>>;

    fn poll<'a>(
        &'a self,
        upstream: &'a UpstreamRef,
    ) -> BoxFuture<'a, Result<UpstreamStatus, ProviderError>>;

    fn cancel<'a>(
        &'a self,
        upstream: &'a UpstreamRef,
    ) -> BoxFuture<'a, Result<CancelOutcome, ProviderError>>;

    /// Upstream tasks for this job's model created since `since_ms`: the candidates a
    /// submission interrupted by a crash may have left behind.
    fn recent_tasks<'a>(
        &'a self,
        job: &'a VideoJob,
        since_ms: i64,
    ) -> BoxFuture<'a, Result<Vec<UpstreamRef>, ProviderError>>;
}

/// The providers of this process and the routing rule between them.
pub struct Registry {
    pub sandbox: std::sync::Arc<sandbox::Sandbox>,
    pub ark: std::sync::Arc<ark::Ark>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<&dyn Provider> {
        match name {
            "sandbox" => Some(&*self.sandbox),
            "ark" => Some(&*self.ark),
            _ => None,
        }
    }

    /// Which provider serves a new task: test keys always get the sandbox; live keys get the
    /// configured upstream channels, or the sandbox when none are configured. None when
    /// channels exist but none can serve the request.
    pub fn route(&self, live: bool, job: &VideoJob) -> Option<&'static str> {
        if !live || !self.ark.has_channels() {
            return Some("sandbox");
        }
        self.ark.can_serve(job).then_some("ark")
    }
}
