//! The everyday commands (embed, similarity, classify) run as a user runs them, checked against
//! what open_clip computes end to end (tests/fixtures/reference/generate_cli.py).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::{gclip, ok_stdout};

use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference/cli")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap())
        .unwrap()
}

fn model() -> String {
    fixture().join("model").display().to_string()
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn assert_close(got: &[Vec<f64>], want: &[Vec<f64>], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: row count");
    let mut worst = 0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: row {i} length");
        for (j, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                (a - b).abs() <= tol,
                "{what}[{i}][{j}]: got {a}, reference {b}"
            );
            worst = worst.max((a - b).abs());
        }
    }
    // The achieved error, to keep `tol` within ~10x of it.
    eprintln!("{what}: max |error| {worst:.2e} (tolerance {tol:.0e})");
}

fn jsonl_embeddings(s: &str) -> (Vec<String>, Vec<Vec<f64>>) {
    let rows: Vec<Value> = s
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds = rows
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect();
    let emb = rows
        .iter()
        .map(|r| {
            r["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    (kinds, emb)
}

#[test]
fn embed_texts_and_images_match_open_clip() {
    let exp = expected();
    let dir = tempfile::tempdir().unwrap();
    let texts_file = dir.path().join("texts.txt");
    let texts: Vec<&str> = exp["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    // The empty string cannot be a line of a text file; pass it (and the first text) with --text.
    std::fs::write(
        &texts_file,
        texts[1..]
            .iter()
            .filter(|t| !t.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let out = ok_stdout(gclip(&[
        "embed",
        "--model",
        &model(),
        "--text",
        texts[0],
        "--texts",
        texts_file.to_str().unwrap(),
        "--text",
        "",
        "--images",
        fixture().join("images").to_str().unwrap(),
    ]));
    let (kinds, got) = jsonl_embeddings(&out);
    let want_t = matrix(&exp["text_embeddings"]);
    let want_i = matrix(&exp["image_embeddings"]);
    // Order: the --text items, then the file's lines, then images (sorted by name).
    let empty = texts.iter().position(|t| t.is_empty()).unwrap();
    let mut want = vec![want_t[0].clone(), want_t[empty].clone()];
    want.extend(
        texts[1..]
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.is_empty())
            .map(|(i, _)| want_t[i + 1].clone()),
    );
    want.extend(want_i.iter().cloned());
    assert_eq!(kinds.iter().filter(|k| *k == "image").count(), want_i.len());
    assert_close(&got, &want, 5e-6, "embedding");
}

/// The candle towers (`--reference`, the path training uses) against the same open_clip
/// expectations as the CPU engine.
#[test]
fn reference_backend_embeds_like_open_clip() {
    let exp = expected();
    let texts: Vec<&str> = exp["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let mut args = vec!["embed", "--reference", "--model"];
    let m = model();
    args.push(&m);
    for t in &texts {
        args.extend(["--text", t]);
    }
    let images = fixture().join("images").display().to_string();
    args.extend(["--images", &images]);
    let (kinds, got) = jsonl_embeddings(&ok_stdout(gclip(&args)));
    let mut want = matrix(&exp["text_embeddings"]);
    want.extend(matrix(&exp["image_embeddings"]));
    assert_eq!(
        kinds.iter().filter(|k| *k == "text").count(),
        texts.len(),
        "{kinds:?}"
    );
    assert_close(&got, &want, 3e-6, "reference embedding");

    let first_image = fixture()
        .join("images")
        .join(exp["images"][0].as_str().unwrap())
        .display()
        .to_string();
    let out: Value = serde_json::from_str(&ok_stdout(gclip(&[
        "similarity",
        "--reference",
        "--json",
        "--model",
        &m,
        "--a",
        &format!("image:{first_image}"),
        "--b",
        &format!("text:{}", texts[0]),
    ])))
    .unwrap();
    assert_close(
        &matrix(&out["cosine"]),
        &[vec![matrix(&exp["image_text_cosine"])[0][0]]],
        1e-6,
        "reference cosine",
    );
}

#[test]
fn embed_writes_npy_and_safetensors_and_reads_stdin_jsonl() {
    let exp = expected();
    let dir = tempfile::tempdir().unwrap();
    let img = fixture()
        .join("images")
        .join(exp["images"][0].as_str().unwrap());
    let npy = dir.path().join("e.npy");
    ok_stdout(gclip(&[
        "embed",
        "--model",
        &model(),
        "--text",
        "a red shoe",
        "--image",
        img.to_str().unwrap(),
        "--format",
        "npy",
        "--output",
        npy.to_str().unwrap(),
    ]));
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'shape': (2, 24)"), "{header}");
    let data: Vec<f64> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
        .collect();
    assert_close(
        &[data[..24].to_vec()],
        &[matrix(&exp["text_embeddings"])[0].clone()],
        5e-6,
        "npy text row",
    );
    assert_close(
        &[data[24..].to_vec()],
        &[matrix(&exp["image_embeddings"])[0].clone()],
        1e-6,
        "npy image row",
    );

    let st = dir.path().join("e.safetensors");
    ok_stdout(gclip(&[
        "embed",
        "--model",
        &model(),
        "--text",
        "a red shoe",
        "--format",
        "safetensors",
        "--output",
        st.to_str().unwrap(),
    ]));
    let raw = std::fs::read(&st).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&raw).unwrap();
    assert!(meta.metadata().as_ref().unwrap()["inputs"].contains("a red shoe"));

    let mut child = Command::new(env!("CARGO_BIN_EXE_gclip"))
        .args(["embed", "--model", &model()])
        .env_remove("GCLIP_MODEL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = format!(
        "{{\"text\":\"a red shoe\"}}\n{{\"image\":\"{}\"}}\n",
        img.display()
    );
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    drop(child.stdin.take());
    let (kinds, got) = jsonl_embeddings(&ok_stdout(child.wait_with_output().unwrap()));
    assert_eq!(kinds, ["text", "image"]);
    assert_close(
        &got[1..],
        &[matrix(&exp["image_embeddings"])[0].clone()],
        1e-6,
        "stdin image",
    );
}

#[test]
fn similarity_softmax_matches_open_clip() {
    let exp = expected();
    let images: Vec<String> = exp["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            format!(
                "image:{}",
                fixture().join("images").join(n.as_str().unwrap()).display()
            )
        })
        .collect();
    let texts: Vec<String> = exp["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("text:{}", t.as_str().unwrap()))
        .collect();
    let mut args = vec!["similarity", "--json", "--softmax", "--model"];
    let m = model();
    args.push(&m);
    args.push("--a");
    args.extend(images.iter().map(String::as_str));
    args.push("--b");
    args.extend(texts.iter().map(String::as_str));
    let out: Value = serde_json::from_str(&ok_stdout(gclip(&args))).unwrap();
    assert_close(
        &matrix(&out["cosine"]),
        &matrix(&exp["image_text_cosine"]),
        1e-6,
        "cosine",
    );
    assert_close(
        &matrix(&out["probabilities"]),
        &matrix(&exp["image_text_softmax"]),
        1e-6,
        "softmax",
    );
}

#[test]
fn classify_template_ensemble_matches_open_clip() {
    let exp = expected();
    let images: Vec<String> = exp["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            fixture()
                .join("images")
                .join(n.as_str().unwrap())
                .display()
                .to_string()
        })
        .collect();
    let labels: Vec<&str> = exp["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let joined = labels.join(",");
    let mut worst = 0f64;
    for (scale, key) in [
        (None, "zeroshot_probs"),
        (Some("10"), "zeroshot_probs_scale10"),
    ] {
        let m = model();
        let mut args = vec![
            "classify",
            "--model",
            &m,
            "--labels",
            &joined,
            "--top",
            "3",
            "--template",
            "a photo of {}.",
            "--template",
            "a blurry picture of {}.",
        ];
        if let Some(s) = scale {
            args.extend(["--scale", s]);
        }
        args.extend(images.iter().map(String::as_str));
        let out: Value = serde_json::from_str(&ok_stdout(gclip(&args))).unwrap();
        let want = matrix(&exp[key]);
        let results = out["results"].as_array().unwrap();
        assert_eq!(results.len(), images.len());
        for (r, w) in results.iter().zip(&want) {
            let preds = r["predictions"].as_array().unwrap();
            assert_eq!(preds.len(), 3);
            for p in preds {
                let li = labels
                    .iter()
                    .position(|l| *l == p["label"].as_str().unwrap())
                    .unwrap();
                let got = p["probability"].as_f64().unwrap();
                worst = worst.max((got - w[li]).abs());
                assert!(
                    (got - w[li]).abs() <= 2e-6,
                    "{key}: {} got {got} want {}",
                    labels[li],
                    w[li]
                );
            }
            let probs: Vec<f64> = preds
                .iter()
                .map(|p| p["probability"].as_f64().unwrap())
                .collect();
            assert!(
                probs.windows(2).all(|p| p[0] >= p[1]),
                "sorted by probability"
            );
        }
    }
    eprintln!("zero-shot probability: max |error| {worst:.2e} (tolerance 2e-6)");
}

fn assert_fails(args: &[&str], needle: &str) {
    let out = gclip(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure for {args:?}");
    assert!(
        err.contains(needle),
        "stderr of {args:?} lacks {needle:?}: {err}"
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let m = model();
    let img = fixture().join("images/img0.png").display().to_string();
    assert_fails(
        &["classify", "--model", &m, "--labels", " , ,", &img],
        "label list is empty",
    );
    assert_fails(
        &[
            "classify",
            "--model",
            &m,
            "--labels",
            "a,b",
            "/nonexistent/x.png",
        ],
        "does not exist",
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, b"ok line\n\xff\xfe broken\n").unwrap();
    assert_fails(
        &["embed", "--model", &m, "--texts", bad.to_str().unwrap()],
        "not valid UTF-8",
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("notes.txt"), "x").unwrap();
    assert_fails(
        &["embed", "--model", &m, "--images", empty.to_str().unwrap()],
        "no image files",
    );
    assert_fails(
        &["embed", "--model", "/nonexistent/model", "--text", "x"],
        "/nonexistent/model",
    );
    // A corrupt image fails with --on-error fail and is reported (not dropped) with skip.
    let corrupt = dir.path().join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    assert_fails(
        &[
            "embed",
            "--model",
            &m,
            "--on-error",
            "fail",
            "--image",
            corrupt.to_str().unwrap(),
        ],
        "corrupt.png",
    );
    let out = gclip(&[
        "embed",
        "--model",
        &m,
        "--image",
        corrupt.to_str().unwrap(),
        "--image",
        &img,
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt.png"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    // Skipping everything embeds nothing: that is a failure, not an empty success.
    assert_fails(
        &["embed", "--model", &m, "--image", corrupt.to_str().unwrap()],
        "none of the 1 inputs could be embedded",
    );
}

/// `gclip convert --dtype f16` writes half-size tensors in the other layout that embed like
/// open_clip's f32 reference up to f16 rounding.
#[test]
fn convert_to_hf_in_f16_halves_the_file_and_keeps_the_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hf16");
    ok_stdout(gclip(&[
        "convert",
        "--model",
        &model(),
        "--to",
        "hf",
        "--dtype",
        "f16",
        "--output",
        out.to_str().unwrap(),
    ]));
    let f32_size = std::fs::metadata(fixture().join("model/open_clip_model.safetensors"))
        .unwrap()
        .len();
    let f16_size = std::fs::metadata(out.join("model.safetensors"))
        .unwrap()
        .len();
    assert!(
        f16_size * 10 < f32_size * 6,
        "f16 file {f16_size} bytes vs f32 {f32_size}"
    );
    let exp = expected();
    let texts: Vec<String> = exp["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    let mut args = vec!["embed", "--model", out.to_str().unwrap()];
    for t in &texts {
        args.extend(["--text", t.as_str()]);
    }
    let (_, got) = jsonl_embeddings(&ok_stdout(gclip(&args)));
    let want: Vec<Vec<f64>> = exp["texts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(matrix(&exp["text_embeddings"]))
        .filter(|(t, _)| !t.as_str().unwrap().is_empty())
        .map(|(_, e)| e)
        .collect();
    assert_close(&got, &want, 5e-3, "f16 HF text embeddings");
    // And not bit-identical: the tensors really were rounded to f16.
    assert!(got
        .iter()
        .flatten()
        .zip(want.iter().flatten())
        .any(|(a, b)| a != b));
    // A bad dtype is refused by name.
    let bad = gclip(&[
        "convert",
        "--model",
        &model(),
        "--to",
        "hf",
        "--dtype",
        "f8",
        "--output",
        "x",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("f8"));
}
