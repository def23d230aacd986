//! The training kernels: forward and backward of every layer of a CLIP tower, over
//! row-major `f32` buffers. Matrix products go through the engine's packed GEMM
//! (AVX-512 / AVX2 / portable, multithreaded on the caller's pool); row-wise work
//! (layer norm, softmax, activations) is split over the pool by rows.

use gclip_engine::cpu::Isa;
use gclip_engine::gemm::{gemm, Epilogue, PackedMatrix};
use gclip_engine::ops::Activation;
use rayon::prelude::*;

use crate::{FastTrainError, Result};

/// Where the kernels run: the ISA and the worker pool (`None`: the calling thread).
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// Kernels to use (capped by the engine at what the CPU supports).
    pub isa: Isa,
    /// Thread pool, when more than one thread is wanted.
    pub pool: Option<&'a rayon::ThreadPool>,
}

impl Ctx<'_> {
    /// Single-threaded on the best ISA of this CPU.
    pub fn serial() -> Ctx<'static> {
        Ctx {
            isa: gclip_engine::cpu::features().isa,
            pool: None,
        }
    }

    fn threads(&self) -> usize {
        self.pool.map_or(1, |p| p.current_num_threads())
    }

    /// Runs `f` over `rows` rows of `width` in `out` (and the same rows of `inp`), in chunks
    /// spread over the pool when the work is large enough to pay for it.
    fn rows_mut<F>(&self, out: &mut [f32], width: usize, f: F)
    where
        F: Fn(usize, &mut [f32]) + Send + Sync,
    {
        let rows = out.len() / width.max(1);
        let t = self.threads();
        match self.pool {
            Some(p) if t > 1 && out.len() >= 16_384 => {
                let per = rows.div_ceil(t * 4).max(1);
                p.install(|| {
                    out.par_chunks_mut(per * width)
                        .enumerate()
                        .for_each(|(c, chunk)| f(c * per, chunk))
                });
            }
            _ => f(0, out),
        }
    }
}

fn check(what: &str, got: usize, want: usize) -> Result<()> {
    if got < want {
        return Err(FastTrainError::Shape(format!(
            "{what}: {got} values, need {want}"
        )));
    }
    Ok(())
}

/// How a right-hand operand is stored.
#[derive(Clone, Copy)]
pub enum Rhs<'a> {
    /// `b[n][k]` row-major: the product is `A * b^T` (a PyTorch `Linear` weight).
    Nk(&'a [f32]),
    /// `b[k][n]` row-major: the product is `A * b`.
    Kn(&'a [f32]),
}

/// `C[m, n] (+)= A[m, k] * B` with `A` row-major, `C` row-major of width `n`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    ctx: Ctx<'_>,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: Rhs<'_>,
    c: &mut [f32],
    bias: Option<&[f32]>,
    accumulate: bool,
) -> Result<()> {
    check("matmul A", a.len(), m * k)?;
    check("matmul C", c.len(), m * n)?;
    check(
        "matmul B",
        match b {
            Rhs::Nk(w) | Rhs::Kn(w) => w.len(),
        },
        n * k,
    )?;
    let packed = match b {
        Rhs::Nk(w) => PackedMatrix::from_nk(&w[..n * k], n, k)?,
        Rhs::Kn(w) => PackedMatrix::from_kn(&w[..n * k], k, n)?,
    };
    matmul_packed(ctx, m, a, k, &packed, c, bias, accumulate)
}

/// `C[m, n] (+)= A[m, k] * B` with `B` already packed (a weight used by several products).
#[allow(clippy::too_many_arguments)]
pub fn matmul_packed(
    ctx: Ctx<'_>,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedMatrix,
    c: &mut [f32],
    bias: Option<&[f32]>,
    accumulate: bool,
) -> Result<()> {
    if b.k() == 0 {
        // An empty inner dimension: the product is zero (plus bias).
        let n = b.n();
        if !accumulate {
            for row in c[..m * n].chunks_exact_mut(n) {
                match bias {
                    Some(bb) => row.copy_from_slice(&bb[..n]),
                    None => row.fill(0.0),
                }
            }
        }
        return Ok(());
    }
    let ldc = b.n();
    gemm(
        ctx.isa,
        ctx.pool,
        m,
        a,
        lda,
        b,
        c,
        ldc,
        Epilogue {
            bias,
            act: Activation::None,
            accumulate,
        },
    )?;
    Ok(())
}

