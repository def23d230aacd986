//! Distance kernels: a portable path plus AVX2+FMA and AVX-512F paths picked at run time.
//!
//! Every kernel takes an f32 query and a stored row (f32, f16 or int8 codes) because the
//! query is always kept in full precision; only stored rows are compressed. The portable path
//! is the reference: tests check the SIMD paths against it.

use half::f16;
use std::sync::OnceLock;

/// Which instruction set the kernels run on (for logs and benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Portable,
    Avx2,
    Avx512,
}

type DotF32 = fn(&[f32], &[f32]) -> f32;
type DotF16 = fn(&[f32], &[f16]) -> f32;
type DotI8 = fn(&[f32], &[i8]) -> f32;
type L2F32 = fn(&[f32], &[f32]) -> f32;
type Dot4F32 = fn(&[f32], [&[f32]; 4]) -> [f32; 4];

struct Kernels {
    isa: Isa,
    dot_f32: DotF32,
    dot_f16: DotF16,
    dot_i8: DotI8,
    l2_f32: L2F32,
    dot4_f32: Dot4F32,
}

fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(detect)
}

fn detect() -> Kernels {
    #[cfg(target_arch = "x86_64")]
    {
        let forced = std::env::var("GCLIP_INDEX_ISA").ok();
        let allow = |name: &str| forced.as_deref().is_none_or(|f| f == name);
        let avx2 = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        if avx2 && is_x86_feature_detected!("avx512f") && allow("avx512") {
            return Kernels {
                isa: Isa::Avx512,
                dot_f32: |a, b| unsafe { x86::dot_f32_avx512(a, b) },
                dot_f16: |a, b| unsafe { x86::dot_f16_avx2(a, b) },
                dot_i8: |a, b| unsafe { x86::dot_i8_avx2(a, b) },
                l2_f32: |a, b| unsafe { x86::l2_f32_avx512(a, b) },
                dot4_f32: |a, b| unsafe { x86::dot4_f32_avx512(a, b) },
            };
        }
        if avx2 && (allow("avx2") || forced.as_deref() == Some("avx512")) {
            return Kernels {
                isa: Isa::Avx2,
                dot_f32: |a, b| unsafe { x86::dot_f32_avx2(a, b) },
                dot_f16: |a, b| unsafe { x86::dot_f16_avx2(a, b) },
                dot_i8: |a, b| unsafe { x86::dot_i8_avx2(a, b) },
                l2_f32: |a, b| unsafe { x86::l2_f32_avx2(a, b) },
                dot4_f32: |a, b| unsafe { x86::dot4_f32_avx2(a, b) },
            };
        }
    }
    Kernels {
        isa: Isa::Portable,
        dot_f32: portable::dot_f32,
        dot_f16: portable::dot_f16,
        dot_i8: portable::dot_i8,
        l2_f32: portable::l2_f32,
        dot4_f32: portable::dot4_f32,
    }
}

/// The instruction set in use (set `GCLIP_INDEX_ISA=portable|avx2|avx512` to force a lower one).
pub fn isa() -> Isa {
    kernels().isa
}

/// Dot product; the slices must have equal length (checked in debug builds, the shorter
/// length wins in release so that a caller bug cannot read out of bounds).
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    (kernels().dot_f32)(&a[..n], &b[..n])
}

#[inline]
pub fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    (kernels().dot_f16)(&a[..n], &b[..n])
}

/// Dot of an f32 query with int8 codes (the caller multiplies by the row's scale).
#[inline]
pub fn dot_i8(a: &[f32], b: &[i8]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    (kernels().dot_i8)(&a[..n], &b[..n])
}

/// Dot products of one query with four rows at once: the query is loaded once per step and
/// the four rows' memory reads overlap (graph walks are bound by those reads). Rows shorter
/// than the query are read up to the shortest length.
#[inline]
pub fn dot4_f32(a: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
    let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
    (kernels().dot4_f32)(&a[..n], rows.map(|r| &r[..n]))
}

/// Squared euclidean distance.
#[inline]
pub fn l2_f32(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    (kernels().l2_f32)(&a[..n], &b[..n])
}

