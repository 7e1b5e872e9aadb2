//! Input videos OpenH264 cannot decode (H.264 with B-frames, interlaced or beyond 8-bit
//! 4:2:0; H.265; any other codec) and MP4/MOV files the mp4 crate cannot read, decoded by the
//! `ffmpeg` program as an external engine. It is run, not linked, so `cargo build` still needs
//! no system library, and only the inputs that need it need it installed.
//!
//! ffprobe reads the stream's size first; ffmpeg then writes raw RGB frames of exactly that
//! size to a pipe, which is read one frame at a time, so memory stays bounded whatever the
//! length. The programs are `ffmpeg` and `ffprobe` from `PATH`, unless `SEEDGATE_FFMPEG` and
//! `SEEDGATE_FFPROBE` name others.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use tempfile::TempDir;

use crate::MediaError;

/// Frames larger than this are refused before ffmpeg runs, since two frame buffers are held
/// at once; 8K UHD (7680×4320) fits.
const MAX_PIXELS: u64 = 8192 * 4320;

/// The programs that decode what OpenH264 cannot.
pub(crate) struct Tools {
    pub ffmpeg: OsString,
    pub ffprobe: OsString,
}

impl Tools {
    /// `ffmpeg` and `ffprobe`, or the programs `SEEDGATE_FFMPEG` and `SEEDGATE_FFPROBE` name.
    pub(crate) fn from_env() -> Self {
        let program = |var: &str, default: &str| {
            std::env::var_os(var)
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| default.into())
        };
        Self {
            ffmpeg: program("SEEDGATE_FFMPEG", "ffmpeg"),
            ffprobe: program("SEEDGATE_FFPROBE", "ffprobe"),
        }
    }

    /// Programs that do not exist, for tests of what happens without ffmpeg (the environment
    /// is shared by tests running in parallel, so it is left alone).
    #[cfg(test)]
    pub(crate) fn missing() -> Self {
        Self {
            ffmpeg: "/nonexistent/seedgate-ffmpeg".into(),
            ffprobe: "/nonexistent/seedgate-ffprobe".into(),
        }
    }
}

fn unreadable(reason: impl Into<String>) -> MediaError {
    MediaError::UnreadableVideo(reason.into())
}

/// A program that cannot be started makes the video unsupported here, not unreadable: it
/// may be fine, and the message says which codec needs what.
fn cannot_run(video: &str, program: &OsStr, e: &io::Error) -> MediaError {
    let program = program.to_string_lossy();
    MediaError::UnsupportedVideo(if e.kind() == io::ErrorKind::NotFound {
        format!("{video} needs ffmpeg, which is not installed (`{program}` was not found)")
    } else {
        format!("{video} needs ffmpeg, which cannot be run (`{program}`: {e})")
    })
}

/// ffmpeg's own words for a failure, kept short (its first lines name the cause), with the
/// temporary file's path, which means nothing to whoever sent the video, shortened to `input`.
fn first_lines(stderr: &[u8], input: &Path) -> String {
    let text = String::from_utf8_lossy(stderr).replace(&*input.to_string_lossy(), "input");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .take(3)
        .collect();
    if lines.is_empty() {
        "failed without a message".into()
    } else {
        lines.join("; ").chars().take(600).collect()
    }
}

/// The input in a private temporary directory, removed on drop: MP4/MOV demuxers seek (the
/// header may come last), which a pipe cannot.
struct Scratch {
    dir: TempDir,
    input: PathBuf,
}

fn staging(e: io::Error) -> MediaError {
    unreadable(format!("cannot stage the video for ffmpeg: {e}"))
}

impl Scratch {
    fn new(bytes: &[u8]) -> Result<Self, MediaError> {
        let dir = tempfile::Builder::new()
            .prefix("seedgate-decode-")
            .tempdir()
            .map_err(staging)?;
        let input = dir.path().join("input");
        std::fs::write(&input, bytes).map_err(staging)?;
        Ok(Self { dir, input })
    }
}

/// What ffprobe reads of a file's first video stream (cover art aside) and its other streams.
pub(crate) struct Probed {
    pub width: u32,
    pub height: u32,
    pub duration_secs: f64,
    /// Frames the container announces; estimated from the frame rate when it does not.
    pub frames: u32,
    pub has_audio: bool,
}

/// Reads a file's header with ffprobe. `video` names it for the error when ffprobe is missing.
pub(crate) fn probe(bytes: &[u8], tools: &Tools, video: &str) -> Result<Probed, MediaError> {
    let scratch = Scratch::new(bytes)?;
    run_ffprobe(&scratch.input, tools, video)
}

