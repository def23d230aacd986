//! End-to-end checks of a generated dataset directory: determinism, the
//! four-split invariants, held-out combinations, score columns and images.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use gclip_synth::{generate, Catalog, Manifest, SynthConfig, SynthError};

fn small_config(seed: u64) -> SynthConfig {
    SynthConfig {
        seed,
        products: 600,
        queries: 250,
        image_size: 32,
        zeroshot_per_class: 2,
        ..SynthConfig::default()
    }
}

fn files_under(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Row {
    query: String,
    product_id: String,
    image: String,
    position: u32,
    score_linear: u32,
    score_reciprocal: f64,
    no_score: u32,
    query_id: String,
    pair_id: String,
    score: u32,
}

fn read_rows(path: &Path) -> Vec<Row> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let headers: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        headers,
        [
            "query",
            "product_id",
            "title",
            "image",
            "position",
            "score_linear",
            "score_reciprocal",
            "no_score",
            "query_id",
            "pair_id",
            "score"
        ]
    );
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            Row {
                query: rec[0].to_string(),
                product_id: rec[1].to_string(),
                image: rec[3].to_string(),
                position: rec[4].parse().unwrap(),
                score_linear: rec[5].parse().unwrap(),
                score_reciprocal: rec[6].parse().unwrap(),
                no_score: rec[7].parse().unwrap(),
                query_id: rec[8].to_string(),
                pair_id: rec[9].to_string(),
                score: rec[10].parse().unwrap(),
            }
        })
        .collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn same_seed_gives_identical_bytes_and_other_seed_differs() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let cfg = SynthConfig {
        products: 200,
        queries: 80,
        zeroshot_per_class: 1,
        caption_views: 1,
        ..small_config(7)
    };
    generate(&cfg, a.path(), |_| {}).unwrap();
    // Run the second copy on a one-thread pool: results must not depend on scheduling.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| generate(&cfg, b.path(), |_| {})).unwrap();
    let (fa, fb) = (files_under(a.path()), files_under(b.path()));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        assert!(v == &fb[k], "{} differs between runs", k.display());
    }
    generate(&SynthConfig { seed: 8, ..cfg }, c.path(), |_| {}).unwrap();
    let fc = files_under(c.path());
    assert_ne!(fa[Path::new("corpus.json")], fc[Path::new("corpus.json")]);
    assert_ne!(
        fa[Path::new("images/p000000.png")],
        fc[Path::new("images/p000000.png")]
    );
}

