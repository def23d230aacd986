//! The ANN benchmark behind `gclip index bench`: builds the graph over a base set, computes
//! exact ground truth, and measures recall@k and queries per second (one query at a time per
//! thread) for each beam width, optionally with a filter of given selectivity.

use crate::hnsw::{Cand, Hnsw};
use crate::settings::VectorNumericType;
use crate::space;
use crate::vectors::{Metric, VectorData};
use rayon::prelude::*;
use serde_json::{json, Value};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub k: usize,
    pub efs: Vec<usize>,
    pub m: usize,
    pub ef_construction: usize,
    pub threads: usize,
    pub build_threads: usize,
    pub precision: VectorNumericType,
    /// Fractions of the base a filter lets through (e.g. 0.01, 0.1); empty for none.
    pub filter_selectivity: Vec<f64>,
}

fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n.max(1))
        .build()
        .expect("a rayon pool of a few threads")
}

/// Each query pass is timed this many times and the fastest counts: on a shared machine other
/// jobs only ever slow a pass down (bench/compare_faiss.py times faiss the same way).
pub const ROUNDS: usize = 3;

/// Whether base row `i` passes a filter that keeps about `sel` of the rows (hash-spread).
fn passes(i: u32, sel: f64) -> bool {
    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    (h as f64) < sel * (1u64 << 24) as f64
}

