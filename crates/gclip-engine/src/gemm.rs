//! Single-precision GEMM `C = act(A * B + bias) [+ C]` with B pre-packed
//! once (weights) into column panels of [`NR`] floats, K-major.
//!
//! Blocking: A is packed per task into micro-panels of MR rows (k-major) so
//! the micro-kernel reads one contiguous stream; a task covers MC rows of A
//! (kept in L2) and a range of B panels (one panel, K x 32, streams through
//! L1/L2). Tasks are (row block, panel range) pairs spread over a rayon pool.
//! The AVX-512 micro-kernel holds a 14 x 32 tile in 28 zmm accumulators;
//! AVX2 runs its own K-blocked 6 x 16 kernel ([`crate::gemm_avx2`]).

use std::cell::RefCell;

use crate::aligned::AlignedBuf;
use crate::cpu::{self, Isa};
use crate::ops::{activate, Activation};
use crate::EngineError;

/// Columns per packed panel.
pub const NR: usize = 32;

/// A `K x N` right-hand matrix packed into panels of [`NR`] columns; panel
/// `j` holds, for each `p` in `0..K`, the 32 values `B[p, 32j..32j+32]`
/// (zero-padded past `N`).
#[derive(Clone)]
pub struct PackedMatrix {
    n: usize,
    k: usize,
    data: AlignedBuf,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedMatrix")
            .field("k", &self.k)
            .field("n", &self.n)
            .finish()
    }
}

impl PackedMatrix {
    /// Packs a PyTorch `Linear` weight, `w[n][k]` row-major (out x in), so
    /// that `A * B` computes `A * w^T`.
    pub fn from_nk(w: &[f32], n: usize, k: usize) -> Result<Self, EngineError> {
        check_len("weight [n, k]", w.len(), n * k)?;
        let panels = n.div_ceil(NR);
        let mut data = AlignedBuf::zeroed(panels * k * NR * 4);
        let d = data.f32s_mut();
        for jp in 0..panels {
            let (c0, cols) = (jp * NR, (n - jp * NR).min(NR));
            let panel = &mut d[jp * k * NR..(jp + 1) * k * NR];
            // Row p of the panel gathers column p of 32 weight rows: the writes stream and
            // the 32 read streams each advance one float at a time (the training step
            // repacks every weight every step, so this is on its hot path).
            let rows: Vec<&[f32]> = (0..cols).map(|jj| &w[(c0 + jj) * k..][..k]).collect();
            for p in 0..k {
                let dst = &mut panel[p * NR..p * NR + cols];
                for (o, r) in dst.iter_mut().zip(&rows) {
                    *o = r[p];
                }
            }
        }
        Ok(Self { n, k, data })
    }

    /// Packs a plain `w[k][n]` row-major matrix (e.g. open_clip's `proj`).
    pub fn from_kn(w: &[f32], k: usize, n: usize) -> Result<Self, EngineError> {
        check_len("weight [k, n]", w.len(), n * k)?;
        let panels = n.div_ceil(NR);
        let mut data = AlignedBuf::zeroed(panels * k * NR * 4);
        let d = data.f32s_mut();
        // Each panel row is a contiguous run of a source row: plain copies.
        for p in 0..k {
            let src = &w[p * n..(p + 1) * n];
            for jp in 0..panels {
                let (c0, cols) = (jp * NR, (n - jp * NR).min(NR));
                for (o, &v) in d[jp * k * NR + p * NR..][..cols].iter_mut().zip(&src[c0..]) {
                    *o = v;
                }
            }
        }
        Ok(Self { n, k, data })
    }

    /// Packs from any accessor `get(p, j)` = `B[p, j]` (also used for the
    /// per-head attention operands, read in place from the QKV matrix).
    pub(crate) fn pack(n: usize, k: usize, get: impl Fn(usize, usize) -> f32) -> Self {
        let panels = n.div_ceil(NR);
        let mut data = AlignedBuf::zeroed(panels * k * NR * 4);
        let d = data.f32s_mut();
        for jp in 0..panels {
            let panel = &mut d[jp * k * NR..(jp + 1) * k * NR];
            for (jj, j) in (jp * NR..n.min(jp * NR + NR)).enumerate() {
                for p in 0..k {
                    panel[p * NR + jj] = get(p, j);
                }
            }
        }
        Self { n, k, data }
    }

    /// Output columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Inner dimension.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Heap bytes held.
    pub fn bytes(&self) -> usize {
        self.data.capacity_bytes()
    }

    pub(crate) fn panel(&self, j: usize) -> &[f32] {
        &self.data.f32s()[j * self.k * NR..(j + 1) * self.k * NR]
    }
}

