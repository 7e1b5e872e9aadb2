//! Input videos, decoded one frame at a time so a long, large input never sits in memory whole.
//!
//! H.264 that OpenH264 decodes (no B-frames; Baseline, Main or High, 8-bit 4:2:0) is demuxed
//! by the mp4 crate and decoded by OpenH264, both built in. Everything else in an MP4 or MOV
//! container (H.264 with B-frames, H.265, other codecs, files the mp4 crate cannot read) goes
//! to the `ffmpeg` program ([`ffmpeg`]); when it is not installed, the error names the codec
//! that needs it ([`container`] reads which).

use std::io::{self, Cursor, Read, Seek, SeekFrom};

use mp4::{Mp4Reader, Mp4Track, TrackType};
use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use openh264::OpenH264API;

use crate::{MediaError, VideoInfo};

mod container;
mod ffmpeg;
#[cfg(test)]
mod tests;

use container::VideoTrack;
use ffmpeg::FfmpegFrames;
pub(crate) use ffmpeg::{decode_audio, Tools};

fn unreadable(e: impl std::fmt::Display) -> MediaError {
    MediaError::UnreadableVideo(e.to_string())
}

/// An MP4 read from memory.
pub(crate) type Reader<'a> = Mp4Reader<Budgeted<'a>>;

/// A cursor that fails once it has read more bytes than it was given. The mp4 crate seeks back
/// to a box's own start when a nested box declares a size under 8, then reads the same header
/// again, forever; every pass reads, so the budget turns that loop into an error.
pub(crate) struct Budgeted<'a> {
    cursor: Cursor<&'a [u8]>,
    budget: u64,
}

impl Read for Budgeted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.cursor.read(buf)?;
        self.budget = self
            .budget
            .checked_sub(n as u64)
            .ok_or_else(|| io::Error::other("the file reads as looping boxes"))?;
        Ok(n)
    }
}

impl Seek for Budgeted<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.cursor.seek(pos)
    }
}

/// The container's header (MP4 or MOV), whatever tracks it holds.
pub(crate) fn read_container(bytes: &[u8]) -> mp4::Result<Reader<'_>> {
    let size = bytes.len() as u64;
    // An honest file reads in less than twice its size: the header boxes once, then each
    // sample once.
    let reader = Budgeted {
        cursor: Cursor::new(bytes),
        budget: size.saturating_mul(2),
    };
    // mp4 0.14 does unchecked arithmetic on some box sizes (an `emsg` box too short for its
    // own strings, for one) and panics; a hostile file must be unreadable, not a crash.
    std::panic::catch_unwind(|| Mp4Reader::read_header(reader, size))
        .unwrap_or(Err(mp4::Error::InvalidData("malformed box sizes")))
}

/// Seconds a track lasts by its media header; `None` when the header has no timescale.
/// (`Mp4Track::duration` divides by the timescale unchecked and overflows on large values.)
pub(crate) fn track_seconds(track: &Mp4Track) -> Option<f64> {
    let header = &track.trak.mdia.mdhd;
    (header.timescale > 0).then(|| header.duration as f64 / f64::from(header.timescale))
}

/// The id of the container's first video track (the lowest).
fn video_track_id(reader: &Reader<'_>) -> Result<u32, MediaError> {
    reader
        .tracks()
        .values()
        .filter(|t| matches!(t.track_type(), Ok(TrackType::Video)))
        .map(|t| t.track_id())
        .min()
        .ok_or_else(|| MediaError::UnreadableVideo("no video track".into()))
}

/// Width, height and duration of an MP4/MOV from its header, whatever the codec: the mp4
/// crate's reading, or ffprobe's for a container the mp4 crate cannot read (a MOV without an
/// `ftyp` box, for one). Without ffprobe such a file fails as `input_video_unsupported`, naming
/// its codec.
pub fn probe_mp4(bytes: &[u8]) -> Result<VideoInfo, MediaError> {
    probe_with(bytes, &Tools::from_env())
}