/// `C[m, n] += A^T * B` for `A[k, m]`, `B[k, n]` (both row-major): the weight gradient
/// `dW = dY^T X` of a linear layer (`A = dY`, `B = X`, `k` = rows of the batch), with no
/// transposed copy of `A`. When `col_sums` is given, it receives `+= sum_k A[k, :]` (the
/// bias gradient).
#[allow(clippy::too_many_arguments)]
pub fn matmul_tn(
    ctx: Ctx<'_>,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    col_sums: Option<&mut [f32]>,
) -> Result<()> {
    check("matmul_tn A", a.len(), k * m)?;
    check("matmul_tn B", b.len(), k * n)?;
    check("matmul_tn C", c.len(), m * n)?;
    if let Some(s) = col_sums {
        for row in a[..k * m].chunks_exact(m.max(1)) {
            for (o, &v) in s[..m].iter_mut().zip(row) {
                *o += v;
            }
        }
    }
    if k == 0 {
        return Ok(());
    }
    // A^T is `a` itself: the engine packs its micro-panels straight from it.
    let packed = PackedMatrix::from_kn(&b[..k * n], k, n)?;
    gclip_engine::gemm::gemm_at(
        ctx.isa,
        ctx.pool,
        m,
        a,
        m,
        &packed,
        c,
        n,
        Epilogue {
            bias: None,
            act: Activation::None,
            accumulate: true,
        },
    )?;
    Ok(())
}

/// `out[j][i] = a[i][j]` for `a` of `rows x cols`, in cache-sized tiles.
pub fn transpose(a: &[f32], out: &mut [f32], rows: usize, cols: usize) {
    const T: usize = 32;
    for i0 in (0..rows).step_by(T) {
        for j0 in (0..cols).step_by(T) {
            for i in i0..(i0 + T).min(rows) {
                for j in j0..(j0 + T).min(cols) {
                    out[j * rows + i] = a[i * cols + j];
                }
            }
        }
    }
}

/// Backward of `Y = X W^T + b` (`X[m, k]`, `W[n, k]`): `dX (+)= dY W`, `dW += dY^T X`,
/// `db += sum dY`. `dx = None` skips the input gradient (first layer of a tower).
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    ctx: Ctx<'_>,
    m: usize,
    n: usize,
    k: usize,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dx_accumulate: bool,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) -> Result<()> {
    if let Some(dx) = dx {
        // B = W as [n][k] read as [K = n][N = k].
        matmul(ctx, m, k, n, dy, Rhs::Kn(w), dx, None, dx_accumulate)?;
    }
    matmul_tn(ctx, n, k, m, dy, x, dw, db)
}

/// Layer-norm statistics of one row: (mean, 1 / sqrt(var + eps)).
#[inline]
fn row_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let w = x.len() as f32;
    let mean = x.iter().sum::<f32>() / w;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / w;
    (mean, 1.0 / (var + eps).sqrt())
}

/// Layer norm over rows of `width`, keeping each row's mean and reciprocal deviation for
/// the backward (`stats[2r] = mean`, `stats[2r + 1] = rstd`).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_forward(
    ctx: Ctx<'_>,
    x: &[f32],
    out: &mut [f32],
    stats: &mut [f32],
    width: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> Result<()> {
    let rows = x.len() / width.max(1);
    check("layer_norm out", out.len(), x.len())?;
    check("layer_norm stats", stats.len(), 2 * rows)?;
    check("layer_norm gamma", gamma.len().min(beta.len()), width)?;
    let out = &mut out[..rows * width];
    let stats_ptr = crate::SyncPtr(stats.as_mut_ptr());
    ctx.rows_mut(out, width, |r0, chunk| {
        for (i, o) in chunk.chunks_exact_mut(width).enumerate() {
            let r = r0 + i;
            let xr = &x[r * width..(r + 1) * width];
            let (mean, rstd) = row_stats(xr, eps);
            // SAFETY: each row's two stats are written by the one task that owns the row.
            unsafe {
                *stats_ptr.get().add(2 * r) = mean;
                *stats_ptr.get().add(2 * r + 1) = rstd;
            }
            for (((ov, &xv), &g), &b) in o.iter_mut().zip(xr).zip(gamma).zip(beta) {
                *ov = (xv - mean) * rstd * g + b;
            }
        }
    });
    Ok(())
}