pub(crate) fn check_len(what: &str, got: usize, want: usize) -> Result<(), EngineError> {
    if got != want {
        return Err(EngineError::Shape(format!(
            "{what}: expected {want} values, got {got}"
        )));
    }
    Ok(())
}

/// What happens to each output tile after `A * B`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// Per-column bias (length N) added to `A * B`.
    pub bias: Option<&'a [f32]>,
    /// Activation applied to `A * B + bias`.
    pub act: Activation,
    /// Add the result to the existing C (a residual connection) instead of
    /// overwriting it. Not combined with an activation (CLIP never needs
    /// both; `gemm` panics if asked).
    pub accumulate: bool,
}

/// Micro-tile rows and row-block size per ISA.
pub(crate) fn tile_rows(isa: Isa) -> (usize, usize) {
    match isa {
        Isa::Avx512 => (14, 14 * 8),
        Isa::Avx2 => (crate::gemm_avx2::MR, crate::gemm_avx2::blocking().mc),
        Isa::Scalar => (4, 64),
    }
}

#[derive(Clone, Copy)]
pub(crate) struct SyncPtr<T>(pub(crate) *mut T);
// SAFETY: every task writes a disjoint tile of C; see `gemm`.
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// The pointer; a method so closures capture the whole `Sync` wrapper.
    pub(crate) fn get(&self) -> *mut T {
        self.0
    }
}

thread_local! {
    static APACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// How a GEMM is cut into tasks: row blocks (whole micro-panels, so only
/// the last block has a short tail) times chunks of column panels.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    m: usize,
    mr: usize,
    micro: usize,
    pub(crate) mb: usize,
    pub(crate) chunks: usize,
    panels: usize,
}

impl Plan {
    /// `work` is the MAC count: small products run as one task.
    pub(crate) fn new(
        m: usize,
        mr: usize,
        max_micro: usize,
        panels: usize,
        threads: usize,
        work: usize,
    ) -> Self {
        let micro = m.div_ceil(mr).max(1);
        let mut mb = micro.div_ceil(max_micro).max(1);
        let mut chunks = 1;
        if threads > 1 && work >= (1 << 20) {
            // Equal-sized row blocks, a multiple of the thread count, so no
            // thread waits on a straggler; split columns only when rows run
            // out (each column chunk re-reads A).
            if mb > 1 {
                mb = (mb.div_ceil(threads) * threads).min(micro);
            }
            chunks = (threads * 2).div_ceil(mb).clamp(1, panels.max(1));
        }
        Self {
            m,
            mr,
            micro,
            mb,
            chunks,
            panels,
        }
    }

    pub(crate) fn tasks(&self) -> usize {
        self.mb * self.chunks
    }

    /// (row block, panel chunk) of task `t`.
    pub(crate) fn split(&self, t: usize) -> ((usize, usize), (usize, usize)) {
        let (bi, ci) = (t / self.chunks, t % self.chunks);
        let (u0, u1) = (bi * self.micro / self.mb, (bi + 1) * self.micro / self.mb);
        let rows = (u0 * self.mr, (u1 * self.mr).min(self.m));
        let cols = (
            ci * self.panels / self.chunks,
            (ci + 1) * self.panels / self.chunks,
        );
        (rows, cols)
    }
}

/// Runs `task(t)` for `t in 0..tasks`, on `pool` when there is one.
pub(crate) fn run_tasks(
    pool: Option<&rayon::ThreadPool>,
    tasks: usize,
    task: impl Fn(usize) + Send + Sync,
) {
    match pool {
        Some(p) if tasks > 1 && p.current_num_threads() > 1 => {
            use rayon::prelude::*;
            p.install(|| (0..tasks).into_par_iter().for_each(&task));
        }
        _ => (0..tasks).for_each(task),
    }
}

/// The buffer and epilogue checks shared by [`gemm`] and the int8 GEMM; `name` goes in the
/// message. Called with `m > 0`.
pub(crate) fn check_args(
    name: &str,
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    lda: usize,
    c: &[f32],
    ldc: usize,
    epi: &Epilogue<'_>,
) -> Result<(), EngineError> {
    let need = |rows: usize, ld: usize, cols: usize| {
        (rows - 1).checked_mul(ld).and_then(|x| x.checked_add(cols))
    };
    if lda < k || need(m, lda, k).is_none_or(|n| a.len() < n) {
        return Err(EngineError::Shape(format!(
            "{name}: A holds {} values, too few for {m} rows of {k} with stride {lda}",
            a.len()
        )));
    }
    if ldc < n || need(m, ldc, n).is_none_or(|x| c.len() < x) {
        return Err(EngineError::Shape(format!(
            "{name}: C holds {} values, too few for {m} rows of {n} with stride {ldc}",
            c.len()
        )));
    }
    if let Some(bias) = epi.bias {
        if bias.len() < n {
            return Err(EngineError::Shape(format!(
                "{name}: bias has {} values, needs {n}",
                bias.len()
            )));
        }
    }
    if epi.accumulate && epi.act != Activation::None {
        return Err(EngineError::Input(format!(
            "{name}: accumulate with an activation is unsupported"
        )));
    }
    Ok(())
}

