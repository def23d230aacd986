//! Kernels against plain scalar references, on every ISA this CPU has.

use gclip_engine::cpu::available_isas;
use gclip_engine::gemm::{gemm, gemm_reference, Epilogue, PackedMatrix};
use gclip_engine::ops::Activation;

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
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn gemm_matches_reference_odd_shapes() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let mut rng = Rng(0x1234_5678);
    for &(m, n, k) in &[(1, 1, 1), (13, 33, 7), (50, 100, 65), (129, 70, 300), (15, 31, 64), (200, 96, 513)] {
        let a = rng.vec(m * k);
        let w = rng.vec(n * k);
        let bias = rng.vec(n);
        let packed = PackedMatrix::from_nk(&w, n, k).unwrap();
        for act in [Activation::None, Activation::QuickGelu, Activation::Gelu] {
            for accumulate in [false, true] {
                if accumulate && act != Activation::None {
                    continue;
                }
                let epi = Epilogue { bias: Some(&bias), act, accumulate };
                let init = rng.vec(m * n);
                let mut want = init.clone();
                gemm_reference(m, n, k, &a, &w, &mut want, epi);
                for isa in available_isas() {
                    for p in [None, Some(&pool)] {
                        let mut got = init.clone();
                        gemm(isa, p, m, &a, k, &packed, &mut got, n, epi);
                        let d = max_diff(&got, &want);
                        let tol = 2e-6 * (k as f32).sqrt() * 4.0;
                        assert!(d < tol, "{isa:?} m{m} n{n} k{k} {act:?} acc{accumulate}: max diff {d}");
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
    gemm(isa, None, m, &a, k, &p1, &mut c1, n, Epilogue::default());
    gemm(isa, None, m, &a, k, &p2, &mut c2, n, Epilogue::default());
    assert_eq!(c1, c2);
    assert!(PackedMatrix::from_nk(&w_nk, n, k + 1).is_err());
}