#[test]
fn splits_follow_the_gs10m_design() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(3);
    let manifest = generate(&cfg, dir.path(), |_| {}).unwrap().manifest;
    let d = dir.path();
    let corpus = json(&d.join("corpus.json"));
    let corpus = corpus.as_object().unwrap();
    let c1: HashSet<String> = json(&d.join("corpus_1.json"))
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let c2: HashSet<String> = json(&d.join("corpus_2.json"))
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(c1.len() + c2.len(), corpus.len());
    assert!(c1.is_disjoint(&c2));
    assert_eq!(corpus.len(), cfg.products);
    // Half of the documents are training documents.
    let doc_share = c1.len() as f64 / corpus.len() as f64;
    assert!(
        (doc_share - 0.5).abs() < 0.02,
        "seen document share {doc_share}"
    );

    let queries = json(&d.join("queries.json"));
    let queries = queries.as_array().unwrap();
    let texts: HashSet<&str> = queries
        .iter()
        .map(|q| q["query"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), queries.len(), "query texts must be unique");
    let seen_q: HashSet<String> = queries
        .iter()
        .filter(|q| q["query_set"] == "seen")
        .map(|q| q["query_id"].as_str().unwrap().to_string())
        .collect();
    let q_share = seen_q.len() as f64 / queries.len() as f64;
    assert!((q_share - 0.8).abs() < 0.02, "seen query share {q_share}");

    let rows: HashMap<&str, Vec<Row>> = [
        ("train", "train.csv"),
        ("in_domain", "test_in_domain.csv"),
        ("novel_query", "test_novel_query.csv"),
        ("novel_document", "test_novel_document.csv"),
        ("zero_shot", "test_zero_shot.csv"),
    ]
    .into_iter()
    .map(|(n, f)| (n, read_rows(&d.join(f))))
    .collect();
    for (name, r) in &rows {
        assert!(!r.is_empty(), "split {name} is empty");
    }
    let train_q: HashSet<&str> = rows["train"].iter().map(|r| r.query_id.as_str()).collect();
    let train_d: HashSet<&str> = rows["train"]
        .iter()
        .map(|r| r.product_id.as_str())
        .collect();
    for r in &rows["train"] {
        assert!(seen_q.contains(&r.query_id) && c1.contains(&r.product_id));
    }
    for r in &rows["novel_query"] {
        assert!(!train_q.contains(r.query_id.as_str()) && !seen_q.contains(&r.query_id));
        assert!(c1.contains(&r.product_id));
    }
    for r in &rows["novel_document"] {
        assert!(seen_q.contains(&r.query_id));
        assert!(!train_d.contains(r.product_id.as_str()) && c2.contains(&r.product_id));
    }
    for r in &rows["zero_shot"] {
        assert!(!seen_q.contains(&r.query_id) && c2.contains(&r.product_id));
    }
    // The in-domain test is drawn from the training rows (as in GS-10M).
    let train_pairs: HashSet<&str> = rows["train"].iter().map(|r| r.pair_id.as_str()).collect();
    for r in &rows["in_domain"] {
        assert!(train_pairs.contains(r.pair_id.as_str()));
    }

    // Held-out colour x category combinations never reach the training split.
    assert_eq!(manifest.held_out_combos.len(), cfg.held_out_combos);
    let held: HashSet<(String, String)> = manifest
        .held_out_combos
        .iter()
        .map(|h| (h.colour.clone(), h.category.clone()))
        .collect();
    let combo = |attrs: &serde_json::Value| {
        (
            attrs["colour"].as_str().unwrap_or("").to_string(),
            attrs["category"].as_str().unwrap_or("").to_string(),
        )
    };
    for r in &rows["train"] {
        assert!(
            !held.contains(&combo(&corpus[&r.product_id]["attributes"])),
            "{} in train",
            r.product_id
        );
    }
    let q_by_id: HashMap<&str, &serde_json::Value> = queries
        .iter()
        .map(|q| (q["query_id"].as_str().unwrap(), q))
        .collect();
    for q in &train_q {
        assert!(!held.contains(&combo(&q_by_id[q]["attributes"])));
    }
    // ...but they are in the catalogue, so the unseen splits can test them.
    let held_docs = corpus
        .values()
        .filter(|p| held.contains(&combo(&p["attributes"])))
        .count();
    assert!(held_docs > 0);

    // The manifest counts agree with the files.
    let back = Manifest::load(d).unwrap();
    assert_eq!(back.counts.products, cfg.products);
    for s in &back.splits {
        let r = &rows[s.name.as_str()];
        assert_eq!(s.rows, r.len(), "{}", s.name);
        assert_eq!(
            s.queries,
            r.iter().map(|x| &x.query_id).collect::<HashSet<_>>().len()
        );
    }
}

#[test]
fn positions_and_score_columns_follow_the_ranking() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(11);
    generate(&cfg, dir.path(), |_| {}).unwrap();
    for f in [
        "train.csv",
        "test_novel_query.csv",
        "test_novel_document.csv",
        "test_zero_shot.csv",
    ] {
        let rows = read_rows(&dir.path().join(f));
        let mut last: HashMap<&str, u32> = HashMap::new();
        let mut text_of: HashMap<&str, &str> = HashMap::new();
        for r in &rows {
            assert!((1..=100).contains(&r.position));
            assert_eq!(r.score_linear, 101 - r.position);
            assert!((r.score_reciprocal - 1.0 / r.position as f64).abs() < 1e-12);
            assert_eq!(r.no_score, 1);
            assert_eq!(r.score, r.score_linear);
            assert_eq!(r.pair_id, format!("{}_{}", r.query_id, r.product_id));
            // Rows of a query are contiguous and by increasing position.
            if let Some(prev) = last.insert(&r.query_id, r.position) {
                assert!(r.position > prev, "{f}: {} not sorted", r.query_id);
            }
            assert_eq!(
                *text_of.entry(&r.query_id).or_insert(&r.query),
                r.query.as_str()
            );
        }
    }
}

#[test]
fn ranking_orders_by_attribute_overlap_up_to_small_noise() {
    let cat = Catalog::generate(&small_config(5)).unwrap();
    let mut checked = 0;
    for (q, results) in cat.queries.iter().zip(&cat.results) {
        assert!(results.len() <= 100);
        for (i, j) in results.iter().enumerate() {
            assert_eq!(j.position as usize, i + 1);
            let rel = q.spec.relevance(&cat.products[j.product].attributes);
            assert_eq!(rel, j.relevance);
            assert!(rel > 0.0);
        }
        // Popularity and pair noise together move a score by well under 0.2,
        // so a clearly more relevant product is always ranked higher.
        for a in results {
            for b in results {
                if a.relevance > b.relevance + 0.2 {
                    assert!(
                        a.position < b.position,
                        "query {}: {:?} below {:?}",
                        q.text,
                        a,
                        b
                    );
                    checked += 1;
                }
            }
        }
        // Every query was built from a product, so an exact match exists.
        assert!(
            results.iter().any(|j| j.relevance == 1.0),
            "query {} has no exact match",
            q.text
        );
    }
    assert!(checked > 1000, "too few graded pairs compared: {checked}");
}

