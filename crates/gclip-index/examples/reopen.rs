//! Measures how long reopening a large index takes (no rebuild: the graph is loaded from
//! `ann.bin`, vectors and documents from redb).
//! Usage: cargo run -p gclip-index --example reopen -- DIR [N] [DIM] [NUMERIC_TYPE]
//! (NUMERIC_TYPE: `vectorNumericType` of a new index, default float32).

use gclip_index::*;
use serde_json::json;
use std::time::Instant;

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).expect("usage: reopen DIR [N] [DIM]");
    let n: usize = args.get(2).map_or(100_000, |s| s.parse().expect("N"));
    let dim: usize = args.get(3).map_or(512, |s| s.parse().expect("DIM"));
    let numeric = args.get(4).map_or("float32", String::as_str);
    let engine = Engine::open(dir)?;
    if engine.list()?.iter().all(|x| x != "big") {
        let settings = IndexSettings::from_json(
            &json!({"vectorNumericType": numeric, "annParameters": {"parameters": {"m": 16, "efConstruction": 64}}}),
        )?;
        let ix = engine.create_index_for("big", settings, "custom", dim, None)?;
        let mut s = 1u64;
        let t = Instant::now();
        for b in 0..n.div_ceil(1000) {
            let docs = (b * 1000..((b + 1) * 1000).min(n))
                .map(|i| {
                    let v: Vec<f32> = (0..dim)
                        .map(|_| {
                            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                        })
                        .collect();
                    json!({"_id": i.to_string(), "v": {"vector": v}, "title": format!("item {i}"), "group": i % 100})
                })
                .collect();
            let r = ix.add_documents(&AddDocuments {
                documents: docs,
                tensor_fields: vec!["v".into()],
                mappings: [("v".to_string(), Mapping::CustomVector)]
                    .into_iter()
                    .collect(),
                ..Default::default()
            })?;
            assert!(!r.errors);
        }
        ix.checkpoint()?;
        println!(
            "{}",
            json!({"built_docs": n, "build_s": t.elapsed().as_secs_f64()})
        );
    }
    drop(engine);
    let t = Instant::now();
    let engine = Engine::open(dir)?;
    let ix = engine.index("big", None)?;
    let open_s = t.elapsed().as_secs_f64();
    let stats = ix.stats()?;
    let q = ix.get_document("42", true)?["_tensor_facets"][0]["_embedding"].clone();
    let req: SearchRequest =
        serde_json::from_value(json!({"q": {"customVector": {"vector": q}}, "limit": 1}))?;
    let hit = ix.search(&req)?;
    println!(
        "{}",
        json!({"reopen_s": open_s, "documents": stats.number_of_documents, "bytes_on_disk": stats.bytes_on_disk, "top_hit": hit.hits[0]["_id"]})
    );
    Ok(())
}