/// `C[m, n] (=|+=) act(A[m, k] * B + bias)` with `A` row-major (row stride
/// `lda`) and `C` row-major (row stride `ldc`).
///
/// A buffer smaller than its stated shape is an [`EngineError::Shape`].
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    isa: Isa,
    pool: Option<&rayon::ThreadPool>,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedMatrix,
    c: &mut [f32],
    ldc: usize,
    epi: Epilogue<'_>,
) -> Result<(), EngineError> {
    let (n, k) = (b.n, b.k);
    if m == 0 || n == 0 {
        return Ok(());
    }
    check_args("gemm", (m, n, k), a, lda, c, ldc, &epi)?;
    gemm_checked(isa, pool, m, a, lda, false, b, c, ldc, epi);
    Ok(())
}

/// [`gemm`] with `A` given transposed: `at` holds `A^T` (`k` rows of stride `ldat`, so
/// `A[i][p] = at[p * ldat + i]`). A weight gradient `dW = dY^T X` reads `dY` this way
/// without a transposed copy: the micro-panel packing gathers contiguous runs.
#[allow(clippy::too_many_arguments)]
pub fn gemm_at(
    isa: Isa,
    pool: Option<&rayon::ThreadPool>,
    m: usize,
    at: &[f32],
    ldat: usize,
    b: &PackedMatrix,
    c: &mut [f32],
    ldc: usize,
    epi: Epilogue<'_>,
) -> Result<(), EngineError> {
    let (n, k) = (b.n, b.k);
    if m == 0 || n == 0 {
        return Ok(());
    }
    let need_a = match k {
        0 => Some(0),
        _ => (k - 1).checked_mul(ldat).and_then(|x| x.checked_add(m)),
    };
    if ldat < m || need_a.is_none_or(|x| at.len() < x) {
        return Err(EngineError::Shape(format!(
            "gemm_at: A^T holds {} values, too few for {k} rows of {m} with stride {ldat}",
            at.len()
        )));
    }
    // C and the epilogue: the same checks as `gemm`'s, with an A that trivially passes.
    check_args("gemm_at", (m, n, 0), &[], 0, c, ldc, &epi)?;
    gemm_checked(isa, pool, m, at, ldat, true, b, c, ldc, epi);
    Ok(())
}

/// The GEMM once the buffers are checked; `a_transposed` says how `a` is laid out.
#[allow(clippy::too_many_arguments)]
fn gemm_checked(
    isa: Isa,
    pool: Option<&rayon::ThreadPool>,
    m: usize,
    a: &[f32],
    lda: usize,
    a_transposed: bool,
    b: &PackedMatrix,
    c: &mut [f32],
    ldc: usize,
    epi: Epilogue<'_>,
) {
    let (n, k) = (b.n, b.k);
    let isa = isa.min(cpu::hardware().isa);
    if isa == Isa::Avx2 {
        // SAFETY: the CPU has AVX2 + FMA (capped above); arguments checked.
        unsafe { crate::gemm_avx2::gemm(pool, m, a, lda, a_transposed, b, c, ldc, epi) };
        return;
    }
    let (mr, mc) = tile_rows(isa);
    let panels = n.div_ceil(NR);
    let threads = pool.map_or(1, |p| p.current_num_threads());
    let plan = Plan::new(m, mr, mc / mr, panels, threads, m * n * k);
    let cp = SyncPtr(c.as_mut_ptr());
    run_tasks(pool, plan.tasks(), |t| {
        let ((r0, r1), (p0, p1)) = plan.split(t);
        APACK.with(|buf| {
            let mut buf = buf.borrow_mut();
            if a_transposed {
                pack_a_transposed(&mut buf, &a[r0..], lda, r1 - r0, k, mr);
            } else {
                pack_a(&mut buf, &a[r0 * lda..], lda, r1 - r0, k, mr);
            }
            for jp in p0..p1 {
                let bpanel = b.panel(jp);
                let ncols = (n - jp * NR).min(NR);
                let mut i = r0;
                while i < r1 {
                    let rows = (r1 - i).min(mr);
                    let ap = &buf[(i - r0) * k..(i - r0 + rows) * k];
                    // SAFETY: rows i..i+rows, columns jp*32..+ncols of C are
                    // in bounds (asserted above) and belong to this task only.
                    let ctile = unsafe { cp.get().add(i * ldc + jp * NR) };
                    let bias = epi.bias.map(|bb| &bb[jp * NR..jp * NR + ncols]);
                    // SAFETY: as above; `ap` and `bpanel` hold rows*k and k*32 values.
                    unsafe {
                        micro(
                            isa,
                            rows,
                            k,
                            ap,
                            bpanel,
                            ctile,
                            ldc,
                            ncols,
                            bias,
                            epi.accumulate,
                        )
                    };
                    if epi.act != Activation::None {
                        for r in 0..rows {
                            // SAFETY: same tile as written above.
                            let row = unsafe {
                                std::slice::from_raw_parts_mut(ctile.add(r * ldc), ncols)
                            };
                            activate(isa, epi.act, row);
                        }
                    }
                    i += rows;
                }
            }
        });
    });
}

