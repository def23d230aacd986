//! Error messages name the problem: missing / unexpected / mis-shaped tensors, unknown archs.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use gclip_model::{arch, load_weights, ClipConfig, LoadOptions, ModelError, Weights};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference/models")
}

fn gelu_cfg() -> ClipConfig {
    let text =
        std::fs::read_to_string(models_dir().join("openclip_gelu/open_clip_config.json")).unwrap();
    ClipConfig::from_open_clip_json(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn write_open_clip(dir: &Path, w: &Weights) {
    let map: std::collections::HashMap<String, Tensor> =
        w.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(
        models_dir().join("openclip_gelu/open_clip_config.json"),
        dir.join("open_clip_config.json"),
    )
    .unwrap();
    candle_core::safetensors::save(&map, dir.join("open_clip_model.safetensors")).unwrap();
}

fn base_weights() -> Weights {
    load_weights(&models_dir().join("openclip_gelu"), &LoadOptions::default())
        .unwrap()
        .weights
}

#[test]
fn missing_tensor_names_key_and_shape() {
    let mut w = base_weights();
    w.remove("visual.transformer.resblocks.1.mlp.c_fc.bias");
    let tmp = tempfile::tempdir().unwrap();
    write_open_clip(tmp.path(), &w);
    let err = load_weights(tmp.path(), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, ModelError::MissingTensor { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("visual.transformer.resblocks.1.mlp.c_fc.bias") && msg.contains("[192]"),
        "{msg}"
    );
}

#[test]
fn wrong_shape_names_key_and_both_shapes() {
    let mut w = base_weights();
    w.insert(
        "visual.proj",
        Tensor::zeros((48, 41), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let tmp = tempfile::tempdir().unwrap();
    write_open_clip(tmp.path(), &w);
    let msg = load_weights(tmp.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("visual.proj") && msg.contains("[48, 41]") && msg.contains("[48, 40]"),
        "{msg}"
    );
}

#[test]
fn wrong_shape_in_hf_file_names_file_key() {
    // Shape check happens in canonical naming; the message also gives the HF key.
    let dir = models_dir().join("hf_quickgelu");
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let mut cfg = ClipConfig::from_hf_json(&serde_json::from_str(&text).unwrap()).unwrap();
    cfg.embed_dim = 25;
    let opts = LoadOptions {
        config: Some(cfg),
        ..Default::default()
    };
    let msg = load_weights(&dir.join("model.safetensors"), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("[48, 25]") && msg.contains("[48, 24]"),
        "{msg}"
    );
    assert!(msg.contains("visual_projection.weight"), "{msg}");
}

#[test]
fn unexpected_tensor_is_reported() {
    let mut w = base_weights();
    w.insert(
        "visual.extra_head.weight",
        Tensor::zeros((3, 2), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let tmp = tempfile::tempdir().unwrap();
    write_open_clip(tmp.path(), &w);
    let msg = load_weights(tmp.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("visual.extra_head.weight") && msg.contains("[3, 2]"),
        "{msg}"
    );
}

#[test]
fn unknown_arch_lists_known_names() {
    let msg = arch::by_name("ViT-Z-99").unwrap_err().to_string();
    assert!(
        msg.contains("ViT-Z-99") && msg.contains("ViT-B-32") && msg.contains("ViT-bigG-14"),
        "{msg}"
    );
    let file = models_dir().join("openclip_gelu/open_clip_model.safetensors");
    let msg = load_weights(&file, &LoadOptions::with_arch("ViT-Z-99"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("ViT-Z-99") && msg.contains("ViT-L-14"),
        "{msg}"
    );
}

#[test]
fn bare_file_without_arch_asks_for_one() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("weights.safetensors");
    std::fs::copy(
        models_dir().join("openclip_gelu/open_clip_model.safetensors"),
        &file,
    )
    .unwrap();
    let msg = load_weights(&file, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("architecture name") && msg.contains("ViT-B-32"),
        "{msg}"
    );
}

#[test]
fn arch_mismatch_reports_shape() {
    let file = models_dir().join("openclip_gelu/open_clip_model.safetensors");
    let msg = load_weights(&file, &LoadOptions::with_arch("ViT-B-32"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("expected"), "{msg}");
}

#[test]
fn unsupported_configs_are_named() {
    let cases = [
        (
            r#"{"embed_dim": 8, "vision_cfg": {"timm_model_name": "vit_base"}, "text_cfg": {}}"#,
            "timm_model_name",
        ),
        (
            r#"{"embed_dim": 8, "vision_cfg": {"attentional_pool": true}, "text_cfg": {}}"#,
            "attentional_pool",
        ),
        (
            r#"{"embed_dim": 8, "vision_cfg": {}, "text_cfg": {"hf_model_name": "xlm-roberta"}}"#,
            "hf_model_name",
        ),
        (
            r#"{"embed_dim": 8, "vision_cfg": {"layers": [3, 4, 6, 3]}, "text_cfg": {}}"#,
            "ModifiedResNet",
        ),
    ];
    for (json, needle) in cases {
        let err =
            ClipConfig::from_open_clip_json(&serde_json::from_str(json).unwrap()).unwrap_err();
        assert!(
            matches!(err, ModelError::Unsupported(_)) && err.to_string().contains(needle),
            "{err}"
        );
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let lw = load_weights(&models_dir().join("openclip_gelu"), &LoadOptions::default()).unwrap();
    let model = gclip_model::ClipModel::from_weights(lw.config, &lw.weights, &Device::Cpu).unwrap();
    let px = Tensor::zeros((1, 3, 32, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(model
        .encode_images(&px)
        .unwrap_err()
        .to_string()
        .contains("[N, 3, 64, 64]"));
    let ids = Tensor::new(&[[998u32, 5000, 999]], &Device::Cpu).unwrap();
    assert!(model
        .encode_texts(&ids)
        .unwrap_err()
        .to_string()
        .contains("5000"));
    let long = Tensor::zeros((1, 17), candle_core::DType::U32, &Device::Cpu).unwrap();
    assert!(model.encode_texts(&long).is_err());
    let _ = gelu_cfg();
}

#[test]
fn corrupt_files_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let st = tmp.path().join("broken.safetensors");
    // A plausible header length followed by a truncated JSON header.
    let mut bytes = 64u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{\"a\": {\"dtype\"");
    std::fs::write(&st, &bytes).unwrap();
    let msg = load_weights(&st, &LoadOptions::with_arch("ViT-B-32"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("broken.safetensors"), "{msg}");
    let junk = tmp.path().join("junk.pt");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    let msg = load_weights(&junk, &LoadOptions::with_arch("ViT-B-32"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("junk.pt") && msg.contains("neither"), "{msg}");
    let msg = load_weights(tmp.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("open_clip_config.json") && msg.contains("config.json"),
        "{msg}"
    );
}
