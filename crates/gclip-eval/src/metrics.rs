//! Ranking metrics with trec_eval's exact semantics, plus MRR@k, ERR and RBP.
//!
//! Conventions (all taken from trec_eval 9.x, the code behind pytrec_eval):
//! * a query's run is ranked by score descending, ties broken by docno descending
//!   (byte order); the rank column of a TREC run file is ignored;
//! * a document is *relevant* when its qrels value is `>= relevance_level` (default 1);
//!   documents absent from the qrels are non-relevant with gain 0, negative qrels
//!   values mean "judged as unjudged" and also have gain 0;
//! * `ndcg@k` uses gain = qrels value (> 0), discount `log2(rank + 1)`, and the ideal
//!   ranking of the qrels values; `map@k` divides by the number of relevant documents
//!   in the qrels (not the number retrieved); `precision@k` divides by k even when fewer
//!   than k documents were retrieved; `recall@k`, `map@k` are 0 for a query without
//!   relevant documents;
//! * means are over the queries present in both run and qrels, or, with
//!   `complete` (trec_eval `-c`), over all qrels queries, absent ones scoring 0.
//!
//! MRR@k, ERR and RBP follow Marqo's GCL evaluation (REFERENCE.md section 4) on the same
//! ranking: `mrr@k = 1 / rank` of the first relevant document within the top k;
//! `err = sum_r (1/r) R_r prod_{i<r} (1 - R_i)` with `R = (2^g - 1) / 2^gmax`;
//! `rbp@p = (1 - p) sum_r (g_r / gmax) p^(r-1)`; both over the whole run, `gmax` being
//! the query's largest qrels value; both are 0 when `gmax <= 0`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use rayon::prelude::*;
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::error::{EvalError, Result};

/// Relevance judgements: query id -> document id -> graded relevance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Qrels {
    queries: BTreeMap<String, HashMap<String, i64>>,
}

impl Qrels {
    /// Empty judgements.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one judgement; a second judgement of the same (query, doc) is an error.
    pub fn insert(&mut self, query: &str, doc: &str, relevance: i64) -> Result<()> {
        let q = self.queries.entry(query.to_owned()).or_default();
        if q.insert(doc.to_owned(), relevance).is_some() {
            return Err(EvalError::Duplicate {
                what: "qrels",
                query: query.to_owned(),
                doc: doc.to_owned(),
            });
        }
        Ok(())
    }

    /// Judgements of one query.
    pub fn get(&self, query: &str) -> Option<&HashMap<String, i64>> {
        self.queries.get(query)
    }

    /// Query ids in byte order.
    pub fn queries(&self) -> impl Iterator<Item = &str> {
        self.queries.keys().map(String::as_str)
    }

    /// Number of judged queries.
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    /// True when there are no judgements.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }
}

/// A retrieval run: query id -> retrieved (document id, score) in any order.
#[derive(Debug, Clone, Default)]
pub struct Run {
    queries: BTreeMap<String, Vec<(String, f64)>>,
}

impl Run {
    /// Empty run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one retrieved document. Duplicates are reported by [`evaluate`].
    pub fn push(&mut self, query: &str, doc: &str, score: f64) {
        // Look up before inserting: avoids allocating the query id for every line.
        let entry = (doc.to_owned(), score);
        match self.queries.get_mut(query) {
            Some(v) => v.push(entry),
            None => {
                self.queries.insert(query.to_owned(), vec![entry]);
            }
        }
    }

    /// Retrieved documents of one query, in insertion order.
    pub fn get(&self, query: &str) -> Option<&[(String, f64)]> {
        self.queries.get(query).map(Vec::as_slice)
    }

    /// Query ids in byte order.
    pub fn queries(&self) -> impl Iterator<Item = &str> {
        self.queries.keys().map(String::as_str)
    }

    /// Number of queries with at least one retrieved document.
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    /// True when nothing was retrieved.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }
}

