//! A deterministic soundtrack: a slow three-note chord chosen by the seed, with any reference
//! audio mixed over it, encoded as mono AAC-LC at 48 kHz and muxed as the MP4's second track.

use std::io::{Seek, Write};

use bytes::Bytes;
use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};
use mp4::{
    AacConfig, ChannelConfig, MediaConfig, Mp4Sample, Mp4Writer, SampleFreqIndex, TrackConfig,
    TrackType,
};

use crate::MediaError;

mod reference;
#[cfg(test)]
mod tests;

pub(crate) use reference::sequence;

const SAMPLE_RATE: u32 = 48_000;
const FRAME: usize = 1024;
const BIT_RATE: u32 = 96_000;

/// Pentatonic steps over A3: pleasant whichever three the seed picks.
const SEMITONES: [i32; 10] = [0, 2, 4, 7, 9, 12, 14, 16, 19, 21];

fn audio_error(e: impl std::fmt::Debug) -> MediaError {
    MediaError::Encode(format!("audio: {e:?}"))
}

/// How loud the chord stays under reference audio: a bed the reference is clearly heard over.
const BED_UNDER_REFERENCE: f64 = 0.3;

/// Peak level of the reference audio in the mix, below full scale to leave the bed room.
const REFERENCE_LEVEL: f64 = 24_000.0;

/// PCM of `samples` mono samples: a chord whose notes fade in and out in turn, with `reference`
/// (48 kHz, in [-1, 1]) mixed over it from the start, the chord lowered throughout when there
/// is one.
fn synthesize(seed: u64, samples: usize, reference: &[f32]) -> Vec<i16> {
    let pick = |shift: u32| SEMITONES[((seed >> shift) % SEMITONES.len() as u64) as usize];
    let notes = [pick(0), pick(8) + 3, pick(16) + 7];
    let freqs: Vec<f64> = notes
        .iter()
        .map(|n| 220.0 * 2f64.powf(f64::from(*n) / 12.0))
        .collect();
    (0..samples)
        .map(|n| {
            let t = n as f64 / f64::from(SAMPLE_RATE);
            let mut v = 0.0;
            for (k, f) in freqs.iter().enumerate() {
                let swell = 0.5 + 0.5 * (std::f64::consts::TAU * (t / 4.0 + k as f64 / 3.0)).sin();
                v += swell * (std::f64::consts::TAU * f * t).sin();
            }
            // Short fades at both ends avoid clicks.
            let edge = (t / 0.05)
                .min((samples - n) as f64 / f64::from(SAMPLE_RATE) / 0.05)
                .min(1.0);
            let mut level = v / 3.0 * 9000.0;
            if !reference.is_empty() {
                level *= BED_UNDER_REFERENCE;
                level += f64::from(reference.get(n).copied().unwrap_or(0.0)) * REFERENCE_LEVEL;
            }
            (level * edge).clamp(-32_768.0, 32_767.0) as i16
        })
        .collect()
}

/// Samples in `seconds` of the soundtrack.
pub(crate) fn samples_for(seconds: f64) -> usize {
    (seconds * f64::from(SAMPLE_RATE)).round() as usize
}

/// Encodes `seconds` of audio and adds it as the writer's next track, `track_id` (the mp4
/// writer numbers tracks from 1 in the order they are added). The track is whole AAC frames,
/// so it is at most one frame (21 ms) longer than the video.
pub fn add_track<W: Write + Seek>(
    writer: &mut Mp4Writer<W>,
    track_id: u32,
    seed: u64,
    seconds: f64,
    reference: &[f32],
) -> Result<(), MediaError> {
    let samples = samples_for(seconds);
    let target_frames = samples.div_ceil(FRAME);
    let pcm = synthesize(seed, samples, reference);
    let encoder = Encoder::new(EncoderParams {
        bit_rate: BitRate::Cbr(BIT_RATE),
        sample_rate: SAMPLE_RATE,
        transport: Transport::Raw,
        channels: ChannelMode::Mono,
        audio_object_type: AudioObjectType::Mpeg4LowComplexity,
    })
    .map_err(audio_error)?;
    writer
        .add_track(&TrackConfig {
            track_type: TrackType::Audio,
            timescale: SAMPLE_RATE,
            language: "und".into(),
            media_conf: MediaConfig::AacConfig(AacConfig {
                bitrate: BIT_RATE,
                profile: mp4::AudioObjectType::AacLowComplexity,
                freq_index: SampleFreqIndex::Freq48000,
                chan_conf: ChannelConfig::Mono,
            }),
        })
        .map_err(audio_error)?;

    let silence = [0i16; FRAME];
    let mut out = vec![0u8; 8192];
    let mut written = 0usize;
    let mut offset = 0usize;
    // The encoder holds back a few frames (its delay); feed silence until every frame is out.
    let mut guard = target_frames + 64;
    while written < target_frames && guard > 0 {
        guard -= 1;
        let end = (offset + FRAME).min(pcm.len());
        let input: &[i16] = if offset < pcm.len() {
            &pcm[offset..end]
        } else {
            &silence
        };
        let info = encoder.encode(input, &mut out).map_err(audio_error)?;
        if offset < pcm.len() {
            offset += info.input_consumed;
        }
        if info.output_size > 0 {
            writer
                .write_sample(
                    track_id,
                    &Mp4Sample {
                        start_time: (written * FRAME) as u64,
                        duration: FRAME as u32,
                        rendering_offset: 0,
                        is_sync: true,
                        bytes: Bytes::copy_from_slice(&out[..info.output_size]),
                    },
                )
                .map_err(audio_error)?;
            written += 1;
        }
    }
    if written < target_frames {
        return Err(MediaError::Encode(format!(
            "audio: encoder produced {written} of {target_frames} frames"
        )));
    }
    Ok(())
}
