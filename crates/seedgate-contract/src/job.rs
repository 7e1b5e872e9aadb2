//! The typed, validated request. Everything after parsing takes a [`VideoJob`] and never
//! re-checks strings. The server persists it as JSON, so its serialized form is stable: the
//! enums use their wire names and `tests` prove the round trip.

use std::fmt;
use std::str::FromStr;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::catalog::Catalog;
use crate::drafts::DraftSource;
use crate::scenario::SandboxScenario;

/// A string that is not one of an enum's wire names (`"8k"` as a [`Resolution`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind}")]
pub struct UnknownVariant {
    /// What was being parsed: `"operation"`, `"resolution"` or `"aspect ratio"`.
    pub kind: &'static str,
    /// The rejected text.
    pub value: String,
}

/// Implements `as_str`, `FromStr` and `Display` from one table of wire names, so the three can
/// never disagree with each other or with the serde names (a test checks the latter).
macro_rules! wire_names {
    ($ty:ident, $kind:literal, [$($variant:ident => $name:literal),+ $(,)?]) => {
        impl $ty {
            /// The name on the wire and in the catalog.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }

        impl FromStr for $ty {
            type Err = UnknownVariant;

            /// Exact, case-sensitive wire names only: a near miss is an error, never a guess.
            fn from_str(s: &str) -> Result<Self, UnknownVariant> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownVariant { kind: $kind, value: s.to_owned() }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// The six workflows of the Seedance 2.0 family (docs/requests.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// A prompt alone.
    TextToVideo,
    /// A prompt and a first frame (`image_url`).
    ImageToVideo,
    /// A prompt, a first frame and a last frame.
    StartEndToVideo,
    /// A prompt and reference images and/or videos, optionally audio.
    ReferenceToVideo,
    /// A prompt and a video to edit.
    VideoToVideo,
    /// Continues a video: one of the account's tasks or a URL.
    VideoExtension,
}

wire_names!(Operation, "operation", [
    TextToVideo => "text-to-video",
    ImageToVideo => "image-to-video",
    StartEndToVideo => "start-end-to-video",
    ReferenceToVideo => "reference-to-video",
    VideoToVideo => "video-to-video",
    VideoExtension => "video-extension",
]);

impl Operation {
    /// Every operation, in the order docs/requests.md lists them.
    pub const ALL: [Operation; 6] = [
        Operation::TextToVideo,
        Operation::ImageToVideo,
        Operation::StartEndToVideo,
        Operation::ReferenceToVideo,
        Operation::VideoToVideo,
        Operation::VideoExtension,
    ];

    /// Whether a request of this operation may carry a video (a source video, a source task or
    /// reference videos), and so count input tokens.
    pub fn may_take_video(self) -> bool {
        matches!(
            self,
            Operation::ReferenceToVideo | Operation::VideoToVideo | Operation::VideoExtension
        )
    }
}

/// Output resolution tiers, ordered from smallest to largest.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum Resolution {
    /// 480p.
    #[serde(rename = "480p")]
    P480,
    /// 720p, the default of the built-in models.
    #[serde(rename = "720p")]
    P720,
    /// 1080p.
    #[serde(rename = "1080p")]
    P1080,
    /// 4k (seedance-2.0 only in the built-in catalog).
    #[serde(rename = "4k")]
    K4,
}

wire_names!(Resolution, "resolution", [
    P480 => "480p",
    P720 => "720p",
    P1080 => "1080p",
    K4 => "4k",
]);

impl Resolution {
    /// Every tier, smallest first.
    pub const ALL: [Resolution; 4] = [
        Resolution::P480,
        Resolution::P720,
        Resolution::P1080,
        Resolution::K4,
    ];
}

/// The result file's container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// MP4 (ISO base media), what every model makes.
    #[default]
    Mp4,
    /// QuickTime MOV, where the model's entry offers it.
    Mov,
}

wire_names!(OutputFormat, "output format", [
    Mp4 => "mp4",
    Mov => "mov",
]);

impl OutputFormat {
    /// Whether this is the default, which stored jobs and echoes leave out.
    pub fn is_mp4(&self) -> bool {
        *self == OutputFormat::Mp4
    }

    /// The result file's media type.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Mp4 => "video/mp4",
            OutputFormat::Mov => "video/quicktime",
        }
    }
}

