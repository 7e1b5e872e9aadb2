//! The inputs people send, each made here by ffmpeg the way people make them: H.264 with
//! ffmpeg's defaults (High, B-frames), Baseline, interlaced; H.265 under both sample entry
//! codes; MOV with and without an `ftyp` box; fast-start MP4; and the image and audio formats
//! the upstream accepts. Each is probed, rendered over and checked by ffprobe; with ffmpeg
//! missing, what needs it names its codec.
//!
//! These tests need ffmpeg and fail without it; CI installs it.

use std::path::Path;
use std::process::Command;

use super::*;
use crate::tests::check;
use crate::{audio_duration, image_dimensions, last_frame_png, media_kind, MediaKind, Scene};

/// A file ffmpeg writes from `args` (inputs, codec options), named `name`.
fn made_by_ffmpeg(name: &str, args: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(args)
        .arg(&path)
        .output()
        .expect("ffmpeg (Debian package ffmpeg) must be installed");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&path).unwrap()
}

/// Two seconds of ffmpeg's test pattern, 320x240 at 24 fps, in 4:2:0 like camera and phone
/// video (the pattern itself is RGB, which would make x264 pick a 4:4:4 profile), encoded by
/// `codec` options.
fn video(name: &str, codec: &[&str]) -> Vec<u8> {
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=24",
        "-t",
        "2",
        "-pix_fmt",
        "yuv420p",
    ];
    args.extend_from_slice(codec);
    made_by_ffmpeg(name, &args)
}

const H264_DEFAULTS: &[&str] = &["-c:v", "libx264"];

/// Decodes every frame; the frames yielded and whether ffmpeg decoded them.
fn decode_all(bytes: &[u8]) -> (u32, bool) {
    let mut stream = FrameStream::open(bytes).unwrap();
    let mut frames = 0;
    while stream.advance().unwrap() {
        frames += 1;
        let (rgb, w, h) = stream.frame();
        assert_eq!((w, h), (320, 240));
        assert_eq!(rgb.len(), 320 * 240 * 3);
    }
    (frames, stream.ffmpeg_pid().is_some())
}

/// Probe, decode, recolour and last frame of a 2 s 320x240 input; whether ffmpeg decoded it.
fn reads_as_people_send_it(bytes: &[u8], has_audio: bool) -> bool {
    let info = probe_mp4(bytes).unwrap();
    assert_eq!((info.width, info.height), (320, 240));
    assert!(
        (info.duration_secs - 2.0).abs() < 0.05,
        "{}",
        info.duration_secs
    );
    assert_eq!(info.has_audio, has_audio);
    assert_eq!(media_kind(bytes), Some(MediaKind::Video));

    let (frames, by_ffmpeg) = decode_all(bytes);
    assert_eq!(frames, 48);
    assert_eq!(FrameStream::open(bytes).unwrap().frame_count(), 48);

    let rendered = check(Scene::Recolour { video: bytes }, 256, 144, 36, false);
    assert!((rendered.input_video_seconds - 2.0).abs() < 0.05);
    let png = last_frame_png(bytes).unwrap();
    assert_eq!(image_dimensions(&png).unwrap(), (320, 240));
    by_ffmpeg
}

/// Mean absolute difference between two images' pixels, 0–255.
fn difference(a: &[u8], b: &[u8]) -> f64 {
    let (a, b) = (
        image::load_from_memory(a).unwrap().to_rgb8(),
        image::load_from_memory(b).unwrap().to_rgb8(),
    );
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}

#[test]
fn h264_baseline_stays_with_openh264() {
    let baseline = video(
        "baseline.mp4",
        &["-c:v", "libx264", "-profile:v", "baseline"],
    );
    assert!(!reads_as_people_send_it(&baseline, false));
    // It needs nothing installed.
    let mut stream = FrameStream::open_with(&baseline, Tools::missing()).unwrap();
    assert!(stream.advance().unwrap());
    assert!(probe_with(&baseline, &Tools::missing()).is_ok());
}

