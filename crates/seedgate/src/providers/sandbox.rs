//! The embedded sandbox: renders a real, deterministic H.264 MP4 locally, so the whole flow runs
//! with no key and no network. Rendering is CPU-bound and runs on the sandbox's own threads, as
//! many as renders may run at once, so the async runtime keeps answering while a 4k render is
//! under way.

use std::sync::Arc;
use std::time::Duration;

use seedgate_contract::{
    pricing, AspectRatio, Catalog, DurationRequest, Operation, OutputFormat, SandboxScenario,
    VideoJob,
};
use seedgate_media::{RenderRequest, Scene};

use super::render_threads::{RenderThreadError, RenderThreads};
use super::{
    task_seed, BoxFuture, CancelOutcome, Generated, Provider, ProviderError, ProviderErrorKind,
    Submission, SubmitRequest, UpstreamRef, UpstreamStatus,
};
use crate::assets::AssetKind;
use crate::blobs::{BlobError, Blobs};
use crate::fetch::Fetcher;
use crate::ids::{ChannelId, TaskId};

const FPS: u32 = 24;

pub struct Sandbox {
    catalog: Arc<Catalog>,
    fetcher: Fetcher,
    blobs: Arc<dyn Blobs>,
    renders: RenderThreads,
}

/// Inputs fetched for one task, in the shape the renderer wants.
#[derive(Default)]
struct Inputs {
    images: Vec<Vec<u8>>,
    videos: Vec<Vec<u8>>,
    audios: Vec<Vec<u8>>,
}

impl Sandbox {
    pub fn new(
        catalog: Arc<Catalog>,
        fetcher: Fetcher,
        blobs: Arc<dyn Blobs>,
        max_concurrent_renders: usize,
    ) -> std::io::Result<Self> {
        Ok(Self {
            catalog,
            fetcher,
            blobs,
            renders: RenderThreads::start(max_concurrent_renders)?,
        })
    }

    async fn fetch_inputs(&self, job: &VideoJob) -> Result<Inputs, ProviderError> {
        let clips = crate::inputs::clip_limits(&self.catalog, &job.model);
        let checked = crate::inputs::fetch_checked(&self.fetcher, job, clips, true)
            .await
            .map_err(|e| ProviderError::permanent(e.code, e.message))?;
        let mut inputs = Inputs {
            images: checked.images,
            videos: checked.videos,
            audios: checked.audios,
        };
        if let Some(source) = &job.inputs.source_task_id {
            let bytes = self
                .blobs
                .read(&AssetKind::Video.key(&TaskId::new(source.as_str())))
                .await
                .map_err(|e| {
                    let message = format!("the source task's video could not be read: {e}");
                    match e {
                        BlobError::NotFound => {
                            ProviderError::permanent("source_video_unavailable", message)
                        }
                        // The store may answer again later.
                        _ => ProviderError::transient("source_video_unavailable", message),
                    }
                })?;
            inputs.videos.push(bytes);
        }
        Ok(inputs)
    }

    /// Output size, by the rule the quote and the reservation follow
    /// ([`VideoJob::output_ratio`]), with the shape of the first visual input now in hand.
    fn output_size(&self, job: &VideoJob, inputs: &Inputs) -> Result<(u32, u32), ProviderError> {
        let shape = if job.aspect_ratio == AspectRatio::Adaptive {
            if let Some(image) = inputs.images.first() {
                Some(seedgate_media::image_dimensions(image).map_err(media_error)?)
            } else if let Some(video) = inputs.videos.first() {
                let info = seedgate_media::probe_mp4(video).map_err(media_error)?;
                Some((info.width, info.height))
            } else {
                None
            }
        } else {
            None
        };
        let ratio = job.output_ratio(shape).ok_or_else(|| {
            ProviderError::permanent("input_unreadable", "no input to take the shape from")
        })?;
        self.catalog
            .output_size(job.resolution, ratio)
            .ok_or_else(|| {
                ProviderError::permanent(
                    "unsupported_resolution",
                    format!(
                        "no output size for {} at {}",
                        job.resolution.as_str(),
                        ratio.as_str()
                    ),
                )
            })
    }

    /// Renders the job, playing out the scenario a test key asked for: each ends as the real
    /// upstream's would, with its codes, through the same engine. (Waiting scenarios act at
    /// create: their task is held in the queue, or past its deadline.)
    async fn play(&self, request: SubmitRequest<'_>) -> Result<Submission, ProviderError> {
        let scenario = request.job.scenario;
        let because = |name: &str| format!(" (sandbox scenario {name})");
        match scenario {
            Some(SandboxScenario::InputModeration) => {
                let code = if request.job.has_visual_input() {
                    "InputImageSensitiveContentDetected"
                } else {
                    "InputTextSensitiveContentDetected"
                };
                return Err(ProviderError::permanent(
                    code,
                    format!(
                        "The request's input was refused by content review{}.",
                        because("input_moderation")
                    ),
                ));
            }
            Some(SandboxScenario::RateLimited { count })
                if request.attempts <= i64::from(count) =>
            {
                let mut error = ProviderError::new(
                    ProviderErrorKind::Retryable,
                    "RateLimitExceeded",
                    format!(
                        "The upstream answered 429 to submission {} of {count}{}.",
                        request.attempts,
                        because("rate_limited")
                    ),
                );
                error.retry_after = Some(Duration::from_secs(1));
                return Err(error);
            }
            Some(SandboxScenario::CancelRace { wait_seconds }) => {
                tokio::time::sleep(Duration::from_secs(wait_seconds.into())).await;
            }
            _ => {}
        }
        let rendered = self.render(request).await?;
        match scenario {
            Some(SandboxScenario::OutputModeration) => Err(ProviderError::permanent(
                "OutputVideoSensitiveContentDetected",
                format!(
                    "The video was refused by content review{}.",
                    because("output_moderation")
                ),
            )),
            Some(SandboxScenario::ResultUnavailable) => Err(ProviderError::permanent(
                "result_unavailable",
                format!(
                    "The video was made but could not be retrieved{}.",
                    because("result_unavailable")
                ),
            )),
            _ => Ok(rendered),
        }
    }

