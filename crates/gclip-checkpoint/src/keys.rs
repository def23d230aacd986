//! The one table of tensor key names: canonical (open_clip) names, their shapes for a config,
//! and how each is stored in Hugging Face `CLIPModel` naming. The loader, the saver, the candle
//! towers and the CPU engine all take their names from here.

use crate::config::ClipConfig;

/// `visual.class_embedding` `[width]`.
pub const VISUAL_CLASS_EMBEDDING: &str = "visual.class_embedding";
/// `visual.positional_embedding` `[grid^2 + 1, width]`.
pub const VISUAL_POSITIONAL_EMBEDDING: &str = "visual.positional_embedding";
/// `visual.conv1.weight` `[width, 3, patch, patch]` (patch embedding, no bias).
pub const VISUAL_CONV1: &str = "visual.conv1.weight";
/// `visual.ln_pre.weight` (absent with `no_ln_pre`).
pub const VISUAL_LN_PRE_WEIGHT: &str = "visual.ln_pre.weight";
/// `visual.ln_pre.bias`.
pub const VISUAL_LN_PRE_BIAS: &str = "visual.ln_pre.bias";
/// `visual.ln_post.weight`.
pub const VISUAL_LN_POST_WEIGHT: &str = "visual.ln_post.weight";
/// `visual.ln_post.bias`.
pub const VISUAL_LN_POST_BIAS: &str = "visual.ln_post.bias";
/// `visual.proj` `[width, embed]` (HF stores the transpose).
pub const VISUAL_PROJ: &str = "visual.proj";
/// `token_embedding.weight` `[vocab, width]`.
pub const TOKEN_EMBEDDING: &str = "token_embedding.weight";
/// `positional_embedding` `[context, width]`.
pub const POSITIONAL_EMBEDDING: &str = "positional_embedding";
/// `ln_final.weight`.
pub const LN_FINAL_WEIGHT: &str = "ln_final.weight";
/// `ln_final.bias`.
pub const LN_FINAL_BIAS: &str = "ln_final.bias";
/// `text_projection` `[width, embed]` (HF stores the transpose).
pub const TEXT_PROJECTION: &str = "text_projection";
/// `text_projection.weight` `[embed, width]` (with `proj_bias`, a Linear).
pub const TEXT_PROJECTION_WEIGHT: &str = "text_projection.weight";
/// `text_projection.bias` `[embed]` (with `proj_bias`).
pub const TEXT_PROJECTION_BIAS: &str = "text_projection.bias";
/// `logit_scale`, a 0-d scalar (a `[1]` tensor is accepted on load).
pub const LOGIT_SCALE: &str = "logit_scale";

/// A transformer tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tower {
    /// The image tower (`visual.transformer`).
    Vision,
    /// The text tower (`transformer`).
    Text,
}

impl Tower {
    /// Canonical prefix of the residual blocks.
    pub fn blocks_prefix(self) -> &'static str {
        match self {
            Tower::Vision => "visual.transformer.resblocks",
            Tower::Text => "transformer.resblocks",
        }
    }

    /// Hugging Face prefix of the encoder layers.
    pub fn hf_layers_prefix(self) -> &'static str {
        match self {
            Tower::Vision => "vision_model.encoder.layers",
            Tower::Text => "text_model.encoder.layers",
        }
    }
}

/// Canonical names of the tensors of one residual block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockKeys {
    pub ln_1_weight: String,
    pub ln_1_bias: String,
    /// `[3 width, width]`: q, k, v stacked.
    pub in_proj_weight: String,
    pub in_proj_bias: String,
    pub out_proj_weight: String,
    pub out_proj_bias: String,
    pub ln_2_weight: String,
    pub ln_2_bias: String,
    pub c_fc_weight: String,
    pub c_fc_bias: String,
    pub c_proj_weight: String,
    pub c_proj_bias: String,
    /// Layer-scale gammas (only with `ls_init_value`).
    pub ls_1: String,
    pub ls_2: String,
}

