//! Pillow-exact separable resampling (`Image.resize` with BICUBIC / BILINEAR).
//!
//! Reproduces Pillow's `libImaging/Resample.c` bit for bit on 8-bit RGB:
//! * the filter support is widened by the downscale factor (antialiasing),
//! * per-output weights are normalised to sum 1 in `f64`, then rounded half away
//!   from zero to fixed point with [`PRECISION_BITS`] fractional bits,
//! * accumulation starts at one half (`1 << (PRECISION_BITS - 1)`), the result is
//!   shifted right (floor) and clamped to `0..=255`,
//! * the horizontal pass runs first, only over the source rows that the vertical
//!   pass reads, and its 8-bit output feeds the vertical pass.
//!
//! Every output pixel depends only on its own coefficients, so rows are processed in
//! parallel with rayon and any sub-rectangle of the output can be computed alone
//! (used to skip pixels that a centre crop throws away) with identical values.

use image::RgbImage;
use rayon::prelude::*;

/// Fractional bits of the fixed-point coefficients: 32 bits minus 8 for the pixel
/// value minus 2 guard bits for negative lobes and overshoot (as in Pillow).
pub const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Resampling filter (Pillow's names and supports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    /// Keys cubic convolution with a = -0.5, support 2 (`Image.BICUBIC`).
    #[default]
    Bicubic,
    /// Triangle filter, support 1 (`Image.BILINEAR`).
    Bilinear,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bicubic => 2.0,
            Filter::Bilinear => 1.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
        }
    }
}

/// Whose fixed-point weights and kernel arithmetic a resize reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Weights {
    /// Pillow's `Resample.c`: 22 fractional bits for every axis.
    #[default]
    Pillow,
    /// PyTorch's uint8 antialiased kernels (`interpolate(..., antialias=True)` on a uint8
    /// tensor, what torchvision's `resize` runs for transformers' image processors): the
    /// same support and normalisation as Pillow, the cubic evaluated in torch's operation
    /// order, and int16 weights at the largest precision (at most 22 bits) under which
    /// the axis's largest weight still fits.
    Torch,
}

/// torch's `HelperInterpCubic::aa_filter` (a = -0.5), in its operation order.
fn torch_cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    } else {
        0.0
    }
}

/// Normalised floating-point weights for one axis: output `i` reads `len[i]` inputs from
/// `start[i]` (Pillow's `precompute_coeffs`, which torch's antialiased path copies).
struct FloatCoeffs {
    ksize: usize,
    start: Vec<usize>,
    len: Vec<usize>,
    k: Vec<f64>,
}

impl FloatCoeffs {
    fn new(in_size: usize, out_size: usize, filter: Filter, weights: Weights) -> Self {
        let scale = in_size as f64 / out_size.max(1) as f64;
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let ss = 1.0 / filterscale;
        let eval = |x: f64| match (weights, filter) {
            (Weights::Torch, Filter::Bicubic) => torch_cubic(x),
            _ => filter.eval(x),
        };
        let mut start = Vec::with_capacity(out_size);
        let mut len = Vec::with_capacity(out_size);
        let mut k = vec![0f64; out_size * ksize];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero; `as i64` does the same.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin).min(ksize);
            let row = &mut k[xx * ksize..xx * ksize + n];
            let mut ww = 0.0;
            for (x, wx) in row.iter_mut().enumerate() {
                *wx = eval((x as f64 + xmin as f64 - center + 0.5) * ss);
                ww += *wx;
            }
            if ww != 0.0 {
                for wx in row.iter_mut() {
                    *wx /= ww;
                }
            }
            start.push(xmin);
            len.push(n);
        }
        FloatCoeffs {
            ksize,
            start,
            len,
            k,
        }
    }

    fn taps(&self, i: usize) -> (usize, &[f64]) {
        let o = i * self.ksize;
        (self.start[i], &self.k[o..o + self.len[i]])
    }
}

/// Fixed-point weights for one axis: output `i` reads `len[i]` inputs from `start[i]`.
struct Coeffs {
    ksize: usize,
    start: Vec<usize>,
    len: Vec<usize>,
    k: Vec<i32>,
    /// Fractional bits of `k`.
    precision: u32,
}

