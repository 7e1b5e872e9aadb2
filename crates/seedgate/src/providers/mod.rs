//! Where videos come from. Each provider sits behind [`Provider`]; the engine neither knows nor
//! cares whether a result was rendered here or by an upstream.

pub mod sandbox;

use std::future::Future;
use std::pin::Pin;

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

/// A provider failure: retryable ones go back to the queue, the rest fail the task uncharged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProviderError {
    pub retryable: bool,
    pub code: String,
    pub message: String,
}

impl ProviderError {
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            code: code.into(),
            message: message.into(),
        }
    }
}

pub type ProviderFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Generated, ProviderError>> + Send + 'a>>;

/// One source of videos.
pub trait Provider: Send + Sync {
    /// The name clients see as the task's `provider`.
    fn name(&self) -> &'static str;

    /// Produces the video for a task. Must be safe to call again for the same task after a
    /// crash: the engine re-runs work whose lease expired.
    fn generate<'a>(&'a self, task_id: &'a str, job: &'a VideoJob) -> ProviderFuture<'a>;
}
