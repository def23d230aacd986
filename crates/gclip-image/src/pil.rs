//! Decoded images in the colour mode Pillow gives them, and Pillow's conversions.
//!
//! The two reference pipelines differ in *when* they convert to RGB: open_clip resizes the
//! image in its own mode first, transformers converts (compositing transparency onto
//! white) before resizing. Both need the image as Pillow opened it, so decoding keeps the
//! mode, palette and transparency, and the conversions below follow Pillow's `Convert.c`
//! and `AlphaComposite.c` integer arithmetic.

use image::RgbImage;

/// A Pillow image mode (`Image.mode`), as the decoders here report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PilMode {
    /// `"1"`: bilevel, stored as 0 / 255.
    Bilevel,
    /// `"L"`: 8-bit grey.
    L,
    /// `"LA"`: grey + alpha.
    La,
    /// `"P"`: 8-bit palette indices (palette entries carry alpha from tRNS / GIF).
    P,
    /// `"RGB"`.
    Rgb,
    /// `"RGBA"` (not premultiplied).
    Rgba,
    /// `"I;16"`: 16-bit grey.
    I16,
    /// `"CMYK"` (Pillow's convention: 0 = no ink).
    Cmyk,
}

impl PilMode {
    /// Pillow's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            PilMode::Bilevel => "1",
            PilMode::L => "L",
            PilMode::La => "LA",
            PilMode::P => "P",
            PilMode::Rgb => "RGB",
            PilMode::Rgba => "RGBA",
            PilMode::I16 => "I;16",
            PilMode::Cmyk => "CMYK",
        }
    }

    /// Samples per pixel.
    pub fn channels(self) -> usize {
        match self {
            PilMode::Bilevel | PilMode::L | PilMode::P | PilMode::I16 => 1,
            PilMode::La => 2,
            PilMode::Rgb => 3,
            PilMode::Rgba | PilMode::Cmyk => 4,
        }
    }
}

impl std::fmt::Display for PilMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// 256 RGBA palette entries. Entries the file does not define keep the value of
/// Pillow's `ImagingPaletteNew`: opaque black.
pub(crate) type Palette = [[u8; 4]; 256];

pub(crate) fn default_palette() -> Box<Palette> {
    Box::new([[0, 0, 0, 255]; 256])
}

/// Maps an output pixel (x, y) to the source pixel it copies.
type SourceOf = dyn Fn(usize, usize) -> (usize, usize);

/// A decoded image in its Pillow mode.
#[derive(Debug, Clone, PartialEq)]
pub struct PilImage {
    pub(crate) mode: PilMode,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// Interleaved samples, `mode.channels()` bytes per pixel; empty for `I;16`.
    pub(crate) data: Vec<u8>,
    /// `I;16` samples; empty otherwise.
    pub(crate) data16: Vec<u16>,
    /// Mode `P` only.
    pub(crate) palette: Option<Box<Palette>>,
    /// Pillow's `info["transparency"]`: present for P images with tRNS or a GIF
    /// transparent index (the alpha itself lives in the palette), and the colour key of
    /// 1 / L / I;16 / RGB PNGs with tRNS (raw file values, compared as Pillow compares them).
    pub(crate) transparency: Option<Transparency>,
}

/// What `info["transparency"]` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transparency {
    /// Palette alpha (already stored in the palette entries).
    Palette,
    /// A colour key: pixels whose RGB conversion equals it become transparent.
    Key([u16; 3]),
}

impl PilImage {
    /// Wrap an RGB image.
    pub fn from_rgb(img: RgbImage) -> Self {
        let (width, height) = img.dimensions();
        Self::new8(PilMode::Rgb, width, height, img.into_raw())
    }

    pub(crate) fn new16(width: u32, height: u32, data16: Vec<u16>) -> Self {
        debug_assert_eq!(data16.len(), width as usize * height as usize);
        Self {
            data16,
            ..Self::new8(PilMode::I16, 0, 0, Vec::new())
        }
        .with_size(width, height)
    }

