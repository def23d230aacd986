mod common;

use common::{FakeEmbedder, DIM};
use gclip_index::*;
use serde_json::{json, Value};
use std::sync::Arc;

fn index_with(settings: Value) -> (tempfile::TempDir, Engine, Arc<Index>) {
    let d = tempfile::tempdir().unwrap();
    let e = Engine::open(d.path()).unwrap();
    let ix = e
        .create_index(
            "t",
            IndexSettings::from_json(&settings).unwrap(),
            Arc::new(FakeEmbedder::default()),
        )
        .unwrap();
    (d, e, ix)
}

fn add(ix: &Index, docs: Value, tensor: &[&str]) {
    let r = ix
        .add_documents(&AddDocuments {
            documents: docs.as_array().unwrap().clone(),
            tensor_fields: tensor.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap();
    assert!(!r.errors, "{r:?}");
}

fn search(ix: &Index, body: Value) -> SearchResponse {
    ix.search(&serde_json::from_value(body).unwrap()).unwrap()
}

fn ids(r: &SearchResponse) -> Vec<String> {
    r.hits
        .iter()
        .map(|h| h["_id"].as_str().unwrap().to_string())
        .collect()
}

fn catalogue(ix: &Index) {
    add(
        ix,
        json!([
            {"_id": "a", "title": "red running shoe", "brand": "Acme", "price": 30, "stock": true, "tags": ["sport", "red"], "long": "x".repeat(60)},
            {"_id": "b", "title": "blue coffee mug", "brand": "Mugs Inc", "price": 8, "stock": false, "tags": ["kitchen"]},
            {"_id": "c", "title": "green tea pot", "brand": "Acme", "price": 20.5, "stock": true},
            {"_id": "d", "title": "red coffee mug", "brand": "Mugs Inc", "price": 12, "stock": true, "tags": ["kitchen", "red"]},
            {"_id": "e(1)", "title": "yellow lamp", "brand": "A:B", "price": -5}
        ]),
        &["title"],
    );
}

#[test]
fn every_filter_form() {
    let (_d, _e, ix) = index_with(json!({}));
    catalogue(&ix);
    let f = |filter: &str| -> Vec<String> {
        let mut v = ids(&search(
            &ix,
            json!({"q": "red", "limit": 10, "filter": filter}),
        ));
        v.sort();
        v
    };
    assert_eq!(f("brand:Acme"), ["a", "c"]);
    assert_eq!(f("brand:(Mugs Inc)"), ["b", "d"]);
    assert_eq!(f("stock:true"), ["a", "c", "d"]);
    assert_eq!(f("stock:false"), ["b"]);
    assert_eq!(f("price:30"), ["a"]);
    assert_eq!(f("price:20.5"), ["c"]);
    assert_eq!(f("tags:red"), ["a", "d"]);
    assert_eq!(f("price:[10 TO 30]"), ["a", "c", "d"]);
    assert_eq!(f("price:[* TO 10]"), ["b", "e(1)"]);
    assert_eq!(f("price:[20 to *]"), ["a", "c"]);
    assert_eq!(f("price:[-10 TO 0]"), ["e(1)"]);
    assert_eq!(f("brand IN (Acme, (Mugs Inc))"), ["a", "b", "c", "d"]);
    assert_eq!(f("brand:Acme AND stock:true AND NOT price:30"), ["c"]);
    assert_eq!(
        f("brand:Acme OR tags:kitchen AND stock:true"),
        ["a", "c", "d"]
    );
    assert_eq!(
        f("(brand:Acme OR tags:kitchen) AND stock:true"),
        ["a", "c", "d"]
    );
    assert_eq!(
        f("(brand:Acme OR tags:kitchen) AND NOT (stock:true)"),
        ["b"]
    );
    assert_eq!(f("NOT brand:Acme"), ["b", "d", "e(1)"]);
    assert_eq!(f("_id:e\\(1\\)"), ["e(1)"]);
    assert_eq!(f("brand:A\\:B"), ["e(1)"]);
    assert_eq!(f("_id:a OR _id:b"), ["a", "b"]);
    // Strings longer than filterStringMaxLength (50) are not matched by equality.
    assert!(f(&format!("long:{}", "x".repeat(60))).is_empty());
    assert!(f("nosuchfield:1").is_empty());
}

#[test]
fn filter_errors_point_at_the_position() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "empty"),
        ("a:1 AND", 7, "expected a term"),
        ("a:1 AND AND b:2", 8, "unexpected `AND`"),
        ("(a:1 OR b:2", 11, "unbalanced"),
        ("a:1)", 3, "unbalanced `)`"),
        ("a:1 b:2", 4, "expected AND or OR"),
        ("a:[1 TO]", 2, "range"),
        ("a:[x TO 3]", 3, "not a number"),
        ("a:[1 TO 3", 2, "unbalanced"),
        ("a IN (1, 2", 5, "unbalanced"),
        ("a IN ()", 5, "empty IN"),
        (":x", 0, "field name"),
        ("a", 1, "expected `:`"),
        ("a:", 2, "expected a value"),
        ("a:x\\", 4, "`\\`"),
    ];
    for (filter, pos, msg) in cases {
        let e = Filter::parse(filter).unwrap_err();
        assert_eq!(e.position, *pos, "{filter:?}: {e}");
        assert!(e.message.contains(msg), "{filter:?}: {e}");
    }
    let (_d, _e, ix) = index_with(json!({}));
    let r: SearchRequest = serde_json::from_value(json!({"q": "x", "filter": "a:1 AND"})).unwrap();
    let e = ix.search(&r).unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
    assert!(e.to_string().contains("position 7"), "{e}");
}

