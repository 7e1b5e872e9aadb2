//! The typed, validated request. Everything after parsing takes a [`VideoJob`] and never
//! re-checks strings; it is persisted as JSON, so its serialized form is stable.

use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The six workflows of the Seedance 2.0 family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    TextToVideo,
    ImageToVideo,
    StartEndToVideo,
    ReferenceToVideo,
    VideoToVideo,
    VideoExtension,
}

impl Operation {
    pub const ALL: [Operation; 6] = [
        Operation::TextToVideo,
        Operation::ImageToVideo,
        Operation::StartEndToVideo,
        Operation::ReferenceToVideo,
        Operation::VideoToVideo,
        Operation::VideoExtension,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::TextToVideo => "text-to-video",
            Operation::ImageToVideo => "image-to-video",
            Operation::StartEndToVideo => "start-end-to-video",
            Operation::ReferenceToVideo => "reference-to-video",
            Operation::VideoToVideo => "video-to-video",
            Operation::VideoExtension => "video-extension",
        }
    }

    /// Whether the operation always has an image or video to follow (so `adaptive` makes sense).
    pub fn has_visual_input(self) -> bool {
        self != Operation::TextToVideo
    }
}

impl FromStr for Operation {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Operation::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or(())
    }
}

/// Output resolution tiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Resolution {
    #[serde(rename = "480p")]
    P480,
    #[serde(rename = "720p")]
    P720,
    #[serde(rename = "1080p")]
    P1080,
    #[serde(rename = "4k")]
    K4,
}

impl Resolution {
    pub const ALL: [Resolution; 4] = [
        Resolution::P480,
        Resolution::P720,
        Resolution::P1080,
        Resolution::K4,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::P480 => "480p",
            Resolution::P720 => "720p",
            Resolution::P1080 => "1080p",
            Resolution::K4 => "4k",
        }
    }
}

impl FromStr for Resolution {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Resolution::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(())
    }
}

/// Output aspect ratio; `Adaptive` follows the input image or video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AspectRatio {
    #[serde(rename = "16:9")]
    W16H9,
    #[serde(rename = "4:3")]
    W4H3,
    #[serde(rename = "1:1")]
    W1H1,
    #[serde(rename = "3:4")]
    W3H4,
    #[serde(rename = "9:16")]
    W9H16,
    #[serde(rename = "21:9")]
    W21H9,
    #[serde(rename = "adaptive")]
    Adaptive,
}

impl AspectRatio {
    pub const FIXED: [AspectRatio; 6] = [
        AspectRatio::W16H9,
        AspectRatio::W4H3,
        AspectRatio::W1H1,
        AspectRatio::W3H4,
        AspectRatio::W9H16,
        AspectRatio::W21H9,
    ];
    pub const ALL: [AspectRatio; 7] = [
        AspectRatio::W16H9,
        AspectRatio::W4H3,
        AspectRatio::W1H1,
        AspectRatio::W3H4,
        AspectRatio::W9H16,
        AspectRatio::W21H9,
        AspectRatio::Adaptive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AspectRatio::W16H9 => "16:9",
            AspectRatio::W4H3 => "4:3",
            AspectRatio::W1H1 => "1:1",
            AspectRatio::W3H4 => "3:4",
            AspectRatio::W9H16 => "9:16",
            AspectRatio::W21H9 => "21:9",
            AspectRatio::Adaptive => "adaptive",
        }
    }

    /// Width over height for fixed ratios.
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

impl FromStr for AspectRatio {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        AspectRatio::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or(())
    }
}

/// Requested length: whole seconds, or `-1` on the wire, letting the model decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurationRequest {
    Seconds(u32),
    ModelDecides,
}

/// A media input: an http(s) URL or a data: URI whose size and type were checked at parse time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MediaInput(String);

impl MediaInput {
    /// Only the parser builds inputs, after checking them.
    pub(crate) fn new_unchecked(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_data_uri(&self) -> bool {
        self.0.starts_with("data:")
    }

    /// The decoded bytes of a data: URI; None for URLs.
    pub fn data_bytes(&self) -> Option<Vec<u8>> {
        let (_, payload) = split_data_uri(&self.0)?;
        base64::engine::general_purpose::STANDARD
            .decode(payload)
            .ok()
    }
}

/// `data:<mime>;base64,<payload>` → (mime, payload).
pub(crate) fn split_data_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("data:")?;
    let (header, payload) = rest.split_once(',')?;
    let mime = header.strip_suffix(";base64")?;
    Some((mime, payload))
}

/// Media inputs by role. Which slots an operation may fill is decided by the parser.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInputs {
    /// image-to-video's first frame.
    pub image: Option<MediaInput>,
    pub start_image: Option<MediaInput>,
    pub end_image: Option<MediaInput>,
    pub reference_images: Vec<MediaInput>,
    pub reference_videos: Vec<MediaInput>,
    pub reference_audios: Vec<MediaInput>,
    /// video-to-video's source, or video-extension's when given as a URL.
    pub video: Option<MediaInput>,
    /// video-extension of one of the account's own completed tasks.
    pub source_task_id: Option<String>,
}

/// A request that passed every rule of the contract.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoJob {
    pub model: String,
    pub operation: Operation,
    pub prompt: Option<String>,
    pub resolution: Resolution,
    pub aspect_ratio: AspectRatio,
    pub duration: DurationRequest,
    pub seed: Option<i64>,
    pub generate_audio: bool,
    pub watermark: bool,
    pub callback_url: Option<String>,
    pub inputs: JobInputs,
}

impl VideoJob {
    /// Video inputs switch billing to the model's video-input rate and add input tokens.
    pub fn has_video_input(&self) -> bool {
        self.inputs.video.is_some()
            || !self.inputs.reference_videos.is_empty()
            || self.inputs.source_task_id.is_some()
    }

    pub fn has_visual_input(&self) -> bool {
        let i = &self.inputs;
        self.has_video_input()
            || i.image.is_some()
            || i.start_image.is_some()
            || i.end_image.is_some()
            || !i.reference_images.is_empty()
    }
}
