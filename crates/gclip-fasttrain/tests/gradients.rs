//! Every hand-written backward against central finite differences of its forward, on
//! random small shapes. The objective is `sum(r * y)` for a fixed random `r`, summed in
//! f64, so the finite difference measures exactly the vector-Jacobian product the backward
//! computes.

use gclip_engine::ops::Activation;
use gclip_fasttrain::kernels::{self as k, Attn, Ctx};
use gclip_fasttrain::loss::{contrastive_loss, fuse_backward, fuse_forward, GclTerms};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_vec(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| rng.random_range(-1.0..1.0f32) * scale)
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Central differences of `f` at `x` along every coordinate.
fn numeric_grad(x: &[f32], h: f32, mut f: impl FnMut(&[f32]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = xp[i];
            xp[i] = orig + h;
            let fp = f(&xp);
            xp[i] = orig - h;
            let fm = f(&xp);
            xp[i] = orig;
            (fp - fm) / (2.0 * h as f64)
        })
        .collect()
}

/// ||analytic - numeric|| / ||numeric||.
fn rel(analytic: &[f32], numeric: &[f64]) -> f64 {
    assert_eq!(analytic.len(), numeric.len());
    let d: f64 = analytic
        .iter()
        .zip(numeric)
        .map(|(a, n)| (*a as f64 - n).powi(2))
        .sum();
    let n: f64 = numeric.iter().map(|v| v * v).sum();
    (d / n.max(1e-30)).sqrt()
}

fn ctxs(pool: &rayon::ThreadPool) -> [Ctx<'_>; 2] {
    [
        Ctx::serial(),
        Ctx {
            isa: gclip_engine::cpu::features().isa,
            pool: Some(pool),
        },
    ]
}

fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
}

#[test]
fn linear_backward_matches_finite_differences() {
    let pool = pool();
    for (seed, (m, n, kk)) in [(3, 5, 7), (40, 33, 17), (1, 64, 3)]
        .into_iter()
        .enumerate()
    {
        for ctx in ctxs(&pool) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed as u64);
            let x = rand_vec(&mut rng, m * kk, 1.0);
            let w = rand_vec(&mut rng, n * kk, 0.5);
            let b = rand_vec(&mut rng, n, 0.5);
            let r = rand_vec(&mut rng, m * n, 1.0);
            let fwd = |x: &[f32], w: &[f32], b: &[f32]| {
                let mut y = vec![0.0; m * n];
                k::matmul(ctx, m, n, kk, x, k::Rhs::Nk(w), &mut y, Some(b), false).unwrap();
                dot(&y, &r)
            };
            let mut dx = vec![0.0; m * kk];
            let mut dw = vec![0.0; n * kk];
            let mut db = vec![0.0; n];
            k::linear_backward(
                ctx,
                m,
                n,
                kk,
                &x,
                &w,
                &r,
                Some(&mut dx),
                false,
                &mut dw,
                Some(&mut db),
            )
            .unwrap();
            let h = 1e-2;
            let ex = rel(&dx, &numeric_grad(&x, h, |v| fwd(v, &w, &b)));
            let ew = rel(&dw, &numeric_grad(&w, h, |v| fwd(&x, v, &b)));
            let eb = rel(&db, &numeric_grad(&b, h, |v| fwd(&x, &w, v)));
            assert!(
                ex < 1e-3 && ew < 1e-3 && eb < 1e-3,
                "({m},{n},{kk}): dx {ex} dw {ew} db {eb}"
            );
        }
    }
}

#[test]
fn matmul_tn_accumulates_and_sums_columns() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (m, n, kk) = (37, 45, 29);
    let a = rand_vec(&mut rng, kk * m, 1.0);
    let b = rand_vec(&mut rng, kk * n, 1.0);
    let mut c = vec![1.0f32; m * n];
    let mut s = vec![2.0f32; m];
    k::matmul_tn(Ctx::serial(), m, n, kk, &a, &b, &mut c, Some(&mut s)).unwrap();
    for i in 0..m {
        for j in 0..n {
            let want: f64 = 1.0
                + (0..kk)
                    .map(|p| a[p * m + i] as f64 * b[p * n + j] as f64)
                    .sum::<f64>();
            assert!((c[i * n + j] as f64 - want).abs() < 1e-4, "{i},{j}");
        }
        let want: f32 = 2.0 + (0..kk).map(|p| a[p * m + i]).sum::<f32>();
        assert!((s[i] - want).abs() < 1e-4);
    }
}

