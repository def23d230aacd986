//! Marqo's GCL retrieval protocol (eval_gs_v1): weight rescaling, weighted query
//! sampling, fused multi-field embeddings, exact top-k cosine retrieval over the whole
//! corpus, and graded qrels = rescaled weights.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Serialize;

use gclip_progress::Progress;
use gclip_vectors::{Embeddings, FieldEncoder};

use crate::data::{fuse, FieldKind, FieldSpec, Table};
use crate::encoder::check_batch;
use crate::error::{EvalError, Result};
use crate::metrics::{evaluate, Evaluation, MetricConfig, MetricValues, Qrels, Run};
use crate::sampling::{rescale_weights, weighted_sample_without_replacement};
use crate::search::top_k;

/// The cut-offs of eval_gs_v1 (those above `top_k` are dropped by the CLI).
pub const MARQO_CUTOFFS: &[usize] = &[
    1, 2, 3, 4, 5, 6, 8, 10, 12, 20, 30, 40, 50, 60, 70, 80, 90, 100, 200, 500, 1000,
];

/// Suffix eval_gs_v1 appends to each left-field value to build a query key; kept
/// because it decides the key order, and so which queries the seed picks.
const QUERY_KEY_SUFFIX: &str = "_{!@#~}_";

/// Settings of the retrieval protocol.
#[derive(Debug, Clone)]
pub struct RetrievalConfig {
    /// Query-side fields (Marqo's leftKeys / leftWeights).
    pub left: Vec<FieldSpec>,
    /// Document-side fields (Marqo's rightKeys / rightWeights).
    pub right: Vec<FieldSpec>,
    /// Column holding the pair weight; absent or constant -> every weight is 1.
    pub weight_key: Option<String>,
    /// Column identifying documents (in the data file and in the corpus).
    pub doc_id_key: String,
    /// Column identifying queries; `None` = the left-field values.
    pub query_id_key: Option<String>,
    /// Number of queries to sample; `None` = all (clamped to those with weight > 0).
    pub num_queries: Option<usize>,
    /// Documents retrieved per query, and maximum judged documents per query.
    pub top_k: usize,
    /// Sampling seed (numpy `RandomState` seed; Marqo uses 1).
    pub seed: u32,
    /// Measures.
    pub metrics: MetricConfig,
    /// Inputs per encoder call.
    pub batch_size: usize,
    /// Progress bars while embedding queries and documents.
    pub progress: Progress,
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        let f = |k: &str, w: f32| FieldSpec {
            key: k.into(),
            weight: w,
            kind: None,
        };
        Self {
            left: vec![f("query", 1.0)],
            right: vec![f("image", 0.9), f("title", 0.1)],
            weight_key: Some("score".into()),
            doc_id_key: "product_id".into(),
            query_id_key: None,
            num_queries: Some(2000),
            top_k: 1000,
            seed: 1,
            metrics: MetricConfig::with_cutoffs(MARQO_CUTOFFS.to_vec()),
            batch_size: 256,
            progress: Progress::Bar,
        }
    }
}

/// A sampled query.
#[derive(Debug, Clone, Serialize)]
pub struct SampledQuery {
    /// Id used in the run and qrels (`q<n>`, n = position in key order).
    pub qid: String,
    /// The query key (query id column, or the left-field values joined by " | ").
    pub key: String,
    /// Summed rescaled weight (its sampling weight).
    pub weight: i64,
}

/// Outcome of [`evaluate_retrieval`].
#[derive(Debug, Clone)]
pub struct RetrievalReport {
    /// Metric values.
    pub evaluation: Evaluation,
    /// The sampled queries, in sampling order.
    pub queries: Vec<SampledQuery>,
    /// Distinct queries available for sampling.
    pub num_candidate_queries: usize,
    /// Corpus size.
    pub num_documents: usize,
    /// The retrieval run (top `top_k` per query).
    pub run: Run,
    /// The qrels built from the data.
    pub qrels: Qrels,
    /// Model id of the encoder.
    pub model_id: String,
    /// Fields with their resolved kinds.
    pub left: Vec<FieldSpec>,
    /// Fields with their resolved kinds.
    pub right: Vec<FieldSpec>,
    /// Settings used.
    pub top_k: usize,
    /// Settings used.
    pub seed: u32,
    /// Settings used.
    pub num_queries_requested: Option<usize>,
}

