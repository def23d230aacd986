//! `gclip experiment gcl-vs-clip --seeds ... --ablations`: every arm trains with the switch
//! it names, each seed is its own run, and the summary is the spread of the per-seed results.

use std::path::Path;

mod common;
use common::{gclip, ok_stdout as ok};

use serde_json::Value;

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn seeds_and_ablations_train_each_arm_and_summarise_the_spread() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gvc");
    let stdout = ok(gclip(&[
        "experiment",
        "gcl-vs-clip",
        "--out",
        out.to_str().unwrap(),
        "--quick",
        "--seeds",
        "3,4",
        "--ablations",
        "--eval-queries",
        "40",
        "--quiet",
    ]));
    let arms = [
        "clip",
        "gcl",
        "gcl-no-title",
        "gcl-no-weights",
        "gcl-no-dedup",
    ];
    for seed in [3, 4] {
        let run = out.join(format!("seed-{seed}"));
        let shop = json(&run.join("shop/manifest.json"));
        assert_eq!(shop["seed"], seed, "each seed has its own shop");
        for arm in arms {
            let cfg = json(&run.join(arm).join("train_config.json"));
            assert_eq!(cfg["seed"], seed);
            let right: Vec<&str> = cfg["rightKeys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let (want_right, weighted, dedup, loss): (&[&str], bool, bool, &str) = match arm {
                "clip" => (&["image"], false, false, "clip"),
                "gcl" => (&["image", "title"], true, true, "gcl"),
                "gcl-no-title" => (&["image"], true, true, "gcl"),
                "gcl-no-weights" => (&["image", "title"], false, true, "gcl"),
                _ => (&["image", "title"], true, false, "gcl"),
            };
            assert_eq!(right, want_right, "{arm} document fields");
            assert_eq!(
                cfg["weightKey"].is_string(),
                weighted,
                "{arm} score weights"
            );
            assert_eq!(cfg["dedupNegatives"], dedup, "{arm} de-duplication");
            assert_eq!(cfg["loss"], loss, "{arm} loss");
            assert!(run.join(arm).join("final/open_clip").is_dir());
        }
    }

    // The summary is mean and sample sd of the per-seed figures.
    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["seeds"], serde_json::json!([3, 4]));
    let retrieval = summary["retrieval"].as_array().unwrap();
    assert_eq!(retrieval.len(), arms.len() * 4);
    let per_seed: Vec<Value> = [3, 4]
        .iter()
        .map(|s| json(&out.join(format!("seed-{s}/results.json"))))
        .collect();
    for row in retrieval {
        let (arm, split) = (
            row["model"].as_str().unwrap(),
            row["split"].as_str().unwrap(),
        );
        let own_docs = if matches!(arm, "clip" | "gcl-no-title") {
            "image"
        } else {
            "image_title"
        };
        let values: Vec<f64> = per_seed
            .iter()
            .map(|r| {
                let rr = r["retrieval"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["model"] == arm && x["docs"] == own_docs)
                    .unwrap();
                let sp = rr["splits"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["split"] == split)
                    .unwrap();
                sp["metrics"]["ndcg@10"].as_f64().unwrap()
            })
            .collect();
        let ndcg = &row["metrics"]["ndcg@10"];
        let mean = (values[0] + values[1]) / 2.0;
        let sd = (values[0] - values[1]).abs() / 2f64.sqrt();
        assert!(
            (ndcg["mean"].as_f64().unwrap() - mean).abs() < 1e-9,
            "{arm} {split}"
        );
        assert!(
            (ndcg["sd"].as_f64().unwrap() - sd).abs() < 1e-9,
            "{arm} {split}"
        );
    }
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert_eq!(md, stdout);
    for arm in arms {
        assert!(
            md.contains(&format!("| {arm} | in-domain |")),
            "{arm} missing from {md}"
        );
    }
    assert!(md.contains(" ± "));
}