/// How a block tensor is named in HF: a plain rename, part of the split q/k/v, or absent.
#[derive(Clone, Copy)]
enum HfBlock {
    Rename(&'static str),
    /// `self_attn.{q,k,v}_proj.<kind>`.
    Qkv(&'static str),
    Absent,
}

/// (canonical suffix, HF form) of every block tensor, in canonical order.
const BLOCK_TABLE: [(&str, HfBlock); 14] = [
    ("ln_1.weight", HfBlock::Rename("layer_norm1.weight")),
    ("ln_1.bias", HfBlock::Rename("layer_norm1.bias")),
    ("attn.in_proj_weight", HfBlock::Qkv("weight")),
    ("attn.in_proj_bias", HfBlock::Qkv("bias")),
    (
        "attn.out_proj.weight",
        HfBlock::Rename("self_attn.out_proj.weight"),
    ),
    (
        "attn.out_proj.bias",
        HfBlock::Rename("self_attn.out_proj.bias"),
    ),
    ("ln_2.weight", HfBlock::Rename("layer_norm2.weight")),
    ("ln_2.bias", HfBlock::Rename("layer_norm2.bias")),
    ("mlp.c_fc.weight", HfBlock::Rename("mlp.fc1.weight")),
    ("mlp.c_fc.bias", HfBlock::Rename("mlp.fc1.bias")),
    ("mlp.c_proj.weight", HfBlock::Rename("mlp.fc2.weight")),
    ("mlp.c_proj.bias", HfBlock::Rename("mlp.fc2.bias")),
    ("ls_1.gamma", HfBlock::Absent),
    ("ls_2.gamma", HfBlock::Absent),
];

/// (canonical, HF, stored transposed in HF) of the tensors outside the blocks.
const TOP_TABLE: [(&str, Option<&str>, bool); 16] = [
    (
        VISUAL_CLASS_EMBEDDING,
        Some("vision_model.embeddings.class_embedding"),
        false,
    ),
    (
        VISUAL_POSITIONAL_EMBEDDING,
        Some("vision_model.embeddings.position_embedding.weight"),
        false,
    ),
    (
        VISUAL_CONV1,
        Some("vision_model.embeddings.patch_embedding.weight"),
        false,
    ),
    (
        VISUAL_LN_PRE_WEIGHT,
        Some("vision_model.pre_layrnorm.weight"),
        false,
    ),
    (
        VISUAL_LN_PRE_BIAS,
        Some("vision_model.pre_layrnorm.bias"),
        false,
    ),
    (
        VISUAL_LN_POST_WEIGHT,
        Some("vision_model.post_layernorm.weight"),
        false,
    ),
    (
        VISUAL_LN_POST_BIAS,
        Some("vision_model.post_layernorm.bias"),
        false,
    ),
    (VISUAL_PROJ, Some("visual_projection.weight"), true),
    (
        TOKEN_EMBEDDING,
        Some("text_model.embeddings.token_embedding.weight"),
        false,
    ),
    (
        POSITIONAL_EMBEDDING,
        Some("text_model.embeddings.position_embedding.weight"),
        false,
    ),
    (
        LN_FINAL_WEIGHT,
        Some("text_model.final_layer_norm.weight"),
        false,
    ),
    (
        LN_FINAL_BIAS,
        Some("text_model.final_layer_norm.bias"),
        false,
    ),
    (TEXT_PROJECTION, Some("text_projection.weight"), true),
    (TEXT_PROJECTION_WEIGHT, None, false),
    (TEXT_PROJECTION_BIAS, None, false),
    (LOGIT_SCALE, Some("logit_scale"), false),
];

/// The canonical names of block `index` of `tower`.
pub fn block(tower: Tower, index: usize) -> BlockKeys {
    let p = format!("{}.{index}", tower.blocks_prefix());
    let k = |suffix: &str| format!("{p}.{suffix}");
    BlockKeys {
        ln_1_weight: k(BLOCK_TABLE[0].0),
        ln_1_bias: k(BLOCK_TABLE[1].0),
        in_proj_weight: k(BLOCK_TABLE[2].0),
        in_proj_bias: k(BLOCK_TABLE[3].0),
        out_proj_weight: k(BLOCK_TABLE[4].0),
        out_proj_bias: k(BLOCK_TABLE[5].0),
        ln_2_weight: k(BLOCK_TABLE[6].0),
        ln_2_bias: k(BLOCK_TABLE[7].0),
        c_fc_weight: k(BLOCK_TABLE[8].0),
        c_fc_bias: k(BLOCK_TABLE[9].0),
        c_proj_weight: k(BLOCK_TABLE[10].0),
        c_proj_bias: k(BLOCK_TABLE[11].0),
        ls_1: k(BLOCK_TABLE[12].0),
        ls_2: k(BLOCK_TABLE[13].0),
    }
}

/// How a canonical tensor is stored in Hugging Face `CLIPModel` naming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HfName {
    /// Same values under another name.
    Same(String),
    /// The transpose of the canonical 2-d tensor.
    Transposed(String),
    /// The canonical tensor split in three along dim 0 (q, k, v).
    Qkv([String; 3]),
    /// HF CLIP has no place for it (layer scale, projection bias).
    Absent,
}

/// One canonical tensor of a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// Canonical (open_clip) key.
    pub key: String,
    /// Shape the config implies (canonical orientation; `[]` for the logit scale).
    pub shape: Vec<usize>,
    /// Its Hugging Face form.
    pub hf: HfName,
}

