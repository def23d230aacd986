//! gclip's metrics against pytrec_eval-terrier (trec_eval's C code) and the reference
//! ERR / RBP / MRR@k formulas, on the fixtures of
//! tests/fixtures/reference/generate_eval.py.

use std::path::PathBuf;

use gclip_eval::metrics::{evaluate, MetricConfig};
use gclip_eval::trec::{read_qrels, read_run};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/reference/eval")
        .join(name)
}

fn check_case(case: &str) {
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("{case}.expected.json"))).unwrap(),
    )
    .unwrap();
    let run = read_run(&fixture(&format!("{case}.run"))).unwrap();
    let qrels = read_qrels(&fixture(&format!("{case}.qrels"))).unwrap();
    let cfg = MetricConfig {
        cutoffs: expected["cutoffs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect(),
        rbp_ps: expected["rbp_ps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect(),
        relevance_level: 1,
    };
    let mut compared = 0;
    for complete in [false, true] {
        let ev = evaluate(&run, &qrels, &cfg, complete).unwrap();
        let (mean_key, n_key) = if complete {
            ("mean_complete", "num_queries_complete")
        } else {
            ("mean", "num_queries")
        };
        assert_eq!(ev.num_queries as u64, expected[n_key].as_u64().unwrap());
        let exp_mean = expected[mean_key].as_object().unwrap();
        assert_eq!(exp_mean.len(), ev.metrics.len(), "{case}: measure count");
        for (name, v) in exp_mean {
            let got = ev
                .mean_of(name)
                .unwrap_or_else(|| panic!("{case}: no {name}"));
            let want = v.as_f64().unwrap();
            assert!(
                (got - want).abs() < 1e-9,
                "{case} {mean_key} {name}: {got} vs {want}"
            );
            compared += 1;
        }
        let exp_pq = expected["per_query"].as_object().unwrap();
        assert_eq!(
            exp_pq.len(),
            ev.per_query.len(),
            "{case}: evaluated queries"
        );
        for (q, vals) in &ev.per_query {
            let want = &exp_pq[q];
            for (m, got) in ev.metrics.iter().zip(vals) {
                let w = want[m.to_string()].as_f64().unwrap();
                assert!((got - w).abs() < 1e-9, "{case} {q} {m}: {got} vs {w}");
                compared += 1;
            }
        }
    }
    assert!(compared > 100);
}

#[test]
fn handmade_ties_empty_and_missing_queries() {
    check_case("handmade");
}

#[test]
fn graded_relevance_up_to_100() {
    check_case("graded");
}

#[test]
fn binary_relevance() {
    check_case("binary");
}

#[test]
fn tie_break_is_docno_descending() {
    // Two documents tied on score: trec_eval ranks "d2" before "d10" before "d1".
    let mut run = gclip_eval::Run::new();
    let mut qrels = gclip_eval::Qrels::new();
    for d in ["d1", "d10", "d2"] {
        run.push("q", d, 0.5);
    }
    qrels.insert("q", "d10", 1).unwrap();
    let cfg = MetricConfig::with_cutoffs(vec![1, 2]);
    let ev = evaluate(&run, &qrels, &cfg, false).unwrap();
    assert_eq!(ev.mean_of("precision@1"), Some(0.0));
    assert_eq!(ev.mean_of("mrr@2"), Some(0.5));
}

#[test]
fn duplicate_run_document_is_an_error() {
    let mut run = gclip_eval::Run::new();
    let mut qrels = gclip_eval::Qrels::new();
    run.push("q", "a", 1.0);
    run.push("q", "a", 0.5);
    qrels.insert("q", "a", 1).unwrap();
    let err = evaluate(&run, &qrels, &MetricConfig::default(), false).unwrap_err();
    assert!(err.to_string().contains("duplicate"), "{err}");
    assert!(qrels.insert("q", "a", 2).is_err());
}