#[test]
fn h264_high_with_b_frames() {
    let high = video("high.mp4", H264_DEFAULTS);
    assert!(reads_as_people_send_it(&high, false));
    // The same picture as OpenH264 decodes from a Baseline encode of the same source: frames
    // come out in display order, whole and the right way up.
    let baseline = video(
        "baseline.mp4",
        &["-c:v", "libx264", "-profile:v", "baseline"],
    );
    let d = difference(
        &last_frame_png(&high).unwrap(),
        &last_frame_png(&baseline).unwrap(),
    );
    assert!(d < 3.0, "last frames differ by {d}");
}

#[test]
fn h264_without_b_frames_in_main_and_high_stays_with_openh264() {
    for profile in ["main", "high"] {
        let name = format!("{profile}.mp4");
        let bytes = video(
            &name,
            &["-c:v", "libx264", "-profile:v", profile, "-bf", "0"],
        );
        assert_eq!(decode_all(&bytes), (48, false), "{profile}");
    }
}

#[test]
fn interlaced_h264_hands_over_to_ffmpeg() {
    // Nothing in the header says interlaced; OpenH264 refuses the first picture.
    let interlaced = video(
        "interlaced.mp4",
        &["-c:v", "libx264", "-bf", "0", "-flags", "+ildct+ilme"],
    );
    assert!(FrameStream::open(&interlaced)
        .unwrap()
        .ffmpeg_pid()
        .is_none());
    assert!(reads_as_people_send_it(&interlaced, false));

    let mut stream = FrameStream::open_with(&interlaced, Tools::missing()).unwrap();
    let error = stream.advance().unwrap_err();
    assert_eq!(error.code(), "input_video_unsupported");
    assert!(
        error
            .to_string()
            .contains("H.264 High profile (avc1) video that OpenH264 cannot decode needs ffmpeg"),
        "{error}"
    );
}

#[test]
fn h265_under_both_sample_entries() {
    for tag in ["hvc1", "hev1"] {
        let name = format!("{tag}.mp4");
        let bytes = video(
            &name,
            &[
                "-c:v",
                "libx265",
                "-x265-params",
                "log-level=error",
                "-tag:v",
                tag,
            ],
        );
        assert!(reads_as_people_send_it(&bytes, false), "{tag}");
        let error = FrameStream::open_with(&bytes, Tools::missing())
            .err()
            .unwrap();
        assert_eq!(error.code(), "input_video_unsupported");
        assert_eq!(
            error.to_string(),
            format!(
                "the input video cannot be decoded here: H.265 Main profile with B-frames \
                 ({tag}) video needs ffmpeg, which is not installed \
                 (`/nonexistent/seedgate-ffprobe` was not found)"
            )
        );
        // The header alone is enough to check an input for the upstream.
        assert!(probe_with(&bytes, &Tools::missing()).is_ok());
    }
}

#[test]
fn mov_with_audio() {
    let mov = made_by_ffmpeg(
        "clip.mov",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=24",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-f",
            "mov",
        ],
    );
    assert_eq!(mov.get(4..12), Some(&b"ftypqt  "[..]));
    assert!(reads_as_people_send_it(&mov, true));
}

#[test]
fn mov_without_ftyp() {
    // Older QuickTime files start with other boxes; keeping the size and every offset, the
    // `ftyp` box becomes a `free` one, which the mp4 crate does not accept in its place.
    let mut mov = video("clip.mov", &["-c:v", "libx264", "-f", "mov"]);
    assert_eq!(mov.get(4..8), Some(&b"ftyp"[..]));
    mov[4..8].copy_from_slice(b"free");
    assert!(read_container(&mov).is_err());
    assert!(reads_as_people_send_it(&mov, false));

    let error = probe_with(&mov, &Tools::missing()).err().unwrap();
    assert_eq!(error.code(), "input_video_unsupported");
    assert!(
        error
            .to_string()
            .contains("H.264 High profile with B-frames (avc1) video needs ffmpeg"),
        "{error}"
    );
    let error = FrameStream::open_with(&mov, Tools::missing())
        .err()
        .unwrap();
    assert_eq!(error.code(), "input_video_unsupported");
}

