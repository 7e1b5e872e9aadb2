//! Reference audio (reference-to-video's `audio_urls`) decoded into the soundtrack's format,
//! mono samples at 48 kHz. WAV is read here; AAC, raw (ADTS) or in an MP4/M4A, by FDK AAC, the
//! library that already encodes the soundtrack; MP3, and whatever those two cannot read, by the
//! `ffmpeg` program, as input videos are.

use fdk_aac::dec::{Decoder, DecoderError, Transport};
use mp4::TrackType;

use super::SAMPLE_RATE;
use crate::decode::{decode_audio, read_container, Tools};
use crate::inputs::{audio_format, wav_chunks, AudioFormat};
use crate::MediaError;

fn unreadable(reason: impl Into<String>) -> MediaError {
    MediaError::UnreadableAudio(reason.into())
}

/// Decoded audio before resampling: one channel (the others mixed in) at its own rate.
struct Pcm {
    rate: u32,
    samples: Vec<f32>,
}

/// The references one after another, as mono samples at 48 kHz in [-1, 1]; at most `limit`
/// samples (the length of the video), so a long reference costs no more than a short one.
pub(crate) fn sequence(references: &[&[u8]], limit: usize) -> Result<Vec<f32>, MediaError> {
    sequence_with(references, limit, &Tools::from_env())
}

/// [`sequence`], with ffmpeg from `tools`.
pub(crate) fn sequence_with(
    references: &[&[u8]],
    limit: usize,
    tools: &Tools,
) -> Result<Vec<f32>, MediaError> {
    let mut track = Vec::new();
    for bytes in references {
        if track.len() >= limit {
            break;
        }
        track.extend(decode(bytes, tools, limit - track.len())?);
    }
    Ok(track)
}

/// One reference at 48 kHz mono, at most `limit` samples.
fn decode(bytes: &[u8], tools: &Tools, limit: usize) -> Result<Vec<f32>, MediaError> {
    let own = match audio_format(bytes) {
        Some(AudioFormat::Wav) => wav(bytes, limit),
        Some(AudioFormat::Adts(start)) => aac(
            Decoder::new(Transport::Adts),
            [bytes.get(start..).unwrap_or_default()],
            limit,
        ),
        Some(AudioFormat::M4a) => m4a(bytes, limit),
        Some(AudioFormat::Mpeg(_)) | None => {
            return decode_audio(bytes, tools, limit, SAMPLE_RATE);
        }
    };
    match own {
        Ok(pcm) if !pcm.samples.is_empty() => Ok(resample(&pcm, limit)),
        // Formats read here in their uncommon variants (A-law WAV, HE-AAC v2 in an odd
        // container) may still be ffmpeg's to read; if it cannot either, this reader's reason
        // is the one that names the file's problem.
        own => {
            let reason = match own {
                Ok(_) => unreadable("the audio holds no samples"),
                Err(e) => e,
            };
            decode_audio(bytes, tools, limit, SAMPLE_RATE).map_err(|_| reason)
        }
    }
}

/// Samples needed at `rate` to cover `limit` samples at 48 kHz (one more to interpolate to).
fn source_limit(limit: usize, rate: u32) -> usize {
    (limit as u64)
        .saturating_mul(u64::from(rate))
        .div_ceil(u64::from(SAMPLE_RATE))
        .saturating_add(1)
        .try_into()
        .unwrap_or(usize::MAX)
}

