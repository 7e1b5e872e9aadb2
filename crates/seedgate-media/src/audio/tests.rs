//! Reference audio in the soundtrack: each format decoded to 48 kHz mono, and a render that
//! carries a reference judged by ffmpeg, which has no part in writing it.

use std::process::Command;

use super::reference::{sequence, sequence_with};
use crate::decode::Tools;
use crate::{render, RenderRequest, Scene};

const RATE: usize = 48_000;

/// A WAV of `channels` channels of 16-bit PCM at `rate`: a full-scale-over-two square wave of
/// `hz` for `loud` seconds, then silence to `seconds`.
fn square_wav(rate: u32, channels: u16, hz: u32, loud: f64, seconds: f64) -> Vec<u8> {
    let frames = (seconds * f64::from(rate)) as usize;
    let loud_frames = (loud * f64::from(rate)) as usize;
    let period = (rate / hz) as usize;
    let mut data = Vec::new();
    for n in 0..frames {
        let v: i16 = match n {
            n if n >= loud_frames => 0,
            n if n % period < period / 2 => 16_000,
            _ => -16_000,
        };
        for _ in 0..channels {
            data.extend_from_slice(&v.to_le_bytes());
        }
    }
    let block = channels * 2;
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// `wav` converted by ffmpeg into another format (`extension` picks it).
fn converted(wav: &[u8], extension: &str, codec: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (
        dir.path().join("in.wav"),
        dir.path().join(format!("out.{extension}")),
    );
    std::fs::write(&input, wav).unwrap();
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(&input)
        .args(codec)
        .arg(&output)
        .status()
        .expect("ffmpeg (Debian package ffmpeg) must be installed");
    assert!(status.success());
    std::fs::read(output).unwrap()
}

fn rms(samples: &[f32]) -> f32 {
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len().max(1) as f32).sqrt()
}

/// Loud for its first two seconds, silent for its last two, whatever the format.
fn assert_follows_the_square(name: &str, decoded: &[f32]) {
    let seconds = decoded.len() as f64 / RATE as f64;
    assert!((seconds - 4.0).abs() < 0.1, "{name}: {seconds} s");
    let (loud, quiet) = (
        rms(&decoded[RATE / 2..RATE * 3 / 2]),
        rms(&decoded[RATE * 5 / 2..RATE * 7 / 2]),
    );
    assert!(
        loud > 0.3 && quiet < 0.01,
        "{name}: loud {loud}, quiet {quiet}"
    );
}

#[test]
fn reference_audio_decodes_from_each_accepted_format() {
    // WAV and AAC, raw or in M4A, are read without ffmpeg; MP3 needs it.
    let alone = |bytes: &[u8]| sequence_with(&[bytes], usize::MAX, &Tools::missing());
    let wav = square_wav(44_100, 2, 1000, 2.0, 4.0);
    assert_follows_the_square("wav", &alone(&wav).unwrap());
    let adts = converted(&wav, "aac", &["-c:a", "aac", "-b:a", "128k"]);
    assert_follows_the_square("adts", &alone(&adts).unwrap());
    let m4a = converted(&wav, "m4a", &["-c:a", "aac", "-b:a", "128k"]);
    assert_follows_the_square("m4a", &alone(&m4a).unwrap());
    let mp3 = converted(&wav, "mp3", &["-c:a", "libmp3lame", "-b:a", "128k"]);
    assert_follows_the_square("mp3", &sequence(&[&mp3], usize::MAX).unwrap());
    let missing = alone(&mp3).unwrap_err().to_string();
    assert!(
        missing.contains("needs ffmpeg, which is not installed"),
        "{missing}"
    );
    // Several play one after another, cut at the limit.
    let two = sequence(&[&wav, &adts], 6 * RATE).unwrap();
    assert_eq!(two.len(), 6 * RATE);
    assert!(
        rms(&two[RATE * 9 / 2..RATE * 11 / 2]) > 0.3,
        "the second starts at 4 s"
    );
    assert!(sequence(&[b"RIFF\0\0\0\0WAVEjunk".as_slice()], RATE).is_err());
}

/// ffmpeg's mean volume (dB) of `mp4`'s audio from `start` to `end` s, in a band around 1 kHz.
fn band_volume(mp4: &[u8], start: f64, end: f64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("render.mp4");
    std::fs::write(&path, mp4).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-nostats", "-i"])
        .arg(&path)
        .args([
            "-map",
            "0:a",
            "-af",
            &format!("atrim={start}:{end},bandpass=f=1000:width_type=q:w=4,volumedetect"),
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("ffmpeg (Debian package ffmpeg) must be installed");
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.split("mean_volume:").nth(1))
        .unwrap_or_else(|| panic!("no volumedetect in {log}"));
    line.trim().trim_end_matches("dB").trim().parse().unwrap()
}

#[test]
fn reference_audio_is_mixed_into_the_soundtrack() {
    let image = {
        let mut out = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_pixel(320, 240, image::Rgb([40, 90, 160]))
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    };
    let reference = square_wav(44_100, 2, 1000, 2.0, 4.0);
    let request = |audios: Vec<&'static [u8]>| {
        let image: &'static [u8] = Box::leak(image.clone().into_boxed_slice());
        RenderRequest {
            scene: Scene::Sequence {
                prompt: "references",
                images: vec![image],
                videos: Vec::new(),
            },
            audios,
            container: Default::default(),
            width: 320,
            height: 240,
            fps: 24,
            frames: 120,
            seed: 11,
            audio: true,
            caption: Vec::new(),
        }
    };
    let reference: &'static [u8] = Box::leak(reference.into_boxed_slice());
    let with = render(&request(vec![reference])).unwrap().mp4;
    let without = render(&request(Vec::new())).unwrap().mp4;
    assert!(with != without, "the reference changes the file");
    assert!(
        with == render(&request(vec![reference])).unwrap().mp4,
        "deterministic"
    );

    // While the reference plays its 1 kHz square, the output carries it…
    let (playing, bare) = (
        band_volume(&with, 0.2, 1.8),
        band_volume(&without, 0.2, 1.8),
    );
    assert!(
        playing > bare + 12.0,
        "1 kHz at 0.2–1.8 s: {playing} dB with the reference, {bare} dB without"
    );
    // …and once the reference falls silent, nothing of it is left.
    let (after, bare_after) = (
        band_volume(&with, 2.3, 3.8),
        band_volume(&without, 2.3, 3.8),
    );
    assert!(
        after < bare_after + 1.0,
        "1 kHz at 2.3–3.8 s: {after} dB with the silent reference, {bare_after} dB without"
    );
    assert!(
        playing > after + 12.0,
        "{playing} dB playing, {after} dB after"
    );
}
