//! Fetched input files before they go upstream: which kind of media each one is and how long
//! an audio file lasts, read from headers and frame headers only, never decoded.
//!
//! Everything here reads bytes from strangers, so every read is bounds-checked and no
//! allocation is sized by a header field.

use crate::decode::{probe_with, read_container, track_seconds, Tools};
use crate::{image_dimensions, MediaError};
use mp4::TrackType;

/// What a fetched input file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// A JPEG, PNG or WebP image.
    Image,
    /// An MP4 or MOV file with a video track (it may carry audio too).
    Video,
    /// A WAV, MP3, raw AAC (ADTS) file, or an MP4/M4A with audio and no video.
    Audio,
}

/// The kind of media `bytes` hold, or `None` when they are none this crate can read.
pub fn media_kind(bytes: &[u8]) -> Option<MediaKind> {
    media_kind_with(bytes, &Tools::from_env())
}

/// [`media_kind`], with ffprobe (for MOV files the mp4 crate cannot read) from `tools`.
fn media_kind_with(bytes: &[u8], tools: &Tools) -> Option<MediaKind> {
    if image_dimensions(bytes).is_ok() {
        Some(MediaKind::Image)
    } else if probe_with(bytes, tools).is_ok() {
        Some(MediaKind::Video)
    } else if audio_duration(bytes).is_ok() {
        Some(MediaKind::Audio)
    } else {
        None
    }
}

/// Seconds of audio in a WAV, MP3, raw AAC (ADTS) or M4A file.
///
/// An MP4 that holds video is refused: it is a video, whatever else it carries.
pub fn audio_duration(bytes: &[u8]) -> Result<f64, MediaError> {
    if bytes.get(..4) == Some(b"RIFF") && bytes.get(8..12) == Some(b"WAVE") {
        return wav_seconds(bytes);
    }
    if bytes.get(4..8) == Some(b"ftyp") {
        return m4a_seconds(bytes);
    }
    let start = skip_id3v2(bytes)?;
    if let Some(seconds) = framed_seconds(bytes, start, mpeg_audio_frame) {
        return Ok(seconds);
    }
    if let Some(seconds) = framed_seconds(bytes, start, adts_frame) {
        return Ok(seconds);
    }
    Err(unreadable("not WAV, MP3, AAC or M4A audio"))
}

/// How an audio file [`audio_duration`] recognizes is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AudioFormat {
    Wav,
    /// An MP4/M4A container (which may hold video: [`audio_duration`] says whether it does).
    M4a,
    /// MPEG audio (MP3 and its layers I and II), from this byte on.
    Mpeg(usize),
    /// Raw AAC in ADTS frames, from this byte on.
    Adts(usize),
}

/// The layout of an audio file, by the same tests as [`audio_duration`].
pub(crate) fn audio_format(bytes: &[u8]) -> Option<AudioFormat> {
    if bytes.get(..4) == Some(b"RIFF") && bytes.get(8..12) == Some(b"WAVE") {
        return Some(AudioFormat::Wav);
    }
    if bytes.get(4..8) == Some(b"ftyp") {
        return Some(AudioFormat::M4a);
    }
    let start = skip_id3v2(bytes).ok()?;
    stream_start(bytes, start, mpeg_audio_frame)
        .map(AudioFormat::Mpeg)
        .or_else(|| stream_start(bytes, start, adts_frame).map(AudioFormat::Adts))
}

fn unreadable(reason: impl Into<String>) -> MediaError {
    MediaError::UnreadableAudio(reason.into())
}

/// WAVE format tags whose blocks are whole sample frames: PCM, IEEE float, A-law, mu-law and
/// the extensible wrapper (which in practice wraps the same).
const FRAME_BLOCK_FORMATS: [u16; 5] = [0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE];

/// A RIFF/WAVE file's `fmt ` chunk (whole, at least its 16 common bytes) and the part of its
/// `data` chunk the file holds.
pub(crate) struct WavChunks<'a> {
    pub format: &'a [u8],
    pub data: &'a [u8],
}

