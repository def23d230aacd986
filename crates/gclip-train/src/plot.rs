//! `curves.png`: titled panels with labelled axes and tick values, drawn with a font that
//! ships inside the crate (DejaVu Sans cut to ASCII, `assets/`), so the picture reads the
//! same on a machine without any system fonts.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::{Rgb, RgbImage};

/// DejaVu Sans, subset to printable ASCII and a few symbols (`assets/FONT-LICENSE.txt`).
static FONT_TTF: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");

pub(crate) const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([30, 30, 30]);
const MUTED: Rgb<u8> = Rgb([110, 110, 110]);
const GRID: Rgb<u8> = Rgb([228, 228, 228]);

/// Size of one panel in pixels.
pub(crate) const PANEL_W: u32 = 420;
/// Height of one panel in pixels.
pub(crate) const PANEL_H: u32 = 300;
/// Height of the title band at the top of each panel.
pub(crate) const TITLE_BAND: u32 = 30;

// Plot-area margins inside a panel.
const LEFT: u32 = 70;
const RIGHT: u32 = 16;
const TOP: u32 = TITLE_BAND + 10;
const BOTTOM: u32 = 48;

/// One line of a panel: its points, colour and legend label.
pub(crate) struct Series {
    pub label: &'static str,
    pub points: Vec<(f64, f64)>,
    pub color: Rgb<u8>,
    /// Draw a marker on every point (sparse series such as evaluations).
    pub markers: bool,
}

/// What one panel shows.
pub(crate) struct PanelSpec {
    pub title: &'static str,
    pub x_label: &'static str,
    pub y_label: &'static str,
    pub series: Vec<Series>,
    /// Fixed y range (e.g. 0..1 for recall); `None` = fit the data.
    pub y_range: Option<(f64, f64)>,
    /// Whether the fitted y range must include 0.
    pub y_from_zero: bool,
    /// Shown in the middle of the panel when no series has a finite point.
    pub empty_message: &'static str,
}

/// A text drawer over the shipped font.
pub(crate) struct Text {
    font: FontRef<'static>,
}

impl Text {
    pub(crate) fn new() -> Self {
        // The bytes are compiled in and checked by the tests: parsing cannot fail at run time.
        let font = FontRef::try_from_slice(FONT_TTF).expect("the shipped font parses");
        Text { font }
    }

    /// Width in pixels of `s` at `size` px.
    pub(crate) fn width(&self, s: &str, size: f32) -> f32 {
        let sf = self.font.as_scaled(PxScale::from(size));
        let mut w = 0.0;
        let mut prev = None;
        for c in s.chars() {
            let id = sf.glyph_id(c);
            if let Some(p) = prev {
                w += sf.kern(p, id);
            }
            w += sf.h_advance(id);
            prev = Some(id);
        }
        w
    }

    /// Renders `s` into a coverage buffer `(width, height, alpha)`; the baseline sits at
    /// the font's ascent.
    fn raster(&self, s: &str, size: f32) -> (usize, usize, Vec<f32>) {
        let scale = PxScale::from(size);
        let sf = self.font.as_scaled(scale);
        let w = self.width(s, size).ceil() as usize + 2;
        let h = (sf.ascent() - sf.descent()).ceil() as usize + 2;
        let mut buf = vec![0.0f32; w * h];
        let mut x = 0.0f32;
        let mut prev = None;
        for c in s.chars() {
            let id = sf.glyph_id(c);
            if let Some(p) = prev {
                x += sf.kern(p, id);
            }
            let glyph = id.with_scale_and_position(scale, ab_glyph::point(x, sf.ascent()));
            x += sf.h_advance(id);
            prev = Some(id);
            if let Some(og) = self.font.outline_glyph(glyph) {
                let b = og.px_bounds();
                og.draw(|gx, gy, cov| {
                    let px = b.min.x as i64 + gx as i64;
                    let py = b.min.y as i64 + gy as i64;
                    if px >= 0 && py >= 0 && (px as usize) < w && (py as usize) < h {
                        let v = &mut buf[py as usize * w + px as usize];
                        *v = (*v + cov).min(1.0);
                    }
                });
            }
        }
        (w, h, buf)
    }

    /// Draws `s` with its top-left corner at `(x, y)`; `vertical` turns it 90 degrees
    /// counter-clockwise (reading bottom to top), `(x, y)` then being the top-left of the
    /// turned box.
    pub(crate) fn draw(
        &self,
        img: &mut RgbImage,
        (x, y): (i64, i64),
        s: &str,
        size: f32,
        color: Rgb<u8>,
        vertical: bool,
    ) {
        let (w, h, buf) = self.raster(s, size);
        for ty in 0..h {
            for tx in 0..w {
                let a = buf[ty * w + tx];
                if a <= 0.0 {
                    continue;
                }
                let (px, py) = if vertical {
                    (x + ty as i64, y + (w - 1 - tx) as i64)
                } else {
                    (x + tx as i64, y + ty as i64)
                };
                blend(img, px, py, color, a);
            }
        }
    }

