//! `--precision int8` on the embedded default model, per ISA this CPU runs (the native one,
//! VNNI where present, and AVX2 forced with `GCLIP_ISA=avx2`): embeddings stay within the
//! cosine the README promises of fp32 for shop images and titles.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::ok_stdout;

fn embed(isa: Option<&str>, precision: &str, args: &[String]) -> Option<Vec<Vec<f32>>> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gclip"));
    cmd.args(["embed", "--precision", precision, "--threads", "2"])
        .args(args)
        .env_remove("GCLIP_MODEL")
        .env_remove("GCLIP_ISA")
        .stdin(Stdio::null());
    if let Some(isa) = isa {
        cmd.env("GCLIP_ISA", isa);
    }
    let out = cmd.output().expect("running gclip");
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && err.contains("AVX2") {
        return None; // this CPU has no int8 kernel: the error names it, tested elsewhere
    }
    let text = ok_stdout(out);
    Some(
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["embedding"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect(),
    )
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn int8_tracks_fp32_on_the_default_model_on_every_isa() {
    let dir = tempfile::tempdir().unwrap();
    let shop = dir.path().join("shop");
    ok_stdout(common::gclip(&[
        "synth",
        "--out",
        shop.to_str().unwrap(),
        "--products",
        "24",
        "--queries",
        "4",
        "--seed",
        "11",
    ]));
    let corpus: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shop.join("corpus.json")).unwrap()).unwrap();
    let titles: Vec<String> = corpus
        .as_object()
        .unwrap()
        .values()
        .map(|d| d["title"].as_str().unwrap().to_string())
        .collect();
    let texts = dir.path().join("titles.txt");
    std::fs::write(&texts, titles.join("\n")).unwrap();
    let args_for = |what: &str, path: &Path| vec![what.to_string(), path.display().to_string()];
    let images = args_for("--images", &shop.join("images"));
    let text_args = args_for("--texts", &texts);
    for isa in [None, Some("avx2")] {
        for (args, min_cos, kind) in [(&images, 0.999, "image"), (&text_args, 0.998, "text")] {
            let fp32 = embed(isa, "fp32", args).unwrap();
            let Some(int8) = embed(isa, "int8", args) else {
                continue;
            };
            assert_eq!(fp32.len(), int8.len());
            assert!(fp32.len() >= 24, "{kind}: {} embeddings", fp32.len());
            let worst = fp32
                .iter()
                .zip(&int8)
                .map(|(a, b)| cos(a, b))
                .fold(1.0f32, f32::min);
            assert!(
                worst >= min_cos,
                "{kind} on {}: int8 vs fp32 cosine min {worst} < {min_cos}",
                isa.unwrap_or("native")
            );
            // Identical output would mean fp32 ran under the int8 name.
            assert!(
                fp32.iter().zip(&int8).any(|(a, b)| a != b),
                "{kind} on {}: int8 output equals fp32 bit for bit",
                isa.unwrap_or("native")
            );
            eprintln!("{kind} {}: min cosine {worst:.5}", isa.unwrap_or("native"));
        }
    }
}
