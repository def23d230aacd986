//! Contrastive losses, written only with differentiable candle ops.
//!
//! Embeddings passed to the losses are L2-normalised rows (`[batch, dim]`);
//! `logit_scale` is the learnable scalar in log space (open_clip's
//! `logit_scale` parameter), so the logits are `exp(logit_scale) * a @ b.T`.
//!
//! # CLIP
//! `loss = (CE(L, arange) + CE(L.T, arange)) / 2` with `L = s * img @ txt.T`,
//! identical to open_clip's `ClipLoss` on one device.
//!
//! # GCL (weighted, de-duplicated contrastive loss)
//! With `q_i` the fused left (query) embedding of row `i`, `d_i` the fused
//! right (document) embedding, `s = exp(logit_scale)` and `L_ij = s q_i . d_j`:
//!
//! ```text
//! M_ij     = 1 if i == j or (qid_i != qid_j and did_i != did_j), else 0
//! l_q2d_i  = -log( exp(L_ii) / sum_j M_ij exp(L_ij) )
//! l_d2q_i  = -log( exp(L_ii) / sum_j M_ji exp(L_ji) )
//! loss     = sum_i w_i (l_q2d_i + l_d2q_i) / (2 sum_i w_i)
//! ```
//!
//! `M` keeps rows that share a query or a document from acting as each
//! other's negatives (they are other positives, of another relevance), and
//! `w_i` is the score-to-weight value of pair `i`. Dividing by `sum w` makes
//! the loss a weighted mean, so its scale does not depend on the weight units.
//! With all weights equal and all ids distinct it equals the CLIP loss.

use candle_core::{DType, Device, Tensor, D};

use crate::error::{Result, TrainError};

/// Logit added to masked-out pairs: `exp` of it is exactly 0 in f32, while
/// staying finite keeps every intermediate free of `inf - inf`.
const MASKED: f32 = -1e9;

/// Divides each row by its L2 norm (differentiable; open_clip's `F.normalize`).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f32::MAX)?;
    Ok(x.broadcast_div(&norm)?)
}

/// Row-wise `logsumexp(x_i) - x_ii`: the cross-entropy of each row against the
/// diagonal target. The row maximum is detached: it only shifts the exponent.
fn diag_cross_entropy(logits: &Tensor) -> Result<Tensor> {
    let n = logits.dim(0)?;
    let max = logits.max_keepdim(1)?.detach();
    let lse = logits
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(1)?
        .log()?
        .broadcast_add(&max)?
        .squeeze(1)?;
    let eye = Tensor::eye(n, logits.dtype(), logits.device())?;
    let diag = (logits * eye)?.sum(1)?;
    Ok((lse - diag)?)
}

fn check_pair(a: &Tensor, b: &Tensor) -> Result<usize> {
    let (n, d) = a.dims2()?;
    let (m, e) = b.dims2()?;
    if n != m || d != e {
        return Err(TrainError::Data(format!(
            "embedding shapes differ: {:?} vs {:?}",
            a.dims(),
            b.dims()
        )));
    }
    if n == 0 {
        return Err(TrainError::Data("empty batch".into()));
    }
    Ok(n)
}

fn scaled_logits(a: &Tensor, b: &Tensor, logit_scale: &Tensor) -> Result<Tensor> {
    let scale = logit_scale.exp()?.reshape(())?;
    Ok(a.matmul(&b.t()?)?.broadcast_mul(&scale)?)
}

/// Symmetric CLIP cross-entropy over the batch similarity matrix.
///
/// `image` and `text` are `[batch, dim]` L2-normalised embeddings, row `i` of
/// each forming the positive pair; `logit_scale` is the log-space scalar.
pub fn clip_loss(image: &Tensor, text: &Tensor, logit_scale: &Tensor) -> Result<Tensor> {
    check_pair(image, text)?;
    let logits = scaled_logits(image, text, logit_scale)?;
    let a = diag_cross_entropy(&logits)?.mean_all()?;
    let b = diag_cross_entropy(&logits.t()?)?.mean_all()?;
    Ok(((a + b)? / 2.0)?)
}