#[test]
fn parameters_limit_offset_attributes_modifiers_weighted() {
    let (_d, _e, ix) = index_with(json!({}));
    catalogue(&ix);
    let all = search(&ix, json!({"q": "red coffee mug", "limit": 5}));
    assert_eq!(all.hits[0]["_id"], json!("d"));
    let page = search(&ix, json!({"q": "red coffee mug", "limit": 2, "offset": 1}));
    assert_eq!(ids(&page), ids(&all)[1..3]);
    let few = search(
        &ix,
        json!({"q": "red coffee mug", "limit": 1, "attributesToRetrieve": ["price"]}),
    );
    let keys: Vec<&String> = few.hits[0].keys().collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(few.hits[0].contains_key("price") && few.hits[0].contains_key("_highlights"));
    // Score modifiers: add 10 x price lifts the expensive shoe to the top.
    let m = search(
        &ix,
        json!({"q": "red coffee mug", "limit": 5, "scoreModifiers": {"add_to_score": [{"field_name": "price", "weight": 10.0}]}}),
    );
    assert_eq!(m.hits[0]["_id"], json!("a"));
    let base_a = all.hits.iter().find(|h| h["_id"] == "a").unwrap()["_score"]
        .as_f64()
        .unwrap();
    assert!((m.hits[0]["_score"].as_f64().unwrap() - (base_a + 300.0)).abs() < 1e-3);
    let mult = search(
        &ix,
        json!({"q": "red coffee mug", "limit": 5, "scoreModifiers": {"multiply_score_by": [{"field_name": "price", "weight": 2.0}]}}),
    );
    let d = mult.hits.iter().find(|h| h["_id"] == "d").unwrap()["_score"]
        .as_f64()
        .unwrap();
    let d0 = all.hits.iter().find(|h| h["_id"] == "d").unwrap()["_score"]
        .as_f64()
        .unwrap();
    assert!((d - 24.0 * d0).abs() < 1e-3);
    // A weighted query with a negative weight pushes "coffee" away.
    let w = search(
        &ix,
        json!({"q": {"red mug": 1.0, "coffee": -1.0}, "limit": 5}),
    );
    let pos = |r: &SearchResponse, id: &str| ids(r).iter().position(|x| x == id).unwrap();
    let plain = search(&ix, json!({"q": "red mug", "limit": 5}));
    assert!(pos(&w, "b") > pos(&plain, "b") || pos(&w, "b") == 4);
    // Exact and approximate agree on a small index.
    let ex = search(
        &ix,
        json!({"q": "red coffee mug", "limit": 5, "approximate": false}),
    );
    assert_eq!(ids(&ex), ids(&all));
    // searchableAttributes restricts the tensor fields searched.
    let none = search(&ix, json!({"q": "red", "searchableAttributes": ["brand"]}));
    assert!(none.hits.is_empty());
}

