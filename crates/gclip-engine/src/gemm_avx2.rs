//! AVX2 + FMA fp32 GEMM tuned for 16 ymm registers.
//!
//! Micro-kernel: a 6 x 16 tile in 12 accumulators, plus two B vectors and
//! one broadcast A value (15 registers, no spills). B stays in the shared
//! 32-column panels ([`crate::gemm::PackedMatrix`]); the kernel reads one
//! 16-column half, i.e. one aligned 64-byte line per k step.
//!
//! Blocking (GotoBLAS order) from the detected caches ([`crate::cache`]):
//! K is cut into KC steps so a KC x 16 strip of B (64 KC bytes)
//! fills about half of L1d and is reused by every 6-row micro-panel of the
//! task; the task's MC x KC block of A fills about half of L2 and is reused
//! across all its B panels. Partial K blocks accumulate into C; bias and the
//! residual go in with the first block, the activation after the last,
//! while the tile is still in L1.

use std::cell::RefCell;
use std::sync::OnceLock;

use crate::cpu::Isa;
use crate::gemm::{run_tasks, Epilogue, PackedMatrix, Plan, SyncPtr, NR};
use crate::ops::{activate, Activation};

/// Micro-tile rows.
pub(crate) const MR: usize = 6;
/// Micro-tile columns (half a packed panel).
const NH: usize = 16;

/// K and M block sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    /// K step: a `kc x 16` B strip is about half of L1d.
    pub kc: usize,
    /// Rows per task block: `mc x kc` of A is about half of L2.
    pub mc: usize,
}

/// Derives the blocking from cache sizes in bytes.
pub fn blocking_for(l1d: usize, l2: usize) -> Blocking {
    let kc = (l1d / 2 / (NH * 4)).clamp(64, 1024) / 8 * 8;
    let mc = (l2 / 2 / (kc * 4)).clamp(MR * 4, MR * 64) / MR * MR;
    Blocking { kc, mc }
}

/// The blocking for this CPU.
pub fn blocking() -> Blocking {
    static B: OnceLock<Blocking> = OnceLock::new();
    *B.get_or_init(|| {
        let c = crate::cache::sizes();
        blocking_for(c.l1d, c.l2)
    })
}