fn run_ffprobe(file: &Path, tools: &Tools, video: &str) -> Result<Probed, MediaError> {
    let out = Command::new(&tools.ffprobe)
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,width,height,duration,nb_frames,avg_frame_rate\
             :stream_disposition=attached_pic:format=duration",
            "-of",
            "json",
        ])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| cannot_run(video, &tools.ffprobe, &e))?;
    if !out.status.success() {
        return Err(unreadable(format!(
            "ffprobe: {}",
            first_lines(&out.stderr, file)
        )));
    }
    let json: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| unreadable(format!("ffprobe's answer: {e}")))?;
    let streams = json["streams"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    // The stream ffmpeg's `V` specifier picks: video that is not an attached picture.
    let stream = streams
        .iter()
        .find(|s| s["codec_type"] == "video" && s["disposition"]["attached_pic"] != 1)
        .ok_or_else(|| unreadable("no video track"))?;
    let side = |key: &str| {
        stream[key]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v > 0)
    };
    let (Some(width), Some(height)) = (side("width"), side("height")) else {
        return Err(unreadable("the video track has no size"));
    };
    let seconds = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
    };
    let duration_secs = seconds(&stream["duration"])
        .or_else(|| seconds(&json["format"]["duration"]))
        .ok_or_else(|| unreadable("the video has no duration"))?;
    let frames = stream["nb_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .or_else(|| {
            frame_rate(&stream["avg_frame_rate"]).map(|r| (r * duration_secs).round() as u32)
        })
        .unwrap_or(0);
    Ok(Probed {
        width,
        height,
        duration_secs,
        frames,
        has_audio: streams.iter().any(|s| s["codec_type"] == "audio"),
    })
}

/// A rate as ffprobe writes it, "24000/1001".
fn frame_rate(v: &Value) -> Option<f64> {
    let (num, den) = v.as_str()?.split_once('/')?;
    let (num, den): (f64, f64) = (num.parse().ok()?, den.parse().ok()?);
    (den > 0.0).then(|| num / den)
}

/// A running ffmpeg decoding one input into RGB frames.
pub(crate) struct FfmpegFrames {
    child: Child,
    /// ffmpeg's error output goes to a file: a pipe nobody reads while frames are being read
    /// could fill and stall it.
    log: PathBuf,
    frame: Vec<u8>,
    next: Vec<u8>,
    width: usize,
    height: usize,
    frames: u32,
    finished: bool,
    /// Holds the input ffmpeg reads; removed on drop, after ffmpeg is gone.
    scratch: Scratch,
}

