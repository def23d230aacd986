//! Exact top-k retrieval by inner product (cosine on normalised rows).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use crate::error::{EvalError, Result};

/// A dense row-major matrix of f32 embeddings.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    data: Vec<f32>,
    rows: usize,
    dim: usize,
}

impl Matrix {
    /// Stacks equally long rows.
    pub fn from_rows(rows: &[Vec<f32>]) -> Result<Matrix> {
        let dim = rows.first().map_or(0, Vec::len);
        let mut data = Vec::with_capacity(rows.len() * dim);
        for r in rows {
            if r.len() != dim {
                return Err(EvalError::EncoderOutput(format!(
                    "embeddings of length {dim} and {} cannot be compared",
                    r.len()
                )));
            }
            data.extend_from_slice(r);
        }
        Ok(Matrix {
            data,
            rows: rows.len(),
            dim,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row length.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// L2-normalises every row.
    pub fn normalize_rows(&mut self) {
        if self.dim == 0 {
            return;
        }
        self.data
            .chunks_exact_mut(self.dim)
            .for_each(crate::data::normalize);
    }
}

/// Dot product with 8 independent accumulators so the compiler vectorises it.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[derive(Clone, Copy)]
struct Hit {
    score: f32,
    tie: u32,
    doc: u32,
}

impl Hit {
    /// `Greater` = ranks higher: larger score, then larger tie rank.
    fn rank_cmp(&self, o: &Hit) -> Ordering {
        self.score.total_cmp(&o.score).then(self.tie.cmp(&o.tie))
    }
}

impl PartialEq for Hit {
    fn eq(&self, o: &Self) -> bool {
        self.rank_cmp(o) == Ordering::Equal
    }
}
impl Eq for Hit {}
impl PartialOrd for Hit {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Hit {
    // Reversed so that BinaryHeap's top is the worst kept hit.
    fn cmp(&self, o: &Self) -> Ordering {
        o.rank_cmp(self)
    }
}

const QUERY_BLOCK: usize = 8;
const DOC_BLOCK: usize = 512;

/// For every query row, the `k` documents with the largest inner product, best first,
/// as `(document row, score)`.
///
/// Equal scores are ordered by `tie_rank` descending (pass each document's position in
/// ascending document-id order to reproduce trec_eval's docno-descending tie-break, so
/// the cut at k agrees with what trec_eval would rank); `None` ranks later rows first.
/// Work is split over query blocks with rayon; each block streams the corpus in
/// cache-sized tiles.
pub fn top_k(
    queries: &Matrix,
    docs: &Matrix,
    k: usize,
    tie_rank: Option<&[u32]>,
) -> Result<Vec<Vec<(usize, f32)>>> {
    if queries.rows > 0 && docs.rows > 0 && queries.dim != docs.dim {
        return Err(EvalError::EncoderOutput(format!(
            "query embeddings have {} dimensions, documents {}",
            queries.dim, docs.dim
        )));
    }
    if let Some(t) = tie_rank {
        if t.len() != docs.rows {
            return Err(EvalError::Config(
                "tie_rank length != number of documents".into(),
            ));
        }
    }
    if docs.rows > u32::MAX as usize {
        return Err(EvalError::Config("more than 2^32 documents".into()));
    }
    let k = k.min(docs.rows);
    let qidx: Vec<usize> = (0..queries.rows).collect();
    let out = qidx
        .par_chunks(QUERY_BLOCK)
        .flat_map_iter(|block| {
            let mut heaps: Vec<BinaryHeap<Hit>> = block
                .iter()
                .map(|_| BinaryHeap::with_capacity(k + 1))
                .collect();
            let mut start = 0;
            while start < docs.rows {
                let end = (start + DOC_BLOCK).min(docs.rows);
                for (h, &q) in heaps.iter_mut().zip(block) {
                    let qv = queries.row(q);
                    for d in start..end {
                        let hit = Hit {
                            score: dot(qv, docs.row(d)),
                            tie: tie_rank.map_or(d as u32, |t| t[d]),
                            doc: d as u32,
                        };
                        if h.len() < k {
                            h.push(hit);
                        } else if let Some(worst) = h.peek() {
                            if hit.rank_cmp(worst) == Ordering::Greater {
                                h.pop();
                                h.push(hit);
                            }
                        }
                    }
                }
                start = end;
            }
            heaps.into_iter().map(|h| {
                // into_sorted_vec is ascending in Ord, i.e. best first.
                h.into_sorted_vec()
                    .into_iter()
                    .map(|x| (x.doc as usize, x.score))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    Ok(out)
}
