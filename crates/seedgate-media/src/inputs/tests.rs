//! Input kinds and audio durations, checked on files synthesized in memory whose lengths are
//! known by construction, plus hostile bytes that must come back as errors.

use std::io::Cursor;

use mp4::{FourCC, Mp4Config, Mp4Writer};

use super::*;
use crate::{encode_mp4, probe_mp4};

fn assert_close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 0.002,
        "{actual} s, expected {expected} s"
    );
}

fn audio_error(bytes: &[u8]) -> String {
    let error = audio_duration(bytes).unwrap_err();
    assert_eq!(error.code(), "input_audio_unreadable", "{error}");
    error.to_string()
}

fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = id.to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    if body.len() % 2 == 1 {
        out.push(0);
    }
    out
}

fn fmt_body(tag: u16, channels: u16, rate: u32, byte_rate: u32, block: u16, bits: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&byte_rate.to_le_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out
}

fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = chunks.concat();
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32 + 4).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(&body);
    out
}

/// PCM WAV of `seconds`, with a LIST chunk of odd length between fmt and data.
fn pcm_wav(rate: u32, channels: u16, bits: u16, seconds: f64) -> Vec<u8> {
    let block = channels * bits / 8;
    let frames = (seconds * f64::from(rate)).round() as usize;
    riff(&[
        chunk(
            b"fmt ",
            &fmt_body(1, channels, rate, rate * u32::from(block), block, bits),
        ),
        chunk(b"LIST", b"INFOx"),
        chunk(b"data", &vec![0u8; frames * usize::from(block)]),
    ])
}

/// An MPEG audio frame header: version bits (3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5), layer bits
/// (3 = I, 2 = II, 1 = III), no CRC.
fn mpeg_header(
    version: u8,
    layer: u8,
    bitrate: u8,
    rate: u8,
    padding: bool,
    mono: bool,
) -> [u8; 4] {
    [
        0xFF,
        0xE0 | version << 3 | layer << 1 | 1,
        bitrate << 4 | rate << 2 | u8::from(padding) << 1,
        if mono { 0xC0 } else { 0x00 },
    ]
}

/// `frames` zero-payload frames, every third one padded (by `slot` bytes).
fn mpeg_stream(
    header: impl Fn(bool) -> [u8; 4],
    len: usize,
    slot: usize,
    frames: usize,
) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..frames {
        let padding = i % 3 == 1;
        let start = out.len();
        out.extend_from_slice(&header(padding));
        out.resize(start + len + if padding { slot } else { 0 }, 0);
    }
    out
}

/// An ID3v2.4 tag with a footer, whose body is `body_len` zero bytes.
fn id3v2(body_len: u32) -> Vec<u8> {
    let size = [
        (body_len >> 21) as u8 & 0x7F,
        (body_len >> 14) as u8 & 0x7F,
        (body_len >> 7) as u8 & 0x7F,
        body_len as u8 & 0x7F,
    ];
    let mut out = b"ID3\x04\x00\x10".to_vec();
    out.extend_from_slice(&size);
    out.resize(10 + body_len as usize, 0);
    out.extend_from_slice(b"3DI\x04\x00\x10");
    out.extend_from_slice(&size);
    out
}

/// MPEG-1 Layer III, 128 kbps, 44.1 kHz: 417 bytes a frame, 418 when padded.
fn mp3(frames: usize) -> Vec<u8> {
    mpeg_stream(|p| mpeg_header(3, 1, 9, 0, p, false), 417, 1, frames)
}

/// ADTS frames of `len` bytes: MPEG-4 AAC-LC, stereo, at sampling-frequency index `sf_index`.
fn adts(sf_index: u8, crc: bool, blocks: u8, len: usize, frames: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..frames {
        let start = out.len();
        out.extend_from_slice(&[
            0xFF,
            0xF0 | u8::from(!crc),
            1 << 6 | sf_index << 2,
            2 << 6 | (len >> 11) as u8 & 0x03,
            (len >> 3) as u8,
            (len as u8 & 0x07) << 5 | 0x1F,
            0xFC | (blocks - 1),
        ]);
        out.resize(start + len, 0);
    }
    out
}

/// An audio-only M4A, encoded by the renderer's own AAC path.
fn m4a(seconds: f64) -> Vec<u8> {
    let config = Mp4Config {
        major_brand: FourCC::from(*b"M4A "),
        minor_version: 0,
        compatible_brands: vec![FourCC::from(*b"M4A "), FourCC::from(*b"isom")],
        timescale: 48_000,
    };
    let mut writer = Mp4Writer::write_start(Cursor::new(Vec::new()), &config).unwrap();
    crate::audio::add_track(&mut writer, 1, 5, seconds, &[]).unwrap();
    writer.write_end().unwrap();
    writer.into_writer().into_inner()
}