/// Backward of [`layer_norm_forward`]: `dx (+)= rstd (g dy - mean(g dy) - xhat mean(g dy
/// xhat))`, `dgamma += sum dy xhat`, `dbeta += sum dy`.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward(
    ctx: Ctx<'_>,
    x: &[f32],
    stats: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dx_accumulate: bool,
    width: usize,
    gamma: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) -> Result<()> {
    let rows = x.len() / width.max(1);
    check("layer_norm_backward dy", dy.len(), x.len())?;
    check("layer_norm_backward dx", dx.len(), x.len())?;
    check("layer_norm_backward stats", stats.len(), 2 * rows)?;
    let dx = &mut dx[..rows * width];
    // Per-chunk partial sums of dgamma / dbeta, added up afterwards in row order (no shared
    // writes, and the same sum whatever order the chunks finish in).
    let partials = std::sync::Mutex::new(Vec::<(usize, Vec<f32>, Vec<f32>)>::new());
    ctx.rows_mut(dx, width, |r0, chunk| {
        let mut dg = vec![0.0f32; width];
        let mut dbv = vec![0.0f32; width];
        let mut gdy = vec![0.0f32; width];
        for (i, dxr) in chunk.chunks_exact_mut(width).enumerate() {
            let r = r0 + i;
            let (mean, rstd) = (stats[2 * r], stats[2 * r + 1]);
            let xr = &x[r * width..(r + 1) * width];
            let dyr = &dy[r * width..(r + 1) * width];
            let mut s1 = 0.0f32;
            let mut s2 = 0.0f32;
            for j in 0..width {
                let xh = (xr[j] - mean) * rstd;
                dg[j] += dyr[j] * xh;
                dbv[j] += dyr[j];
                let g = gamma[j] * dyr[j];
                gdy[j] = g;
                s1 += g;
                s2 += g * xh;
            }
            let (m1, m2) = (s1 / width as f32, s2 / width as f32);
            for j in 0..width {
                let xh = (xr[j] - mean) * rstd;
                let v = rstd * (gdy[j] - m1 - xh * m2);
                if dx_accumulate {
                    dxr[j] += v;
                } else {
                    dxr[j] = v;
                }
            }
        }
        partials
            .lock()
            .expect("no task panics while holding the lock")
            .push((r0, dg, dbv));
    });
    let mut partials = partials.into_inner().expect("lock not poisoned");
    partials.sort_by_key(|p| p.0);
    for (_, dg, dbv) in partials {
        for j in 0..width {
            dgamma[j] += dg[j];
            dbeta[j] += dbv[j];
        }
    }
    Ok(())
}

/// `erf` by Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7), the approximation the engine's
/// forward GELU uses, so forward and derivative agree.
#[inline]
fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let r = 1.0 - poly * (-z * z).exp();
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// `act(x)` of one value (reference form; the forward uses the engine's vectorised copy).
#[inline]
pub fn activation(act: Activation, x: f32) -> f32 {
    match act {
        Activation::None => x,
        Activation::QuickGelu => x / (1.0 + (-1.702 * x).exp()),
        Activation::Gelu => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
    }
}

/// `d act(x) / dx`.
#[inline]
pub fn activation_derivative(act: Activation, x: f32) -> f32 {
    match act {
        Activation::None => 1.0,
        Activation::QuickGelu => {
            let s = 1.0 / (1.0 + (-1.702 * x).exp());
            s + 1.702 * x * s * (1.0 - s)
        }
        Activation::Gelu => {
            let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = (-0.5 * x * x).exp() * 0.398_942_3;
            cdf + x * pdf
        }
    }
}

/// `out = act(pre)` element-wise (the engine's vectorised activations).
pub fn activate_into(ctx: Ctx<'_>, act: Activation, pre: &[f32], out: &mut [f32]) {
    let out = &mut out[..pre.len()];
    out.copy_from_slice(pre);
    if act == Activation::None {
        return;
    }
    ctx.rows_mut(out, 1024.min(pre.len().max(1)), |_, chunk| {
        gclip_engine::ops::activate(ctx.isa, act, chunk)
    });
}