/// Output aspect ratio (width:height); `Adaptive` lets the model choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum AspectRatio {
    /// 16:9 landscape.
    #[serde(rename = "16:9")]
    W16H9,
    /// 4:3.
    #[serde(rename = "4:3")]
    W4H3,
    /// 1:1 square.
    #[serde(rename = "1:1")]
    W1H1,
    /// 3:4.
    #[serde(rename = "3:4")]
    W3H4,
    /// 9:16 portrait.
    #[serde(rename = "9:16")]
    W9H16,
    /// 21:9 cinema.
    #[serde(rename = "21:9")]
    W21H9,
    /// Follows the input: the fixed ratio closest to the first image or video input, or 16:9
    /// with a prompt alone ([`VideoJob::output_ratio`]).
    #[serde(rename = "adaptive")]
    Adaptive,
}

wire_names!(AspectRatio, "aspect ratio", [
    W16H9 => "16:9",
    W4H3 => "4:3",
    W1H1 => "1:1",
    W3H4 => "3:4",
    W9H16 => "9:16",
    W21H9 => "21:9",
    Adaptive => "adaptive",
]);

impl AspectRatio {
    /// What a request naming no ratio gets, whatever its operation: the platform's documented
    /// default for Seedance.
    pub const DEFAULT: AspectRatio = AspectRatio::Adaptive;

    /// What `adaptive` makes with a prompt alone: Seedance follows an image or video input
    /// and otherwise keeps its default shape for text, 16:9.
    pub const ADAPTIVE_WITHOUT_INPUT: AspectRatio = AspectRatio::W16H9;

    /// The six ratios with a size of their own in the catalog.
    pub const FIXED: [AspectRatio; 6] = [
        AspectRatio::W16H9,
        AspectRatio::W4H3,
        AspectRatio::W1H1,
        AspectRatio::W3H4,
        AspectRatio::W9H16,
        AspectRatio::W21H9,
    ];

    /// Every ratio the API accepts.
    pub const ALL: [AspectRatio; 7] = [
        AspectRatio::W16H9,
        AspectRatio::W4H3,
        AspectRatio::W1H1,
        AspectRatio::W3H4,
        AspectRatio::W9H16,
        AspectRatio::W21H9,
        AspectRatio::Adaptive,
    ];

    /// Width over height of a fixed ratio; `None` for `Adaptive`. Only used to compare shapes,
    /// never for sizes or money (those come from the catalog's integer table).
    pub fn ratio(self) -> Option<f64> {
        Some(match self {
            AspectRatio::W16H9 => 16.0 / 9.0,
            AspectRatio::W4H3 => 4.0 / 3.0,
            AspectRatio::W1H1 => 1.0,
            AspectRatio::W3H4 => 3.0 / 4.0,
            AspectRatio::W9H16 => 9.0 / 16.0,
            AspectRatio::W21H9 => 21.0 / 9.0,
            AspectRatio::Adaptive => return None,
        })
    }
}

/// The upstream's processing tier. Only `default` exists for Seedance 2.0 here: the platform
/// refuses `flex` for these models, so a job never carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceTier {
    /// The upstream's normal, online tier.
    Default,
}

wire_names!(ServiceTier, "service tier", [
    Default => "default",
]);

/// The requested length. Persisted as `{"seconds":5}` or `"model_decides"`; on the wire the
/// request says `5` or `-1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurationRequest {
    /// Whole seconds within the model's range.
    Seconds(u32),
    /// `duration: -1`: the model picks; reserved at the model's maximum, settled on actual.
    ModelDecides,
}

/// Base64 as clients send it in data: URIs: the standard alphabet, padding optional (some
/// encoders drop it, and it carries no information).
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The parts of a `data:<mime>[;param]*;base64,<payload>` URI.
pub(crate) struct DataUri<'a> {
    /// The declared media type, as sent (compare case-insensitively).
    pub mime: &'a str,
    /// The base64 text.
    pub payload: &'a str,
}

/// What follows the `data:` of a data URI, whatever the scheme's case (RFC 3986 §3.1);
/// `None` if `uri` is not one.
pub(crate) fn strip_data_scheme(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_at_checked("data:".len())?;
    scheme.eq_ignore_ascii_case("data:").then_some(rest)
}

