//! Where videos come from. Each provider sits behind [`Provider`]: the engine submits, polls
//! and cancels without knowing whether a video is rendered here or by an upstream.

mod render_threads;
pub mod sandbox;
pub mod upstream;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use seedgate_contract::{OutputFormat, VideoJob};

use crate::ids::{ChannelId, TaskId};
pub use crate::lifecycle::upstream::{
    seed_is_ours, ProviderError, ProviderErrorKind, UpstreamRef, UpstreamStatus, VendorUsage,
};

/// A finished video, with the usage the provider reports for settlement.
#[derive(Clone)]
pub struct Generated {
    pub video: Vec<u8>,
    pub last_frame_png: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub duration_secs: f64,
    pub has_audio: bool,
    pub usage_tokens: u64,
    pub container: OutputFormat,
}

/// The container of a file, by its `ftyp` brand.
pub fn container_of(bytes: &[u8]) -> OutputFormat {
    match seedgate_media::Container::of(bytes) {
        seedgate_media::Container::Mp4 => OutputFormat::Mp4,
        seedgate_media::Container::QuickTime => OutputFormat::Mov,
    }
}

/// What a submission produced: a finished video (local rendering) or an upstream task.
pub enum Submission {
    Finished(Generated),
    Accepted(UpstreamRef),
}

/// What one poll of many tasks learnt: each listed upstream id with its status.
pub type Polled = Vec<(String, Result<UpstreamStatus, ProviderError>)>;

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
        channel: &'a ChannelId,
        limit: u32,
    ) -> BoxFuture<'a, Result<bool, ProviderError>>;
}

/// What a submission needs besides the job itself.
pub struct SubmitRequest<'a> {
    pub task_id: &'a TaskId,
    pub job: &'a VideoJob,
    /// Submissions of this task tried before this one.
    pub attempts: i64,
    /// Upstream tasks in flight per channel, as lately read: channels that look full are skipped.
    pub in_flight: &'a HashMap<ChannelId, i64>,
    /// The authoritative check of a channel's concurrency limit.
    pub slots: &'a dyn ChannelSlots,
    /// Where the upstream may notify us (only when the gateway has a public URL).
    pub callback_url: Option<String>,
    /// For video-extension of one of our tasks: its video, as a URL or data: URI.
    pub source_video: Option<String>,
    /// How long the upstream may keep the task before expiring it (Ark's
    /// `execution_expires_after`), so both sides give up together.
    pub expires_after_seconds: u64,
}

/// The seed a task is generated with: the client's, or one drawn from the task id. Upstreams
/// echo the seed in their task objects, so a seed of our choosing also marks which upstream
/// task is ours when a submission's answer was lost. Kept to 31 bits: every upstream and
/// SDK takes those.
pub fn task_seed(task_id: &TaskId, job: &VideoJob) -> i64 {
    seed_in_force(task_id, job.seed)
}

/// [`task_seed`] from the seed the client asked for alone, for readers that have the task's
/// request echo but not its job.
pub fn seed_in_force(task_id: &TaskId, requested: Option<i64>) -> i64 {
    requested.filter(|seed| *seed >= 0).unwrap_or_else(|| {
        let hash = task_id
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        (hash & 0x7fff_ffff) as i64
    })
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A channel whose tasks are polled many at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollChannel {
    pub id: ChannelId,
    /// The most ids one poll asks about.
    pub batch: usize,
    /// This replica's share of the channel's status reads a second.
    pub reads_per_second: u32,
}

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

    /// The channels whose tasks are polled many at a time.
    fn poll_channels(&self) -> Vec<PollChannel> {
        Vec::new()
    }

    /// The status of each of `upstream_ids` on `channel`, by one request. Ids the upstream's
    /// answer leaves out are missing from the result.
    fn poll_batch<'a>(
        &'a self,
        channel: &'a ChannelId,
        upstream_ids: &'a [String],
    ) -> BoxFuture<'a, Result<Polled, ProviderError>> {
        let _ = upstream_ids;
        Box::pin(std::future::ready(Err(ProviderError::permanent(
            "channel_removed",
            format!("channel {channel} is no longer configured"),
        ))))
    }

    /// Upstream tasks on `channel`, created since `since_ms`, that echo what a submission of
    /// this task sends (model, size, length, audio, seed), oldest first: the candidates a
    /// submission whose answer was lost may have left behind.
    fn find_submitted<'a>(
        &'a self,
        task_id: &'a TaskId,
        job: &'a VideoJob,
        channel: &'a ChannelId,
        since_ms: i64,
    ) -> BoxFuture<'a, Result<Vec<UpstreamRef>, ProviderError>>;
}

/// The providers of this process and the routing rule between them.
pub struct Registry {
    pub sandbox: std::sync::Arc<sandbox::Sandbox>,
    pub upstream: std::sync::Arc<upstream::Upstream>,
    /// `sandbox.serve_live_keys`: whether the sandbox may serve a live key that no upstream
    /// channel can serve.
    pub sandbox_serves_live_keys: bool,
}

impl Registry {
    pub fn all(&self) -> [&dyn Provider; 2] {
        [&*self.sandbox, &*self.upstream]
    }

    pub fn get(&self, name: &str) -> Option<&dyn Provider> {
        match name {
            "sandbox" => Some(&*self.sandbox),
            // A task names the vendor that holds it (or, until one does, its first choice).
            vendor if upstream::Vendor::parse(vendor).is_some() => Some(&*self.upstream),
            _ => None,
        }
    }

    /// Which provider serves a new task: test keys always get the sandbox; live keys get the
    /// vendor of the upstream channel tried first for the request (the task then names the
    /// vendor that accepts it). None, for a live key, when no channel
    /// can; only a server with no channels at all lets the sandbox stand in, and only with
    /// `sandbox.serve_live_keys`, so a request the real channels cannot serve is never
    /// rendered locally instead. A final goes where its draft was made, since only there
    /// does the draft exist.
    pub fn route(&self, live: bool, job: &VideoJob) -> Option<&'static str> {
        if let Some(source) = &job.final_of {
            let provider = self.get(&source.provider)?;
            return provider.can_serve(job).then(|| provider.name());
        }
        if !live {
            Some("sandbox")
        } else if self.upstream.has_channels() {
            self.upstream.first_choice(job).map(upstream::Vendor::name)
        } else {
            self.sandbox_serves_live_keys.then_some("sandbox")
        }
    }

    /// Which providers serve live keys and which test keys, for the operator to read at start.
    pub fn routing_summary(&self) -> String {
        let channels = self.upstream.channel_names();
        let mut live: Vec<String> = channels
            .iter()
            .map(|(channel, vendor)| format!("{} ({channel})", vendor.name()))
            .collect();
        if self.sandbox_serves_live_keys && channels.is_empty() {
            live.push(
                "sandbox (sandbox.serve_live_keys = true: live keys pay for local renders)".into(),
            );
        }
        let live = if live.is_empty() {
            "nothing (no [[channels]] configured: live keys' creates are refused with no_channel_for_request)".to_owned()
        } else {
            live.join(", ")
        };
        format!("live keys are served by {live}; test keys by the sandbox")
    }
}