impl Coeffs {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the full box `0..in_size`,
    /// or torch's `_compute_index_ranges_int16_weights`.
    fn new(in_size: usize, out_size: usize, filter: Filter, weights: Weights) -> Self {
        let f = FloatCoeffs::new(in_size, out_size, filter, weights);
        let precision = match weights {
            Weights::Pillow => PRECISION_BITS,
            Weights::Torch => {
                let wt_max = f.k.iter().copied().fold(0.0f64, f64::max);
                let mut p = 0;
                while p < 22 && ((0.5 + wt_max * (1u32 << (p + 1)) as f64) as i64) < (1 << 15) {
                    p += 1;
                }
                p
            }
        };
        let one = (1u32 << precision) as f64;
        // Round half away from zero, then truncate (both libraries' conversion).
        let k =
            f.k.iter()
                .map(|&v| {
                    let x = v * one;
                    if v < 0.0 {
                        (x - 0.5) as i32
                    } else {
                        (x + 0.5) as i32
                    }
                })
                .collect();
        Coeffs {
            ksize: f.ksize,
            start: f.start,
            len: f.len,
            k,
            precision,
        }
    }

    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let o = i * self.ksize;
        (self.start[i], &self.k[o..o + self.len[i]])
    }

    #[inline]
    fn half(&self) -> i32 {
        (1i32 << self.precision) >> 1
    }

    #[inline]
    fn clip8(&self, acc: i32) -> u8 {
        (acc >> self.precision).clamp(0, 255) as u8
    }
}

/// Resize like Pillow's `img.resize((w, h), Image.BICUBIC)` (antialiased), bit-exact.
pub fn resize_bicubic_pil(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    resize_pil(img, w, h, Filter::Bicubic)
}

/// Resize with a Pillow filter, parallel over rows (bit-identical to single-threaded).
pub fn resize_pil(img: &RgbImage, w: u32, h: u32, filter: Filter) -> RgbImage {
    resize_region(img, (w, h), filter, (0, 0, w, h), true)
}

/// Single-threaded [`resize_pil`]; exists to check that parallelism changes nothing.
pub fn resize_pil_single_thread(img: &RgbImage, w: u32, h: u32, filter: Filter) -> RgbImage {
    resize_region(img, (w, h), filter, (0, 0, w, h), false)
}

/// Compute the sub-rectangle `(x0, y0, x1, y1)` of the image resized to `out`.
/// The values equal the corresponding pixels of the full resize.
pub(crate) fn resize_region(
    img: &RgbImage,
    out: (u32, u32),
    filter: Filter,
    region: (u32, u32, u32, u32),
    parallel: bool,
) -> RgbImage {
    let spec = Resize {
        input: (img.width(), img.height()),
        out,
        filter,
        weights: Weights::Pillow,
        region,
        parallel,
    };
    let (rw, rh, buf) = spec.run::<3>(img.as_raw());
    RgbImage::from_raw(rw, rh, buf).expect("buffer sized for image")
}

/// One resize of an interleaved 8-bit image with `C` channels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resize {
    /// Input (width, height).
    pub input: (u32, u32),
    /// Output (width, height) of the whole resize.
    pub out: (u32, u32),
    pub filter: Filter,
    pub weights: Weights,
    /// The part of the output to compute, `(x0, y0, x1, y1)`.
    pub region: (u32, u32, u32, u32),
    pub parallel: bool,
}

impl Resize {
    fn bounds(&self) -> (usize, usize, usize, usize) {
        let (x0, y0) = (self.region.0 as usize, self.region.1 as usize);
        let x1 = self.region.2.min(self.out.0) as usize;
        let y1 = self.region.3.min(self.out.1) as usize;
        (x0, y0, x1.max(x0), y1.max(y0))
    }