/// Finds the `fmt ` and `data` chunks of a RIFF/WAVE file.
pub(crate) fn wav_chunks(bytes: &[u8]) -> Result<WavChunks<'_>, MediaError> {
    let mut format: Option<&[u8]> = None;
    let mut data = None;
    let mut at = 12usize;
    // A few stray bytes after the last chunk are not worth refusing the file over.
    while let Some(&[a, b, c, d, s0, s1, s2, s3]) = bytes.get(at..).and_then(|rest| rest.get(..8)) {
        let body = at + 8;
        let available = bytes.len() - body;
        let size = usize::try_from(u32::from_le_bytes([s0, s1, s2, s3])).unwrap_or(usize::MAX);
        match &[a, b, c, d] {
            b"fmt " if format.is_none() => match bytes.get(body..body.saturating_add(size)) {
                Some(fields) if size >= 16 => format = Some(fields),
                _ => return Err(unreadable("WAV fmt chunk is truncated")),
            },
            // Writers that cannot seek back leave the size at 0xFFFFFFFF: the data then runs
            // to the end of the file, and only what is there can be played.
            b"data" if data.is_none() => data = bytes.get(body..body + size.min(available)),
            _ => {}
        }
        // Chunks are padded to an even length; the pad byte is not counted in the size.
        at = body.saturating_add(size).saturating_add(size & 1);
    }
    Ok(WavChunks {
        format: format.ok_or_else(|| unreadable("WAV file has no fmt chunk"))?,
        data: data.ok_or_else(|| unreadable("WAV file has no data chunk"))?,
    })
}

/// Seconds of a RIFF/WAVE file from its `fmt ` and `data` chunks.
fn wav_seconds(bytes: &[u8]) -> Result<f64, MediaError> {
    let chunks = wav_chunks(bytes)?;
    let (f, data_len) = (chunks.format, chunks.data.len());
    let tag = u16::from_le_bytes([f[0], f[1]]);
    let channels = u16::from_le_bytes([f[2], f[3]]);
    let sample_rate = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
    let byte_rate = u32::from_le_bytes([f[8], f[9], f[10], f[11]]);
    let block_align = u16::from_le_bytes([f[12], f[13]]);
    if channels == 0 || sample_rate == 0 || block_align == 0 {
        return Err(unreadable(
            "WAV fmt chunk has no channels, sample rate or block size",
        ));
    }
    if FRAME_BLOCK_FORMATS.contains(&tag) {
        let frames = data_len / usize::from(block_align);
        Ok(frames as f64 / f64::from(sample_rate))
    } else if byte_rate > 0 {
        // Compressed formats only promise an average byte rate.
        Ok(data_len as f64 / f64::from(byte_rate))
    } else {
        Err(unreadable("WAV fmt chunk has no byte rate"))
    }
}

/// Seconds of the first audio track of an MP4/M4A, from its media header.
fn m4a_seconds(bytes: &[u8]) -> Result<f64, MediaError> {
    let reader = read_container(bytes).map_err(|e| unreadable(e.to_string()))?;
    let tracks = reader.tracks();
    if tracks
        .values()
        .any(|t| matches!(t.track_type(), Ok(TrackType::Video)))
    {
        return Err(unreadable("the file is a video"));
    }
    let track = tracks
        .values()
        .filter(|t| matches!(t.track_type(), Ok(TrackType::Audio)))
        .min_by_key(|t| t.track_id())
        .ok_or_else(|| unreadable("MP4 file has no audio track"))?;
    match track_seconds(track) {
        Some(seconds) if seconds > 0.0 => Ok(seconds),
        // Fragmented files keep their length in the fragments, which are not read here.
        _ => Err(unreadable("MP4 audio track header gives no duration")),
    }
}

