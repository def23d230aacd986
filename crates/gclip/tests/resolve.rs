//! The per-ecosystem resolver as `Clip` uses it: an HF directory brings its own tokenizer
//! and preprocessing, an open_clip one gets the OpenAI vocabulary and its `preprocess_cfg`,
//! whatever other files lie beside it.

use std::path::{Path, PathBuf};

use gclip::tokenizer::Tokenizer;
use gclip::{Clip, Ecosystem, ImagePipeline, ModelSource, RuntimeOptions};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference")
}

/// Copies `files` of fixture directory `from` into `to`; a missing fixture fails the test.
fn copy(from: &Path, to: &Path, files: &[&str]) {
    for f in files {
        let src = from.join(f);
        std::fs::copy(&src, to.join(f))
            .unwrap_or_else(|e| panic!("fixture {} missing: {e}", src.display()));
    }
}

fn load(dir: &Path, runtime: &RuntimeOptions) -> Clip {
    Clip::load_with(
        &ModelSource::Path {
            path: dir.to_path_buf(),
            arch: None,
        },
        runtime,
    )
    .unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

#[test]
fn hf_directory_uses_its_tokenizer_files_and_preprocessor_config() {
    let dir = tempfile::tempdir().unwrap();
    copy(
        &fixtures().join("models/hf_quickgelu"),
        dir.path(),
        &["config.json", "model.safetensors"],
    );
    copy(
        &fixtures().join("tokenizer/small_vocab_tokenizer_json"),
        dir.path(),
        &["tokenizer.json"],
    );
    std::fs::write(
        dir.path().join("preprocessor_config.json"),
        r#"{"crop_size": {"height": 32, "width": 32}, "size": {"shortest_edge": 32},
            "image_mean": [0.25, 0.5, 0.75], "image_std": [0.5, 0.5, 0.5]}"#,
    )
    .unwrap();
    let clip = load(dir.path(), &RuntimeOptions::default());
    assert_eq!(clip.ecosystem(), Ecosystem::Transformers);
    assert_eq!(clip.image_pipeline(), ImagePipeline::Transformers);
    let small = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(clip.tokenizer().vocab_size(), small.vocab_size());
    assert_ne!(
        clip.tokenizer().vocab_size(),
        Tokenizer::openai().vocab_size()
    );
    let pre = clip.preprocessor().config();
    assert_eq!(pre.mean, [0.25, 0.5, 0.75]);
    assert_eq!(pre.image_size, (32, 32));
}

#[test]
fn open_clip_directory_uses_the_openai_vocabulary_and_its_preprocess_cfg() {
    let dir = tempfile::tempdir().unwrap();
    copy(
        &fixtures().join("cli/model"),
        dir.path(),
        &["open_clip_config.json", "open_clip_model.safetensors"],
    );
    // A stray HF tokenizer file does not change an open_clip model's vocabulary.
    copy(
        &fixtures().join("tokenizer/small_vocab_tokenizer_json"),
        dir.path(),
        &["tokenizer.json"],
    );
    let clip = load(dir.path(), &RuntimeOptions::default());
    assert_eq!(clip.ecosystem(), Ecosystem::OpenClip);
    assert!(clip.tokenizer().shares_tables_with(&Tokenizer::openai()));
    let expected = gclip::resolve::preprocess_for_dir(dir.path(), None)
        .unwrap()
        .expect("an open_clip directory has preprocessing");
    assert_eq!(clip.preprocessor().config(), &expected);

    // The runtime option overrides whose image pipeline runs.
    let other = load(
        dir.path(),
        &RuntimeOptions {
            image_pipeline: Some(ImagePipeline::Transformers),
            ..RuntimeOptions::default()
        },
    );
    assert_eq!(other.ecosystem(), Ecosystem::OpenClip);
    assert_eq!(other.image_pipeline(), ImagePipeline::Transformers);
}

/// Retraining into the same directory must not serve the old model's cached embeddings:
/// the cache key holds a fingerprint of `Clip::weight_files`.
#[test]
fn rewritten_weights_start_a_fresh_embedding_cache() {
    use gclip::eval::CachedEncoder;
    use gclip::FieldEncoder;

    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    copy(
        &fixtures().join("cli/model"),
        &model,
        &["open_clip_config.json", "open_clip_model.safetensors"],
    );
    let cache = dir.path().join("cache");
    let texts = vec!["a red shoe".to_string(), "a blue mug".to_string()];
    {
        let clip = load(&model, &RuntimeOptions::default());
        assert!(clip
            .weight_files()
            .iter()
            .any(|p| p.ends_with("open_clip_model.safetensors")));
        let mut enc = CachedEncoder::open(&clip, &cache).unwrap();
        enc.encode_texts(&texts).unwrap();
        assert_eq!(enc.stats().misses, 2);
        let mut again = CachedEncoder::open(&clip, &cache).unwrap();
        again.encode_texts(&texts).unwrap();
        assert_eq!(
            again.stats().misses,
            0,
            "unchanged weights are served from the cache"
        );
    }
    // "Retrain": the weights file is rewritten in place (same name and size).
    let weights = model.join("open_clip_model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&weights, &bytes).unwrap();
    let clip = load(&model, &RuntimeOptions::default());
    let mut enc = CachedEncoder::open(&clip, &cache).unwrap();
    assert!(
        enc.is_empty(),
        "a rewritten checkpoint reused old cache entries"
    );
    enc.encode_texts(&texts).unwrap();
    assert_eq!(enc.stats().misses, 2);
}