    async fn render(&self, request: SubmitRequest<'_>) -> Result<Submission, ProviderError> {
        let (task_id, job) = (request.task_id, request.job);
        let inputs = self.fetch_inputs(job).await?;
        let (width, height) = self.output_size(job, &inputs)?;
        let seconds = match job.duration {
            DurationRequest::Seconds(s) => s,
            DurationRequest::ModelDecides => self
                .catalog
                .model(&job.model)
                .map(|m| m.duration.default)
                .unwrap_or(5),
        };
        // Same request and seed → same bytes; without a seed, the task id decides.
        let seed = task_seed(task_id, job) as u64;
        let operation = job.operation;
        let prompt = job.prompt.clone().unwrap_or_default();
        let audio = job.generate_audio;
        let container = match job.output_format {
            OutputFormat::Mp4 => seedgate_media::Container::Mp4,
            OutputFormat::Mov => seedgate_media::Container::QuickTime,
        };
        // Every frame says what made it: no one mistakes it for a real model's video.
        let caption = vec![
            format!("SANDBOX · {} · {width}×{height} · {seconds} s", job.model),
            job.prompt
                .as_deref()
                .filter(|prompt| !prompt.trim().is_empty())
                .map_or_else(|| "(no prompt)".to_owned(), str::to_owned),
            task_id.to_string(),
        ];
        let rendered = self
            .renders
            .run(move || {
                let scene = scene_for(operation, &prompt, &inputs);
                seedgate_media::render(&RenderRequest {
                    scene,
                    audios: inputs.audios.iter().map(Vec::as_slice).collect(),
                    container,
                    width,
                    height,
                    fps: FPS,
                    frames: FPS * seconds,
                    seed,
                    audio,
                    caption,
                })
            })
            .await
            .map_err(|e| match e {
                RenderThreadError::Stopped => {
                    ProviderError::transient("sandbox_shutting_down", "sandbox is stopping")
                }
                RenderThreadError::Panicked(_) => {
                    ProviderError::transient("render_crashed", e.to_string())
                }
            })?
            .map_err(media_error)?;

        let mut usage_tokens = pricing::output_tokens(rendered.width, rendered.height, seconds);
        if job.has_video_input() {
            let input_millis = (rendered.input_video_seconds * 1000.0).round() as u64;
            usage_tokens += pricing::input_tokens(rendered.width, rendered.height, input_millis);
        }
        Ok(Submission::Finished(Generated {
            video: rendered.mp4,
            last_frame_png: rendered.last_frame_png,
            width: rendered.width,
            height: rendered.height,
            fps: FPS,
            duration_secs: rendered.duration_secs,
            has_audio: rendered.has_audio,
            usage_tokens,
            container: job.output_format,
        }))
    }
}

fn scene_for<'a>(operation: Operation, prompt: &'a str, inputs: &'a Inputs) -> Scene<'a> {
    let image = |i: usize| inputs.images.get(i).map(Vec::as_slice).unwrap_or(&[]);
    let video = |i: usize| inputs.videos.get(i).map(Vec::as_slice).unwrap_or(&[]);
    match operation {
        Operation::TextToVideo => Scene::Pattern { prompt },
        Operation::ImageToVideo => Scene::ZoomPan { image: image(0) },
        Operation::StartEndToVideo => Scene::Crossfade {
            start: image(0),
            end: image(1),
        },
        Operation::ReferenceToVideo => Scene::Sequence {
            prompt,
            images: inputs.images.iter().map(Vec::as_slice).collect(),
            videos: inputs.videos.iter().map(Vec::as_slice).collect(),
        },
        Operation::VideoToVideo => Scene::Recolour { video: video(0) },
        Operation::VideoExtension => Scene::Continue { video: video(0) },
    }
}

fn media_error(e: seedgate_media::MediaError) -> ProviderError {
    ProviderError::permanent(e.code(), e.to_string())
}

fn not_upstream() -> ProviderError {
    ProviderError::permanent(
        "not_an_upstream_task",
        "sandbox tasks finish when submitted",
    )
}

impl Provider for Sandbox {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn is_local(&self) -> bool {
        true
    }

    fn can_serve(&self, _job: &VideoJob) -> bool {
        true
    }

    fn submit<'a>(
        &'a self,
        request: SubmitRequest<'a>,
    ) -> BoxFuture<'a, Result<Submission, ProviderError>> {
        Box::pin(self.play(request))
    }

    fn poll<'a>(
        &'a self,
        _upstream: &'a UpstreamRef,
    ) -> BoxFuture<'a, Result<UpstreamStatus, ProviderError>> {
        Box::pin(async { Err(not_upstream()) })
    }

    fn cancel<'a>(
        &'a self,
        _upstream: &'a UpstreamRef,
    ) -> BoxFuture<'a, Result<CancelOutcome, ProviderError>> {
        Box::pin(async { Ok(CancelOutcome::NotCancellable) })
    }

    fn find_submitted<'a>(
        &'a self,
        _task_id: &'a TaskId,
        _job: &'a VideoJob,
        _channel: &'a ChannelId,
        _since_ms: i64,
    ) -> BoxFuture<'a, Result<Vec<UpstreamRef>, ProviderError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}