impl FfmpegFrames {
    /// Starts ffmpeg on `bytes`. `video` names the input for the error when ffmpeg is missing.
    pub(crate) fn open(bytes: &[u8], tools: &Tools, video: &str) -> Result<Self, MediaError> {
        let scratch = Scratch::new(bytes)?;
        let probed = run_ffprobe(&scratch.input, tools, video)?;
        let (width, height) = (probed.width, probed.height);
        if u64::from(width) * u64::from(height) > MAX_PIXELS {
            return Err(MediaError::UnsupportedVideo(format!(
                "{width}x{height} frames are larger than the sandbox decodes \
                 (at most {MAX_PIXELS} pixels)"
            )));
        }
        let log = scratch.dir.path().join("ffmpeg.log");
        let log_file = File::create(&log).map_err(staging)?;
        let child = Command::new(&tools.ffmpeg)
            // `-xerror`: a damaged stream stops ffmpeg with an error, as it stops OpenH264,
            // instead of yielding a silently shortened video. `-noautorotate`: frames keep
            // their coded orientation, in the size ffprobe reports, as the OpenH264 path and
            // the mp4 crate's header do.
            .args(["-v", "error", "-nostdin", "-xerror", "-noautorotate", "-i"])
            .arg(&scratch.input)
            .args(["-map", "0:V:0", "-f", "rawvideo", "-pix_fmt", "rgb24"])
            // Pins the size the output is sliced by. It is the stream's own, so nothing is
            // resized; a stream whose size changes midway is kept to its first size.
            .args(["-s", &format!("{width}x{height}"), "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| cannot_run(video, &tools.ffmpeg, &e))?;
        let (width, height) = (width as usize, height as usize);
        Ok(Self {
            child,
            log,
            frame: vec![0; width * height * 3],
            next: vec![0; width * height * 3],
            width,
            height,
            frames: probed.frames,
            finished: false,
            scratch,
        })
    }

    pub(crate) fn frame_count(&self) -> u32 {
        self.frames
    }

    /// Reads the next frame; false once ffmpeg has written them all and exited cleanly.
    pub(crate) fn advance(&mut self) -> Result<bool, MediaError> {
        if self.finished {
            return Ok(false);
        }
        let stdout = self
            .child
            .stdout
            .as_mut()
            .ok_or_else(|| unreadable("ffmpeg's output is not connected"))?;
        let filled = fill(stdout, &mut self.next)
            .map_err(|e| unreadable(format!("reading ffmpeg's output: {e}")))?;
        if filled == self.next.len() {
            // The previous frame stays readable until a whole new one has arrived.
            std::mem::swap(&mut self.frame, &mut self.next);
            return Ok(true);
        }
        // The output has ended: reap ffmpeg now, and let its exit status tell a finished
        // video from a broken one.
        self.finished = true;
        let status = self
            .child
            .wait()
            .map_err(|e| unreadable(format!("waiting for ffmpeg: {e}")))?;
        if !status.success() {
            let mut log = Vec::new();
            // An unreadable log only costs the message its detail.
            let _ = File::open(&self.log).and_then(|f| f.take(4096).read_to_end(&mut log));
            return Err(unreadable(format!(
                "ffmpeg: {}",
                first_lines(&log, &self.scratch.input)
            )));
        }
        if filled > 0 {
            return Err(unreadable("ffmpeg's output ended inside a frame"));
        }
        Ok(false)
    }

    /// The most recently read frame: (rgb, width, height).
    pub(crate) fn frame(&self) -> (&[u8], usize, usize) {
        (&self.frame, self.width, self.height)
    }

    #[cfg(test)]
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for FfmpegFrames {
    /// A stream dropped early leaves ffmpeg blocked on a full pipe: kill it, then reap it so
    /// no zombie stays behind. Both only fail when it is already gone and reaped.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads until `buf` is full or the output ends; the bytes read.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// An input audio file decoded by ffmpeg to mono 16-bit samples at `rate`, at most `limit`
/// of them: MP3, and what the crate's own readers cannot read.
pub(crate) fn decode_audio(
    bytes: &[u8],
    tools: &Tools,
    limit: usize,
    rate: u32,
) -> Result<Vec<f32>, MediaError> {
    let audio = MediaError::UnreadableAudio;
    let scratch = Scratch::new(bytes).map_err(|e| match e {
        MediaError::UnreadableVideo(reason) => audio(reason.replace("video", "audio")),
        other => other,
    })?;
    let log = scratch.dir.path().join("ffmpeg.log");
    let log_file = File::create(&log).map_err(|e| audio(format!("cannot stage the audio: {e}")))?;
    let mut child = Command::new(&tools.ffmpeg)
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(&scratch.input)
        .args(["-map", "0:a:0", "-ac", "1", "-ar", &rate.to_string()])
        .args(["-f", "s16le", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(|e| {
            let program = tools.ffmpeg.to_string_lossy();
            audio(if e.kind() == io::ErrorKind::NotFound {
                format!(
                    "this audio needs ffmpeg, which is not installed (`{program}` was not found)"
                )
            } else {
                format!("this audio needs ffmpeg, which cannot be run (`{program}`: {e})")
            })
        })?;
    let mut pcm = Vec::new();
    let wanted = limit.saturating_mul(2);
    let read = child
        .stdout
        .take()
        .map(|stdout| stdout.take(wanted as u64).read_to_end(&mut pcm));
    // Past the limit ffmpeg may still be writing: stop it rather than drain it.
    let whole = pcm.len() < wanted;
    if !whole {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| audio(format!("waiting for ffmpeg: {e}")))?;
    match read {
        Some(Ok(_)) => {}
        Some(Err(e)) => return Err(audio(format!("reading ffmpeg's output: {e}"))),
        None => return Err(audio("ffmpeg's output is not connected".into())),
    }
    if whole && !status.success() {
        let mut text = Vec::new();
        let _ = File::open(&log).and_then(|f| f.take(4096).read_to_end(&mut text));
        return Err(audio(format!(
            "ffmpeg: {}",
            first_lines(&text, &scratch.input)
        )));
    }
    let samples: Vec<f32> = pcm
        .chunks_exact(2)
        .map(|s| f32::from(i16::from_le_bytes([s[0], s[1]])) / 32_768.0)
        .collect();
    if samples.is_empty() {
        return Err(audio("ffmpeg found no audio to decode".into()));
    }
    Ok(samples)
}