impl<'a> DataUri<'a> {
    /// Splits a base64 data URI; `None` if it is not one (percent-encoded data URIs included:
    /// media is binary, so only base64 makes sense).
    pub fn parse(uri: &'a str) -> Option<Self> {
        let rest = strip_data_scheme(uri)?;
        let (header, payload) = rest.split_once(',')?;
        let mut parts = header.split(';');
        let mime = parts.next().filter(|m| m.contains('/'))?;
        let is_base64 = parts
            .next_back()
            .is_some_and(|p| p.eq_ignore_ascii_case("base64"));
        is_base64.then_some(DataUri { mime, payload })
    }
}

/// A media input: an http(s) URL, a data: URI whose form, type, size and (for images)
/// dimensions the parser checked, or (images only) an `asset://` reference to a material of
/// the platform's library, checked for its syntax and resolved by the server. Only the parser
/// builds one from request text, and always with a lower-case scheme (`https://`, `http://`,
/// `data:`, `asset://`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MediaInput(String);

impl MediaInput {
    /// Wraps a value the parser has already checked and normalised.
    pub(crate) fn checked(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Inline bytes the server already holds and checked (a material asset's, when it hands
    /// one to a provider).
    pub fn inline(mime: &str, bytes: &[u8]) -> Self {
        Self(format!("data:{mime};base64,{}", BASE64.encode(bytes)))
    }

    /// The URL, data URI or asset reference as the client sent it, its scheme in lower case.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The material id of an `asset://` reference (`asset-20260720123456-abcde`): nothing to
    /// fetch, the server looks it up. `None` for URLs and data: URIs.
    pub fn asset_id(&self) -> Option<&str> {
        self.0.strip_prefix("asset://")
    }

    /// Whether the bytes are inline (no fetch needed).
    pub fn is_data_uri(&self) -> bool {
        self.0.starts_with("data:")
    }

    /// A data: URI's declared type and decoded size, read without decoding it; `None` for
    /// URLs and asset references.
    pub fn inline_size(&self) -> Option<(&str, u64)> {
        let uri = DataUri::parse(&self.0)?;
        let digits = uri.payload.trim_end_matches('=').len() as u64;
        Some((uri.mime, digits * 3 / 4))
    }

    /// The decoded bytes of a data: URI; `None` for URLs.
    pub fn data_bytes(&self) -> Option<Vec<u8>> {
        let uri = DataUri::parse(&self.0)?;
        BASE64.decode(uri.payload).ok()
    }
}

/// Media inputs by role. The parser fills only the slots the operation takes (docs/requests.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInputs {
    /// image-to-video's first frame (`image_url` / `image`).
    pub image: Option<MediaInput>,
    /// start-end-to-video's first frame.
    pub start_image: Option<MediaInput>,
    /// start-end-to-video's last frame.
    pub end_image: Option<MediaInput>,
    /// reference-to-video's `reference_images` (alias `image_urls`).
    pub reference_images: Vec<MediaInput>,
    /// reference-to-video's `video_urls`.
    pub reference_videos: Vec<MediaInput>,
    /// reference-to-video's `audio_urls`; never without a visual reference.
    pub reference_audios: Vec<MediaInput>,
    /// video-to-video's source, or video-extension's when given as a URL (`video_url` / `video`).
    pub video: Option<MediaInput>,
    /// video-extension of one of the account's own tasks (`task_id`); the server checks that
    /// it exists, belongs to the account and succeeded.
    pub source_task_id: Option<String>,
}

/// A request that passed every rule of the contract: what gets priced, stored and rendered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoJob {
    /// A model id of the catalog.
    pub model: String,
    /// The workflow; decides which `inputs` are filled.
    pub operation: Operation,
    /// Always present except, optionally, for video-extension.
    pub prompt: Option<String>,
    /// One of the model's resolutions.
    pub resolution: Resolution,
    /// One of the model's ratios; `Adaptive` (the default) for any operation.
    pub aspect_ratio: AspectRatio,
    /// Seconds within the model's range, or model decides.
    pub duration: DurationRequest,
    /// -1 ..= 4294967295 (Ark's range); -1 asks for a random seed.
    pub seed: Option<i64>,
    /// Whether the output has an audio track.
    pub generate_audio: bool,
    /// Whether the provider adds its watermark.
    pub watermark: bool,
    /// An http(s) URL to notify when the task ends, its scheme in lower case.
    pub callback_url: Option<String>,
    /// The media, by role.
    pub inputs: JobInputs,
    // `serde(default)` on the fields below: jobs stored before they existed load as "not
    // asked for".
    /// Whether the client wants the last frame of the video returned with the result.
    #[serde(default)]
    pub return_last_frame: bool,
    /// The tier the client named; `None` leaves the upstream's default.
    #[serde(default)]
    pub service_tier: Option<ServiceTier>,
    /// Seconds (3,600–259,200) the client allows the upstream to finish the task.
    #[serde(default)]
    pub execution_expires_after: Option<u32>,
    /// Upstream queue priority, 0–9.
    #[serde(default)]
    pub priority: Option<u8>,
    /// A stable id of the client's end user (1–64 characters) for the upstream's abuse
    /// tracing: `safety_identifier`, or `user` when only that was sent.
    #[serde(default)]
    pub safety_identifier: Option<String>,
    /// The result's container; left out when MP4, so a job stored before it reads the same.
    #[serde(default, skip_serializing_if = "OutputFormat::is_mp4")]
    pub output_format: OutputFormat,
    /// A draft: a preview at the model's draft resolution, which a final can render from.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draft: bool,
    /// For a final: the draft it renders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_of: Option<DraftSource>,
    /// What a test key asked the sandbox to play out (`Seedgate-Sandbox-Scenario`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<SandboxScenario>,
}

