//! An acknowledged write survives kill -9: a child process streams documents from two writers,
//! is killed mid-stream, and every acknowledged document is then retrievable and searchable.

use gclip_index::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child on every exit path, so a failing test leaves no process behind.
struct Reap(std::process::Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_until_acks(
    dir: &std::path::Path,
    prefix: &str,
    stop_after: usize,
    numeric_type: &str,
) -> Vec<String> {
    let child = Command::new(env!("CARGO_BIN_EXE_gclip-index-crashtest"))
        .args([dir.to_str().unwrap(), "2", "100000", prefix, numeric_type])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the writer");
    let mut child = Reap(child);
    let out = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut acks = Vec::new();
    while acks.len() < stop_after {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "writer too slow: {} acks", acks.len());
        match rx.recv_timeout(left) {
            Ok(l) => acks.push(l.strip_prefix("ACK ").expect("ACK line").to_string()),
            Err(e) => panic!("writer stopped after {} acks: {e}", acks.len()),
        }
    }
    // SIGKILL mid-stream.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // Lines already in the pipe were acknowledged too.
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
        if let Some(id) = l.strip_prefix("ACK ") {
            acks.push(id.to_string());
        }
    }
    acks
}

#[test]
fn acknowledged_documents_survive_sigkill() {
    survive_sigkill("float32");
}

/// With int8 codes the float32 rows live in a scratch file that a kill leaves behind
/// half-written: the open writes it again from the store.
#[test]
fn acknowledged_documents_survive_sigkill_with_int8_codes() {
    survive_sigkill("int8");
}

fn survive_sigkill(numeric_type: &str) {
    let d = tempfile::tempdir().unwrap();
    let mut acked = run_until_acks(d.path(), "a", 300, numeric_type);
    // A second life: restart, write more, kill again.
    acked.extend(run_until_acks(d.path(), "b", 150, numeric_type));
    let e = Engine::open(d.path()).unwrap();
    let ix = e.index("crash", None).unwrap();
    let stats = ix.stats().unwrap();
    assert!(
        stats.number_of_documents >= acked.len(),
        "{stats:?} < {}",
        acked.len()
    );
    for id in &acked {
        let doc = ix
            .get_document(id, true)
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        let (w, i) = id.split_once('-').unwrap();
        let token = format!("tok{w}x{i}");
        // By text (lexical, on the tantivy index caught up on open): a phrase of the unique
        // token and the next word finds exactly this document.
        let lex: SearchRequest = serde_json::from_value(
            json!({"q": format!("\"{token} common\""), "searchMethod": "LEXICAL", "limit": 2}),
        )
        .unwrap();
        let r = ix.search(&lex).unwrap();
        assert_eq!(
            r.hits.first().map(|h| h["_id"].clone()),
            Some(json!(id)),
            "lexical {id}"
        );
        assert_eq!(r.hits.len(), 1, "lexical {id}: only the phrase's document");
        // By vector, through the graph: its own stored vector finds it first.
        let v = doc["_tensor_facets"][0]["_embedding"].clone();
        let q: SearchRequest = serde_json::from_value(
            json!({"q": {"customVector": {"vector": v}}, "limit": 3, "efSearch": 64}),
        )
        .unwrap();
        let r = ix.search(&q).unwrap();
        assert!(r.hits.iter().any(|h| h["_id"] == json!(id)), "vector {id}");
    }
}