    /// Height of a line of text at `size` px.
    pub(crate) fn line_height(&self, size: f32) -> f32 {
        let sf = self.font.as_scaled(PxScale::from(size));
        sf.ascent() - sf.descent()
    }
}

fn blend(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>, a: f32) {
    if x < 0 || y < 0 || x >= img.width() as i64 || y >= img.height() as i64 {
        return;
    }
    let p = img.get_pixel_mut(x as u32, y as u32);
    for i in 0..3 {
        p.0[i] = (p.0[i] as f32 * (1.0 - a) + c.0[i] as f32 * a).round() as u8;
    }
}

fn hline(img: &mut RgbImage, x0: i64, x1: i64, y: i64, c: Rgb<u8>) {
    for x in x0..=x1 {
        blend(img, x, y, c, 1.0);
    }
}

fn vline(img: &mut RgbImage, x: i64, y0: i64, y1: i64, c: Rgb<u8>) {
    for y in y0..=y1 {
        blend(img, x, y, c, 1.0);
    }
}

/// A 2-pixel-wide segment.
fn segment(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: Rgb<u8>) {
    let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    for i in 0..=n {
        let t = i as f64 / n as f64;
        let x = (x0 + t * (x1 - x0)).round() as i64;
        let y = (y0 + t * (y1 - y0)).round() as i64;
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            blend(img, x + dx, y + dy, c, 1.0);
        }
    }
}

fn marker(img: &mut RgbImage, (x, y): (f64, f64), c: Rgb<u8>) {
    let (x, y) = (x.round() as i64, y.round() as i64);
    for dy in -3..=3i64 {
        for dx in -3..=3i64 {
            if dx * dx + dy * dy <= 9 {
                blend(img, x + dx, y + dy, c, 1.0);
            }
        }
    }
}

/// "Nice" tick positions (1, 2, 2.5 or 5 times a power of ten) covering `lo..hi`.
pub(crate) fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    let mut out = Vec::new();
    let mut v = first;
    while v <= hi + step * 1e-9 {
        // Snap values like 0.30000000000000004 so the labels stay short.
        out.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    out
}

/// A tick label: plain decimals sized to the tick step, scientific for very small or
/// large magnitudes (learning rates).
pub(crate) fn tick_label(v: f64, step: f64) -> String {
    let mag = v.abs().max(step.abs());
    if v == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&mag) {
        let s = format!("{v:.1e}");
        // "3.0e-4" -> "3e-4"
        return s.replace(".0e", "e");
    }
    // The fewest decimals that show the step exactly (0.25 -> 2, 2.5 -> 1, 20 -> 0).
    let decimals = (0..=6)
        .find(|&d| {
            let scaled = step * 10f64.powi(d);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.abs().max(1.0)
        })
        .unwrap_or(6) as usize;
    format!("{v:.decimals$}")
}