impl VideoJob {
    /// Whether any input is a video (a video URL, reference videos or a source task): such
    /// requests are billed at the model's video-input rate and pay for input tokens.
    pub fn has_video_input(&self) -> bool {
        self.inputs.video.is_some()
            || !self.inputs.reference_videos.is_empty()
            || self.inputs.source_task_id.is_some()
    }

    /// Whether any input is an image or a video, i.e. something `adaptive` can follow.
    pub fn has_visual_input(&self) -> bool {
        let i = &self.inputs;
        self.has_video_input()
            || i.image.is_some()
            || i.start_image.is_some()
            || i.end_image.is_some()
            || !i.reference_images.is_empty()
    }

    /// The ratio the video is made at. The quote, the reservation and every provider take it
    /// from here, so what is priced is what is made: a fixed ratio is itself; `adaptive` is
    /// the fixed ratio closest to `input_shape` (the first image input's, else the first
    /// video's) and [`AspectRatio::ADAPTIVE_WITHOUT_INPUT`] without a visual input. `None`
    /// when it follows an input whose shape is not known yet (a URL not fetched).
    pub fn output_ratio(&self, input_shape: Option<(u32, u32)>) -> Option<AspectRatio> {
        match self.aspect_ratio {
            AspectRatio::Adaptive if !self.has_visual_input() => {
                Some(AspectRatio::ADAPTIVE_WITHOUT_INPUT)
            }
            AspectRatio::Adaptive => input_shape.map(|(w, h)| Catalog::closest_ratio(w, h)),
            fixed => Some(fixed),
        }
    }

    /// The input `adaptive` follows and whether it is a video: the first image in the order
    /// the operation lists them, else the first video. `None` without one, and for a source
    /// task, which is no URL.
    pub fn first_visual_input(&self) -> Option<(&MediaInput, bool)> {
        let i = &self.inputs;
        let image = i
            .image
            .iter()
            .chain(&i.start_image)
            .chain(&i.end_image)
            .chain(&i.reference_images)
            .next();
        let video = || i.video.iter().chain(&i.reference_videos).next();
        image
            .map(|m| (m, false))
            .or_else(|| video().map(|m| (m, true)))
    }

