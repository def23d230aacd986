//! Weight rescaling and weighted query sampling against pandas / numpy (fixture
//! sampling.json from tests/fixtures/reference/generate_eval.py).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gclip_eval::data::Table;
use gclip_eval::sampling::{rescale_weights, weighted_sample_without_replacement, Mt19937};
use gclip_eval::{BoxError, FieldEncoder, RetrievalConfig};
use serde_json::Value;

fn load() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/reference/eval/sampling.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn mt19937_matches_reference_sequence() {
    // First outputs of init_genrand(5489), from the MT19937 reference implementation.
    let mut r = Mt19937::new(5489);
    assert_eq!(r.next_u32(), 3_499_211_612);
    assert_eq!(r.next_u32(), 581_869_302);
    assert_eq!(r.next_u32(), 3_890_346_734);
}

#[test]
fn rescaling_matches_pandas() {
    let f = load();
    let raw: Vec<f64> = f["rows_raw_weight"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let want: Vec<i64> = f["rows_rescaled_weight"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(rescale_weights(&raw), want);
    assert_eq!(rescale_weights(&[3.0, 3.0]), vec![1, 1]);
}

#[test]
fn sampling_matches_pandas_draw_order() {
    let f = load();
    let keys = strings(&f["group_keys"]);
    let weights: Vec<f64> = f["group_weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for case in f["cases"].as_array().unwrap() {
        let n = case["n"].as_u64().unwrap() as usize;
        let seed = case["seed"].as_u64().unwrap() as u32;
        let got: Vec<String> = weighted_sample_without_replacement(&weights, n, seed)
            .into_iter()
            .map(|i| keys[i].clone())
            .collect();
        assert_eq!(got, strings(&case["sampled"]), "n={n} seed={seed}");
    }
}

struct Constant;
impl FieldEncoder for Constant {
    fn encode_texts(&mut self, t: &[String]) -> Result<gclip_eval::Embeddings, BoxError> {
        let rows: Vec<Vec<f32>> = t.iter().map(|s| vec![1.0, s.len() as f32]).collect();
        Ok(gclip_eval::Embeddings::from_rows(2, &rows)?)
    }
    fn encode_images(&mut self, p: &[PathBuf]) -> Result<gclip_eval::Embeddings, BoxError> {
        let rows: Vec<Vec<f32>> = p.iter().map(|_| vec![1.0, 0.0]).collect();
        Ok(gclip_eval::Embeddings::from_rows(2, &rows)?)
    }
    fn model_id(&self) -> String {
        "constant".into()
    }
}

#[test]
fn protocol_samples_the_same_queries_as_eval_gs_v1() {
    // Build the fixture's rows as a data table and let the protocol group, rescale and
    // sample: the sampled query set must be pandas'.
    let f = load();
    let queries = strings(&f["rows_query"]);
    let raw = f["rows_raw_weight"].as_array().unwrap();
    let table = Table {
        columns: vec![
            "query".into(),
            "score".into(),
            "product_id".into(),
            "title".into(),
        ],
        rows: queries
            .iter()
            .zip(raw)
            .enumerate()
            .map(|(i, (q, w))| {
                vec![
                    Some(q.clone()),
                    Some(format!("{}", w.as_f64().unwrap())),
                    Some(format!("p{i}")),
                    Some("t".into()),
                ]
            })
            .collect(),
        base_dir: Path::new(".").to_owned(),
        source: "fixture".into(),
    };
    for case in f["cases"].as_array().unwrap() {
        let cfg = RetrievalConfig {
            right: gclip_eval::FieldSpec::list(&["title".into()], &[], &[]).unwrap(),
            num_queries: Some(case["n"].as_u64().unwrap() as usize),
            seed: case["seed"].as_u64().unwrap() as u32,
            top_k: 10,
            metrics: gclip_eval::MetricConfig::with_cutoffs(vec![1, 10]),
            ..RetrievalConfig::default()
        };
        let rep = gclip_eval::evaluate_retrieval(&table, None, &cfg, &mut Constant).unwrap();
        let got: Vec<&str> = rep.queries.iter().map(|q| q.key.as_str()).collect();
        let want: Vec<String> = strings(&case["sampled"])
            .into_iter()
            .map(|k| k.trim_end_matches("_{!@#~}_").to_owned())
            .collect();
        assert_eq!(got, want);
        // Summed rescaled weights are the sampling weights.
        let mut sums: BTreeMap<&str, i64> = BTreeMap::new();
        let rescaled = f["rows_rescaled_weight"].as_array().unwrap();
        for (q, w) in queries.iter().zip(rescaled) {
            *sums.entry(q.as_str()).or_default() += w.as_i64().unwrap();
        }
        for q in &rep.queries {
            assert_eq!(sums[q.key.as_str()], q.weight);
        }
    }
}
