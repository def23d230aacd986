//! Dynamic int8 linear layers: weights quantised once per output channel
//! (symmetric, [-127, 127]), activations per row (token) at call time.
//!
//! The AVX512-VNNI `vpdpbusd` instruction multiplies unsigned by signed
//! bytes, so activations are stored shifted by +128 as u8; the shift is
//! removed with the per-column weight sums: sum (q_a + 128) q_w =
//! sum q_a q_w + 128 sum q_w. Products accumulate exactly in i32.
//!
//! Without VNNI, AVX2 does the same u8 x s8 products with `vpmaddubsw`
//! (pairs summed into i16, saturating) and `vpmaddwd` (pairs into i32); see
//! the `quant_avx2` module. To make saturation impossible its weights are
//! quantised to [-63, 63]: 2 * 255 * 63 = 32130 < 32767. Activations keep
//! all 8 bits, since per-token activation ranges (outlier channels) are the
//! larger error source. [`int8_kernel`] says which kernel runs.

use std::cell::RefCell;

use crate::aligned::AlignedBuf;
use crate::cpu::{self, Isa};
use crate::gemm::{check_len, run_tasks, Epilogue, SyncPtr, NR};
use crate::ops::{activate, Activation};
use crate::EngineError;

/// Micro-tile rows of the int8 kernel.
const MR: usize = 14;
/// Rows per task block (at most).
const MC: usize = MR * 8;

/// The integer dot-product kernel of the int8 path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Int8Kernel {
    /// AVX512-VNNI `vpdpbusd`; weights in [-127, 127].
    Vnni,
    /// AVX2 `vpmaddubsw` + `vpmaddwd`; weights in [-63, 63].
    Avx2,
    /// Plain integer loops: exact but slower than the fp32 kernels.
    Portable,
}

impl Int8Kernel {
    /// Short lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Int8Kernel::Vnni => "vnni",
            Int8Kernel::Avx2 => "avx2",
            Int8Kernel::Portable => "portable",
        }
    }

    /// Largest weight magnitude after quantisation.
    pub fn weight_max(self) -> i32 {
        match self {
            Int8Kernel::Avx2 => 63,
            Int8Kernel::Vnni | Int8Kernel::Portable => 127,
        }
    }

    /// Whether this is a SIMD integer kernel (faster than fp32).
    pub fn is_native(self) -> bool {
        self != Int8Kernel::Portable
    }
}

/// The int8 kernel for float ISA `isa` (capped at the hardware): VNNI with
/// AVX-512 on a CPU that has it, AVX2 on any AVX2 CPU, else portable.
pub fn int8_kernel(isa: Isa) -> Int8Kernel {
    let hw = cpu::hardware();
    match isa.min(hw.isa) {
        Isa::Avx512 if hw.vnni => Int8Kernel::Vnni,
        Isa::Avx512 | Isa::Avx2 => Int8Kernel::Avx2,
        Isa::Scalar => Int8Kernel::Portable,
    }
}

/// A `Linear` weight `[n, k]` quantised per output channel and packed in
/// 32-column panels of 4-byte k-groups (the `vpdpbusd` operand layout).
#[derive(Clone)]
pub struct PackedI8 {
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) groups: usize,
    data: AlignedBuf,
    /// Per-column scales, padded to whole panels.
    pub(crate) scales: Vec<f32>,
    /// 128 * sum of each column's quantised weights (padded likewise).
    pub(crate) shift_sums: Vec<i32>,
    /// Largest quantised magnitude (see [`Int8Kernel::weight_max`]).
    wmax: i32,
}

impl std::fmt::Debug for PackedI8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedI8")
            .field("k", &self.k)
            .field("n", &self.n)
            .finish()
    }
}

impl PackedI8 {
    /// Quantises and packs a PyTorch `Linear` weight `w[n][k]` for the
    /// kernel this CPU runs ([`int8_kernel`] of [`cpu::features`]).
    pub fn from_nk(w: &[f32], n: usize, k: usize) -> Result<Self, EngineError> {
        Self::from_nk_for(w, n, k, int8_kernel(cpu::features().isa))
    }

