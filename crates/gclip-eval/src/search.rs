//! Exact top-k retrieval by inner product (cosine on normalised rows).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use gclip_vectors::Embeddings;

use crate::error::{EvalError, Result};

/// Dot product with 8 independent accumulators so the compiler vectorises it: the
/// retrieval kernel (bit-identical to the four-query variant), unlike the plain f32 sum of
/// `gclip_vectors::dot`. Rows must have equal length (extra elements of the longer are
/// ignored).
#[inline(always)]
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

/// Four dot products of one document row with four query rows, sharing the document
/// loads; each result is bit-identical to [`dot`] of the same pair.
#[inline(always)]
fn dot4(q: [&[f32]; 4], d: &[f32]) -> [f32; 4] {
    let mut acc = [[0.0f32; 8]; 4];
    let chunks = d
        .chunks_exact(8)
        .zip(q[0].chunks_exact(8))
        .zip(q[1].chunks_exact(8))
        .zip(q[2].chunks_exact(8))
        .zip(q[3].chunks_exact(8));
    for ((((dv, a), b), c), e) in chunks {
        for l in 0..8 {
            acc[0][l] += a[l] * dv[l];
            acc[1][l] += b[l] * dv[l];
            acc[2][l] += c[l] * dv[l];
            acc[3][l] += e[l] * dv[l];
        }
    }
    let n8 = d.len() / 8 * 8;
    let mut out = [0.0f32; 4];
    for (j, (a, qr)) in acc.iter().zip(q).enumerate() {
        let mut s = a.iter().sum::<f32>();
        for t in n8..d.len() {
            s += qr[t] * d[t];
        }
        out[j] = s;
    }
    out
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
    queries: &Embeddings,
    docs: &Embeddings,
    k: usize,
    tie_rank: Option<&[u32]>,
) -> Result<Vec<Vec<(usize, f32)>>> {
    if !queries.is_empty() && !docs.is_empty() && queries.dim() != docs.dim() {
        return Err(EvalError::EncoderOutput(format!(
            "query embeddings have {} dimensions, documents {}",
            queries.dim(),
            docs.dim()
        )));
    }
    let n_docs = docs.len();
    if let Some(t) = tie_rank {
        if t.len() != n_docs {
            return Err(EvalError::Config(
                "tie_rank length != number of documents".into(),
            ));
        }
    }
    if n_docs > u32::MAX as usize {
        return Err(EvalError::Config("more than 2^32 documents".into()));
    }
    let k = k.min(n_docs);
    let qidx: Vec<usize> = (0..queries.len()).collect();
    let out = qidx
        .par_chunks(QUERY_BLOCK)
        .flat_map_iter(|block| {
            let mut heaps: Vec<BinaryHeap<Hit>> = block
                .iter()
                .map(|_| BinaryHeap::with_capacity(k + 1))
                .collect();
            let mut start = 0;
            while start < n_docs {
                let end = (start + DOC_BLOCK).min(n_docs);
                scan(queries, docs, block, &mut heaps, start..end, k, tie_rank);
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

type Tile<'a> = (
    &'a Embeddings,
    &'a Embeddings,
    &'a [usize],
    std::ops::Range<usize>,
    usize,
    Option<&'a [u32]>,
);

/// Scores documents `range` against the query `block`, offering hits to the heaps.
/// Uses AVX2 when the CPU has it: the same code, compiled for wider vectors
/// (Rust never contracts to FMA, so scores are bit-identical either way).
fn scan(
    queries: &Embeddings,
    docs: &Embeddings,
    block: &[usize],
    heaps: &mut [BinaryHeap<Hit>],
    range: std::ops::Range<usize>,
    k: usize,
    tie_rank: Option<&[u32]>,
) {
    let t: Tile = (queries, docs, block, range, k, tie_rank);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { scan_avx2(t, heaps) };
            return;
        }
    }
    scan_body(t, heaps);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_avx2(t: Tile, heaps: &mut [BinaryHeap<Hit>]) {
    scan_body(t, heaps);
}

#[inline(always)]
fn scan_body(t: Tile, heaps: &mut [BinaryHeap<Hit>]) {
    let (queries, docs, block, range, k, tie_rank) = t;
    let (start, end) = (range.start, range.end);
    // Indices are in range by construction (query blocks and document tiles).
    fn row(m: &Embeddings, i: usize) -> &[f32] {
        &m.as_slice()[i * m.dim()..(i + 1) * m.dim()]
    }
    let offer = |h: &mut BinaryHeap<Hit>, d: usize, score: f32| {
        let hit = Hit {
            score,
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
    };
    let mut b = 0;
    // Groups of four queries share each document row load.
    while b + 4 <= block.len() {
        let q = [
            row(queries, block[b]),
            row(queries, block[b + 1]),
            row(queries, block[b + 2]),
            row(queries, block[b + 3]),
        ];
        for d in start..end {
            let s = dot4(q, row(docs, d));
            for j in 0..4 {
                offer(&mut heaps[b + j], d, s[j]);
            }
        }
        b += 4;
    }
    for (h, &q) in heaps[b..].iter_mut().zip(&block[b..]) {
        let qv = row(queries, q);
        for d in start..end {
            offer(h, d, dot(qv, row(docs, d)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg_rows(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                (0..dim)
                    .map(|_| {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn top_k_equals_full_sort() {
        // 13 queries (a 4-block remainder path too), 1100 docs (several tiles), dim 37.
        let q = Embeddings::from_rows(37, &lcg_rows(13, 37, 1)).unwrap();
        let mut drows = lcg_rows(1100, 37, 2);
        drows[17] = drows[5].clone(); // exact tie
        let d = Embeddings::from_rows(37, &drows).unwrap();
        let got = top_k(&q, &d, 50, None).unwrap();
        for (qi, hits) in got.iter().enumerate() {
            let mut all: Vec<(usize, f32)> = (0..d.len())
                .map(|j| (j, dot(q.row(qi).unwrap(), d.row(j).unwrap())))
                .collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
            assert_eq!(hits, &all[..50].to_vec(), "query {qi}");
        }
    }

    #[test]
    fn dot4_matches_dot() {
        let r = lcg_rows(5, 45, 3);
        let s = dot4([&r[0], &r[1], &r[2], &r[3]], &r[4]);
        for j in 0..4 {
            assert_eq!(s[j].to_bits(), dot(&r[j], &r[4]).to_bits());
        }
    }
}
