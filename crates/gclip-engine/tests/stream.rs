//! The streaming build (`EngineModel::from_source` over a memory-mapped checkpoint) against
//! the candle reference model loaded eagerly from the same files.

use candle_core::{DType, Device, Tensor};
use gclip_engine::{EngineModel, EngineOptions};
use gclip_model::{load_weights, open_tensors, save, ClipModel, Layout, LoadOptions, Weights};

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn vec_f32(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Saves a small random model in `layout` (optionally re-stored as bf16), then checks that the
/// engine streamed from the files encodes exactly like candle on the eagerly loaded weights.
fn check(layout: Layout, bf16: bool) {
    let mut cfg = gclip_model::arch::by_name("ViT-S-32").unwrap();
    cfg.vision.layers = 1;
    cfg.text.layers = 1;
    let weights = Weights::random(&cfg, 11).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save(&weights, &cfg, dir.path(), layout, None).unwrap();
    if bf16 {
        let file = dir.path().join(match layout {
            Layout::Hf => "model.safetensors",
            _ => "open_clip_model.safetensors",
        });
        let m = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
        let m: std::collections::HashMap<String, Tensor> = m
            .into_iter()
            .map(|(k, t)| (k, t.to_dtype(DType::BF16).unwrap()))
            .collect();
        candle_core::safetensors::save(&m, &file).unwrap();
    }
    let eager = load_weights(dir.path(), &LoadOptions::default()).unwrap();
    let reference = ClipModel::from_weights(cfg.clone(), &eager.weights, &Device::Cpu).unwrap();
    let src = open_tensors(dir.path(), &LoadOptions::default()).unwrap();
    assert!(src.is_lazy());
    let eng = EngineModel::from_source(&src.config, &src, &EngineOptions::default()).unwrap();

    let s = cfg.vision.image_size;
    let pixels: Vec<f32> = (0..2 * 3 * s * s)
        .map(|i| ((i * 7919) % 997) as f32 / 500.0 - 1.0)
        .collect();
    let px = Tensor::from_vec(pixels.clone(), (2, 3, s, s), &Device::Cpu).unwrap();
    let want = vec_f32(&reference.encode_images(&px).unwrap());
    let d = max_diff(&eng.encode_images(&pixels, 2).unwrap().into_vec(), &want);
    assert!(d < 1e-4, "{layout:?} bf16={bf16} images: max |diff| {d}");

    let ids = vec![49406u32, 320, 1125, 539, 49407];
    let t = Tensor::from_vec(ids.clone(), (1, ids.len()), &Device::Cpu).unwrap();
    let want = vec_f32(&reference.encode_texts(&t).unwrap());
    let d = max_diff(&eng.encode_texts(&[ids]).unwrap().into_vec(), &want);
    assert!(d < 1e-4, "{layout:?} bf16={bf16} texts: max |diff| {d}");
}

#[test]
fn streamed_open_clip_matches_reference() {
    check(Layout::OpenClip, false);
}

/// HF naming: q/k/v concatenated and projections transposed while streaming.
#[test]
fn streamed_hf_matches_reference() {
    check(Layout::Hf, false);
}

/// bf16 storage converted on the fly, compared with candle's conversion.
#[test]
fn streamed_bf16_matches_reference() {
    check(Layout::OpenClip, true);
    check(Layout::Hf, true);
}
