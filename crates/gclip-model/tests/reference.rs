//! Embeddings of every fixture checkpoint must match the reference (open_clip / transformers)
//! outputs recorded by `tests/fixtures/reference/generate_models.py`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use gclip_model::{load_weights, ClipConfig, ClipModel, Layout, LoadOptions};

// About 10x the largest difference seen on the fixtures (1.4e-6).
const MAX_ABS: f32 = 2e-5;
const MIN_COS: f32 = 0.99999;

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference/models")
}

fn expected(name: &str) -> HashMap<String, Tensor> {
    let p = models_dir().join(format!("{name}.expected.safetensors"));
    candle_core::safetensors::load(&p, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Asserts max |a-b| <= MAX_ABS and row-wise cosine >= MIN_COS; returns the max diff.
fn assert_close(what: &str, got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let g: Vec<Vec<f32>> = got.to_vec2().unwrap();
    let w: Vec<Vec<f32>> = want.to_vec2().unwrap();
    let mut max = 0f32;
    for (i, (gr, wr)) in g.iter().zip(&w).enumerate() {
        let (mut dot, mut ng, mut nw) = (0f64, 0f64, 0f64);
        for (a, b) in gr.iter().zip(wr) {
            max = max.max((a - b).abs());
            dot += (*a as f64) * (*b as f64);
            ng += (*a as f64).powi(2);
            nw += (*b as f64).powi(2);
        }
        let cos = (dot / (ng.sqrt() * nw.sqrt())) as f32;
        assert!(cos >= MIN_COS, "{what} row {i}: cosine {cos}");
    }
    assert!(max <= MAX_ABS, "{what}: max |diff| {max}");
    max
}

fn check_model(name: &str, model: &ClipModel) {
    let e = expected(name);
    let ids = e["token_ids"].to_dtype(DType::U32).unwrap();
    let img = model.encode_images(&e["pixels"]).unwrap();
    let txt = model.encode_texts(&ids).unwrap();
    let d1 = assert_close(&format!("{name} image"), &img, &e["image_embeds"]);
    let d2 = assert_close(&format!("{name} text"), &txt, &e["text_embeds"]);
    let imgn = model.encode_images_normalized(&e["pixels"]).unwrap();
    let txtn = model.encode_texts_normalized(&ids).unwrap();
    let d3 = assert_close(
        &format!("{name} image norm"),
        &imgn,
        &e["image_embeds_norm"],
    );
    let d4 = assert_close(&format!("{name} text norm"), &txtn, &e["text_embeds_norm"]);
    let ls = model.logit_scale().to_scalar::<f32>().unwrap();
    let want = e["logit_scale"].to_scalar::<f32>().unwrap();
    assert!(
        (ls - want).abs() < 1e-6,
        "{name} logit_scale {ls} vs {want}"
    );
    eprintln!(
        "{name}: max|diff| image {d1:.2e} text {d2:.2e} image-norm {d3:.2e} text-norm {d4:.2e}"
    );
}

fn check_fixture(name: &str, layout: Layout) {
    let dir = models_dir().join(name);
    let lw = load_weights(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(lw.layout, layout, "{name} layout");
    assert_eq!(lw.dir.as_deref(), Some(dir.as_path()));
    let model = ClipModel::load(&dir, &LoadOptions::default()).unwrap();
    check_model(name, &model);
}

#[test]
fn hf_quickgelu_safetensors() {
    check_fixture("hf_quickgelu", Layout::Hf);
}

#[test]
fn hf_gelu_pytorch_bin() {
    check_fixture("hf_gelu", Layout::Hf);
}

#[test]
fn open_clip_gelu_non_default_sizes() {
    check_fixture("openclip_gelu", Layout::OpenClip);
}

#[test]
fn open_clip_knobs_layer_scale_avg_pool_proj_bias() {
    check_fixture("openclip_knobs", Layout::OpenClip);
    let lw = load_weights(
        &models_dir().join("openclip_knobs"),
        &LoadOptions::default(),
    )
    .unwrap();
    assert!(lw
        .preprocess
        .as_ref()
        .is_some_and(|p| p.get("mean").is_some()));
}

#[test]
fn open_clip_training_checkpoint_with_module_prefix() {
    check_fixture("openclip_ckpt", Layout::OpenClip);
}

fn open_clip_cfg(name: &str) -> ClipConfig {
    let text =
        std::fs::read_to_string(models_dir().join(name).join("open_clip_config.json")).unwrap();
    ClipConfig::from_open_clip_json(&serde_json::from_str(&text).unwrap()).unwrap()
}

#[test]
fn bare_training_checkpoint_with_explicit_config() {
    let file = models_dir().join("openclip_ckpt/open_clip_pytorch_model.bin");
    let opts = LoadOptions {
        config: Some(open_clip_cfg("openclip_ckpt")),
        ..Default::default()
    };
    let lw = load_weights(&file, &opts).unwrap();
    assert_eq!(lw.layout, Layout::Bare);
    let model = ClipModel::from_weights(lw.config, &lw.weights, &Device::Cpu).unwrap();
    check_model("openclip_ckpt", &model);
}

#[test]
fn bare_file_in_hf_naming_is_detected() {
    let dir = models_dir().join("hf_quickgelu");
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let cfg = ClipConfig::from_hf_json(&serde_json::from_str(&text).unwrap()).unwrap();
    let opts = LoadOptions {
        config: Some(cfg),
        ..Default::default()
    };
    let lw = load_weights(&dir.join("model.safetensors"), &opts).unwrap();
    assert_eq!(lw.layout, Layout::Bare);
    assert!(lw
        .weights
        .get("transformer.resblocks.0.attn.in_proj_weight")
        .is_some());
    let model = ClipModel::from_weights(lw.config, &lw.weights, &Device::Cpu).unwrap();
    check_model("hf_quickgelu", &model);
}

#[test]
fn weight_file_uses_config_beside_it() {
    let file = models_dir().join("openclip_gelu/open_clip_model.safetensors");
    let model = ClipModel::load(&file, &LoadOptions::default()).unwrap();
    check_model("openclip_gelu", &model);
}

/// Files written by `gclip convert` and re-read by the reference code (see the generator).
#[test]
fn gclip_converted_fixtures_match_reference_rereads() {
    for (name, layout) in [
        ("gclip_hf_from_openclip", Layout::Hf),
        ("gclip_openclip_from_hf", Layout::OpenClip),
    ] {
        if !models_dir().join(name).exists() {
            panic!("fixture {name} missing: run generate_models.py --gclip <binary>");
        }
        check_fixture(name, layout);
    }
}

#[test]
fn save_round_trip_both_layouts() {
    let tmp = tempfile::tempdir().unwrap();
    for (src, layouts) in [
        ("openclip_gelu", vec![Layout::Hf, Layout::OpenClip]),
        ("hf_quickgelu", vec![Layout::Hf, Layout::OpenClip]),
        ("openclip_knobs", vec![Layout::OpenClip]),
    ] {
        let lw = load_weights(&models_dir().join(src), &LoadOptions::default()).unwrap();
        for layout in layouts {
            let out = tmp.path().join(format!("{src}-{layout:?}"));
            gclip_model::save(
                &lw.weights,
                &lw.config,
                &out,
                layout,
                lw.preprocess.as_ref(),
            )
            .unwrap();
            let back = load_weights(&out, &LoadOptions::default()).unwrap();
            assert_eq!(back.layout, layout);
            let model = ClipModel::from_weights(back.config, &back.weights, &Device::Cpu).unwrap();
            check_model(src, &model);
        }
    }
}

#[test]
fn hf_layout_rejects_layer_scale() {
    let lw = load_weights(
        &models_dir().join("openclip_knobs"),
        &LoadOptions::default(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let err = gclip_model::save(&lw.weights, &lw.config, tmp.path(), Layout::Hf, None).unwrap_err();
    assert!(err.to_string().contains("layer scale"), "{err}");
}

/// Checks any checkpoint against reference outputs made the same way as the committed
/// fixtures (e.g. a full-size model too large to commit):
/// `GCLIP_MODEL_CHECK=DIR:EXPECTED.safetensors cargo test -p gclip-model -- --ignored`.
#[test]
#[ignore = "needs GCLIP_MODEL_CHECK=dir:expected.safetensors"]
fn external_checkpoint_from_env() {
    let spec = std::env::var("GCLIP_MODEL_CHECK").expect("set GCLIP_MODEL_CHECK=dir:expected");
    let (dir, exp) = spec
        .split_once(':')
        .expect("format dir:expected.safetensors");
    let model = ClipModel::load(Path::new(dir), &LoadOptions::default()).unwrap();
    let e = candle_core::safetensors::load(exp, &Device::Cpu).unwrap();
    let ids = e["token_ids"].to_dtype(DType::U32).unwrap();
    let d1 = assert_close(
        "image",
        &model.encode_images(&e["pixels"]).unwrap(),
        &e["image_embeds"],
    );
    let d2 = assert_close(
        "text",
        &model.encode_texts(&ids).unwrap(),
        &e["text_embeds"],
    );
    let d3 = assert_close(
        "image norm",
        &model.encode_images_normalized(&e["pixels"]).unwrap(),
        &e["image_embeds_norm"],
    );
    let d4 = assert_close(
        "text norm",
        &model.encode_texts_normalized(&ids).unwrap(),
        &e["text_embeds_norm"],
    );
    eprintln!(
        "{dir}: max|diff| image {d1:.2e} text {d2:.2e} image-norm {d3:.2e} text-norm {d4:.2e}"
    );
}