/// Where the audio starts after any ID3v2 tags (MP3 and AAC files may carry several).
fn skip_id3v2(bytes: &[u8]) -> Result<usize, MediaError> {
    let mut at = 0usize;
    while bytes.get(at..at + 3) == Some(b"ID3") {
        let Some(&[_, _, _, _, _, flags, s0, s1, s2, s3]) = bytes.get(at..at + 10) else {
            return Err(unreadable("ID3v2 tag is truncated"));
        };
        let size = [s0, s1, s2, s3];
        if size.iter().any(|b| b & 0x80 != 0) {
            return Err(unreadable("ID3v2 tag size is not synchsafe"));
        }
        let size = size.iter().fold(0usize, |n, b| (n << 7) | usize::from(*b));
        let footer = if flags & 0x10 != 0 { 10 } else { 0 };
        at += 10 + size + footer;
        if at > bytes.len() {
            return Err(unreadable("ID3v2 tag runs past the end of the file"));
        }
    }
    Ok(at)
}

/// One frame of a framed audio stream (MPEG audio or ADTS), from its header.
struct Frame {
    /// Bytes, header included.
    len: usize,
    samples: u32,
    sample_rate: u32,
    /// The header bits that must not change within one stream; a frame that differs is not
    /// part of it.
    stream: u32,
}

type FrameParser = fn(&[u8]) -> Option<Frame>;

/// Frames a stream must open with before a file counts as one: a lone sync word turns up by
/// chance in any binary file, several well-formed frames back to back do not.
const MIN_FRAMES: usize = 4;

/// Encoders sometimes leave padding between the tags and the first frame; a longer gap means
/// the file merely contains an audio stream somewhere, which is not the same as being one.
const MAX_LEADING_JUNK: usize = 4096;

/// The complete frames from `start` on that belong to the stream of the first one. Ends at
/// the end of the file, at a partial frame, or at anything that is not a frame (such as a
/// trailing ID3v1 `TAG`).
fn frames(bytes: &[u8], start: usize, parse: FrameParser) -> impl Iterator<Item = Frame> + '_ {
    let stream = bytes.get(start..).and_then(parse).map(|f| f.stream);
    let mut at = start;
    std::iter::from_fn(move || {
        let frame = parse(bytes.get(at..)?)?;
        let end = at.checked_add(frame.len)?;
        if Some(frame.stream) != stream || end > bytes.len() {
            return None;
        }
        at = end;
        Some(frame)
    })
}

/// Where the framed stream that begins near `start` opens, or `None` when there is none.
fn stream_start(bytes: &[u8], start: usize, parse: FrameParser) -> Option<usize> {
    let window_end = bytes.len().min(start.saturating_add(MAX_LEADING_JUNK + 1));
    (start..window_end).find(|&at| frames(bytes, at, parse).take(MIN_FRAMES).count() == MIN_FRAMES)
}

/// Seconds of the framed stream that begins near `start`, or `None` when there is none.
fn framed_seconds(bytes: &[u8], start: usize, parse: FrameParser) -> Option<f64> {
    let first = stream_start(bytes, start, parse)?;
    let mut samples = 0u64;
    let mut sample_rate = 0u32;
    for frame in frames(bytes, first, parse) {
        samples += u64::from(frame.samples);
        sample_rate = frame.sample_rate;
    }
    (sample_rate > 0).then(|| samples as f64 / f64::from(sample_rate))
}

// Kilobits per second by bitrate index 1..=14, for MPEG-1 (V1) and MPEG-2/2.5 (V2) by layer.
const KBPS_V1_L1: [u32; 14] = [
    32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
];
const KBPS_V1_L2: [u32; 14] = [
    32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
];
const KBPS_V1_L3: [u32; 14] = [
    32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
];
const KBPS_V2_L1: [u32; 14] = [
    32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
];
const KBPS_V2_L23: [u32; 14] = [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];