    /// As [`PackedI8::from_nk`], with the weight range of `kernel`. Any
    /// packing runs on any kernel: one with a range too wide for AVX2 falls
    /// back to the (exact) portable loops there.
    pub fn from_nk_for(
        w: &[f32],
        n: usize,
        k: usize,
        kernel: Int8Kernel,
    ) -> Result<Self, EngineError> {
        let wmax = kernel.weight_max();
        let lv = wmax as f32;
        check_len("weight [n, k]", w.len(), n * k)?;
        let panels = n.div_ceil(NR);
        let groups = k.div_ceil(4);
        let mut data = AlignedBuf::zeroed(panels * groups * NR * 4);
        let mut scales = vec![0.0f32; panels * NR];
        let mut shift_sums = vec![0i32; panels * NR];
        let d = data.i8s_mut();
        for j in 0..n {
            let row = &w[j * k..(j + 1) * k];
            let amax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let s = if amax > 0.0 { amax / lv } else { 1.0 };
            scales[j] = s;
            let (jp, jj) = (j / NR, j % NR);
            let mut sum = 0i32;
            for (p, &v) in row.iter().enumerate() {
                let q = (v / s).round_ties_even().clamp(-lv, lv) as i8;
                sum += q as i32;
                d[(jp * groups + p / 4) * NR * 4 + jj * 4 + p % 4] = q;
            }
            shift_sums[j] = 128 * sum;
        }
        Ok(Self {
            n,
            k,
            groups,
            data,
            scales,
            shift_sums,
            wmax,
        })
    }

    /// Largest quantised weight magnitude (127, or 63 for AVX2).
    pub fn weight_max(&self) -> i32 {
        self.wmax
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
        self.data.capacity_bytes() + self.scales.len() * 8
    }

    pub(crate) fn panel(&self, j: usize) -> &[i8] {
        let len = self.groups * NR * 4;
        &self.data.i8s()[j * len..(j + 1) * len]
    }
}

