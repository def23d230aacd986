//! Test helper for the durability test (not a user tool): streams documents into an index from
//! several writer threads and prints `ACK <id>` after each acknowledged add, until killed.
//! Usage: gclip-index-crashtest DATA_DIR WRITERS DOCS_PER_WRITER ID_PREFIX [NUMERIC_TYPE]
//! (NUMERIC_TYPE: the new index's `vectorNumericType`, default float32).

use gclip_index::*;
use serde_json::json;
use std::io::Write;
use std::sync::Arc;

/// Word-hashing embedder: the test computes the same vectors to search by.
struct Words;

impl Embedder for Words {
    fn model_id(&self) -> String {
        "crashtest-words-16".into()
    }
    fn dim(&self) -> usize {
        16
    }
    fn embed_texts(&self, texts: &[&str]) -> Result<Embeddings, EmbedError> {
        let rows: Vec<Vec<f32>> = texts.iter().map(|t| words_vector(t)).collect();
        Embeddings::from_rows(16, &rows).map_err(|e| EmbedError::with_source("rows", e))
    }
    fn embed_images(&self, images: &[ImageInput]) -> Vec<Result<Vec<f32>, EmbedError>> {
        images
            .iter()
            .map(|_| Err(EmbedError::new("no images here")))
            .collect()
    }
}

fn words_vector(t: &str) -> Vec<f32> {
    let mut v = vec![0f32; 16];
    for w in t.split_whitespace() {
        let mut h: u64 = 1469598103934665603;
        for b in w.bytes() {
            h = (h ^ b as u64).wrapping_mul(1099511628211);
        }
        for x in v.iter_mut() {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            *x += (h % 2001) as f32 / 1000.0 - 1.0;
        }
    }
    v
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 && args.len() != 6 {
        eprintln!(
            "usage: gclip-index-crashtest DATA_DIR WRITERS DOCS_PER_WRITER ID_PREFIX [NUMERIC_TYPE]"
        );
        std::process::exit(2);
    }
    let writers: usize = args[2].parse().expect("WRITERS");
    let per: usize = args[3].parse().expect("DOCS_PER_WRITER");
    let prefix = args[4].clone();
    let engine = Engine::open(&args[1]).expect("engine");
    let emb: Arc<dyn Embedder> = Arc::new(Words);
    let ix = match engine.index("crash", Some(emb.clone())) {
        Ok(ix) => ix,
        Err(Error::IndexNotFound(_)) => engine
            .create_index(
                "crash",
                IndexSettings::from_json(&json!({
                    "vectorNumericType": args.get(5).map_or("float32", String::as_str)
                }))
                .expect("settings"),
                emb,
            )
            .expect("create"),
        Err(e) => panic!("{e}"),
    };
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    std::thread::scope(|s| {
        for w in 0..writers {
            let ix = ix.clone();
            let out = out.clone();
            let prefix = &prefix;
            s.spawn(move || {
                for i in 0..per {
                    let id = format!("{prefix}w{w}-{i}");
                    let doc = json!({"_id": id, "title": format!("tok{prefix}w{w}x{i} common words"), "n": i});
                    let r = ix
                        .add_documents(&AddDocuments {
                            documents: vec![doc],
                            tensor_fields: vec!["title".into()],
                            ..Default::default()
                        })
                        .expect("add");
                    assert!(!r.errors, "{r:?}");
                    if i % 50 == 49 {
                        ix.checkpoint().expect("checkpoint");
                    }
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {id}").unwrap();
                    o.flush().unwrap();
                }
            });
        }
    });
}
