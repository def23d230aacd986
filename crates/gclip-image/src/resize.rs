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

/// Fixed-point weights for one axis: output `i` reads `len[i]` inputs from `start[i]`.
struct Coeffs {
    ksize: usize,
    start: Vec<usize>,
    len: Vec<usize>,
    k: Vec<i32>,
}

impl Coeffs {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the full box `0..in_size`.
    fn new(in_size: usize, out_size: usize, filter: Filter) -> Self {
        let scale = in_size as f64 / out_size.max(1) as f64;
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let ss = 1.0 / filterscale;
        let mut start = Vec::with_capacity(out_size);
        let mut len = Vec::with_capacity(out_size);
        let mut k = vec![0i32; out_size * ksize];
        let mut w = vec![0f64; ksize];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero; `as i64` does the same.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin).min(ksize);
            let mut ww = 0.0;
            for (x, wx) in w.iter_mut().enumerate().take(n) {
                *wx = filter.eval((x as f64 + xmin as f64 - center + 0.5) * ss);
                ww += *wx;
            }
            let row = &mut k[xx * ksize..xx * ksize + n];
            for (kx, &wx) in row.iter_mut().zip(&w) {
                let v = if ww != 0.0 { wx / ww } else { wx };
                let f = v * (1u32 << PRECISION_BITS) as f64;
                // Round half away from zero, then truncate (Pillow's normalisation).
                *kx = if v < 0.0 {
                    (f - 0.5) as i32
                } else {
                    (f + 0.5) as i32
                };
            }
            start.push(xmin);
            len.push(n);
        }
        Coeffs {
            ksize,
            start,
            len,
            k,
        }
    }

    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let o = i * self.ksize;
        (self.start[i], &self.k[o..o + self.len[i]])
    }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

const HALF: i32 = 1 << (PRECISION_BITS - 1);

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
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (out_w, out_h) = (out.0 as usize, out.1 as usize);
    let (x0, y0) = (region.0 as usize, region.1 as usize);
    let (x1, y1) = (region.2.min(out.0) as usize, region.3.min(out.1) as usize);
    let (rw, rh) = (x1.saturating_sub(x0), y1.saturating_sub(y0));
    if rw == 0 || rh == 0 || in_w == 0 || in_h == 0 {
        return RgbImage::new(rw as u32, rh as u32);
    }
    let src = img.as_raw();
    let need_h = out_w != in_w;
    let need_v = out_h != in_h;

    // Horizontal pass over the rows the vertical pass will read (or the crop rows).
    let vco = need_v.then(|| Coeffs::new(in_h, out_h, filter));
    let (row_first, row_last) = match &vco {
        Some(c) => {
            let (s0, _) = c.taps(y0);
            let (s1, t1) = c.taps(y1 - 1);
            (s0, s1 + t1.len())
        }
        None => (y0, y1),
    };
    let stride = rw * 3;
    let tmp: Vec<u8> = if need_h {
        let hco = Coeffs::new(in_w, out_w, filter);
        let mut tmp = vec![0u8; (row_last - row_first) * stride];
        // Interleaved accumulation measured faster than splitting rows into planes
        // (the i32 dot products do not vectorise well on baseline x86-64).
        let body = |(r, out_row): (usize, &mut [u8])| {
            let y = row_first + r;
            let in_row = &src[y * in_w * 3..(y + 1) * in_w * 3];
            for (xx, px) in (x0..x1).zip(out_row.chunks_exact_mut(3)) {
                let (s, k) = hco.taps(xx);
                let pixels = &in_row[s * 3..(s + k.len()) * 3];
                let (mut a0, mut a1, mut a2) = (HALF, HALF, HALF);
                for (p, &kx) in pixels.chunks_exact(3).zip(k) {
                    a0 = a0.wrapping_add(p[0] as i32 * kx);
                    a1 = a1.wrapping_add(p[1] as i32 * kx);
                    a2 = a2.wrapping_add(p[2] as i32 * kx);
                }
                px[0] = clip8(a0);
                px[1] = clip8(a1);
                px[2] = clip8(a2);
            }
        };
        if parallel {
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
            tmp.extend_from_slice(&src[(y * in_w + x0) * 3..(y * in_w + x1) * 3]);
        }
        tmp
    };

    let Some(vco) = vco else {
        return RgbImage::from_raw(rw as u32, rh as u32, tmp).expect("buffer sized for image");
    };
    let mut outbuf = vec![0u8; rh * stride];
    let body = |(r, out_row): (usize, &mut [u8])| {
        let (s, k) = vco.taps(y0 + r);
        let mut acc = vec![HALF; stride];
        for (t, &ky) in k.iter().enumerate() {
            let row = &tmp[(s + t - row_first) * stride..(s + t - row_first + 1) * stride];
            // Integer sums are order-independent, so accumulating a whole row per tap
            // (vectorisable) equals Pillow's per-pixel loop.
            for (a, &p) in acc.iter_mut().zip(row) {
                *a = a.wrapping_add(p as i32 * ky);
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    };
    if parallel {
        outbuf
            .par_chunks_mut(stride)
            .enumerate()
            .with_min_len(4)
            .for_each(body);
    } else {
        outbuf.chunks_mut(stride).enumerate().for_each(body);
    }
    RgbImage::from_raw(rw as u32, rh as u32, outbuf).expect("buffer sized for image")
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
        // Normalised weights must round to within a few ulps of 1.0 in fixed point.
        for (i, o) in [(4000, 224), (7, 224), (224, 224), (300, 299)] {
            let c = Coeffs::new(i, o, Filter::Bicubic);
            for x in 0..o {
                let s: i64 = c.taps(x).1.iter().map(|&k| k as i64).sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= c.ksize as i64,
                    "{i}->{o} @{x}: {s}"
                );
            }
        }
    }
}