#[test]
fn layer_norm_backward_matches_finite_differences() {
    let pool = pool();
    for (rows, width) in [(3, 8), (70, 48), (5, 130)] {
        for ctx in ctxs(&pool) {
            let mut rng = ChaCha8Rng::seed_from_u64(rows as u64 * 31 + width as u64);
            let x: Vec<f32> = rand_vec(&mut rng, rows * width, 2.0)
                .iter()
                .map(|v| v + 0.5)
                .collect();
            let g = rand_vec(&mut rng, width, 1.0);
            let b = rand_vec(&mut rng, width, 1.0);
            let r = rand_vec(&mut rng, rows * width, 1.0);
            let eps = 1e-5;
            let fwd = |x: &[f32], g: &[f32], b: &[f32]| {
                let mut y = vec![0.0; x.len()];
                let mut st = vec![0.0; 2 * rows];
                k::layer_norm_forward(ctx, x, &mut y, &mut st, width, g, b, eps).unwrap();
                dot(&y, &r)
            };
            let mut y = vec![0.0; x.len()];
            let mut st = vec![0.0; 2 * rows];
            k::layer_norm_forward(ctx, &x, &mut y, &mut st, width, &g, &b, eps).unwrap();
            // Accumulating into a non-zero dx must add, not overwrite.
            let mut dx = vec![0.5f32; x.len()];
            let mut dg = vec![0.0; width];
            let mut db = vec![0.0; width];
            k::layer_norm_backward(ctx, &x, &st, &r, &mut dx, true, width, &g, &mut dg, &mut db)
                .unwrap();
            dx.iter_mut().for_each(|v| *v -= 0.5);
            let h = 1e-2;
            let ex = rel(&dx, &numeric_grad(&x, h, |v| fwd(v, &g, &b)));
            let eg = rel(&dg, &numeric_grad(&g, h, |v| fwd(&x, v, &b)));
            let eb = rel(&db, &numeric_grad(&b, h, |v| fwd(&x, &g, v)));
            assert!(
                ex < 5e-3 && eg < 1e-3 && eb < 1e-3,
                "({rows},{width}): dx {ex} dg {eg} db {eb}"
            );
        }
    }
}

#[test]
fn activation_derivatives_match_finite_differences() {
    for act in [Activation::Gelu, Activation::QuickGelu] {
        for i in -80..=80 {
            let x = i as f32 * 0.1;
            let h = 1e-3f64;
            let f = |v: f64| k::activation(act, v as f32) as f64;
            let num = (f(x as f64 + h) - f(x as f64 - h)) / (2.0 * h);
            let ana = k::activation_derivative(act, x) as f64;
            assert!((num - ana).abs() < 2e-3, "{act:?} at {x}: {ana} vs {num}");
        }
        // The blocked, vectorised backward agrees with the scalar derivative.
        let pre: Vec<f32> = (0..3000).map(|i| (i as f32 - 1500.0) * 0.006).collect();
        let mut d = vec![1.0f32; pre.len()];
        k::activation_backward(Ctx::serial(), act, &pre, &mut d);
        for (x, g) in pre.iter().zip(&d) {
            let want = k::activation_derivative(act, *x);
            assert!(
                (g - want).abs() < 1e-5,
                "{act:?} backward at {x}: {g} vs {want}"
            );
        }
        // The engine's vectorised forward agrees with the scalar form used here.
        let xs: Vec<f32> = (-50..50).map(|i| i as f32 * 0.17).collect();
        let mut out = vec![0.0; xs.len()];
        k::activate_into(Ctx::serial(), act, &xs, &mut out);
        for (x, o) in xs.iter().zip(&out) {
            assert!((k::activation(act, *x) - o).abs() < 1e-5, "{act:?} {x}");
        }
    }
}

