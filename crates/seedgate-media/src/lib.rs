//! Seedgate's sandbox renderer: deterministic, real H.264 MP4 files (with an AAC audio track
//! when asked) and PNG last frames, built from bundled encoder sources so nothing but
//! `cargo build` is needed.
//!
//! The H.264 encoder is Cisco's OpenH264 (BSD-2-Clause). The audio encoder is the Fraunhofer
//! FDK AAC library, bundled and under its own licence (not OSI-approved).
//!
//! Input videos (MP4 or MOV) are decoded as a stream, one frame at a time, never held whole,
//! so memory stays bounded whatever the input. H.264 without B-frames (Baseline, Main or High,
//! 8-bit 4:2:0, which is what OpenH264 implements) is demuxed by the mp4 crate and decoded by
//! OpenH264, built in. Everything else — H.264 with B-frames (the default of most encoders),
//! interlaced or in higher profiles, H.265, other codecs, and MOV files the mp4 crate cannot
//! read — is decoded by the `ffmpeg` program, run as an external engine with `ffprobe` for the
//! header (`SEEDGATE_FFMPEG` and `SEEDGATE_FFPROBE` name other programs). When those are not
//! installed, such an input fails with [`MediaError::UnsupportedVideo`], whose message names
//! the codec and profile the container declares.
//!
//! Reference audio is mixed into the soundtrack: WAV is read here and AAC (ADTS or M4A) by the
//! same FDK AAC library that encodes it; MP3, and what those cannot read, by `ffmpeg`.
//!
//! It also tells what a fetched input file is and how long an input audio file lasts, from
//! headers alone, so inputs can be checked against the upstream's rules before they are sent.

mod audio;
mod caption;
mod decode;
mod encode;
mod inputs;
mod scenes;

pub use encode::{encode_mp4, Container};
pub use inputs::{audio_duration, media_kind, MediaKind};

/// What to draw. Byte slices are the raw input files, already fetched by the caller.
pub enum Scene<'a> {
    /// text-to-video: a moving pattern derived from the prompt.
    Pattern { prompt: &'a str },
    /// image-to-video: a slow zoom and pan over the image.
    ZoomPan { image: &'a [u8] },
    /// start-end-to-video: a crossfade from the start image to the end image.
    Crossfade { start: &'a [u8], end: &'a [u8] },
    /// reference-to-video: the references in sequence, images first, in equal slices. With
    /// audio as the only reference (the request's `audios`), the picture is the prompt's
    /// pattern.
    Sequence {
        prompt: &'a str,
        images: Vec<&'a [u8]>,
        videos: Vec<&'a [u8]>,
    },
    /// video-to-video: the input's frames, recoloured, stretched to the output length.
    Recolour { video: &'a [u8] },
    /// video-extension: a slow drift that continues from the input's last frame.
    Continue { video: &'a [u8] },
}

/// One render: the scene, the reference audio, the exact output size, the frame rate and
/// count, a seed and whether to add audio.
pub struct RenderRequest<'a> {
    pub scene: Scene<'a>,
    /// Reference audio files, one after another from the start, mixed into the soundtrack
    /// (WAV, AAC and M4A are decoded here, MP3 and anything else by `ffmpeg`), whatever the
    /// scene.
    pub audios: Vec<&'a [u8]>,
    /// The file to mux into.
    pub container: Container,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub frames: u32,
    pub seed: u64,
    pub audio: bool,
    /// Lines drawn at the bottom left of every frame; none when empty.
    pub caption: Vec<String>,
}

/// A finished render.
pub struct Rendered {
    pub mp4: Vec<u8>,
    pub last_frame_png: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub frames: u32,
    pub duration_secs: f64,
    pub has_audio: bool,
    /// Seconds of input video consumed (all input videos together); priced as input tokens.
    pub input_video_seconds: f64,
}

/// Why a render failed; inputs that cannot be decoded are the caller's to report.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the input image cannot be read: {0}")]
    UnreadableImage(String),
    #[error("the input video cannot be read: {0}")]
    UnreadableVideo(String),
    /// A video in a codec or container only ffmpeg decodes here, when ffmpeg is not installed
    /// (or frames too large to decode); the message names the codec and profile.
    #[error("the input video cannot be decoded here: {0}")]
    UnsupportedVideo(String),
    #[error("the input audio cannot be read: {0}")]
    UnreadableAudio(String),
    #[error("invalid render request: {0}")]
    InvalidRequest(String),
    #[error("encoding failed: {0}")]
    Encode(String),
}

impl MediaError {
    /// A stable snake_case code for task errors.
    pub fn code(&self) -> &'static str {
        match self {
            MediaError::UnreadableImage(_) => "input_image_unreadable",
            MediaError::UnreadableVideo(_) => "input_video_unreadable",
            MediaError::UnsupportedVideo(_) => "input_video_unsupported",
            MediaError::UnreadableAudio(_) => "input_audio_unreadable",
            MediaError::InvalidRequest(_) => "invalid_render_request",
            MediaError::Encode(_) => "encode_failed",
        }
    }
}