fn video(audio: bool) -> Vec<u8> {
    encode_mp4(64, 48, 24, 24, audio.then_some(3), &mut |i, rgb| {
        rgb.fill(i as u8)
    })
    .unwrap()
}

fn png() -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image::RgbImage::new(8, 8)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

#[test]
fn wav_pcm_durations() {
    assert_close(audio_duration(&pcm_wav(16_000, 1, 16, 3.0)).unwrap(), 3.0);
    assert_close(audio_duration(&pcm_wav(44_100, 2, 24, 7.25)).unwrap(), 7.25);
    assert_close(audio_duration(&pcm_wav(8_000, 1, 8, 15.0)).unwrap(), 15.0);
}

#[test]
fn wav_float_with_chunks_after_the_data() {
    let mut wav = riff(&[
        chunk(b"fmt ", &fmt_body(3, 2, 48_000, 384_000, 8, 32)),
        chunk(b"fact", &120_000u32.to_le_bytes()),
        chunk(b"data", &vec![0u8; 120_000 * 8]),
        chunk(b"id3 ", &[1, 2, 3]),
    ]);
    // Stray bytes shorter than a chunk header.
    wav.extend_from_slice(&[0, 0, 0]);
    assert_close(audio_duration(&wav).unwrap(), 2.5);
}

#[test]
fn wav_compressed_formats_go_by_byte_rate() {
    // IMA ADPCM: blocks are not sample frames, so only the average byte rate says how long.
    let wav = riff(&[
        chunk(b"fmt ", &fmt_body(0x11, 1, 22_050, 11_100, 512, 4)),
        chunk(b"data", &vec![0u8; 11_100 * 4]),
    ]);
    assert_close(audio_duration(&wav).unwrap(), 4.0);
}

#[test]
fn wav_data_size_left_unset_runs_to_the_end() {
    let mut wav = riff(&[chunk(b"fmt ", &fmt_body(1, 1, 16_000, 32_000, 2, 16))]);
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&u32::MAX.to_le_bytes());
    wav.resize(wav.len() + 64_000, 0);
    assert_close(audio_duration(&wav).unwrap(), 2.0);
}

#[test]
fn mp3_of_about_four_seconds_between_tags() {
    let mut file = id3v2(300);
    file.extend_from_slice(&mp3(153));
    // ID3v1 tag at the end: 128 bytes starting with "TAG".
    file.extend_from_slice(b"TAG");
    file.resize(file.len() + 125, b' ');
    assert_close(audio_duration(&file).unwrap(), 153.0 * 1152.0 / 44_100.0);
    assert_eq!(media_kind(&file), Some(MediaKind::Audio));
}

#[test]
fn mpeg_audio_versions_and_layers() {
    // (version, layer, bitrate index, rate index, frame bytes, padding slot, samples, rate)
    let cases = [
        (3, 1, 9, 0, 417, 1, 1152, 44_100.0), // MPEG-1 Layer III, 128 kbps
        (3, 2, 10, 1, 576, 1, 1152, 48_000.0), // MPEG-1 Layer II, 192 kbps
        (3, 3, 12, 2, 576, 4, 384, 32_000.0), // MPEG-1 Layer I, 384 kbps
        (2, 1, 8, 0, 208, 1, 576, 22_050.0),  // MPEG-2 Layer III, 64 kbps
        (2, 3, 4, 1, 128, 4, 384, 24_000.0),  // MPEG-2 Layer I, 64 kbps
        (0, 1, 1, 2, 72, 1, 576, 8_000.0),    // MPEG-2.5 Layer III, 8 kbps
    ];
    for (version, layer, bitrate, rate, len, slot, samples, sample_rate) in cases {
        for mono in [false, true] {
            let frames = 200;
            let stream = mpeg_stream(
                |p| mpeg_header(version, layer, bitrate, rate, p, mono),
                len,
                slot,
                frames,
            );
            assert_close(
                audio_duration(&stream).unwrap(),
                frames as f64 * samples as f64 / sample_rate,
            );
        }
    }
}

