//! The open_clip validation transform: resize, centre crop (or pad), to tensor, normalise.

use std::path::Path;

use image::RgbImage;

use crate::config::{PreprocessConfig, ResizeMode};
use crate::decode::{decode_rgb, load_rgb, DecodeOptions};
use crate::error::{ImageError, Result};
use crate::resize::resize_region;

/// Where the resized image lands in the output: resize to `size` (w, h), then output
/// pixel (x, y) reads resized pixel (x + left, y + top) or the fill value when outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    size: (u32, u32),
    left: i64,
    top: i64,
}

/// torchvision's centre-crop offset (Python `round`, ties to even) or, when the target
/// is larger, minus open_clip's `center_crop_or_pad` left/top padding.
fn offset(img: u32, target: usize) -> i64 {
    let (img, target) = (img as i64, target as i64);
    if target > img {
        -((target - img) / 2)
    } else {
        ((img - target) as f64 / 2.0).round_ties_even() as i64
    }
}

impl PreprocessConfig {
    fn plan(&self, w: u32, h: u32) -> Plan {
        let (th, tw) = self.image_size;
        let size = match self.resize_mode {
            ResizeMode::Squash => (tw as u32, th as u32),
            // torchvision `Resize(int)`: short side = size, long = int(size * long / short).
            ResizeMode::Shortest if th == tw => {
                let (short, long) = if w <= h { (w, h) } else { (h, w) };
                let new_long = ((th as u64 * long as u64) as f64 / short as f64) as u32;
                if w <= h {
                    (th as u32, new_long)
                } else {
                    (new_long, th as u32)
                }
            }
            // open_clip `ResizeKeepRatio`: ratio = min (shortest) or max (longest) of the
            // per-axis ratios; each side = round(side / ratio), ties to even.
            ResizeMode::Shortest | ResizeMode::Longest => {
                let rh = h as f64 / th as f64;
                let rw = w as f64 / tw as f64;
                let ratio = if self.resize_mode == ResizeMode::Longest {
                    rh.max(rw)
                } else {
                    rh.min(rw)
                };
                // The reference fails on a zero side (PIL refuses to resize to 0);
                // we keep at least one pixel instead.
                let side = |x: u32| ((x as f64 / ratio).round_ties_even() as u32).max(1);
                (side(w), side(h))
            }
        };
        Plan {
            size,
            left: offset(size.0, tw),
            top: offset(size.1, th),
        }
    }
}

/// Turns RGB images into normalised CHW float tensors per a [`PreprocessConfig`].
#[derive(Debug, Clone)]
pub struct Preprocessor {
    cfg: PreprocessConfig,
    decode: DecodeOptions,
    /// Per channel: normalised value of each byte, computed with torch's f32 ops
    /// (`x / 255`, then `- mean`, then `/ std`) so results are bit-identical.
    lut: [[f32; 256]; 3],
}

