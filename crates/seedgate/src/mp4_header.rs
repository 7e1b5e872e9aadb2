//! Keeps the header boxes of an MP4 (`ftyp`, `moov`) as the file streams past and drops the
//! media data, so a result copied straight into storage can still be probed for its real
//! size, length and audio without being held in memory. The kept boxes read as an MP4 file
//! whose header is the original's (the MP4 reader skips media data it does not have anyway).

/// Header boxes beyond this are refused: the `moov` of a 15 s video takes kilobytes.
const MAX_KEPT_BYTES: usize = 32 * 1024 * 1024;

#[derive(Default)]
pub struct Mp4Header {
    kept: Vec<u8>,
    /// The part of the next box header read so far (8 bytes, or 16 with a 64-bit size).
    header: Vec<u8>,
    /// Bytes left in the current box, and whether they are kept.
    remaining: u64,
    keeping: bool,
    /// A box that runs to the end of the file (size 0).
    to_end: bool,
    /// Not a sequence of boxes, or a header too large: nothing more is read.
    broken: bool,
}

impl Mp4Header {
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() && !self.broken {
            if self.to_end {
                if self.keeping {
                    self.keep(chunk);
                }
                return;
            }
            if self.remaining > 0 {
                let take =
                    usize::try_from(self.remaining).map_or(chunk.len(), |r| r.min(chunk.len()));
                if self.keeping {
                    self.keep(&chunk[..take]);
                }
                self.remaining -= take as u64;
                chunk = &chunk[take..];
                continue;
            }
            let wanted = if self.header.len() >= 8 && self.size32() == 1 {
                16
            } else {
                8
            };
            let take = (wanted - self.header.len()).min(chunk.len());
            self.header.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.header.len() < 8 || (self.size32() == 1 && self.header.len() < 16) {
                continue;
            }
            self.start_box();
        }
    }

    /// The kept boxes, as a file the MP4 reader takes; empty or partial when the stream was
    /// not an MP4.
    pub fn into_bytes(self) -> Vec<u8> {
        if self.broken {
            Vec::new()
        } else {
            self.kept
        }
    }

    fn size32(&self) -> u32 {
        size32(&self.header)
    }

    fn start_box(&mut self) {
        let header = std::mem::take(&mut self.header);
        let (size, header_len) = match size32(&header) {
            1 => {
                let mut large = [0u8; 8];
                large.copy_from_slice(&header[8..16]);
                (u64::from_be_bytes(large), 16)
            }
            n => (u64::from(n), 8),
        };
        self.keeping = matches!(&header[4..8], b"ftyp" | b"moov");
        if self.keeping {
            self.keep(&header);
        }
        match size {
            0 if header_len == 8 => self.to_end = true,
            s if s < header_len => self.broken = true,
            s => self.remaining = s - header_len,
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        if self.kept.len() + bytes.len() > MAX_KEPT_BYTES {
            self.broken = true;
        } else {
            self.kept.extend_from_slice(bytes);
        }
    }
}

/// The 32-bit size field that opens a box header of at least 8 bytes.
fn size32(header: &[u8]) -> u32 {
    u32::from_be_bytes([header[0], header[1], header[2], header[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip() -> Vec<u8> {
        seedgate_media::encode_mp4(160, 96, 24, 24, None, &mut |i, rgb| {
            for px in rgb.chunks_mut(3) {
                px[0] = (i * 9 % 256) as u8;
                px[1] = 40;
                px[2] = 200;
            }
        })
        .unwrap()
    }

    fn kept(bytes: &[u8], chunk: usize) -> Vec<u8> {
        let mut header = Mp4Header::default();
        for part in bytes.chunks(chunk) {
            header.feed(part);
        }
        header.into_bytes()
    }

    #[test]
    fn the_kept_header_probes_like_the_whole_file_however_it_is_cut() {
        let video = clip();
        let whole = seedgate_media::probe_mp4(&video).unwrap();
        for chunk in [1, 7, 8, 9, 16, 4096, video.len()] {
            let header = kept(&video, chunk);
            assert!(header.len() < video.len() / 2, "media data was kept");
            let probed = seedgate_media::probe_mp4(&header).unwrap();
            assert_eq!((probed.width, probed.height), (whole.width, whole.height));
            assert_eq!(probed.duration_secs, whole.duration_secs);
            assert_eq!(probed.has_audio, whole.has_audio);
        }
    }

    #[test]
    fn a_moov_after_the_media_data_and_a_64_bit_size_are_read() {
        let video = clip();
        // Split the boxes, then put `mdat` (with a 64-bit size) before `moov`.
        let mut boxes = Vec::new();
        let mut at = 0;
        while at < video.len() {
            let size = u32::from_be_bytes(video[at..at + 4].try_into().unwrap()) as usize;
            boxes.push(&video[at..at + size]);
            at += size;
        }
        let mut reordered = Vec::new();
        for b in boxes.iter().filter(|b| &b[4..8] == b"ftyp") {
            reordered.extend_from_slice(b);
        }
        for b in boxes.iter().filter(|b| &b[4..8] == b"mdat") {
            reordered.extend_from_slice(&1u32.to_be_bytes());
            reordered.extend_from_slice(b"mdat");
            reordered.extend_from_slice(&(b.len() as u64 + 8).to_be_bytes());
            reordered.extend_from_slice(&b[8..]);
        }
        for b in boxes.iter().filter(|b| &b[4..8] == b"moov") {
            reordered.extend_from_slice(b);
        }
        let header = kept(&reordered, 1000);
        assert!(header.windows(4).any(|w| w == b"moov"));
        assert!(!header.windows(4).any(|w| w == b"mdat"));
        assert!(seedgate_media::probe_mp4(&header).is_ok());
    }

    #[test]
    fn what_is_not_an_mp4_keeps_nothing_readable() {
        for junk in [
            b"<html><body>not found</body></html>".to_vec(),
            vec![0, 0, 0, 4, b'f', b't', b'y', b'p'],
            Vec::new(),
        ] {
            assert!(seedgate_media::probe_mp4(&kept(&junk, 3)).is_err());
        }
    }
}