/// `d *= act'(pre)` element-wise: the activation's backward fused into the MLP's. The one
/// exponential each derivative needs runs through the engine's vectorised `exp` in blocks.
pub fn activation_backward(ctx: Ctx<'_>, act: Activation, pre: &[f32], d: &mut [f32]) {
    if act == Activation::None {
        return;
    }
    let d = &mut d[..pre.len()];
    let block = 1024.min(pre.len().max(1));
    ctx.rows_mut(d, block, |r0, chunk| {
        let p = &pre[r0 * block..r0 * block + chunk.len()];
        let mut e = vec![0.0f32; block];
        for (dc, pc) in chunk.chunks_mut(block).zip(p.chunks(block)) {
            let e = &mut e[..pc.len()];
            match act {
                // sigmoid(1.702 x) = 1 / (1 + e^(-1.702 x))
                Activation::QuickGelu => {
                    for (ev, &x) in e.iter_mut().zip(pc) {
                        *ev = -1.702 * x;
                    }
                }
                // erf and the normal density share e^(-x^2 / 2)
                _ => {
                    for (ev, &x) in e.iter_mut().zip(pc) {
                        *ev = -0.5 * x * x;
                    }
                }
            }
            gclip_engine::exp::exp_in_place(ctx.isa, e);
            match act {
                Activation::QuickGelu => {
                    for ((dv, &x), &ev) in dc.iter_mut().zip(pc).zip(e.iter()) {
                        let s = 1.0 / (1.0 + ev);
                        *dv *= s + 1.702 * x * s * (1.0 - s);
                    }
                }
                _ => {
                    for ((dv, &x), &ev) in dc.iter_mut().zip(pc).zip(e.iter()) {
                        *dv *= gelu_derivative_with_exp(x, ev);
                    }
                }
            }
        }
    });
}

/// GELU's derivative `Phi(x) + x phi(x)` given `ev = e^(-x^2 / 2)`, with `erf` by the same
/// Abramowitz-Stegun formula as [`erf`].
#[inline(always)]
fn gelu_derivative_with_exp(x: f32, ev: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let erf_abs = 1.0 - poly * ev;
    let erf = if x < 0.0 { -erf_abs } else { erf_abs };
    0.5 * (1.0 + erf) + x * ev * 0.398_942_3
}

/// Geometry of one attention call over a fused QKV matrix `[batch * seq, 3W]`.
#[derive(Clone, Copy, Debug)]
pub struct Attn {
    /// Sequences.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Token `i` sees tokens `0..=i` only (text).
    pub causal: bool,
}

impl Attn {
    fn width(&self) -> usize {
        self.heads * self.head_dim
    }
    /// Values of the saved softmax probabilities, `[batch, heads, seq, seq]`.
    pub fn probs_len(&self) -> usize {
        self.batch * self.heads * self.seq * self.seq
    }
}

/// Multi-head attention forward: `out[b, t, h] = softmax(q k^T / sqrt d) v`, keeping the
/// probabilities (`probs[b][h][i][j]`, zero above the diagonal when causal).
pub fn attention_forward(
    ctx: Ctx<'_>,
    qkv: &[f32],
    out: &mut [f32],
    probs: &mut [f32],
    s: Attn,
) -> Result<()> {
    let (w, d, n) = (s.width(), s.head_dim, s.seq);
    check("attention qkv", qkv.len(), s.batch * n * 3 * w)?;
    check("attention out", out.len(), s.batch * n * w)?;
    check("attention probs", probs.len(), s.probs_len())?;
    if s.probs_len() == 0 {
        return Ok(());
    }
    let scale = 1.0 / (d as f32).sqrt();
    let optr = crate::SyncPtr(out.as_mut_ptr());
    let probs = &mut probs[..s.probs_len()];
    let task = |bh: usize, p: &mut [f32]| {
        let (b, h) = (bh / s.heads, bh % s.heads);
        let x = &qkv[b * n * 3 * w..(b + 1) * n * 3 * w];
        // SAFETY: sequence b's output rows; each task writes only head h's columns.
        let o = unsafe { optr.get().add(b * n * w) };
        // SAFETY: as above; the ISA is capped at the CPU's inside.
        unsafe {
            dispatch_head(
                ctx.isa,
                HeadJob::Forward {
                    x,
                    p,
                    o,
                    s,
                    h,
                    scale,
                },
            )
        };
    };
    par_heads(ctx, probs, n * n, task);
    Ok(())
}

