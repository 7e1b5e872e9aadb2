//! What the sandbox draws for each operation. Every scene paints RGB frames on demand, in
//! order, from data prepared once (decoded images, fitted buffers, an open frame stream).

use image::RgbImage;

use crate::decode::FrameStream;
use crate::{MediaError, RenderRequest, Scene};

/// A source rectangle in source pixels: x, y, width, height.
type Crop = (f32, f32, f32, f32);

fn decode_image(bytes: &[u8]) -> Result<RgbImage, MediaError> {
    image::load_from_memory(bytes)
        .map(|i| i.to_rgb8())
        .map_err(|e| MediaError::UnreadableImage(e.to_string()))
}

/// The largest centred rectangle of the output's aspect inside the source (cover fit).
fn cover_crop(sw: usize, sh: usize, dw: usize, dh: usize) -> Crop {
    let (sw, sh, dw, dh) = (sw as f32, sh as f32, dw as f32, dh as f32);
    if sw * dh > sh * dw {
        let cw = sh * dw / dh;
        ((sw - cw) / 2.0, 0.0, cw, sh)
    } else {
        let ch = sw * dh / dw;
        (0.0, (sh - ch) / 2.0, sw, ch)
    }
}

/// Shrinks a crop by `zoom` (≥ 1) around its centre, shifted by `pan` (−1..1) of the slack.
fn zoomed(crop: Crop, zoom: f32, pan: (f32, f32)) -> Crop {
    let (x, y, w, h) = crop;
    let (zw, zh) = (w / zoom, h / zoom);
    let (sx, sy) = ((w - zw) / 2.0, (h - zh) / 2.0);
    (x + sx + pan.0 * sx, y + sy + pan.1 * sy, zw, zh)
}

/// Nearest-neighbour resample of `crop` of an RGB source into the whole destination.
fn sample(src: &[u8], sw: usize, sh: usize, crop: Crop, dst: &mut [u8], dw: usize, dh: usize) {
    if sw == 0 || sh == 0 || src.len() < sw * sh * 3 {
        dst.fill(0);
        return;
    }
    let (cx, cy, cw, ch) = crop;
    let columns: Vec<usize> = (0..dw)
        .map(|x| ((cx + (x as f32 + 0.5) * cw / dw as f32) as usize).min(sw - 1) * 3)
        .collect();
    for (y, row) in dst.chunks_exact_mut(dw * 3).enumerate().take(dh) {
        let sy = ((cy + (y as f32 + 0.5) * ch / dh as f32) as usize).min(sh - 1);
        let src_row = &src[sy * sw * 3..(sy + 1) * sw * 3];
        for (px, &sx) in row.chunks_exact_mut(3).zip(&columns) {
            px.copy_from_slice(&src_row[sx..sx + 3]);
        }
    }
}

/// A still image fitted to the output once.
fn fitted(image: &RgbImage, dw: usize, dh: usize) -> Vec<u8> {
    let mut out = vec![0; dw * dh * 3];
    let (sw, sh) = (image.width() as usize, image.height() as usize);
    sample(
        image.as_raw(),
        sw,
        sh,
        cover_crop(sw, sh, dw, dh),
        &mut out,
        dw,
        dh,
    );
    out
}

/// A slow push-in with a drift; `progress` runs 0..1 over the shot.
fn push_in(image: &RgbImage, progress: f32, seed: u64, dst: &mut [u8], dw: usize, dh: usize) {
    let (sw, sh) = (image.width() as usize, image.height() as usize);
    let direction = if seed.is_multiple_of(2) { 1.0 } else { -1.0 };
    let crop = zoomed(
        cover_crop(sw, sh, dw, dh),
        1.0 + 0.15 * progress,
        (direction * (progress - 0.5), 0.3 * (progress - 0.5)),
    );
    sample(image.as_raw(), sw, sh, crop, dst, dw, dh);
}