    /// Region width, height and its pixels (`C` interleaved bytes each).
    pub(crate) fn run<const C: usize>(&self, src: &[u8]) -> (u32, u32, Vec<u8>) {
        let (in_w, in_h) = (self.input.0 as usize, self.input.1 as usize);
        let (out_w, out_h) = (self.out.0 as usize, self.out.1 as usize);
        let (x0, y0, x1, y1) = self.bounds();
        let (rw, rh) = (x1 - x0, y1 - y0);
        if rw == 0 || rh == 0 || in_w == 0 || in_h == 0 || src.len() < in_w * in_h * C {
            return (rw as u32, rh as u32, vec![0; rw * rh * C]);
        }
        let need_h = out_w != in_w;
        let need_v = out_h != in_h;
        let (filter, weights) = (self.filter, self.weights);

        // Horizontal pass over the rows the vertical pass will read (or the crop rows).
        let vco = need_v.then(|| Coeffs::new(in_h, out_h, filter, weights));
        let (row_first, row_last) = match &vco {
            Some(c) => {
                let (s0, _) = c.taps(y0);
                let (s1, t1) = c.taps(y1 - 1);
                (s0, s1 + t1.len())
            }
            None => (y0, y1),
        };
        let stride = rw * C;
        let tmp: Vec<u8> = if need_h {
            let hco = Coeffs::new(in_w, out_w, filter, weights);
            let mut tmp = vec![0u8; (row_last - row_first) * stride];
            let half = hco.half();
            // Interleaved accumulation measured faster than splitting rows into planes
            // (the i32 dot products do not vectorise well on baseline x86-64).
            let body = |(r, out_row): (usize, &mut [u8])| {
                let y = row_first + r;
                let in_row = &src[y * in_w * C..(y + 1) * in_w * C];
                for (xx, px) in (x0..x1).zip(out_row.chunks_exact_mut(C)) {
                    let (s, k) = hco.taps(xx);
                    let pixels = &in_row[s * C..(s + k.len()) * C];
                    let mut acc = [half; C];
                    for (p, &kx) in pixels.chunks_exact(C).zip(k) {
                        for c in 0..C {
                            acc[c] = acc[c].wrapping_add(p[c] as i32 * kx);
                        }
                    }
                    for c in 0..C {
                        px[c] = hco.clip8(acc[c]);
                    }
                }
            };
            if self.parallel {
                tmp.par_chunks_mut(stride)
                    .enumerate()
                    .with_min_len(8)
                    .for_each(body);
            } else {
                tmp.chunks_mut(stride).enumerate().for_each(body);
            }
            tmp
        } else {
            // No horizontal change: the vertical pass reads the source columns directly.
            let mut tmp = Vec::with_capacity((row_last - row_first) * stride);
            for y in row_first..row_last {
                tmp.extend_from_slice(&src[(y * in_w + x0) * C..(y * in_w + x1) * C]);
            }
            tmp
        };

        let Some(vco) = vco else {
            return (rw as u32, rh as u32, tmp);
        };
        let mut outbuf = vec![0u8; rh * stride];
        let half = vco.half();
        let body = |(r, out_row): (usize, &mut [u8])| {
            let (s, k) = vco.taps(y0 + r);
            let mut acc = vec![half; stride];
            for (t, &ky) in k.iter().enumerate() {
                let row = &tmp[(s + t - row_first) * stride..(s + t - row_first + 1) * stride];
                // Integer sums are order-independent, so accumulating a whole row per tap
                // (vectorisable) equals the per-pixel loops of both references.
                for (a, &p) in acc.iter_mut().zip(row) {
                    *a = a.wrapping_add(p as i32 * ky);
                }
            }
            for (o, &a) in out_row.iter_mut().zip(&acc) {
                *o = vco.clip8(a);
            }
        };
        if self.parallel {
            outbuf
                .par_chunks_mut(stride)
                .enumerate()
                .with_min_len(4)
                .for_each(body);
        } else {
            outbuf.chunks_mut(stride).enumerate().for_each(body);
        }
        (rw as u32, rh as u32, outbuf)
    }