/// [`pack_a`] from `A^T` (`at[p * ldat + i]` = `A[i][p]`): each k step of a micro-panel is
/// one contiguous run of `at`.
pub(crate) fn pack_a_transposed(
    buf: &mut Vec<f32>,
    at: &[f32],
    ldat: usize,
    rows: usize,
    k: usize,
    mr: usize,
) {
    buf.clear();
    buf.resize(rows * k, 0.0);
    let mut i = 0;
    while i < rows {
        let r = (rows - i).min(mr);
        let dst = &mut buf[i * k..(i + r) * k];
        for p in 0..k {
            // A plain loop: runs of at most 14 floats, where a memcpy call costs more
            // than the copy.
            let src = &at[p * ldat + i..p * ldat + i + r];
            for (d, &v) in dst[p * r..(p + 1) * r].iter_mut().zip(src) {
                *d = v;
            }
        }
        i += r;
    }
}

/// Packs `rows` rows of A into consecutive micro-panels of `mr` rows
/// (the last may be shorter), each k-major: `[p][row]`.
fn pack_a(buf: &mut Vec<f32>, a: &[f32], lda: usize, rows: usize, k: usize, mr: usize) {
    buf.clear();
    buf.resize(rows * k, 0.0);
    let mut i = 0;
    while i < rows {
        let r = (rows - i).min(mr);
        let dst = &mut buf[i * k..(i + r) * k];
        for rr in 0..r {
            let src = &a[(i + rr) * lda..(i + rr) * lda + k];
            for (p, &v) in src.iter().enumerate() {
                dst[p * r + rr] = v;
            }
        }
        i += r;
    }
}

/// Dispatches one micro-tile.
///
/// # Safety
/// `c` addresses `rows` rows (stride `ldc`) of `ncols` valid floats; `isa`
/// is supported by the CPU.
#[allow(clippy::too_many_arguments)]
unsafe fn micro(
    isa: Isa,
    rows: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    ncols: usize,
    bias: Option<&[f32]>,
    acc: bool,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if isa == Isa::Avx512 {
            macro_rules! go { ($($r:literal)*) => { match rows { $($r => x86::k512::<$r>(k, a.as_ptr(), b.as_ptr(), c, ldc, ncols, bias, acc),)* _ => unreachable!() } } }
            // SAFETY: forwarded from the caller.
            unsafe { go!(1 2 3 4 5 6 7 8 9 10 11 12 13 14) };
            return;
        }
    }
    let _ = isa;
    let mut tile = [[0.0f32; NR]; 4];
    scalar_kernel(rows, k, a, b, &mut tile);
    // SAFETY: forwarded from the caller.
    unsafe { store_tile(&tile[..rows], c, ldc, ncols, bias, acc) };
}

fn scalar_kernel(rows: usize, k: usize, a: &[f32], b: &[f32], tile: &mut [[f32; NR]; 4]) {
    for p in 0..k {
        let bp = &b[p * NR..p * NR + NR];
        for r in 0..rows {
            let av = a[p * rows + r];
            for (t, &bv) in tile[r].iter_mut().zip(bp) {
                *t += av * bv;
            }
        }
    }
}

