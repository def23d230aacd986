//! The canonical weight map (open_clip key naming), its expected shapes, random init and the
//! conversion to and from Hugging Face naming.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::ClipConfig;
use crate::error::{ModelError, Result};

/// Named f32 CPU tensors in open_clip key naming (`visual.conv1.weight`, `text_projection`, ...).
#[derive(Debug, Clone, Default)]
pub struct Weights {
    tensors: BTreeMap<String, Tensor>,
}

impl Weights {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wraps an existing map (no checks; see [`Weights::check`]).
    pub fn from_map(tensors: BTreeMap<String, Tensor>) -> Self {
        Self { tensors }
    }

    /// The tensor under a canonical key.
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.tensors.get(key)
    }

    /// Inserts or replaces a tensor.
    pub fn insert(&mut self, key: impl Into<String>, t: Tensor) -> Option<Tensor> {
        self.tensors.insert(key.into(), t)
    }

    /// Removes a tensor.
    pub fn remove(&mut self, key: &str) -> Option<Tensor> {
        self.tensors.remove(key)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Keys and tensors in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.tensors.iter()
    }

    /// The underlying map.
    pub fn as_map(&self) -> &BTreeMap<String, Tensor> {
        &self.tensors
    }

    /// Consumes into the underlying map.
    pub fn into_map(self) -> BTreeMap<String, Tensor> {
        self.tensors
    }

    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.tensors.values().map(|t| t.elem_count()).sum()
    }

    /// Verifies that the keys and shapes are exactly those of `cfg`: a missing, unexpected or
    /// mis-shaped tensor is an error naming the key and both shapes.
    pub fn check(&self, cfg: &ClipConfig) -> Result<()> {
        check_against(&self.tensors, cfg, &HashMap::new())
    }

    /// A `VarBuilder` over these tensors (for [`crate::ClipModel::new`]); tensors are moved to
    /// `device` and cast to `dtype` on access.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> candle_nn::VarBuilder<'static> {
        let map: HashMap<String, Tensor> = self
            .tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        candle_nn::VarBuilder::from_tensors(map, dtype, device)
    }

    /// Trainable copies of all tensors in a `VarMap` (same keys), e.g. to fine-tune.
    pub fn to_var_map(&self, device: &Device) -> Result<candle_nn::VarMap> {
        let vm = candle_nn::VarMap::new();
        {
            let mut data = vm.data().lock().map_err(|_| {
                ModelError::Candle(candle_core::Error::Msg("VarMap mutex poisoned".into()))
            })?;
            for (k, t) in &self.tensors {
                let var = candle_core::Var::from_tensor(&t.to_device(device)?)?;
                data.insert(k.clone(), var);
            }
        }
        Ok(vm)
    }

    /// Snapshot of the current values of a `VarMap` built with canonical keys.
    pub fn from_var_map(vm: &candle_nn::VarMap) -> Result<Self> {
        let data = vm.data().lock().map_err(|_| {
            ModelError::Candle(candle_core::Error::Msg("VarMap mutex poisoned".into()))
        })?;
        let mut tensors = BTreeMap::new();
        for (k, v) in data.iter() {
            let t = v
                .as_tensor()
                .to_device(&Device::Cpu)?
                .to_dtype(DType::F32)?;
            tensors.insert(k.clone(), t.copy()?);
        }
        Ok(Self { tensors })
    }

    /// Random weights shaped for `cfg`, initialised like open_clip's `CLIP.init_parameters`
    /// (normal std 0.02 / 0.01 embeddings, scaled normal attention and MLP weights, zero biases,
    /// unit layer norms, `logit_scale = cfg.logit_scale_init`). Deterministic in `seed`.
    pub fn random(cfg: &ClipConfig, seed: u64) -> Result<Self> {
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
                    "visual.class_embedding" | "visual.positional_embedding" | "visual.proj" => {
                        v_scale
                    }
                    "visual.conv1.weight" => {
                        // PyTorch's default conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the
                        // std of which is 1/sqrt(3 fan_in).
                        (3.0 * (3 * v.patch_size * v.patch_size) as f64).powf(-0.5)
                    }
                    k if k.ends_with("attn.in_proj_weight") => attn_std,
                    k if k.ends_with("attn.out_proj.weight")
                        || k.ends_with("mlp.c_proj.weight") =>
                    {
                        proj_std
                    }
                    k if k.ends_with("mlp.c_fc.weight") => fc_std,
                    _ => 0.02,
                };
                (0..n).map(|_| (normal(&mut rng) * std) as f32).collect()
            };
            tensors.insert(key, Tensor::from_vec(data, shape, &Device::Cpu)?);
        }
        Ok(Self { tensors })
    }
}