/// One measure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// trec_eval `ndcg_cut.k`.
    Ndcg(usize),
    /// trec_eval `map_cut.k`.
    Map(usize),
    /// trec_eval `recall.k`.
    Recall(usize),
    /// trec_eval `P.k`.
    Precision(usize),
    /// Reciprocal rank of the first relevant document within the top k.
    Mrr(usize),
    /// Expected reciprocal rank (graded), whole run.
    Err,
    /// Rank-biased precision with persistence p, whole run.
    Rbp(f64),
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::Ndcg(k) => write!(f, "ndcg@{k}"),
            Metric::Map(k) => write!(f, "map@{k}"),
            Metric::Recall(k) => write!(f, "recall@{k}"),
            Metric::Precision(k) => write!(f, "precision@{k}"),
            Metric::Mrr(k) => write!(f, "mrr@{k}"),
            Metric::Err => write!(f, "err"),
            Metric::Rbp(p) => write!(f, "rbp@{p}"),
        }
    }
}

/// Which measures to compute.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricConfig {
    /// Cut-offs for ndcg/map/recall/precision/mrr (positive, no duplicates).
    pub cutoffs: Vec<usize>,
    /// Persistence values for RBP, each in (0, 1).
    pub rbp_ps: Vec<f64>,
    /// Minimum qrels value that counts as relevant (trec_eval `-l`, default 1).
    pub relevance_level: i64,
}

impl Default for MetricConfig {
    fn default() -> Self {
        Self {
            cutoffs: vec![1, 3, 5, 10, 100, 1000],
            rbp_ps: vec![0.7, 0.8, 0.9],
            relevance_level: 1,
        }
    }
}

impl MetricConfig {
    /// Default configuration with the given cut-offs.
    pub fn with_cutoffs(cutoffs: Vec<usize>) -> Self {
        Self {
            cutoffs,
            ..Self::default()
        }
    }

    /// Checks cut-offs and RBP persistences.
    pub fn validate(&self) -> Result<()> {
        if self.cutoffs.is_empty() {
            return Err(EvalError::Config("no cut-offs given".into()));
        }
        let mut seen = HashSet::new();
        for &k in &self.cutoffs {
            if k == 0 {
                return Err(EvalError::Config("cut-off 0 is meaningless".into()));
            }
            if !seen.insert(k) {
                return Err(EvalError::Config(format!("cut-off {k} given twice")));
            }
        }
        for &p in &self.rbp_ps {
            if !(p > 0.0 && p < 1.0) {
                return Err(EvalError::Config(format!(
                    "RBP persistence {p} not in (0, 1)"
                )));
            }
        }
        Ok(())
    }

    /// All measures in report order: per kind, every cut-off; then ERR and RBP.
    pub fn metrics(&self) -> Vec<Metric> {
        let mut m = Vec::new();
        for make in [
            Metric::Ndcg,
            Metric::Map,
            Metric::Recall,
            Metric::Precision,
            Metric::Mrr,
        ] {
            m.extend(self.cutoffs.iter().map(|&k| make(k)));
        }
        m.push(Metric::Err);
        m.extend(self.rbp_ps.iter().map(|&p| Metric::Rbp(p)));
        m
    }
}

/// Scores of one query for every measure of a [`MetricConfig`], in [`MetricConfig::metrics`] order.
pub fn evaluate_query(
    retrieved: &[(String, f64)],
    judgements: &HashMap<String, i64>,
    cfg: &MetricConfig,
) -> Vec<f64> {
    let mut order: Vec<usize> = (0..retrieved.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        let (da, sa) = &retrieved[a];
        let (db, sb) = &retrieved[b];
        sb.total_cmp(sa)
            .then_with(|| db.as_bytes().cmp(da.as_bytes()))
    });
    let rels: Vec<i64> = order
        .iter()
        .map(|&i| judgements.get(&retrieved[i].0).copied().unwrap_or(0))
        .collect();
    evaluate_ranked(&rels, judgements.values().copied(), cfg)
}

