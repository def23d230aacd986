//! Multi-head attention on the packed GEMM: per (sequence, head),
//! `S = Q K^T` and `O = softmax(S / sqrt d) V` are two small GEMMs through
//! the same micro-kernels as the linear layers; the (sequence, head) pairs
//! are spread over the thread pool. K and V are packed straight from the
//! fused QKV matrix (`[tokens, 3W]`, the output of `in_proj`); the softmax
//! uses the vectorised exp of [`crate::exp`].
//!
//! The earlier per-query vector loops stay available as
//! [`crate::ops::attention_loops`] (reference for tests).

use std::cell::RefCell;

use crate::cpu::{self, Isa};
use crate::exp::softmax_scaled;
use crate::gemm::{gemm, run_tasks, Epilogue, PackedMatrix, SyncPtr};
use crate::ops::AttnShape;

thread_local! {
    /// Scores `[queries, keys]` and one head's output `[queries, d]`.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Attention for all tokens: `qkv` = `[batch*seq, 3W]`, `out` = `[batch*seq, W]`.
///
/// # Panics
/// If the buffers are smaller than the shape requires.
pub fn attention(
    isa: Isa,
    pool: Option<&rayon::ThreadPool>,
    qkv: &[f32],
    out: &mut [f32],
    s: AttnShape,
) {
    let w = s.heads * s.head_dim;
    assert!(out.len() >= s.batch * s.seq * w, "attention: out too small");
    run(isa, pool, qkv, out, s, |b| (0, s.seq, b * s.seq));
}

/// Attention for one query position per sequence (`query[b]`), writing
/// `[batch, W]`.
///
/// # Panics
/// If the buffers are too small or a query position is out of range.
pub fn attention_at(
    isa: Isa,
    pool: Option<&rayon::ThreadPool>,
    qkv: &[f32],
    out: &mut [f32],
    s: AttnShape,
    query: &[usize],
) {
    let w = s.heads * s.head_dim;
    assert!(
        query.len() == s.batch && query.iter().all(|&q| q < s.seq),
        "attention_at: bad queries"
    );
    assert!(out.len() >= s.batch * w, "attention_at: out too small");
    run(isa, pool, qkv, out, s, |b| (query[b], query[b] + 1, b));
}

/// `rows(b)` = (first query, end query, first output row) of sequence b.
fn run(
    isa: Isa,
    pool: Option<&rayon::ThreadPool>,
    qkv: &[f32],
    out: &mut [f32],
    s: AttnShape,
    rows: impl Fn(usize) -> (usize, usize, usize) + Send + Sync,
) {
    let (w, d) = (s.heads * s.head_dim, s.head_dim);
    assert!(
        qkv.len() >= s.batch * s.seq * 3 * w,
        "attention: qkv too small"
    );
    if s.seq == 0 || d == 0 {
        return;
    }
    let isa = isa.min(cpu::hardware().isa);
    let stride = 3 * w;
    let scale = 1.0 / (d as f32).sqrt();
    let optr = SyncPtr(out.as_mut_ptr());
    run_tasks(pool, s.batch * s.heads, |t| {
        let (b, h) = (t / s.heads, t % s.heads);
        let (q0, q1, o0) = rows(b);
        let x = &qkv[b * s.seq * stride..(b + 1) * s.seq * stride];
        // A causal query i sees keys 0..=i: later keys are never needed.
        let nk = if s.causal { q1 } else { s.seq };
        let mq = q1 - q0;
        let (ko, vo) = (w + h * d, 2 * w + h * d);
        // B = K^T: B[p, j] = K[j, p] (k = d, n = keys).
        let kt = PackedMatrix::pack(nk, d, |p, j| x[j * stride + ko + p]);
        // B = V: B[p, j] = V[p, j] (k = keys, n = d).
        let v = PackedMatrix::pack(d, nk, |p, j| x[p * stride + vo + j]);
        SCRATCH.with(|sc| {
            let mut sc = sc.borrow_mut();
            let (scores, head) = &mut *sc;
            scores.resize(mq * nk, 0.0);
            head.resize(mq * d, 0.0);
            let q = &x[q0 * stride + h * d..];
            gemm(
                isa,
                None,
                mq,
                q,
                stride,
                &kt,
                scores,
                nk,
                Epilogue::default(),
            )
            .expect("attention GEMM shapes follow from the checked AttnShape");
            for (r, row) in scores.chunks_exact_mut(nk).enumerate() {
                let len = if s.causal { q0 + r + 1 } else { nk };
                softmax_scaled(isa, &mut row[..len], scale);
                row[len..].fill(0.0);
            }
            gemm(isa, None, mq, scores, nk, &v, head, d, Epilogue::default())
                .expect("attention GEMM shapes follow from the checked AttnShape");
            for (r, src) in head.chunks_exact(d).enumerate() {
                // SAFETY: the callers checked that `out` holds the output
                // rows; only this task writes head h's columns of them.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(optr.get().add((o0 + r) * w + h * d), d)
                };
                dst.copy_from_slice(src);
            }
        });
    });
}