#[derive(Serialize)]
struct Protocol<'a> {
    model: &'a str,
    num_documents: usize,
    num_candidate_queries: usize,
    num_queries_requested: Option<usize>,
    top_k: usize,
    seed: u32,
    left: &'a [FieldSpec],
    right: &'a [FieldSpec],
}

#[derive(Serialize)]
struct QueryRow<'a> {
    query: &'a str,
    weight: i64,
    #[serde(flatten)]
    metrics: MetricValues<'a>,
}

#[derive(Serialize)]
struct ReportJson<'a> {
    #[serde(flatten)]
    means: MetricValues<'a>,
    num_queries: usize,
    protocol: Protocol<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    per_query: Option<BTreeMap<&'a str, QueryRow<'a>>>,
}

impl RetrievalReport {
    /// JSON: metric means at top level (`"ndcg@10": ...`), `num_queries`, the
    /// `protocol` settings and, if asked, `per_query` values.
    pub fn to_json(&self, per_query: bool) -> Result<String> {
        let info: HashMap<&str, &SampledQuery> =
            self.queries.iter().map(|q| (q.qid.as_str(), q)).collect();
        let per_query = per_query.then(|| {
            self.evaluation
                .per_query
                .iter()
                .map(|(qid, v)| {
                    let q = info.get(qid.as_str());
                    (
                        qid.as_str(),
                        QueryRow {
                            query: q.map_or("", |q| q.key.as_str()),
                            weight: q.map_or(0, |q| q.weight),
                            metrics: MetricValues {
                                metrics: &self.evaluation.metrics,
                                values: v,
                            },
                        },
                    )
                })
                .collect()
        });
        let j = ReportJson {
            means: self.evaluation.means(),
            num_queries: self.evaluation.num_queries,
            protocol: Protocol {
                model: &self.model_id,
                num_documents: self.num_documents,
                num_candidate_queries: self.num_candidate_queries,
                num_queries_requested: self.num_queries_requested,
                top_k: self.top_k,
                seed: self.seed,
                left: &self.left,
                right: &self.right,
            },
            per_query,
        };
        Ok(serde_json::to_string_pretty(&j)?)
    }
}

struct Docs {
    ids: Vec<String>,
    /// Row of the table each document's fields come from.
    rows: Vec<usize>,
    /// Without a document-id column: field values -> assigned id `d<n>`.
    synthetic: HashMap<String, String>,
}

fn resolve_kinds(
    specs: &[FieldSpec],
    table: &Table,
    role: &str,
) -> Result<Vec<(FieldSpec, usize)>> {
    specs
        .iter()
        .map(|s| {
            let col = table.require(&s.key, role)?;
            let kind = s.kind.unwrap_or_else(|| FieldKind::detect(table, col));
            Ok((
                FieldSpec {
                    kind: Some(kind),
                    ..s.clone()
                },
                col,
            ))
        })
        .collect()
}

/// What [`embed_rows`] embeds and how it reports.
struct RowJob<'a> {
    table: &'a Table,
    fields: &'a [(FieldSpec, usize)],
    rows: &'a [usize],
    names: &'a dyn Fn(usize) -> String,
    batch: usize,
    progress: Progress,
    what: &'static str,
}