thread_local! {
    static QPACK: RefCell<(Vec<u32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Quantises `rows` rows of A (stride `lda`, width `k`) and packs them into
/// micro-panels of `mr` rows: `[group][row]` u32 words of 4 shifted bytes.
pub(crate) fn quantize_pack(
    words: &mut Vec<u32>,
    scales: &mut Vec<f32>,
    a: &[f32],
    lda: usize,
    rows: usize,
    k: usize,
    mr: usize,
) {
    let groups = k.div_ceil(4);
    words.clear();
    words.resize(rows * groups, 0);
    scales.clear();
    let mut q = vec![128u8; groups * 4];
    let isa = cpu::features().isa;
    let mut i = 0;
    while i < rows {
        let r = (rows - i).min(mr);
        for rr in 0..r {
            let src = &a[(i + rr) * lda..(i + rr) * lda + k];
            scales.push(quantize_row(isa, src, &mut q[..k]));
            let dst = &mut words[i * groups..(i + r) * groups];
            for (g, quad) in q.chunks_exact(4).enumerate() {
                dst[g * r + rr] = u32::from_le_bytes([quad[0], quad[1], quad[2], quad[3]]);
            }
        }
        i += r;
    }
}

/// Quantises one row to u8 (int8 + 128), returning its scale.
#[inline(always)]
fn quantize_row_body(src: &[f32], dst: &mut [u8]) -> f32 {
    let mut m = [0.0f32; 16];
    let chunks = src.chunks_exact(16);
    let mut amax = chunks
        .remainder()
        .iter()
        .fold(0.0f32, |a, v| a.max(v.abs()));
    for c in chunks {
        for j in 0..16 {
            m[j] = m[j].max(c[j].abs());
        }
    }
    for v in m {
        amax = amax.max(v);
    }
    let s = if amax > 0.0 { amax / 127.0 } else { 1.0 };
    let inv = 1.0 / s;
    for (d, &v) in dst.iter_mut().zip(src) {
        // |v * inv| <= 127 by construction; the clamp guards rounding.
        *d = ((v * inv).round_ties_even().clamp(-127.0, 127.0) + 128.0) as u8;
    }
    s
}

crate::ops::multiversion! {
    fn quantize_row(src: &[f32], dst: &mut [u8]) -> f32 => quantize_row_body
}

/// `C (=|+=) act(dequant(quant(A) * W^T) + bias)`, the int8 counterpart of
/// [`crate::gemm::gemm`]. Runs the kernel [`int8_kernel`] picks for `isa`
/// (portable loops for a VNNI-range packing on an AVX2-only path).
///
/// A buffer smaller than its stated shape, or accumulate together with an
/// activation, is an error.
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8(
    isa: Isa,
    pool: Option<&rayon::ThreadPool>,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedI8,
    c: &mut [f32],
    ldc: usize,
    epi: Epilogue<'_>,
) -> Result<(), EngineError> {
    let (n, k) = (b.n, b.k);
    if m == 0 || n == 0 {
        return Ok(());
    }
    crate::gemm::check_args("gemm_i8", (m, n, k), a, lda, c, ldc, &epi)?;
    let kernel = match int8_kernel(isa) {
        Int8Kernel::Avx2 if b.wmax > Int8Kernel::Avx2.weight_max() => Int8Kernel::Portable,
        kn => kn,
    };
    if kernel == Int8Kernel::Avx2 {
        // SAFETY: `int8_kernel` returns Avx2 only on an AVX2 CPU; the
        // weights fit its range; the arguments were checked above.
        unsafe { crate::quant_avx2::gemm_i8(pool, m, a, lda, b, c, ldc, epi) };
        return Ok(());
    }
    let vnni = kernel == Int8Kernel::Vnni;
    let fisa = isa.min(cpu::hardware().isa);
    let panels = n.div_ceil(NR);
    let threads = pool.map_or(1, |p| p.current_num_threads());
    let plan = crate::gemm::Plan::new(m, MR, MC / MR, panels, threads, m * n * k / 4);
    let cp = SyncPtr(c.as_mut_ptr());
    let groups = b.groups;
    run_tasks(pool, plan.tasks(), |t| {
        let ((r0, r1), (p0, p1)) = plan.split(t);
        QPACK.with(|buf| {
            let mut buf = buf.borrow_mut();
            let (words, ascales) = &mut *buf;
            quantize_pack(words, ascales, &a[r0 * lda..], lda, r1 - r0, k, MR);
            for jp in p0..p1 {
                let bpanel = b.panel(jp);
                let ncols = (n - jp * NR).min(NR);
                let ws = &b.scales[jp * NR..jp * NR + NR];
                let cs = &b.shift_sums[jp * NR..jp * NR + NR];
                let bias = epi.bias.map(|bb| &bb[jp * NR..jp * NR + ncols]);
                let mut i = r0;
                while i < r1 {
                    let rows = (r1 - i).min(MR);
                    let ap = &words[(i - r0) * groups..(i - r0 + rows) * groups];
                    let asc = &ascales[i - r0..i - r0 + rows];
                    // SAFETY: this tile of C is in bounds and owned by this task.
                    let ctile = unsafe { cp.get().add(i * ldc + jp * NR) };
                    let tile = Tile {
                        rows,
                        groups,
                        a: ap,
                        b: bpanel,
                        ascale: asc,
                        wscale: ws,
                        shift: cs,
                        bias,
                        ncols,
                    };
                    // SAFETY: as above; `vnni` was checked at run time.
                    unsafe { micro_i8(vnni, &tile, ctile, ldc, epi.accumulate) };
                    if epi.act != Activation::None {
                        for r in 0..rows {
                            // SAFETY: the tile just written.
                            let row = unsafe {
                                std::slice::from_raw_parts_mut(ctile.add(r * ldc), ncols)
                            };
                            activate(fisa, epi.act, row);
                        }
                    }
                    i += rows;
                }
            }
        });
    });
    Ok(())
}

struct Tile<'a> {
    rows: usize,
    groups: usize,
    a: &'a [u32],
    b: &'a [i8],
    ascale: &'a [f32],
    wscale: &'a [f32],
    shift: &'a [i32],
    bias: Option<&'a [f32]>,
    ncols: usize,
}

/// # Safety
/// `c` addresses `t.rows` rows of `t.ncols` floats (stride `ldc`); `vnni`
/// only if the CPU has AVX512-VNNI.
unsafe fn micro_i8(vnni: bool, t: &Tile<'_>, c: *mut f32, ldc: usize, acc: bool) {
    #[cfg(target_arch = "x86_64")]
    if vnni {
        macro_rules! go { ($($r:literal)*) => { match t.rows { $($r => vnni_kernel::<$r>(t, c, ldc, acc),)* _ => unreachable!() } } }
        // SAFETY: forwarded from the caller.
        unsafe { go!(1 2 3 4 5 6 7 8 9 10 11 12 13 14) };
        return;
    }
    let _ = vnni;
    let mut sums = [[0i32; NR]; MR];
    portable_dot(cpu::features().isa, t, &mut sums);
    for (r, row) in sums.iter().take(t.rows).enumerate() {
        // SAFETY: guaranteed by the caller.
        let out = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), t.ncols) };
        for (j, o) in out.iter_mut().enumerate() {
            let mut v = (row[j] - t.shift[j]) as f32 * (t.wscale[j] * t.ascale[r]);
            if let Some(b) = t.bias {
                v += b[j];
            }
            if acc {
                v += *o;
            }
            *o = v;
        }
    }
}

