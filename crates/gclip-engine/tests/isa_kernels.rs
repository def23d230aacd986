//! The AVX2-tuned fp32 GEMM, the AVX2 int8 GEMM, attention on GEMMs and
//! the vectorised exp, against f64 / exact integer references on every ISA
//! this CPU can run.

use gclip_engine::cpu::{available_isas, hardware, Isa};
use gclip_engine::exp::{exp_in_place, softmax_scaled};
use gclip_engine::gemm::{gemm, gemm_reference, Epilogue, PackedMatrix};
use gclip_engine::gemm_avx2::blocking;
use gclip_engine::ops::{attention, attention_at, attention_at_loops, attention_loops};
use gclip_engine::ops::{Activation, AttnShape};
use gclip_engine::quant::{gemm_i8, int8_kernel, Int8Kernel, PackedI8};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
    /// Integers in [-max, max].
    fn ints(&mut self, n: usize, max: i32) -> Vec<f32> {
        (0..n)
            .map(|_| ((self.next() * 0.5 + 0.5) * (2 * max + 1) as f32).floor() - max as f32)
            .map(|v| v.clamp(-max as f32, max as f32))
            .collect()
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
}

#[test]
fn gemm_edge_tiles_and_k_blocks_match_f64() {
    let pool = pool();
    let bl = blocking();
    let mut rng = Rng(0xfeed);
    // Edge tiles (M, N, K not multiples of 6 / 14, 16 / 32, 8), K across
    // several KC blocks with a short last one, M across several MC blocks.
    let shapes = [
        (1, 1, 1),
        (5, 15, 3),
        (7, 17, 9),
        (13, 47, bl.kc + 1),
        (bl.mc + 7, 40, 2 * bl.kc + 3),
        (61, 100, 3 * bl.kc - 5),
    ];
    for &(m, n, k) in &shapes {
        let a = rng.vec(m * k);
        let w = rng.vec(n * k);
        let bias = rng.vec(n);
        let packed = PackedMatrix::from_nk(&w, n, k).unwrap();
        for (act, accumulate, with_bias) in [
            (Activation::None, false, false),
            (Activation::None, true, true),
            (Activation::QuickGelu, false, true),
            (Activation::Gelu, false, true),
        ] {
            let epi = Epilogue {
                bias: with_bias.then_some(&bias[..]),
                act,
                accumulate,
            };
            let init = rng.vec(m * n);
            let mut want = init.clone();
            gemm_reference(m, n, k, &a, &w, &mut want, epi);
            for isa in available_isas() {
                for p in [None, Some(&pool)] {
                    let mut got = init.clone();
                    gemm(isa, p, m, &a, k, &packed, &mut got, n, epi).unwrap();
                    let d = max_diff(&got, &want);
                    // f32 accumulation error grows like sqrt(k) (|terms| < 1).
                    let tol = 4e-7 * (k as f32).sqrt() * 4.0;
                    assert!(
                        d < tol,
                        "{isa:?} m{m} n{n} k{k} {act:?} acc{accumulate}: max diff {d} (tol {tol})"
                    );
                }
            }
        }
    }
}

#[test]
fn gemm_with_row_strides_writes_only_its_tile() {
    // lda > k and ldc > n, as the attention heads use them.
    let mut rng = Rng(77);
    let (m, n, k, lda, ldc) = (9, 21, 19, 40, 33);
    let a = rng.vec(m * lda);
    let w = rng.vec(n * k);
    let packed = PackedMatrix::from_nk(&w, n, k).unwrap();
    let dense: Vec<f32> = (0..m)
        .flat_map(|i| a[i * lda..i * lda + k].to_vec())
        .collect();
    let mut want = vec![0.0; m * n];
    gemm_reference(m, n, k, &dense, &w, &mut want, Epilogue::default());
    for isa in available_isas() {
        let mut c = vec![7.0f32; m * ldc];
        gemm(
            isa,
            None,
            m,
            &a,
            lda,
            &packed,
            &mut c,
            ldc,
            Epilogue::default(),
        )
        .unwrap();
        for i in 0..m {
            let d = max_diff(&c[i * ldc..i * ldc + n], &want[i * n..(i + 1) * n]);
            assert!(d < 1e-5, "{isa:?} row {i}: {d}");
            assert!(
                c[i * ldc + n..(i + 1) * ldc].iter().all(|&v| v == 7.0),
                "{isa:?} row {i}: wrote past column {n}"
            );
        }
    }
}

/// Exact `A * W^T` of integer-valued matrices, in i64.
fn int_product(m: usize, n: usize, k: usize, a: &[f32], w: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: i64 = (0..k)
                .map(|p| a[i * k + p] as i64 * w[j * k + p] as i64)
                .sum();
            out[i * n + j] = s as f32;
        }
    }
    out
}

