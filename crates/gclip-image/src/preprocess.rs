//! The two reference pipelines: open_clip's validation transform (resize in the image's
//! own mode, centre crop or pad, convert to RGB, to tensor, normalise) and transformers'
//! `CLIPImageProcessor` (convert to RGB on white, resize, crop, rescale + normalise).

use std::path::Path;

use image::RgbImage;

use crate::config::{ImagePipeline, PreprocessConfig, ResizeMode};
use crate::decode::{decode_image, load_image, DecodeOptions};
use crate::error::{ImageError, Result};
use crate::pil::{premultiply, region_to_rgb, unpremultiply, PilImage, PilMode};
use crate::resize::{nearest_indices, Resize, Weights};

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

/// transformers' centre-crop offset: `int((img - target) / 2.0)` (truncating), or minus
/// its `(target - img) // 2` zero padding when the target is larger.
fn offset_hf(img: u32, target: usize) -> i64 {
    let (img, target) = (img as i64, target as i64);
    if target > img {
        -((target - img) / 2)
    } else {
        (img - target) / 2
    }
}

/// torchvision / transformers shortest-edge size: short side = `size`,
/// long side = `int(size * long / short)`.
fn shortest_edge(w: u32, h: u32, size: usize) -> (u32, u32) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = ((size as u64 * long as u64) as f64 / short.max(1) as f64) as u32;
    if w <= h {
        (size as u32, new_long)
    } else {
        (new_long, size as u32)
    }
}

impl PreprocessConfig {
    fn plan(&self, w: u32, h: u32) -> Plan {
        let (th, tw) = self.image_size;
        if self.pipeline == ImagePipeline::Transformers {
            let size = match self.resize_mode {
                ResizeMode::Squash => (tw as u32, th as u32),
                ResizeMode::Shortest => {
                    shortest_edge(w, h, self.resize_shortest_edge.unwrap_or(th.max(tw)))
                }
                ResizeMode::Longest => self.keep_ratio(w, h),
            };
            let size = (size.0.max(1), size.1.max(1));
            return Plan {
                size,
                left: offset_hf(size.0, tw),
                top: offset_hf(size.1, th),
            };
        }
        let size = match self.resize_mode {
            ResizeMode::Squash => (tw as u32, th as u32),
            // torchvision `Resize(int)`: short side = size, long = int(size * long / short).
            ResizeMode::Shortest if th == tw => shortest_edge(w, h, th),
            ResizeMode::Shortest | ResizeMode::Longest => self.keep_ratio(w, h),
        };
        Plan {
            size,
            left: offset(size.0, tw),
            top: offset(size.1, th),
        }
    }