/// Integer tile product without VNNI; compiled per ISA so LLVM can
/// vectorise it (i16 multiplies), though it stays well below VNNI speed.
#[inline(always)]
fn portable_dot_body(t: &Tile<'_>, sums: &mut [[i32; NR]; MR]) {
    for g in 0..t.groups {
        let bg = &t.b[g * NR * 4..(g + 1) * NR * 4];
        for (r, row) in sums.iter_mut().take(t.rows).enumerate() {
            let av = t.a[g * t.rows + r].to_le_bytes();
            let (a0, a1, a2, a3) = (av[0] as i32, av[1] as i32, av[2] as i32, av[3] as i32);
            for (s, b) in row.iter_mut().zip(bg.chunks_exact(4)) {
                *s += a0 * b[0] as i32 + a1 * b[1] as i32 + a2 * b[2] as i32 + a3 * b[3] as i32;
            }
        }
    }
}

crate::ops::multiversion! {
    fn portable_dot(t: &Tile<'_>, sums: &mut [[i32; NR]; MR]) => portable_dot_body
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn vnni_kernel<const R: usize>(t: &Tile<'_>, c: *mut f32, ldc: usize, acc: bool) {
    use std::arch::x86_64::*;
    let mut c0 = [_mm512_setzero_si512(); R];
    let mut c1 = [_mm512_setzero_si512(); R];
    let (mut ap, mut bp) = (t.a.as_ptr(), t.b.as_ptr());
    for _ in 0..t.groups {
        // SAFETY: the panel holds groups*128 aligned bytes, `a` groups*R words.
        unsafe {
            let b0 = _mm512_load_si512(bp.cast());
            let b1 = _mm512_load_si512(bp.add(64).cast());
            for i in 0..R {
                let av = _mm512_set1_epi32(*ap.add(i) as i32);
                c0[i] = _mm512_dpbusd_epi32(c0[i], av, b0);
                c1[i] = _mm512_dpbusd_epi32(c1[i], av, b1);
            }
            ap = ap.add(R);
            bp = bp.add(NR * 4);
        }
    }
    let (m0, m1) = crate::gemm::x86_masks(t.ncols);
    // SAFETY: scale and shift arrays are padded to 32 entries.
    let (ws0, ws1, sh0, sh1) = unsafe {
        (
            _mm512_loadu_ps(t.wscale.as_ptr()),
            _mm512_loadu_ps(t.wscale.as_ptr().add(16)),
            _mm512_loadu_si512(t.shift.as_ptr().cast()),
            _mm512_loadu_si512(t.shift.as_ptr().add(16).cast()),
        )
    };
    let (bias0, bias1) = match t.bias {
        // SAFETY: masked loads touch only valid lanes.
        Some(bs) => unsafe {
            (
                _mm512_maskz_loadu_ps(m0, bs.as_ptr()),
                _mm512_maskz_loadu_ps(m1, bs.as_ptr().wrapping_add(16)),
            )
        },
        None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
    };
    for i in 0..R {
        let s = _mm512_set1_ps(t.ascale[i]);
        let mut v0 = _mm512_mul_ps(
            _mm512_cvtepi32_ps(_mm512_sub_epi32(c0[i], sh0)),
            _mm512_mul_ps(ws0, s),
        );
        let mut v1 = _mm512_mul_ps(
            _mm512_cvtepi32_ps(_mm512_sub_epi32(c1[i], sh1)),
            _mm512_mul_ps(ws1, s),
        );
        v0 = _mm512_add_ps(v0, bias0);
        v1 = _mm512_add_ps(v1, bias1);
        // SAFETY: row i of the tile; masks limit the columns.
        unsafe {
            let cp = c.add(i * ldc);
            let cp1 = cp.wrapping_add(16);
            if acc {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cp));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cp1));
            }
            _mm512_mask_storeu_ps(cp, m0, v0);
            _mm512_mask_storeu_ps(cp1, m1, v1);
        }
    }
}
