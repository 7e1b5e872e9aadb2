//! H.264 encoding (OpenH264) and MP4 muxing (mp4 crate). OpenH264 emits Annex-B NAL units; MP4
//! wants 4-byte length prefixes, with SPS and PPS moved into the `avcC` box.

use std::io::Cursor;

use bytes::Bytes;
use mp4::{
    AvcConfig, FourCC, MediaConfig, Mp4Config, Mp4Sample, Mp4Writer, TrackConfig, TrackType,
};
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, RateControlMode,
};
use openh264::formats::{RgbSliceU8, YUVBuffer};
use openh264::OpenH264API;

use crate::audio;
use crate::MediaError;

const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;

fn encode_error(e: impl std::fmt::Display) -> MediaError {
    MediaError::Encode(e.to_string())
}

/// Strips the Annex-B start code (`00 00 01` or `00 00 00 01`) of one NAL unit.
fn strip_start_code(nal: &[u8]) -> &[u8] {
    if nal.starts_with(&[0, 0, 0, 1]) {
        &nal[4..]
    } else if nal.starts_with(&[0, 0, 1]) {
        &nal[3..]
    } else {
        nal
    }
}

/// Encodes `frames` RGB frames painted by `frame(index, rgb)` into an MP4 at `fps`, with a
/// deterministic AAC track derived from `audio_seed` when one is given. The muxed file has
/// exactly `frames` samples of `1/fps` s each and no wall-clock timestamps.
pub fn encode_mp4(
    width: u32,
    height: u32,
    fps: u32,
    frames: u32,
    audio_seed: Option<u64>,
    frame: &mut dyn FnMut(u32, &mut [u8]),
) -> Result<Vec<u8>, MediaError> {
    let soundtrack = audio_seed.map(|seed| Soundtrack {
        seed,
        reference: &[],
    });
    encode_with(
        width,
        height,
        fps,
        frames,
        Container::Mp4,
        soundtrack,
        frame,
    )
}

/// The file a render is muxed into: both are ISO base media, told apart by their `ftyp` brand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Container {
    #[default]
    Mp4,
    /// QuickTime (`.mov`), brand `qt  `.
    QuickTime,
}

impl Container {
    /// The container of a file by its first bytes: `ftyp` with the `qt  ` brand is QuickTime.
    pub fn of(bytes: &[u8]) -> Container {
        if bytes.get(4..8) == Some(b"ftyp") && bytes.get(8..12) == Some(b"qt  ") {
            Container::QuickTime
        } else {
            Container::Mp4
        }
    }

    fn brands(self) -> (FourCC, Vec<FourCC>) {
        match self {
            Container::Mp4 => (
                FourCC::from(*b"isom"),
                [*b"isom", *b"iso2", *b"avc1", *b"mp41"]
                    .map(FourCC::from)
                    .to_vec(),
            ),
            Container::QuickTime => (FourCC::from(*b"qt  "), vec![FourCC::from(*b"qt  ")]),
        }
    }
}

/// The audio track to add: the seed's chord, with reference audio (48 kHz mono) mixed in.
pub(crate) struct Soundtrack<'a> {
    pub seed: u64,
    pub reference: &'a [f32],
}