impl Preprocessor {
    /// A preprocessor with default [`DecodeOptions`].
    pub fn new(cfg: PreprocessConfig) -> Self {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 / 255.0 - cfg.mean[c]) / cfg.std[c];
            }
        }
        Self {
            cfg,
            decode: DecodeOptions::default(),
            lut,
        }
    }

    /// Replace the decoding limits/options used by [`Self::preprocess_path`].
    pub fn with_decode_options(mut self, decode: DecodeOptions) -> Self {
        self.decode = decode;
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &PreprocessConfig {
        &self.cfg
    }

    /// Number of floats per image: 3 * height * width.
    pub fn output_len(&self) -> usize {
        3 * self.cfg.image_size.0 * self.cfg.image_size.1
    }

    /// CHW bytes after resize and crop/pad, before scaling and normalisation
    /// (the `[0, 255]` values that `ToTensor` divides by 255).
    pub fn preprocess_u8(&self, img: &RgbImage) -> Vec<u8> {
        let (th, tw) = self.cfg.image_size;
        let plan = self.cfg.plan(img.width(), img.height());
        let (rw, rh) = (plan.size.0 as i64, plan.size.1 as i64);
        // Only the part of the resized image that survives the crop is computed.
        let x0 = plan.left.clamp(0, rw);
        let x1 = (plan.left + tw as i64).clamp(0, rw);
        let y0 = plan.top.clamp(0, rh);
        let y1 = (plan.top + th as i64).clamp(0, rh);
        let part = resize_region(
            img,
            plan.size,
            self.cfg.interpolation,
            (x0 as u32, y0 as u32, x1 as u32, y1 as u32),
            true,
        );
        let plane = th * tw;
        let mut out = vec![self.cfg.fill_color; 3 * plane];
        let (pw, ph) = (part.width() as usize, part.height() as usize);
        let (dx, dy) = ((x0 - plan.left) as usize, (y0 - plan.top) as usize);
        let raw = part.as_raw();
        for y in 0..ph {
            let row = &raw[y * pw * 3..(y + 1) * pw * 3];
            let o = (y + dy) * tw + dx;
            for (x, p) in row.chunks_exact(3).enumerate() {
                out[o + x] = p[0];
                out[plane + o + x] = p[1];
                out[2 * plane + o + x] = p[2];
            }
        }
        out
    }

    /// Normalised CHW tensor (length [`Self::output_len`]).
    pub fn preprocess(&self, img: &RgbImage) -> Vec<f32> {
        let mut out = vec![0f32; self.output_len()];
        self.write_normalised(&self.preprocess_u8(img), &mut out);
        out
    }

    /// Like [`Self::preprocess`], writing into `out` (e.g. one slot of a batch).
    /// Fails if `out.len()` is not [`Self::output_len`].
    pub fn preprocess_into(&self, img: &RgbImage, out: &mut [f32]) -> Result<()> {
        if out.len() != self.output_len() {
            return Err(ImageError::Config(format!(
                "output buffer has {} floats, expected 3x{}x{} = {}",
                out.len(),
                self.cfg.image_size.0,
                self.cfg.image_size.1,
                self.output_len()
            )));
        }
        self.write_normalised(&self.preprocess_u8(img), out);
        Ok(())
    }

    /// Load (format sniffed from content) and preprocess an image file.
    pub fn preprocess_path(&self, path: impl AsRef<Path>) -> Result<Vec<f32>> {
        Ok(self.preprocess(&load_rgb(path, &self.decode)?))
    }

    /// Decode and preprocess encoded image bytes.
    pub fn preprocess_bytes(&self, bytes: &[u8]) -> Result<Vec<f32>> {
        Ok(self.preprocess(&decode_rgb(bytes, &self.decode)?))
    }

    fn write_normalised(&self, chw: &[u8], out: &mut [f32]) {
        let plane = chw.len() / 3;
        if plane == 0 {
            return; // a zero-sized target (only constructible by hand) has nothing to write
        }
        for (c, (src, dst)) in chw
            .chunks_exact(plane)
            .zip(out.chunks_exact_mut(plane))
            .enumerate()
        {
            for (&v, o) in src.iter().zip(dst) {
                *o = self.lut[c][v as usize];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_crop_offsets_round_half_to_even() {
        // Python: round(0.5) == 0, round(1.5) == 2, round(2.5) == 2.
        assert_eq!(offset(225, 224), 0);
        assert_eq!(offset(227, 224), 2);
        assert_eq!(offset(229, 224), 2);
        // open_clip pads (target - img) // 2 on the left/top.
        assert_eq!(offset(221, 224), -1);
    }

    #[test]
    fn shortest_resize_truncates_like_torchvision() {
        let c = PreprocessConfig::default();
        // int(224 * 300 / 7) = 9600; int(224 * 4000 / 3000) = 298.
        assert_eq!(c.plan(7, 300).size, (224, 9600));
        assert_eq!(c.plan(4000, 3000).size, (298, 224));
    }

    #[test]
    fn into_checks_length() {
        let p = Preprocessor::new(PreprocessConfig::default());
        let img = RgbImage::new(10, 10);
        assert!(p.preprocess_into(&img, &mut [0.0; 5]).is_err());
    }
}
