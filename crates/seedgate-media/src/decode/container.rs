//! What an MP4/MOV file says about its video track, from the box tree alone (no sample is
//! read): enough to choose a decoder, and to name the codec when the decoder it needs is
//! missing. It exists beside the mp4 crate because it must also read what that crate refuses:
//! a QuickTime MOV without an `ftyp` box, and sample entries it does not know (`hvc1`, `mp4v`,
//! ProRes …), whose four-character code it drops.
//!
//! The bytes come from strangers: every read is bounds-checked.

use std::fmt;

/// The boxes directly inside `data`, as (type, body), in order. Stops at the first box whose
/// size does not fit, so a truncated tail hides only itself.
fn boxes(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let size = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        let kind: [u8; 4] = rest.get(4..8)?.try_into().ok()?;
        let (header, size) = match size {
            // The box runs to the end of its parent.
            0 => (8, rest.len()),
            // A 64-bit size follows the type.
            1 => {
                let large = u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?);
                (16, usize::try_from(large).ok()?)
            }
            n => (8, usize::try_from(n).ok()?),
        };
        let body = rest.get(header..size)?;
        rest = rest.get(size..)?;
        Some((kind, body))
    })
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data).find_map(|(k, body)| (&k == kind).then_some(body))
}

/// The body of the `moov` box, where an MP4 or MOV keeps its track headers; `None` when the
/// bytes are not an MP4/MOV file, or one cut short before its header.
fn moov(file: &[u8]) -> Option<&[u8]> {
    child(file, b"moov")
}

/// The codec configuration a sample entry carries.
enum Coding {
    /// From `avcC`: `profile_idc` and the constraint flags byte.
    H264 { profile: u8, constraints: u8 },
    /// From `hvcC`: `general_profile_idc`.
    H265 { profile: u8 },
}

/// The video track with the lowest track id (the one the mp4 crate's reader is asked for), as
/// its sample description states it.
pub(crate) struct VideoTrack {
    /// The first sample entry's four-character code: `avc1`, `hvc1`, `hev1`, `apcn` …
    fourcc: [u8; 4],
    coding: Option<Coding>,
    /// Samples carry different composition offsets: frames are shown in another order than
    /// they are decoded, which is what B-frames do.
    reorders: bool,
    /// The file is fragmented: per-sample offsets live in movie fragments, not read here.
    fragmented: bool,
}

impl VideoTrack {
    /// The video track of an MP4/MOV file, if its header can be found and describes one.
    pub(crate) fn of(file: &[u8]) -> Option<Self> {
        Self::in_moov(moov(file)?)
    }

    /// The video track described in a `moov` body.
    fn in_moov(moov: &[u8]) -> Option<Self> {
        let fragmented = child(moov, b"mvex").is_some();
        boxes(moov)
            .filter(|(kind, _)| kind == b"trak")
            .filter_map(|(_, trak)| Self::read(trak, fragmented))
            .min_by_key(|(id, _)| *id)
            .map(|(_, track)| track)
    }

    /// A `trak` body's track id and description, when it is a video track.
    fn read(trak: &[u8], fragmented: bool) -> Option<(u32, Self)> {
        let mdia = child(trak, b"mdia")?;
        // hdlr: version and flags, a component type (QuickTime's; zero in MP4), then the
        // handler type.
        if child(mdia, b"hdlr")?.get(8..12)? != b"vide" {
            return None;
        }
        // tkhd: version and flags, creation and modification times (32-bit in version 0,
        // 64-bit in version 1), then the track id.
        let tkhd = child(trak, b"tkhd")?;
        let at = if *tkhd.first()? == 1 { 20 } else { 12 };
        let id = u32::from_be_bytes(tkhd.get(at..at + 4)?.try_into().ok()?);
        let stbl = child(child(mdia, b"minf")?, b"stbl")?;
        // stsd: version and flags, an entry count, then the sample entries; decoders are
        // configured from the first.
        let (fourcc, entry) = boxes(child(stbl, b"stsd")?.get(8..)?).next()?;
        // A visual sample entry has 78 bytes of fixed fields before its boxes, in MP4 and
        // QuickTime alike.
        let extensions = entry.get(78..).unwrap_or_default();
        let coding = match &fourcc {
            b"avc1" | b"avc3" => child(extensions, b"avcC").and_then(|c| {
                Some(Coding::H264 {
                    profile: *c.get(1)?,
                    constraints: *c.get(2)?,
                })
            }),
            b"hvc1" | b"hev1" => child(extensions, b"hvcC").and_then(|c| {
                Some(Coding::H265 {
                    profile: c.get(1)? & 0x1F,
                })
            }),
            _ => None,
        };
        let track = Self {
            fourcc,
            coding,
            reorders: child(stbl, b"ctts").is_some_and(reorders),
            fragmented,
        };
        Some((id, track))
    }

