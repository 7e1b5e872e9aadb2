//! The sandbox's caption: a few lines drawn on every frame (`SANDBOX · model · size ·
//! seconds`, the prompt's first words, the task id), so a video says which request made it and
//! that no real model did. The font is bundled (DejaVu Sans Bold, cut to Latin letters and
//! punctuation; `fonts/LICENSE-DejaVu.txt`); a character it lacks is drawn as `?`.

use ab_glyph::{point, Font, FontRef, PxScale, PxScaleFont, ScaleFont};

type Scaled<'a> = PxScaleFont<&'a FontRef<'a>>;

static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold-subset.ttf");

/// A caption rasterized once for a frame size: how much of each pixel of its box the text
/// covers, the box sitting at the frame's bottom left.
pub(crate) struct Caption {
    left: usize,
    top: usize,
    width: usize,
    height: usize,
    coverage: Vec<u8>,
}

impl Caption {
    /// The caption of `lines` for a `frame_width`×`frame_height` frame; None without lines or
    /// room. Lines too wide for the frame end in `…`.
    pub(crate) fn new(lines: &[String], frame_width: u32, frame_height: u32) -> Option<Self> {
        if lines.is_empty() {
            return None;
        }
        let font = FontRef::try_from_slice(FONT).ok()?;
        let px = (frame_height as f32 / 30.0).clamp(9.0, 36.0);
        let scaled = font.as_scaled(PxScale::from(px));
        let pad = (px * 0.5).ceil() as usize;
        let line_height = (scaled.height() + scaled.line_gap()).ceil() as usize;
        let room = (frame_width as usize).checked_sub(4 * pad)? as f32;
        let lines: Vec<Vec<char>> = lines
            .iter()
            .map(|line| fitted(&scaled, line, room))
            .collect();
        let text_width = lines
            .iter()
            .map(|line| advance(&scaled, line))
            .fold(0.0f32, f32::max)
            .ceil() as usize;
        let width = text_width + 2 * pad;
        let height = lines.len() * line_height + 2 * pad;
        if width > frame_width as usize || height > frame_height as usize {
            return None;
        }
        let mut coverage = vec![0u8; width * height];
        for (row, line) in lines.iter().enumerate() {
            let baseline = (pad + row * line_height) as f32 + scaled.ascent();
            let mut x = pad as f32;
            for &c in line {
                let glyph = scaled.scaled_glyph(c);
                let id = glyph.id;
                let step = scaled.h_advance(id);
                let positioned = id.with_scale_and_position(px, point(x, baseline));
                if let Some(outline) = font.outline_glyph(positioned) {
                    let bounds = outline.px_bounds();
                    outline.draw(|gx, gy, amount| {
                        let px_x = bounds.min.x as i64 + i64::from(gx);
                        let px_y = bounds.min.y as i64 + i64::from(gy);
                        if (0..width as i64).contains(&px_x) && (0..height as i64).contains(&px_y) {
                            let cell = &mut coverage[px_y as usize * width + px_x as usize];
                            *cell = (*cell).max((amount.clamp(0.0, 1.0) * 255.0) as u8);
                        }
                    });
                }
                x += step;
            }
        }
        let margin = pad;
        Some(Self {
            left: margin,
            top: (frame_height as usize).saturating_sub(height + margin),
            width,
            height,
            coverage,
        })
    }

    /// Dims the caption's box on an RGB frame `frame_width` pixels wide and draws the text in
    /// white over it.
    pub(crate) fn draw(&self, rgb: &mut [u8], frame_width: u32) {
        let stride = frame_width as usize * 3;
        for y in 0..self.height {
            let row = (self.top + y) * stride + self.left * 3;
            let Some(pixels) = rgb.get_mut(row..row + self.width * 3) else {
                return;
            };
            for (x, pixel) in pixels.chunks_exact_mut(3).enumerate() {
                let ink = u16::from(self.coverage[y * self.width + x]);
                for channel in pixel {
                    let dimmed = u16::from(*channel) * 2 / 5;
                    *channel = ((dimmed * (255 - ink) + 255 * ink) / 255) as u8;
                }
            }
        }
    }
}

/// The line's characters, those the font lacks as `?`, cut with `…` to fit `room` pixels.
fn fitted(scaled: &Scaled<'_>, line: &str, room: f32) -> Vec<char> {
    let mut chars: Vec<char> = line
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if scaled.glyph_id(c).0 == 0 { '?' } else { c })
        .collect();
    if advance(scaled, &chars) <= room {
        return chars;
    }
    while !chars.is_empty()
        && advance(scaled, &chars) + scaled.h_advance(scaled.glyph_id('…')) > room
    {
        chars.pop();
    }
    while chars.last() == Some(&' ') {
        chars.pop();
    }
    chars.push('…');
    chars
}

fn advance(scaled: &Scaled<'_>, chars: &[char]) -> f32 {
    chars
        .iter()
        .map(|&c| scaled.h_advance(scaled.glyph_id(c)))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caption(lines: &[&str], width: u32, height: u32) -> Option<Caption> {
        let lines: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        Caption::new(&lines, width, height)
    }

    #[test]
    fn the_caption_inks_its_box_at_the_bottom_left_and_nothing_else() {
        let (w, h) = (640u32, 360u32);
        let c = caption(&["SANDBOX · seedance-2.0 · 640×360 · 4 s", "a kite"], w, h).unwrap();
        assert!(c.top + c.height < h as usize && c.left > 0);
        assert!(c.coverage.contains(&255), "some pixels are fully inked");
        let mut frame = vec![200u8; (w * h * 3) as usize];
        c.draw(&mut frame, w);
        let at = |x: usize, y: usize| frame[(y * w as usize + x) * 3];
        assert_eq!(at(w as usize - 1, 0), 200, "outside the box: untouched");
        let inside: Vec<u8> = (0..c.height)
            .flat_map(|y| (0..c.width).map(move |x| (x, y)))
            .map(|(x, y)| at(c.left + x, c.top + y))
            .collect();
        assert!(
            inside.contains(&80) && inside.contains(&255),
            "dimmed and inked"
        );
    }

    #[test]
    fn a_long_line_is_cut_to_fit_and_unknown_characters_become_question_marks() {
        let font = FontRef::try_from_slice(FONT).unwrap();
        let scaled = font.as_scaled(PxScale::from(16.0));
        let long = "word ".repeat(100);
        let cut = fitted(&scaled, &long, 200.0);
        assert_eq!(cut.last(), Some(&'…'));
        assert!(advance(&scaled, &cut) <= 200.0);
        assert_eq!(
            fitted(&scaled, "纸船 boat", 500.0),
            "?? boat".chars().collect::<Vec<_>>()
        );
        assert!(caption(&[], 640, 360).is_none());
        assert!(caption(&["x"], 8, 8).is_none(), "no room");
    }
}
