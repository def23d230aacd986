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