/// Integer-valued inputs whose rows reach the quantisation limit exactly
/// (activations 127, weights `wmax`) have unit scales, so the int8 GEMM must
/// reproduce the integer product exactly: any i16 saturation would show.
fn check_exact(m: usize, n: usize, k: usize, a: &[f32], w: &[f32], kernel: Int8Kernel) {
    let pool = pool();
    let q = PackedI8::from_nk_for(w, n, k, kernel).unwrap();
    let want = int_product(m, n, k, a, w);
    for isa in available_isas() {
        for p in [None, Some(&pool)] {
            let mut got = vec![f32::NAN; m * n];
            gemm_i8(isa, p, m, a, k, &q, &mut got, n, Epilogue::default()).unwrap();
            assert_eq!(
                max_diff(&got, &want),
                0.0,
                "{isa:?} ({}) packing {kernel:?} m{m} n{n} k{k}",
                int8_kernel(isa).name()
            );
        }
    }
}

#[test]
fn int8_saturation_worst_cases_are_exact() {
    // K <= 2048 keeps 2048 * 127 * 63 below 2^24, exact in f32.
    for &(m, n, k) in &[(3, 17, 5), (9, 40, 771), (5, 33, 2048)] {
        for wsign in [1.0f32, -1.0] {
            // All-max: u8 255 against +-63 in every pair.
            let a = vec![127.0f32; m * k];
            let w = vec![63.0 * wsign; n * k];
            check_exact(m, n, k, &a, &w, Int8Kernel::Avx2);
            // Negative activations (u8 1) against the opposite sign.
            let a = vec![-127.0f32; m * k];
            check_exact(m, n, k, &a, &w, Int8Kernel::Avx2);
            // VNNI's full range (+-127 weights): AVX2 must not run it
            // through the saturating path.
            let w = vec![127.0 * wsign; n * k];
            check_exact(m, n, k, &vec![127.0f32; m * k], &w, Int8Kernel::Vnni);
        }
        // Alternating extremes within each pair.
        let a: Vec<f32> = (0..m * k)
            .map(|i| if i % 2 == 0 { 127.0 } else { -127.0 })
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| if (i / 2) % 2 == 0 { 63.0 } else { -63.0 })
            .collect();
        check_exact(m, n, k, &a, &w, Int8Kernel::Avx2);
    }
}

#[test]
fn int8_random_integers_are_exact() {
    let mut rng = Rng(31);
    for &(m, n, k) in &[(1, 1, 1), (7, 31, 13), (14, 65, 300), (130, 48, 768)] {
        let mut a = rng.ints(m * k, 127);
        let mut w = rng.ints(n * k, 63);
        // Pin every row's maximum so the scales are exactly 1.
        for i in 0..m {
            a[i * k] = 127.0;
        }
        for j in 0..n {
            w[j * k] = -63.0;
        }
        check_exact(m, n, k, &a, &w, Int8Kernel::Avx2);
    }
}

#[test]
fn int8_avx2_epilogues_match_portable_and_fp32() {
    let pool = pool();
    let mut rng = Rng(12);
    for &(m, n, k) in &[(1, 5, 3), (15, 33, 70), (131, 64, 257), (29, 100, 768)] {
        let a = rng.vec(m * k);
        let w = rng.vec(n * k);
        let bias = rng.vec(n);
        let q = PackedI8::from_nk_for(&w, n, k, Int8Kernel::Avx2).unwrap();
        assert_eq!(q.weight_max(), 63);
        for (act, accumulate) in [
            (Activation::None, false),
            (Activation::None, true),
            (Activation::QuickGelu, false),
        ] {
            let epi = Epilogue {
                bias: Some(&bias),
                act,
                accumulate,
            };
            let init = rng.vec(m * n);
            let mut portable = init.clone();
            gemm_i8(Isa::Scalar, None, m, &a, k, &q, &mut portable, n, epi).unwrap();
            for isa in available_isas() {
                let mut got = init.clone();
                gemm_i8(isa, Some(&pool), m, &a, k, &q, &mut got, n, epi).unwrap();
                let d = max_diff(&got, &portable);
                assert!(d < 1e-5, "{isa:?} vs portable: {d}");
            }
            let mut exact = init.clone();
            gemm_reference(m, n, k, &a, &w, &mut exact, epi);
            let (mut err, mut norm) = (0.0f64, 0.0f64);
            for (g, e) in portable.iter().zip(&exact) {
                err += ((g - e) as f64).powi(2);
                norm += (*e as f64).powi(2);
            }
            // 7-bit weights: about 1% relative error on uniform data.
            let rel = (err / norm).sqrt();
            assert!(rel < 0.02, "m{m} n{n} k{k} {act:?}: relative error {rel}");
        }
    }
}

#[test]
fn int8_kernel_choice_follows_the_isa() {
    assert_eq!(int8_kernel(Isa::Scalar), Int8Kernel::Portable);
    let hw = hardware();
    if hw.isa >= Isa::Avx2 {
        // AVX2 is used whenever VNNI is not: also with GCLIP_ISA=avx2 on a
        // VNNI machine.
        assert_eq!(int8_kernel(Isa::Avx2), Int8Kernel::Avx2);
    }
    if hw.isa == Isa::Avx512 {
        let want = if hw.vnni {
            Int8Kernel::Vnni
        } else {
            Int8Kernel::Avx2
        };
        assert_eq!(int8_kernel(Isa::Avx512), want);
    }
}