/// Integer and float PCM WAV (8 to 32 bits, or 32/64-bit float), plain or extensible.
fn wav(bytes: &[u8], limit: usize) -> Result<Pcm, MediaError> {
    let chunks = wav_chunks(bytes)?;
    let f = chunks.format;
    let u16_at = |at: usize| u16::from_le_bytes([f[at], f[at + 1]]);
    let mut tag = u16_at(0);
    if tag == 0xFFFE {
        // The extensible wrapper names its real format in the first two bytes of its GUID.
        tag = match f.get(24..26) {
            Some(&[a, b]) => u16::from_le_bytes([a, b]),
            _ => return Err(unreadable("WAV extensible format is truncated")),
        };
    }
    let channels = usize::from(u16_at(2));
    let rate = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
    let block = usize::from(u16_at(12));
    let bits = u16_at(14);
    let width = usize::from(bits.div_ceil(8));
    let sample: fn(&[u8]) -> f32 = match (tag, width) {
        (1, 1) => |b| (f32::from(b[0]) - 128.0) / 128.0,
        (1, 2) => |b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0,
        (1, 3) => |b| (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0,
        (1, 4) => |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0,
        (3, 4) => |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        (3, 8) => |b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
        _ => {
            return Err(unreadable(format!(
                "WAV format {tag:#06x} at {bits} bits is not PCM"
            )))
        }
    };
    if channels == 0 || rate == 0 || block < channels * width {
        return Err(unreadable(
            "WAV fmt chunk has no channels, rate or room for its samples",
        ));
    }
    let samples = chunks
        .data
        .chunks_exact(block)
        .take(source_limit(limit, rate))
        .map(|frame| {
            let sum: f32 = frame
                .chunks_exact(width)
                .take(channels)
                .map(|s| sample(s).clamp(-1.0, 1.0))
                .sum();
            sum / channels as f32
        })
        .collect();
    Ok(Pcm { rate, samples })
}

fn aac_error(e: DecoderError) -> MediaError {
    unreadable(format!("AAC: {e}"))
}

/// The audio track of an MP4/M4A, AAC in its samples, configured from the `esds` box.
fn m4a(bytes: &[u8], limit: usize) -> Result<Pcm, MediaError> {
    let mut reader = read_container(bytes).map_err(|e| unreadable(e.to_string()))?;
    let track = reader
        .tracks()
        .values()
        .filter(|t| matches!(t.track_type(), Ok(TrackType::Audio)))
        .min_by_key(|t| t.track_id())
        .ok_or_else(|| unreadable("MP4 file has no audio track"))?;
    let config = track
        .trak
        .mdia
        .minf
        .stbl
        .stsd
        .mp4a
        .as_ref()
        .and_then(|mp4a| mp4a.esds.as_ref())
        .map(|esds| esds.es_desc.dec_config.dec_specific.clone())
        .ok_or_else(|| unreadable("the MP4 audio track is not AAC"))?;
    let (id, count) = (track.track_id(), track.sample_count());
    // The two-byte AudioSpecificConfig: object type, sampling frequency index, channels.
    let asc = [
        (config.profile << 3) | (config.freq_index >> 1),
        ((config.freq_index & 1) << 7) | (config.chan_conf << 3),
    ];
    let mut decoder = Decoder::new(Transport::Raw);
    decoder.config_raw(&asc).map_err(aac_error)?;
    let mut samples = Vec::new();
    for n in 1..=count {
        match reader.read_sample(id, n) {
            Ok(Some(sample)) => samples.push(sample.bytes),
            Ok(None) => break,
            Err(e) => return Err(unreadable(e.to_string())),
        }
    }
    aac(decoder, samples.iter().map(|s| s.as_ref()), limit)
}

/// Largest frame FDK AAC writes: 2048 samples (HE-AAC) on each of up to 8 channels.
const AAC_FRAME_MAX: usize = 2048 * 8;

/// Everything `decoder` makes of `chunks` (a whole ADTS stream, or one raw frame per chunk).
fn aac<'a>(
    mut decoder: Decoder,
    chunks: impl IntoIterator<Item = &'a [u8]>,
    limit: usize,
) -> Result<Pcm, MediaError> {
    let mut pcm = Pcm {
        rate: 0,
        samples: Vec::new(),
    };
    let mut frame = vec![0i16; AAC_FRAME_MAX];
    for chunk in chunks {
        let mut rest = chunk;
        loop {
            let taken = decoder.fill(rest).map_err(aac_error)?;
            rest = rest.get(taken..).unwrap_or_default();
            let mut decoded = false;
            loop {
                match decoder.decode_frame(&mut frame) {
                    Ok(()) => decoded = true,
                    // Wants more input; a stream that lost sync finds it again in what follows.
                    Err(DecoderError::NOT_ENOUGH_BITS | DecoderError::TRANSPORT_SYNC_ERROR) => {
                        break
                    }
                    Err(e) => return Err(aac_error(e)),
                }
                let info = decoder.stream_info();
                let channels = usize::try_from(info.numChannels).unwrap_or(0).max(1);
                let length = decoder.decoded_frame_size().min(frame.len());
                if pcm.rate == 0 {
                    pcm.rate = u32::try_from(info.sampleRate).unwrap_or(0);
                }
                pcm.samples
                    .extend(frame[..length].chunks_exact(channels).map(|s| {
                        s.iter().map(|&v| f32::from(v)).sum::<f32>() / (32_768.0 * channels as f32)
                    }));
                if pcm.rate > 0 && pcm.samples.len() >= source_limit(limit, pcm.rate) {
                    return Ok(pcm);
                }
            }
            if rest.is_empty() {
                break;
            }
            if taken == 0 && !decoded {
                return Err(unreadable("AAC: the decoder takes no more input"));
            }
        }
    }
    if pcm.rate == 0 {
        return Err(unreadable("AAC: no frame decoded"));
    }
    Ok(pcm)
}

/// `pcm` at 48 kHz by linear interpolation: a sandbox needs the reference to be heard where it
/// plays, not resampled to studio quality, and this is exact arithmetic on the same inputs.
fn resample(pcm: &Pcm, limit: usize) -> Vec<f32> {
    let source = &pcm.samples;
    if pcm.rate == SAMPLE_RATE {
        return source.iter().take(limit).copied().collect();
    }
    let step = f64::from(pcm.rate) / f64::from(SAMPLE_RATE);
    let length = ((source.len() as f64 / step) as usize).min(limit);
    (0..length)
        .map(|n| {
            let at = n as f64 * step;
            let i = at as usize;
            let a = source.get(i).copied().unwrap_or(0.0);
            let b = source.get(i + 1).copied().unwrap_or(a);
            a + (b - a) * (at - i as f64) as f32
        })
        .collect()
}
