//! `gclip demo` end to end on the tiny random fixture model: every section runs, the page
//! is written and every image it shows exists.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference/cli/model")
}

fn run_demo(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gclip"))
        .arg("demo")
        .arg("--model")
        .arg(fixture_model())
        .arg("--out")
        .arg(out)
        .args(extra)
        .env_remove("GCLIP_MODEL")
        .output()
        .expect("running the gclip binary")
}

/// The `src="..."` values of a page.
fn image_sources(html: &str) -> Vec<String> {
    html.split("src=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn demo_writes_every_section_and_a_page_with_existing_images() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let res = run_demo(&out, &["--products", "60"]);
    let stdout = String::from_utf8_lossy(&res.stdout);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        res.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for section in [
        "1. Catalogue",
        "2. Embedding",
        "3. Text-to-image search",
        "4. Image-to-image search",
        "5. Multi-field search",
        "6. Zero-shot classification",
        "7. Examples",
        "Vintage Style Women's Oxfords",
        "HTML page:",
        "gclip serve --allow-dir",
    ] {
        assert!(
            stdout.contains(section),
            "missing {section:?} in:\n{stdout}"
        );
    }
    assert!(stdout.contains("60 products"), "{stdout}");
    // Accuracy is printed over the whole catalogue.
    assert!(stdout.contains("accuracy over all 60 products"), "{stdout}");

    let index = out.join("index.html");
    let html = std::fs::read_to_string(&index).expect("index.html written");
    for section in [
        "Text-to-image search",
        "Image-to-image search",
        "Multi-field search",
        "Zero-shot classification",
        "Examples",
    ] {
        assert!(html.contains(section), "page lacks section {section:?}");
    }
    let sources = image_sources(&html);
    // Four text queries x 5 results (twice: image-only and fused), two image queries with
    // their 5 neighbours, zero-shot examples, and the example images.
    assert!(
        sources.len() >= 40,
        "only {} images on the page",
        sources.len()
    );
    for src in &sources {
        assert!(
            !src.starts_with('/') && !src.contains(".."),
            "image link {src} is not relative to the page"
        );
        assert!(out.join(src).is_file(), "page links missing image {src}");
    }
    // The Oxfords example image is drawn by the generator.
    assert!(sources.iter().any(|s| s.starts_with("examples/")));

    // A second run into the same directory replaces the earlier output.
    let again = run_demo(&out, &["--products", "40"]);
    assert!(
        again.status.success(),
        "rerun failed: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("40 products"));
}

#[test]
fn demo_refuses_a_foreign_non_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let res = run_demo(dir.path(), &["--products", "40"]);
    assert!(!res.status.success());
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");
    // Nothing was written next to the user's file.
    assert!(!dir.path().join("index.html").exists());
    assert!(!dir.path().join("catalogue").exists());
}

fn run_demo_without_a_model(out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gclip"))
        .args(["demo", "--products", "40", "--out"])
        .arg(out)
        .env_remove("GCLIP_MODEL")
        .output()
        .expect("running the gclip binary")
}

/// With the `default-model` feature (the default build), no `--model` means the embedded
/// model, and the demo runs on it.
#[cfg(feature = "default-model")]
#[test]
fn demo_without_a_model_runs_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let res = run_demo_without_a_model(&dir.path().join("demo"));
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(
        stdout.contains("model gclip default model (embedded) (64-d embeddings"),
        "{stdout}"
    );
    assert!(stdout.contains("HTML page:"), "{stdout}");
}

/// Built without the `default-model` feature (`cargo test -p gclip-cli
/// --no-default-features`), no `--model` is an error that says what to pass, and nothing is
/// written.
#[cfg(not(feature = "default-model"))]
#[test]
fn demo_without_any_model_says_how_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let res = run_demo_without_a_model(&out);
    assert!(!res.status.success(), "the demo ran without a model");
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("the demo needs a model"), "{stderr}");
    assert!(stderr.contains("--model"), "{stderr}");
    assert!(stderr.contains("GCLIP_MODEL"), "{stderr}");
    assert!(stderr.contains("default-model"), "{stderr}");
    assert!(!out.exists(), "files written without a model");
}