fn top(key: &str, shape: Vec<usize>) -> KeySpec {
    let (_, hf, transposed) = TOP_TABLE
        .iter()
        .find(|(k, _, _)| *k == key)
        .copied()
        .unwrap_or((key, None, false));
    let hf = match (hf, transposed) {
        (Some(h), false) => HfName::Same(h.to_string()),
        (Some(h), true) => HfName::Transposed(h.to_string()),
        (None, _) => HfName::Absent,
    };
    KeySpec {
        key: key.to_string(),
        shape,
        hf,
    }
}

fn blocks(tower: Tower, layers: usize, width: usize, mlp: usize, ls: bool, out: &mut Vec<KeySpec>) {
    for i in 0..layers {
        let p = format!("{}.{i}", tower.blocks_prefix());
        let hp = format!("{}.{i}", tower.hf_layers_prefix());
        for (suffix, hf) in BLOCK_TABLE {
            if suffix.starts_with("ls_") && !ls {
                continue;
            }
            let shape = match suffix {
                "attn.in_proj_weight" => vec![3 * width, width],
                "attn.in_proj_bias" => vec![3 * width],
                "attn.out_proj.weight" => vec![width, width],
                "mlp.c_fc.weight" => vec![mlp, width],
                "mlp.c_fc.bias" => vec![mlp],
                "mlp.c_proj.weight" => vec![width, mlp],
                _ => vec![width],
            };
            let hf = match hf {
                HfBlock::Rename(h) => HfName::Same(format!("{hp}.{h}")),
                HfBlock::Qkv(kind) => {
                    HfName::Qkv(["q", "k", "v"].map(|n| format!("{hp}.self_attn.{n}_proj.{kind}")))
                }
                HfBlock::Absent => HfName::Absent,
            };
            out.push(KeySpec {
                key: format!("{p}.{suffix}"),
                shape,
                hf,
            });
        }
    }
}

/// Every canonical tensor of `cfg` with its shape and HF form, in canonical order.
pub fn key_table(cfg: &ClipConfig) -> Vec<KeySpec> {
    let v = &cfg.vision;
    let t = &cfg.text;
    let e = cfg.embed_dim;
    let mut out = vec![
        top(VISUAL_CLASS_EMBEDDING, vec![v.width]),
        top(
            VISUAL_POSITIONAL_EMBEDDING,
            vec![v.num_positions(), v.width],
        ),
        top(VISUAL_CONV1, vec![v.width, 3, v.patch_size, v.patch_size]),
    ];
    if !v.no_ln_pre {
        out.push(top(VISUAL_LN_PRE_WEIGHT, vec![v.width]));
        out.push(top(VISUAL_LN_PRE_BIAS, vec![v.width]));
    }
    blocks(
        Tower::Vision,
        v.layers,
        v.width,
        v.mlp_width(),
        v.ls_init_value.is_some(),
        &mut out,
    );
    out.push(top(VISUAL_LN_POST_WEIGHT, vec![v.width]));
    out.push(top(VISUAL_LN_POST_BIAS, vec![v.width]));
    out.push(top(VISUAL_PROJ, vec![v.width, e]));
    out.push(top(TOKEN_EMBEDDING, vec![t.vocab_size, t.width]));
    out.push(top(POSITIONAL_EMBEDDING, vec![t.context_length, t.width]));
    blocks(
        Tower::Text,
        t.layers,
        t.width,
        t.mlp_width(),
        t.ls_init_value.is_some(),
        &mut out,
    );
    out.push(top(LN_FINAL_WEIGHT, vec![t.width]));
    out.push(top(LN_FINAL_BIAS, vec![t.width]));
    if t.proj_bias {
        out.push(top(TEXT_PROJECTION_WEIGHT, vec![e, t.width]));
        out.push(top(TEXT_PROJECTION_BIAS, vec![e]));
    } else {
        out.push(top(TEXT_PROJECTION, vec![t.width, e]));
    }
    out.push(top(LOGIT_SCALE, vec![]));
    out
}