    /// What was asked for, as the task object echoes it; the server adds the summary of the
    /// inputs, which it measures.
    pub fn echo(&self) -> RequestEcho {
        RequestEcho {
            resolution: self.resolution,
            aspect_ratio: self.aspect_ratio,
            duration: match self.duration {
                DurationRequest::Seconds(s) => i64::from(s),
                DurationRequest::ModelDecides => -1,
            },
            generate_audio: self.generate_audio,
            watermark: self.watermark,
            seed: self.seed,
            output_format: self.output_format,
            draft: self.draft,
            draft_task_id: self.final_of.as_ref().map(|source| source.task_id.clone()),
            prompt: self.prompt.clone(),
            inputs: Vec::new(),
            return_last_frame: self.return_last_frame,
            service_tier: self.service_tier,
            execution_expires_after: self.execution_expires_after,
            priority: self.priority,
            safety_identifier: self.safety_identifier.clone(),
            callback_url: self.callback_url.clone(),
            webhook_format: None,
        }
    }
}

/// The `request` of a task object: what was asked for after defaults were applied. Stored with
/// the task, so its serialized form is stable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RequestEcho {
    /// The output tier.
    pub resolution: Resolution,
    /// The output shape; `adaptive` follows the input.
    pub aspect_ratio: AspectRatio,
    /// Seconds, or -1 when the model decides.
    pub duration: i64,
    /// Whether the output has an audio track.
    pub generate_audio: bool,
    /// Whether the provider adds its watermark.
    pub watermark: bool,
    /// The seed, when one was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// The result's container, shown when not MP4.
    #[serde(default, skip_serializing_if = "OutputFormat::is_mp4")]
    pub output_format: OutputFormat,
    /// True for a draft, shown only then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draft: bool,
    /// For a final: the draft it renders, shown only then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_task_id: Option<String>,
    /// The prompt; absent only for a video-extension sent without one, and for tasks created
    /// before the task object carried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The inputs, each summed up (never an inline input's bytes), in the order the operation
    /// uses them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputSummary>,
    /// True when the last frame was asked for with the result (it is always kept).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub return_last_frame: bool,
    /// The tier named, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
    /// Seconds the upstream was allowed, when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_expires_after: Option<u32>,
    /// The upstream queue priority, when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// The end user's id for abuse tracing, when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_identifier: Option<String>,
    /// Where the task's webhook goes, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// The shape its webhooks take: absent for this platform's task object, `openrouter` for
    /// OpenRouter's `video.generation.*` events (a task made on `/api/v1/videos`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_format: Option<WebhookFormat>,
}

/// A webhook shape other than this platform's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum WebhookFormat {
    /// OpenRouter's event envelope, signed with `X-OpenRouter-Signature`.
    #[serde(rename = "openrouter")]
    OpenRouter,
}