/// MPEG-1 sample rates; MPEG-2 halves them and MPEG-2.5 quarters them.
const MPEG1_RATES: [u32; 3] = [44_100, 48_000, 32_000];

/// An MPEG-1/2/2.5 audio frame header, layers I to III. Free-format frames are refused: their
/// length cannot be known without searching for the next frame.
fn mpeg_audio_frame(bytes: &[u8]) -> Option<Frame> {
    let header = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
    let field = |shift: u32, mask: u32| (header >> shift) & mask;
    let (version, layer) = (field(19, 3), field(17, 3));
    let (bitrate_index, rate_index, padding) = (field(12, 15), field(10, 3), field(9, 1));
    // Sync, then the reserved values of version (01), layer (00) and emphasis (10).
    if field(21, 0x7FF) != 0x7FF || version == 1 || layer == 0 || field(0, 3) == 2 {
        return None;
    }
    let mpeg1 = version == 3;
    let table = match (mpeg1, layer) {
        (true, 3) => &KBPS_V1_L1,
        (true, 2) => &KBPS_V1_L2,
        (true, _) => &KBPS_V1_L3,
        (false, 3) => &KBPS_V2_L1,
        (false, _) => &KBPS_V2_L23,
    };
    let bitrate = 1000 * *table.get(usize::try_from(bitrate_index).ok()?.checked_sub(1)?)?;
    let rate_shift = match version {
        3 => 0,
        2 => 1,
        _ => 2,
    };
    let sample_rate = MPEG1_RATES.get(usize::try_from(rate_index).ok()?)? >> rate_shift;
    let (samples, len) = match layer {
        3 => (384, (12 * bitrate / sample_rate + padding) * 4),
        2 => (1152, 144 * bitrate / sample_rate + padding),
        _ if mpeg1 => (1152, 144 * bitrate / sample_rate + padding),
        _ => (576, 72 * bitrate / sample_rate + padding),
    };
    let len = usize::try_from(len).ok()?;
    // Encoders put a Xing/Info or VBRI header in a Layer III frame of its own, which decoders
    // drop: it is metadata, not sound. Xing follows the side information, whose size depends
    // on the version and on mono; VBRI sits at a fixed offset.
    let side_info = match (mpeg1, field(6, 3) == 3) {
        (true, false) => 32,
        (true, true) | (false, false) => 17,
        (false, true) => 9,
    };
    let tag = |at: usize| bytes.get(..len).and_then(|frame| frame.get(at..at + 4));
    let vbr_header = layer == 1
        && (matches!(tag(4 + side_info), Some(b"Xing" | b"Info")) || tag(36) == Some(b"VBRI"));
    Some(Frame {
        len,
        samples: if vbr_header { 0 } else { samples },
        sample_rate,
        stream: header & 0x001E_0C00,
    })
}

/// ADTS sample rates by sampling-frequency index.
const ADTS_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// An ADTS (raw AAC) frame header: each frame holds one to four raw data blocks of 1024
/// samples.
fn adts_frame(bytes: &[u8]) -> Option<Frame> {
    let h: [u8; 7] = bytes.get(..7)?.try_into().ok()?;
    // Twelve sync bits, then the layer, which ADTS always sets to 00.
    if h[0] != 0xFF || h[1] & 0xF6 != 0xF0 {
        return None;
    }
    let header_len = if h[1] & 1 == 1 { 7 } else { 9 };
    let sample_rate = *ADTS_RATES.get(usize::from((h[2] >> 2) & 0x0F))?;
    let len = (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
    if len <= header_len {
        return None;
    }
    Some(Frame {
        len,
        samples: 1024 * (u32::from(h[6] & 0x03) + 1),
        sample_rate,
        // MPEG version, profile, sampling frequency and channel configuration.
        stream: (u32::from(h[1] & 0x08) << 16)
            | (u32::from(h[2] & 0xFD) << 8)
            | u32::from(h[3] & 0xC0),
    })
}

#[cfg(test)]
mod tests;
