//! Element-wise and row-wise kernels: activations, layer norm, softmax,
//! attention. Each body is written once as plain, branch-free Rust and
//! compiled several times under `#[target_feature]` so LLVM vectorises it
//! for AVX-512, AVX2 or baseline SSE; the best copy is picked at run time.

use crate::cpu::{self, Isa};
use crate::EngineError;

/// Activation applied after a linear layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// `x * sigmoid(1.702 x)` (OpenAI CLIP).
    QuickGelu,
    /// Exact GELU, `0.5 x (1 + erf(x / sqrt 2))`.
    Gelu,
}

/// Defines `pub fn $name(isa, args..)` that runs `$body(args..)` compiled for
/// the requested ISA, capped at what the hardware supports (so a wrong `isa`
/// argument can never execute an unsupported instruction).
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        $(#[$m])*
        $vis fn $name(isa: $crate::cpu::Isa, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                unsafe fn v512($($arg: $ty),*) $(-> $ret)? { $body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v2($($arg: $ty),*) $(-> $ret)? { $body($($arg),*) }
                match isa.min($crate::cpu::hardware().isa) {
                    // SAFETY: the ISA was capped at what the CPU reports.
                    $crate::cpu::Isa::Avx512 => return unsafe { v512($($arg),*) },
                    // SAFETY: as above.
                    $crate::cpu::Isa::Avx2 => return unsafe { v2($($arg),*) },
                    $crate::cpu::Isa::Scalar => {}
                }
            }
            let _ = isa;
            $body($($arg),*)
        }
    };
}