/// Facts about an input video read from its container, without decoding frames.
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    pub duration_secs: f64,
    pub has_audio: bool,
}

pub use decode::probe_mp4;

/// Image dimensions from the header (jpeg, png, webp).
pub fn image_dimensions(bytes: &[u8]) -> Result<(u32, u32), MediaError> {
    image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| MediaError::UnreadableImage(e.to_string()))?
        .into_dimensions()
        .map_err(|e| MediaError::UnreadableImage(e.to_string()))
}

/// The last frame of an MP4 as PNG (for upstream results that came without one).
pub fn last_frame_png(mp4: &[u8]) -> Result<Vec<u8>, MediaError> {
    let frame = scenes::last_frame(mp4)?;
    let (width, height) = frame.dimensions();
    encode::png(width, height, frame.into_raw())
}

/// Renders a scene into an MP4 and its last frame as PNG.
pub fn render(req: &RenderRequest) -> Result<Rendered, MediaError> {
    if req.width == 0 || req.height == 0 || req.width % 2 == 1 || req.height % 2 == 1 {
        return Err(MediaError::InvalidRequest(format!(
            "{}x{}: width and height must be even and positive",
            req.width, req.height
        )));
    }
    if req.fps == 0 || req.frames == 0 {
        return Err(MediaError::InvalidRequest(
            "fps and frames must be positive".into(),
        ));
    }
    let reference = if req.audio && !req.audios.is_empty() {
        let seconds = f64::from(req.frames) / f64::from(req.fps);
        audio::sequence(&req.audios, audio::samples_for(seconds))?
    } else {
        Vec::new()
    };
    let soundtrack = req.audio.then_some(encode::Soundtrack {
        seed: req.seed,
        reference: &reference,
    });
    let mut scene = scenes::Painter::new(req)?;
    let caption = caption::Caption::new(&req.caption, req.width, req.height);
    let mut last_frame = Vec::new();
    let mut paint_error = None;
    let mp4 = encode::encode_with(
        req.width,
        req.height,
        req.fps,
        req.frames,
        req.container,
        soundtrack,
        &mut |i, rgb| {
            if paint_error.is_some() {
                return;
            }
            if let Err(e) = scene.paint(i, rgb) {
                paint_error = Some(e);
            }
            if let Some(caption) = &caption {
                caption.draw(rgb, req.width);
            }
            if i + 1 == req.frames {
                last_frame = rgb.to_vec();
            }
        },
    )?;
    if let Some(e) = paint_error {
        return Err(e);
    }
    Ok(Rendered {
        mp4,
        last_frame_png: encode::png(req.width, req.height, last_frame)?,
        width: req.width,
        height: req.height,
        frames: req.frames,
        duration_secs: f64::from(req.frames) / f64::from(req.fps),
        has_audio: req.audio,
        input_video_seconds: scene.input_video_seconds(),
    })
}

#[cfg(test)]
mod tests;