#[test]
fn mp3_vbr_header_frame_is_not_counted() {
    for (tag, at) in [(b"Info", 36), (b"Xing", 36), (b"VBRI", 36)] {
        let mut file = mp3(100);
        file[at..at + 4].copy_from_slice(tag);
        assert_close(audio_duration(&file).unwrap(), 99.0 * 1152.0 / 44_100.0);
    }
    // The Xing tag follows the side information: 17 bytes for mono MPEG-1, 9 for mono MPEG-2.
    let mut mono = mpeg_stream(|p| mpeg_header(3, 1, 9, 0, p, true), 417, 1, 100);
    mono[21..25].copy_from_slice(b"Xing");
    assert_close(audio_duration(&mono).unwrap(), 99.0 * 1152.0 / 44_100.0);
    let mut mono_v2 = mpeg_stream(|p| mpeg_header(2, 1, 8, 0, p, true), 208, 1, 100);
    mono_v2[13..17].copy_from_slice(b"Info");
    assert_close(audio_duration(&mono_v2).unwrap(), 99.0 * 576.0 / 22_050.0);
    // Two encodes joined end to end: the second one's Info frame is not sound either.
    let mut joined = mp3(100);
    joined[36..40].copy_from_slice(b"Info");
    let second = joined.clone();
    joined.extend_from_slice(&second);
    assert_close(audio_duration(&joined).unwrap(), 198.0 * 1152.0 / 44_100.0);
    // Only Layer III frames carry these headers; in a Layer II frame the bytes are sound.
    let mut layer2 = mpeg_stream(|p| mpeg_header(3, 2, 10, 1, p, false), 576, 1, 100);
    layer2[36..40].copy_from_slice(b"Xing");
    assert_close(audio_duration(&layer2).unwrap(), 100.0 * 1152.0 / 48_000.0);
}

#[test]
fn mp3_after_a_little_padding_but_not_deep_inside_a_file() {
    let mut padded = id3v2(20);
    padded.resize(padded.len() + 700, 0);
    padded.extend_from_slice(&mp3(100));
    assert_close(audio_duration(&padded).unwrap(), 100.0 * 1152.0 / 44_100.0);

    let mut buried = vec![0u8; 5000];
    buried.extend_from_slice(&mp3(100));
    audio_error(&buried);
}

#[test]
fn stream_ends_at_a_frame_of_another_stream_or_a_partial_frame() {
    let mut file = mp3(50);
    // An MPEG-1 Layer II frame does not continue a Layer III stream.
    file.extend_from_slice(&mpeg_stream(
        |p| mpeg_header(3, 2, 10, 1, p, false),
        576,
        1,
        10,
    ));
    assert_close(audio_duration(&file).unwrap(), 50.0 * 1152.0 / 44_100.0);

    let mut cut = mp3(50);
    cut.truncate(cut.len() - 10);
    assert_close(audio_duration(&cut).unwrap(), 49.0 * 1152.0 / 44_100.0);
}

#[test]
fn adts_durations() {
    let plain = adts(4, false, 1, 200, 130);
    assert_close(audio_duration(&plain).unwrap(), 130.0 * 1024.0 / 44_100.0);
    assert_eq!(media_kind(&plain), Some(MediaKind::Audio));

    let mut tagged = id3v2(40);
    tagged.extend_from_slice(&adts(3, true, 2, 700, 100));
    assert_close(audio_duration(&tagged).unwrap(), 100.0 * 2048.0 / 48_000.0);
}

#[test]
fn m4a_duration_is_the_audio_track_length() {
    let file = m4a(3.0);
    // Whole AAC frames of 1024 samples at 48 kHz: 141 of them cover 3 s.
    assert_close(audio_duration(&file).unwrap(), 141.0 * 1024.0 / 48_000.0);
    assert_eq!(media_kind(&file), Some(MediaKind::Audio));
    audio_error(&file[..file.len() / 2]);
}

#[test]
fn kinds_of_files() {
    assert_eq!(media_kind(&png()), Some(MediaKind::Image));
    assert_eq!(media_kind(&video(false)), Some(MediaKind::Video));
    let with_sound = video(true);
    assert_eq!(media_kind(&with_sound), Some(MediaKind::Video));
    assert!(audio_error(&with_sound).contains("video"));
    assert_eq!(
        media_kind(&pcm_wav(16_000, 1, 16, 1.0)),
        Some(MediaKind::Audio)
    );
    assert_eq!(media_kind(b"just some text\n"), None);
}