/// Draws one panel with its top-left corner at `(ox, oy)`.
pub(crate) fn draw_panel(img: &mut RgbImage, text: &Text, (ox, oy): (u32, u32), p: &PanelSpec) {
    let (ox, oy) = (ox as i64, oy as i64);
    let title_size = 17.0;
    let tw = text.width(p.title, title_size);
    text.draw(
        img,
        (ox + ((PANEL_W as f32 - tw) / 2.0) as i64, oy + 6),
        p.title,
        title_size,
        INK,
        false,
    );
    let (px0, px1) = (ox + LEFT as i64, ox + (PANEL_W - RIGHT) as i64);
    let (py0, py1) = (oy + TOP as i64, oy + (PANEL_H - BOTTOM) as i64);
    let label_size = 13.0;
    let tick_size = 11.0;
    // Axis labels: x under the tick labels, y turned along the left edge.
    let xw = text.width(p.x_label, label_size);
    text.draw(
        img,
        ((px0 + px1) / 2 - (xw / 2.0) as i64, py1 + 22),
        p.x_label,
        label_size,
        MUTED,
        false,
    );
    let yw = text.width(p.y_label, label_size);
    text.draw(
        img,
        (ox + 4, (py0 + py1) / 2 - (yw / 2.0) as i64),
        p.y_label,
        label_size,
        MUTED,
        true,
    );

    let finite: Vec<(f64, f64)> = p
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    // Frame, drawn even when empty so the panel reads as a plot.
    hline(img, px0, px1, py1, INK);
    vline(img, px0, py0, py1, INK);
    if finite.is_empty() {
        let mw = text.width(p.empty_message, label_size);
        text.draw(
            img,
            (
                (px0 + px1) / 2 - (mw / 2.0) as i64,
                (py0 + py1) / 2 - (text.line_height(label_size) / 2.0) as i64,
            ),
            p.empty_message,
            label_size,
            MUTED,
            false,
        );
        return;
    }
    let (mut xlo, mut xhi) = finite
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &(x, _)| (a.min(x), b.max(x)));
    // Steps start the axis at 0 (a resumed run still shows where it stands).
    xlo = xlo.min(0.0);
    if xhi <= xlo {
        xhi = xlo + 1.0;
    }
    let (ylo, yhi) = match p.y_range {
        Some(r) => r,
        None => {
            let (mut lo, mut hi) = finite
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &(_, y)| (a.min(y), b.max(y)));
            if p.y_from_zero {
                lo = lo.min(0.0);
            }
            if hi <= lo {
                let pad = if hi == 0.0 { 1.0 } else { hi.abs() * 0.1 };
                lo -= pad;
                hi += pad;
            } else {
                let pad = (hi - lo) * 0.05;
                hi += pad;
                if !(p.y_from_zero && lo == 0.0) {
                    lo -= pad;
                }
            }
            (lo, hi)
        }
    };
    let map = |(x, y): (f64, f64)| {
        (
            px0 as f64 + (px1 - px0) as f64 * (x - xlo) / (xhi - xlo),
            py1 as f64 - (py1 - py0) as f64 * (y - ylo) / (yhi - ylo),
        )
    };
    // Y ticks with grid lines.
    let yt = ticks(ylo, yhi, 5);
    let ystep = if yt.len() > 1 {
        yt[1] - yt[0]
    } else {
        yhi - ylo
    };
    for &v in &yt {
        let (_, y) = map((xlo, v));
        let y = y.round() as i64;
        if y < py0 || y > py1 {
            continue;
        }
        if y != py1 {
            hline(img, px0 + 1, px1, y, GRID);
        }
        hline(img, px0 - 4, px0, y, INK);
        let s = tick_label(v, ystep);
        let w = text.width(&s, tick_size);
        text.draw(
            img,
            (
                px0 - 7 - w as i64,
                y - (text.line_height(tick_size) / 2.0) as i64,
            ),
            &s,
            tick_size,
            INK,
            false,
        );
    }
    // X ticks: steps are integers, so the step is at least 1.
    let mut xt = ticks(xlo, xhi, 5);
    let xstep = if xt.len() > 1 { xt[1] - xt[0] } else { 1.0 };
    if xstep < 1.0 {
        xt.retain(|v| v.fract() == 0.0);
    }
    for &v in &xt {
        let (x, _) = map((v, ylo));
        let x = x.round() as i64;
        if x < px0 || x > px1 {
            continue;
        }
        vline(img, x, py1, py1 + 4, INK);
        let s = tick_label(v, xstep.max(1.0));
        let w = text.width(&s, tick_size);
        text.draw(
            img,
            (x - (w / 2.0) as i64, py1 + 6),
            &s,
            tick_size,
            INK,
            false,
        );
    }
    // Series, clipped to the plot area.
    let clip = |(x, y): (f64, f64)| {
        (
            x.clamp(px0 as f64, px1 as f64),
            y.clamp(py0 as f64, py1 as f64),
        )
    };
    for s in &p.series {
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|q| clip(map(q)))
            .collect();
        for w in pts.windows(2) {
            segment(img, w[0], w[1], s.color);
        }
        if s.markers || pts.len() == 1 {
            for &q in &pts {
                marker(img, q, s.color);
            }
        }
    }
    // Legend (only when there is more than one series to tell apart).
    if p.series.len() > 1 {
        // An opaque box so lines passing under the legend do not cross its text.
        let lh = text.line_height(tick_size) as i64 + 3;
        let lw = p
            .series
            .iter()
            .map(|s| text.width(s.label, tick_size) as i64)
            .max()
            .unwrap_or(0);
        let (bx0, by0) = (px1 - 8 - lw - 28, py0 + 1);
        let (bx1, by1) = (px1 - 2, py0 + 6 + lh * p.series.len() as i64);
        for yy in by0..=by1 {
            for xx in bx0..=bx1 {
                blend(img, xx, yy, BACKGROUND, 1.0);
            }
        }
        hline(img, bx0, bx1, by0, GRID);
        hline(img, bx0, bx1, by1, GRID);
        vline(img, bx0, by0, by1, GRID);
        vline(img, bx1, by0, by1, GRID);
        let mut y = py0 + 4;
        for s in &p.series {
            let w = text.width(s.label, tick_size);
            let x = px1 - 8 - w as i64;
            segment(
                img,
                ((x - 22) as f64, (y + 7) as f64),
                ((x - 6) as f64, (y + 7) as f64),
                s.color,
            );
            text.draw(img, (x, y), s.label, tick_size, INK, false);
            y += text.line_height(tick_size) as i64 + 3;
        }
    }
}