/// Scores of one query given the qrels values of its ranked list (rank 1 first; 0 for
/// unjudged documents) and all qrels values of the query.
pub fn evaluate_ranked(
    ranked_rels: &[i64],
    judged: impl IntoIterator<Item = i64>,
    cfg: &MetricConfig,
) -> Vec<f64> {
    let level = cfg.relevance_level;
    let mut ideal: Vec<i64> = Vec::new();
    let mut num_rel = 0usize;
    let mut gmax = 0i64;
    for r in judged {
        if r > 0 {
            ideal.push(r);
        }
        if r >= level {
            num_rel += 1;
        }
        gmax = gmax.max(r);
    }
    ideal.sort_unstable_by(|a, b| b.cmp(a));

    let n = ranked_rels.len();
    // Prefix sums accumulated in rank order, exactly as trec_eval adds them.
    let mut dcg = vec![0.0f64; n + 1];
    let mut rel_ret = vec![0usize; n + 1];
    let mut ap = vec![0.0f64; n + 1];
    let mut first_rel = None;
    for (i, &r) in ranked_rels.iter().enumerate() {
        dcg[i + 1] = dcg[i];
        if r > 0 {
            dcg[i + 1] += r as f64 / ((i + 2) as f64).log2();
        }
        rel_ret[i + 1] = rel_ret[i];
        ap[i + 1] = ap[i];
        if r >= level {
            rel_ret[i + 1] += 1;
            ap[i + 1] += rel_ret[i + 1] as f64 / (i + 1) as f64;
            first_rel.get_or_insert(i + 1);
        }
    }
    let mut idcg = vec![0.0f64; ideal.len() + 1];
    for (i, &g) in ideal.iter().enumerate() {
        idcg[i + 1] = idcg[i] + g as f64 / ((i + 2) as f64).log2();
    }

    let mut out = Vec::with_capacity(cfg.cutoffs.len() * 5 + 1 + cfg.rbp_ps.len());
    let at = |k: usize| k.min(n);
    out.extend(cfg.cutoffs.iter().map(|&k| {
        let ideal_k = idcg[k.min(ideal.len())];
        if ideal_k > 0.0 {
            dcg[at(k)] / ideal_k
        } else {
            0.0
        }
    }));
    let per_rel = |x: f64| if num_rel > 0 { x / num_rel as f64 } else { 0.0 };
    out.extend(cfg.cutoffs.iter().map(|&k| per_rel(ap[at(k)])));
    out.extend(cfg.cutoffs.iter().map(|&k| per_rel(rel_ret[at(k)] as f64)));
    out.extend(
        cfg.cutoffs
            .iter()
            .map(|&k| rel_ret[at(k)] as f64 / k as f64),
    );
    out.extend(cfg.cutoffs.iter().map(|&k| match first_rel {
        Some(r) if r <= k => 1.0 / r as f64,
        _ => 0.0,
    }));

    out.push(err(ranked_rels, gmax));
    out.extend(cfg.rbp_ps.iter().map(|&p| rbp(ranked_rels, gmax, p)));
    out
}

/// Expected reciprocal rank of a ranked list of grades, `gmax` the query's best grade.
pub fn err(ranked_rels: &[i64], gmax: i64) -> f64 {
    if gmax <= 0 {
        return 0.0;
    }
    // powi is exact for powers of two; grades above 1023 would overflow f64 anyway.
    let denom = 2f64.powi(gmax.min(1023) as i32);
    let mut total = 0.0;
    let mut p_continue = 1.0;
    for (i, &g) in ranked_rels.iter().enumerate() {
        let g = g.clamp(0, gmax);
        let r = (2f64.powi(g.min(1023) as i32) - 1.0) / denom;
        total += p_continue * r / (i + 1) as f64;
        p_continue *= 1.0 - r;
    }
    total
}

/// Rank-biased precision with persistence `p` of a ranked list of grades.
pub fn rbp(ranked_rels: &[i64], gmax: i64, p: f64) -> f64 {
    if gmax <= 0 {
        return 0.0;
    }
    let mut total = 0.0;
    let mut weight = 1.0;
    for &g in ranked_rels {
        total += (g.max(0) as f64 / gmax as f64) * weight;
        weight *= p;
    }
    (1.0 - p) * total
}