#[test]
fn garbage_empty_text_and_truncated_headers_are_refused() {
    let text = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n".repeat(50);
    let mut rng = Rng(42);
    let garbage: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
    for bytes in [&[][..], &text[..], &garbage[..], &[0xFF; 1000][..]] {
        audio_error(bytes);
        assert_eq!(
            probe_mp4(bytes).err().unwrap().code(),
            "input_video_unreadable"
        );
        assert_eq!(media_kind(bytes), None);
    }

    let wav = pcm_wav(16_000, 1, 16, 3.0);
    // Header only; cut inside fmt; cut before the data chunk.
    assert!(audio_error(&wav[..12]).contains("fmt"));
    assert!(audio_error(&wav[..30]).contains("fmt"));
    assert!(audio_error(&wav[..44]).contains("data"));
    let silent = riff(&[
        chunk(b"fmt ", &fmt_body(1, 1, 0, 0, 2, 16)),
        chunk(b"data", &[0; 100]),
    ]);
    assert!(audio_error(&silent).contains("sample rate"));
    let short_fmt = riff(&[chunk(b"fmt ", &[1, 0, 1, 0]), chunk(b"data", &[0; 100])]);
    audio_error(&short_fmt);

    // Too few frames to tell an MP3 from chance.
    audio_error(&mp3(MIN_FRAMES - 1));
    audio_error(&adts(4, false, 1, 200, MIN_FRAMES - 1));
    let mut long_tag = id3v2(100);
    long_tag.truncate(60);
    assert!(audio_error(&long_tag).contains("ID3"));
    let mut not_synchsafe = id3v2(0);
    not_synchsafe[9] = 0x80;
    not_synchsafe.extend_from_slice(&mp3(10));
    assert!(audio_error(&not_synchsafe).contains("synchsafe"));
    audio_error(b"ID3\x04\x00");
}

/// Boxes after an `ftyp`, with a real one first so the mp4 crate reads on.
fn mp4_with(boxes: &[u8]) -> Vec<u8> {
    let mut out = b"\0\0\0\x10ftypisom\0\0\0\0".to_vec();
    out.extend_from_slice(boxes);
    out
}

#[test]
fn mp4_parser_loops_and_panics_are_refused() {
    // A nested box of size 0 sends mp4 0.14 back to the box's own start, forever.
    let looping = mp4_with(b"\0\0\0\x10moov\0\0\0\0abcd");
    // An `emsg` box shorter than its own strings underflows mp4 0.14's size arithmetic.
    let mut underflow = mp4_with(b"\0\0\0\x0cemsg\0\0\0\0a\0b\0");
    underflow.resize(underflow.len() + 64, 0);
    for bytes in [looping, underflow] {
        assert_eq!(
            probe_mp4(&bytes).err().unwrap().code(),
            "input_video_unreadable"
        );
        audio_error(&bytes);
        assert_eq!(media_kind(&bytes), None);
    }
}

/// splitmix64: deterministic, so a failing case replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn survives(bytes: &[u8]) {
    // Without ffmpeg: what the mp4 crate refuses would go to ffprobe, a program rather than a
    // parser of ours, and thousands of runs of it would only make this test slow.
    let tools = Tools::missing();
    if let Ok(seconds) = audio_duration(bytes) {
        assert!(seconds.is_finite() && seconds >= 0.0, "{seconds}");
    }
    if let Ok(info) = probe_with(bytes, &tools) {
        assert!(info.duration_secs.is_finite() && info.duration_secs >= 0.0);
    }
    media_kind_with(bytes, &tools);
}

#[test]
fn hostile_bytes_never_panic() {
    let mut wav_then_list = pcm_wav(8_000, 1, 8, 0.1);
    wav_then_list.extend_from_slice(&chunk(b"LIST", &[7; 33]));
    let mut tagged_mp3 = id3v2(30);
    tagged_mp3.extend_from_slice(&mp3(12));
    let samples = [
        wav_then_list,
        tagged_mp3,
        adts(4, true, 1, 64, 12),
        m4a(0.2),
        video(true),
        png(),
    ];
    let mut rng = Rng(7);
    for sample in &samples {
        for _ in 0..400 {
            survives(&sample[..rng.below(sample.len() + 1)]);

            let mut mutated = sample.clone();
            for _ in 0..1 + rng.below(8) {
                // Half the hits land near the end, where an MP4 keeps its header.
                let at = if rng.below(2) == 0 {
                    rng.below(mutated.len())
                } else {
                    mutated.len() - 1 - rng.below(mutated.len().min(1024))
                };
                if rng.below(4) == 0 && at + 4 <= mutated.len() {
                    // A tiny big-endian number: a box or chunk size, if it lands on one.
                    let tiny = rng.below(20) as u32;
                    mutated[at..at + 4].copy_from_slice(&tiny.to_be_bytes());
                } else {
                    mutated[at] = rng.next() as u8;
                }
            }
            survives(&mutated);
            survives(&mutated[..rng.below(mutated.len() + 1)]);
        }
    }
    let magics: [&[u8]; 5] = [
        b"RIFF\0\0\0\0WAVE",
        b"ID3\x03\0\0",
        b"\0\0\0\x18ftyp",
        b"\xFF\xFB",
        b"\xFF\xF1",
    ];
    for _ in 0..2000 {
        let mut bytes = magics[rng.below(magics.len())].to_vec();
        let len = rng.below(2048);
        bytes.extend((0..len).map(|_| rng.next() as u8));
        survives(&bytes);
    }
}
