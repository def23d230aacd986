//! Field fusion and the contrastive losses with their gradients (definitions as in
//! `gclip_train::losses`, which documents the formulas).

use crate::kernels::{l2_normalize_backward, l2_normalize_forward};
use crate::{FastTrainError, Result};

/// One side's fusion `e_i = normalise(sum_k a_ki normalise(f_ki))`, with what the backward
/// needs.
pub struct Fused {
    n: usize,
    dim: usize,
    /// Column-normalised field weights `[K][n]`.
    alpha: Vec<f32>,
    /// `normalise(f_k)` per field and their norms.
    normed: Vec<Vec<f32>>,
    norms: Vec<Vec<f32>>,
    /// The fused, normalised rows `[n, dim]`.
    pub out: Vec<f32>,
    out_norms: Vec<f32>,
}

/// Fuses `fields` (`K` buffers of `[n, dim]` raw tower outputs) with weights `alphas`
/// (`[K][n]`, each column renormalised to sum 1; a missing field has weight 0).
pub fn fuse_forward(fields: &[&[f32]], alphas: &[f32], n: usize, dim: usize) -> Result<Fused> {
    let k = fields.len();
    if k == 0 || alphas.len() != k * n {
        return Err(FastTrainError::Shape(format!(
            "{k} fields with {} weights for {n} rows",
            alphas.len()
        )));
    }
    if let Some(f) = fields.iter().find(|f| f.len() != n * dim) {
        return Err(FastTrainError::Shape(format!(
            "field of {} values, expected {n} x {dim}",
            f.len()
        )));
    }
    let mut alpha = alphas.to_vec();
    for i in 0..n {
        let s: f32 = (0..k).map(|f| alphas[f * n + i]).sum();
        if s.is_nan() || s <= 0.0 {
            return Err(FastTrainError::Input(format!(
                "row {i}: field weights sum to {s}"
            )));
        }
        for f in 0..k {
            alpha[f * n + i] /= s;
        }
    }
    let mut normed = Vec::with_capacity(k);
    let mut norms = Vec::with_capacity(k);
    for f in fields {
        let mut y = vec![0.0; n * dim];
        let mut nr = vec![0.0; n];
        l2_normalize_forward(f, dim, &mut y, &mut nr);
        normed.push(y);
        norms.push(nr);
    }
    let (out, out_norms) = if k == 1 {
        // One field: the fusion is its normalisation (as the candle path computes it).
        (normed[0].clone(), norms[0].clone())
    } else {
        let mut acc = vec![0.0f32; n * dim];
        for (f, y) in normed.iter().enumerate() {
            for i in 0..n {
                let a = alpha[f * n + i];
                for (o, &v) in acc[i * dim..(i + 1) * dim]
                    .iter_mut()
                    .zip(&y[i * dim..(i + 1) * dim])
                {
                    *o += a * v;
                }
            }
        }
        let mut out = vec![0.0; n * dim];
        let mut on = vec![0.0; n];
        l2_normalize_forward(&acc, dim, &mut out, &mut on);
        (out, on)
    };
    Ok(Fused {
        n,
        dim,
        alpha,
        normed,
        norms,
        out,
        out_norms,
    })
}

/// Gradients of the raw fields from the gradient of the fused rows.
pub fn fuse_backward(f: &Fused, d_out: &[f32]) -> Vec<Vec<f32>> {
    let (n, dim, k) = (f.n, f.dim, f.normed.len());
    let mut grads = Vec::with_capacity(k);
    if k == 1 {
        let mut d = vec![0.0; n * dim];
        l2_normalize_backward(&f.normed[0], &f.norms[0], d_out, dim, &mut d, false);
        grads.push(d);
        return grads;
    }
    let mut d_acc = vec![0.0; n * dim];
    l2_normalize_backward(&f.out, &f.out_norms, d_out, dim, &mut d_acc, false);
    for fi in 0..k {
        let mut d_norm = vec![0.0; n * dim];
        for i in 0..n {
            let a = f.alpha[fi * n + i];
            for (o, &g) in d_norm[i * dim..(i + 1) * dim]
                .iter_mut()
                .zip(&d_acc[i * dim..(i + 1) * dim])
            {
                *o = a * g;
            }
        }
        let mut d = vec![0.0; n * dim];
        l2_normalize_backward(&f.normed[fi], &f.norms[fi], &d_norm, dim, &mut d, false);
        grads.push(d);
    }
    grads
}