    /// Pillow's 16-bit (`I;16`) resampler on one channel: the same supports and
    /// normalised weights, kept in `f64`, each sum rounded half away from zero and
    /// clamped to `0..=65535`; horizontal pass first, 16-bit in between.
    pub(crate) fn run_u16(&self, src: &[u16]) -> (u32, u32, Vec<u16>) {
        let (in_w, in_h) = (self.input.0 as usize, self.input.1 as usize);
        let (out_w, out_h) = (self.out.0 as usize, self.out.1 as usize);
        let (x0, y0, x1, y1) = self.bounds();
        let (rw, rh) = (x1 - x0, y1 - y0);
        if rw == 0 || rh == 0 || in_w == 0 || in_h == 0 || src.len() < in_w * in_h {
            return (rw as u32, rh as u32, vec![0; rw * rh]);
        }
        let round = |ss: f64| -> u16 {
            // C: (int)(ss >= 0 ? ss + 0.5F : ss - 0.5F), then CLIP16.
            let v = if ss >= 0.0 { ss + 0.5 } else { ss - 0.5 } as i64;
            v.clamp(0, 65535) as u16
        };
        let vco =
            (out_h != in_h).then(|| FloatCoeffs::new(in_h, out_h, self.filter, Weights::Pillow));
        let (row_first, row_last) = match &vco {
            Some(c) => {
                let (s0, _) = c.taps(y0);
                let (s1, t1) = c.taps(y1 - 1);
                (s0, s1 + t1.len())
            }
            None => (y0, y1),
        };
        let mut tmp = Vec::with_capacity((row_last - row_first) * rw);
        if out_w != in_w {
            let hco = FloatCoeffs::new(in_w, out_w, self.filter, Weights::Pillow);
            for y in row_first..row_last {
                let row = &src[y * in_w..(y + 1) * in_w];
                for xx in x0..x1 {
                    let (s, k) = hco.taps(xx);
                    let mut ss = 0.0f64;
                    for (&p, &kx) in row[s..s + k.len()].iter().zip(k) {
                        ss += p as f64 * kx;
                    }
                    tmp.push(round(ss));
                }
            }
        } else {
            for y in row_first..row_last {
                tmp.extend_from_slice(&src[y * in_w + x0..y * in_w + x1]);
            }
        }
        let Some(vco) = vco else {
            return (rw as u32, rh as u32, tmp);
        };
        let mut out = Vec::with_capacity(rw * rh);
        for yy in y0..y1 {
            let (s, k) = vco.taps(yy);
            for x in 0..rw {
                let mut ss = 0.0f64;
                for (t, &ky) in k.iter().enumerate() {
                    ss += tmp[(s + t - row_first) * rw + x] as f64 * ky;
                }
                out.push(round(ss));
            }
        }
        (rw as u32, rh as u32, out)
    }
}

/// Source index of each output position for Pillow's NEAREST resize (used for modes `P`
/// and `1` whatever filter is asked): `ImagingScaleAffine`'s running sum
/// `x = scale / 2; x += scale`, truncated; `None` where it falls outside the image.
pub(crate) fn nearest_indices(in_size: u32, out_size: u32) -> Vec<Option<usize>> {
    // The box is a C float, widened to double before the division.
    let a = in_size as f32 as f64 / out_size.max(1) as f64;
    let mut xo = a * 0.5;
    let mut out = Vec::with_capacity(out_size as usize);
    for _ in 0..out_size {
        let xin = if xo < 0.0 { -1 } else { xo as i64 };
        out.push((0..in_size as i64).contains(&xin).then_some(xin as usize));
        xo += a;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(w: u32, h: u32, seed: u32) -> RgbImage {
        let mut s = seed;
        RgbImage::from_fn(w, h, |_, _| {
            let mut b = [0u8; 3];
            for v in &mut b {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *v = (s >> 24) as u8;
            }
            image::Rgb(b)
        })
    }

    #[test]
    fn parallel_equals_single_thread() {
        let img = noise(517, 389, 7);
        for &(w, h) in &[(224, 168), (1000, 50), (3, 700), (517, 100), (60, 389)] {
            for f in [Filter::Bicubic, Filter::Bilinear] {
                assert_eq!(
                    resize_pil(&img, w, h, f),
                    resize_pil_single_thread(&img, w, h, f)
                );
            }
        }
    }

    #[test]
    fn region_equals_crop_of_full_resize() {
        let img = noise(300, 200, 3);
        let full = resize_bicubic_pil(&img, 150, 97);
        let part = resize_region(&img, (150, 97), Filter::Bicubic, (20, 10, 120, 90), true);
        let want = image::imageops::crop_imm(&full, 20, 10, 100, 80).to_image();
        assert_eq!(part, want);
    }

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        // Normalised weights round to within a few ulps of 1.0 in fixed point.
        let mut worst = 0;
        for weights in [Weights::Pillow, Weights::Torch] {
            for (i, o) in [(4000, 224), (7, 224), (224, 224), (300, 299)] {
                let c = Coeffs::new(i, o, Filter::Bicubic, weights);
                for x in 0..o {
                    let s: i64 = c.taps(x).1.iter().map(|&k| k as i64).sum();
                    worst = worst.max((s - (1i64 << c.precision)).abs());
                }
            }
        }
        println!("largest deviation from 1.0: {worst} ulp");
        assert!(worst <= 20, "{worst}");
    }
}