#[test]
fn every_image_exists_and_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(2);
    let manifest = generate(&cfg, dir.path(), |_| {}).unwrap().manifest;
    let corpus = json(&dir.path().join("corpus.json"));
    for (id, p) in corpus.as_object().unwrap() {
        let rel = p["image"].as_str().unwrap();
        assert_eq!(p["image_local"], p["image"]);
        let img = image::open(dir.path().join(rel)).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!((img.width(), img.height()), (32, 32));
    }
    for f in ["train.csv", "test_zero_shot.csv"] {
        for r in read_rows(&dir.path().join(f)) {
            assert!(dir.path().join(&r.image).is_file(), "{} missing", r.image);
        }
    }
    let names: Vec<&str> = manifest.zeroshot.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["category", "heldout_combo", "seen_combo"]);
    for set in &manifest.zeroshot {
        for class in &set.classes {
            let dir = dir.path().join(&set.dir).join(&class.folder);
            let n = std::fs::read_dir(&dir).unwrap().count();
            assert_eq!(n, class.images);
            for e in std::fs::read_dir(&dir).unwrap() {
                image::open(e.unwrap().path()).unwrap();
            }
        }
    }
    assert_eq!(
        manifest.zeroshot[0].classes.len(),
        gclip_synth::vocab::CATEGORIES.len()
    );
    let held: Vec<&str> = manifest
        .held_out_combos
        .iter()
        .map(|h| h.label.as_str())
        .collect();
    let zs_held: Vec<&str> = manifest.zeroshot[1]
        .classes
        .iter()
        .map(|c| c.label.as_str())
        .collect();
    assert_eq!(held, zs_held);
}

#[test]
fn jpeg_output_and_regeneration_into_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        image_format: gclip_synth::ImageFormat::Jpeg,
        products: 60,
        queries: 30,
        zeroshot_per_class: 0,
        ..small_config(1)
    };
    generate(&cfg, dir.path(), |_| {}).unwrap();
    let img = image::open(dir.path().join("images/p000000.jpg")).unwrap();
    assert_eq!(img.width(), 32);
    // A second run over our own output is allowed and drops stale images.
    generate(
        &SynthConfig {
            products: 40,
            ..cfg
        },
        dir.path(),
        |_| {},
    )
    .unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("images"))
            .unwrap()
            .count(),
        40
    );
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let err = generate(&small_config(0), dir.path(), |_| {}).unwrap_err();
    assert!(matches!(err, SynthError::OutputDir { .. }), "{err}");
    for cfg in [
        SynthConfig {
            image_size: 4,
            ..SynthConfig::default()
        },
        SynthConfig {
            products: 1,
            ..SynthConfig::default()
        },
        SynthConfig {
            held_out_combos: 99,
            ..SynthConfig::default()
        },
        SynthConfig {
            train_query_fraction: 1.0,
            ..SynthConfig::default()
        },
    ] {
        let err = Catalog::generate(&cfg).unwrap_err();
        assert!(matches!(err, SynthError::InvalidConfig(_)), "{err}");
    }
}

#[test]
fn in_memory_catalogue_matches_written_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        products: 50,
        queries: 20,
        zeroshot_per_class: 0,
        ..small_config(4)
    };
    generate(&cfg, dir.path(), |_| {}).unwrap();
    let cat = Catalog::generate(&cfg).unwrap();
    let corpus = json(&dir.path().join("corpus.json"));
    for p in &cat.products {
        assert_eq!(corpus[&p.product_id]["title"], p.title.as_str());
        // PNG is lossless, so the decoded file equals the in-memory render.
        let file = image::open(dir.path().join(format!("images/{}.png", p.product_id)))
            .unwrap()
            .to_rgb8();
        assert_eq!(file.as_raw(), p.image(cfg.image_size).unwrap().as_raw());
    }
}