/// The GCL terms of a batch: pair weights and the ids that decide which rows are not each
/// other's negatives.
#[derive(Clone, Copy)]
pub struct GclTerms<'a> {
    /// Non-negative pair weights (not all zero).
    pub weights: &'a [f32],
    /// Query (left) id of each row.
    pub left_ids: &'a [u64],
    /// Document (right) id of each row.
    pub right_ids: &'a [u64],
}

/// A loss value and its gradients.
#[derive(Debug, Clone)]
pub struct LossGrads {
    /// The loss.
    pub loss: f32,
    /// d loss / d left rows `[n, dim]`.
    pub d_left: Vec<f32>,
    /// d loss / d right rows `[n, dim]`.
    pub d_right: Vec<f32>,
    /// d loss / d logit_scale (the log-space parameter).
    pub d_logit_scale: f32,
}

/// The CLIP loss (`gcl = None`) or the GCL loss over normalised `left` / `right` rows,
/// with `logits = exp(logit_scale) left right^T`, and its gradients.
pub fn contrastive_loss(
    left: &[f32],
    right: &[f32],
    n: usize,
    dim: usize,
    logit_scale: f32,
    gcl: Option<GclTerms<'_>>,
) -> Result<LossGrads> {
    if n == 0 || left.len() != n * dim || right.len() != n * dim {
        return Err(FastTrainError::Shape(format!(
            "loss over {} and {} values for {n} rows of {dim}",
            left.len(),
            right.len()
        )));
    }
    let s = logit_scale.exp();
    // Per-row coefficient of each direction's cross-entropy in the loss.
    let coef: Vec<f32> = match gcl {
        None => vec![1.0 / (2 * n) as f32; n],
        Some(g) => {
            if g.weights.len() != n || g.left_ids.len() != n || g.right_ids.len() != n {
                return Err(FastTrainError::Shape(format!(
                    "GCL terms for {} / {} / {} rows, batch of {n}",
                    g.weights.len(),
                    g.left_ids.len(),
                    g.right_ids.len()
                )));
            }
            let total: f32 = g.weights.iter().sum();
            if total.is_nan() || total <= 0.0 {
                return Err(FastTrainError::Input("pair weights sum to 0".into()));
            }
            g.weights.iter().map(|w| w / (2.0 * total)).collect()
        }
    };
    let keep = |i: usize, j: usize| match gcl {
        None => true,
        Some(g) => i == j || (g.left_ids[i] != g.left_ids[j] && g.right_ids[i] != g.right_ids[j]),
    };
    let mut logits = vec![0.0f32; n * n];
    for i in 0..n {
        let a = &left[i * dim..(i + 1) * dim];
        for j in 0..n {
            let b = &right[j * dim..(j + 1) * dim];
            logits[i * n + j] = s * a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        }
    }
    let mut dl = vec![0.0f32; n * n];
    let mut loss = 0.0f64;
    // Rows (left to right), then columns (right to left); the mask is symmetric.
    for dir in 0..2 {
        for i in 0..n {
            let at = |j: usize| if dir == 0 { i * n + j } else { j * n + i };
            let mut m = f32::NEG_INFINITY;
            for j in 0..n {
                if keep(i, j) {
                    m = m.max(logits[at(j)]);
                }
            }
            let mut sum = 0.0f64;
            for j in 0..n {
                if keep(i, j) {
                    sum += ((logits[at(j)] - m) as f64).exp();
                }
            }
            let lse = m as f64 + sum.ln();
            loss += coef[i] as f64 * (lse - logits[at(i)] as f64);
            for j in 0..n {
                if keep(i, j) {
                    let p = ((logits[at(j)] as f64 - lse).exp()) as f32;
                    dl[at(j)] += coef[i] * (p - if i == j { 1.0 } else { 0.0 });
                }
            }
        }
    }
    let mut d_left = vec![0.0f32; n * dim];
    let mut d_right = vec![0.0f32; n * dim];
    let mut d_ls = 0.0f64;
    for i in 0..n {
        for j in 0..n {
            let g = dl[i * n + j];
            if g == 0.0 {
                continue;
            }
            d_ls += (g * logits[i * n + j]) as f64;
            let gs = g * s;
            for c in 0..dim {
                d_left[i * dim + c] += gs * right[j * dim + c];
                d_right[j * dim + c] += gs * left[i * dim + c];
            }
        }
    }
    Ok(LossGrads {
        loss: loss as f32,
        d_left,
        d_right,
        d_logit_scale: d_ls as f32,
    })
}
