mod common;

use common::{text_vec, unit, FakeEmbedder, DIM};
use gclip_index::*;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn engine() -> (tempfile::TempDir, Engine) {
    let d = tempfile::tempdir().unwrap();
    let e = Engine::open(d.path()).unwrap();
    (d, e)
}

fn add(ix: &Index, docs: Value, tensor: &[&str]) -> BatchResponse {
    let req = AddDocuments {
        documents: docs.as_array().unwrap().clone(),
        tensor_fields: tensor.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    ix.add_documents(&req).unwrap()
}

fn search(ix: &Index, body: Value) -> SearchResponse {
    let req: SearchRequest = serde_json::from_value(body).unwrap();
    ix.search(&req).unwrap()
}

fn ids(r: &SearchResponse) -> Vec<String> {
    r.hits
        .iter()
        .map(|h| h["_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn create_list_reopen_and_model_pin() {
    let (d, e) = engine();
    let emb = Arc::new(FakeEmbedder::default());
    let settings = IndexSettings::from_json(
        &json!({"textPreprocessing": {"splitLength": 3, "splitMethod": "word"}}),
    )
    .unwrap();
    let ix = e
        .create_index("shop", settings.clone(), emb.clone())
        .unwrap();
    assert!(matches!(
        e.create_index("shop", IndexSettings::default(), emb.clone()),
        Err(Error::IndexAlreadyExists(_))
    ));
    assert!(matches!(
        e.create_index("9bad", IndexSettings::default(), emb.clone()),
        Err(Error::InvalidIndexName(_))
    ));
    add(
        &ix,
        json!([{"_id": "a", "title": "red shoe", "price": 10}]),
        &["title"],
    );
    drop(ix);
    drop(e);
    let e = Engine::open(d.path()).unwrap();
    assert_eq!(e.list().unwrap(), vec!["shop".to_string()]);
    let other = Arc::new(FakeEmbedder {
        id: Some("another-model".into()),
        ..Default::default()
    });
    let err = e.index("shop", Some(other)).unwrap_err();
    assert!(matches!(err, Error::ModelMismatch { .. }), "{err}");
    assert!(err.to_string().contains("fake-bow-32"));
    let ix = e.index("shop", Some(emb)).unwrap();
    assert_eq!(ix.settings(), &settings);
    assert_eq!(ix.get_document("a", false).unwrap()["price"], json!(10));
    assert!(matches!(
        e.index("nope", None),
        Err(Error::IndexNotFound(_))
    ));
    drop(ix);
    e.drop_index("shop").unwrap();
    assert!(e.list().unwrap().is_empty());
    assert!(matches!(e.drop_index("shop"), Err(Error::IndexNotFound(_))));
}

#[test]
fn add_get_replace_update_delete_stats() {
    let (_d, e) = engine();
    let emb = Arc::new(FakeEmbedder::default());
    let ix = e
        .create_index("docs", IndexSettings::default(), emb.clone())
        .unwrap();
    let r = add(
        &ix,
        json!([
            {"_id": "1", "title": "red running shoe", "desc": "light and fast", "price": 30, "tags": ["sport", "red"], "stock": true},
            {"_id": "2", "title": "blue coffee mug", "desc": "ceramic", "price": 8},
            {"title": "green tea pot", "price": 20}
        ]),
        &["title", "desc"],
    );
    assert!(!r.errors, "{r:?}");
    assert_eq!(r.items.len(), 3);
    let assigned = r.items[2].id.clone();
    assert_eq!(assigned.len(), 36, "a UUID is assigned");
    let d1 = ix.get_document("1", false).unwrap();
    assert_eq!(d1["tags"], json!(["sport", "red"]));
    assert_eq!(d1["_id"], json!("1"));
    let facets = ix.get_document("1", true).unwrap();
    let f = facets["_tensor_facets"].as_array().unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(f[0]["_embedding"].as_array().unwrap().len(), DIM);
    let batch = ix.get_documents(&["1".into(), "zz".into()], false);
    assert_eq!(batch[0]["_found"], json!(true));
    assert_eq!(batch[1]["_found"], json!(false));
    assert_eq!(batch[1]["status"], json!(404));
    assert!(matches!(
        ix.get_document("zz", false),
        Err(Error::DocumentNotFound(_))
    ));
    let s = ix.stats().unwrap();
    assert_eq!(s.number_of_documents, 3);
    assert_eq!(s.number_of_vectors, 5);
    assert!(s.bytes_on_disk > 0);

    // Re-adding with the same tensor content reuses the stored vectors (no new embeddings).
    let before = emb.texts_embedded.load(Ordering::SeqCst);
    add(
        &ix,
        json!([{"_id": "1", "title": "red running shoe", "desc": "light and fast", "price": 25}]),
        &["title", "desc"],
    );
    assert_eq!(emb.texts_embedded.load(Ordering::SeqCst), before);
    let d1 = ix.get_document("1", false).unwrap();
    assert_eq!(d1["price"], json!(25));
    assert!(d1.get("tags").is_none(), "add replaces the whole document");

    // Partial update: only the changed tensor field is embedded again.
    let before = emb.texts_embedded.load(Ordering::SeqCst);
    let r = ix
        .update_documents(&[
            json!({"_id": "1", "desc": "heavy and slow"}),
            json!({"_id": "missing", "x": 1}),
        ])
        .unwrap();
    assert_eq!(r.items[0].status, 200);
    assert_eq!(r.items[1].status, 404);
    assert_eq!(emb.texts_embedded.load(Ordering::SeqCst), before + 1);
    let d1 = ix.get_document("1", false).unwrap();
    assert_eq!(d1["desc"], json!("heavy and slow"));
    assert_eq!(d1["title"], json!("red running shoe"));
    let hit = search(&ix, json!({"q": "heavy slow", "limit": 1}));
    assert_eq!(ids(&hit), ["1"]);
    assert_eq!(
        hit.hits[0]["_highlights"],
        json!([{"desc": "heavy and slow"}])
    );
    // A non-tensor update keeps every vector.
    let before = emb.texts_embedded.load(Ordering::SeqCst);
    ix.update_documents(&[json!({"_id": "1", "price": 99})])
        .unwrap();
    assert_eq!(emb.texts_embedded.load(Ordering::SeqCst), before);
    assert_eq!(ix.stats().unwrap().number_of_vectors, 5);

    // Deletes: by id and by filter; deleted documents are never returned.
    let r = ix.delete_documents(&["2".into(), "nope".into()]).unwrap();
    assert_eq!(r.items[0].result.as_deref(), Some("deleted"));
    assert_eq!(r.items[1].status, 404);
    assert_eq!(ix.delete_by_filter("price:[15 TO 25]").unwrap(), 1);
    assert!(ix.get_document(&assigned, false).is_err());
    let all = search(&ix, json!({"q": "blue coffee mug", "limit": 10}));
    assert_eq!(ids(&all), ["1"]);
    let s = ix.stats().unwrap();
    assert_eq!((s.number_of_documents, s.number_of_vectors), (1, 2));
}

#[test]
fn bad_input_fails_only_its_document() {
    let (_d, e) = engine();
    let emb = Arc::new(FakeEmbedder::default());
    let settings = IndexSettings::from_json(
        &json!({"treatUrlsAndPointersAsImages": true, "maxDocumentBytes": 2000}),
    )
    .unwrap();
    let ix = e.create_index("bad", settings, emb).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good_img = dir.path().join("good.png");
    std::fs::write(&good_img, b"IMG:red shoe").unwrap();
    let bad_img = dir.path().join("bad.png");
    std::fs::write(&bad_img, b"\x89PNG garbage").unwrap();
    let mut docs = vec![
        json!({"_id": "ok", "title": "fine"}),
        json!({"_id": "img", "image": good_img.to_str().unwrap()}),
        json!({"_id": "corrupt", "image": bad_img.to_str().unwrap()}),
        json!({"_id": "missing", "image": "/no/such/file.jpg"}),
        json!({"_id": "obj", "title": {"nested": 1}}),
        json!({"_id": "arr", "nums": [1, 2]}),
        json!({"_id": "huge", "title": "x".repeat(5000)}),
        json!({"_id": 5, "title": "numeric id"}),
        json!({"_id": "badname", "my-field": "x"}),
        json!({"_id": "reserved", "_score": 1}),
        json!({"_id": "vec", "v": {"vector": [1.0, 2.0], "content": "short"}}),
        json!("not an object"),
    ];
    docs.push(json!({"_id": "ok2", "title": "also fine"}));
    let req = AddDocuments {
        documents: docs,
        tensor_fields: vec!["title".into(), "image".into(), "v".into()],
        mappings: [("v".to_string(), Mapping::CustomVector)]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let r = ix.add_documents(&req).unwrap();
    assert!(r.errors);
    let status: Vec<(String, u16, Option<String>)> = r
        .items
        .iter()
        .map(|i| (i.id.clone(), i.status, i.code.clone()))
        .collect();
    let code = |id: &str| {
        status
            .iter()
            .find(|s| s.0 == id)
            .map(|s| (s.1, s.2.clone().unwrap_or_default()))
    };
    assert_eq!(code("ok").unwrap().0, 200);
    assert_eq!(code("ok2").unwrap().0, 200);
    assert_eq!(code("img").unwrap().0, 200);
    assert_eq!(code("corrupt").unwrap(), (400, "invalid_argument".into()));
    assert_eq!(code("missing").unwrap().0, 400);
    assert_eq!(code("obj").unwrap().0, 400);
    assert_eq!(code("arr").unwrap().0, 400);
    assert_eq!(code("huge").unwrap(), (400, "doc_too_large".into()));
    assert_eq!(code("badname").unwrap(), (400, "invalid_field_name".into()));
    assert_eq!(
        code("reserved").unwrap(),
        (400, "invalid_field_name".into())
    );
    assert!(r
        .items
        .iter()
        .any(|i| i.code.as_deref() == Some("invalid_document_id")));
    let v = code("vec").unwrap();
    assert_eq!(v.0, 400, "wrong vector dimension");
    assert!(r.items.iter().any(|i| i
        .message
        .as_deref()
        .is_some_and(|m| m.contains("dimension 2"))));
    assert!(r.items.iter().any(|i| i
        .message
        .as_deref()
        .is_some_and(|m| m.contains("must be a JSON object"))));
    assert_eq!(ix.stats().unwrap().number_of_documents, 3);
    assert!(ix.get_document("corrupt", false).is_err());
    // The image document is found by its content.
    let hit = ix.search(&SearchRequest::text("red shoe")).unwrap();
    assert_eq!(hit.hits[0]["_id"], json!("img"));
    // Search argument errors.
    let mut req = SearchRequest::text("x");
    req.limit = 0;
    assert!(matches!(ix.search(&req), Err(Error::InvalidArgument(_))));
    let bad_vec: SearchRequest =
        serde_json::from_value(json!({"q": {"customVector": {"vector": [1.0]}}})).unwrap();
    assert!(ix
        .search(&bad_vec)
        .unwrap_err()
        .to_string()
        .contains("dimension"));
    assert!(serde_json::from_value::<SearchRequest>(json!({"q": "x", "unknownKey": 1})).is_err());
}

#[test]
fn custom_vectors_and_multimodal_fusion() {
    let (_d, e) = engine();
    let emb = Arc::new(FakeEmbedder::default());
    let settings =
        IndexSettings::from_json(&json!({"treatUrlsAndPointersAsImages": true})).unwrap();
    let ix = e.create_index("mm", settings, emb).unwrap();
    use base64::Engine as _;
    let img = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(b"IMG:wooden chair")
    );
    let mut cv = vec![0f32; DIM];
    cv[3] = 2.0;
    let req = AddDocuments {
        documents: vec![
            json!({"_id": "p", "title": "red sofa", "image": img, "vec": {"vector": cv, "content": "custom"}}),
            json!({"_id": "q", "title": "only title"}),
        ],
        tensor_fields: vec!["combo".into(), "vec".into()],
        mappings: [
            (
                "combo".to_string(),
                Mapping::MultimodalCombination {
                    weights: [("title".to_string(), 0.25), ("image".to_string(), 0.75)]
                        .into_iter()
                        .collect(),
                },
            ),
            ("vec".to_string(), Mapping::CustomVector),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let r = ix.add_documents(&req).unwrap();
    assert!(!r.errors, "{r:?}");
    let doc = ix.get_document("p", true).unwrap();
    assert_eq!(doc["vec"], json!("custom"));
    let facets = doc["_tensor_facets"].as_array().unwrap();
    let combo = facets.iter().find(|f| f.get("combo").is_some()).unwrap();
    let got: Vec<f32> = serde_json::from_value(combo["_embedding"].clone()).unwrap();
    // Hand computation: normalise each part, weights renormalised over present parts, sum, normalise.
    let t = unit(text_vec("red sofa"));
    let i = unit(text_vec("wooden chair"));
    let want = unit(t.iter().zip(&i).map(|(a, b)| 0.25 * a + 0.75 * b).collect());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5, "{g} vs {w}");
    }
    // Only the title present: the combination is the title's direction.
    let q = ix.get_document("q", true).unwrap();
    let qv: Vec<f32> =
        serde_json::from_value(q["_tensor_facets"][0]["_embedding"].clone()).unwrap();
    let want = unit(text_vec("only title"));
    assert!(qv.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5));
    // The custom vector was normalised and is searchable by a custom vector query.
    let mut qv = vec![0f32; DIM];
    qv[3] = 1.0;
    let r: SearchRequest = serde_json::from_value(
        json!({"q": {"customVector": {"vector": qv}}, "searchableAttributes": ["vec"]}),
    )
    .unwrap();
    let hits = ix.search(&r).unwrap();
    assert_eq!(hits.hits[0]["_id"], json!("p"));
    assert!((hits.hits[0]["_score"].as_f64().unwrap() - 1.0).abs() < 1e-5);
    assert_eq!(hits.hits[0]["_highlights"], json!([{"vec": "custom"}]));
}