/// Runs `task(b * heads + h, probs of that pair)` for every (sequence, head) pair.
fn par_heads<F>(ctx: Ctx<'_>, probs: &mut [f32], per: usize, task: F)
where
    F: Fn(usize, &mut [f32]) + Send + Sync,
{
    match ctx.pool {
        Some(p) if p.current_num_threads() > 1 => p.install(|| {
            probs
                .par_chunks_mut(per)
                .enumerate()
                .for_each(|(t, c)| task(t, c))
        }),
        _ => probs
            .chunks_mut(per)
            .enumerate()
            .for_each(|(t, c)| task(t, c)),
    }
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let mut s: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    for v in acc {
        s += v;
    }
    s
}

/// Backward of [`attention_forward`]: from `dout` (`[batch * seq, W]`) and the saved
/// probabilities, writes `dqkv` (`[batch * seq, 3W]`, overwritten):
/// `dV = P^T dO`, `dP = dO V^T`, `dS = P (dP - rowsum(dP P)) / sqrt d`, `dQ = dS K`,
/// `dK = dS^T Q`.
pub fn attention_backward(
    ctx: Ctx<'_>,
    qkv: &[f32],
    probs: &[f32],
    dout: &[f32],
    dqkv: &mut [f32],
    s: Attn,
) -> Result<()> {
    let (w, d, n) = (s.width(), s.head_dim, s.seq);
    check("attention_backward qkv", qkv.len(), s.batch * n * 3 * w)?;
    check("attention_backward dout", dout.len(), s.batch * n * w)?;
    check("attention_backward dqkv", dqkv.len(), s.batch * n * 3 * w)?;
    check("attention_backward probs", probs.len(), s.probs_len())?;
    if s.probs_len() == 0 {
        return Ok(());
    }
    let scale = 1.0 / (d as f32).sqrt();
    let gptr = crate::SyncPtr(dqkv.as_mut_ptr());
    // Scratch per task: dS for one (sequence, head), [n, n].
    let mut ds_all = vec![0.0f32; s.probs_len()];
    let task = |bh: usize, ds: &mut [f32]| {
        let (b, h) = (bh / s.heads, bh % s.heads);
        let x = &qkv[b * n * 3 * w..(b + 1) * n * 3 * w];
        let p = &probs[bh * n * n..(bh + 1) * n * n];
        let dout = &dout[b * n * w..(b + 1) * n * w];
        // SAFETY: sequence b's rows of dQKV; each task writes only head h's columns.
        let g = unsafe { gptr.get().add(b * n * 3 * w) };
        // SAFETY: as above; the ISA is capped at the CPU's inside.
        unsafe {
            dispatch_head(
                ctx.isa,
                HeadJob::Backward {
                    x,
                    p,
                    dout,
                    g,
                    ds,
                    s,
                    h,
                    scale,
                },
            )
        };
    };
    par_heads(ctx, &mut ds_all, n * n, task);
    Ok(())
}

/// One (sequence, head) of attention, forward or backward.
enum HeadJob<'a> {
    Forward {
        /// The sequence's QKV rows.
        x: &'a [f32],
        /// This head's probabilities `[seq, seq]`.
        p: &'a mut [f32],
        /// The sequence's first output row (width W).
        o: *mut f32,
        s: Attn,
        h: usize,
        scale: f32,
    },
    Backward {
        x: &'a [f32],
        p: &'a [f32],
        /// The sequence's output-gradient rows (width W).
        dout: &'a [f32],
        /// The sequence's first dQKV row (width 3W).
        g: *mut f32,
        /// Scratch `[seq, seq]` for dS.
        ds: &'a mut [f32],
        s: Attn,
        h: usize,
        scale: f32,
    },
}

/// Runs a head job compiled for the best ISA available (the loops over the head width
/// vectorise for it).
///
/// # Safety
/// The job's raw pointers address the sequence's rows, and no other task writes this head's
/// columns of them.
unsafe fn dispatch_head(isa: Isa, job: HeadJob<'_>) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        unsafe fn v512(isa: Isa, job: HeadJob<'_>) {
            // SAFETY: forwarded.
            unsafe { run_head(isa, job) }
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn v2(isa: Isa, job: HeadJob<'_>) {
            // SAFETY: forwarded.
            unsafe { run_head(isa, job) }
        }
        match isa.min(gclip_engine::cpu::hardware().isa) {
            // SAFETY: the CPU supports the ISA (capped above); pointers as the caller promised.
            Isa::Avx512 => return unsafe { v512(isa, job) },
            // SAFETY: as above.
            Isa::Avx2 => return unsafe { v2(isa, job) },
            Isa::Scalar => {}
        }
    }
    // SAFETY: forwarded.
    unsafe { run_head(isa, job) }
}