fn fnv(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn colour(hash: u64, shift: u32) -> [u8; 3] {
    let v = hash >> shift;
    [
        (v & 0xff) as u8,
        ((v >> 8) & 0xff) as u8,
        ((v >> 16) & 0xff) as u8,
    ]
}

/// The text-to-video look: diagonal bands through a prompt-derived palette and a drifting block.
struct Pattern {
    palette: Vec<[u8; 3]>,
    accent: [u8; 3],
    slope: i64,
    speed: i64,
}

impl Pattern {
    fn new(prompt: &str, seed: u64) -> Self {
        let hash = fnv(prompt.as_bytes(), seed);
        let (a, b) = (colour(hash, 0), colour(hash, 24));
        let palette = (0..256u32)
            .map(|i| {
                let mix =
                    |x: u8, y: u8| ((u32::from(x) * (255 - i) + u32::from(y) * i) / 255) as u8;
                [mix(a[0], b[0]), mix(a[1], b[1]), mix(a[2], b[2])]
            })
            .collect();
        Self {
            palette,
            accent: colour(!hash, 8),
            slope: (hash >> 48) as i64 % 5 - 2,
            speed: 2 + (hash >> 56) as i64 % 6,
        }
    }

    fn paint(&self, t: u32, frames: u32, rgb: &mut [u8], w: usize, h: usize) {
        let shift = i64::from(t) * self.speed;
        for (y, row) in rgb.chunks_exact_mut(w * 3).enumerate() {
            let offset = y as i64 * self.slope + shift;
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let phase = ((x as i64 + offset) & 511) as usize;
                let tri = if phase < 256 { phase } else { 511 - phase };
                px.copy_from_slice(&self.palette[tri]);
            }
        }
        // A block on a Lissajous path makes the motion obvious to the eye and the encoder.
        let p = f64::from(t) / f64::from(frames.max(1)) * std::f64::consts::TAU;
        let side = (h / 5).max(2);
        let cx = ((0.5 + 0.4 * p.sin()) * (w - side) as f64) as usize;
        let cy = ((0.5 + 0.4 * (2.0 * p).cos()) * (h - side) as f64) as usize;
        for row in rgb.chunks_exact_mut(w * 3).skip(cy).take(side) {
            for px in row[cx * 3..(cx + side) * 3].chunks_exact_mut(3) {
                px.copy_from_slice(&self.accent);
            }
        }
    }
}

/// One stretch of a reference-to-video sequence.
enum Slice<'a> {
    Image(RgbImage),
    Video(&'a [u8]),
}

/// A video played into the output, time-mapped to `frames` output frames.
struct Playback<'a> {
    stream: FrameStream<'a>,
    decoded: i64,
}

impl<'a> Playback<'a> {
    fn open(bytes: &'a [u8]) -> Result<Self, MediaError> {
        let mut stream = FrameStream::open(bytes)?;
        if !stream.advance()? {
            return Err(MediaError::UnreadableVideo(
                "the video has no decodable frame".into(),
            ));
        }
        Ok(Self { stream, decoded: 0 })
    }

    /// Paints output frame `i` of `frames`, decoding forward to the matching input frame.
    fn paint(
        &mut self,
        i: u32,
        frames: u32,
        rgb: &mut [u8],
        w: usize,
        h: usize,
    ) -> Result<(), MediaError> {
        let wanted =
            i64::from(i) * i64::from(self.stream.frame_count().max(1)) / i64::from(frames.max(1));
        while self.decoded < wanted && self.stream.advance()? {
            self.decoded += 1;
        }
        let (src, sw, sh) = self.stream.frame();
        sample(src, sw, sh, cover_crop(sw, sh, w, h), rgb, w, h);
        Ok(())
    }
}

enum Kind<'a> {
    Pattern(Pattern),
    PushIn(RgbImage),
    Crossfade(Vec<u8>, Vec<u8>),
    Sequence {
        slices: Vec<Slice<'a>>,
        playing: Option<(usize, Playback<'a>)>,
    },
    Recolour(Playback<'a>),
}

/// Paints the frames of one render request.
pub struct Painter<'a> {
    kind: Kind<'a>,
    width: usize,
    height: usize,
    frames: u32,
    seed: u64,
    input_video_seconds: f64,
}

pub fn last_frame(bytes: &[u8]) -> Result<RgbImage, MediaError> {
    let mut stream = FrameStream::open(bytes)?;
    let mut any = false;
    while stream.advance()? {
        any = true;
    }
    let (rgb, w, h) = stream.frame();
    if !any {
        return Err(MediaError::UnreadableVideo(
            "the video has no decodable frame".into(),
        ));
    }
    RgbImage::from_raw(w as u32, h as u32, rgb.to_vec())
        .ok_or_else(|| MediaError::UnreadableVideo("decoded frame has the wrong size".into()))
}