    /// Whether OpenH264 decodes this track: H.264 from an `avc1` entry (parameter sets in the
    /// header, where the OpenH264 path takes them), in the profiles it implements —
    /// Baseline, Main and High, 8-bit 4:2:0 — with frames stored in display order, since it
    /// cannot decode B-frames. Baseline has none by definition; for Main and High only the
    /// sample table can tell, and a fragmented file keeps that where it is not read here.
    /// (Interlaced pictures, which OpenH264 also refuses, show only in the stream; the
    /// stream hands over to ffmpeg when it meets them.)
    pub(crate) fn openh264_decodes(&self) -> bool {
        self.fourcc == *b"avc1"
            && match self.coding {
                Some(Coding::H264 { profile: 66, .. }) => true,
                Some(Coding::H264 {
                    profile: 77 | 100, ..
                }) => !self.reorders && !self.fragmented,
                _ => false,
            }
    }
}

/// Whether a `ctts` body gives samples different composition offsets. (A constant offset
/// delays every frame alike and changes no order.)
fn reorders(ctts: &[u8]) -> bool {
    // Version and flags, an entry count, then (sample count, offset) pairs.
    let count = ctts
        .get(4..8)
        .and_then(|c| c.try_into().ok())
        .map_or(0, u32::from_be_bytes);
    let mut offsets = ctts
        .get(8..)
        .unwrap_or_default()
        .chunks_exact(8)
        .take(count as usize)
        .map(|entry| entry.get(4..));
    let first = offsets.next();
    offsets.any(|offset| Some(offset) != first)
}

fn h264_profile(profile: u8, constraints: u8) -> Option<&'static str> {
    Some(match profile {
        // constraint_set1_flag: the stream also obeys Main's rules.
        66 if constraints & 0x40 != 0 => "Constrained Baseline",
        66 => "Baseline",
        77 => "Main",
        88 => "Extended",
        100 => "High",
        110 => "High 10",
        122 => "High 4:2:2",
        244 => "High 4:4:4 Predictive",
        44 => "CAVLC 4:4:4 Intra",
        _ => return None,
    })
}

fn h265_profile(profile: u8) -> Option<&'static str> {
    Some(match profile {
        1 => "Main",
        2 => "Main 10",
        3 => "Main Still Picture",
        4 => "Range Extensions",
        _ => return None,
    })
}

/// The codec a sample entry's code stands for, among those cameras, phones and editors write.
fn codec_name(fourcc: &[u8; 4]) -> Option<&'static str> {
    Some(match fourcc {
        b"avc1" | b"avc3" => "H.264",
        b"hvc1" | b"hev1" => "H.265",
        b"dvh1" | b"dvhe" => "Dolby Vision H.265",
        b"av01" => "AV1",
        b"vp08" => "VP8",
        b"vp09" => "VP9",
        b"mp4v" => "MPEG-4 Part 2",
        b"s263" | b"h263" => "H.263",
        b"apch" | b"apcn" | b"apcs" | b"apco" | b"ap4h" | b"ap4x" => "Apple ProRes",
        b"jpeg" | b"mjpa" | b"mjpb" => "Motion JPEG",
        _ => return None,
    })
}

/// As an error message names it: "H.264 High profile with B-frames (avc1)", "H.265 Main
/// profile (hvc1)", "Apple ProRes (apcn)".
impl fmt::Display for VideoTrack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = self.fourcc.escape_ascii();
        match (codec_name(&self.fourcc), &self.coding) {
            (
                Some(name),
                Some(Coding::H264 {
                    profile,
                    constraints,
                }),
            ) => match h264_profile(*profile, *constraints) {
                Some(p) => write!(f, "{name} {p} profile")?,
                None => write!(f, "{name} (profile_idc {profile})")?,
            },
            (Some(name), Some(Coding::H265 { profile })) => match h265_profile(*profile) {
                Some(p) => write!(f, "{name} {p} profile")?,
                None => write!(f, "{name} (general_profile_idc {profile})")?,
            },
            (Some(name), None) => f.write_str(name)?,
            (None, _) => return write!(f, "`{tag}`"),
        }
        if self.reorders {
            f.write_str(" with B-frames")?;
        }
        write!(f, " ({tag})")
    }
}

/// The video as an error message names it: "H.265 Main profile (hvc1) video".
pub(crate) fn describe(track: Option<&VideoTrack>) -> String {
    match track {
        Some(track) => format!("{track} video"),
        None => "this MP4/MOV video".into(),
    }
}
