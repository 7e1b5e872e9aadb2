//! Renders of every scene checked by ffprobe, a tool we did not write.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

struct Probe {
    codec: String,
    width: u64,
    height: u64,
    fps: String,
    frames: u64,
    duration: f64,
    audio: bool,
}

fn ffprobe(mp4: &[u8]) -> Probe {
    // A directory per probe: tests run in parallel, and two renders can be the same length.
    static PROBES: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "seedgate-media-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("probe.mp4");
    std::fs::write(&path, mp4).unwrap();
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe (Debian package ffmpeg) must be installed");
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams = json["streams"].as_array().unwrap();
    let video = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    Probe {
        codec: video["codec_name"].as_str().unwrap().into(),
        width: video["width"].as_u64().unwrap(),
        height: video["height"].as_u64().unwrap(),
        fps: video["r_frame_rate"].as_str().unwrap().into(),
        frames: video["nb_read_frames"].as_str().unwrap().parse().unwrap(),
        duration: json["format"]["duration"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        audio: streams.iter().any(|s| s["codec_type"] == "audio"),
    }
}

fn png(width: u32, height: u32, tint: u8) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, tint])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn clip(width: u32, height: u32, frames: u32) -> Vec<u8> {
    encode_mp4(width, height, 24, frames, None, &mut |i, rgb| {
        for (n, px) in rgb.chunks_mut(3).enumerate() {
            px[0] = ((n as u32 % width + i * 3) % 256) as u8;
            px[1] = 60;
            px[2] = (i * 7 % 256) as u8;
        }
    })
    .unwrap()
}

pub(crate) fn check(scene: Scene, width: u32, height: u32, frames: u32, audio: bool) -> Rendered {
    let rendered = render(&RenderRequest {
        scene,
        audios: Vec::new(),
        container: Default::default(),
        width,
        height,
        fps: 24,
        frames,
        seed: 7,
        audio,
        caption: Vec::new(),
    })
    .unwrap();
    let probe = ffprobe(&rendered.mp4);
    assert_eq!(probe.codec, "h264");
    assert_eq!(
        (probe.width, probe.height),
        (u64::from(width), u64::from(height))
    );
    assert_eq!(probe.fps, "24/1");
    assert_eq!(probe.frames, u64::from(frames));
    let seconds = f64::from(frames) / 24.0;
    assert!(
        (probe.duration - seconds).abs() <= 0.1,
        "{} vs {seconds}",
        probe.duration
    );
    assert_eq!(probe.audio, audio);
    assert_eq!(&rendered.last_frame_png[1..4], b"PNG");
    assert_eq!(
        image_dimensions(&rendered.last_frame_png).unwrap(),
        (width, height)
    );
    rendered
}

#[test]
fn pattern_with_audio() {
    let r = check(
        Scene::Pattern {
            prompt: "a lighthouse",
        },
        864,
        496,
        96,
        true,
    );
    assert!(r.has_audio);
    assert_eq!(r.input_video_seconds, 0.0);
}

#[test]
fn zoom_pan_over_an_image() {
    let image = png(640, 360, 10);
    check(Scene::ZoomPan { image: &image }, 496, 864, 48, false);
}

#[test]
fn crossfade_between_images() {
    let (a, b) = (png(640, 360, 0), png(300, 500, 255));
    check(Scene::Crossfade { start: &a, end: &b }, 640, 640, 48, true);
}

#[test]
fn sequence_of_images_and_videos() {
    let image = png(640, 360, 90);
    let video = clip(320, 240, 48);
    let r = check(
        Scene::Sequence {
            prompt: "references",
            images: vec![&image],
            videos: vec![&video, &video],
        },
        752,
        560,
        96,
        false,
    );
    assert!(
        (r.input_video_seconds - 4.0).abs() < 0.01,
        "{}",
        r.input_video_seconds
    );
}

#[test]
fn recolour_a_video() {
    let video = clip(320, 240, 24);
    let r = check(Scene::Recolour { video: &video }, 992, 432, 72, false);
    assert!((r.input_video_seconds - 1.0).abs() < 0.01);
}

#[test]
fn continue_from_the_last_frame() {
    let video = clip(320, 240, 24);
    check(Scene::Continue { video: &video }, 864, 496, 48, true);
}

#[test]
fn same_request_same_bytes() {
    let request = || RenderRequest {
        scene: Scene::Pattern { prompt: "same" },
        audios: Vec::new(),
        container: Default::default(),
        width: 320,
        height: 240,
        fps: 24,
        frames: 24,
        seed: 3,
        audio: true,
        caption: vec!["SANDBOX".into()],
    };
    assert_eq!(
        render(&request()).unwrap().mp4,
        render(&request()).unwrap().mp4
    );
    let other = RenderRequest {
        seed: 4,
        ..request()
    };
    assert_ne!(render(&request()).unwrap().mp4, render(&other).unwrap().mp4);
}

#[test]
fn probe_reads_size_and_duration() {
    let info = probe_mp4(&clip(320, 240, 48)).unwrap();
    assert_eq!((info.width, info.height), (320, 240));
    assert!((info.duration_secs - 2.0).abs() < 0.01);
    assert!(!info.has_audio);
    let with_audio = encode_mp4(320, 240, 24, 24, Some(1), &mut |_, rgb| rgb.fill(9)).unwrap();
    assert!(probe_mp4(&with_audio).unwrap().has_audio);
    let png = last_frame_png(&with_audio).unwrap();
    assert_eq!(image_dimensions(&png).unwrap(), (320, 240));
}

#[test]
fn broken_inputs_are_errors_not_panics() {
    let junk = b"definitely not media".to_vec();
    let req = |scene| RenderRequest {
        scene,
        audios: Vec::new(),
        container: Default::default(),
        width: 320,
        height: 240,
        fps: 24,
        frames: 4,
        seed: 0,
        audio: false,
        caption: Vec::new(),
    };
    assert_eq!(
        render(&req(Scene::ZoomPan { image: &junk }))
            .err()
            .unwrap()
            .code(),
        "input_image_unreadable"
    );
    assert_eq!(
        render(&req(Scene::Recolour { video: &junk }))
            .err()
            .unwrap()
            .code(),
        "input_video_unreadable"
    );
    assert_eq!(
        render(&req(Scene::Continue { video: &junk }))
            .err()
            .unwrap()
            .code(),
        "input_video_unreadable"
    );
    let mut truncated = clip(320, 240, 24);
    truncated.truncate(truncated.len() / 2);
    assert!(render(&req(Scene::Recolour { video: &truncated })).is_err());
    let odd = RenderRequest {
        width: 321,
        ..req(Scene::Pattern { prompt: "x" })
    };
    assert_eq!(render(&odd).err().unwrap().code(), "invalid_render_request");
}