    /// open_clip `ResizeKeepRatio`: ratio = min (shortest) or max (longest) of the
    /// per-axis ratios; each side = round(side / ratio), ties to even.
    fn keep_ratio(&self, w: u32, h: u32) -> (u32, u32) {
        let (th, tw) = self.image_size;
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
}

/// Turns images into normalised CHW float tensors per a [`PreprocessConfig`], following
/// its [`ImagePipeline`].
#[derive(Debug, Clone)]
pub struct Preprocessor {
    cfg: PreprocessConfig,
    decode: DecodeOptions,
    /// Per channel: normalised value of each byte, computed with the reference's f32 ops
    /// so results are bit-identical: open_clip `x / 255`, `- mean`, `/ std`; transformers
    /// `(x - mean * 255) / (std * 255)` (its fused rescale + normalise).
    lut: [[f32; 256]; 3],
}

impl Preprocessor {
    /// A preprocessor with default [`DecodeOptions`].
    pub fn new(cfg: PreprocessConfig) -> Self {
        let mut lut = [[0f32; 256]; 3];
        // transformers multiplies the f32 mean/std by 1 / rescale_factor (a Python float).
        let inv_rescale = (1.0f64 / (1.0f64 / 255.0)) as f32;
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = match cfg.pipeline {
                    ImagePipeline::OpenClip => (v as f32 / 255.0 - cfg.mean[c]) / cfg.std[c],
                    ImagePipeline::Transformers => {
                        (v as f32 - cfg.mean[c] * inv_rescale) / (cfg.std[c] * inv_rescale)
                    }
                };
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

    /// CHW bytes of an RGB image after resize and crop/pad, before scaling and
    /// normalisation (the `[0, 255]` values that `ToTensor` divides by 255).
    pub fn preprocess_u8(&self, img: &RgbImage) -> Vec<u8> {
        self.rgb_u8(img.as_raw(), img.dimensions())
    }

    fn rgb_u8(&self, raw: &[u8], dims: (u32, u32)) -> Vec<u8> {
        let plan = self.cfg.plan(dims.0, dims.1);
        let weights = match self.cfg.pipeline {
            ImagePipeline::OpenClip => Weights::Pillow,
            ImagePipeline::Transformers => Weights::Torch,
        };
        let fill = match self.cfg.pipeline {
            ImagePipeline::OpenClip => [self.cfg.fill_color; 3],
            // transformers pads the crop with zeros.
            ImagePipeline::Transformers if self.cfg.resize_mode != ResizeMode::Longest => [0; 3],
            ImagePipeline::Transformers => [self.cfg.fill_color; 3],
        };
        let region = self.region(&plan);
        let (w, h, part) = self.resize_spec(dims, &plan, region, weights).run::<3>(raw);
        let part = RgbImage::from_raw(w, h, part).expect("buffer sized for image");
        self.place(&plan, region, &part, fill)
    }

    /// CHW bytes of an image in any mode, before scaling and normalisation, in the order
    /// of the configured [`ImagePipeline`].
    pub fn preprocess_image_u8(&self, img: &PilImage) -> Vec<u8> {
        let opaque_rgb = img.mode() == PilMode::Rgb && !img.has_transparency();
        match self.cfg.pipeline {
            _ if opaque_rgb => self.rgb_u8(&img.data, img.dimensions()),
            ImagePipeline::Transformers => self.preprocess_u8(&img.to_rgb_on_white()),
            // open_clip ignores an RGB colour key.
            ImagePipeline::OpenClip if img.mode() == PilMode::Rgb => {
                self.rgb_u8(&img.data, img.dimensions())
            }
            ImagePipeline::OpenClip => self.open_clip_native_u8(img),
        }
    }

    /// Normalised CHW tensor of an image in any mode (length [`Self::output_len`]).
    pub fn preprocess_image(&self, img: &PilImage) -> Vec<f32> {
        let mut out = vec![0f32; self.output_len()];
        self.write_normalised(&self.preprocess_image_u8(img), &mut out);
        out
    }

    /// Like [`Self::preprocess_image`], writing into `out` (e.g. one slot of a batch).
    /// Fails if `out.len()` is not [`Self::output_len`].
    pub fn preprocess_image_into(&self, img: &PilImage, out: &mut [f32]) -> Result<()> {
        self.check_len(out)?;
        self.write_normalised(&self.preprocess_image_u8(img), out);
        Ok(())
    }

    /// The part of the resized image that survives the crop, `(x0, y0, x1, y1)`.
    fn region(&self, plan: &Plan) -> (u32, u32, u32, u32) {
        let (th, tw) = self.cfg.image_size;
        let (rw, rh) = (plan.size.0 as i64, plan.size.1 as i64);
        let x0 = plan.left.clamp(0, rw);
        let x1 = (plan.left + tw as i64).clamp(0, rw);
        let y0 = plan.top.clamp(0, rh);
        let y1 = (plan.top + th as i64).clamp(0, rh);
        (x0 as u32, y0 as u32, x1 as u32, y1 as u32)
    }

    fn resize_spec(
        &self,
        input: (u32, u32),
        plan: &Plan,
        region: (u32, u32, u32, u32),
        weights: Weights,
    ) -> Resize {
        Resize {
            input,
            out: plan.size,
            filter: self.cfg.interpolation,
            weights,
            region,
            parallel: true,
        }
    }

    /// open_clip on a non-RGB image: Pillow's `resize` in the image's mode (nearest for
    /// `P` / `1`, premultiplied for `RGBA` / `LA`, 16-bit for `I;16`; a resize to the same
    /// size is a copy), crop/pad in that mode, then `convert("RGB")`.
    fn open_clip_native_u8(&self, img: &PilImage) -> Vec<u8> {
        let plan = self.cfg.plan(img.width, img.height);
        let region = self.region(&plan);
        let (x0, y0, x1, y1) = (
            region.0 as usize,
            region.1 as usize,
            region.2 as usize,
            region.3 as usize,
        );
        let (rw, rh) = (x1 - x0, y1 - y0);
        let mode = img.mode;
        let ch = mode.channels();
        let (w, h) = (img.width as usize, img.height as usize);
        let spec = self.resize_spec(img.dimensions(), &plan, region, Weights::Pillow);
        let same = plan.size == img.dimensions();
        let (mut data, mut data16) = (Vec::new(), Vec::new());
        if same {
            // Pillow returns a copy: no resampling, no premultiplication round trip.
            for y in y0..y1 {
                if mode == PilMode::I16 {
                    data16.extend_from_slice(&img.data16[y * w + x0..y * w + x1]);
                } else {
                    data.extend_from_slice(&img.data[(y * w + x0) * ch..(y * w + x1) * ch]);
                }
            }
        } else {
            match mode {
                PilMode::P | PilMode::Bilevel => {
                    let xs = nearest_indices(img.width, plan.size.0);
                    let ys = nearest_indices(img.height, plan.size.1);
                    data.reserve(rw * rh);
                    for yi in &ys[y0..y1] {
                        for xi in &xs[x0..x1] {
                            // Pillow leaves positions that map outside the image at 0.
                            data.push(match (xi, yi) {
                                (Some(x), Some(y)) if *y < h => img.data[y * w + x],
                                _ => 0,
                            });
                        }
                    }
                }
                PilMode::La | PilMode::Rgba => {
                    let mut pre = img.data.clone();
                    premultiply(&mut pre, ch);
                    data = if ch == 2 {
                        spec.run::<2>(&pre).2
                    } else {
                        spec.run::<4>(&pre).2
                    };
                    unpremultiply(&mut data, ch);
                }
                PilMode::L => data = spec.run::<1>(&img.data).2,
                PilMode::Rgb => data = spec.run::<3>(&img.data).2,
                PilMode::Cmyk => data = spec.run::<4>(&img.data).2,
                PilMode::I16 => data16 = spec.run_u16(&img.data16).2,
            }
        }
        let palette = img.palette.as_deref();
        let part = region_to_rgb(mode, rw as u32, rh as u32, data, data16, palette);
        // torchvision pads in the image's mode; `fill` is a palette index for P.
        let f = self.cfg.fill_color;
        let fill_px = if mode == PilMode::I16 {
            region_to_rgb(mode, 1, 1, Vec::new(), vec![f as u16], None)
        } else {
            region_to_rgb(mode, 1, 1, vec![f; ch], Vec::new(), palette)
        };
        let fill = fill_px.get_pixel(0, 0).0;
        self.place(&plan, region, &part, fill)
    }

    /// Lay the computed region into the CHW output, padding with `fill`.
    fn place(
        &self,
        plan: &Plan,
        region: (u32, u32, u32, u32),
        part: &RgbImage,
        fill: [u8; 3],
    ) -> Vec<u8> {
        let (th, tw) = self.cfg.image_size;
        let plane = th * tw;
        let mut out = vec![0u8; 3 * plane];
        for c in 0..3 {
            out[c * plane..(c + 1) * plane].fill(fill[c]);
        }
        let (pw, ph) = (part.width() as usize, part.height() as usize);
        let dx = (region.0 as i64 - plan.left) as usize;
        let dy = (region.1 as i64 - plan.top) as usize;
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

    /// Normalised CHW tensor of an RGB image (length [`Self::output_len`]).
    pub fn preprocess(&self, img: &RgbImage) -> Vec<f32> {
        let mut out = vec![0f32; self.output_len()];
        self.write_normalised(&self.preprocess_u8(img), &mut out);
        out
    }

    /// Like [`Self::preprocess`], writing into `out` (e.g. one slot of a batch).
    /// Fails if `out.len()` is not [`Self::output_len`].
    pub fn preprocess_into(&self, img: &RgbImage, out: &mut [f32]) -> Result<()> {
        self.check_len(out)?;
        self.write_normalised(&self.preprocess_u8(img), out);
        Ok(())
    }

    fn check_len(&self, out: &[f32]) -> Result<()> {
        if out.len() != self.output_len() {
            return Err(ImageError::Config(format!(
                "output buffer has {} floats, expected 3x{}x{} = {}",
                out.len(),
                self.cfg.image_size.0,
                self.cfg.image_size.1,
                self.output_len()
            )));
        }
        Ok(())
    }

    /// Load (format sniffed from content) and preprocess an image file, keeping its
    /// colour mode for the configured [`ImagePipeline`].
    pub fn preprocess_path(&self, path: impl AsRef<Path>) -> Result<Vec<f32>> {
        Ok(self.preprocess_image(&load_image(path, &self.decode)?))
    }

    /// Decode and preprocess encoded image bytes (see [`Self::preprocess_path`]).
    pub fn preprocess_bytes(&self, bytes: &[u8]) -> Result<Vec<f32>> {
        Ok(self.preprocess_image(&decode_image(bytes, &self.decode)?))
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