#[test]
fn attention_backward_matches_finite_differences() {
    let pool = pool();
    for (batch, seq, heads, hd, causal) in [
        (2, 5, 2, 4, false),
        (3, 7, 1, 8, true),
        (1, 17, 4, 16, false),
        (2, 9, 2, 32, true),
    ] {
        for ctx in ctxs(&pool) {
            let s = Attn {
                batch,
                seq,
                heads,
                head_dim: hd,
                causal,
            };
            let w = heads * hd;
            let mut rng = ChaCha8Rng::seed_from_u64((batch * 100 + seq) as u64);
            let qkv = rand_vec(&mut rng, batch * seq * 3 * w, 1.0);
            let r = rand_vec(&mut rng, batch * seq * w, 1.0);
            let fwd = |q: &[f32]| {
                let mut out = vec![0.0; batch * seq * w];
                let mut p = vec![0.0; s.probs_len()];
                k::attention_forward(ctx, q, &mut out, &mut p, s).unwrap();
                dot(&out, &r)
            };
            let mut out = vec![0.0; batch * seq * w];
            let mut p = vec![0.0; s.probs_len()];
            k::attention_forward(ctx, &qkv, &mut out, &mut p, s).unwrap();
            // Rows of P sum to 1, and a causal row has no weight past the diagonal.
            for (i, row) in p.chunks_exact(seq).enumerate() {
                let q = i % seq;
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
                if causal {
                    assert!(row[q + 1..].iter().all(|&v| v == 0.0));
                }
            }
            let mut dqkv = vec![7.0; qkv.len()];
            k::attention_backward(ctx, &qkv, &p, &r, &mut dqkv, s).unwrap();
            let e = rel(&dqkv, &numeric_grad(&qkv, 1e-2, fwd));
            assert!(e < 2e-3, "{s:?}: rel err {e}");
        }
    }
}

#[test]
fn attention_forward_matches_the_engines_inference_attention() {
    for causal in [false, true] {
        let s = Attn {
            batch: 3,
            seq: 11,
            heads: 2,
            head_dim: 16,
            causal,
        };
        let w = 32;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let qkv = rand_vec(&mut rng, 3 * 11 * 3 * w, 1.0);
        let mut out = vec![0.0; 3 * 11 * w];
        let mut p = vec![0.0; s.probs_len()];
        k::attention_forward(Ctx::serial(), &qkv, &mut out, &mut p, s).unwrap();
        let mut want = vec![0.0; out.len()];
        let es = gclip_engine::ops::AttnShape {
            batch: 3,
            seq: 11,
            heads: 2,
            head_dim: 16,
            causal,
        };
        gclip_engine::ops::attention(gclip_engine::cpu::features().isa, None, &qkv, &mut want, es)
            .unwrap();
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}

#[test]
fn l2_normalize_backward_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (rows, width) = (6, 10);
    let x = rand_vec(&mut rng, rows * width, 1.0);
    let r = rand_vec(&mut rng, rows * width, 1.0);
    let fwd = |x: &[f32]| {
        let mut y = vec![0.0; x.len()];
        let mut n = vec![0.0; rows];
        k::l2_normalize_forward(x, width, &mut y, &mut n);
        dot(&y, &r)
    };
    let mut y = vec![0.0; x.len()];
    let mut n = vec![0.0; rows];
    k::l2_normalize_forward(&x, width, &mut y, &mut n);
    let mut dx = vec![0.0; x.len()];
    k::l2_normalize_backward(&y, &n, &r, width, &mut dx, false);
    let e = rel(&dx, &numeric_grad(&x, 1e-3, fwd));
    assert!(e < 1e-3, "{e}");
}

#[test]
fn fusion_backward_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (n, dim) = (5, 6);
    let f0 = rand_vec(&mut rng, n * dim, 1.0);
    let f1 = rand_vec(&mut rng, n * dim, 1.0);
    // Row 3 has no second field (weight 0).
    let alpha = vec![0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.0, 0.1];
    let r = rand_vec(&mut rng, n * dim, 1.0);
    let fwd = |a: &[f32], b: &[f32]| dot(&fuse_forward(&[a, b], &alpha, n, dim).unwrap().out, &r);
    let fused = fuse_forward(&[&f0, &f1], &alpha, n, dim).unwrap();
    let g = fuse_backward(&fused, &r);
    let e0 = rel(&g[0], &numeric_grad(&f0, 1e-3, |v| fwd(v, &f1)));
    let e1 = rel(&g[1], &numeric_grad(&f1, 1e-3, |v| fwd(&f0, v)));
    assert!(e0 < 1e-3 && e1 < 1e-3, "{e0} {e1}");
    // The missing field gets no gradient in its row.
    assert!(g[1][3 * dim..4 * dim].iter().all(|&v| v == 0.0));
}

