//! The engine against the reference outputs (open_clip / transformers) of
//! the tiny fixture checkpoints, and against the candle `ClipModel` on a
//! random-weight model of real ViT-B/32 head geometry.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use gclip_checkpoint::{load_tensors, LoadOptions};
use gclip_engine::{EngineModel, EngineOptions, Precision};
use gclip_model::ClipModel;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference/models")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn cosines(a: &[f32], b: &[f32], e: usize) -> Vec<f32> {
    a.chunks(e)
        .zip(b.chunks(e))
        .map(|(x, y)| {
            let d: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            let nx: f32 = x.iter().map(|p| p * p).sum::<f32>().sqrt();
            let ny: f32 = y.iter().map(|p| p * p).sum::<f32>().sqrt();
            d / (nx * ny)
        })
        .collect()
}

fn vec_f32(t: &Tensor) -> Vec<f32> {
    t.to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn fixtures_match_reference_outputs() {
    let dir = fixtures();
    let mut checked = 0;
    for name in [
        "openclip_gelu",
        "openclip_knobs",
        "openclip_ckpt",
        "hf_gelu",
        "hf_quickgelu",
    ] {
        let model_dir = dir.join(name);
        let expected = dir.join(format!("{name}.expected.safetensors"));
        if !model_dir.exists() || !expected.exists() {
            continue;
        }
        let lw = load_tensors(&model_dir, &LoadOptions::default()).unwrap();
        let exp = candle_core::safetensors::load(&expected, &Device::Cpu).unwrap();
        let pixels = &exp["pixels"];
        let n = pixels.dims()[0];
        let ids = exp["token_ids"]
            .to_dtype(candle_core::DType::I64)
            .unwrap()
            .to_vec2::<i64>()
            .unwrap();
        let ids: Vec<Vec<u32>> = ids
            .iter()
            .map(|r| r.iter().map(|&v| v as u32).collect())
            .collect();
        for threads in [1, 2] {
            let opts = EngineOptions {
                threads: Some(threads),
                ..Default::default()
            };
            let eng = EngineModel::from_weights(&lw.config, &lw.tensors, &opts).unwrap();
            let img = eng.encode_images(&vec_f32(pixels), n).unwrap().into_vec();
            let d = max_diff(&img, &vec_f32(&exp["image_embeds"]));
            eprintln!("{name} threads {threads}: images max |diff| {d:.2e}");
            assert!(
                d < 2e-5,
                "{name} images ({threads} threads): max |diff| {d}"
            );
            let txt = eng.encode_texts(&ids).unwrap().into_vec();
            let d = max_diff(&txt, &vec_f32(&exp["text_embeds"]));
            eprintln!("{name} threads {threads}: texts max |diff| {d:.2e}");
            // ~10x the largest difference seen (1.7e-6).
            assert!(d < 2e-5, "{name} texts ({threads} threads): max |diff| {d}");
            let txt_n = eng.encode_texts_normalized(&ids).unwrap().into_vec();
            let d = max_diff(&txt_n, &vec_f32(&exp["text_embeds_norm"]));
            assert!(d < 2e-5, "{name} normalised texts: max |diff| {d}");
        }
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected the fixture checkpoints under {}",
        dir.display()
    );
}

/// A ViT-B/32-shaped model, cut to 2 layers per tower to keep the test
/// quick, with random weights: engine vs candle reference, fp32 and int8.
#[test]
fn random_vit_b32_matches_candle_reference() {
    let mut cfg = gclip_model::arch::by_name("ViT-B-32").unwrap();
    cfg.vision.layers = 2;
    cfg.text.layers = 2;
    let weights = gclip_model::Weights::random(&cfg, 7).unwrap();
    let reference = ClipModel::from_weights(cfg.clone(), &weights, &Device::Cpu).unwrap();
    let tensors = weights.to_tensors().unwrap();
    let s = cfg.vision.image_size;
    let n = 3;
    let pixels: Vec<f32> = (0..n * 3 * s * s)
        .map(|i| ((i * 2_654_435_761usize) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    // Texts of different lengths, one padded to the full context.
    let mut ids: Vec<Vec<u32>> = vec![
        vec![49406, 320, 1125, 539, 320, 2368, 49407],
        vec![49406, 4160, 49407],
        vec![
            49406, 320, 1929, 530, 518, 3144, 593, 518, 4348, 539, 1237, 49407,
        ],
    ];
    ids[2].resize(77, 0);
    let e = cfg.embed_dim;

    let px = Tensor::from_vec(pixels.clone(), (n, 3, s, s), &Device::Cpu).unwrap();
    let want_img = vec_f32(&reference.encode_images(&px).unwrap());
    let mut want_txt = Vec::new();
    for row in &ids {
        let t = Tensor::from_vec(row.clone(), (1, row.len()), &Device::Cpu).unwrap();
        want_txt.extend(vec_f32(&reference.encode_texts(&t).unwrap()));
    }

    let eng = EngineModel::from_weights(
        &cfg,
        &tensors,
        &EngineOptions {
            threads: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    let img = eng.encode_images(&pixels, n).unwrap().into_vec();
    let d = max_diff(&img, &want_img);
    eprintln!("ViT-B-32 (2 layers) fp32 images max |diff| {d:.2e}");
    // ~10x the largest difference seen (4.5e-6).
    assert!(d < 5e-5, "fp32 images: max |diff| {d}");
    let txt = eng.encode_texts(&ids).unwrap().into_vec();
    let d = max_diff(&txt, &want_txt);
    eprintln!("ViT-B-32 (2 layers) fp32 texts max |diff| {d:.2e}");
    assert!(d < 5e-5, "fp32 texts: max |diff| {d}");

    let q = EngineModel::from_weights(
        &cfg,
        &tensors,
        &EngineOptions {
            precision: Precision::Int8,
            threads: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    let ci = cosines(
        &q.encode_images(&pixels, n).unwrap().into_vec(),
        &want_img,
        e,
    );
    let ct = cosines(&q.encode_texts(&ids).unwrap().into_vec(), &want_txt, e);
    eprintln!("int8 cosine vs fp32 reference: images {ci:?} texts {ct:?}");
    for c in ci.iter().chain(&ct) {
        assert!(*c >= 0.99, "int8 cosine {c} (images {ci:?}, texts {ct:?})");
    }
}

/// Average pooling with ln_post before and after the pool, and a
/// non-causal text tower, against candle on a small random model.
#[test]
fn pooling_variants_match_candle_reference() {
    for (final_ln_after_pool, causal) in [(false, true), (true, false)] {
        let mut cfg = gclip_model::arch::by_name("ViT-S-32").unwrap();
        cfg.vision.layers = 1;
        cfg.text.layers = 1;
        cfg.vision.pool = gclip_model::VisionPool::Avg;
        cfg.vision.final_ln_after_pool = final_ln_after_pool;
        cfg.text.causal = causal;
        let weights = gclip_model::Weights::random(&cfg, 3).unwrap();
        let reference = ClipModel::from_weights(cfg.clone(), &weights, &Device::Cpu).unwrap();
        let tensors = weights.to_tensors().unwrap();
        let s = cfg.vision.image_size;
        let pixels: Vec<f32> = (0..2 * 3 * s * s)
            .map(|i| ((i * 7919) % 997) as f32 / 500.0 - 1.0)
            .collect();
        let px = Tensor::from_vec(pixels.clone(), (2, 3, s, s), &Device::Cpu).unwrap();
        let want = vec_f32(&reference.encode_images(&px).unwrap());
        let ids = vec![49406u32, 320, 1125, 49407, 0, 0];
        let t = Tensor::from_vec(ids.clone(), (1, ids.len()), &Device::Cpu).unwrap();
        let want_txt = vec_f32(&reference.encode_texts(&t).unwrap());
        let eng = EngineModel::from_weights(&cfg, &tensors, &EngineOptions::default()).unwrap();
        let d = max_diff(&eng.encode_images(&pixels, 2).unwrap().into_vec(), &want);
        assert!(
            d < 1e-4,
            "avg pool (ln after pool {final_ln_after_pool}): max |diff| {d}"
        );
        let d = max_diff(&eng.encode_texts(&[ids]).unwrap().into_vec(), &want_txt);
        assert!(d < 1e-4, "text (causal {causal}): max |diff| {d}");
    }
}

/// Many texts of mixed lengths, run in small groups sorted by length, give
/// the same rows as embedding each text alone.
#[test]
fn grouped_texts_equal_single_texts() {
    let dir = fixtures().join("openclip_gelu");
    assert!(dir.is_dir(), "fixture {} is missing", dir.display());
    let lw = load_tensors(&dir, &LoadOptions::default()).unwrap();
    let ctx = lw.config.text.context_length;
    let vocab = lw.config.text.vocab_size as u32;
    let ids: Vec<Vec<u32>> = (0..7)
        .map(|i| {
            let len = 2 + (i * 5) % (ctx - 1);
            let mut row: Vec<u32> = (0..len)
                .map(|j| 1 + ((i * 31 + j * 17) as u32) % (vocab - 3))
                .collect();
            row[0] = vocab - 2;
            row[len - 1] = vocab - 1; // end token: the largest id
            if i % 2 == 0 {
                row.resize(ctx, 0);
            }
            row
        })
        .collect();
    let opts = EngineOptions {
        max_batch: Some(2),
        threads: Some(2),
        ..Default::default()
    };
    let eng = EngineModel::from_weights(&lw.config, &lw.tensors, &opts).unwrap();
    let all = eng.encode_texts(&ids).unwrap().into_vec();
    let e = eng.embed_dim();
    for (i, row) in ids.iter().enumerate() {
        let one = eng
            .encode_texts(std::slice::from_ref(row))
            .unwrap()
            .into_vec();
        let d = max_diff(&all[i * e..(i + 1) * e], &one);
        assert!(d < 1e-5, "text {i}: grouped vs alone differ by {d}");
    }
}

#[test]
fn bad_inputs_are_errors() {
    let dir = fixtures().join("openclip_gelu");
    assert!(dir.is_dir(), "fixture {} is missing", dir.display());
    let lw = load_tensors(&dir, &LoadOptions::default()).unwrap();
    let eng =
        EngineModel::from_weights(&lw.config, &lw.tensors, &EngineOptions::default()).unwrap();
    assert!(eng.encode_images(&[0.0; 5], 1).is_err());
    assert!(eng.encode_texts(&[vec![]]).is_err());
    assert!(eng.encode_texts(&[vec![u32::MAX]]).is_err());
    let too_long = vec![1u32; lw.config.text.context_length + 1];
    assert!(eng.encode_texts(&[too_long]).is_err());
    assert!("fp16".parse::<Precision>().is_err());
}
