//! End-to-end GCL protocol on a small generated dataset with a fake deterministic
//! encoder whose geometry is known: a perfect encoder must score 1.0, a reversed one
//! lower; plus the embedding cache, zero-shot and pair recall.

use std::path::{Path, PathBuf};

use gclip_eval::trec::{read_qrels, read_run, write_qrels, write_run};
use gclip_eval::{
    evaluate, evaluate_pairs, evaluate_retrieval, evaluate_zero_shot, BoxError, CachedEncoder,
    Embeddings, EvalError, FieldEncoder, FieldKind, FieldSpec, MetricConfig, RetrievalConfig,
    Table,
};
use serde_json::Value;

const NQ: usize = 6;
const DIM: usize = NQ + 1;

/// Text "query <i>" -> e_i. A document text or image named "<i>_<g>" (query i, grade g)
/// -> e_i + s(g) e_last with s = 1 - g/200 (perfect: higher grade, higher cosine) or
/// g/200 (reversed); grades stay below 200. Anything else -> e_last.
#[derive(Default)]
struct Fake {
    reversed: bool,
    calls: usize,
    inputs: usize,
    /// A weights file whose fingerprint keys the cache.
    weights: Option<PathBuf>,
}

impl Fake {
    fn doc(&self, name: &str) -> Vec<f32> {
        let mut v = vec![0.0; DIM];
        let parsed = name
            .split_once('_')
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<f32>().ok()?)));
        match parsed {
            Some((q, g)) => {
                v[q] = 1.0;
                v[NQ] = if self.reversed {
                    g / 200.0
                } else {
                    1.0 - g / 200.0
                };
            }
            None => v[NQ] = 1.0,
        }
        v
    }
}

