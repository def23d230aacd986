//! Kernels against plain scalar references, on every ISA this CPU has.

use gclip_engine::cpu::{available_isas, Isa};
use gclip_engine::gemm::{erf64, gemm, gemm_reference, Epilogue, PackedMatrix};
use gclip_engine::ops::{
    activate, attention, attention_at, layer_norm, softmax, Activation, AttnShape,
};
use gclip_engine::quant::{gemm_i8, PackedI8};

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
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn gemm_matches_reference_odd_shapes() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut rng = Rng(0x1234_5678);
    for &(m, n, k) in &[
        (1, 1, 1),
        (13, 33, 7),
        (50, 100, 65),
        (129, 70, 300),
        (15, 31, 64),
        (200, 96, 513),
    ] {
        let a = rng.vec(m * k);
        let w = rng.vec(n * k);
        let bias = rng.vec(n);
        let packed = PackedMatrix::from_nk(&w, n, k).unwrap();
        for act in [Activation::None, Activation::QuickGelu, Activation::Gelu] {
            for accumulate in [false, true] {
                if accumulate && act != Activation::None {
                    continue;
                }
                let epi = Epilogue {
                    bias: Some(&bias),
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
                        let tol = 2e-6 * (k as f32).sqrt() * 4.0;
                        assert!(
                            d < tol,
                            "{isa:?} m{m} n{n} k{k} {act:?} acc{accumulate}: max diff {d}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn gemm_kn_packing_equals_nk() {
    let mut rng = Rng(99);
    let (m, n, k) = (17, 45, 23);
    let a = rng.vec(m * k);
    let w_nk = rng.vec(n * k);
    let mut w_kn = vec![0.0; n * k];
    for j in 0..n {
        for p in 0..k {
            w_kn[p * n + j] = w_nk[j * k + p];
        }
    }
    let p1 = PackedMatrix::from_nk(&w_nk, n, k).unwrap();
    let p2 = PackedMatrix::from_kn(&w_kn, k, n).unwrap();
    let isa = gclip_engine::cpu::features().isa;
    let (mut c1, mut c2) = (vec![0.0; m * n], vec![0.0; m * n]);
    gemm(isa, None, m, &a, k, &p1, &mut c1, n, Epilogue::default()).unwrap();
    gemm(isa, None, m, &a, k, &p2, &mut c2, n, Epilogue::default()).unwrap();
    assert_eq!(c1, c2);
    assert!(PackedMatrix::from_nk(&w_nk, n, k + 1).is_err());
}

#[test]
fn activations_match_f64() {
    let mut rng = Rng(7);
    let xs: Vec<f32> = (0..1000)
        .map(|_| rng.next() * 12.0)
        .chain([0.0, -0.0, 30.0, -30.0, 100.0, -100.0])
        .collect();
    for isa in available_isas() {
        let mut g = xs.clone();
        activate(isa, Activation::Gelu, &mut g);
        let mut q = xs.clone();
        activate(isa, Activation::QuickGelu, &mut q);
        for ((&x, &gv), &qv) in xs.iter().zip(&g).zip(&q) {
            let x64 = x as f64;
            let gw = 0.5 * x64 * (1.0 + erf64(x64 / std::f64::consts::SQRT_2));
            let qw = x64 / (1.0 + (-1.702 * x64).exp());
            assert!(
                (gv as f64 - gw).abs() <= 2e-7 * (1.0 + x64.abs()),
                "{isa:?} gelu({x}) = {gv}, want {gw}"
            );
            assert!(
                (qv as f64 - qw).abs() <= 2e-7 * (1.0 + x64.abs()),
                "{isa:?} quick_gelu({x}) = {qv}, want {qw}"
            );
        }
    }
}

#[test]
fn layer_norm_and_softmax_match_f64() {
    let mut rng = Rng(8);
    let (rows, width) = (5, 37);
    let x: Vec<f32> = rng
        .vec(rows * width)
        .iter()
        .map(|v| v * 3.0 + 1.0)
        .collect();
    let g = rng.vec(width);
    let b = rng.vec(width);
    for isa in available_isas() {
        let mut out = vec![0.0; rows * width];
        layer_norm(isa, &x, &mut out, width, &g, &b, 1e-5).unwrap();
        for r in 0..rows {
            let xr: Vec<f64> = x[r * width..(r + 1) * width]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let mean = xr.iter().sum::<f64>() / width as f64;
            let var = xr.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / width as f64;
            for j in 0..width {
                let want = (xr[j] - mean) / (var + 1e-5).sqrt() * g[j] as f64 + b[j] as f64;
                assert!(
                    (out[r * width + j] as f64 - want).abs() < 1e-5,
                    "{isa:?} layer norm"
                );
            }
        }
        let mut s: Vec<f32> = rng.vec(23).iter().map(|v| v * 40.0).collect();
        let x64: Vec<f64> = s.iter().map(|&v| v as f64).collect();
        softmax(isa, &mut s);
        let m = x64.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = x64.iter().map(|v| (v - m).exp()).sum();
        for (got, v) in s.iter().zip(&x64) {
            assert!(
                (*got as f64 - (v - m).exp() / z).abs() < 1e-6,
                "{isa:?} softmax"
            );
        }
    }
}

/// Attention over fused QKV vs a direct f64 implementation.
fn attention_reference(qkv: &[f32], s: AttnShape) -> Vec<f32> {
    let w = s.heads * s.head_dim;
    let mut out = vec![0.0f32; s.batch * s.seq * w];
    for b in 0..s.batch {
        for h in 0..s.heads {
            for i in 0..s.seq {
                let row = |t: usize, part: usize, d: usize| {
                    qkv[(b * s.seq + t) * 3 * w + part * w + h * s.head_dim + d] as f64
                };
                let len = if s.causal { i + 1 } else { s.seq };
                let sc: Vec<f64> = (0..len)
                    .map(|j| {
                        (0..s.head_dim)
                            .map(|d| row(i, 0, d) * row(j, 1, d))
                            .sum::<f64>()
                            / (s.head_dim as f64).sqrt()
                    })
                    .collect();
                let m = sc.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = sc.iter().map(|v| (v - m).exp()).sum();
                for d in 0..s.head_dim {
                    let o: f64 = (0..len).map(|j| (sc[j] - m).exp() / z * row(j, 2, d)).sum();
                    out[(b * s.seq + i) * w + h * s.head_dim + d] = o as f32;
                }
            }
        }
    }
    out
}

#[test]
fn attention_matches_reference() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut rng = Rng(9);
    for causal in [false, true] {
        let s = AttnShape {
            batch: 3,
            seq: 11,
            heads: 3,
            head_dim: 20,
            causal,
        };
        let w = s.heads * s.head_dim;
        let qkv: Vec<f32> = rng
            .vec(s.batch * s.seq * 3 * w)
            .iter()
            .map(|v| v * 2.0)
            .collect();
        let want = attention_reference(&qkv, s);
        for isa in available_isas() {
            for p in [None, Some(&pool)] {
                let mut got = vec![0.0; s.batch * s.seq * w];
                attention(isa, p, &qkv, &mut got, s).unwrap();
                let d = max_diff(&got, &want);
                assert!(d < 1e-5, "{isa:?} causal {causal}: max diff {d}");
            }
        }
    }
}

#[test]
fn int8_gemm_matches_scalar_and_fp32() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut rng = Rng(10);
    for &(m, n, k) in &[(1, 5, 3), (15, 33, 70), (120, 64, 257), (29, 100, 768)] {
        let a = rng.vec(m * k);
        let w = rng.vec(n * k);
        let bias = rng.vec(n);
        let q = PackedI8::from_nk(&w, n, k).unwrap();
        for (act, accumulate) in [
            (Activation::None, false),
            (Activation::None, true),
            (Activation::Gelu, false),
        ] {
            let epi = Epilogue {
                bias: Some(&bias),
                act,
                accumulate,
            };
            let init = rng.vec(m * n);
            let mut scalar = init.clone();
            gemm_i8(Isa::Scalar, None, m, &a, k, &q, &mut scalar, n, epi).unwrap();
            for isa in available_isas() {
                let mut got = init.clone();
                gemm_i8(isa, Some(&pool), m, &a, k, &q, &mut got, n, epi).unwrap();
                let d = max_diff(&got, &scalar);
                assert!(d < 1e-5, "{isa:?} int8 vs portable int8: {d}");
            }
            let mut exact = init.clone();
            gemm_reference(m, n, k, &a, &w, &mut exact, epi);
            // Quantisation error: per-row relative error of the product.
            for r in 0..m {
                let (g, e) = (&scalar[r * n..(r + 1) * n], &exact[r * n..(r + 1) * n]);
                let err: f32 = g
                    .iter()
                    .zip(e)
                    .map(|(x, y)| (x - y) * (x - y))
                    .sum::<f32>()
                    .sqrt();
                let norm: f32 = e.iter().map(|y| y * y).sum::<f32>().sqrt();
                assert!(
                    err <= 0.02 * norm + 1e-3,
                    "m{m} n{n} k{k} row {r}: error {err} vs norm {norm}"
                );
            }
        }
    }
}

#[test]
fn attention_at_equals_rows_of_full_attention() {
    let mut rng = Rng(11);
    let s = AttnShape {
        batch: 4,
        seq: 9,
        heads: 2,
        head_dim: 16,
        causal: true,
    };
    let w = s.heads * s.head_dim;
    let qkv = rng.vec(s.batch * s.seq * 3 * w);
    let query = [8, 0, 3, 5];
    let isa = gclip_engine::cpu::features().isa;
    let mut full = vec![0.0; s.batch * s.seq * w];
    attention(isa, None, &qkv, &mut full, s).unwrap();
    let mut at = vec![0.0; s.batch * w];
    attention_at(isa, None, &qkv, &mut at, s, &query).unwrap();
    for (b, &q) in query.iter().enumerate() {
        assert_eq!(
            &at[b * w..(b + 1) * w],
            &full[(b * s.seq + q) * w..][..w],
            "sequence {b}"
        );
    }
}

/// The public kernels check their buffers against the stated shapes and return errors.
#[test]
fn undersized_buffers_are_errors_not_panics() {
    let isa = Isa::Scalar;
    let p = PackedMatrix::from_nk(&[0.5; 6], 2, 3).unwrap();
    let mut c = vec![0.0; 4];
    let epi = Epilogue::default();
    assert!(gemm(isa, None, 2, &[0.0; 5], 3, &p, &mut c, 2, epi).is_err());
    assert!(gemm(isa, None, 2, &[0.0; 6], 3, &p, &mut c[..3], 2, epi).is_err());
    assert!(gemm(isa, None, 2, &[0.0; 6], 2, &p, &mut c, 2, epi).is_err());
    let short_bias = Epilogue {
        bias: Some(&[0.0]),
        ..epi
    };
    assert!(gemm(isa, None, 2, &[0.0; 6], 3, &p, &mut c, 2, short_bias).is_err());
    let both = Epilogue {
        act: Activation::Gelu,
        accumulate: true,
        ..epi
    };
    assert!(gemm(isa, None, 2, &[0.0; 6], 3, &p, &mut c, 2, both).is_err());
    gemm(isa, None, 2, &[1.0; 6], 3, &p, &mut c, 2, epi).unwrap();
    assert_eq!(c, vec![1.5; 4]);
    let q = PackedI8::from_nk(&[0.5; 6], 2, 3).unwrap();
    assert!(gemm_i8(isa, None, 2, &[0.0; 5], 3, &q, &mut c, 2, epi).is_err());

    let mut out = vec![0.0; 6];
    assert!(layer_norm(isa, &[0.0; 5], &mut out, 2, &[1.0; 2], &[0.0; 2], 1e-5).is_err());
    assert!(layer_norm(isa, &[0.0; 4], &mut out, 0, &[], &[], 1e-5).is_err());
    assert!(layer_norm(isa, &[0.0; 4], &mut out, 2, &[1.0], &[0.0; 2], 1e-5).is_err());
    assert!(layer_norm(isa, &[0.0; 6], &mut out[..4], 2, &[1.0; 2], &[0.0; 2], 1e-5).is_err());

    let s = AttnShape {
        batch: 1,
        seq: 2,
        heads: 2,
        head_dim: 2,
        causal: true,
    };
    let qkv = vec![0.1; 2 * 3 * 4];
    let mut o = vec![0.0; 2 * 4];
    attention(isa, None, &qkv, &mut o, s).unwrap();
    assert!(attention(isa, None, &qkv[..20], &mut o, s).is_err());
    assert!(attention(isa, None, &qkv, &mut o[..7], s).is_err());
    let no_heads = AttnShape { heads: 0, ..s };
    assert!(attention(isa, None, &qkv, &mut o, no_heads).is_err());
    assert!(attention_at(isa, None, &qkv, &mut o, s, &[2]).is_err());
    assert!(attention_at(isa, None, &qkv, &mut o, s, &[0, 1]).is_err());
    attention_at(isa, None, &qkv, &mut o, s, &[1]).unwrap();
}
