//! `gclip index ...` run as a user runs it, on the tiny random fixture model: documents are
//! added, some deleted, the index compacted, and stats and search checked afterwards.

use std::path::{Path, PathBuf};

mod common;
use common::{gclip, ok_stdout};

use serde_json::Value;

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference/cli/model")
}

/// Runs `gclip index --data-dir DIR ARGS` and parses its stdout as one JSON value.
fn index_json(dir: &Path, args: &[&str]) -> Value {
    let mut full = vec!["index", "--data-dir", dir.to_str().unwrap()];
    full.extend_from_slice(args);
    let out = ok_stdout(gclip(&full));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn hit_ids(v: &Value) -> Vec<String> {
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn compact_takes_deleted_vectors_out_and_search_keeps_the_live_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let model = model();
    let model = model.to_str().unwrap();
    let titles: Vec<String> = (0..12)
        .map(|i| {
            format!(
                "product number {i} in colour {}",
                ["red", "blue", "green"][i % 3]
            )
        })
        .collect();
    let jsonl = tmp.path().join("docs.jsonl");
    std::fs::write(
        &jsonl,
        titles
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{{\"_id\": \"d{i}\", \"title\": \"{t}\"}}\n"))
            .collect::<String>(),
    )
    .unwrap();

    index_json(&data, &["create", "shop", "--model", model]);
    let added = index_json(
        &data,
        &[
            "add",
            "shop",
            "--jsonl",
            jsonl.to_str().unwrap(),
            "--tensor-fields",
            "title",
            "--model",
            model,
        ],
    );
    assert_eq!(added["added"], 12, "{added}");
    // Two of twelve: under the fifth that makes deletes compact on their own.
    index_json(&data, &["delete", "shop", "d3", "d7"]);
    let stats = index_json(&data, &["stats", "shop"]);
    assert_eq!(stats["numberOfDocuments"], 10, "{stats}");
    assert_eq!(stats["deletedVectors"], 2, "{stats}");
    assert_eq!(stats["compactedVectors"], 0, "{stats}");

    let done = index_json(&data, &["compact", "shop"]);
    assert_eq!(done["vectorsCompacted"], 2, "{done}");
    assert_eq!(done["compactedVectors"], 2, "{done}");
    let stats = index_json(&data, &["stats", "shop"]);
    assert_eq!(stats["compactedVectors"], 2, "{stats}");
    assert_eq!(stats["numberOfVectors"], 10, "{stats}");
    // A second compaction finds nothing new.
    let again = index_json(&data, &["compact", "shop"]);
    assert_eq!(again["vectorsCompacted"], 0, "{again}");

    for (i, t) in titles.iter().enumerate() {
        let r = index_json(
            &data,
            &["search", "shop", t, "--limit", "12", "--model", model],
        );
        let ids = hit_ids(&r);
        assert!(
            !ids.contains(&"d3".to_string()) && !ids.contains(&"d7".to_string()),
            "{ids:?}"
        );
        assert_eq!(ids.len(), 10, "every live document is reachable: {ids:?}");
        if i != 3 && i != 7 {
            // The document's own title embeds exactly as the document does.
            assert_eq!(ids[0], format!("d{i}"), "query {t:?}: {ids:?}");
        }
    }
}