    fn with_size(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    pub(crate) fn new8(mode: PilMode, width: u32, height: u32, data: Vec<u8>) -> Self {
        debug_assert!(
            mode == PilMode::I16
                || data.len() == width as usize * height as usize * mode.channels()
        );
        Self {
            mode,
            width,
            height,
            data,
            data16: Vec::new(),
            palette: None,
            transparency: None,
        }
    }

    /// The mode Pillow would report.
    pub fn mode(&self) -> PilMode {
        self.mode
    }

    /// (width, height).
    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Whether transformers' `convert_to_rgb` composites this image onto white: an alpha
    /// band or `info["transparency"]`.
    pub fn has_transparency(&self) -> bool {
        matches!(self.mode, PilMode::La | PilMode::Rgba) || self.transparency.is_some()
    }

    /// `img.convert("RGB")`: grey replicated, palette looked up, alpha dropped without
    /// compositing, `I;16` clipped at 255, CMYK by Pillow's formula.
    pub fn to_rgb(&self) -> RgbImage {
        let mut out = vec![0u8; self.width as usize * self.height as usize * 3];
        convert_rgb(self, &mut out);
        RgbImage::from_raw(self.width, self.height, out).expect("buffer sized for image")
    }

    /// transformers' `convert_to_rgb`: `convert("RGBA")` (palette alpha, colour keys),
    /// `Image.alpha_composite` onto opaque white, `convert("RGB")`. Opaque pixels keep
    /// their `convert("RGB")` value exactly.
    pub fn to_rgb_on_white(&self) -> RgbImage {
        let mut rgb = self.to_rgb();
        if !self.has_transparency() {
            return rgb;
        }
        let n = self.width as usize * self.height as usize;
        for i in 0..n {
            let a = self.alpha_at(i, &rgb.as_raw()[i * 3..i * 3 + 3]);
            let px = &mut rgb.as_mut()[i * 3..i * 3 + 3];
            for v in px.iter_mut() {
                *v = composite_on_white(*v, a);
            }
        }
        rgb
    }

    /// Alpha of pixel `i` after `convert("RGBA")`, given its RGB conversion.
    fn alpha_at(&self, i: usize, rgb: &[u8]) -> u8 {
        match self.mode {
            PilMode::La => self.data[i * 2 + 1],
            PilMode::Rgba => self.data[i * 4 + 3],
            PilMode::P => match &self.palette {
                Some(p) => p[self.data[i] as usize][3],
                None => 255,
            },
            _ => match self.transparency {
                Some(Transparency::Key(k))
                    if (0..3).all(|c| rgb[c] as u16 == k[c]) && self.mode != PilMode::Cmyk =>
                {
                    0
                }
                _ => 255,
            },
        }
    }

    /// Apply an EXIF orientation (rotations are clockwise, as the `image` crate defines them).
    pub(crate) fn apply_orientation(&mut self, o: image::metadata::Orientation) {
        use image::metadata::Orientation as O;
        let (w, h) = (self.width as usize, self.height as usize);
        // Output (width, height) and the source pixel of output (x, y).
        let (ow, oh, src): (usize, usize, Box<SourceOf>) = match o {
            O::NoTransforms => return,
            O::Rotate90 => (h, w, Box::new(move |x, y| (y, h - 1 - x))),
            O::Rotate180 => (w, h, Box::new(move |x, y| (w - 1 - x, h - 1 - y))),
            O::Rotate270 => (h, w, Box::new(move |x, y| (w - 1 - y, x))),
            O::FlipHorizontal => (w, h, Box::new(move |x, y| (w - 1 - x, y))),
            O::FlipVertical => (w, h, Box::new(move |x, y| (x, h - 1 - y))),
            O::Rotate90FlipH => (h, w, Box::new(move |x, y| (y, x))),
            O::Rotate270FlipH => (h, w, Box::new(move |x, y| (w - 1 - y, h - 1 - x))),
        };
        fn remap<T: Copy>(
            v: &[T],
            c: usize,
            w: usize,
            (ow, oh): (usize, usize),
            src: &dyn Fn(usize, usize) -> (usize, usize),
        ) -> Vec<T> {
            let mut out = Vec::with_capacity(v.len());
            for y in 0..oh {
                for x in 0..ow {
                    let (sx, sy) = src(x, y);
                    let i = (sy * w + sx) * c;
                    out.extend_from_slice(&v[i..i + c]);
                }
            }
            out
        }
        if self.mode == PilMode::I16 {
            self.data16 = remap(&self.data16, 1, w, (ow, oh), &*src);
        } else {
            self.data = remap(&self.data, self.mode.channels(), w, (ow, oh), &*src);
        }
        self.width = ow as u32;
        self.height = oh as u32;
    }
}

/// `convert("RGB")` of a whole image into `out` (3 bytes per pixel).
fn convert_rgb(img: &PilImage, out: &mut [u8]) {
    let d = &img.data;
    match img.mode {
        PilMode::Rgb => out.copy_from_slice(d),
        PilMode::Bilevel => fill3(out, d.iter().map(|&v| if v != 0 { 255 } else { 0 })),
        PilMode::L => fill3(out, d.iter().copied()),
        PilMode::La => fill3(out, d.chunks_exact(2).map(|p| p[0])),
        PilMode::I16 => fill3(out, img.data16.iter().map(|&v| v.min(255) as u8)),
        PilMode::P => {
            let ramp;
            let pal = match &img.palette {
                Some(p) => &**p,
                None => {
                    ramp = default_palette();
                    &*ramp
                }
            };
            for (o, &i) in out.chunks_exact_mut(3).zip(d) {
                o.copy_from_slice(&pal[i as usize][..3]);
            }
        }
        PilMode::Rgba => {
            for (o, p) in out.chunks_exact_mut(3).zip(d.chunks_exact(4)) {
                o.copy_from_slice(&p[..3]);
            }
        }
        PilMode::Cmyk => {
            for (o, p) in out.chunks_exact_mut(3).zip(d.chunks_exact(4)) {
                let nk = 255 - p[3] as u32;
                for c in 0..3 {
                    o[c] = nk.saturating_sub(muldiv255(p[c] as u32, nk)) as u8;
                }
            }
        }
    }
}

fn fill3(out: &mut [u8], grey: impl Iterator<Item = u8>) {
    for (o, v) in out.chunks_exact_mut(3).zip(grey) {
        o.fill(v);
    }
}

/// Pillow's `MULDIV255`: `a * b / 255` rounded, in integer arithmetic.
pub(crate) fn muldiv255(a: u32, b: u32) -> u32 {
    let t = a * b + 128;
    ((t >> 8) + t) >> 8
}

/// One channel of `Image.alpha_composite(white, src)`: Pillow's integer blend with
/// 7 extra bits of precision.
fn composite_on_white(s: u8, a: u8) -> u8 {
    if a == 0 {
        return 255;
    }
    const BITS: u32 = 7;
    let (s, a) = (s as u32, a as u32);
    let blend = 255 * (255 - a);
    let outa255 = a * 255 + blend;
    let coef1 = a * 255 * 255 * (1 << BITS) / outa255;
    let coef2 = 255 * (1 << BITS) - coef1;
    let t = s * coef1 + 255 * coef2 + (0x80 << BITS);
    ((((t >> 8) + t) >> 8) >> BITS) as u8
}

/// RGBA -> Pillow's premultiplied `RGBa` (or LA -> `La`), in place: each colour sample
/// becomes `MULDIV255(v, alpha)`.
pub(crate) fn premultiply(data: &mut [u8], channels: usize) {
    for p in data.chunks_exact_mut(channels) {
        let a = p[channels - 1] as u32;
        for v in &mut p[..channels - 1] {
            *v = muldiv255(*v as u32, a) as u8;
        }
    }
}

/// `RGBa` -> `RGBA` (or `La` -> `LA`), in place: `255 * v / alpha` clipped, except at
/// alpha 0 and 255 where the value is kept.
pub(crate) fn unpremultiply(data: &mut [u8], channels: usize) {
    for p in data.chunks_exact_mut(channels) {
        let a = p[channels - 1] as u32;
        if a == 0 || a == 255 {
            continue;
        }
        for v in &mut p[..channels - 1] {
            *v = ((255 * *v as u32) / a).min(255) as u8;
        }
    }
}

/// `convert("RGB")` of a region in `mode` (same layout as [`PilImage`]'s buffers).
pub(crate) fn region_to_rgb(
    mode: PilMode,
    w: u32,
    h: u32,
    data: Vec<u8>,
    data16: Vec<u16>,
    palette: Option<&Palette>,
) -> RgbImage {
    let img = PilImage {
        mode,
        width: w,
        height: h,
        data,
        data16,
        palette: palette.map(|p| Box::new(*p)),
        transparency: None,
    };
    img.to_rgb()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_composite_is_identity_and_clear_is_white() {
        for v in 0..=255u8 {
            assert_eq!(composite_on_white(v, 255), v);
            assert_eq!(composite_on_white(v, 0), 255);
        }
        // Half-transparent black over white: Pillow gives 127 at alpha 128.
        assert_eq!(composite_on_white(0, 128), 127);
    }

    #[test]
    fn premultiply_round_trip_keeps_opaque_and_clear() {
        let mut px = vec![10, 20, 30, 255, 10, 20, 30, 0, 200, 100, 50, 128];
        premultiply(&mut px, 4);
        assert_eq!(&px[..8], &[10, 20, 30, 255, 0, 0, 0, 0]);
        assert_eq!(&px[8..], &[100, 50, 25, 128]);
        unpremultiply(&mut px, 4);
        assert_eq!(&px[8..], &[199, 99, 49, 128]);
    }
}
