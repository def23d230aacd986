//! The floor for `bench/serve_load.py`: the same search workload run in process on gclip's
//! library path (an `Index` on the embedded default model, searched from N threads), with no
//! HTTP, JSON or client in between.
//!
//!   cargo build --release -p gclip-server --example search_floor
//!   search_floor WORKLOAD.json CLIENTS SECONDS   (the bench writes WORKLOAD.json)
//!
//! WORKLOAD.json: `{"seed_docs": [...], "tensor_fields": [...], "queries": [[body, ...], ...]}`
//! with one list of search bodies (as sent to `POST /indexes/{name}/search`) per client; each
//! thread cycles through its list until the time is up. Prints one JSON line.

use gclip::index::{AddDocuments, Embedder, Engine, IndexSettings, SearchRequest};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, clients, seconds] = args.as_slice() else {
        return Err("usage: search_floor WORKLOAD.json CLIENTS SECONDS".into());
    };
    let clients: usize = clients.parse()?;
    let seconds: f64 = seconds.parse()?;
    let w: Value = serde_json::from_slice(&std::fs::read(path)?)?;

    let clip = Arc::new(gclip::Clip::load(&gclip::ModelSource::Default)?);
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(dir.path())?;
    let e: Arc<dyn Embedder> = clip;
    let ix = engine.create_index("load", IndexSettings::default(), e)?;
    let docs = w["seed_docs"].as_array().ok_or("seed_docs")?;
    let fields: Vec<String> = serde_json::from_value(w["tensor_fields"].clone())?;
    for chunk in docs.chunks(64) {
        let r = ix.add_documents(&AddDocuments {
            documents: chunk.to_vec(),
            tensor_fields: fields.clone(),
            ..AddDocuments::default()
        })?;
        if r.errors {
            return Err("seeding failed".into());
        }
    }
    let queries: Vec<Vec<SearchRequest>> = serde_json::from_value(w["queries"].clone())?;
    if queries.len() < clients || queries.iter().any(Vec::is_empty) {
        return Err("the workload needs a non-empty query list per client".into());
    }
    let stop = Instant::now() + Duration::from_secs_f64(seconds);
    let t0 = Instant::now();
    let per_thread: Vec<(Vec<f64>, usize)> = std::thread::scope(|s| {
        let hs: Vec<_> = queries
            .iter()
            .take(clients)
            .map(|qs| {
                let ix = &ix;
                s.spawn(move || {
                    let (mut lat, mut errors) = (Vec::new(), 0usize);
                    for q in qs.iter().cycle() {
                        if Instant::now() >= stop {
                            break;
                        }
                        let t = Instant::now();
                        let ok = ix.search(q).is_ok_and(|r| !r.hits.is_empty());
                        lat.push(t.elapsed().as_secs_f64());
                        errors += usize::from(!ok);
                    }
                    (lat, errors)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("search thread"))
            .collect()
    });
    let wall = t0.elapsed().as_secs_f64();
    let errors: usize = per_thread.iter().map(|(_, e)| e).sum();
    let mut lat: Vec<f64> = per_thread.into_iter().flat_map(|(l, _)| l).collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let i = ((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1));
        (lat.get(i).copied().unwrap_or(0.0) * 1e4).round() / 10.0
    };
    let per_s = (lat.len() as f64 / wall * 10.0).round() / 10.0;
    println!(
        "{}",
        json!({
            "path": "library", "clients": clients, "seconds": (wall * 10.0).round() / 10.0,
            "req_per_s": per_s, "errors": errors,
            "search": {"n": lat.len(), "per_s": per_s, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
                       "errors": errors},
        })
    );
    Ok(())
}
