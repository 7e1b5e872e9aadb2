//! A job's media inputs, by the field the client sent them in. Every provider sees its inputs
//! through here: the create path refuses targets the outbound guard can never reach, and the
//! engine fetches and checks each input before any provider is asked to do anything.

use seedgate_contract::{
    check_image_dimensions, Catalog, ClipLimits, InputSummary, MediaInput, VideoJob,
};

use crate::fetch::{Fetcher, MediaKind};

/// An input that failed its checks. Always final: the input is what it is, so the task fails
/// uncharged with `code`. A type of its own, so the checks sit below the providers that run them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct InputError {
    pub code: String,
    pub message: String,
}

impl InputError {
    fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// One media input: the request field it came in, what it must be, and its value.
pub struct NamedInput<'a> {
    pub field: &'static str,
    pub kind: MediaKind,
    pub input: &'a MediaInput,
}

/// Every media input of a job, in the order the operation uses them.
pub fn media_inputs(job: &VideoJob) -> Vec<NamedInput<'_>> {
    let i = &job.inputs;
    let slots: [(&'static str, MediaKind, Vec<&MediaInput>); 7] = [
        ("image_url", MediaKind::Image, i.image.iter().collect()),
        (
            "start_image",
            MediaKind::Image,
            i.start_image.iter().collect(),
        ),
        ("end_image", MediaKind::Image, i.end_image.iter().collect()),
        (
            "reference_images",
            MediaKind::Image,
            i.reference_images.iter().collect(),
        ),
        ("video_url", MediaKind::Video, i.video.iter().collect()),
        (
            "video_urls",
            MediaKind::Video,
            i.reference_videos.iter().collect(),
        ),
        (
            "audio_urls",
            MediaKind::Audio,
            i.reference_audios.iter().collect(),
        ),
    ];
    slots
        .into_iter()
        .flat_map(|(field, kind, inputs)| {
            inputs
                .into_iter()
                .map(move |input| NamedInput { field, kind, input })
        })
        .collect()
}

/// Each input of a job as its task object shows it: the field, kind and source, the URL as
/// sent (never an inline input's bytes), and for inline inputs their type, size and, decoded
/// here, their pixels or seconds. Blocking: decoding and probing inline media takes a while.
pub fn input_summaries(job: &VideoJob) -> Vec<InputSummary> {
    let mut summaries: Vec<InputSummary> = media_inputs(job)
        .into_iter()
        .map(|named| {
            let kind = match named.kind {
                MediaKind::Image => "image",
                MediaKind::Video => "video",
                MediaKind::Audio => "audio",
            };
            let value = named.input.as_str();
            let mut summary = InputSummary {
                field: named.field.to_owned(),
                kind: kind.to_owned(),
                source: if named.input.asset_id().is_some() {
                    "asset"
                } else if named.input.is_data_uri() {
                    "data"
                } else {
                    "url"
                }
                .to_owned(),
                url: (!named.input.is_data_uri()).then(|| value.to_owned()),
                mime: None,
                bytes: None,
                width: None,
                height: None,
                duration: None,
            };
            if let Some((mime, bytes)) = named.input.inline_size() {
                summary.mime = Some(mime.to_owned());
                summary.bytes = Some(bytes);
                measure(&mut summary, named.kind, named.input);
            }
            summary
        })
        .collect();
    if let Some(task) = &job.inputs.source_task_id {
        summaries.push(InputSummary {
            field: "task_id".into(),
            kind: "video".into(),
            source: "task".into(),
            url: Some(task.clone()),
            mime: None,
            bytes: None,
            width: None,
            height: None,
            duration: None,
        });
    }
    summaries
}

/// Pixels of an inline image, seconds of an inline video or audio, where they can be read.
fn measure(summary: &mut InputSummary, kind: MediaKind, input: &MediaInput) {
    let Some(bytes) = input.data_bytes() else {
        return;
    };
    match kind {
        MediaKind::Image => {
            if let Ok((width, height)) = seedgate_media::image_dimensions(&bytes) {
                (summary.width, summary.height) = (Some(width), Some(height));
            }
        }
        MediaKind::Video => {
            if let Ok(info) = seedgate_media::probe_mp4(&bytes) {
                (summary.width, summary.height) = (Some(info.width), Some(info.height));
                summary.duration = Some(info.duration_secs);
            }
        }
        MediaKind::Audio => summary.duration = seedgate_media::audio_duration(&bytes).ok(),
    }
}

/// A job's inputs, fetched and held to the upstream's rules; the bytes only when kept.
#[derive(Default)]
pub struct FetchedInputs {
    /// In the order of [`media_inputs`]: first frame, start, end, then references.
    pub images: Vec<Vec<u8>>,
    /// The source video, then the reference videos.
    pub videos: Vec<Vec<u8>>,
    /// The reference audio files.
    pub audios: Vec<Vec<u8>>,
}

/// Slack on input lengths: containers round their durations.
const LENGTH_TOLERANCE_S: f64 = 0.05;

/// The clip lengths `model`'s entry allows (Seedance 2.0's for a model the catalog no longer
/// has).
pub fn clip_limits(catalog: &Catalog, model: &str) -> ClipLimits {
    catalog
        .model(model)
        .map(|spec| spec.input_clips)
        .unwrap_or_default()
}

