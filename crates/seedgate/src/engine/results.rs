//! Files in and out of our storage: a finished video kept (copied from an upstream, or
//! rendered here), and a video of ours handed to an upstream to extend.

use base64::Engine as _;
use futures_util::StreamExt;
use seedgate_contract::{pricing, VideoJob};
use tracing::warn;

use super::Engine;
use crate::assets::AssetKind;
use crate::blobs::BlobError;
use crate::ids::TaskId;
use crate::lifecycle::{KeepFailure, Kept, StoredResult, TaskRecord};
use crate::mp4_header::Mp4Header;
use crate::providers::Generated;
use crate::store::StoreError;

/// The largest last frame copied from an upstream.
const MAX_LAST_FRAME_BYTES: u64 = 64 * 1024 * 1024;

/// A render the result store refused is written again after this, then twice as long each
/// time, up to the most.
const STORE_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(500);
const STORE_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

impl Engine {
    /// Copies an upstream result into our storage (upstream URLs die after 24 h), streaming
    /// it from the upstream into the blob store, and reads its real size, length and audio
    /// from the file's header as it passes. A failure says whose side failed: the upstream's
    /// files could not be had (or are no video), or our own storage refused them.
    pub(super) async fn copy_result(
        &self,
        task_id: &TaskId,
        video_url: &str,
        last_frame_url: Option<&str>,
        usage_tokens: Option<u64>,
    ) -> Result<Kept, KeepFailure> {
        let upstream = |e: &dyn std::fmt::Display| {
            warn!(error = %e, "copying the upstream's result failed");
            KeepFailure::Copy
        };
        let storage = |e: BlobError| {
            warn!(error = %e, "storing the upstream's result failed");
            KeepFailure::Store
        };
        let blobs = &self.ports.blobs;
        let video_key = AssetKind::Video.key(task_id);
        let body = self
            .ports
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
        match blobs.put(&video_key, body.boxed()).await {
            Ok(_) => {}
            Err(BlobError::Source(e)) => return Err(upstream(&e)),
            Err(e) => return Err(storage(e)),
        }
        let header = header.into_bytes();
        let container = crate::providers::container_of(&header);
        let Ok(info) = seedgate_media::probe_mp4(&header) else {
            // Never served (no task shows it), but not kept either.
            if let Err(e) = blobs.delete(&video_key).await {
                warn!(error = %e, "removing a result that is no video failed");
            }
            return Err(upstream(&format_args!(
                "{video_url} is not a readable MP4 video"
            )));
        };
        let last_frame_png = match last_frame_url {
            Some(url) => self
                .ports
                .fetcher
                .fetch_url(url, MAX_LAST_FRAME_BYTES)
                .await
                .map_err(|e| upstream(&e))?,
            None => {
                // Upstreams are always asked for the last frame; one that sends none has it
                // decoded here, which needs the whole video.
                let video = blobs.read(&video_key).await.map_err(storage)?;
                tokio::task::spawn_blocking(move || seedgate_media::last_frame_png(&video))
                    .await
                    .map_err(|e| upstream(&e))?
                    .map_err(|e| upstream(&e))?
            }
        };
        blobs
            .put_bytes(&AssetKind::LastFrame.key(task_id), last_frame_png)
            .await
            .map_err(storage)?;
        let seconds = info.duration_secs.round().max(1.0) as u32;
        Ok(Kept {
            result: StoredResult {
                width: info.width,
                height: info.height,
                fps: 24,
                duration: info.duration_secs,
                has_audio: info.has_audio,
                container,
            },
            // Without a reported usage, count by the file we received.
            usage_tokens: usage_tokens
                .unwrap_or_else(|| pricing::output_tokens(info.width, info.height, seconds)),
        })
    }

    /// Stores a render, trying again while the result store refuses it (an outage, a full
    /// disk) and the task's deadline allows, holding the task and its render meanwhile: a
    /// store that is down costs a wait, not the render. The refusal once time is up; None
    /// when the lease was lost.
    pub(super) async fn store_rendered_patiently(
        &self,
        task: &TaskRecord,
        generated: Generated,
    ) -> Result<Option<Result<Kept, KeepFailure>>, StoreError> {
        let mut wait = STORE_RETRY_FIRST;
        loop {
            // A write to a store that hangs can take minutes: the lease is kept meanwhile.
            let write = self.store_rendered(&task.id, generated.clone());
            let error = match self.with_heartbeat(task, write).await? {
                None => return Ok(None),
                Some(Ok(kept)) => return Ok(Some(Ok(kept))),
                Some(Err(e)) => e,
            };
            let retry_at = self.now_ms() + wait.as_millis() as i64;
            if self.policy.may_expire(retry_at, task.deadline_at_ms, None) {
                warn!(error = %error, "storing the result failed until the deadline");
                return Ok(Some(Err(KeepFailure::Store)));
            }
            warn!(error = %error, wait_ms = wait.as_millis() as u64, "storing the result failed; keeping the render to store it again");
            if self
                .with_heartbeat(task, tokio::time::sleep(wait))
                .await?
                .is_none()
            {
                return Ok(None);
            }
            wait = (wait * 2).min(STORE_RETRY_MAX);
        }
    }

    /// Stores the files a local provider rendered in memory.
    pub(super) async fn store_rendered(
        &self,
        task_id: &TaskId,
        generated: Generated,
    ) -> Result<Kept, BlobError> {
        let blobs = &self.ports.blobs;
        blobs
            .put_bytes(&AssetKind::Video.key(task_id), generated.video)
            .await?;
        blobs
            .put_bytes(&AssetKind::LastFrame.key(task_id), generated.last_frame_png)
            .await?;
        Ok(Kept {
            result: StoredResult {
                width: generated.width,
                height: generated.height,
                fps: generated.fps,
                duration: generated.duration_secs,
                has_audio: generated.has_audio,
                container: generated.container,
            },
            usage_tokens: generated.usage_tokens,
        })
    }

    /// For video-extension of one of our tasks: its video as the upstream can fetch it — a
    /// signed URL when we have a public address, else a data: URI. None when there is no
    /// source task or its video is gone; an error when the store could not be read.
    pub(super) async fn source_video(&self, job: &VideoJob) -> Result<Option<String>, BlobError> {
        let Some(source) = job.inputs.source_task_id.clone().map(TaskId::new) else {
            return Ok(None);
        };
        if let Some(base) = &self.ports.public_url {
            let expires = (self.now_ms() / 1000) as u64 + 24 * 3600;
            return Ok(Some(format!(
                "{}{}",
                base.trim_end_matches('/'),
                crate::assets::signed_path(&self.ports.signer, &source, AssetKind::Video, expires)
            )));
        }
        let bytes = match self.ports.blobs.read(&AssetKind::Video.key(&source)).await {
            Ok(bytes) => bytes,
            Err(BlobError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(format!(
            "data:video/mp4;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )))
    }

    pub(super) fn callback_url(&self, task_id: &TaskId) -> Option<String> {
        let base = self.ports.public_url.as_deref()?;
        Some(format!(
            "{}/v1/upstream/callback/{task_id}?token={}",
            base.trim_end_matches('/'),
            self.ports.signer.callback_token(task_id)
        ))
    }
}