/// The oracle counts a query's attributes a product has (by id or by query text), with
/// popularity below one attribute, and knows nothing of ids it was not given.
#[test]
fn oracle_counts_matching_attributes_with_popularity_as_tie_break() {
    let cfg = small_config(5);
    let dir = tempfile::tempdir().unwrap();
    generate(&cfg, dir.path(), |_| {}).unwrap();
    let oracle = gclip_synth::AttributeOracle::load(dir.path()).unwrap();
    let queries = json(&dir.path().join("queries.json"));
    let corpus = json(&dir.path().join("corpus.json"));
    let corpus = corpus.as_object().unwrap();
    assert_eq!(oracle.num_documents(), corpus.len());
    let mut checked = 0;
    for q in queries.as_array().unwrap().iter().take(20) {
        let want = q["attributes"].as_object().unwrap();
        for (pid, doc) in corpus.iter().take(40) {
            let has = doc["attributes"].as_object().unwrap();
            let matched = want.iter().filter(|(k, v)| has.get(*k) == Some(*v)).count();
            let pop = doc["popularity"].as_f64().unwrap().min(0.999);
            let by_id = oracle.score(q["query_id"].as_str().unwrap(), pid).unwrap();
            let by_text = oracle.score(q["query"].as_str().unwrap(), pid).unwrap();
            assert_eq!(by_id, by_text);
            assert_eq!(by_id.floor() as usize, matched, "{q} vs {pid}");
            assert!((by_id - matched as f64 - pop).abs() < 1e-6);
            checked += 1;
        }
    }
    assert!(checked > 0);
    assert_eq!(oracle.score("no such query", "p000000"), None);
    assert_eq!(
        oracle.score(queries[0]["query_id"].as_str().unwrap(), "p999999x"),
        None
    );
    let missing = gclip_synth::AttributeOracle::load(&dir.path().join("nope")).unwrap_err();
    assert!(missing.to_string().contains("queries.json"), "{missing}");
}

#[test]
fn caption_table_describes_new_views_of_training_documents_only() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        products: 300,
        queries: 100,
        zeroshot_per_class: 1,
        caption_views: 2,
        ..small_config(11)
    };
    let out = generate(&cfg, dir.path(), |_| {}).unwrap();
    let m = Manifest::load(dir.path()).unwrap();
    let cap = m
        .captions
        .expect("the manifest describes the caption table");
    assert_eq!(cap.file, "captions.csv");
    let rows = read_rows(&dir.path().join("captions.csv"));
    let seen = json(&dir.path().join("corpus_1.json"));
    let seen = seen.as_object().unwrap();
    assert_eq!(rows.len(), 2 * seen.len());
    assert_eq!(cap.rows, rows.len());
    let corpus = json(&dir.path().join("corpus.json"));
    let held: HashSet<(String, String)> = out
        .manifest
        .held_out_combos
        .iter()
        .map(|h| (h.colour.clone(), h.category.clone()))
        .collect();
    let mut ids_by_text: HashMap<&str, &str> = HashMap::new();
    let mut views_per_product: HashMap<&str, usize> = HashMap::new();
    for r in &rows {
        // Only training documents, so no caption can name a held-out combination.
        assert!(
            seen.contains_key(&r.product_id),
            "{} is not a seen document",
            r.product_id
        );
        let attrs = &corpus[&r.product_id]["attributes"];
        let category = attrs["category"].as_str().unwrap();
        let colour = attrs["colour"].as_str().unwrap();
        assert!(!held.contains(&(colour.to_string(), category.to_string())));
        // The caption names the product's category by one of its singular synonyms.
        let spec = gclip_synth::vocab::CATEGORIES
            .iter()
            .find(|c| c.name == category)
            .unwrap();
        assert!(
            spec.synonyms.iter().any(|(s, _)| r.query.contains(s)),
            "caption `{}` does not name a {category}",
            r.query
        );
        // A new render of the product, not its catalogue image.
        let view = std::fs::read(dir.path().join(&r.image)).unwrap();
        let main = std::fs::read(
            dir.path()
                .join(corpus[&r.product_id]["image"].as_str().unwrap()),
        )
        .unwrap();
        assert_ne!(view, main, "{} repeats the catalogue image", r.image);
        image::load_from_memory(&view).unwrap();
        assert_eq!((r.position, r.score, r.score_linear), (1, 100, 100));
        // Equal captions share one query id (they must not be each other's negatives).
        let id = ids_by_text.entry(&r.query).or_insert(&r.query_id);
        assert_eq!(*id, r.query_id.as_str());
        *views_per_product.entry(&r.product_id).or_default() += 1;
    }
    assert!(views_per_product.values().all(|&n| n == 2));
    // The templates people use for zero-shot prompts appear, and bare phrases too.
    assert!(rows.iter().any(|r| r.query.starts_with("a photo of a")));
    assert!(ids_by_text.len() > rows.len() / 10, "captions barely vary");

    // Without views there is no caption table.
    let plain = tempfile::tempdir().unwrap();
    generate(
        &SynthConfig {
            caption_views: 0,
            ..cfg
        },
        plain.path(),
        |_| {},
    )
    .unwrap();
    assert!(!plain.path().join("captions.csv").exists());
    assert!(Manifest::load(plain.path()).unwrap().captions.is_none());
}