#[test]
fn long_text_chunks_and_highlight() {
    let (_d, _e, ix) = index_with(
        json!({"textPreprocessing": {"splitLength": 1, "splitOverlap": 0, "splitMethod": "sentence"}}),
    );
    let text = "Alpha beta gamma. Delta epsilon zeta. Eta theta iota. Kappa lambda mu. Zebra giraffe elephant. Nu xi omicron.";
    add(
        &ix,
        json!([{"_id": "long", "body": text}, {"_id": "other", "body": "Something else entirely. Nothing shared here."}]),
        &["body"],
    );
    assert_eq!(ix.stats().unwrap().number_of_vectors, 8);
    let r = search(&ix, json!({"q": "zebra giraffe elephant", "limit": 1}));
    assert_eq!(r.hits[0]["_id"], json!("long"));
    assert_eq!(
        r.hits[0]["_highlights"],
        json!([{"body": "Zebra giraffe elephant."}])
    );
    assert!(
        (r.hits[0]["_score"].as_f64().unwrap() - 1.0).abs() < 1e-4,
        "the 5th chunk matches exactly"
    );
    let off = search(&ix, json!({"q": "zebra", "showHighlights": false}));
    assert!(off.hits[0].get("_highlights").is_none());
}

#[test]
fn lexical_and_hybrid_fusion() {
    let (_d, _e, ix) = index_with(json!({}));
    catalogue(&ix);
    let lex = search(
        &ix,
        json!({"q": "\"coffee mug\" red", "searchMethod": "LEXICAL"}),
    );
    assert_eq!(ids(&lex), ["d", "b"], "phrase required, red scores");
    assert_eq!(lex.hits[0]["_highlights"], json!([]));
    let lex_f = search(
        &ix,
        json!({"q": "mug", "searchMethod": "LEXICAL", "filter": "price:[* TO 10]"}),
    );
    assert_eq!(ids(&lex_f), ["b"]);
    let brand = search(
        &ix,
        json!({"q": "acme", "searchMethod": "LEXICAL", "searchableAttributes": ["brand"]}),
    );
    let mut b = ids(&brand);
    b.sort();
    assert_eq!(b, ["a", "c"]);
    // Hybrid: RRF of the two rankings, by hand.
    let q = "red coffee";
    let tensor = search(&ix, json!({"q": q, "limit": 10}));
    let lexical = search(&ix, json!({"q": q, "searchMethod": "LEXICAL", "limit": 10}));
    let alpha = 0.3f64;
    let k = 10.0f64;
    let hy = search(
        &ix,
        json!({"q": q, "searchMethod": "HYBRID", "limit": 10, "hybridParameters": {"alpha": alpha, "rrfK": k}}),
    );
    let rank =
        |r: &SearchResponse, id: &str| ids(r).iter().position(|x| x == id).map(|p| p as f64 + 1.0);
    let mut want: Vec<(String, f64)> = ids(&tensor)
        .into_iter()
        .chain(ids(&lexical))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|id| {
            let s = rank(&tensor, &id).map_or(0.0, |r| alpha / (k + r))
                + rank(&lexical, &id).map_or(0.0, |r| (1.0 - alpha) / (k + r));
            (id, s)
        })
        .collect();
    want.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
    let got: Vec<(String, f64)> = hy
        .hits
        .iter()
        .map(|h| {
            (
                h["_id"].as_str().unwrap().to_string(),
                h["_score"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g.1 - w.1).abs() < 1e-6, "{got:?} vs {want:?}");
    }
    assert_eq!(got[0].0, want[0].0);
    let top = &hy.hits[0];
    assert!(top["_tensor_score"].is_number());
    assert!(top.contains_key("_lexical_score"));
    let mug_only_lex = hy.hits.iter().find(|h| h["_id"] == "e(1)");
    if let Some(h) = mug_only_lex {
        assert!(h["_lexical_score"].is_null());
    }
}