/// Every canonical (open_clip) key of `cfg` with its shape. `logit_scale` is a 0-d tensor.
pub fn expected_shapes(cfg: &ClipConfig) -> Vec<(String, Vec<usize>)> {
    key_table(cfg)
        .into_iter()
        .map(|s| (s.key, s.shape))
        .collect()
}

/// Keys that checkpoints may carry but that hold no parameters (buffers).
pub fn is_ignorable_key(key: &str) -> bool {
    key.ends_with("position_ids") || key == "attn_mask" || key.ends_with(".attn_mask")
}

/// A file key without the wrapper prefixes DDP (`module.`) and `torch.compile`
/// (`_orig_mod.`) add.
pub fn strip_wrapper_prefixes(key: &str) -> &str {
    let mut k = key;
    loop {
        match k
            .strip_prefix("module.")
            .or_else(|| k.strip_prefix("_orig_mod."))
        {
            Some(rest) => k = rest,
            None => return k,
        }
    }
}

/// True when a key set looks like HF `CLIPModel` naming.
pub fn is_hf_naming<'a>(mut keys: impl Iterator<Item = &'a str>) -> bool {
    keys.any(|k| {
        k.starts_with("text_model.")
            || k.starts_with("vision_model.")
            || k == "visual_projection.weight"
    })
}

/// Verifies that canonical tensors are exactly those of `cfg`: the first missing or
/// mis-shaped tensor (in canonical order), else the first unexpected one, is an error naming
/// the key and the shapes. A `[1]` logit scale passes as the scalar.
pub fn check_shapes<'a>(
    shapes: impl IntoIterator<Item = (&'a str, &'a [usize])>,
    cfg: &ClipConfig,
) -> crate::Result<()> {
    let mut shapes: std::collections::BTreeMap<&str, &[usize]> = shapes.into_iter().collect();
    for (key, want) in expected_shapes(cfg) {
        match shapes.remove(key.as_str()) {
            None => {
                return Err(crate::CheckpointError::MissingTensor {
                    key,
                    expected: want,
                    source_key: None,
                })
            }
            Some(found) if !shape_ok(found, &want) => {
                return Err(crate::CheckpointError::ShapeMismatch {
                    key,
                    expected: want,
                    found: found.to_vec(),
                    source_key: None,
                })
            }
            Some(_) => {}
        }
    }
    match shapes.into_iter().next() {
        Some((key, shape)) => Err(crate::CheckpointError::UnexpectedTensor {
            key: key.to_string(),
            shape: shape.to_vec(),
        }),
        None => Ok(()),
    }
}

/// `found` satisfies `want` (a `[1]` tensor stands for a scalar).
pub(crate) fn shape_ok(found: &[usize], want: &[usize]) -> bool {
    found == want || (want.is_empty() && found == [1])
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn table_covers_every_tensor_once() {
        let c = crate::arch::by_name("ViT-B-32").unwrap();
        let t = key_table(&c);
        // 12 + 12 blocks of 12 tensors, 14 top-level tensors.
        assert_eq!(t.len(), 24 * 12 + 14);
        let keys: HashSet<&str> = t.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys.len(), t.len());
        let hf: HashSet<String> = t
            .iter()
            .flat_map(|s| match &s.hf {
                HfName::Same(h) | HfName::Transposed(h) => vec![h.clone()],
                HfName::Qkv(p) => p.to_vec(),
                HfName::Absent => vec![],
            })
            .collect();
        // 10 renames and 2 x (q, k, v) per block.
        assert_eq!(hf.len(), 24 * 16 + 14);
        let b = block(Tower::Text, 3);
        assert_eq!(
            b.in_proj_weight,
            "transformer.resblocks.3.attn.in_proj_weight"
        );
        let spec = t.iter().find(|s| s.key == b.in_proj_weight).unwrap();
        assert_eq!(
            spec.hf,
            HfName::Qkv([
                "text_model.encoder.layers.3.self_attn.q_proj.weight".into(),
                "text_model.encoder.layers.3.self_attn.k_proj.weight".into(),
                "text_model.encoder.layers.3.self_attn.v_proj.weight".into(),
            ])
        );
        assert_eq!(
            strip_wrapper_prefixes("module._orig_mod.logit_scale"),
            "logit_scale"
        );
    }
}