/// One input of a task as its task object shows it: what it is and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InputSummary {
    /// The request field it came in: `image_url`, `start_image`, `end_image`,
    /// `reference_images`, `video_url`, `video_urls`, `audio_urls`, or `task_id` for the task
    /// a video-extension continues.
    pub field: String,
    /// `image`, `video` or `audio`.
    pub kind: String,
    /// `url`, `data` (sent inline), `asset` (a material of the library) or `task` (one of this
    /// key's tasks).
    pub source: String,
    /// The URL, `asset://` reference or task id as sent; absent for inline data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Inline data: the media type it declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    /// Inline data: its size once decoded, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Inline images: pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Inline images: pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Inline video and audio: seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_name<T: Serialize>(value: T) -> String {
        serde_json::to_value(value)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn wire_names_match_serde_names_and_parse_back() {
        for op in Operation::ALL {
            assert_eq!(serde_name(op), op.as_str());
            assert_eq!(op.as_str().parse::<Operation>(), Ok(op));
            assert_eq!(op.to_string(), op.as_str());
        }
        for r in Resolution::ALL {
            assert_eq!(serde_name(r), r.as_str());
            assert_eq!(r.as_str().parse::<Resolution>(), Ok(r));
        }
        for a in AspectRatio::ALL {
            assert_eq!(serde_name(a), a.as_str());
            assert_eq!(a.as_str().parse::<AspectRatio>(), Ok(a));
        }
        assert_eq!(serde_name(ServiceTier::Default), "default");
        assert_eq!("default".parse::<ServiceTier>(), Ok(ServiceTier::Default));
        assert!("flex".parse::<ServiceTier>().is_err());
    }

    #[test]
    fn near_misses_do_not_parse() {
        let err = "720P".parse::<Resolution>().unwrap_err();
        assert_eq!(err.to_string(), "`720P` is not a valid resolution");
        assert!("text_to_video".parse::<Operation>().is_err());
        assert!("16x9".parse::<AspectRatio>().is_err());
    }

    #[test]
    fn fixed_ratios_have_a_ratio_and_adaptive_has_none() {
        assert!(AspectRatio::FIXED.iter().all(|a| a.ratio().is_some()));
        assert_eq!(AspectRatio::Adaptive.ratio(), None);
        assert_eq!(AspectRatio::ALL.len(), AspectRatio::FIXED.len() + 1);
    }

    #[test]
    fn duration_request_persists_and_round_trips() {
        for d in [DurationRequest::Seconds(5), DurationRequest::ModelDecides] {
            let text = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<DurationRequest>(&text).unwrap(), d);
        }
        assert_eq!(
            serde_json::to_string(&DurationRequest::Seconds(5)).unwrap(),
            r#"{"seconds":5}"#
        );
    }

    #[test]
    fn an_inline_inputs_size_is_read_from_its_base64_length() {
        for len in 0..8 {
            let bytes = vec![7u8; len];
            let input = MediaInput::inline("image/png", &bytes);
            assert_eq!(input.inline_size(), Some(("image/png", len as u64)));
            let unpadded = MediaInput::checked(input.as_str().trim_end_matches('='));
            assert_eq!(unpadded.inline_size(), Some(("image/png", len as u64)));
        }
        assert_eq!(
            MediaInput::checked("https://e.com/a.png").inline_size(),
            None
        );
    }

    #[test]
    fn data_uri_parts() {
        let uri = DataUri::parse("data:image/png;name=a.png;BASE64,AAAA").unwrap();
        assert_eq!((uri.mime, uri.payload), ("image/png", "AAAA"));
        assert!(DataUri::parse("data:image/png,AAAA").is_none());
        assert!(DataUri::parse("data:;base64,AAAA").is_none());
        assert!(DataUri::parse("https://e.com/a.png").is_none());
    }

    #[test]
    fn data_bytes_decode_with_or_without_padding() {
        assert_eq!(
            MediaInput::checked("data:image/png;base64,aGk=").data_bytes(),
            Some(b"hi".to_vec())
        );
        assert_eq!(
            MediaInput::checked("data:image/png;base64,aGk").data_bytes(),
            Some(b"hi".to_vec())
        );
        assert_eq!(MediaInput::checked("https://e.com/a").data_bytes(), None);
        assert!(!MediaInput::checked("https://e.com/a").is_data_uri());
    }

    #[test]
    fn video_inputs_are_visual_inputs() {
        let mut job = VideoJob {
            model: "m".into(),
            operation: Operation::VideoExtension,
            prompt: None,
            resolution: Resolution::P720,
            aspect_ratio: AspectRatio::Adaptive,
            duration: DurationRequest::Seconds(5),
            seed: None,
            generate_audio: true,
            watermark: false,
            callback_url: None,
            inputs: JobInputs::default(),
            return_last_frame: false,
            service_tier: None,
            execution_expires_after: None,
            priority: None,
            safety_identifier: None,
            output_format: OutputFormat::Mp4,
            draft: false,
            final_of: None,
            scenario: None,
        };
        assert!(!job.has_visual_input());
        job.inputs.source_task_id = Some("vtask_x".into());
        assert!(job.has_video_input() && job.has_visual_input());
        job.inputs = JobInputs {
            reference_images: vec![MediaInput::checked("https://e.com/a.png")],
            ..JobInputs::default()
        };
        assert!(!job.has_video_input() && job.has_visual_input());
    }

    #[test]
    fn asset_references_name_their_material() {
        let asset = MediaInput::checked("asset://asset-20260720123456-abcde");
        assert_eq!(asset.asset_id(), Some("asset-20260720123456-abcde"));
        let inline = MediaInput::inline("image/png", b"\x89PNG");
        assert_eq!(inline.data_bytes().unwrap(), b"\x89PNG");
        assert!(inline.is_data_uri() && inline.asset_id().is_none());
        assert!(!asset.is_data_uri());
        assert_eq!(asset.data_bytes(), None);
        assert_eq!(MediaInput::checked("https://e.com/a").asset_id(), None);
    }
}