/// Random unit vectors, searched by custom vectors: int8 and float16 keep recall, and deleted
/// documents never come back, also through the graph.
#[test]
fn precision_recall_and_deletes_through_the_graph() {
    use rand::{Rng, SeedableRng};
    let n = 6000;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let centers: Vec<Vec<f32>> = (0..20)
        .map(|_| (0..DIM).map(|_| rng.random::<f32>() - 0.5).collect())
        .collect();
    let rows: Vec<Vec<f32>> = (0..n)
        .map(|i| {
            centers[i % 20]
                .iter()
                .map(|c| c + 0.3 * (rng.random::<f32>() - 0.5))
                .collect()
        })
        .collect();
    for precision in ["float32", "float16", "int8"] {
        let (_d, _e, ix) = index_with(
            json!({"vectorNumericType": precision, "annParameters": {"parameters": {"m": 12, "efConstruction": 64}}}),
        );
        for batch in rows.chunks(1000).enumerate() {
            let docs: Vec<Value> = batch
                .1
                .iter()
                .enumerate()
                .map(|(i, r)| json!({"_id": format!("{}", batch.0 * 1000 + i), "v": {"vector": r}, "group": (batch.0 * 1000 + i) % 10}))
                .collect();
            let r = ix
                .add_documents(&AddDocuments {
                    documents: docs,
                    tensor_fields: vec!["v".into()],
                    mappings: [("v".to_string(), Mapping::CustomVector)]
                        .into_iter()
                        .collect(),
                    ..Default::default()
                })
                .unwrap();
            assert!(!r.errors);
        }
        let deleted: Vec<String> = (0..n).step_by(7).map(|i| i.to_string()).collect();
        ix.delete_documents(&deleted).unwrap();
        let mut hit = 0;
        let mut total = 0;
        for qi in 0..40 {
            let q: Vec<f32> = rows[qi * 101 % n].iter().map(|x| x + 0.05).collect();
            let body = |approx: bool, filter: Option<&str>| {
                let mut b = json!({"q": {"customVector": {"vector": q}}, "limit": 10, "approximate": approx, "efSearch": 64});
                if let Some(f) = filter {
                    b["filter"] = json!(f);
                }
                b
            };
            let exact = ids(&search(&ix, body(false, None)));
            let ann = ids(&search(&ix, body(true, None)));
            assert_eq!(ann.len(), 10);
            for id in &ann {
                assert!(
                    id.parse::<usize>().unwrap() % 7 != 0,
                    "deleted {id} returned"
                );
            }
            hit += ann.iter().filter(|x| exact.contains(x)).count();
            total += 10;
            // A filter keeping 10%: through the graph, limit hits, all matching.
            let f = search(&ix, body(true, Some("group:3")));
            assert_eq!(f.hits.len(), 10);
            assert!(f.hits.iter().all(|h| h["group"] == json!(3)));
            let fe = ids(&search(&ix, body(false, Some("group:3"))));
            let overlap = ids(&f).iter().filter(|x| fe.contains(x)).count();
            assert!(overlap >= 8, "{precision}: filtered overlap {overlap}");
        }
        let recall = hit as f64 / total as f64;
        assert!(recall >= 0.9, "{precision}: recall {recall}");
    }
}