/// Result of [`evaluate`]: per-query values and means for a list of measures.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Measures, in the column order of `per_query` and `mean`.
    pub metrics: Vec<Metric>,
    /// (query id, values) for every query present in both run and qrels, by query id.
    pub per_query: Vec<(String, Vec<f64>)>,
    /// Mean of each measure over `num_queries` queries.
    pub mean: Vec<f64>,
    /// Denominator of the means (see [`evaluate`]'s `complete`).
    pub num_queries: usize,
}

impl Evaluation {
    /// Mean of the measure named like `ndcg@10`, `err` or `rbp@0.8`.
    pub fn mean_of(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .position(|m| m.to_string() == name)
            .map(|i| self.mean[i])
    }

    /// JSON object mapping each measure name (`ndcg@10`, `err`, `rbp@0.8`, ...) to its
    /// mean, plus `num_queries` and, if asked, `per_query: {qid: {name: value}}`.
    pub fn to_json(&self, per_query: bool) -> Result<String> {
        #[derive(serde::Serialize)]
        struct Json<'a> {
            #[serde(flatten)]
            means: MetricValues<'a>,
            num_queries: usize,
            #[serde(skip_serializing_if = "Option::is_none")]
            per_query: Option<BTreeMap<&'a str, MetricValues<'a>>>,
        }
        let per_query = per_query.then(|| {
            self.per_query
                .iter()
                .map(|(q, v)| {
                    (
                        q.as_str(),
                        MetricValues {
                            metrics: &self.metrics,
                            values: v,
                        },
                    )
                })
                .collect()
        });
        Ok(serde_json::to_string_pretty(&Json {
            means: self.means(),
            num_queries: self.num_queries,
            per_query,
        })?)
    }

    /// The means as an ordered `{name: value}` map that serialises in measure order.
    pub fn means(&self) -> MetricValues<'_> {
        MetricValues {
            metrics: &self.metrics,
            values: &self.mean,
        }
    }
}

/// Measures paired with values; serialises as a JSON object in measure order.
#[derive(Debug, Clone, Copy)]
pub struct MetricValues<'a> {
    /// Measures.
    pub metrics: &'a [Metric],
    /// One value per measure.
    pub values: &'a [f64],
}

impl Serialize for MetricValues<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.metrics.len()))?;
        for (m, v) in self.metrics.iter().zip(self.values) {
            map.serialize_entry(&m.to_string(), v)?;
        }
        map.end()
    }
}

/// Scores `run` against `qrels`.
///
/// Queries only in the run are ignored. Queries only in the qrels are ignored too,
/// unless `complete` is set: then they count as 0 in every mean (trec_eval `-c`).
/// A document retrieved twice for one query is an error, as in trec_eval.
pub fn evaluate(
    run: &Run,
    qrels: &Qrels,
    cfg: &MetricConfig,
    complete: bool,
) -> Result<Evaluation> {
    cfg.validate()?;
    let metrics = cfg.metrics();
    let pairs: Vec<_> = qrels
        .queries
        .iter()
        .filter_map(|(q, j)| run.get(q).map(|r| (q.as_str(), r, j)))
        .collect();
    let per_query = pairs
        .par_iter()
        .map(|&(q, retrieved, judged)| {
            let mut seen = HashSet::with_capacity(retrieved.len());
            for (d, _) in retrieved {
                if !seen.insert(d.as_str()) {
                    return Err(EvalError::Duplicate {
                        what: "run",
                        query: q.to_owned(),
                        doc: d.clone(),
                    });
                }
            }
            Ok((q.to_owned(), evaluate_query(retrieved, judged, cfg)))
        })
        .collect::<Result<Vec<_>>>()?;
    let num_queries = if complete {
        qrels.len()
    } else {
        per_query.len()
    };
    let mut mean = vec![0.0; metrics.len()];
    for (_, v) in &per_query {
        for (m, x) in mean.iter_mut().zip(v) {
            *m += x;
        }
    }
    if num_queries > 0 {
        for m in &mut mean {
            *m /= num_queries as f64;
        }
    }
    Ok(Evaluation {
        metrics,
        per_query,
        mean,
        num_queries,
    })
}
