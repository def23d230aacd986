//! Random initialisation of a config's tensors (open_clip's `init_parameters` scheme).

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::ClipConfig;
use crate::error::Result;
use crate::keys::expected_shapes;
use crate::tensor::{RawTensor, TensorMap};

/// Random weights shaped for `cfg`, initialised like open_clip's `CLIP.init_parameters`
/// (normal std 0.02 / 0.01 embeddings, scaled normal attention and MLP weights, zero biases,
/// unit layer norms, `logit_scale = cfg.logit_scale_init`). Deterministic in `seed`.
pub fn random_tensors(cfg: &ClipConfig, seed: u64) -> Result<TensorMap> {
    cfg.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tensors = BTreeMap::new();
    let v = &cfg.vision;
    let t = &cfg.text;
    let v_scale = (v.width as f64).powf(-0.5);
    for (key, shape) in expected_shapes(cfg) {
        let n: usize = shape.iter().product();
        let std_for = |width: usize, layers: usize| {
            let w = width as f64;
            let attn = w.powf(-0.5);
            let proj = attn * ((2 * layers.max(1)) as f64).powf(-0.5);
            let fc = (2.0 * w).powf(-0.5);
            (attn, proj, fc)
        };
        let (width, layers) = if key.starts_with("visual.") {
            (v.width, v.layers)
        } else {
            (t.width, t.layers)
        };
        let (attn_std, proj_std, fc_std) = std_for(width, layers);
        let data: Vec<f32> = if key == "logit_scale" {
            vec![cfg.logit_scale_init as f32]
        } else if key.ends_with("gamma") {
            let ls = if key.starts_with("visual.") {
                v.ls_init_value
            } else {
                t.ls_init_value
            };
            vec![ls.unwrap_or(1e-5) as f32; n]
        } else if key.contains("ln_") && key.ends_with(".weight") {
            vec![1.0; n]
        } else if key.ends_with("bias") {
            vec![0.0; n]
        } else {
            let std = match key.as_str() {
                "token_embedding.weight" => 0.02,
                "positional_embedding" => 0.01,
                "text_projection" | "text_projection.weight" => (t.width as f64).powf(-0.5),
                "visual.class_embedding" | "visual.positional_embedding" | "visual.proj" => v_scale,
                "visual.conv1.weight" => {
                    // PyTorch's default conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the
                    // std of which is 1/sqrt(3 fan_in).
                    (3.0 * (3 * v.patch_size * v.patch_size) as f64).powf(-0.5)
                }
                k if k.ends_with("attn.in_proj_weight") => attn_std,
                k if k.ends_with("attn.out_proj.weight") || k.ends_with("mlp.c_proj.weight") => {
                    proj_std
                }
                k if k.ends_with("mlp.c_fc.weight") => fc_std,
                _ => 0.02,
            };
            (0..n).map(|_| (normal(&mut rng) * std) as f32).collect()
        };
        tensors.insert(key, RawTensor::from_f32(shape, &data)?);
    }
    Ok(tensors)
}

/// Standard normal sample (Box-Muller), to avoid a `rand_distr` dependency.
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
