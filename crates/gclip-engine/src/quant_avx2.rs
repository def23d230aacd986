//! The int8 GEMM on AVX2 (no VNNI): u8 x s8 products by `vpmaddubsw`
//! (adjacent pairs summed into saturating i16) and `vpmaddwd` against ones
//! (i16 pairs into i32), then an i32 add: one 4-deep dot product per lane,
//! like VNNI's `vpdpbusd` in three instructions.
//!
//! Activations are u8 (int8 + 128, as for VNNI) and weights are packed in
//! [-63, 63] ([`crate::quant::Int8Kernel::Avx2`]), so a pair sum is at most
//! 2 * 255 * 63 = 32130 and the i16 stage never saturates: the result is
//! the exact integer dot product. Tile: 4 rows x 16 columns (half a packed
//! panel): 8 accumulators, 2 weight vectors, the ones vector, a broadcast and
//! a temporary fit the 16 ymm registers.

use std::cell::RefCell;

use crate::cpu::Isa;
use crate::gemm::{run_tasks, Epilogue, Plan, SyncPtr, NR};
use crate::ops::{activate, Activation};
use crate::quant::{quantize_pack, PackedI8};

/// Micro-tile rows.
const MR: usize = 4;
/// Micro-tile columns.
const NH: usize = 16;
/// Rows per task block (at most): 128 rows of a K = 3072 activation block
/// are 384 KiB of u8, within L2.
const MC: usize = MR * 32;

thread_local! {
    static QPACK: RefCell<(Vec<u32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `C (=|+=) act(dequant(quant(A) * W^T) + bias)` on AVX2.
///
/// # Safety
/// The CPU supports AVX2; `b.weight_max() <= 63`; the buffers passed
/// `check_args`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_i8(
    pool: Option<&rayon::ThreadPool>,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedI8,
    c: &mut [f32],
    ldc: usize,
    epi: Epilogue<'_>,
) {
    let (n, k, groups) = (b.n, b.k, b.groups);
    let panels = n.div_ceil(NR);
    let threads = pool.map_or(1, |p| p.current_num_threads());
    let plan = Plan::new(m, MR, MC / MR, panels, threads, m * n * k / 4);
    let cp = SyncPtr(c.as_mut_ptr());
    run_tasks(pool, plan.tasks(), |t| {
        let ((r0, r1), (p0, p1)) = plan.split(t);
        QPACK.with(|buf| {
            let mut buf = buf.borrow_mut();
            let (words, ascales) = &mut *buf;
            quantize_pack(words, ascales, &a[r0 * lda..], lda, r1 - r0, k, MR);
            for jp in p0..p1 {
                let panel = b.panel(jp);
                for half in 0..2 {
                    let col0 = jp * NR + half * NH;
                    if col0 >= n {
                        break;
                    }
                    let ncols = (n - col0).min(NH);
                    let cols = Cols {
                        b: &panel[half * NH * 4..],
                        wscale: &b.scales[col0..col0 + NH],
                        shift: &b.shift_sums[col0..col0 + NH],
                        bias: epi.bias.map(|bb| &bb[col0..col0 + ncols]),
                        ncols,
                    };
                    let mut i = r0;
                    while i < r1 {
                        let rows = (r1 - i).min(MR);
                        let ap = &words[(i - r0) * groups..(i - r0 + rows) * groups];
                        let asc = &ascales[i - r0..i - r0 + rows];
                        // SAFETY: this tile of C is in bounds and owned by this task.
                        let ctile = unsafe { cp.get().add(i * ldc + col0) };
                        // SAFETY: AVX2 guaranteed by the caller; `ap` holds
                        // groups*rows words, the panel groups*128 bytes.
                        unsafe { micro(rows, groups, ap, asc, &cols, ctile, ldc, epi.accumulate) };
                        if epi.act != Activation::None {
                            for r in 0..rows {
                                // SAFETY: the tile just written.
                                let row = unsafe {
                                    std::slice::from_raw_parts_mut(ctile.add(r * ldc), ncols)
                                };
                                activate(Isa::Avx2, epi.act, row);
                            }
                        }
                        i += rows;
                    }
                }
            }
        });
    });
}

/// The 16 columns a micro-tile covers.
struct Cols<'a> {
    /// Half panel: 64 bytes per k-group, group stride 128 bytes.
    b: &'a [i8],
    /// 16 weight scales and shift sums (panels are padded to 32).
    wscale: &'a [f32],
    shift: &'a [i32],
    bias: Option<&'a [f32]>,
    ncols: usize,
}