thread_local! {
    static APACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `C (=|+=) act(A * B + bias)` on AVX2; same contract as
/// [`crate::gemm::gemm`], whose checks have already run.
///
/// # Safety
/// The CPU supports AVX2 and FMA; the buffers passed `check_args`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm(
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
    let (n, k) = (b.n(), b.k());
    let bl = blocking();
    let panels = n.div_ceil(NR);
    let threads = pool.map_or(1, |p| p.current_num_threads());
    let plan = Plan::new(m, MR, bl.mc / MR, panels, threads, m * n * k);
    let cp = SyncPtr(c.as_mut_ptr());
    run_tasks(pool, plan.tasks(), |t| {
        let ((r0, r1), (p0, p1)) = plan.split(t);
        APACK.with(|buf| {
            let mut buf = buf.borrow_mut();
            let mut k0 = 0;
            while k0 < k {
                let kb = (k - k0).min(bl.kc);
                let (first, last) = (k0 == 0, k0 + kb == k);
                if a_transposed {
                    crate::gemm::pack_a_transposed(
                        &mut buf,
                        &a[k0 * lda + r0..],
                        lda,
                        r1 - r0,
                        kb,
                        MR,
                    );
                } else {
                    pack_a(&mut buf, &a[r0 * lda + k0..], lda, r1 - r0, kb);
                }
                for jp in p0..p1 {
                    let panel = b.panel(jp);
                    for half in 0..2 {
                        let col0 = jp * NR + half * NH;
                        if col0 >= n {
                            break;
                        }
                        let ncols = (n - col0).min(NH);
                        let strip = &panel[k0 * NR + half * NH..];
                        let bias = if first {
                            epi.bias.map(|bb| &bb[col0..col0 + ncols])
                        } else {
                            None
                        };
                        let acc = !first || epi.accumulate;
                        let mut i = r0;
                        while i < r1 {
                            let rows = (r1 - i).min(MR);
                            let ap = &buf[(i - r0) * kb..(i - r0 + rows) * kb];
                            // SAFETY: rows i..i+rows, columns col0..+ncols
                            // are in bounds and belong to this task only.
                            let ctile = unsafe { cp.get().add(i * ldc + col0) };
                            // SAFETY: `ap` holds rows*kb values, `strip`
                            // kb rows of 32; AVX2 is guaranteed by the caller.
                            unsafe { micro(rows, kb, ap, strip, ctile, ldc, ncols, bias, acc) };
                            if last && epi.act != Activation::None {
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
                k0 += kb;
            }
        });
    });
}

/// Packs `rows` rows x `kb` columns of A into micro-panels of [`MR`] rows
/// (the last may be shorter), each k-major.
fn pack_a(buf: &mut Vec<f32>, a: &[f32], lda: usize, rows: usize, kb: usize) {
    buf.clear();
    buf.resize(rows * kb, 0.0);
    let mut i = 0;
    while i < rows {
        let r = (rows - i).min(MR);
        let dst = &mut buf[i * kb..(i + r) * kb];
        for rr in 0..r {
            let src = &a[(i + rr) * lda..(i + rr) * lda + kb];
            for (p, &v) in src.iter().enumerate() {
                dst[p * r + rr] = v;
            }
        }
        i += r;
    }
}

/// # Safety
/// As [`kernel`].
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn micro(
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
    debug_assert!(b.len() >= (k.max(1) - 1) * NR + NH);
    macro_rules! go { ($($r:literal)*) => { match rows { $($r => kernel::<$r>(k, a.as_ptr(), b.as_ptr(), c, ldc, ncols, bias, acc),)* _ => unreachable!() } } }
    // SAFETY: forwarded from the caller.
    unsafe { go!(1 2 3 4 5 6) }
}

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Lane masks for the first `ncols` of 16 columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn masks16(ncols: usize) -> (__m256i, __m256i) {
    let n = _mm256_set1_epi32(ncols as i32);
    let lo = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let hi = _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15);
    (_mm256_cmpgt_epi32(n, lo), _mm256_cmpgt_epi32(n, hi))
}

/// R x 16 tile: `a` is k-major with R values per step, `b` has row stride
/// [`NR`] (a half of a packed panel, 32-byte aligned).
///
/// # Safety
/// AVX2 + FMA present; `c` addresses R rows (stride `ldc`) of `ncols <= 16`
/// floats; `bias` holds `ncols` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<const R: usize>(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    ncols: usize,
    bias: Option<&[f32]>,
    acc: bool,
) {
    let mut c0 = [_mm256_setzero_ps(); R];
    let mut c1 = [_mm256_setzero_ps(); R];
    let (mut ap, mut bp) = (a, b);
    for _ in 0..k {
        // SAFETY: `b` holds k rows of NR aligned floats, `a` k*R floats.
        unsafe {
            let b0 = _mm256_load_ps(bp);
            let b1 = _mm256_load_ps(bp.add(8));
            for i in 0..R {
                let av = _mm256_broadcast_ss(&*ap.add(i));
                c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
                c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
            }
            ap = ap.add(R);
            bp = bp.add(NR);
        }
    }
    if ncols == NH {
        let (bias0, bias1) = match bias {
            // SAFETY: 16 bias values.
            Some(bs) => unsafe {
                (
                    _mm256_loadu_ps(bs.as_ptr()),
                    _mm256_loadu_ps(bs.as_ptr().add(8)),
                )
            },
            None => (_mm256_setzero_ps(), _mm256_setzero_ps()),
        };
        for i in 0..R {
            // SAFETY: row i of the tile, 16 valid columns.
            unsafe {
                let cp = c.add(i * ldc);
                let mut v0 = _mm256_add_ps(c0[i], bias0);
                let mut v1 = _mm256_add_ps(c1[i], bias1);
                if acc {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(cp));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(cp.add(8)));
                }
                _mm256_storeu_ps(cp, v0);
                _mm256_storeu_ps(cp.add(8), v1);
            }
        }
        return;
    }
    let (m0, m1) = masks16(ncols);
    let (bias0, bias1) = match bias {
        // SAFETY: masked loads touch only the `ncols` valid values.
        Some(bs) => unsafe {
            (
                _mm256_maskload_ps(bs.as_ptr(), m0),
                _mm256_maskload_ps(bs.as_ptr().wrapping_add(8), m1),
            )
        },
        None => (_mm256_setzero_ps(), _mm256_setzero_ps()),
    };
    for i in 0..R {
        // SAFETY: row i of the tile; the masks limit the columns.
        unsafe {
            let cp = c.add(i * ldc);
            let cp1 = cp.wrapping_add(8);
            let mut v0 = _mm256_add_ps(c0[i], bias0);
            let mut v1 = _mm256_add_ps(c1[i], bias1);
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
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<const R: usize>(
    _: usize,
    _: *const f32,
    _: *const f32,
    _: *mut f32,
    _: usize,
    _: usize,
    _: Option<&[f32]>,
    _: bool,
) {
    unreachable!("AVX2 kernel on a non-x86 target")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_fits_the_caches() {
        // Zen 2: 32 KiB L1d, 512 KiB L2.
        let z2 = blocking_for(32 << 10, 512 << 10);
        assert_eq!(z2.kc, 256);
        assert!(z2.kc * NH * 4 <= (32 << 10) / 2);
        assert!(
            z2.mc * z2.kc * 4 <= (512 << 10) / 2 && z2.mc.is_multiple_of(MR),
            "{z2:?}"
        );
        // A tiny L1 still gets a usable K step; a huge L2 a bounded M block.
        let odd = blocking_for(8 << 10, 64 << 20);
        assert_eq!(odd.kc, 64);
        assert_eq!(odd.mc, MR * 64);
    }
}
