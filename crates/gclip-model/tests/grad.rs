//! The forward pass must be differentiable (the trainer builds the model over a `VarMap`):
//! every parameter gets a gradient, and gradients agree with finite differences (f64).

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use gclip_model::{l2_normalize, ClipConfig, ClipModel, Weights};

fn cfg(name: &str) -> ClipConfig {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/reference/models")
        .join(name)
        .join("open_clip_config.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    ClipConfig::from_open_clip_json(&v).unwrap()
}

fn inputs(cfg: &ClipConfig) -> (Tensor, Tensor, Tensor) {
    let dev = Device::Cpu;
    let s = cfg.vision.image_size;
    let px = Tensor::randn(0f64, 1.0, (2, 3, s, s), &dev).unwrap();
    let v = cfg.text.vocab_size as u32;
    let ids = Tensor::new(&[[v - 2, 17, 301, v - 1, 0], [v - 2, 5, 6, 7, v - 1]], &dev).unwrap();
    let m = Tensor::randn(0f64, 1.0, (2, 2), &dev).unwrap();
    (px, ids, m)
}

/// A contrastive-like scalar: weighted sum of scaled cosine logits.
fn loss(model: &ClipModel, px: &Tensor, ids: &Tensor, m: &Tensor) -> Tensor {
    let img = l2_normalize(&model.encode_images(px).unwrap()).unwrap();
    let txt = l2_normalize(&model.encode_texts(ids).unwrap()).unwrap();
    let logits = img.matmul(&txt.t().unwrap()).unwrap();
    let scaled = logits
        .broadcast_mul(&model.logit_scale().exp().unwrap())
        .unwrap();
    (scaled * m).unwrap().sum_all().unwrap()
}

fn check(name: &str) {
    let cfg = cfg(name);
    let w = Weights::random(&cfg, 7).unwrap();
    let vm = w.to_var_map(&Device::Cpu).unwrap();
    // f64 vars so that finite differences are precise.
    {
        let mut data = vm.data().lock().unwrap();
        for var in data.values_mut() {
            *var = Var::from_tensor(&var.as_tensor().to_dtype(DType::F64).unwrap()).unwrap();
        }
    }
    let vb = candle_nn::VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
    let model = ClipModel::new(cfg.clone(), vb).unwrap();
    let (px, ids, m) = inputs(&cfg);
    let l = loss(&model, &px, &ids, &m);
    let grads = l.backward().unwrap();
    let data = vm.data().lock().unwrap();
    let mut missing = vec![];
    for (k, var) in data.iter() {
        match grads.get(var.as_tensor()) {
            Some(g)
                if g.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
                    > 0.0 => {}
            _ => missing.push(k.clone()),
        }
    }
    assert!(missing.is_empty(), "{name}: no gradient for {missing:?}");

    let probes = [
        "logit_scale",
        "visual.transformer.resblocks.0.ln_1.weight",
        "visual.transformer.resblocks.1.attn.in_proj_weight",
        "transformer.resblocks.0.mlp.c_fc.bias",
        "ln_final.bias",
        "visual.class_embedding",
    ];
    for key in probes {
        let var = &data[key];
        let base = var.as_tensor().copy().unwrap();
        let g = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap();
        let g: Vec<f64> = g.to_vec1().unwrap();
        let n = base.elem_count();
        let idx = n / 3;
        let h = 1e-5;
        let mut flat: Vec<f64> = base.flatten_all().unwrap().to_vec1().unwrap();
        let orig = flat[idx];
        let mut eval = |x: f64| {
            flat[idx] = x;
            var.set(&Tensor::from_vec(flat.clone(), base.shape(), &Device::Cpu).unwrap())
                .unwrap();
            loss(&model, &px, &ids, &m).to_scalar::<f64>().unwrap()
        };
        let fd = (eval(orig + h) - eval(orig - h)) / (2.0 * h);
        eval(orig);
        let an = g[idx];
        assert!(
            (fd - an).abs() <= 1e-6 + 1e-4 * an.abs().max(fd.abs()),
            "{name} {key}[{idx}]: analytic {an} vs numeric {fd}"
        );
    }
}

#[test]
fn gradients_quickgelu_layer_scale_avg_pool_proj_bias() {
    check("openclip_knobs");
}

#[test]
fn gradients_gelu() {
    check("openclip_gelu");
}