/// Fetches every media input through the guarded client and holds it to the upstream's input
/// rules (docs/requests.md): images JPEG, PNG or WebP of 300–6000 px a side and aspect
/// 0.4–2.5; videos MP4 or MOV, and reference audio WAV, MP3 or AAC/M4A, each as long as
/// `clips` allows (2–15 s on Seedance 2.0), and no more reference video, or reference audio,
/// in all than it allows (15 s). Any failure is permanent: the task fails uncharged with the
/// input's code before a provider is asked to do anything. With `keep` false the bytes are
/// dropped once checked (an upstream fetches the URL itself).
pub async fn fetch_checked(
    fetcher: &Fetcher,
    job: &VideoJob,
    clips: ClipLimits,
    keep: bool,
) -> Result<FetchedInputs, InputError> {
    let mut fetched = FetchedInputs::default();
    let (mut reference_video_s, mut reference_audio_s) = (0.0, 0.0);
    for named in media_inputs(job) {
        let field = named.field;
        let refuse = |code: &str, what: &dyn std::fmt::Display| {
            InputError::new(code, format!("input `{field}`: {what}"))
        };
        let bytes = fetcher
            .fetch(named.input, named.kind)
            .await
            .map_err(|e| refuse(e.code(), &e))?;
        let seconds = check_input(field, named.kind, &bytes, clips)?;
        match named.kind {
            MediaKind::Image if keep => fetched.images.push(bytes),
            MediaKind::Video => {
                if field == "video_urls" {
                    reference_video_s += seconds;
                }
                if keep {
                    fetched.videos.push(bytes);
                }
            }
            MediaKind::Audio => {
                reference_audio_s += seconds;
                if keep {
                    fetched.audios.push(bytes);
                }
            }
            MediaKind::Image => {}
        }
    }
    for (field, kind, total) in [
        ("video_urls", "video", reference_video_s),
        ("audio_urls", "audio", reference_audio_s),
    ] {
        let most = clips.total_seconds;
        if total > f64::from(most) + LENGTH_TOLERANCE_S {
            return Err(InputError::new(
                "invalid_media_duration",
                format!(
                    "input `{field}`: the reference {kind} lasts {total:.1} s in all; at most {most} s is allowed"
                ),
            ));
        }
    }
    Ok(fetched)
}

/// Holds one input to the upstream's rules for its kind (the same for a job's inputs and for
/// material assets), a clip to `clips`; returns how long it lasts (0 for an image).
pub fn check_input(
    field: &str,
    kind: MediaKind,
    bytes: &[u8],
    clips: ClipLimits,
) -> Result<f64, InputError> {
    let refuse = |code: &str, what: &dyn std::fmt::Display| {
        InputError::new(code, format!("input `{field}`: {what}"))
    };
    match kind {
        MediaKind::Image => {
            if content_type(kind, bytes).is_none() {
                return Err(refuse(
                    "input_image_unreadable",
                    &"not a JPEG, PNG or WebP image",
                ));
            }
            check_image_dimensions(field, bytes).map_err(|e| InputError::new(e.code, e.message))?;
            Ok(0.0)
        }
        MediaKind::Video => {
            let seconds = seedgate_media::probe_mp4(bytes)
                .map_err(|e| match e {
                    // Names the codec and what decoding it needs.
                    seedgate_media::MediaError::UnsupportedVideo(_) => refuse(e.code(), &e),
                    _ => refuse(e.code(), &"not a readable MP4 or MOV video"),
                })?
                .duration_secs;
            check_length(field, "video", seconds, clips)?;
            Ok(seconds)
        }
        MediaKind::Audio => {
            let seconds =
                seedgate_media::audio_duration(bytes).map_err(|e| refuse(e.code(), &e))?;
            check_length(field, "audio", seconds, clips)?;
            Ok(seconds)
        }
    }
}

fn check_length(
    field: &str,
    kind: &str,
    seconds: f64,
    clips: ClipLimits,
) -> Result<(), InputError> {
    let (min, max) = (clips.min_seconds, clips.max_seconds);
    if seconds + LENGTH_TOLERANCE_S < f64::from(min)
        || seconds - LENGTH_TOLERANCE_S > f64::from(max)
    {
        return Err(InputError::new(
            "invalid_media_duration",
            format!(
                "input `{field}`: the {kind} lasts {seconds:.1} s; each must last {min}–{max} s"
            ),
        ));
    }
    Ok(())
}

/// The media type of checked bytes of `kind`, by their signatures: for images, None unless a
/// format the upstream takes (JPEG, PNG, WebP).
pub fn content_type(kind: MediaKind, b: &[u8]) -> Option<&'static str> {
    let riff = |form: &[u8]| b.len() >= 12 && b.starts_with(b"RIFF") && &b[8..12] == form;
    match kind {
        MediaKind::Image if b.starts_with(b"\x89PNG\r\n\x1a\n") => Some("image/png"),
        MediaKind::Image if b.starts_with(&[0xFF, 0xD8, 0xFF]) => Some("image/jpeg"),
        MediaKind::Image if riff(b"WEBP") => Some("image/webp"),
        MediaKind::Image => None,
        MediaKind::Video if b.len() >= 12 && &b[8..12] == b"qt  " => Some("video/quicktime"),
        MediaKind::Video => Some("video/mp4"),
        MediaKind::Audio if riff(b"WAVE") => Some("audio/wav"),
        MediaKind::Audio if b.starts_with(b"ID3") || b.starts_with(&[0xFF, 0xFB]) => {
            Some("audio/mpeg")
        }
        MediaKind::Audio => Some("audio/mp4"),
    }
}