/// Shapes of the towers: ViT-B/32 image (50 tokens, 12 heads of 64), the
/// text tower (77 causal tokens, 8 heads), a ragged batch, and the tiny
/// fixture models' geometry (width 32-64, 2-4 heads, 17 / 12 tokens).
const ATTN_SHAPES: [AttnShape; 5] = [
    AttnShape {
        batch: 2,
        seq: 50,
        heads: 12,
        head_dim: 64,
        causal: false,
    },
    AttnShape {
        batch: 2,
        seq: 77,
        heads: 8,
        head_dim: 64,
        causal: true,
    },
    AttnShape {
        batch: 3,
        seq: 17,
        heads: 2,
        head_dim: 16,
        causal: false,
    },
    AttnShape {
        batch: 3,
        seq: 12,
        heads: 4,
        head_dim: 8,
        causal: true,
    },
    AttnShape {
        batch: 1,
        seq: 1,
        heads: 3,
        head_dim: 5,
        causal: true,
    },
];

#[test]
fn attention_gemm_path_equals_vector_loops() {
    let pool = pool();
    let mut rng = Rng(2024);
    for s in ATTN_SHAPES {
        let w = s.heads * s.head_dim;
        // LayerNormed activations through in_proj: values of order 1-3.
        let qkv: Vec<f32> = rng
            .vec(s.batch * s.seq * 3 * w)
            .iter()
            .map(|v| v * 3.0)
            .collect();
        for isa in available_isas() {
            let mut old = vec![0.0; s.batch * s.seq * w];
            attention_loops(isa, None, &qkv, &mut old, s).unwrap();
            for p in [None, Some(&pool)] {
                let mut new = vec![0.0; s.batch * s.seq * w];
                attention(isa, p, &qkv, &mut new, s).unwrap();
                let d = max_diff(&new, &old);
                assert!(d <= 1e-5, "{isa:?} {s:?}: max |diff| {d}");
            }
            let query: Vec<usize> = (0..s.batch).map(|b| (b * 7 + 3) % s.seq).collect();
            let mut old_at = vec![0.0; s.batch * w];
            attention_at_loops(isa, None, &qkv, &mut old_at, s, &query).unwrap();
            let mut new_at = vec![0.0; s.batch * w];
            attention_at(isa, Some(&pool), &qkv, &mut new_at, s, &query).unwrap();
            let d = max_diff(&new_at, &old_at);
            assert!(d <= 1e-5, "{isa:?} {s:?} at {query:?}: max |diff| {d}");
        }
    }
}

#[test]
fn vector_exp_matches_f64() {
    // A dense sweep of the clamped range plus the softmax-relevant
    // [-30, 0], in lengths that leave every possible tail.
    let mut xs: Vec<f32> = (0..=17_500).map(|i| -87.0 + i as f32 * 0.01).collect();
    xs.extend((0..3001).map(|i| -30.0 + i as f32 * 0.01));
    xs.extend([0.0, -0.0, 1e-30, -1e-30, 0.346_573_6, -0.346_573_6]);
    for isa in available_isas() {
        for len in [1, 7, 8, 9, 15, 16, 17, 31, xs.len()] {
            let mut got = xs[..len].to_vec();
            exp_in_place(isa, &mut got);
            let mut worst = 0.0f64;
            for (&x, &g) in xs[..len].iter().zip(&got) {
                let e = (x as f64).exp();
                worst = worst.max(((g as f64 - e) / e).abs());
            }
            // About 2 ulp (measured ~1.5e-7).
            assert!(
                worst < 3e-7,
                "{isa:?} len {len}: max relative error {worst:.3e}"
            );
        }
        // Out-of-range inputs saturate to finite values, not inf/NaN.
        let mut ext = vec![-1000.0f32, 1000.0, -88.5, 88.5];
        exp_in_place(isa, &mut ext);
        assert!(
            ext.iter().all(|v| v.is_finite() && *v >= 0.0),
            "{isa:?} {ext:?}"
        );
        assert!(ext[0] < 1e-37 && ext[1] > 1e38, "{isa:?} {ext:?}");
    }
}

#[test]
fn scaled_softmax_matches_f64() {
    let mut rng = Rng(5);
    for isa in available_isas() {
        for len in [1, 2, 8, 13, 16, 50, 77, 577] {
            let xs: Vec<f32> = rng.vec(len).iter().map(|v| v * 40.0).collect();
            let scale = 0.125f32;
            let mut got = xs.clone();
            softmax_scaled(isa, &mut got, scale);
            let m = xs.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let z: f64 = xs
                .iter()
                .map(|&v| ((v as f64 - m) * scale as f64).exp())
                .sum();
            for (&x, &g) in xs.iter().zip(&got) {
                let want = ((x as f64 - m) * scale as f64).exp() / z;
                assert!(
                    (g as f64 - want).abs() <= 1e-6 * want + 1e-9,
                    "{isa:?} len {len}: {g} vs {want}"
                );
            }
        }
    }
}