/// Standard normal sample (Box-Muller), to avoid a `rand_distr` dependency.
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn block_shapes(
    prefix: &str,
    width: usize,
    mlp: usize,
    layer_scale: bool,
    out: &mut Vec<(String, Vec<usize>)>,
) {
    let mut push = |name: &str, shape: Vec<usize>| out.push((format!("{prefix}.{name}"), shape));
    push("ln_1.weight", vec![width]);
    push("ln_1.bias", vec![width]);
    push("attn.in_proj_weight", vec![3 * width, width]);
    push("attn.in_proj_bias", vec![3 * width]);
    push("attn.out_proj.weight", vec![width, width]);
    push("attn.out_proj.bias", vec![width]);
    push("ln_2.weight", vec![width]);
    push("ln_2.bias", vec![width]);
    push("mlp.c_fc.weight", vec![mlp, width]);
    push("mlp.c_fc.bias", vec![mlp]);
    push("mlp.c_proj.weight", vec![width, mlp]);
    push("mlp.c_proj.bias", vec![width]);
    if layer_scale {
        push("ls_1.gamma", vec![width]);
        push("ls_2.gamma", vec![width]);
    }
}

/// Every canonical (open_clip) key of `cfg` with its shape. `logit_scale` is a 0-d tensor.
pub fn expected_shapes(cfg: &ClipConfig) -> Vec<(String, Vec<usize>)> {
    let v = &cfg.vision;
    let t = &cfg.text;
    let e = cfg.embed_dim;
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    out.push(("visual.class_embedding".into(), vec![v.width]));
    out.push((
        "visual.positional_embedding".into(),
        vec![v.num_positions(), v.width],
    ));
    out.push((
        "visual.conv1.weight".into(),
        vec![v.width, 3, v.patch_size, v.patch_size],
    ));
    if !v.no_ln_pre {
        out.push(("visual.ln_pre.weight".into(), vec![v.width]));
        out.push(("visual.ln_pre.bias".into(), vec![v.width]));
    }
    for i in 0..v.layers {
        block_shapes(
            &format!("visual.transformer.resblocks.{i}"),
            v.width,
            v.mlp_width(),
            v.ls_init_value.is_some(),
            &mut out,
        );
    }
    out.push(("visual.ln_post.weight".into(), vec![v.width]));
    out.push(("visual.ln_post.bias".into(), vec![v.width]));
    out.push(("visual.proj".into(), vec![v.width, e]));

    out.push(("token_embedding.weight".into(), vec![t.vocab_size, t.width]));
    out.push((
        "positional_embedding".into(),
        vec![t.context_length, t.width],
    ));
    for i in 0..t.layers {
        block_shapes(
            &format!("transformer.resblocks.{i}"),
            t.width,
            t.mlp_width(),
            t.ls_init_value.is_some(),
            &mut out,
        );
    }
    out.push(("ln_final.weight".into(), vec![t.width]));
    out.push(("ln_final.bias".into(), vec![t.width]));
    if t.proj_bias {
        out.push(("text_projection.weight".into(), vec![e, t.width]));
        out.push(("text_projection.bias".into(), vec![e]));
    } else {
        out.push(("text_projection".into(), vec![t.width, e]));
    }
    out.push(("logit_scale".into(), vec![]));
    out
}

