//! Vectorised `e^x` (AVX2 and AVX-512 intrinsics) and the softmax built on
//! it, for attention rows.
//!
//! Same method as [`crate::ops::exp_fast`]: `x = n ln2 + r` with `n` the
//! nearest integer to `x / ln2` and `|r| <= ln2 / 2` (Cody-Waite split of ln2
//! so `r` is exact to f32), `e^r` by its degree-7 Taylor polynomial
//! (truncation < 2e-8 relative), and `2^n` built in the exponent bits.
//! Inputs are clamped to [-87, 88] so the result stays a normal float.

use crate::cpu::{self, Isa};
use crate::ops::exp_fast;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// Taylor coefficients 1/7! .. 1/0!, highest first (Horner order).
const POLY: [f32; 8] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// Eight lanes of `e^x`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn exp256(x: __m256) -> __m256 {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
            _mm256_set1_ps(88.0),
        );
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(LOG2E)),
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let mut p = _mm256_set1_ps(POLY[0]);
        for &c in &POLY[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let pow2 = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        ));
        _mm256_mul_ps(p, _mm256_castsi256_ps(pow2))
    }

    /// Sixteen lanes of `e^x`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(crate) fn exp512(x: __m512) -> __m512 {
        let x = _mm512_min_ps(
            _mm512_max_ps(x, _mm512_set1_ps(-87.0)),
            _mm512_set1_ps(88.0),
        );
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let mut p = _mm512_set1_ps(POLY[0]);
        for &c in &POLY[1..] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let pow2 = _mm512_slli_epi32::<23>(_mm512_add_epi32(
            _mm512_cvtps_epi32(n),
            _mm512_set1_epi32(127),
        ));
        _mm512_mul_ps(p, _mm512_castsi512_ps(pow2))
    }

    /// `xs = e^(scale * (xs - shift))`, returning the sum of the results.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn exp_sum_avx2(xs: &mut [f32], shift: f32, scale: f32) -> f32 {
        let (vs, vm) = (_mm256_set1_ps(scale), _mm256_set1_ps(shift));
        let mut acc = _mm256_setzero_ps();
        let mut chunks = xs.chunks_exact_mut(8);
        for ch in &mut chunks {
            // SAFETY: `ch` holds exactly 8 floats.
            unsafe {
                let v = _mm256_loadu_ps(ch.as_ptr());
                let e = exp256(_mm256_mul_ps(_mm256_sub_ps(v, vm), vs));
                acc = _mm256_add_ps(acc, e);
                _mm256_storeu_ps(ch.as_mut_ptr(), e);
            }
        }
        let mut lanes = [0.0f32; 8];
        // SAFETY: 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        let mut s: f32 = lanes.iter().sum();
        for v in chunks.into_remainder() {
            *v = exp_fast((*v - shift) * scale);
            s += *v;
        }
        s
    }

    /// AVX-512 version of [`exp_sum_avx2`]; the tail is one masked vector.
    #[target_feature(enable = "avx512f")]
    pub(crate) fn exp_sum_avx512(xs: &mut [f32], shift: f32, scale: f32) -> f32 {
        let (vs, vm) = (_mm512_set1_ps(scale), _mm512_set1_ps(shift));
        let mut acc = _mm512_setzero_ps();
        let mut i = 0;
        while i < xs.len() {
            let left = xs.len() - i;
            let mask: __mmask16 = if left >= 16 {
                0xffff
            } else {
                ((1u32 << left) - 1) as u16
            };
            // SAFETY: the mask covers only elements i..len.
            unsafe {
                let p = xs.as_mut_ptr().add(i);
                let v = _mm512_maskz_loadu_ps(mask, p);
                let e = exp512(_mm512_mul_ps(_mm512_sub_ps(v, vm), vs));
                acc = _mm512_mask_add_ps(acc, mask, acc, e);
                _mm512_mask_storeu_ps(p, mask, e);
            }
            i += 16;
        }
        _mm512_reduce_add_ps(acc)
    }
}

/// Applies `e^x` to every element in place with the widest exp kernel
/// `isa` (capped at the hardware) allows.
pub fn exp_in_place(isa: Isa, xs: &mut [f32]) {
    let _ = exp_sum(isa, xs, 0.0, 1.0);
}

/// `xs = e^(scale * (xs - shift))`, returning the sum.
fn exp_sum(isa: Isa, xs: &mut [f32], shift: f32, scale: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    match isa.min(cpu::hardware().isa) {
        // SAFETY: the ISA is capped at what the CPU reports.
        Isa::Avx512 => return unsafe { x86::exp_sum_avx512(xs, shift, scale) },
        // SAFETY: as above.
        Isa::Avx2 => return unsafe { x86::exp_sum_avx2(xs, shift, scale) },
        Isa::Scalar => {}
    }
    let _ = (isa, cpu::hardware);
    let mut s = 0.0;
    for v in xs.iter_mut() {
        *v = exp_fast((*v - shift) * scale);
        s += *v;
    }
    s
}

/// Softmax of `scale * xs`, in place (`scale > 0`): the attention
/// normalisation with the `1/sqrt(d)` factor folded in.
pub fn softmax_scaled(isa: Isa, xs: &mut [f32], scale: f32) {
    if xs.is_empty() {
        return;
    }
    let m = xs.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let sum = exp_sum(isa, xs, m, scale);
    let inv = 1.0 / sum;
    xs.iter_mut().for_each(|v| *v *= inv);
}