/// With float16 / int8 codes (float32 rows kept out of resident memory, in a scratch file) the
/// graph's hits carry exact float32 scores in exact order, the same before and after a reopen.
#[test]
fn coded_indexes_rescore_exactly_and_reopen() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let rows: Vec<Vec<f32>> = (0..3000)
        .map(|_| (0..DIM).map(|_| rng.random::<f32>() - 0.5).collect())
        .collect();
    let queries: Vec<Vec<f32>> = (0..20)
        .map(|i| {
            rows[i * 97]
                .iter()
                .map(|x| x + 0.1 * (rng.random::<f32>() - 0.5))
                .collect()
        })
        .collect();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let mut resident = Vec::new();
    for precision in ["float32", "float16", "int8"] {
        let d = tempfile::tempdir().unwrap();
        let run = |ix: &Index| -> Vec<Vec<(String, f64)>> {
            queries
                .iter()
                .map(|q| {
                    let r = search(
                        ix,
                        json!({"q": {"customVector": {"vector": q}}, "limit": 10, "efSearch": 64}),
                    );
                    r.hits
                        .iter()
                        .map(|h| {
                            (
                                h["_id"].as_str().unwrap().to_string(),
                                h["_score"].as_f64().unwrap(),
                            )
                        })
                        .collect()
                })
                .collect()
        };
        let before = {
            let e = Engine::open(d.path()).unwrap();
            let ix = e
                .create_index(
                    "t",
                    IndexSettings::from_json(&json!({"vectorNumericType": precision, "normalizeEmbeddings": false, "annParameters": {"spaceType": "dotproduct"}}))
                        .unwrap(),
                    Arc::new(FakeEmbedder::default()),
                )
                .unwrap();
            let docs: Vec<Value> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| json!({"_id": i.to_string(), "v": {"vector": r}}))
                .collect();
            for chunk in docs.chunks(1000) {
                let r = ix
                    .add_documents(&AddDocuments {
                        documents: chunk.to_vec(),
                        tensor_fields: vec!["v".into()],
                        mappings: [("v".to_string(), Mapping::CustomVector)]
                            .into_iter()
                            .collect(),
                        ..Default::default()
                    })
                    .unwrap();
                assert!(!r.errors);
            }
            let st = ix.stats().unwrap();
            resident.push((precision, st.graph_nodes, st.bytes_in_memory as usize));
            assert_eq!(ix.dir().join("rows.f32").exists(), precision != "float32");
            let got = run(&ix);
            ix.checkpoint().unwrap();
            got
        };
        for (q, hits) in queries.iter().zip(&before) {
            assert_eq!(hits.len(), 10);
            let mut exact: Vec<(f32, usize)> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| (dot(q, r), i))
                .collect();
            exact.sort_by(|a, b| b.0.total_cmp(&a.0));
            for w in hits.windows(2) {
                assert!(
                    w[0].1 >= w[1].1,
                    "{precision}: not in score order: {hits:?}"
                );
            }
            for (id, score) in hits {
                let want = dot(q, &rows[id.parse::<usize>().unwrap()]) as f64;
                assert!(
                    (score - want).abs() < 1e-5,
                    "{precision}: {id} scored {score}, exact {want}"
                );
            }
            // The top hit is the exact nearest (the graph reaches it on these easy queries).
            assert_eq!(hits[0].0, exact[0].1.to_string(), "{precision}");
        }
        let e = Engine::open(d.path()).unwrap();
        let ix = e
            .index("t", Some(Arc::new(FakeEmbedder::default())))
            .unwrap();
        assert_eq!(run(&ix), before, "{precision}: same hits after a reopen");
    }
    // Resident memory differs from float32's by the row minus the codes (and int8's scale):
    // no float32 row stays resident beside the codes.
    let (_, n, f32_bytes) = resident[0];
    assert_eq!(
        f32_bytes - resident[1].2,
        n * (4 * DIM - 2 * DIM),
        "{resident:?}"
    );
    assert_eq!(
        f32_bytes - resident[2].2,
        n * (4 * DIM - DIM - 4),
        "{resident:?}"
    );
}

#[test]
fn selective_filter_falls_back_to_exact() {
    let (_d, _e, ix) = index_with(json!({}));
    let docs: Vec<Value> = (0..3000)
        .map(|i| json!({"_id": i.to_string(), "title": format!("item {} word{}", i, i % 37), "rare": i % 1000 == 0}))
        .collect();
    for chunk in docs.chunks(500) {
        add(&ix, Value::Array(chunk.to_vec()), &["title"]);
    }
    let r = search(
        &ix,
        json!({"q": "item word5", "limit": 3, "filter": "rare:true"}),
    );
    let mut got = ids(&r);
    got.sort();
    assert_eq!(got, ["0", "1000", "2000"]);
}