/// # Safety
/// As [`kernel`].
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn micro(
    rows: usize,
    groups: usize,
    a: &[u32],
    ascale: &[f32],
    cols: &Cols<'_>,
    c: *mut f32,
    ldc: usize,
    acc: bool,
) {
    macro_rules! go { ($($r:literal)*) => { match rows { $($r => kernel::<$r>(groups, a.as_ptr(), ascale, cols, c, ldc, acc),)* _ => unreachable!() } } }
    // SAFETY: forwarded from the caller.
    unsafe { go!(1 2 3 4) }
}

/// R x 16 int8 tile with the dequantising epilogue.
///
/// # Safety
/// AVX2 present; `a` holds `groups * R` words; `cols.b` holds `groups`
/// 128-byte groups (32-byte aligned); `c` addresses R rows (stride `ldc`)
/// of `cols.ncols` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel<const R: usize>(
    groups: usize,
    a: *const u32,
    ascale: &[f32],
    cols: &Cols<'_>,
    c: *mut f32,
    ldc: usize,
    acc: bool,
) {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi16(1);
    let mut c0 = [_mm256_setzero_si256(); R];
    let mut c1 = [_mm256_setzero_si256(); R];
    let (mut ap, mut bp) = (a, cols.b.as_ptr());
    for _ in 0..groups {
        // SAFETY: bounds as documented; the panel is 64-byte aligned and a
        // half starts 64 bytes in.
        unsafe {
            let b0 = _mm256_load_si256(bp.cast());
            let b1 = _mm256_load_si256(bp.add(32).cast());
            for i in 0..R {
                let av = _mm256_set1_epi32(*ap.add(i) as i32);
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones);
                c0[i] = _mm256_add_epi32(c0[i], p0);
                c1[i] = _mm256_add_epi32(c1[i], p1);
            }
            ap = ap.add(R);
            bp = bp.add(NR * 4);
        }
    }
    let (m0, m1) = crate::gemm_avx2::masks16(cols.ncols);
    // SAFETY: scale and shift slices hold 16 values (padded panels).
    let (ws0, ws1, sh0, sh1) = unsafe {
        (
            _mm256_loadu_ps(cols.wscale.as_ptr()),
            _mm256_loadu_ps(cols.wscale.as_ptr().add(8)),
            _mm256_loadu_si256(cols.shift.as_ptr().cast()),
            _mm256_loadu_si256(cols.shift.as_ptr().add(8).cast()),
        )
    };
    let (bias0, bias1) = match cols.bias {
        // SAFETY: masked loads touch only the valid columns.
        Some(bs) => unsafe {
            (
                _mm256_maskload_ps(bs.as_ptr(), m0),
                _mm256_maskload_ps(bs.as_ptr().wrapping_add(8), m1),
            )
        },
        None => (_mm256_setzero_ps(), _mm256_setzero_ps()),
    };
    for i in 0..R {
        let s = _mm256_set1_ps(ascale[i]);
        let v0 = _mm256_cvtepi32_ps(_mm256_sub_epi32(c0[i], sh0));
        let v1 = _mm256_cvtepi32_ps(_mm256_sub_epi32(c1[i], sh1));
        let mut v0 = _mm256_fmadd_ps(v0, _mm256_mul_ps(ws0, s), bias0);
        let mut v1 = _mm256_fmadd_ps(v1, _mm256_mul_ps(ws1, s), bias1);
        // SAFETY: row i of the tile; the masks limit the columns.
        unsafe {
            let cp = c.add(i * ldc);
            let cp1 = cp.wrapping_add(8);
            if acc {
                v0 = _mm256_add_ps(v0, _mm256_maskload_ps(cp, m0));
                v1 = _mm256_add_ps(v1, _mm256_maskload_ps(cp1, m1));
            }
            _mm256_maskstore_ps(cp, m0, v0);
            _mm256_maskstore_ps(cp1, m1, v1);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel<const R: usize>(
    _: usize,
    _: *const u32,
    _: &[f32],
    _: &Cols<'_>,
    _: *mut f32,
    _: usize,
    _: bool,
) {
    unreachable!("AVX2 kernel on a non-x86 target")
}
