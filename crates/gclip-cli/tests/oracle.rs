//! `gclip eval oracle`: the attribute-overlap ceiling of the retrieval protocol on a shop,
//! cross-checked through `gclip eval trec` on the run and qrels it writes.

use std::path::Path;

mod common;
use common::{gclip, ok_stdout as ok};

use serde_json::Value;

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn oracle_scores_every_split_and_trec_eval_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let shop = dir.path().join("shop");
    let shop_s = shop.to_str().unwrap();
    ok(gclip(&[
        "synth",
        "--out",
        shop_s,
        "--products",
        "300",
        "--queries",
        "120",
        "--seed",
        "7",
        "--zeroshot-per-class",
        "0",
    ]));
    let trec = dir.path().join("trec");
    let report = dir.path().join("oracle.json");
    let stdout = ok(gclip(&[
        "eval",
        "oracle",
        "--shop",
        shop_s,
        "--trec-dir",
        trec.to_str().unwrap(),
        "--output",
        report.to_str().unwrap(),
    ]));
    let report = json(&report);
    let splits = ["in_domain", "novel_query", "novel_document", "zero_shot"];
    for split in splits {
        assert!(stdout.contains(&format!("split {split}")), "{stdout}");
        assert!(
            stdout.lines().any(|l| l.starts_with(split)
                && l.contains(&format!(
                    "{:.4}",
                    report[split]["ndcg@10"].as_f64().unwrap()
                ))),
            "{stdout}"
        );
        let ndcg = report[split]["ndcg@10"].as_f64().unwrap();
        // Relevance mixes attributes with popularity and noise: high, never perfect.
        assert!(ndcg > 0.5 && ndcg < 0.999, "{split}: oracle nDCG@10 {ndcg}");
        let scored = dir.path().join(format!("{split}.json"));
        ok(gclip(&[
            "eval",
            "trec",
            trec.join(format!("{split}.run")).to_str().unwrap(),
            trec.join(format!("{split}.qrels")).to_str().unwrap(),
            "--complete",
            "--output",
            scored.to_str().unwrap(),
        ]));
        let trec_ndcg = json(&scored)["ndcg@10"].as_f64().unwrap();
        assert!(
            (trec_ndcg - ndcg).abs() < 1e-9,
            "{split}: {trec_ndcg} vs {ndcg}"
        );
    }

    // An unknown split is named, with the known ones.
    let out = gclip(&["eval", "oracle", "--shop", shop_s, "--splits", "nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no split \"nope\"") && err.contains("in_domain"),
        "{err}"
    );
}