fn video_seconds(videos: &[&[u8]]) -> Result<f64, MediaError> {
    videos
        .iter()
        .map(|v| crate::probe_mp4(v).map(|i| i.duration_secs))
        .sum()
}

impl<'a> Painter<'a> {
    pub fn new(req: &RenderRequest<'a>) -> Result<Self, MediaError> {
        let (width, height) = (req.width as usize, req.height as usize);
        let mut input_video_seconds = 0.0;
        let kind = match &req.scene {
            Scene::Pattern { prompt } => Kind::Pattern(Pattern::new(prompt, req.seed)),
            Scene::ZoomPan { image } => Kind::PushIn(decode_image(image)?),
            Scene::Crossfade { start, end } => Kind::Crossfade(
                fitted(&decode_image(start)?, width, height),
                fitted(&decode_image(end)?, width, height),
            ),
            Scene::Sequence {
                prompt,
                images,
                videos,
            } => {
                input_video_seconds = video_seconds(videos)?;
                let mut slices = Vec::new();
                for image in images {
                    slices.push(Slice::Image(decode_image(image)?));
                }
                slices.extend(videos.iter().map(|v| Slice::Video(v)));
                if !slices.is_empty() {
                    Kind::Sequence {
                        slices,
                        playing: None,
                    }
                } else if !req.audios.is_empty() {
                    Kind::Pattern(Pattern::new(prompt, req.seed))
                } else {
                    return Err(MediaError::InvalidRequest(
                        "a sequence needs at least one reference".into(),
                    ));
                }
            }
            Scene::Recolour { video } => {
                input_video_seconds = video_seconds(&[video])?;
                Kind::Recolour(Playback::open(video)?)
            }
            Scene::Continue { video } => {
                input_video_seconds = video_seconds(&[video])?;
                Kind::PushIn(last_frame(video)?)
            }
        };
        Ok(Self {
            kind,
            width,
            height,
            frames: req.frames,
            seed: req.seed,
            input_video_seconds,
        })
    }

    pub fn input_video_seconds(&self) -> f64 {
        self.input_video_seconds
    }

    /// Paints frame `i` (frames are asked for in order).
    pub fn paint(&mut self, i: u32, rgb: &mut [u8]) -> Result<(), MediaError> {
        let (w, h, frames, seed) = (self.width, self.height, self.frames, self.seed);
        let progress = i as f32 / (frames.max(2) - 1) as f32;
        match &mut self.kind {
            Kind::Pattern(pattern) => pattern.paint(i, frames, rgb, w, h),
            Kind::PushIn(image) => push_in(image, progress, seed, rgb, w, h),
            Kind::Crossfade(a, b) => {
                let alpha = (progress * 256.0) as u32;
                for ((out, x), y) in rgb.iter_mut().zip(a.iter()).zip(b.iter()) {
                    *out = ((u32::from(*x) * (256 - alpha) + u32::from(*y) * alpha) >> 8) as u8;
                }
            }
            Kind::Sequence { slices, playing } => {
                let count = slices.len() as u32;
                let per = (frames / count).max(1);
                let index = ((i / per) as usize).min(slices.len() - 1);
                let start = index as u32 * per;
                let length = if index + 1 == slices.len() {
                    frames - start
                } else {
                    per
                };
                let local = i - start;
                match &slices[index] {
                    Slice::Image(image) => {
                        let p = local as f32 / length.max(2).saturating_sub(1) as f32;
                        push_in(image, p, seed.wrapping_add(index as u64), rgb, w, h);
                    }
                    Slice::Video(bytes) => {
                        if playing.as_ref().is_none_or(|(n, _)| *n != index) {
                            *playing = Some((index, Playback::open(bytes)?));
                        }
                        if let Some((_, playback)) = playing {
                            playback.paint(local, length, rgb, w, h)?;
                        }
                    }
                }
            }
            Kind::Recolour(playback) => {
                playback.paint(i, frames, rgb, w, h)?;
                let rotation = (seed % 2) as usize + 1;
                for px in rgb.chunks_exact_mut(3) {
                    px.rotate_left(rotation);
                }
            }
        }
        Ok(())
    }
}