impl FieldEncoder for Fake {
    fn encode_texts(&mut self, texts: &[String]) -> Result<Embeddings, BoxError> {
        self.calls += 1;
        self.inputs += texts.len();
        let rows = texts
            .iter()
            .map(|t| match t.strip_prefix("query ") {
                Some(i) => {
                    let mut v = vec![0.0; DIM];
                    v[i.parse::<usize>()?] = 3.0; // unnormalised on purpose
                    Ok(v)
                }
                None => Ok(self.doc(t)),
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        Ok(Embeddings::from_rows(DIM, &rows)?)
    }
    fn encode_images(&mut self, paths: &[PathBuf]) -> Result<Embeddings, BoxError> {
        self.calls += 1;
        self.inputs += paths.len();
        let rows = paths
            .iter()
            .map(|p| {
                std::fs::metadata(p)?; // must resolve relative to the data file
                Ok(self.doc(p.file_stem().and_then(|s| s.to_str()).unwrap_or("")))
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        Ok(Embeddings::from_rows(DIM, &rows)?)
    }
    fn model_id(&self) -> String {
        format!("fake-reversed={}", self.reversed)
    }
    fn weight_files(&self) -> Vec<PathBuf> {
        self.weights.iter().cloned().collect()
    }
}

/// Writes data.csv (query, image, title, product_id, score) under `dir/sub/`, images
/// in `dir/sub/img/`; some titles missing. Returns the data path.
fn make_dataset(dir: &Path) -> PathBuf {
    let sub = dir.join("sub");
    std::fs::create_dir_all(sub.join("img")).unwrap();
    let mut csv = String::from("query,image,title,product_id,score\n");
    for q in 0..NQ {
        for j in 0..(5 + q) {
            let g = 10 + 13 * j as u32 + q as u32; // distinct grades per query
            let name = format!("{q}_{g}");
            std::fs::write(sub.join(format!("img/{name}.png")), name.as_bytes()).unwrap();
            let title = if j % 3 == 1 {
                String::new()
            } else {
                name.clone()
            };
            // raw weights on another scale; rescaling maps them to 1..100
            csv += &format!(
                "query {q},img/{name}.png,{title},P{q}-{j},{}\n",
                g as f64 * 0.37
            );
        }
    }
    let p = sub.join("data.csv");
    std::fs::write(&p, csv).unwrap();
    p
}

fn config() -> RetrievalConfig {
    RetrievalConfig {
        num_queries: Some(4),
        top_k: 20,
        metrics: MetricConfig::with_cutoffs(vec![1, 3, 10, 20]),
        batch_size: 7,
        ..RetrievalConfig::default()
    }
}

#[test]
fn perfect_encoder_scores_one_and_reversed_scores_lower() {
    let dir = tempfile::tempdir().unwrap();
    let data = Table::read(&make_dataset(dir.path()), "product_id").unwrap();
    let cfg = config();
    let perfect = evaluate_retrieval(&data, None, &cfg, &mut Fake::default()).unwrap();
    let reversed = evaluate_retrieval(
        &data,
        None,
        &cfg,
        &mut Fake {
            reversed: true,
            ..Fake::default()
        },
    )
    .unwrap();
    assert_eq!(perfect.queries.len(), 4);
    assert_eq!(perfect.num_documents, (0..NQ).map(|q| 5 + q).sum::<usize>());
    assert_eq!(perfect.right[0].kind, Some(FieldKind::Image));
    assert_eq!(perfect.right[1].kind, Some(FieldKind::Text));
    for name in [
        "ndcg@1",
        "ndcg@3",
        "ndcg@10",
        "ndcg@20",
        "map@20",
        "recall@20",
        "mrr@1",
    ] {
        let p = perfect.evaluation.mean_of(name).unwrap();
        assert!((p - 1.0).abs() < 1e-12, "perfect {name} = {p}");
    }
    for name in ["ndcg@1", "ndcg@3", "err", "rbp@0.7"] {
        let (p, r) = (
            perfect.evaluation.mean_of(name).unwrap(),
            reversed.evaluation.mean_of(name).unwrap(),
        );
        assert!(r < p, "{name}: reversed {r} !< perfect {p}");
    }
    // Relevant documents are all retrieved either way; only their order differs.
    assert_eq!(reversed.evaluation.mean_of("recall@20"), Some(1.0));

    // JSON shape.
    let j: Value = serde_json::from_str(&perfect.to_json(true).unwrap()).unwrap();
    let o = j.as_object().unwrap();
    for k in [
        "ndcg@10",
        "map@20",
        "recall@20",
        "precision@10",
        "mrr@10",
        "err",
        "rbp@0.7",
        "rbp@0.8",
        "rbp@0.9",
    ] {
        assert!(o[k].is_f64(), "{k}");
    }
    assert_eq!(o["num_queries"], 4);
    assert_eq!(o["protocol"]["top_k"], 20);
    assert_eq!(o["protocol"]["right"][0]["kind"], "image");
    let pq = o["per_query"].as_object().unwrap();
    assert_eq!(pq.len(), 4);
    assert!(pq
        .values()
        .all(|q| q["ndcg@10"].as_f64() == Some(1.0) && q["query"].is_string()));

    // Run and qrels survive a TREC round trip and score identically.
    let (rp, qp) = (dir.path().join("r.run"), dir.path().join("q.qrels"));
    write_run(&rp, &reversed.run, "t").unwrap();
    write_qrels(&qp, &reversed.qrels).unwrap();
    let again = evaluate(
        &read_run(&rp).unwrap(),
        &read_qrels(&qp).unwrap(),
        &cfg.metrics,
        false,
    )
    .unwrap();
    for (a, b) in again.mean.iter().zip(&reversed.evaluation.mean) {
        assert!((a - b).abs() < 1e-6);
    }
}

#[test]
fn qrels_are_rescaled_weights_and_corpus_file_adds_distractors() {
    let dir = tempfile::tempdir().unwrap();
    let data_path = make_dataset(dir.path());
    let data = Table::read(&data_path, "product_id").unwrap();
    // Corpus = data documents + distractors, in Marqo's doc-meta JSON layout.
    let mut corpus = serde_json::Map::new();
    for r in &data.rows {
        corpus.insert(
            r[3].clone().unwrap(),
            serde_json::json!({"image": r[1], "title": r[2]}),
        );
    }
    for i in 0..30 {
        std::fs::write(dir.path().join(format!("sub/img/x{i}.png")), b"x").unwrap();
        corpus.insert(
            format!("X{i}"),
            serde_json::json!({"image": format!("img/x{i}.png"), "title": "noise"}),
        );
    }
    let cpath = dir.path().join("sub/corpus.json");
    std::fs::write(&cpath, serde_json::to_string(&corpus).unwrap()).unwrap();
    let corpus = Table::read(&cpath, "product_id").unwrap();
    let rep = evaluate_retrieval(&data, Some(&corpus), &config(), &mut Fake::default()).unwrap();
    assert_eq!(rep.num_documents, data.rows.len() + 30);
    assert!((rep.evaluation.mean_of("ndcg@20").unwrap() - 1.0).abs() < 1e-12);
    // Grades: raw g*0.37 rescaled over the file; min raw -> 1, max raw -> 100.
    let all: Vec<i64> = rep
        .qrels
        .queries()
        .flat_map(|q| {
            rep.qrels
                .get(q)
                .unwrap()
                .values()
                .copied()
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(all.iter().all(|&g| (1..=100).contains(&g)));
    let raw: Vec<f64> = data
        .rows
        .iter()
        .map(|r| r[4].as_ref().unwrap().parse().unwrap())
        .collect();
    let (lo, hi) = (
        raw.iter().cloned().fold(f64::MAX, f64::min),
        raw.iter().cloned().fold(f64::MIN, f64::max),
    );
    for q in rep.qrels.queries() {
        for (doc, g) in rep.qrels.get(q).unwrap() {
            let row = data
                .rows
                .iter()
                .position(|r| r[3].as_deref() == Some(doc.as_str()))
                .unwrap();
            assert_eq!(*g, ((raw[row] - lo) / (hi - lo) * 99.0 + 1.0) as i64);
        }
    }
}

#[test]
fn cache_serves_repeated_inputs_without_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = Table::read(&make_dataset(dir.path()), "product_id").unwrap();
    let cache_dir = dir.path().join("cache");
    let first = {
        let mut enc = CachedEncoder::open(Fake::default(), &cache_dir).unwrap();
        let rep = evaluate_retrieval(&data, None, &config(), &mut enc).unwrap();
        assert!(enc.stats().misses > 0);
        assert!(enc.into_inner().inputs > 0);
        rep
    };
    let mut enc = CachedEncoder::open(Fake::default(), &cache_dir).unwrap();
    let second = evaluate_retrieval(&data, None, &config(), &mut enc).unwrap();
    assert_eq!(enc.stats().misses, 0);
    assert_eq!(first.evaluation.mean, second.evaluation.mean);
    assert_eq!(
        enc.into_inner().calls,
        0,
        "model called although everything was cached"
    );

    // Another model id gets its own entries; changing an image's bytes is a miss.
    let mut other = CachedEncoder::open(
        Fake {
            reversed: true,
            ..Fake::default()
        },
        &cache_dir,
    )
    .unwrap();
    assert!(other.is_empty());
    let img = dir.path().join("sub/img/0_10.png");
    let mut enc = CachedEncoder::open(Fake::default(), &cache_dir).unwrap();
    enc.encode_images(std::slice::from_ref(&img)).unwrap();
    assert_eq!(enc.stats().misses, 0);
    std::fs::write(&img, b"changed").unwrap();
    enc.encode_images(std::slice::from_ref(&img)).unwrap();
    assert_eq!(enc.stats().misses, 1);
    // A truncated tail (interrupted write) is dropped, earlier records survive.
    let path = enc.path().to_owned();
    let n = enc.len();
    drop(enc);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let enc = CachedEncoder::open(Fake::default(), &cache_dir).unwrap();
    assert_eq!(enc.len(), n - 1);
    other.encode_texts(&["query 1".into()]).unwrap();
    assert_eq!(other.stats().misses, 1);
}

#[test]
fn rewriting_the_weights_in_place_invalidates_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("model.safetensors");
    std::fs::write(&weights, vec![1u8; 200_000]).unwrap();
    let cache_dir = dir.path().join("cache");
    let fake = || Fake {
        weights: Some(weights.clone()),
        ..Fake::default()
    };
    let texts = ["query 1".to_string(), "query 2".to_string()];
    let mut enc = CachedEncoder::open(fake(), &cache_dir).unwrap();
    enc.encode_texts(&texts).unwrap();
    assert_eq!(enc.stats().misses, 2);
    drop(enc);
    let mut enc = CachedEncoder::open(fake(), &cache_dir).unwrap();
    enc.encode_texts(&texts).unwrap();
    assert_eq!(enc.stats().misses, 0, "same weights: served from the cache");
    drop(enc);
    // Retraining into the same directory: same name, same size, other bytes.
    let mut bytes = vec![1u8; 200_000];
    bytes[150_000] = 2;
    std::fs::write(&weights, bytes).unwrap();
    let mut enc = CachedEncoder::open(fake(), &cache_dir).unwrap();
    assert!(
        enc.is_empty(),
        "a rewritten checkpoint must not reuse old entries"
    );
    enc.encode_texts(&texts).unwrap();
    assert_eq!(enc.stats().misses, 2);
    // A missing weights file is an error naming it, not an unkeyed cache.
    std::fs::remove_file(&weights).unwrap();
    let e = CachedEncoder::open(fake(), &cache_dir).err().unwrap();
    assert!(
        matches!(&e, EvalError::Io { path, .. } if path == &weights),
        "{e}"
    );
}

#[test]
fn missing_fields_and_bad_weights_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.jsonl");
    std::fs::write(
        &p,
        "{\"query\":\"query 1\",\"title\":\"1_50\",\"product_id\":7,\"score\":\"abc\"}\n",
    )
    .unwrap();
    let t = Table::read(&p, "product_id").unwrap();
    let mut cfg = config();
    cfg.right = FieldSpec::list(&["title".into()], &[1.0], &[]).unwrap();
    let e = evaluate_retrieval(&t, None, &cfg, &mut Fake::default()).unwrap_err();
    assert!(e.to_string().contains("not a finite number"), "{e}");
    cfg.weight_key = None;
    cfg.right = FieldSpec::list(&["nope".into()], &[1.0], &[]).unwrap();
    let e = evaluate_retrieval(&t, None, &cfg, &mut Fake::default()).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    assert!(FieldSpec::list(&["a".into()], &[1.0, 2.0], &[]).is_err());
}

#[test]
fn zero_shot_and_pairs_with_known_geometry() {
    let dir = tempfile::tempdir().unwrap();
    // Classes 0..3 as folders; images named "<class>_<g>" map near e_class, except one
    // image of class 2 stored under class 1's folder (a deliberate miss).
    for (folder, files) in [
        ("0", vec!["0_10", "0_20"]),
        ("1", vec!["1_5", "2_30"]),
        ("2", vec!["2_40"]),
    ] {
        std::fs::create_dir_all(dir.path().join(folder)).unwrap();
        for f in files {
            std::fs::write(dir.path().join(format!("{folder}/{f}.jpg")), f).unwrap();
        }
    }
    let gclip_eval::ImageFolder { classes, images } = gclip_eval::image_folder(dir.path()).unwrap();
    assert_eq!(classes, ["0", "1", "2"]);
    let templates = vec!["query {}".to_string()];
    let rep = evaluate_zero_shot(&mut Fake::default(), &classes, &templates, &images, 2).unwrap();
    assert_eq!(rep.num_images, 5);
    assert!((rep.top1 - 0.8).abs() < 1e-12);
    assert!((rep.top5 - 1.0).abs() < 1e-12);
    assert!((rep.mean_per_class_recall - (1.0 + 0.5 + 1.0) / 3.0).abs() < 1e-12);
    let e = evaluate_zero_shot(
        &mut Fake::default(),
        &classes,
        &["no placeholder".into()],
        &images,
        2,
    )
    .unwrap_err();
    assert!(
        matches!(&e, EvalError::Config(m) if m.contains("placeholder")),
        "{e}"
    );
    // clip_benchmark's `{c}` spelling fills like `{}`.
    let braces = evaluate_zero_shot(&mut Fake::default(), &classes, &templates, &images, 2);
    let c = evaluate_zero_shot(
        &mut Fake::default(),
        &classes,
        &["query {c}".into()],
        &images,
        2,
    );
    assert_eq!(braces.unwrap().top1, c.unwrap().top1);

    // Pairs: image "<q>_<g>" with captions "query q" (matching) -> perfect recall.
    let pairs: Vec<(PathBuf, String)> = images
        .iter()
        .map(|(p, _)| {
            let q = p
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .split('_')
                .next()
                .unwrap()
                .to_owned();
            (p.clone(), format!("query {q}"))
        })
        .collect();
    let rep = evaluate_pairs(&mut Fake::default(), &pairs, &[1, 5, 10], 2).unwrap();
    assert_eq!((rep.num_images, rep.num_captions), (5, 5));
    // Captions of classes 0 and 2 are shared by two images: t2i@1 finds the closer one.
    assert_eq!(rep.t2i[2], 1.0);
    assert_eq!(rep.i2t[2], 1.0);
    assert!(rep.t2i[0] < 1.0 && rep.t2i[0] > 0.0);
}

/// A scoring function sees the same query sample, qrels and tie order as a model: scoring
/// by the fake encoder's own cosine reproduces its report exactly, and an unknown pair
/// (a NaN score) is an error naming it.
#[test]
fn scorer_ranks_on_the_same_sample_and_qrels_as_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = Table::read(&make_dataset(dir.path()), "product_id").unwrap();
    let cfg = config();
    let model = evaluate_retrieval(&data, None, &cfg, &mut Fake::default()).unwrap();
    // Document P<q>-<j> has grade 10 + 13 j + q; the fake's cosine falls with the grade's
    // complement, so "higher grade, higher score" for the query's own documents.
    let score = |query: &str, doc: &str| -> f64 {
        let q: usize = query.trim_start_matches("query ").parse().unwrap();
        let (dq, j) = doc[1..].split_once('-').unwrap();
        let (dq, j): (usize, usize) = (dq.parse().unwrap(), j.parse().unwrap());
        if dq == q {
            1.0 + (10 + 13 * j + q) as f64 / 1000.0
        } else {
            0.0
        }
    };
    let scored = gclip_eval::evaluate_scorer(&data, None, &cfg, "grade", &score).unwrap();
    assert_eq!(scored.model_id, "grade");
    assert_eq!(
        scored.queries.iter().map(|q| &q.qid).collect::<Vec<_>>(),
        model.queries.iter().map(|q| &q.qid).collect::<Vec<_>>()
    );
    assert_eq!(scored.qrels, model.qrels);
    for (a, b) in scored.evaluation.mean.iter().zip(&model.evaluation.mean) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    assert!((scored.evaluation.mean_of("ndcg@10").unwrap() - 1.0).abs() < 1e-12);

    let err = gclip_eval::evaluate_scorer(&data, None, &cfg, "broken", &|_, d| {
        if d == "P0-1" {
            f64::NAN
        } else {
            0.0
        }
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("broken") && err.contains("P0-1"), "{err}");
}