/// # Safety
/// As [`dispatch_head`].
#[inline(always)]
unsafe fn run_head(isa: Isa, job: HeadJob<'_>) {
    match job {
        HeadJob::Forward {
            x,
            p,
            o,
            s,
            h,
            scale,
        } => {
            let (w, d, n) = (s.width(), s.head_dim, s.seq);
            let (qo, ko, vo) = (h * d, w + h * d, 2 * w + h * d);
            for i in 0..n {
                let q = &x[i * 3 * w + qo..][..d];
                let len = if s.causal { i + 1 } else { n };
                let row = &mut p[i * n..(i + 1) * n];
                for (j, r) in row[..len].iter_mut().enumerate() {
                    let k = &x[j * 3 * w + ko..][..d];
                    *r = dot(q, k);
                }
                gclip_engine::exp::softmax_scaled(isa, &mut row[..len], scale);
                row[len..].fill(0.0);
                // SAFETY: row i of the sequence, head h's columns (the caller's promise).
                let o = unsafe { std::slice::from_raw_parts_mut(o.add(i * w + h * d), d) };
                o.fill(0.0);
                for (j, &pj) in row[..len].iter().enumerate() {
                    let v = &x[j * 3 * w + vo..][..d];
                    for (ov, &vv) in o.iter_mut().zip(v) {
                        *ov += pj * vv;
                    }
                }
            }
        }
        HeadJob::Backward {
            x,
            p,
            dout,
            g,
            ds,
            s,
            h,
            scale,
        } => {
            let (w, d, n) = (s.width(), s.head_dim, s.seq);
            let (qo, ko, vo) = (h * d, w + h * d, 2 * w + h * d);
            // SAFETY: row `row` of the sequence, head h's q/k/v columns (the caller's promise).
            let gs = |row: usize, off: usize| unsafe {
                std::slice::from_raw_parts_mut(g.add(row * 3 * w + off), d)
            };
            for j in 0..n {
                gs(j, qo).fill(0.0);
                gs(j, ko).fill(0.0);
                gs(j, vo).fill(0.0);
            }
            for i in 0..n {
                let len = if s.causal { i + 1 } else { n };
                let dor = &dout[i * w + h * d..][..d];
                let pr = &p[i * n..i * n + len];
                let dsr = &mut ds[i * n..i * n + len];
                // dP_ij = dO_i . V_j ; dV_j += P_ij dO_i
                let mut rs = 0.0f32;
                for j in 0..len {
                    let v = &x[j * 3 * w + vo..][..d];
                    let dp = dot(dor, v);
                    dsr[j] = dp;
                    rs += dp * pr[j];
                    let dv = gs(j, vo);
                    for (a, &o) in dv.iter_mut().zip(dor) {
                        *a += pr[j] * o;
                    }
                }
                for (sv, &pv) in dsr.iter_mut().zip(pr) {
                    *sv = pv * (*sv - rs) * scale;
                }
                // dQ_i = sum_j dS_ij K_j ; dK_j += dS_ij Q_i
                let q = &x[i * 3 * w + qo..][..d];
                let dq = gs(i, qo);
                for (j, &sij) in dsr.iter().enumerate() {
                    let k = &x[j * 3 * w + ko..][..d];
                    for (a, &kv) in dq.iter_mut().zip(k) {
                        *a += sij * kv;
                    }
                }
                for (j, &sij) in dsr.iter().enumerate() {
                    let dk = gs(j, ko);
                    for (a, &qv) in dk.iter_mut().zip(q) {
                        *a += sij * qv;
                    }
                }
            }
        }
    }
}

/// Divides each row of `width` by its L2 norm (clamped at 1e-12 as `F.normalize`), writing
/// `y` and the norms.
pub fn l2_normalize_forward(x: &[f32], width: usize, y: &mut [f32], norms: &mut [f32]) {
    for ((xr, yr), nr) in x
        .chunks_exact(width)
        .zip(y.chunks_exact_mut(width))
        .zip(norms.iter_mut())
    {
        let n = xr.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        *nr = n;
        for (o, &v) in yr.iter_mut().zip(xr) {
            *o = v / n;
        }
    }
}

/// Backward of [`l2_normalize_forward`]: `dx (+)= (dy - y (y . dy)) / |x|`.
pub fn l2_normalize_backward(
    y: &[f32],
    norms: &[f32],
    dy: &[f32],
    width: usize,
    dx: &mut [f32],
    accumulate: bool,
) {
    for (((yr, dyr), dxr), &n) in y
        .chunks_exact(width)
        .zip(dy.chunks_exact(width))
        .zip(dx.chunks_exact_mut(width))
        .zip(norms)
    {
        let yd: f32 = yr.iter().zip(dyr).map(|(a, b)| a * b).sum();
        for ((o, &yv), &g) in dxr.iter_mut().zip(yr).zip(dyr) {
            let v = (g - yv * yd) / n;
            if accumulate {
                *o += v;
            } else {
                *o = v;
            }
        }
    }
}