/// Embeds the given table rows through the fused fields, `batch` rows at a time; the
/// result is one unit-norm row per table row.
fn embed_rows(enc: &mut dyn FieldEncoder, job: &RowJob<'_>) -> Result<Embeddings> {
    let RowJob {
        table,
        fields,
        rows,
        names,
        batch,
        ..
    } = *job;
    let weights: Vec<f32> = fields.iter().map(|(s, _)| s.weight).collect();
    let mut out: Option<Embeddings> = None;
    let pb = job.progress.bar(rows.len() as u64, job.what);
    for (chunk_no, chunk) in rows.chunks(batch.max(1)).enumerate() {
        let mut per_field: Vec<Vec<Option<Vec<f32>>>> = Vec::with_capacity(fields.len());
        for (spec, col) in fields {
            let present: Vec<(usize, &str)> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, &r)| table.rows[r][*col].as_deref().map(|v| (i, v)))
                .collect();
            let mut slot = vec![None; chunk.len()];
            if !present.is_empty() {
                let vecs = if spec.kind == Some(FieldKind::Image) {
                    let paths: Vec<PathBuf> =
                        present.iter().map(|(_, v)| table.resolve(v)).collect();
                    enc.encode_images(&paths).map_err(EvalError::Encoder)?
                } else {
                    let texts: Vec<String> = present.iter().map(|(_, v)| v.to_string()).collect();
                    enc.encode_texts(&texts).map_err(EvalError::Encoder)?
                };
                check_batch(present.len(), &vecs)?;
                for ((i, _), v) in present.iter().zip(vecs.rows()) {
                    slot[*i] = Some(v.to_vec());
                }
            }
            per_field.push(slot);
        }
        for (i, _) in chunk.iter().enumerate() {
            let fields_i: Vec<Option<&[f32]>> = per_field.iter().map(|f| f[i].as_deref()).collect();
            let name = || names(chunk_no * batch.max(1) + i);
            let fused = fuse(&fields_i, &weights)
                .map_err(|e| {
                    EvalError::EncoderOutput(format!("fields of {} do not fuse: {e}", name()))
                })?
                .ok_or_else(|| {
                    EvalError::Config(format!(
                        "{} has no non-empty field with a positive weight among {:?}",
                        name(),
                        fields.iter().map(|(s, _)| &s.key).collect::<Vec<_>>()
                    ))
                })?;
            match &mut out {
                Some(o) => o
                    .push(&fused)
                    .map_err(|e| EvalError::EncoderOutput(format!("{}: {e}", name())))?,
                None => out = Some(Embeddings::new(fused.len(), fused)?),
            }
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    // No rows: a 1-dimensional empty batch (retrieval over nothing finds nothing).
    Ok(match out {
        Some(o) => o,
        None => Embeddings::empty(1)?,
    })
}

/// The model-independent part of the protocol: the sampled queries, the corpus and the
/// qrels. Any ranking (an embedding model, an oracle) is scored against the same sample.
struct Prepared {
    queries: Vec<SampledQuery>,
    /// First data row of each sampled query (where its fields are read from).
    query_rows: Vec<usize>,
    num_candidate_queries: usize,
    docs: Docs,
    qrels: Qrels,
    left: Vec<(FieldSpec, usize)>,
    right: Vec<(FieldSpec, usize)>,
}

impl Prepared {
    /// trec_eval orders equal scores by document id; this rank reproduces that order so
    /// the top-k cut is the one trec_eval sees.
    fn tie_rank(&self) -> Vec<u32> {
        let ids = &self.docs.ids;
        let mut by_id: Vec<usize> = (0..ids.len()).collect();
        by_id.sort_by(|&a, &b| ids[a].as_bytes().cmp(ids[b].as_bytes()));
        let mut tie = vec![0u32; ids.len()];
        for (pos, &d) in by_id.iter().enumerate() {
            tie[d] = pos as u32;
        }
        tie
    }

    fn report(self, run: Run, model_id: String, cfg: &RetrievalConfig) -> Result<RetrievalReport> {
        // Every sampled query is in the qrels; count one that retrieved nothing as 0.
        let evaluation = evaluate(&run, &self.qrels, &cfg.metrics, true)?;
        Ok(RetrievalReport {
            evaluation,
            num_candidate_queries: self.num_candidate_queries,
            queries: self.queries,
            num_documents: self.docs.ids.len(),
            run,
            qrels: self.qrels,
            model_id,
            left: self.left.into_iter().map(|(s, _)| s).collect(),
            right: self.right.into_iter().map(|(s, _)| s).collect(),
            top_k: cfg.top_k,
            seed: cfg.seed,
            num_queries_requested: cfg.num_queries,
        })
    }
}