/// The reference kernels, also used where no SIMD path exists.
pub mod portable {
    use half::f16;

    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        // Eight independent sums so the compiler can vectorise and rounding matches SIMD closely.
        let mut acc = [0f32; 8];
        let chunks = a.len() / 8;
        for c in 0..chunks {
            for l in 0..8 {
                acc[l] += a[c * 8 + l] * b[c * 8 + l];
            }
        }
        let mut s: f32 = acc.iter().sum();
        for i in chunks * 8..a.len() {
            s += a[i] * b[i];
        }
        s
    }

    pub fn dot4_f32(a: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
        rows.map(|r| dot_f32(a, r))
    }

    pub fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y.to_f32()).sum()
    }

    pub fn dot_i8(a: &[f32], b: &[i8]) -> f32 {
        a.iter().zip(b).map(|(x, &y)| x * y as f32).sum()
    }

    pub fn l2_f32(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use half::f16;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum256(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_loadu_ps(pa.add(i + 8 * k));
                let y = _mm256_loadu_ps(pb.add(i + 8 * k));
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i)),
                _mm256_loadu_ps(pb.add(i)),
                acc[0],
            );
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut r = hsum256(s);
        while i < n {
            r += a[i] * b[i];
            i += 1;
        }
        r
    }

    /// Four rows against one query, two accumulators per row.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot4_f32_avx2(a: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
        let n = a.len();
        let pa = a.as_ptr();
        let p = rows.map(|r| r.as_ptr());
        let mut acc = [[_mm256_setzero_ps(); 2]; 4];
        let mut i = 0;
        while i + 16 <= n {
            let q0 = _mm256_loadu_ps(pa.add(i));
            let q1 = _mm256_loadu_ps(pa.add(i + 8));
            for k in 0..4 {
                acc[k][0] = _mm256_fmadd_ps(_mm256_loadu_ps(p[k].add(i)), q0, acc[k][0]);
                acc[k][1] = _mm256_fmadd_ps(_mm256_loadu_ps(p[k].add(i + 8)), q1, acc[k][1]);
            }
            i += 16;
        }
        let mut out = [0f32; 4];
        for k in 0..4 {
            out[k] = hsum256(_mm256_add_ps(acc[k][0], acc[k][1]));
            for j in i..n {
                out[k] += a[j] * rows[k][j];
            }
        }
        out
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn l2_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            let d1 = _mm256_sub_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
            );
            acc0 = _mm256_fmadd_ps(d0, d0, acc0);
            acc1 = _mm256_fmadd_ps(d1, d1, acc1);
            i += 16;
        }
        let mut r = hsum256(_mm256_add_ps(acc0, acc1));
        while i < n {
            let d = a[i] - b[i];
            r += d * d;
            i += 1;
        }
        r
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16_avx2(a: &[f32], b: &[f16]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr() as *const u16);
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            let y0 = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i) as *const __m128i));
            let y1 = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i + 8) as *const __m128i));
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), y0, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), y1, acc1);
            i += 16;
        }
        let mut r = hsum256(_mm256_add_ps(acc0, acc1));
        while i < n {
            r += a[i] * b[i].to_f32();
            i += 1;
        }
        r
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_i8_avx2(a: &[f32], b: &[i8]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            let q = _mm_loadu_si128(pb.add(i) as *const __m128i);
            let y0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
            let y1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), y0, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), y1, acc1);
            i += 16;
        }
        let mut r = hsum256(_mm256_add_ps(acc0, acc1));
        while i < n {
            r += a[i] * b[i] as f32;
            i += 1;
        }
        r
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_f32_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        while i + 32 <= n {
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i + 16)),
                _mm512_loadu_ps(pb.add(i + 16)),
                acc1,
            );
            i += 32;
        }
        while i + 16 <= n {
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
            i += 16;
        }
        let mut r = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        while i < n {
            r += a[i] * b[i];
            i += 1;
        }
        r
    }

    /// Four rows against one query, two accumulators per row (eight independent chains).
    /// The caller passes rows of the query's length.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot4_f32_avx512(a: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
        let n = a.len();
        let pa = a.as_ptr();
        let p = rows.map(|r| r.as_ptr());
        let mut acc = [[_mm512_setzero_ps(); 2]; 4];
        let mut i = 0;
        while i + 32 <= n {
            let q0 = _mm512_loadu_ps(pa.add(i));
            let q1 = _mm512_loadu_ps(pa.add(i + 16));
            for k in 0..4 {
                acc[k][0] = _mm512_fmadd_ps(_mm512_loadu_ps(p[k].add(i)), q0, acc[k][0]);
                acc[k][1] = _mm512_fmadd_ps(_mm512_loadu_ps(p[k].add(i + 16)), q1, acc[k][1]);
            }
            i += 32;
        }
        while i + 16 <= n {
            let q0 = _mm512_loadu_ps(pa.add(i));
            for k in 0..4 {
                acc[k][0] = _mm512_fmadd_ps(_mm512_loadu_ps(p[k].add(i)), q0, acc[k][0]);
            }
            i += 16;
        }
        let mut out = [0f32; 4];
        for k in 0..4 {
            out[k] = _mm512_reduce_add_ps(_mm512_add_ps(acc[k][0], acc[k][1]));
            for j in i..n {
                out[k] += a[j] * rows[k][j];
            }
        }
        out
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn l2_f32_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = _mm512_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            let d = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
            acc = _mm512_fmadd_ps(d, d, acc);
            i += 16;
        }
        let mut r = _mm512_reduce_add_ps(acc);
        while i < n {
            let d = a[i] - b[i];
            r += d * d;
            i += 1;
        }
        r
    }

    /// Every path this CPU supports, for tests that compare them with the portable one.
    #[cfg(test)]
    pub fn available() -> Vec<(&'static str, super::DotF32, super::L2F32)> {
        let mut v: Vec<(&'static str, super::DotF32, super::L2F32)> = Vec::new();
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            v.push((
                "avx2",
                |a, b| unsafe { dot_f32_avx2(a, b) },
                |a, b| unsafe { l2_f32_avx2(a, b) },
            ));
        }
        if is_x86_feature_detected!("avx512f") {
            v.push((
                "avx512",
                |a, b| unsafe { dot_f32_avx512(a, b) },
                |a, b| unsafe { l2_f32_avx512(a, b) },
            ));
        }
        v
    }

    #[cfg(test)]
    pub fn available_low() -> Option<(super::DotF16, super::DotI8)> {
        (is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        .then_some((
            (|a, b| unsafe { dot_f16_avx2(a, b) }) as super::DotF16,
            (|a, b| unsafe { dot_i8_avx2(a, b) }) as super::DotI8,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(seed: u32, n: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn simd_paths_match_portable() {
        #[cfg(target_arch = "x86_64")]
        for len in [0usize, 1, 7, 8, 15, 16, 17, 31, 32, 33, 100, 512, 771] {
            let a = rows(1, len);
            let b = rows(2, len);
            let want_dot = portable::dot_f32(&a, &b);
            let want_l2 = portable::l2_f32(&a, &b);
            let tol = 1e-5 * (len as f32 + 1.0);
            for (name, dot, l2) in x86::available() {
                assert!(
                    (dot(&a, &b) - want_dot).abs() <= tol,
                    "{name} dot len {len}"
                );
                assert!(
                    (l2(&a, &b) - want_l2).abs() <= tol * 4.0,
                    "{name} l2 len {len}"
                );
            }
            if let Some((d16, d8)) = x86::available_low() {
                let h: Vec<f16> = b.iter().map(|&x| f16::from_f32(x)).collect();
                let q: Vec<i8> = b.iter().map(|&x| (x * 127.0) as i8).collect();
                assert!((d16(&a, &h) - portable::dot_f16(&a, &h)).abs() <= tol);
                assert!((d8(&a, &q) - portable::dot_i8(&a, &q)).abs() <= tol * 127.0);
            }
        }
        #[cfg(target_arch = "x86_64")]
        for len in [0usize, 1, 15, 16, 17, 32, 33, 100, 512, 771] {
            let a = rows(5, len);
            let r: Vec<Vec<f32>> = (0..4).map(|k| rows(6 + k, len)).collect();
            let want = [0, 1, 2, 3].map(|k| portable::dot_f32(&a, &r[k]));
            let tol = 1e-5 * (len as f32 + 1.0);
            let mut paths: Vec<(&str, super::Dot4F32)> = Vec::new();
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                paths.push(("avx2", |a, b| unsafe { x86::dot4_f32_avx2(a, b) }));
            }
            if is_x86_feature_detected!("avx512f") {
                paths.push(("avx512", |a, b| unsafe { x86::dot4_f32_avx512(a, b) }));
            }
            paths.push(("dispatched", dot4_f32));
            for (name, f) in paths {
                let got = f(&a, [&r[0], &r[1], &r[2], &r[3]]);
                for k in 0..4 {
                    assert!((got[k] - want[k]).abs() <= tol, "{name} dot4 len {len}");
                }
            }
        }
        // The dispatched entry points agree with the reference too.
        let a = rows(3, 512);
        let b = rows(4, 512);
        assert!((dot_f32(&a, &b) - portable::dot_f32(&a, &b)).abs() < 1e-3);
        assert!((l2_f32(&a, &b) - portable::l2_f32(&a, &b)).abs() < 1e-3);
    }
}