/// Writes a computed tile: `c = tile + bias (+ c)` for the valid columns.
///
/// # Safety
/// `c` addresses `tile.len()` rows of `ncols` floats with stride `ldc`.
unsafe fn store_tile(
    tile: &[[f32; NR]],
    c: *mut f32,
    ldc: usize,
    ncols: usize,
    bias: Option<&[f32]>,
    acc: bool,
) {
    for (r, row) in tile.iter().enumerate() {
        // SAFETY: guaranteed by the caller.
        let out = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), ncols) };
        for (j, o) in out.iter_mut().enumerate() {
            let mut v = row[j];
            if let Some(b) = bias {
                v += b[j];
            }
            if acc {
                v += *o;
            }
            *o = v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::masks as x86_masks;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::NR;
    use std::arch::x86_64::*;

    #[inline(always)]
    pub(crate) fn masks(ncols: usize) -> (__mmask16, __mmask16) {
        let m0 = if ncols >= 16 {
            0xffff
        } else {
            ((1u32 << ncols) - 1) as u16
        };
        let m1 = if ncols >= 32 {
            0xffff
        } else if ncols <= 16 {
            0
        } else {
            ((1u32 << (ncols - 16)) - 1) as u16
        };
        (m0, m1)
    }

    /// MR x 32 AVX-512 micro-kernel; `a` is k-major with MR values per step.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn k512<const MR: usize>(
        k: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        ncols: usize,
        bias: Option<&[f32]>,
        acc: bool,
    ) {
        let mut c0 = [_mm512_setzero_ps(); MR];
        let mut c1 = [_mm512_setzero_ps(); MR];
        let (mut ap, mut bp) = (a, b);
        for _ in 0..k {
            // SAFETY: `b` holds k*32 aligned floats, `a` k*MR floats.
            unsafe {
                let b0 = _mm512_load_ps(bp);
                let b1 = _mm512_load_ps(bp.add(16));
                for i in 0..MR {
                    let av = _mm512_set1_ps(*ap.add(i));
                    c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
                    c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
                }
                ap = ap.add(MR);
                bp = bp.add(NR);
            }
        }
        let (m0, m1) = masks(ncols);
        let (bias0, bias1) = match bias {
            // SAFETY: masked loads touch only the `ncols` valid lanes.
            Some(bs) => unsafe {
                (
                    _mm512_maskz_loadu_ps(m0, bs.as_ptr()),
                    _mm512_maskz_loadu_ps(m1, bs.as_ptr().wrapping_add(16)),
                )
            },
            None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
        };
        for i in 0..MR {
            // SAFETY: row i of the tile is in bounds; masks limit columns.
            unsafe {
                let cp = c.add(i * ldc);
                let cp1 = cp.wrapping_add(16);
                let mut v0 = _mm512_add_ps(c0[i], bias0);
                let mut v1 = _mm512_add_ps(c1[i], bias1);
                if acc {
                    v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cp));
                    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cp1));
                }
                _mm512_mask_storeu_ps(cp, m0, v0);
                _mm512_mask_storeu_ps(cp1, m1, v1);
            }
        }
    }
}

/// Reference `C = act(A * W^T + bias) [+ C]` with plain loops, for tests.
#[allow(clippy::too_many_arguments)]
pub fn gemm_reference(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    w_nk: &[f32],
    c: &mut [f32],
    epi: Epilogue<'_>,
) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += a[i * k + p] as f64 * w_nk[j * k + p] as f64;
            }
            let mut v = s as f32 + epi.bias.map_or(0.0, |b| b[j]);
            v = match epi.act {
                Activation::None => v,
                Activation::QuickGelu => v / (1.0 + (-1.702 * v).exp()),
                Activation::Gelu => {
                    0.5 * v * (1.0 + erf64(v as f64 / std::f64::consts::SQRT_2) as f32)
                }
            };
            if epi.accumulate {
                c[i * n + j] += v;
            } else {
                c[i * n + j] = v;
            }
        }
    }
}

/// erf in f64 by its Maclaurin / continued-fraction split, accurate to
/// ~1e-12: good enough as a test oracle for f32 kernels.
pub fn erf64(x: f64) -> f64 {
    let ax = x.abs();
    let r = if ax < 3.0 {
        // Maclaurin series: erf x = 2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n+1))
        let mut term = ax;
        let mut sum = ax;
        let x2 = ax * ax;
        let mut n = 0.0;
        loop {
            n += 1.0;
            term *= -x2 / n;
            let t = term / (2.0 * n + 1.0);
            sum += t;
            if t.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // Continued fraction for erfc.
        let mut f = 0.0;
        for i in (1..60).rev() {
            f = (i as f64 / 2.0) / (ax + f);
        }
        1.0 - (-ax * ax).exp() / (std::f64::consts::PI.sqrt() * (ax + f))
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}