/// The additive mask of the GCL loss: 0 where `M_ij = 1`, a large negative
/// logit where rows `i` and `j` share a left id or a right id (`i != j`).
pub fn negatives_mask(left_ids: &[u64], right_ids: &[u64], device: &Device) -> Result<Tensor> {
    let n = left_ids.len();
    if right_ids.len() != n {
        return Err(TrainError::Data(format!(
            "{} left ids but {} right ids",
            n,
            right_ids.len()
        )));
    }
    let mut m = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            if i != j && (left_ids[i] == left_ids[j] || right_ids[i] == right_ids[j]) {
                m[i * n + j] = MASKED;
            }
        }
    }
    Ok(Tensor::from_vec(m, (n, n), device)?)
}

/// The GCL loss (see the module docs for the formula).
///
/// `left`/`right` are fused, L2-normalised `[batch, dim]` embeddings,
/// `weights` a `[batch]` tensor of non-negative pair weights (not all zero),
/// `left_ids`/`right_ids` the query and document ids of each row.
pub fn gcl_loss(
    left: &Tensor,
    right: &Tensor,
    logit_scale: &Tensor,
    weights: &Tensor,
    left_ids: &[u64],
    right_ids: &[u64],
) -> Result<Tensor> {
    let n = check_pair(left, right)?;
    if weights.dims() != [n] {
        return Err(TrainError::Data(format!(
            "weights have shape {:?}, expected [{n}]",
            weights.dims()
        )));
    }
    if left_ids.len() != n {
        return Err(TrainError::Data(format!(
            "{} ids for a batch of {n}",
            left_ids.len()
        )));
    }
    let mask = negatives_mask(left_ids, right_ids, left.device())?.to_dtype(left.dtype())?;
    // The mask is symmetric, so the same additive bias serves both directions.
    let logits = (scaled_logits(left, right, logit_scale)? + mask)?;
    let q2d = diag_cross_entropy(&logits)?;
    let d2q = diag_cross_entropy(&logits.t()?)?;
    let total = weights.sum_all()?;
    let weighted = ((q2d + d2q)? * weights)?.sum_all()?;
    Ok((weighted / (total * 2.0)?)?)
}

/// Weighted fusion of several field embeddings into one side's embedding:
/// `e_i = normalise(sum_k a_ki normalise(f_ki))` where `alphas` is `[K, batch]`
/// and each column is renormalised to sum 1 (a missing field has `a = 0`).
///
/// Every column of `alphas` must have a positive sum.
pub fn fuse_fields(fields: &[Tensor], alphas: &Tensor) -> Result<Tensor> {
    let (k, n) = alphas.dims2()?;
    if k != fields.len() || k == 0 {
        return Err(TrainError::Data(format!(
            "{} field embeddings but {k} field weights",
            fields.len()
        )));
    }
    if k == 1 {
        return l2_normalize(&fields[0]);
    }
    let col = alphas.sum_keepdim(0)?;
    let a = alphas.broadcast_div(&col)?.to_dtype(fields[0].dtype())?;
    let mut acc = Tensor::zeros(fields[0].dims(), fields[0].dtype(), fields[0].device())?;
    for (i, f) in fields.iter().enumerate() {
        if f.dim(0)? != n {
            return Err(TrainError::Data(format!(
                "field {i} has {} rows, expected {n}",
                f.dim(0)?
            )));
        }
        let w = a.get(i)?.unsqueeze(1)?;
        acc = (acc + l2_normalize(f)?.broadcast_mul(&w)?)?;
    }
    l2_normalize(&acc)
}

/// Convenience: `[n]` f32 tensor of pair weights on a device.
pub fn weights_tensor(w: &[f32], device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_slice(w, w.len(), device)?.to_dtype(DType::F32)?)
}