/// Runs the benchmark; `emit` receives each JSON result line as it is ready.
pub fn run(
    dim: usize,
    base: &[f32],
    queries: &[f32],
    cfg: &BenchConfig,
    emit: &mut dyn FnMut(Value),
) -> crate::Result<()> {
    if dim == 0 || !base.len().is_multiple_of(dim) || !queries.len().is_multiple_of(dim) {
        return Err(crate::Error::InvalidArgument(
            "base and queries must share one dimension".into(),
        ));
    }
    let n = base.len() / dim;
    let nq = queries.len() / dim;
    // As in an index: with codes, the float32 rows live in a memory-mapped scratch file.
    let rows_path = std::env::temp_dir().join(format!("gclip-bench-{}.f32", std::process::id()));
    let io = |e| crate::Error::io(&rows_path, e);
    let anon0 = rss_anon_bytes();
    let mut v = VectorData::spilled(dim, Metric::Dot, cfg.precision, &rows_path).map_err(io)?;
    v.reserve(n).map_err(io)?;
    for r in base.chunks_exact(dim) {
        v.push(r).map_err(io)?;
    }
    let anon1 = rss_anon_bytes();
    // Tuning aid: `GCLIP_BENCH_GRAPH=FILE` loads the graph from FILE when it is there (same
    // base, m and efConstruction assumed) and saves it there after a build, so search-side
    // changes can be compared without rebuilding.
    let cached = std::env::var_os("GCLIP_BENCH_GRAPH").map(std::path::PathBuf::from);
    let loaded = cached
        .as_ref()
        .and_then(|p| std::fs::File::open(p).ok())
        .and_then(|f| {
            Hnsw::read_from(&mut std::io::BufReader::new(f))
                .ok()
                .flatten()
        })
        .filter(|g| g.len() == n && g.m() == cfg.m);
    let graph_loaded = loaded.is_some();
    let t0 = Instant::now();
    let g = match loaded {
        Some(g) => g,
        None => {
            let mut g = Hnsw::new(cfg.m, cfg.ef_construction, 0x5eed);
            g.grow(n);
            let bp = pool(cfg.build_threads);
            let b = space::Build(&v);
            let bar = indicatif::ProgressBar::new(n as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("building {bar:40} {pos}/{len} {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let order = g.insertion_order(0, n as u32);
            bp.install(|| g.insert_all(&b, &order, &|k| bar.inc(k as u64)));
            bar.finish_and_clear();
            if let Some(p) = &cached {
                let mut w = std::io::BufWriter::new(
                    std::fs::File::create(p).map_err(|e| crate::Error::io(p, e))?,
                );
                g.write_to(&mut w).map_err(|e| crate::Error::io(p, e))?;
            }
            g
        }
    };
    let build_s = t0.elapsed().as_secs_f64();
    let qp = pool(cfg.threads);
    let k = cfg.k;
    let truth = |accept: Option<&(dyn Fn(u32) -> bool + Sync)>| -> Vec<Vec<u32>> {
        qp.install(|| {
            queries
                .par_chunks_exact(dim)
                .map(|q| {
                    let mut all: Vec<Cand> = (0..n as u32)
                        .filter(|&i| accept.is_none_or(|f| f(i)))
                        .map(|i| Cand {
                            dist: v.exact(q, i),
                            id: i,
                        })
                        .collect();
                    let kk = k.min(all.len());
                    if kk > 0 {
                        all.select_nth_unstable(kk - 1);
                    }
                    all.truncate(kk);
                    all.into_iter().map(|c| c.id).collect()
                })
                .collect()
        })
    };
    let gt = truth(None);
    emit(json!({
        "build_s": build_s,
        "graph_loaded": graph_loaded,
        "n": n, "dim": dim, "queries": nq, "k": k,
        "m": cfg.m, "ef_construction": cfg.ef_construction,
        "build_threads": cfg.build_threads, "threads": cfg.threads,
        "precision": format!("{:?}", cfg.precision).to_lowercase(),
        "isa": format!("{:?}", crate::simd::isa()).to_lowercase(),
        "bytes_per_vector": v.bytes_per_row() + g.bytes_per_node(),
        // Measured: growth of the process's anonymous resident memory (the page cache that
        // holds a spilled store's float32 rows is not counted) over filling the vector store,
        // per vector; `bytes_per_vector` is the accounting of vectors and graph together.
        "vector_store_rss_anon_bytes_per_vector": anon0.zip(anon1).map(|(a, b)| b.saturating_sub(a) as f64 / n.max(1) as f64),
    }));
    let search_one =
        |q: &[f32], ef: usize, accept: Option<&(dyn Fn(u32) -> bool + Sync)>| -> Vec<u32> {
            if cfg.precision == VectorNumericType::Float32 {
                let sp = space::Exact { v: &v, q };
                g.search(&sp, k, ef, accept)
                    .into_iter()
                    .map(|c| c.id)
                    .collect()
            } else {
                let sp = space::Approx {
                    v: &v,
                    q,
                    qn2: crate::simd::dot_f32(q, q),
                };
                let mut r = g.search(&sp, ef.max(k), ef.max(k), accept);
                for c in r.iter_mut() {
                    c.dist = v.exact(q, c.id);
                }
                r.sort_unstable();
                r.into_iter().take(k).map(|c| c.id).collect()
            }
        };
    let recall = |got: &[Vec<u32>], gt: &[Vec<u32>]| -> f64 {
        let hit: usize = got
            .iter()
            .zip(gt)
            .map(|(g, t)| g.iter().filter(|x| t.contains(x)).count())
            .sum();
        let total: usize = gt.iter().map(|t| t.len()).sum();
        hit as f64 / total.max(1) as f64
    };
    let key = format!("recall_at_{k}");
    for &ef in &cfg.efs {
        let mut best = f64::INFINITY;
        let mut got: Vec<Vec<u32>> = Vec::new();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            got = qp.install(|| {
                queries
                    .par_chunks_exact(dim)
                    .with_max_len(1)
                    .map(|q| search_one(q, ef, None))
                    .collect()
            });
            best = best.min(t.elapsed().as_secs_f64());
        }
        emit(json!({"ef": ef, &key: recall(&got, &gt), "qps": nq as f64 / best, "rounds": ROUNDS}));
    }
    for &sel in &cfg.filter_selectivity {
        let accept = move |i: u32| passes(i, sel);
        let allowed_ids: Vec<u32> = (0..n as u32).filter(|&i| passes(i, sel)).collect();
        let allowed = allowed_ids.len();
        let gt_f = truth(Some(&accept));
        // Same policy as the index: scan when the filter keeps few rows.
        let exact = allowed <= 4096 || allowed * 25 <= n;
        for &ef in &cfg.efs {
            let mut best = f64::INFINITY;
            let mut got: Vec<Vec<u32>> = Vec::new();
            for _ in 0..ROUNDS {
                let t = Instant::now();
                got = qp.install(|| {
                    queries
                        .par_chunks_exact(dim)
                        .with_max_len(1)
                        .map(|q| {
                            if exact {
                                let mut all: Vec<Cand> = allowed_ids
                                    .iter()
                                    .map(|&i| Cand {
                                        dist: v.exact(q, i),
                                        id: i,
                                    })
                                    .collect();
                                all.sort_unstable();
                                all.into_iter().take(k).map(|c| c.id).collect()
                            } else {
                                search_one(q, ef, Some(&accept))
                            }
                        })
                        .collect()
                });
                best = best.min(t.elapsed().as_secs_f64());
            }
            emit(json!({
                "filter_selectivity": sel, "allowed": allowed, "ef": ef,
                "mode": if exact { "exact" } else { "graph" },
                &key: recall(&got, &gt_f), "qps": nq as f64 / best, "rounds": ROUNDS
            }));
            if exact {
                break;
            }
        }
    }
    Ok(())
}

/// The process's anonymous resident memory (`RssAnon` in /proc/self/status), where readable.
fn rss_anon_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
