//! Reading training rows: formats, column mapping, weights, rejected rows.

use std::path::Path;

use gclip_train::data::{load_dataset, read_table, Field};
use gclip_train::{ScoreToWeight, TrainConfig};

fn cfg() -> TrainConfig {
    TrainConfig {
        left_keys: vec!["q".into()],
        left_weights: vec![1.0],
        right_keys: vec!["img".into(), "name".into()],
        right_weights: vec![0.9, 0.1],
        image_keys: vec!["img".into()],
        weight_key: Some("pos".into()),
        score_to_weight: ScoreToWeight::Reciprocal,
        left_id_key: Some("qid".into()),
        right_id_key: None,
        ..TrainConfig::default()
    }
}

#[test]
fn csv_and_jsonl_give_the_same_examples() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("rows.csv"),
        "q,img,name,pos,qid\nred shoe,a.png,Shoe A,1,7\nred shoe,b.png,,4,7\nblue hat,,Hat,2,8\nbad,c.png,C,zero,9\n",
    )
    .unwrap();
    std::fs::write(
        d.join("rows.jsonl"),
        concat!(
            "{\"q\":\"red shoe\",\"img\":\"a.png\",\"name\":\"Shoe A\",\"pos\":1,\"qid\":7}\n",
            "{\"q\":\"red shoe\",\"img\":\"b.png\",\"name\":null,\"pos\":4,\"qid\":7}\n",
            "{\"q\":\"blue hat\",\"img\":\"\",\"name\":\"Hat\",\"pos\":2,\"qid\":8}\n",
            "{\"q\":\"bad\",\"img\":\"c.png\",\"name\":\"C\",\"pos\":\"zero\",\"qid\":9}\n"
        ),
    )
    .unwrap();
    let a = load_dataset(&d.join("rows.csv"), &cfg()).unwrap();
    let b = load_dataset(&d.join("rows.jsonl"), &cfg()).unwrap();
    assert_eq!(a.examples, b.examples);
    assert_eq!(a.examples.len(), 3);
    assert_eq!(a.rejected.len(), 1);
    assert_eq!(a.rejected[0].0, 4);
    let e = &a.examples;
    assert_eq!(e[0].right[0], Field::Image(d.join("a.png")));
    assert_eq!(e[1].right[1], Field::Missing);
    assert_eq!(e[2].right[0], Field::Missing);
    assert_eq!(e[1].weight, 0.25);
    // same qid -> same group; no product id column -> content decides
    assert_eq!(e[0].left_id, e[1].left_id);
    assert_ne!(e[0].left_id, e[2].left_id);
    assert_ne!(e[0].right_id, e[1].right_id);
}

#[test]
fn missing_column_is_named_in_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("rows.csv");
    std::fs::write(&p, "query,title\nx,y\n").unwrap();
    let err = load_dataset(&p, &cfg()).unwrap_err().to_string();
    assert!(err.contains("`q`"), "{err}");
    let err = read_table(Path::new("rows.xlsx")).unwrap_err().to_string();
    assert!(err.contains("unknown table format"), "{err}");
}

#[test]
fn extra_files_append_with_their_own_image_base_and_ids_can_be_made_distinct() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("captions")).unwrap();
    std::fs::write(
        d.join("rows.csv"),
        "q,img,name,pos,qid\nred shoe,a.png,Shoe A,1,7\nred shoe,b.png,Shoe B,2,7\n",
    )
    .unwrap();
    std::fs::write(
        d.join("captions/rows.csv"),
        "q,img,name,pos,qid\na photo of a shoe,v.png,Shoe A,1,c1\n",
    )
    .unwrap();
    let mut all = load_dataset(&d.join("rows.csv"), &cfg()).unwrap();
    all.extend(load_dataset(&d.join("captions/rows.csv"), &cfg()).unwrap());
    assert_eq!(all.examples.len(), 3);
    // Each file's images resolve against that file's directory.
    assert_eq!(
        all.examples[2].right[0],
        Field::Image(d.join("captions").join("v.png"))
    );
    // Rows 1 and 2 share a query id: under GCL they are not each other's negatives...
    assert_eq!(all.examples[0].left_id, all.examples[1].left_id);
    all.make_ids_distinct();
    // ...until the ablation gives every row its own ids on both sides.
    let mut ids: Vec<u64> = all.examples.iter().map(|e| e.left_id).collect();
    ids.extend(all.examples.iter().map(|e| e.right_id + 100));
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6);

    // The config reads `extraData` and the ablation switch, relative to the config file.
    std::fs::write(
        d.join("cfg.json"),
        r#"{"data":"rows.csv","extraData":["captions/rows.csv"],"dedupNegatives":false,"arch":"tiny"}"#,
    )
    .unwrap();
    let c = TrainConfig::from_file(&d.join("cfg.json")).unwrap();
    assert_eq!(c.extra_data, vec![d.join("captions/rows.csv")]);
    assert!(!c.dedup_negatives);
    assert!(TrainConfig::default().dedup_negatives);
}