/// [`encode_mp4`] with a soundtrack that may carry reference audio.
pub(crate) fn encode_with(
    width: u32,
    height: u32,
    fps: u32,
    frames: u32,
    container: Container,
    soundtrack: Option<Soundtrack<'_>>,
    frame: &mut dyn FnMut(u32, &mut [u8]),
) -> Result<Vec<u8>, MediaError> {
    if width == 0
        || height == 0
        || width % 2 == 1
        || height % 2 == 1
        || width > 8192
        || height > 8192
    {
        return Err(MediaError::InvalidRequest(format!(
            "{width}x{height}: sizes must be even, positive and at most 8192"
        )));
    }
    let (w, h) = (width as usize, height as usize);
    let pixels = (width * height) as f32;
    let config = EncoderConfig::new()
        .max_frame_rate(FrameRate::from_hz(fps as f32))
        // Quality-mode rate control at about 0.12 bits per pixel; skipping frames would break
        // the exact frame count, so it is off.
        .bitrate(BitRate::from_bps((pixels * fps as f32 * 0.12) as u32))
        .rate_control_mode(RateControlMode::Off)
        .skip_frames(false)
        .intra_frame_period(IntraFramePeriod::from_num_frames(fps * 2));
    let mut encoder =
        Encoder::with_api_config(OpenH264API::from_source(), config).map_err(encode_error)?;

    // Movie and video track share one timescale: mp4 0.14 truncates durations otherwise.
    let timescale = fps * 1000;
    let (major_brand, compatible_brands) = container.brands();
    let mp4_config = Mp4Config {
        major_brand,
        minor_version: 512,
        compatible_brands,
        timescale,
    };
    let mut writer =
        Mp4Writer::write_start(Cursor::new(Vec::new()), &mp4_config).map_err(encode_error)?;

    let mut rgb = vec![0u8; w * h * 3];
    let mut yuv = YUVBuffer::new(w, h);
    let mut video_track_added = false;
    let mut sample = Vec::new();
    for index in 0..frames {
        frame(index, &mut rgb);
        yuv.read_rgb8(RgbSliceU8::new(&rgb, (w, h)));
        let bitstream = encoder.encode(&yuv).map_err(encode_error)?;
        if matches!(bitstream.frame_type(), FrameType::Skip | FrameType::Invalid) {
            return Err(MediaError::Encode(format!("encoder dropped frame {index}")));
        }
        let is_sync = matches!(bitstream.frame_type(), FrameType::IDR | FrameType::I);
        let mut sps = None;
        let mut pps = None;
        sample.clear();
        for layer_index in 0..bitstream.num_layers() {
            let Some(layer) = bitstream.layer(layer_index) else {
                continue;
            };
            for nal_index in 0..layer.nal_count() {
                let Some(nal) = layer.nal_unit(nal_index) else {
                    continue;
                };
                let nal = strip_start_code(nal);
                let Some(&header) = nal.first() else { continue };
                match header & 0x1f {
                    NAL_SPS => sps = Some(nal.to_vec()),
                    NAL_PPS => pps = Some(nal.to_vec()),
                    _ => {
                        sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                        sample.extend_from_slice(nal);
                    }
                }
            }
        }
        if !video_track_added {
            let (Some(seq_param_set), Some(pic_param_set)) = (sps, pps) else {
                return Err(MediaError::Encode("first frame carried no SPS/PPS".into()));
            };
            writer
                .add_track(&TrackConfig {
                    track_type: TrackType::Video,
                    timescale,
                    language: "und".into(),
                    media_conf: MediaConfig::AvcConfig(AvcConfig {
                        width: width as u16,
                        height: height as u16,
                        seq_param_set,
                        pic_param_set,
                    }),
                })
                .map_err(encode_error)?;
            video_track_added = true;
        }
        writer
            .write_sample(
                1,
                &Mp4Sample {
                    start_time: u64::from(index) * 1000,
                    duration: 1000,
                    rendering_offset: 0,
                    is_sync,
                    bytes: Bytes::copy_from_slice(&sample),
                },
            )
            .map_err(encode_error)?;
    }

    if let Some(soundtrack) = soundtrack {
        let seconds = f64::from(frames) / f64::from(fps);
        audio::add_track(
            &mut writer,
            2,
            soundtrack.seed,
            seconds,
            soundtrack.reference,
        )?;
    }
    writer.write_end().map_err(encode_error)?;
    Ok(writer.into_writer().into_inner())
}

/// An RGB buffer as PNG.
pub fn png(width: u32, height: u32, rgb: Vec<u8>) -> Result<Vec<u8>, MediaError> {
    let image = image::RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| MediaError::Encode("last frame has the wrong size".into()))?;
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(encode_error)?;
    Ok(out.into_inner())
}
