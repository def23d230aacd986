mod common;

use common::FakeEmbedder;
use gclip_index::*;
use serde_json::json;
use std::sync::Arc;

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let e = Engine::open(d.path()).unwrap();
    let ix = e
        .create_index(
            "l",
            IndexSettings::default(),
            Arc::new(FakeEmbedder::default()),
        )
        .unwrap();
    let docs = (0..600)
        .map(|i| json!({"_id": i.to_string(), "t": format!("item{i} shared")}))
        .collect();
    let r = ix
        .add_documents(&AddDocuments {
            documents: docs,
            tensor_fields: vec!["t".into()],
            ..Default::default()
        })
        .unwrap();
    assert!(!r.errors);
    let dir = ix.dir().to_path_buf();
    (d, dir)
}

#[test]
fn other_layout_versions_name_the_version_needed() {
    let (d, dir) = setup();
    {
        let db = redb::Database::create(dir.join("index.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            t.insert("layout", 7u32.to_le_bytes().as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let e = Engine::open(d.path()).unwrap();
    let err = e.index("l", None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LayoutVersion {
                found: 7,
                supported: LAYOUT_VERSION,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("layout version 7"), "{err}");
}

#[test]
fn a_corrupt_or_missing_graph_is_rebuilt_from_the_store() {
    let (d, dir) = setup();
    let emb = Arc::new(FakeEmbedder::default());
    for damage in ["garbage", "missing"] {
        match damage {
            "garbage" => std::fs::write(dir.join("ann.bin"), b"GCLIPANN\x05\0\0\0abcde").unwrap(),
            _ => std::fs::remove_file(dir.join("ann.bin")).unwrap(),
        }
        let e = Engine::open(d.path()).unwrap();
        let ix = e.index("l", Some(emb.clone())).unwrap();
        let r = ix.search(&SearchRequest::text("item417 shared")).unwrap();
        assert_eq!(r.hits[0]["_id"], json!("417"), "{damage}");
        assert_eq!(ix.stats().unwrap().graph_nodes, 600);
        drop(ix);
        drop(e);
        assert!(
            dir.join("ann.bin").exists(),
            "the rebuilt graph is saved again"
        );
    }
}

fn lexical_ids(ix: &Index, q: &str) -> Vec<String> {
    let req: SearchRequest =
        serde_json::from_value(json!({"q": q, "searchMethod": "LEXICAL", "limit": 10})).unwrap();
    ix.search(&req)
        .unwrap()
        .hits
        .iter()
        .map(|h| h["_id"].as_str().unwrap().to_string())
        .collect()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_text_index_left_behind_or_damaged_is_caught_up_on_open() {
    let (d, dir) = setup();
    let emb = Arc::new(FakeEmbedder::default());
    let snapshot = d.path().join("text-snapshot");
    copy_dir(&dir.join("text"), &snapshot);
    {
        let e = Engine::open(d.path()).unwrap();
        let ix = e.index("l", Some(emb.clone())).unwrap();
        ix.add_documents(&AddDocuments {
            documents: vec![json!({"_id": "new", "t": "freshword shared"})],
            tensor_fields: vec!["t".into()],
            ..Default::default()
        })
        .unwrap();
        ix.delete_documents(&["5".to_string()]).unwrap();
        assert_eq!(lexical_ids(&ix, "freshword"), vec!["new"]);
        assert!(lexical_ids(&ix, "item5").is_empty());
    }
    // As after a crash between the redb commits and the text commits: the text index is two
    // writes behind.
    std::fs::remove_dir_all(dir.join("text")).unwrap();
    copy_dir(&snapshot, &dir.join("text"));
    {
        let e = Engine::open(d.path()).unwrap();
        let ix = e.index("l", Some(emb.clone())).unwrap();
        assert_eq!(lexical_ids(&ix, "freshword"), vec!["new"]);
        assert!(lexical_ids(&ix, "item5").is_empty());
        assert_eq!(lexical_ids(&ix, "item417"), vec!["417"]);
    }
    // Damaged beyond reading: rebuilt from the documents.
    std::fs::write(dir.join("text").join("meta.json"), b"{not json").unwrap();
    let e = Engine::open(d.path()).unwrap();
    let ix = e.index("l", Some(emb)).unwrap();
    assert_eq!(lexical_ids(&ix, "item417"), vec!["417"]);
    assert_eq!(lexical_ids(&ix, "freshword"), vec!["new"]);
}

#[test]
fn deleted_vectors_are_compacted_out_of_graph_and_store() {
    let (d, dir) = setup();
    let emb = Arc::new(FakeEmbedder::default());
    let gone: Vec<String> = (0..300).map(|i| (i * 2).to_string()).collect();
    let hits = |ix: &Index, q: &str| -> Vec<String> {
        let mut req = SearchRequest::text(q);
        req.limit = 20;
        ix.search(&req)
            .unwrap()
            .hits
            .iter()
            .map(|h| h["_id"].as_str().unwrap().to_string())
            .collect()
    };
    {
        let e = Engine::open(d.path()).unwrap();
        let ix = e.index("l", Some(emb.clone())).unwrap();
        ix.delete_documents(&gone).unwrap();
        let s = ix.stats().unwrap();
        assert_eq!((s.deleted_vectors, s.compacted_vectors), (300, 0), "{s:?}");
        assert_eq!(ix.compact().unwrap(), 300);
        let s = ix.stats().unwrap();
        assert_eq!(
            (s.deleted_vectors, s.compacted_vectors),
            (300, 300),
            "{s:?}"
        );
        assert_eq!(s.number_of_documents, 300);
        let h = hits(&ix, "item417 shared");
        assert_eq!(h[0], "417");
        assert!(h.iter().all(|id| !gone.contains(id)), "{h:?}");
    }
    for (damage, word) in [("none", "item9999"), ("graph missing", "item8888")] {
        if damage == "graph missing" {
            std::fs::remove_file(dir.join("ann.bin")).unwrap();
        }
        let e = Engine::open(d.path()).unwrap();
        let ix = e.index("l", Some(emb.clone())).unwrap();
        let s = ix.stats().unwrap();
        assert_eq!(s.compacted_vectors, 300, "{damage}: {s:?}");
        let h = hits(&ix, "item417 shared");
        assert_eq!(h[0], "417", "{damage}");
        assert!(h.iter().all(|id| !gone.contains(id)), "{damage}: {h:?}");
        // New documents link into the compacted graph.
        ix.add_documents(&AddDocuments {
            documents: vec![json!({"_id": format!("n{damage}"), "t": format!("{word} shared")})],
            tensor_fields: vec!["t".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            hits(&ix, &format!("{word} shared"))[0],
            format!("n{damage}")
        );
    }
}