pub(crate) fn probe_with(bytes: &[u8], tools: &Tools) -> Result<VideoInfo, MediaError> {
    let reader = match read_container(bytes) {
        Ok(reader) => reader,
        Err(e) => {
            // The mp4 crate reads MP4 and most MOV files; ffprobe reads the rest whose header
            // at least describes a video track.
            let Some(track) = VideoTrack::of(bytes) else {
                return Err(unreadable(e));
            };
            let video = container::describe(Some(&track));
            let probed = ffmpeg::probe(bytes, tools, &video)?;
            return Ok(VideoInfo {
                width: probed.width,
                height: probed.height,
                duration_secs: probed.duration_secs,
                has_audio: probed.has_audio,
            });
        }
    };
    let track = reader
        .tracks()
        .get(&video_track_id(&reader)?)
        .ok_or_else(|| MediaError::UnreadableVideo("no video track".into()))?;
    Ok(VideoInfo {
        width: u32::from(track.width()),
        height: u32::from(track.height()),
        duration_secs: track_seconds(track)
            .ok_or_else(|| MediaError::UnreadableVideo("video track has no timescale".into()))?,
        has_audio: reader
            .tracks()
            .values()
            .any(|t| matches!(t.track_type(), Ok(TrackType::Audio))),
    })
}

/// A decoder that yields an input video's frames in order, as RGB: OpenH264 for the H.264 it
/// decodes, ffmpeg for everything else.
pub struct FrameStream<'a> {
    engine: Engine<'a>,
    bytes: &'a [u8],
    tools: Tools,
    /// Frames yielded so far: ffmpeg skips them when it takes over from OpenH264.
    yielded: u32,
}

enum Engine<'a> {
    OpenH264(Box<OpenH264Frames<'a>>),
    Ffmpeg(FfmpegFrames),
}

impl<'a> FrameStream<'a> {
    pub fn open(bytes: &'a [u8]) -> Result<Self, MediaError> {
        Self::open_with(bytes, Tools::from_env())
    }

    pub(crate) fn open_with(bytes: &'a [u8], tools: Tools) -> Result<Self, MediaError> {
        let track = VideoTrack::of(bytes);
        let openh264 = match read_container(bytes) {
            Ok(reader) => {
                let track_id = video_track_id(&reader)?;
                if track.as_ref().is_some_and(VideoTrack::openh264_decodes) {
                    Some(OpenH264Frames::open(reader, track_id)?)
                } else {
                    None
                }
            }
            // The mp4 crate reads MP4 and most MOV files; ffmpeg reads the rest whose header
            // at least describes a video track.
            Err(e) if track.is_none() => return Err(unreadable(e)),
            Err(_) => None,
        };
        let engine = match openh264 {
            Some(frames) => Engine::OpenH264(Box::new(frames)),
            None => Engine::Ffmpeg(FfmpegFrames::open(
                bytes,
                &tools,
                &container::describe(track.as_ref()),
            )?),
        };
        Ok(Self {
            engine,
            bytes,
            tools,
            yielded: 0,
        })
    }

    /// Frames the container announces.
    pub fn frame_count(&self) -> u32 {
        match &self.engine {
            Engine::OpenH264(frames) => frames.samples,
            Engine::Ffmpeg(frames) => frames.frame_count(),
        }
    }

    /// Decodes the next frame; false once the video is exhausted.
    pub fn advance(&mut self) -> Result<bool, MediaError> {
        let advanced = match &mut self.engine {
            Engine::OpenH264(frames) => match frames.advance() {
                Ok(advanced) => advanced,
                // The header cannot show all OpenH264 lacks (interlaced pictures, for one),
                // so a stream it was given may still stop it: ffmpeg takes over from there.
                Err(_) => self.hand_over()?,
            },
            Engine::Ffmpeg(frames) => frames.advance()?,
        };
        self.yielded += u32::from(advanced);
        Ok(advanced)
    }

    /// Replaces OpenH264 by ffmpeg, skipping the frames already yielded, and reads the next.
    fn hand_over(&mut self) -> Result<bool, MediaError> {
        let video = format!(
            "{} that OpenH264 cannot decode",
            container::describe(VideoTrack::of(self.bytes).as_ref())
        );
        let mut frames = FfmpegFrames::open(self.bytes, &self.tools, &video)?;
        for _ in 0..self.yielded {
            if !frames.advance()? {
                break;
            }
        }
        let advanced = frames.advance()?;
        self.engine = Engine::Ffmpeg(frames);
        Ok(advanced)
    }

