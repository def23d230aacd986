//! Searches and reads run while documents are added and replaced; a reader never sees half a
//! document (fields x and y are always written together with y = 2x).

mod common;

use common::FakeEmbedder;
use gclip_index::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

#[test]
fn searches_during_adds_see_whole_documents() {
    let d = tempfile::tempdir().unwrap();
    let e = Engine::open(d.path()).unwrap();
    let ix = e
        .create_index(
            "c",
            IndexSettings::default(),
            Arc::new(FakeEmbedder::default()),
        )
        .unwrap();
    let done = AtomicBool::new(false);
    let searches = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for round in 0..3 {
                for b in 0..10 {
                    let docs = (0..50)
                        .map(|i| {
                            let id = b * 50 + i;
                            let x = round * 1000 + id;
                            json!({"_id": id.to_string(), "title": format!("doc {id} word{} round{round}", id % 13), "x": x, "y": 2 * x})
                        })
                        .collect();
                    let r = ix
                        .add_documents(&AddDocuments { documents: docs, tensor_fields: vec!["title".into()], ..Default::default() })
                        .unwrap();
                    assert!(!r.errors);
                }
            }
            done.store(true, Ordering::SeqCst);
        });
        for t in 0..2 {
            let (ix, done, searches) = (&ix, &done, &searches);
            s.spawn(move || {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while !done.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                    let q = format!("word{} round{}", t * 3 % 13, t % 3);
                    let r = ix
                        .search(&SearchRequest {
                            limit: 20,
                            ..SearchRequest::text(&q)
                        })
                        .unwrap();
                    for h in &r.hits {
                        let x = h["x"].as_i64().unwrap();
                        assert_eq!(h["y"].as_i64().unwrap(), 2 * x, "half a document: {h:?}");
                        let id = h["_id"].as_str().unwrap();
                        if let Ok(doc) = ix.get_document(id, false) {
                            assert_eq!(doc["y"].as_i64().unwrap(), 2 * doc["x"].as_i64().unwrap());
                        }
                    }
                    let lex: SearchRequest =
                        serde_json::from_value(json!({"q": q, "searchMethod": "LEXICAL"})).unwrap();
                    ix.search(&lex).unwrap();
                    searches.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        writer.join().unwrap();
    });
    assert!(searches.load(Ordering::SeqCst) > 0);
    let s = ix.stats().unwrap();
    assert_eq!(s.number_of_documents, 500);
    assert_eq!(s.number_of_vectors, 500);
    let r = ix
        .search(&SearchRequest::text("doc 123 word6 round2"))
        .unwrap();
    assert_eq!(r.hits[0]["_id"], json!("123"));
    assert_eq!(r.hits[0]["x"], json!(2123));
}