fn prepare(data: &Table, corpus: Option<&Table>, cfg: &RetrievalConfig) -> Result<Prepared> {
    cfg.metrics.validate()?;
    if cfg.top_k == 0 {
        return Err(EvalError::Config("top_k must be positive".into()));
    }

    // Weights, rescaled over the whole file as eval_gs_v1 does.
    let raw: Vec<f64> = match cfg.weight_key.as_deref().and_then(|k| data.column(k)) {
        Some(col) => data
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let cell = r[col].as_deref().unwrap_or("");
                cell.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| EvalError::Data {
                        path: data.source.clone(),
                        msg: format!(
                            "row {}: weight {cell:?} in column {:?} is not a finite number",
                            i + 1,
                            data.columns[col]
                        ),
                    })
            })
            .collect::<Result<_>>()?,
        None => vec![1.0; data.rows.len()],
    };
    let weights = rescale_weights(&raw);

    // Group rows by query key (rows missing a key field are not queries, as in pandas).
    let left = resolve_kinds(&cfg.left, data, "query field")?;
    let qid_col = match &cfg.query_id_key {
        Some(k) => Some(data.require(k, "query id")?),
        None => None,
    };
    let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, r) in data.rows.iter().enumerate() {
        let key = match qid_col {
            Some(c) => r[c].clone(),
            None => left
                .iter()
                .map(|(_, c)| r[*c].as_deref().map(|v| format!("{v}{QUERY_KEY_SUFFIX}")))
                .collect::<Option<String>>(),
        };
        if let Some(k) = key {
            groups.entry(k).or_default().push(i);
        }
    }
    let mut keys: Vec<String> = groups.keys().cloned().collect();
    // pandas groupby sorts keys: numerically for an integer id column, else by string.
    let numeric: Option<Vec<i64>> =
        qid_col.and_then(|_| keys.iter().map(|k| k.parse().ok()).collect());
    if numeric.is_some() {
        keys.sort_by_key(|k| k.parse::<i64>().unwrap_or(0));
    } else {
        keys.sort();
    }
    let group_weight: Vec<i64> = keys
        .iter()
        .map(|k| groups[k].iter().map(|&r| weights[r]).sum())
        .collect();
    let n_requested = cfg.num_queries.unwrap_or(keys.len());
    let sampled = weighted_sample_without_replacement(
        &group_weight.iter().map(|&w| w as f64).collect::<Vec<_>>(),
        n_requested,
        cfg.seed,
    );
    if sampled.is_empty() {
        return Err(EvalError::Config(format!(
            "{}: no query to evaluate (need rows with all of {:?})",
            data.source.display(),
            cfg.left.iter().map(|s| &s.key).collect::<Vec<_>>()
        )));
    }
    let display_key = |k: &str| {
        if qid_col.is_some() {
            k.to_owned()
        } else {
            k.split(QUERY_KEY_SUFFIX)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" | ")
        }
    };
    let queries: Vec<SampledQuery> = sampled
        .iter()
        .map(|&g| SampledQuery {
            qid: format!("q{g}"),
            key: display_key(&keys[g]),
            weight: group_weight[g],
        })
        .collect();

    // Corpus.
    let doc_table = corpus.unwrap_or(data);
    let right = resolve_kinds(&cfg.right, doc_table, "document field")?;
    let data_doc_col = data.column(&cfg.doc_id_key);
    let docs = match corpus {
        Some(c) => {
            let col = c.require(&cfg.doc_id_key, "document id")?;
            data.require(&cfg.doc_id_key, "document id")?;
            let mut seen = HashMap::new();
            let mut ids = Vec::new();
            let mut rows = Vec::new();
            for (i, r) in c.rows.iter().enumerate() {
                let id = r[col].clone().ok_or_else(|| EvalError::Data {
                    path: c.source.clone(),
                    msg: format!("row {}: empty document id", i + 1),
                })?;
                if seen.insert(id.clone(), i).is_some() {
                    return Err(EvalError::Data {
                        path: c.source.clone(),
                        msg: format!("document id {id:?} appears twice"),
                    });
                }
                ids.push(id);
                rows.push(i);
            }
            Docs {
                ids,
                rows,
                synthetic: HashMap::new(),
            }
        }
        None => unique_docs(data, data_doc_col, &right),
    };
    let row_doc_id = |r: usize| -> Option<String> {
        match data_doc_col {
            Some(c) => data.rows[r][c].clone(),
            None => docs.synthetic.get(&synthetic_key(data, r, &right)).cloned(),
        }
    };

    // Qrels: the top_k rows of each sampled query by weight; relevance = rescaled weight.
    let mut qrels = Qrels::new();
    for (q, &g) in queries.iter().zip(&sampled) {
        let mut rows = groups[&keys[g]].clone();
        rows.sort_by_key(|&r| std::cmp::Reverse(weights[r]));
        let mut best: HashMap<String, i64> = HashMap::new();
        for &r in rows.iter().take(cfg.top_k) {
            if let Some(d) = row_doc_id(r) {
                let e = best.entry(d).or_insert(weights[r]);
                *e = (*e).max(weights[r]);
            }
        }
        for (d, w) in best {
            qrels.insert(&q.qid, &d, w)?;
        }
    }
    let query_rows: Vec<usize> = sampled.iter().map(|&g| groups[&keys[g]][0]).collect();
    Ok(Prepared {
        queries,
        query_rows,
        num_candidate_queries: keys.len(),
        docs,
        qrels,
        left,
        right,
    })
}