/// Keys that checkpoints may carry but that hold no parameters (buffers).
pub(crate) fn is_ignorable_key(key: &str) -> bool {
    key.ends_with("position_ids") || key == "attn_mask" || key.ends_with(".attn_mask")
}

/// Shape check of canonical tensors; `source_keys` maps canonical keys to file keys for messages.
pub(crate) fn check_against(
    tensors: &BTreeMap<String, Tensor>,
    cfg: &ClipConfig,
    source_keys: &HashMap<String, String>,
) -> Result<()> {
    let shapes: BTreeMap<&str, &[usize]> = tensors
        .iter()
        .map(|(k, t)| (k.as_str(), t.dims()))
        .collect();
    check_shapes(&shapes, cfg, source_keys)
}

/// [`check_against`] on shapes alone (so lazily loaded checkpoints are checked before any
/// tensor data is read).
pub(crate) fn check_shapes(
    shapes: &BTreeMap<&str, &[usize]>,
    cfg: &ClipConfig,
    source_keys: &HashMap<String, String>,
) -> Result<()> {
    let expected = expected_shapes(cfg);
    let src = |k: &str| source_keys.get(k).filter(|s| s.as_str() != k).cloned();
    for (key, shape) in &expected {
        match shapes.get(key.as_str()) {
            None => {
                return Err(ModelError::MissingTensor {
                    key: key.clone(),
                    expected: shape.clone(),
                    source_key: src(key),
                })
            }
            Some(&dims) => {
                // A logit_scale stored as [1] is accepted as a scalar.
                let ok = dims == shape.as_slice() || (shape.is_empty() && dims == [1]);
                if !ok {
                    return Err(ModelError::ShapeMismatch {
                        key: key.clone(),
                        expected: shape.clone(),
                        found: dims.to_vec(),
                        source_key: src(key),
                    });
                }
            }
        }
    }
    let known: std::collections::HashSet<&str> = expected.iter().map(|(k, _)| k.as_str()).collect();
    for (&key, &dims) in shapes {
        if !known.contains(key) {
            return Err(ModelError::UnexpectedTensor {
                key: source_keys
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| key.to_string()),
                shape: dims.to_vec(),
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Hugging Face naming

/// Block-internal renames (open_clip suffix, HF suffix), q/k/v handled separately.
const BLOCK_RENAMES: &[(&str, &str)] = &[
    ("ln_1.weight", "layer_norm1.weight"),
    ("ln_1.bias", "layer_norm1.bias"),
    ("attn.out_proj.weight", "self_attn.out_proj.weight"),
    ("attn.out_proj.bias", "self_attn.out_proj.bias"),
    ("ln_2.weight", "layer_norm2.weight"),
    ("ln_2.bias", "layer_norm2.bias"),
    ("mlp.c_fc.weight", "mlp.fc1.weight"),
    ("mlp.c_fc.bias", "mlp.fc1.bias"),
    ("mlp.c_proj.weight", "mlp.fc2.weight"),
    ("mlp.c_proj.bias", "mlp.fc2.bias"),
];

/// Whole-key renames (open_clip, HF, transposed).
const TOP_RENAMES: &[(&str, &str, bool)] = &[
    (
        "visual.class_embedding",
        "vision_model.embeddings.class_embedding",
        false,
    ),
    (
        "visual.conv1.weight",
        "vision_model.embeddings.patch_embedding.weight",
        false,
    ),
    (
        "visual.positional_embedding",
        "vision_model.embeddings.position_embedding.weight",
        false,
    ),
    (
        "visual.ln_pre.weight",
        "vision_model.pre_layrnorm.weight",
        false,
    ),
    (
        "visual.ln_pre.bias",
        "vision_model.pre_layrnorm.bias",
        false,
    ),
    (
        "visual.ln_post.weight",
        "vision_model.post_layernorm.weight",
        false,
    ),
    (
        "visual.ln_post.bias",
        "vision_model.post_layernorm.bias",
        false,
    ),
    ("visual.proj", "visual_projection.weight", true),
    (
        "token_embedding.weight",
        "text_model.embeddings.token_embedding.weight",
        false,
    ),
    (
        "positional_embedding",
        "text_model.embeddings.position_embedding.weight",
        false,
    ),
    (
        "ln_final.weight",
        "text_model.final_layer_norm.weight",
        false,
    ),
    ("ln_final.bias", "text_model.final_layer_norm.bias", false),
    ("text_projection", "text_projection.weight", true),
    ("logit_scale", "logit_scale", false),
];

/// True when a key set looks like HF `CLIPModel` naming.
pub(crate) fn is_hf_naming<'a>(mut keys: impl Iterator<Item = &'a str>) -> bool {
    keys.any(|k| {
        k.starts_with("text_model.")
            || k.starts_with("vision_model.")
            || k == "visual_projection.weight"
    })
}

/// Splits an HF block key into (tower prefix in open_clip naming, layer index, suffix).
fn hf_block(key: &str) -> Option<(&'static str, &str, &str)> {
    let (tower, rest) = if let Some(r) = key.strip_prefix("vision_model.encoder.layers.") {
        ("visual.transformer.resblocks", r)
    } else if let Some(r) = key.strip_prefix("text_model.encoder.layers.") {
        ("transformer.resblocks", r)
    } else {
        return None;
    };
    let (idx, suffix) = rest.split_once('.')?;
    Some((tower, idx, suffix))
}

/// What the HF -> canonical mapping needs of a tensor: real tensors for eager loading, or
/// recipes (file location plus resulting shape) for lazy loading.
pub(crate) trait HfPart: Sized {
    /// Shape, in the orientation this value represents.
    fn dims(&self) -> &[usize];
    /// The 2-d transpose.
    fn transposed(self) -> Result<Self>;
    /// Concatenation along dim 0 (parts already checked to share a shape).
    fn cat0(parts: Vec<Self>) -> Result<Self>;
}

impl HfPart for Tensor {
    fn dims(&self) -> &[usize] {
        Tensor::dims(self)
    }
    fn transposed(self) -> Result<Self> {
        Ok(self.t()?.contiguous()?)
    }
    fn cat0(parts: Vec<Self>) -> Result<Self> {
        Ok(Tensor::cat(&parts, 0)?)
    }
}

/// The q, k, v parts of one in_proj tensor, as found.
type QkvParts<T> = [Option<T>; 3];

/// Maps HF-named tensors to canonical naming: q/k/v are concatenated into `in_proj`, the
/// projections transposed. Returns the canonical tensors and canonical -> HF key names.
/// Unknown keys are kept unchanged so the shape check reports them.
pub(crate) fn hf_to_canonical<T: HfPart>(
    hf: BTreeMap<String, T>,
) -> Result<(BTreeMap<String, T>, HashMap<String, String>)> {
    let mut out = BTreeMap::new();
    let mut names = HashMap::new();
    // q/k/v parts per (tower, idx, weight|bias).
    let mut qkv: BTreeMap<(String, String, String), QkvParts<T>> = BTreeMap::new();
    for (key, t) in hf {
        if let Some(&(oc, _, transpose)) = TOP_RENAMES.iter().find(|(_, h, _)| *h == key) {
            let t = if transpose { t.transposed()? } else { t };
            names.insert(oc.to_string(), key.clone());
            out.insert(oc.to_string(), t);
            continue;
        }
        if let Some((tower, idx, suffix)) = hf_block(&key) {
            if let Some(&(oc, _)) = BLOCK_RENAMES.iter().find(|(_, h)| *h == suffix) {
                let ck = format!("{tower}.{idx}.{oc}");
                names.insert(ck.clone(), key.clone());
                out.insert(ck, t);
                continue;
            }
            let part = match suffix {
                "self_attn.q_proj.weight" | "self_attn.q_proj.bias" => Some(0),
                "self_attn.k_proj.weight" | "self_attn.k_proj.bias" => Some(1),
                "self_attn.v_proj.weight" | "self_attn.v_proj.bias" => Some(2),
                _ => None,
            };
            if let Some(p) = part {
                let kind = if suffix.ends_with("weight") {
                    "weight"
                } else {
                    "bias"
                };
                let slot = qkv
                    .entry((tower.to_string(), idx.to_string(), kind.to_string()))
                    .or_default();
                slot[p] = Some(t);
                continue;
            }
        }
        out.insert(key, t);
    }
    for ((tower, idx, kind), parts) in qkv {
        let ck = format!("{tower}.{idx}.attn.in_proj_{kind}");
        let hf_prefix = if tower.starts_with("visual") {
            "vision_model"
        } else {
            "text_model"
        };
        let mut ts = Vec::with_capacity(3);
        for (p, name) in parts.into_iter().zip(["q", "k", "v"]) {
            match p {
                Some(t) => ts.push(t),
                None => {
                    return Err(ModelError::MissingTensor {
                        key: ck,
                        expected: vec![],
                        source_key: Some(format!(
                            "{hf_prefix}.encoder.layers.{idx}.self_attn.{name}_proj.{kind}"
                        )),
                    })
                }
            }
        }
        let dims: Vec<Vec<usize>> = ts.iter().map(|t| t.dims().to_vec()).collect();
        if dims[0] != dims[1] || dims[0] != dims[2] {
            return Err(ModelError::ShapeMismatch {
                key: ck,
                expected: dims[0].clone(),
                found: dims[1..].iter().flatten().copied().collect(),
                source_key: Some(format!(
                    "{hf_prefix}.encoder.layers.{idx}.self_attn.{{q,k,v}}_proj.{kind} differ"
                )),
            });
        }
        let cat = T::cat0(ts)?;
        names.insert(
            ck.clone(),
            format!("{hf_prefix}.encoder.layers.{idx}.self_attn.{{q,k,v}}_proj.{kind}"),
        );
        out.insert(ck, cat);
    }
    Ok((out, names))
}

/// Canonical tensors renamed to HF `CLIPModel` keys (in_proj split into q/k/v, projections
/// transposed). Fails for tensors HF CLIP has no place for (layer scale, projection bias).
pub(crate) fn canonical_to_hf(w: &Weights) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    for (key, t) in w.iter() {
        if let Some(&(_, h, transpose)) = TOP_RENAMES.iter().find(|(o, _, _)| *o == key) {
            let t = if transpose {
                t.t()?.contiguous()?
            } else {
                t.clone()
            };
            out.insert(h.to_string(), t);
            continue;
        }
        let block = if let Some(r) = key.strip_prefix("visual.transformer.resblocks.") {
            Some(("vision_model.encoder.layers", r))
        } else {
            key.strip_prefix("transformer.resblocks.")
                .map(|r| ("text_model.encoder.layers", r))
        };
        if let Some((hp, rest)) = block {
            if let Some((idx, suffix)) = rest.split_once('.') {
                if let Some(&(_, h)) = BLOCK_RENAMES.iter().find(|(o, _)| *o == suffix) {
                    out.insert(format!("{hp}.{idx}.{h}"), t.clone());
                    continue;
                }
                if let Some(kind) = suffix.strip_prefix("attn.in_proj_") {
                    let parts = t.chunk(3, 0)?;
                    for (p, name) in parts.into_iter().zip(["q", "k", "v"]) {
                        out.insert(
                            format!("{hp}.{idx}.self_attn.{name}_proj.{kind}"),
                            p.contiguous()?,
                        );
                    }
                    continue;
                }
            }
        }
        return Err(ModelError::Unsupported(format!(
            "tensor `{key}` has no Hugging Face CLIP equivalent"
        )));
    }
    Ok(out)
}