#[test]
fn contrastive_losses_backward_match_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let (n, dim) = (6, 5);
    let norm = |v: Vec<f32>| {
        let mut y = vec![0.0; v.len()];
        let mut nn = vec![0.0; n];
        k::l2_normalize_forward(&v, dim, &mut y, &mut nn);
        y
    };
    let a = norm(rand_vec(&mut rng, n * dim, 1.0));
    let b = norm(rand_vec(&mut rng, n * dim, 1.0));
    let ls = 2.0f32;
    let weights = [1.0, 0.5, 0.25, 2.0, 1.0, 0.1];
    let lids = [0u64, 0, 1, 2, 3, 3];
    let rids = [10u64, 11, 12, 12, 13, 14];
    let gcl = GclTerms {
        weights: &weights,
        left_ids: &lids,
        right_ids: &rids,
    };
    for terms in [None, Some(gcl)] {
        let f = |a: &[f32], b: &[f32], ls: f32| {
            contrastive_loss(a, b, n, dim, ls, terms).unwrap().loss as f64
        };
        let g = contrastive_loss(&a, &b, n, dim, ls, terms).unwrap();
        let ea = rel(&g.d_left, &numeric_grad(&a, 1e-3, |v| f(v, &b, ls)));
        let eb = rel(&g.d_right, &numeric_grad(&b, 1e-3, |v| f(&a, v, ls)));
        let nls = (f(&a, &b, ls + 1e-3) - f(&a, &b, ls - 1e-3)) / 2e-3;
        let els = (g.d_logit_scale as f64 - nls).abs() / nls.abs().max(1e-6);
        assert!(
            ea < 2e-3 && eb < 2e-3 && els < 2e-3,
            "gcl={}: {ea} {eb} {els}",
            terms.is_some()
        );
    }
    // Unit weights and distinct ids: GCL equals CLIP.
    let ones = [1.0f32; 6];
    let ids: Vec<u64> = (0..6).collect();
    let ids2: Vec<u64> = (10..16).collect();
    let c = contrastive_loss(&a, &b, n, dim, ls, None).unwrap().loss;
    let gl = contrastive_loss(
        &a,
        &b,
        n,
        dim,
        ls,
        Some(GclTerms {
            weights: &ones,
            left_ids: &ids,
            right_ids: &ids2,
        }),
    )
    .unwrap()
    .loss;
    assert!((c - gl).abs() < 1e-6, "{c} vs {gl}");
}

#[test]
fn products_match_plain_loops_for_both_weight_layouts() {
    // Odd sizes: partial 32-column panels, partial micro-tiles, K not a multiple of 8.
    let pool = pool();
    for (m, n, kk) in [(1, 1, 1), (15, 33, 7), (29, 70, 45), (130, 31, 64)] {
        for ctx in ctxs(&pool) {
            let mut rng = ChaCha8Rng::seed_from_u64((m * n + kk) as u64);
            let a = rand_vec(&mut rng, m * kk, 1.0);
            let w_nk = rand_vec(&mut rng, n * kk, 1.0);
            let mut w_kn = vec![0.0; kk * n];
            k::transpose(&w_nk, &mut w_kn, n, kk);
            let want: Vec<f64> = (0..m * n)
                .map(|ij| {
                    let (i, j) = (ij / n, ij % n);
                    (0..kk)
                        .map(|p| a[i * kk + p] as f64 * w_nk[j * kk + p] as f64)
                        .sum()
                })
                .collect();
            for rhs in [k::Rhs::Nk(&w_nk), k::Rhs::Kn(&w_kn)] {
                let mut c = vec![0.0; m * n];
                k::matmul(ctx, m, n, kk, &a, rhs, &mut c, None, false).unwrap();
                for (g, w) in c.iter().zip(&want) {
                    assert!((*g as f64 - w).abs() < 1e-4, "({m},{n},{kk}): {g} vs {w}");
                }
            }
        }
    }
}