    /// The most recently decoded frame: (rgb, width, height).
    pub fn frame(&self) -> (&[u8], usize, usize) {
        match &self.engine {
            Engine::OpenH264(frames) => (&frames.rgb, frames.width, frames.height),
            Engine::Ffmpeg(frames) => frames.frame(),
        }
    }

    /// The running ffmpeg's process id; `None` while OpenH264 decodes.
    #[cfg(test)]
    pub(crate) fn ffmpeg_pid(&self) -> Option<u32> {
        match &self.engine {
            Engine::OpenH264(_) => None,
            Engine::Ffmpeg(frames) => Some(frames.pid()),
        }
    }
}

/// One H.264 track demuxed by the mp4 crate and decoded by OpenH264.
struct OpenH264Frames<'a> {
    reader: Reader<'a>,
    track_id: u32,
    samples: u32,
    next_sample: u32,
    length_size: usize,
    parameter_sets: Vec<u8>,
    decoder: Decoder,
    annex_b: Vec<u8>,
    rgb: Vec<u8>,
    width: usize,
    height: usize,
}

impl<'a> OpenH264Frames<'a> {
    fn open(reader: Reader<'a>, track_id: u32) -> Result<Self, MediaError> {
        let track = reader
            .tracks()
            .get(&track_id)
            .ok_or_else(|| MediaError::UnreadableVideo("no video track".into()))?;
        let avc = track
            .trak
            .mdia
            .minf
            .stbl
            .stsd
            .avc1
            .as_ref()
            .ok_or_else(|| MediaError::UnreadableVideo("the track is not H.264".into()))?;
        let mut parameter_sets = Vec::new();
        for set in avc
            .avcc
            .sequence_parameter_sets
            .iter()
            .chain(avc.avcc.picture_parameter_sets.iter())
        {
            parameter_sets.extend_from_slice(&[0, 0, 0, 1]);
            parameter_sets.extend_from_slice(&set.bytes);
        }
        let decoder = Decoder::with_api_config(OpenH264API::from_source(), Default::default())
            .map_err(unreadable)?;
        Ok(Self {
            samples: track.sample_count(),
            length_size: usize::from(avc.avcc.length_size_minus_one & 0x3) + 1,
            reader,
            track_id,
            next_sample: 1,
            parameter_sets,
            decoder,
            annex_b: Vec::new(),
            rgb: Vec::new(),
            width: 0,
            height: 0,
        })
    }

    /// Decodes the next frame; false once the video is exhausted.
    fn advance(&mut self) -> Result<bool, MediaError> {
        while self.next_sample <= self.samples {
            let sample = self
                .reader
                .read_sample(self.track_id, self.next_sample)
                .map_err(unreadable)?;
            self.next_sample += 1;
            let Some(sample) = sample else { continue };
            self.annex_b.clear();
            if !self.parameter_sets.is_empty() {
                self.annex_b.append(&mut self.parameter_sets);
            }
            let mut data: &[u8] = &sample.bytes;
            while data.len() >= self.length_size {
                let len = data[..self.length_size]
                    .iter()
                    .fold(0usize, |n, b| (n << 8) | usize::from(*b));
                data = &data[self.length_size..];
                if len > data.len() {
                    return Err(MediaError::UnreadableVideo("truncated NAL unit".into()));
                }
                self.annex_b.extend_from_slice(&[0, 0, 0, 1]);
                self.annex_b.extend_from_slice(&data[..len]);
                data = &data[len..];
            }
            if let Some(yuv) = self.decoder.decode(&self.annex_b).map_err(unreadable)? {
                let (w, h) = yuv.dimensions();
                self.width = w;
                self.height = h;
                self.rgb.resize(w * h * 3, 0);
                yuv.write_rgb8(&mut self.rgb);
                return Ok(true);
            }
        }
        Ok(false)
    }
}