pub(crate) use multiversion;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x` to about 2 ulp, branch-free so that it vectorises. Inputs are
/// clamped to the finite range (results saturate near 0 and 2^127).
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor to degree 7 on |r| <= ln2/2: truncation error < 2e-8 relative.
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    p * f32::from_bits(((ni + 127) << 23) as u32)
}

#[inline(always)]
fn quick_gelu1(x: f32) -> f32 {
    x / (1.0 + exp_fast(-1.702 * x))
}

/// Exact GELU through erfc with the Abramowitz-Stegun 7.1.26 rational
/// approximation (|error| < 1.5e-7). For x < 0 it uses erfc(|z|) directly,
/// keeping the small negative tail accurate in relative terms.
#[inline(always)]
fn gelu1(x: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let erfc = poly * exp_fast(-z * z);
    let half_x = 0.5 * x;
    if x >= 0.0 {
        half_x * (2.0 - erfc)
    } else {
        half_x * erfc
    }
}

#[inline(always)]
fn activate_body(act: Activation, xs: &mut [f32]) {
    match act {
        Activation::None => {}
        Activation::QuickGelu => xs.iter_mut().for_each(|x| *x = quick_gelu1(*x)),
        Activation::Gelu => xs.iter_mut().for_each(|x| *x = gelu1(*x)),
    }
}

multiversion! {
    /// Applies `act` to every element in place.
    pub fn activate(act: Activation, xs: &mut [f32]) => activate_body
}

/// Sum with 16 independent lanes so it vectorises without reassociation
/// flags.
#[inline(always)]
fn sum16(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = xs.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    let mut s: f32 = rest.iter().sum();
    for a in acc {
        s += a;
    }
    s
}

#[inline(always)]
fn dot16(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let mut s = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    for a in acc {
        s += a;
    }
    s
}

#[inline(always)]
fn layer_norm_body(
    x: &[f32],
    out: &mut [f32],
    width: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    for (xr, or) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        let mean = sum16(xr) / width as f32;
        for (o, &v) in or.iter_mut().zip(xr) {
            *o = v - mean;
        }
        let mut acc = [0.0f32; 16];
        let ch = or.chunks_exact(16);
        let mut var: f32 = ch.remainder().iter().map(|d| d * d).sum();
        for c in ch {
            for i in 0..16 {
                acc[i] += c[i] * c[i];
            }
        }
        for a in acc {
            var += a;
        }
        let rstd = 1.0 / (var / width as f32 + eps).sqrt();
        for ((o, &g), &b) in or.iter_mut().zip(gamma).zip(beta) {
            *o = *o * rstd * g + b;
        }
    }
}

multiversion! {
    fn layer_norm_unchecked(x: &[f32], out: &mut [f32], width: usize, gamma: &[f32], beta: &[f32], eps: f32) => layer_norm_body
}

/// Layer norm over rows of `width`: `x` holds whole rows, `out` at least as many values,
/// `gamma` and `beta` `width` values each (anything else is an [`EngineError::Shape`]).
pub fn layer_norm(
    isa: Isa,
    x: &[f32],
    out: &mut [f32],
    width: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> Result<(), EngineError> {
    if width == 0 || !x.len().is_multiple_of(width) || out.len() < x.len() {
        return Err(EngineError::Shape(format!(
            "layer_norm: {} inputs and {} outputs for rows of {width}",
            x.len(),
            out.len()
        )));
    }
    if gamma.len() != width || beta.len() != width {
        return Err(EngineError::Shape(format!(
            "layer_norm: gamma {} / beta {} values for width {width}",
            gamma.len(),
            beta.len()
        )));
    }
    layer_norm_unchecked(isa, x, out, width, gamma, beta, eps);
    Ok(())
}

#[inline(always)]
fn softmax_body(xs: &mut [f32]) {
    let mut m = f32::NEG_INFINITY;
    for &v in xs.iter() {
        m = m.max(v);
    }
    for v in xs.iter_mut() {
        *v = exp_fast(*v - m);
    }
    let inv = 1.0 / sum16(xs);
    for v in xs.iter_mut() {
        *v *= inv;
    }
}

multiversion! {
    /// Numerically stable softmax of one row, in place.
    pub fn softmax(xs: &mut [f32]) => softmax_body
}

/// Geometry of a fused-QKV attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    /// Sequences in the batch.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Causal (text) mask: token i sees tokens 0..=i.
    pub causal: bool,
}

/// One (sequence, head) pair for queries `q0..q1`. `qkv` holds rows
/// `[q | k | v]` of width `3 * heads * head_dim` for this sequence; query i's
/// result goes to row `i - q0` of `out` (width `heads * head_dim`), at this
/// head's columns.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attn_head_body(
    qkv: &[f32],
    out: *mut f32,
    s: AttnShape,
    h: usize,
    q0: usize,
    q1: usize,
    scores: &mut [f32],
    acc: &mut [f32],
) {
    let w = s.heads * s.head_dim;
    let stride = 3 * w;
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    let (qo, ko, vo) = (h * s.head_dim, w + h * s.head_dim, 2 * w + h * s.head_dim);
    for i in q0..q1 {
        let q = &qkv[i * stride + qo..i * stride + qo + s.head_dim];
        let len = if s.causal { i + 1 } else { s.seq };
        let sc = &mut scores[..len];
        for (j, sj) in sc.iter_mut().enumerate() {
            let k = &qkv[j * stride + ko..j * stride + ko + s.head_dim];
            *sj = dot16(q, k) * scale;
        }
        softmax_body(sc);
        let acc = &mut acc[..s.head_dim];
        acc.fill(0.0);
        for (j, &p) in sc.iter().enumerate() {
            let v = &qkv[j * stride + vo..j * stride + vo + s.head_dim];
            for (a, &vv) in acc.iter_mut().zip(v) {
                *a += p * vv;
            }
        }
        // SAFETY: the caller guarantees `out` addresses seq rows of width w
        // and that no other task writes this head's columns of them.
        let o = unsafe {
            std::slice::from_raw_parts_mut(out.add((i - q0) * w + h * s.head_dim), s.head_dim)
        };
        o.copy_from_slice(acc);
    }
}

/// Multi-head scaled dot-product attention over a fused QKV matrix
/// (`[batch*seq, 3*W]`, the output of `in_proj`), writing `[batch*seq, W]`:
/// per-head GEMMs ([`crate::attention`]), heads and sequences spread over
/// the thread pool.
///
/// Buffers smaller than the shape requires are an [`EngineError::Shape`].
pub fn attention(
    isa: Isa,
    pool: Option<&rayon::ThreadPool>,
    qkv: &[f32],
    out: &mut [f32],
    s: AttnShape,
) -> Result<(), EngineError> {
    check_attention(qkv, out, s, s.batch.checked_mul(s.seq))?;
    crate::attention::attention(isa, pool, qkv, out, s);
    Ok(())
}

/// Attention for one query position per sequence (`query[b]`), writing
/// `[batch, W]`: all a final block needs when only one token is pooled.
///
/// Buffers that are too small or query positions out of range are an error.
pub fn attention_at(
    isa: Isa,
    pool: Option<&rayon::ThreadPool>,
    qkv: &[f32],
    out: &mut [f32],
    s: AttnShape,
    query: &[usize],
) -> Result<(), EngineError> {
    check_queries(s, query)?;
    check_attention(qkv, out, s, Some(s.batch))?;
    crate::attention::attention_at(isa, pool, qkv, out, s, query);
    Ok(())
}

fn check_queries(s: AttnShape, query: &[usize]) -> Result<(), EngineError> {
    if query.len() != s.batch || query.iter().any(|&q| q >= s.seq) {
        return Err(EngineError::Input(format!(
            "attention_at: queries {query:?} for {} sequences of {} tokens",
            s.batch, s.seq
        )));
    }
    Ok(())
}

/// [`attention`] by per-query vector loops (dot products, softmax, weighted
/// sum of V): the engine's earlier path, kept as a reference for tests.
///
/// Buffers smaller than the shape requires are an [`EngineError::Shape`].
pub fn attention_loops(
    isa: Isa,
    pool: Option<&rayon::ThreadPool>,
    qkv: &[f32],
    out: &mut [f32],
    s: AttnShape,
) -> Result<(), EngineError> {
    check_attention(qkv, out, s, s.batch.checked_mul(s.seq))?;
    attention_impl(isa, pool, qkv, out, s, |b| (0, s.seq, b * s.seq));
    Ok(())
}

/// Checks `qkv` against the shape and `out` against `out_rows` rows of the model width.
fn check_attention(
    qkv: &[f32],
    out: &[f32],
    s: AttnShape,
    out_rows: Option<usize>,
) -> Result<(), EngineError> {
    let w = s.heads.checked_mul(s.head_dim);
    let need_qkv = s
        .batch
        .checked_mul(s.seq)
        .and_then(|r| r.checked_mul(w?.checked_mul(3)?));
    let need_out = out_rows.and_then(|r| r.checked_mul(w?));
    if s.heads == 0 || s.head_dim == 0 {
        return Err(EngineError::Shape(format!(
            "attention: {} heads of width {}",
            s.heads, s.head_dim
        )));
    }
    if need_qkv.is_none_or(|n| qkv.len() < n) || need_out.is_none_or(|n| out.len() < n) {
        return Err(EngineError::Shape(format!(
            "attention: qkv {} / out {} values are too few for {s:?}",
            qkv.len(),
            out.len()
        )));
    }
    Ok(())
}

/// [`attention_at`] by the vector loops of [`attention_loops`].
///
/// Buffers that are too small or query positions out of range are an error.
pub fn attention_at_loops(
    isa: Isa,
    pool: Option<&rayon::ThreadPool>,
    qkv: &[f32],
    out: &mut [f32],
    s: AttnShape,
    query: &[usize],
) -> Result<(), EngineError> {
    check_queries(s, query)?;
    check_attention(qkv, out, s, Some(s.batch))?;
    attention_impl(isa, pool, qkv, out, s, |b| (query[b], query[b] + 1, b));
    Ok(())
}

/// `rows(b)` = (first query, end query, first output row) of sequence b.
fn attention_impl(
    isa: Isa,
    pool: Option<&rayon::ThreadPool>,
    qkv: &[f32],
    out: &mut [f32],
    s: AttnShape,
    rows: impl Fn(usize) -> (usize, usize, usize) + Send + Sync,
) {
    let w = s.heads * s.head_dim;
    let isa = isa.min(cpu::hardware().isa);
    let optr = crate::gemm::SyncPtr(out.as_mut_ptr());
    let task = move |t: usize| {
        let (b, h) = (t / s.heads, t % s.heads);
        let (q0, q1, o0) = rows(b);
        let mut scores = vec![0.0f32; s.seq];
        let mut acc = vec![0.0f32; s.head_dim];
        let q = &qkv[b * s.seq * 3 * w..(b + 1) * s.seq * 3 * w];
        // SAFETY: the callers checked that `out` holds the output rows.
        let base = unsafe { optr.get().add(o0 * w) };
        attn_head_dispatch(isa, q, base, s, h, (q0, q1), &mut scores, &mut acc);
    };
    let tasks = s.batch * s.heads;
    match pool {
        Some(p) if p.current_num_threads() > 1 && tasks > 1 => {
            use rayon::prelude::*;
            p.install(|| (0..tasks).into_par_iter().for_each(task));
        }
        _ => (0..tasks).for_each(task),
    }
}

#[allow(clippy::too_many_arguments)]
fn attn_head_dispatch(
    isa: Isa,
    qkv: &[f32],
    out: *mut f32,
    s: AttnShape,
    h: usize,
    q: (usize, usize),
    scores: &mut [f32],
    acc: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn v512(
            x: &[f32],
            o: *mut f32,
            s: AttnShape,
            h: usize,
            q0: usize,
            q1: usize,
            sc: &mut [f32],
            a: &mut [f32],
        ) {
            attn_head_body(x, o, s, h, q0, q1, sc, a)
        }
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn v2(
            x: &[f32],
            o: *mut f32,
            s: AttnShape,
            h: usize,
            q0: usize,
            q1: usize,
            sc: &mut [f32],
            a: &mut [f32],
        ) {
            attn_head_body(x, o, s, h, q0, q1, sc, a)
        }
        match isa {
            // SAFETY: `isa` was capped at the hardware's by the caller.
            Isa::Avx512 => return unsafe { v512(qkv, out, s, h, q.0, q.1, scores, acc) },
            // SAFETY: as above.
            Isa::Avx2 => return unsafe { v2(qkv, out, s, h, q.0, q.1, scores, acc) },
            Isa::Scalar => {}
        }
    }
    attn_head_body(qkv, out, s, h, q.0, q.1, scores, acc)
}

/// L2-normalises each row of `width` in place (zero rows stay zero).
pub fn l2_normalize_rows(xs: &mut [f32], width: usize) {
    if width == 0 {
        return;
    }
    for r in xs.chunks_exact_mut(width) {
        let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n > 0.0 {
            r.iter_mut().for_each(|v| *v /= n);
        }
    }
}
