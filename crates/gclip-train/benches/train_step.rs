//! Training steps per second of the tiny reference model (CLIP loss, full
//! backward, clipped AdamW), to compare with open_clip on PyTorch:
//! `python bench/compare_train.py` runs both side by side.
//!
//! `cargo bench -p gclip-train --bench train_step [-- BATCH STEPS MODEL]` (MODEL: `tiny`,
//! the default, or `experiment`: the GCL-vs-CLIP experiment's architecture).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use gclip_train::losses::{clip_loss, l2_normalize};
use gclip_train::optim::{clip_grad_norm, is_no_decay, AdamW, AdamWParams};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let batch: usize = args.first().map_or(Ok(32), |s| s.parse())?;
    let steps: usize = args.get(1).map_or(Ok(20), |s| s.parse())?;
    let name = args.get(2).map_or("tiny", |s| s.as_str());
    let (cfg, weights) = match name {
        "tiny" => {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/reference/train/tiny");
            let lw = gclip_model::load_weights(&dir, &Default::default())?;
            (lw.config, lw.weights)
        }
        // The GCL-vs-CLIP experiment's architecture, random weights.
        "experiment" => {
            let cfg = gclip_model::ClipConfig::from_open_clip_json(&serde_json::json!({
                "embed_dim": 64,
                "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 128, "head_width": 32, "layers": 4},
                "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 3}
            }))?;
            let w = gclip_model::Weights::random(&cfg, 0)?;
            (cfg, w)
        }
        other => return Err(format!("unknown model `{other}` (tiny or experiment)").into()),
    };
    let vm = weights.to_var_map(&Device::Cpu)?;
    let vb = candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let model = gclip_model::ClipModel::new(cfg.clone(), vb)?;
    let vars: Vec<_> = vm
        .data()
        .lock()
        .map_err(|_| "poisoned")?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut opt = AdamW::new(vars.clone(), AdamWParams::default(), is_no_decay)?;
    let s = cfg.vision.image_size;
    let ctx = cfg.text.context_length;
    let images = Tensor::randn(0f32, 1.0, (batch, 3, s, s), &Device::Cpu)?;
    // full-length texts (EOT last) so no truncation shortcut applies
    let mut ids = vec![0u32; batch * ctx];
    for (i, v) in ids.iter_mut().enumerate() {
        *v = if i % ctx == ctx - 1 {
            cfg.text.vocab_size as u32 - 1
        } else {
            1 + (i as u32 * 7919) % (cfg.text.vocab_size as u32 - 2)
        };
    }
    let ids = Tensor::from_vec(ids, (batch, ctx), &Device::Cpu)?;
    let mut step = || -> Result<f32, Box<dyn std::error::Error>> {
        let img = l2_normalize(&model.encode_images(&images)?)?;
        let txt = l2_normalize(&model.encode_texts(&ids)?)?;
        let loss = clip_loss(&img, &txt, model.logit_scale())?;
        let grads = loss.backward()?;
        let mut g = BTreeMap::new();
        for (k, v) in &vars {
            if let Some(t) = grads.get(v.as_tensor()) {
                g.insert(k.clone(), t.clone());
            }
        }
        clip_grad_norm(&mut g, 1.0)?;
        opt.step(&g, 1e-4)?;
        Ok(loss.to_scalar::<f32>()?)
    };
    for _ in 0..3 {
        step()?;
    }
    let t = Instant::now();
    let mut last = 0.0;
    for _ in 0..steps {
        last = step()?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{{\"impl\": \"gclip-train (candle)\", \"batch\": {batch}, \"steps\": {steps}, \"steps_per_s\": {:.3}, \"pairs_per_s\": {:.1}, \"last_loss\": {last:.4}}}",
        steps as f64 / secs,
        (steps * batch) as f64 / secs
    );
    Ok(())
}