/// Runs the protocol on `data` (query-document pairs with weights) against `corpus`
/// (or, if `None`, the distinct documents of `data`).
pub fn evaluate_retrieval(
    data: &Table,
    corpus: Option<&Table>,
    cfg: &RetrievalConfig,
    enc: &mut dyn FieldEncoder,
) -> Result<RetrievalReport> {
    let model_id = enc.model_id();
    let p = prepare(data, corpus, cfg)?;
    let doc_table = corpus.unwrap_or(data);

    let qmat = embed_rows(
        enc,
        &RowJob {
            table: data,
            fields: &p.left,
            rows: &p.query_rows,
            names: &|i| format!("query {:?}", p.queries[i].key),
            batch: cfg.batch_size,
            progress: cfg.progress,
            what: "embedding queries",
        },
    )?;
    let dmat = embed_rows(
        enc,
        &RowJob {
            table: doc_table,
            fields: &p.right,
            rows: &p.docs.rows,
            names: &|i| format!("document {:?}", p.docs.ids[i]),
            batch: cfg.batch_size,
            progress: cfg.progress,
            what: "embedding documents",
        },
    )?;

    let hits = top_k(&qmat, &dmat, cfg.top_k, Some(&p.tie_rank()))?;
    let mut run = Run::new();
    for (q, h) in p.queries.iter().zip(&hits) {
        for &(d, s) in h {
            run.push(&q.qid, &p.docs.ids[d], s as f64);
        }
    }
    p.report(run, model_id, cfg)
}

/// Runs the protocol with a scoring function instead of a model: `score(query, document)`
/// gets the query key (the query-id column's value when [`RetrievalConfig::query_id_key`]
/// is set, else the query fields' text) and the document id; higher is better. The same
/// query sample, qrels, top-k cut and tie order as [`evaluate_retrieval`], so an oracle or
/// a lexical baseline reads on the same scale as a model. `name` is reported as the model.
pub fn evaluate_scorer(
    data: &Table,
    corpus: Option<&Table>,
    cfg: &RetrievalConfig,
    name: &str,
    score: &(dyn Fn(&str, &str) -> f64 + Sync),
) -> Result<RetrievalReport> {
    use rayon::prelude::*;
    let p = prepare(data, corpus, cfg)?;
    let tie = p.tie_rank();
    let ids = &p.docs.ids;
    let k = cfg.top_k.min(ids.len());
    let ranked: Vec<Vec<(usize, f64)>> = p
        .queries
        .par_iter()
        .map(|q| {
            let mut all: Vec<(usize, f64)> = ids
                .iter()
                .enumerate()
                .map(|(d, id)| (d, score(&q.key, id)))
                .collect();
            for (d, s) in &all {
                if !s.is_finite() {
                    return Err(EvalError::Config(format!(
                        "{name}: score of query {:?} and document {:?} is not finite",
                        q.key, ids[*d]
                    )));
                }
            }
            // Equal scores: larger tie rank first, as trec_eval (docno descending).
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(tie[b.0].cmp(&tie[a.0])));
            all.truncate(k);
            Ok(all)
        })
        .collect::<Result<_>>()?;
    let mut run = Run::new();
    for (q, h) in p.queries.iter().zip(&ranked) {
        for &(d, s) in h {
            run.push(&q.qid, &ids[d], s);
        }
    }
    p.report(run, name.to_owned(), cfg)
}

/// Identity of a document when the data has no document-id column: its field values,
/// so equal documents share an id.
fn synthetic_key(data: &Table, row: usize, right: &[(FieldSpec, usize)]) -> String {
    right
        .iter()
        .map(|(_, c)| data.rows[row][*c].as_deref().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\u{1f}")
}

fn unique_docs(data: &Table, id_col: Option<usize>, right: &[(FieldSpec, usize)]) -> Docs {
    let mut seen = HashMap::new();
    let mut synthetic = HashMap::new();
    let mut ids = Vec::new();
    let mut rows = Vec::new();
    for (i, r) in data.rows.iter().enumerate() {
        let id = match id_col {
            Some(c) => match &r[c] {
                Some(v) => v.clone(),
                None => continue,
            },
            None => {
                let n = synthetic.len();
                synthetic
                    .entry(synthetic_key(data, i, right))
                    .or_insert_with(|| format!("d{n}"))
                    .clone()
            }
        };
        if seen.insert(id.clone(), ()).is_none() {
            ids.push(id);
            rows.push(i);
        }
    }
    Docs {
        ids,
        rows,
        synthetic,
    }
}
