//! Plain-text tables of evaluation results.

use std::fmt::Write;

use crate::metrics::{Evaluation, Metric};

/// Renders the means of `eval` as a table: one row per cut-off with nDCG, mAP,
/// recall, precision and MRR columns, then ERR and RBP lines.
pub fn metrics_table(eval: &Evaluation) -> String {
    let mut cutoffs: Vec<usize> = Vec::new();
    for m in &eval.metrics {
        if let Metric::Ndcg(k)
        | Metric::Map(k)
        | Metric::Recall(k)
        | Metric::Precision(k)
        | Metric::Mrr(k) = m
        {
            if !cutoffs.contains(k) {
                cutoffs.push(*k);
            }
        }
    }
    let value = |m: Metric| {
        eval.metrics
            .iter()
            .position(|x| *x == m)
            .map_or_else(|| "-".to_string(), |i| format!("{:.4}", eval.mean[i]))
    };
    let mut s = String::new();
    let _ = writeln!(s, "queries: {}", eval.num_queries);
    let _ = writeln!(
        s,
        "{:>6} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "k", "ndcg", "map", "recall", "precision", "mrr"
    );
    for k in cutoffs {
        let _ = writeln!(
            s,
            "{:>6} {:>8} {:>8} {:>8} {:>9} {:>8}",
            k,
            value(Metric::Ndcg(k)),
            value(Metric::Map(k)),
            value(Metric::Recall(k)),
            value(Metric::Precision(k)),
            value(Metric::Mrr(k)),
        );
    }
    for (m, v) in eval.metrics.iter().zip(&eval.mean) {
        if matches!(m, Metric::Err | Metric::Rbp(_)) {
            let _ = writeln!(s, "{:<10} {v:.4}", m.to_string());
        }
    }
    s
}

/// Renders per-query values in trec_eval `-q` style: `name<TAB>qid<TAB>value`.
pub fn per_query_lines(eval: &Evaluation) -> String {
    let mut s = String::new();
    for (q, vals) in &eval.per_query {
        for (m, v) in eval.metrics.iter().zip(vals) {
            let _ = writeln!(s, "{}\t{q}\t{v:.4}", m);
        }
    }
    s
}