#[test]
fn faststart_mp4() {
    let mp4 = video("fast.mp4", &["-c:v", "libx264", "-movflags", "+faststart"]);
    let moov = mp4.windows(4).position(|w| w == b"moov").unwrap();
    let mdat = mp4.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(moov < mdat);
    assert!(reads_as_people_send_it(&mp4, false));
}

#[test]
fn missing_ffmpeg_names_the_codec() {
    let high = video("high.mp4", H264_DEFAULTS);
    let error = FrameStream::open_with(&high, Tools::missing())
        .err()
        .unwrap();
    assert_eq!(error.code(), "input_video_unsupported");
    assert!(
        error.to_string().contains(
            "H.264 High profile with B-frames (avc1) video needs ffmpeg, which is not installed"
        ),
        "{error}"
    );
    let mpeg4 = video("mpeg4.mp4", &["-c:v", "mpeg4"]);
    let error = FrameStream::open_with(&mpeg4, Tools::missing())
        .err()
        .unwrap();
    assert!(
        error
            .to_string()
            .contains("MPEG-4 Part 2 (mp4v) video needs ffmpeg"),
        "{error}"
    );
    // With ffmpeg there, any codec it knows is decoded.
    assert_eq!(decode_all(&mpeg4), (48, true));
}

#[test]
fn ffmpeg_is_reaped_at_the_end_and_killed_when_dropped_early() {
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    let high = video("high.mp4", H264_DEFAULTS);

    let mut stream = FrameStream::open(&high).unwrap();
    let pid = stream.ffmpeg_pid().unwrap();
    while stream.advance().unwrap() {}
    assert!(!alive(pid), "ffmpeg {pid} left behind after the last frame");
    drop(stream);

    let mut stream = FrameStream::open(&high).unwrap();
    let pid = stream.ffmpeg_pid().unwrap();
    assert!(stream.advance().unwrap());
    drop(stream);
    assert!(!alive(pid), "ffmpeg {pid} left behind by a dropped stream");
}

#[test]
fn damaged_input_through_ffmpeg_is_unreadable() {
    // The header (first, with fast start) promises frames whose bytes are cut off.
    let mut mp4 = video(
        "cut.mp4",
        &[
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=error",
            "-movflags",
            "+faststart",
        ],
    );
    mp4.truncate(mp4.len() * 2 / 3);
    assert!(probe_mp4(&mp4).is_ok());
    let error = last_frame_png(&mp4).unwrap_err();
    assert_eq!(error.code(), "input_video_unreadable", "{error}");
    let message = error.to_string();
    assert!(
        message.starts_with("the input video cannot be read: ffmpeg: "),
        "{message}"
    );
    // The temporary file's path is the server's business.
    assert!(!message.contains("seedgate-decode-"), "{message}");
}

#[test]
fn images_as_people_send_them() {
    for name in ["still.jpg", "still.png", "still.webp"] {
        let image = made_by_ffmpeg(
            name,
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=640x360",
                "-frames:v",
                "1",
            ],
        );
        assert_eq!(media_kind(&image), Some(MediaKind::Image), "{name}");
        assert_eq!(image_dimensions(&image).unwrap(), (640, 360), "{name}");
        check(Scene::ZoomPan { image: &image }, 320, 240, 24, false);
    }
}

#[test]
fn audio_as_people_sends_it() {
    for (name, codec) in [
        ("tone.wav", &[][..]),
        ("tone.mp3", &["-c:a", "libmp3lame"][..]),
        ("tone.aac", &["-c:a", "aac", "-f", "adts"][..]),
        ("tone.m4a", &["-c:a", "aac"][..]),
    ] {
        let mut args = vec!["-f", "lavfi", "-i", "sine=frequency=440:duration=3"];
        args.extend_from_slice(codec);
        let audio = made_by_ffmpeg(name, &args);
        assert_eq!(media_kind(&audio), Some(MediaKind::Audio), "{name}");
        let seconds = audio_duration(&audio).unwrap();
        // Encoders pad to whole frames and add their priming samples.
        assert!((seconds - 3.0).abs() < 0.1, "{name}: {seconds} s");
    }
}
