//! Input videos: MP4/MOV demux (mp4 crate) and H.264 decode (OpenH264), one frame at a time so
//! a long, large input never sits in memory whole.

use std::io::Cursor;

use mp4::{Mp4Reader, TrackType};
use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use openh264::OpenH264API;

use crate::{MediaError, VideoInfo};

fn unreadable(e: impl std::fmt::Display) -> MediaError {
    MediaError::UnreadableVideo(e.to_string())
}

/// An MP4 read from memory.
type Reader<'a> = Mp4Reader<Cursor<&'a [u8]>>;

/// The container and the id of its first video track.
fn open(bytes: &[u8]) -> Result<(Reader<'_>, u32), MediaError> {
    let reader =
        Mp4Reader::read_header(Cursor::new(bytes), bytes.len() as u64).map_err(unreadable)?;
    let track_id = reader
        .tracks()
        .values()
        .filter(|t| matches!(t.track_type(), Ok(TrackType::Video)))
        .map(|t| t.track_id())
        .min()
        .ok_or_else(|| MediaError::UnreadableVideo("no video track".into()))?;
    Ok((reader, track_id))
}

/// Width, height and duration of an MP4/MOV from its header.
pub fn probe_mp4(bytes: &[u8]) -> Result<VideoInfo, MediaError> {
    let (reader, track_id) = open(bytes)?;
    let track = reader
        .tracks()
        .get(&track_id)
        .ok_or_else(|| MediaError::UnreadableVideo("no video track".into()))?;
    Ok(VideoInfo {
        width: u32::from(track.width()),
        height: u32::from(track.height()),
        duration_secs: track.duration().as_secs_f64(),
        has_audio: reader
            .tracks()
            .values()
            .any(|t| matches!(t.track_type(), Ok(TrackType::Audio))),
    })
}

/// A decoder that yields an input video's frames in order, as RGB.
pub struct FrameStream<'a> {
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

impl<'a> FrameStream<'a> {
    pub fn open(bytes: &'a [u8]) -> Result<Self, MediaError> {
        let (reader, track_id) = open(bytes)?;
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
            .ok_or_else(|| MediaError::UnreadableVideo("only H.264 video is supported".into()))?;
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

    /// Frames the container announces.
    pub fn frame_count(&self) -> u32 {
        self.samples
    }

    /// Decodes the next frame; false once the video is exhausted.
    pub fn advance(&mut self) -> Result<bool, MediaError> {
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

    /// The most recently decoded frame: (rgb, width, height).
    pub fn frame(&self) -> (&[u8], usize, usize) {
        (&self.rgb, self.width, self.height)
    }
}
