//! Model configuration: one canonical struct, read from and written to the open_clip and
//! Hugging Face config formats.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{CheckpointError, Result};

/// Default `logit_scale` initial value, ln(1/0.07), as both reference libraries use.
pub const DEFAULT_LOGIT_SCALE_INIT: f64 = 2.659_260_036_932_778_4;
/// Layer-norm epsilon both reference libraries use unless configured otherwise.
pub const DEFAULT_LAYER_NORM_EPS: f64 = 1e-5;

/// MLP activation of the transformer blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, used by the OpenAI weights.
    QuickGelu,
    /// Exact (erf) GELU, open_clip's default.
    Gelu,
}

/// How the vision tower reduces its token sequence to one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisionPool {
    /// The class token (position 0).
    Tok,
    /// Mean of the patch tokens (class token excluded).
    Avg,
}

/// Which position of the text sequence is pooled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextPool {
    /// Position of the largest token id (first one on ties): the EOT token for CLIP BPE.
    Argmax,
    /// Position 0.
    First,
    /// The last position of the given sequence.
    Last,
    /// First position holding `eos_token_id` (0 if absent), as HF CLIP does.
    Eos,
}

/// Vision Transformer tower.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    /// Input side length in pixels (square images).
    pub image_size: usize,
    /// Patch side length in pixels.
    pub patch_size: usize,
    /// Transformer width.
    pub width: usize,
    /// Number of residual blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP hidden width = `int(width * mlp_ratio)`.
    pub mlp_ratio: f64,
    /// MLP activation.
    pub activation: Activation,
    /// Layer-scale init value; `Some` means the blocks carry `ls_1.gamma` / `ls_2.gamma`.
    pub ls_init_value: Option<f64>,
    /// No layer norm before the transformer (no `ln_pre` weights).
    pub no_ln_pre: bool,
    /// Pooling of the output tokens.
    pub pool: VisionPool,
    /// Apply `ln_post` after pooling instead of before.
    pub final_ln_after_pool: bool,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
}

/// Causal text Transformer tower.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    /// Maximum sequence length (positional embedding rows).
    pub context_length: usize,
    /// Vocabulary size (token embedding rows).
    pub vocab_size: usize,
    /// Transformer width.
    pub width: usize,
    /// Number of residual blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP hidden width = `int(width * mlp_ratio)`.
    pub mlp_ratio: f64,
    /// MLP activation.
    pub activation: Activation,
    /// Layer-scale init value; `Some` means the blocks carry `ls_1.gamma` / `ls_2.gamma`.
    pub ls_init_value: Option<f64>,
    /// Pooling position rule.
    pub pool: TextPool,
    /// End-of-text id (used by [`TextPool::Eos`] and written to HF configs).
    pub eos_token_id: u32,
    /// Start-of-text id (informational, written to HF configs).
    pub bos_token_id: u32,
    /// Padding id (informational, written to HF configs).
    pub pad_token_id: u32,
    /// Causal attention mask (true for CLIP).
    pub causal: bool,
    /// The projection is a `Linear` with bias (`text_projection.weight`/`.bias`) instead of a
    /// bare `[width, embed]` matrix.
    pub proj_bias: bool,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
}

/// Full CLIP model configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    /// Shared embedding dimension (output of both projections).
    pub embed_dim: usize,
    /// Image tower.
    pub vision: VisionConfig,
    /// Text tower.
    pub text: TextConfig,
    /// Initial value of the (log) logit scale parameter.
    pub logit_scale_init: f64,
}

impl VisionConfig {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
    /// Token count: patches plus the class token.
    pub fn num_positions(&self) -> usize {
        self.grid() * self.grid() + 1
    }
    /// MLP hidden width.
    pub fn mlp_width(&self) -> usize {
        mlp_width(self.width, self.mlp_ratio)
    }
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }
}

impl TextConfig {
    /// MLP hidden width.
    pub fn mlp_width(&self) -> usize {
        mlp_width(self.width, self.mlp_ratio)
    }
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }
}

fn mlp_width(width: usize, ratio: f64) -> usize {
    // open_clip uses int(width * ratio); the epsilon absorbs ratios recovered from HF
    // configs as intermediate/hidden, which may land a hair below the integer.
    (width as f64 * ratio + 1e-6).floor() as usize
}

// ---------------------------------------------------------------------------------------------
// JSON helpers

fn obj<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| CheckpointError::InvalidConfig(format!("`{what}` must be a JSON object")))
}

fn get_usize(
    m: &Map<String, Value>,
    key: &str,
    default: Option<usize>,
    what: &str,
) -> Result<usize> {
    match m.get(key) {
        None | Some(Value::Null) => default
            .ok_or_else(|| CheckpointError::InvalidConfig(format!("`{what}.{key}` is required"))),
        Some(Value::Array(a)) => {
            // open_clip allows (h, w) pairs; only square ones are supported.
            let vals: Vec<u64> = a.iter().filter_map(Value::as_u64).collect();
            if vals.len() == 2 && vals[0] == vals[1] {
                Ok(vals[0] as usize)
            } else {
                Err(CheckpointError::Unsupported(format!(
                    "`{what}.{key}` = {} (only square sizes are supported)",
                    Value::Array(a.clone())
                )))
            }
        }
        Some(v) => v
            .as_u64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .map(|x| x as usize)
            .ok_or_else(|| {
                CheckpointError::InvalidConfig(format!(
                    "`{what}.{key}` must be a non-negative integer, got {v}"
                ))
            }),
    }
}

fn get_f64(m: &Map<String, Value>, key: &str, default: f64, what: &str) -> Result<f64> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_f64().ok_or_else(|| {
            CheckpointError::InvalidConfig(format!("`{what}.{key}` must be a number, got {v}"))
        }),
    }
}

fn get_opt_f64(m: &Map<String, Value>, key: &str, what: &str) -> Result<Option<f64>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            CheckpointError::InvalidConfig(format!("`{what}.{key}` must be a number, got {v}"))
        }),
    }
}

fn get_bool(m: &Map<String, Value>, key: &str, default: bool) -> bool {
    match m.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|x| x != 0.0),
        _ => default,
    }
}

fn get_str<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

/// True when the key holds something other than null / false / "" / {} / [].
fn truthy(m: &Map<String, Value>, key: &str) -> bool {
    match m.get(key) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Number(n)) => n.as_f64().is_some_and(|x| x != 0.0),
        Some(Value::Bool(true)) => true,
    }
}

/// Features of open_clip's custom attention block that this implementation lacks.
const CUSTOM_BLOCK_FLAGS: [&str; 6] = [
    "qk_norm",
    "scaled_cosine_attn",
    "scale_heads",
    "scale_attn_inner",
    "scale_attn",
    "scale_fc",
];

fn check_common_tower(m: &Map<String, Value>, what: &str) -> Result<f64> {
    for flag in CUSTOM_BLOCK_FLAGS {
        if truthy(m, flag) {
            return Err(CheckpointError::Unsupported(format!(
                "`{what}.{flag}` (custom attention block)"
            )));
        }
    }
    if let Some(bt) = get_str(m, "block_type") {
        if bt != "default" {
            return Err(CheckpointError::Unsupported(format!(
                "`{what}.block_type` = \"{bt}\""
            )));
        }
    }
    if truthy(m, "act_kwargs") {
        return Err(CheckpointError::Unsupported(format!("`{what}.act_kwargs`")));
    }
    let mut eps = DEFAULT_LAYER_NORM_EPS;
    if let Some(nk) = m.get("norm_kwargs").filter(|v| !v.is_null()) {
        let nk = obj(nk, &format!("{what}.norm_kwargs"))?;
        for (k, _) in nk.iter() {
            if k != "eps" {
                return Err(CheckpointError::Unsupported(format!(
                    "`{what}.norm_kwargs.{k}`"
                )));
            }
        }
        eps = get_f64(nk, "eps", DEFAULT_LAYER_NORM_EPS, what)?;
    }
    Ok(eps)
}

fn heads_from(width: usize, m: &Map<String, Value>, what: &str) -> Result<usize> {
    let head_width = get_usize(m, "head_width", Some(64), what)?;
    if head_width == 0 || !width.is_multiple_of(head_width) {
        return Err(CheckpointError::InvalidConfig(format!(
            "`{what}.width` {width} is not a multiple of head_width {head_width}"
        )));
    }
    Ok(width / head_width)
}

fn act_name_hf(a: Activation) -> &'static str {
    match a {
        Activation::QuickGelu => "quick_gelu",
        Activation::Gelu => "gelu",
    }
}

fn act_from_hf(s: &str, what: &str) -> Result<Activation> {
    match s {
        "quick_gelu" => Ok(Activation::QuickGelu),
        "gelu" => Ok(Activation::Gelu),
        other => Err(CheckpointError::Unsupported(format!(
            "`{what}.hidden_act` = \"{other}\""
        ))),
    }
}

impl ClipConfig {
    /// Parses an open_clip model config (`{embed_dim, vision_cfg, text_cfg, quick_gelu}`), or an
    /// `open_clip_config.json` wrapper `{model_cfg, preprocess_cfg}`.
    pub fn from_open_clip_json(v: &Value) -> Result<Self> {
        let root = obj(v, "open_clip config")?;
        let m = match root.get("model_cfg") {
            Some(inner) => obj(inner, "model_cfg")?,
            None => root,
        };
        if m.contains_key("init_logit_bias") && !m["init_logit_bias"].is_null() {
            return Err(CheckpointError::Unsupported(
                "`init_logit_bias` (SigLIP models)".into(),
            ));
        }
        let embed_dim = get_usize(m, "embed_dim", None, "model_cfg")?;
        let quick_gelu = get_bool(m, "quick_gelu", false);
        let activation = if quick_gelu {
            Activation::QuickGelu
        } else {
            Activation::Gelu
        };
        let logit_scale_init =
            get_f64(m, "init_logit_scale", DEFAULT_LOGIT_SCALE_INIT, "model_cfg")?;

        // Vision tower.
        let empty = Map::new();
        let vm = match m.get("vision_cfg") {
            Some(x) => obj(x, "vision_cfg")?,
            None => &empty,
        };
        let w = "vision_cfg";
        if truthy(vm, "timm_model_name") {
            return Err(CheckpointError::Unsupported(format!(
                "`vision_cfg.timm_model_name` = {} (timm vision towers)",
                vm["timm_model_name"]
            )));
        }
        if truthy(vm, "attentional_pool") {
            return Err(CheckpointError::Unsupported(
                "`vision_cfg.attentional_pool`".into(),
            ));
        }
        if matches!(vm.get("layers"), Some(Value::Array(_))) {
            return Err(CheckpointError::Unsupported(
                "ModifiedResNet vision tower (`vision_cfg.layers` is a list)".into(),
            ));
        }
        if let Some(p) = get_str(vm, "pos_embed_type") {
            // sin_cos_2d embeddings are stored in the state dict like learnable ones.
            if p != "learnable" && p != "sin_cos_2d" {
                return Err(CheckpointError::Unsupported(format!(
                    "`vision_cfg.pos_embed_type` = \"{p}\""
                )));
            }
        }
        let v_eps = check_common_tower(vm, w)?;
        let v_width = get_usize(vm, "width", Some(768), w)?;
        let pool = match get_str(vm, "pool_type").unwrap_or("tok") {
            "tok" => VisionPool::Tok,
            "avg" => VisionPool::Avg,
            other => {
                return Err(CheckpointError::Unsupported(format!(
                    "`vision_cfg.pool_type` = \"{other}\""
                )))
            }
        };
        let vision = VisionConfig {
            image_size: get_usize(vm, "image_size", Some(224), w)?,
            patch_size: get_usize(vm, "patch_size", Some(16), w)?,
            width: v_width,
            layers: get_usize(vm, "layers", Some(12), w)?,
            heads: heads_from(v_width, vm, w)?,
            mlp_ratio: get_f64(vm, "mlp_ratio", 4.0, w)?,
            activation,
            ls_init_value: get_opt_f64(vm, "ls_init_value", w)?,
            no_ln_pre: get_bool(vm, "no_ln_pre", false),
            pool,
            final_ln_after_pool: get_bool(vm, "final_ln_after_pool", false),
            layer_norm_eps: v_eps,
        };

        // Text tower.
        let tm = match m.get("text_cfg") {
            Some(x) => obj(x, "text_cfg")?,
            None => &empty,
        };
        let w = "text_cfg";
        if truthy(tm, "hf_model_name") {
            return Err(CheckpointError::Unsupported(format!(
                "`text_cfg.hf_model_name` = {} (Hugging Face text towers)",
                tm["hf_model_name"]
            )));
        }
        if get_bool(tm, "embed_cls", false) {
            return Err(CheckpointError::Unsupported(
                "`text_cfg.embed_cls` (CoCa text tower)".into(),
            ));
        }
        if get_str(tm, "proj_type").is_some_and(|p| p != "linear") {
            return Err(CheckpointError::Unsupported(format!(
                "`text_cfg.proj_type` = {}",
                tm["proj_type"]
            )));
        }
        let t_eps = check_common_tower(tm, w)?;
        let pool = match get_str(tm, "pool_type").unwrap_or("argmax") {
            "argmax" => TextPool::Argmax,
            "first" => TextPool::First,
            "last" => TextPool::Last,
            "eos" => TextPool::Eos,
            other => {
                return Err(CheckpointError::Unsupported(format!(
                    "`text_cfg.pool_type` = \"{other}\""
                )))
            }
        };
        let vocab_size = get_usize(tm, "vocab_size", Some(49408), w)?;
        let default_eos = if pool == TextPool::Eos {
            2
        } else {
            vocab_size.saturating_sub(1)
        };
        let text = TextConfig {
            context_length: get_usize(tm, "context_length", Some(77), w)?,
            vocab_size,
            width: get_usize(tm, "width", Some(512), w)?,
            layers: get_usize(tm, "layers", Some(12), w)?,
            heads: get_usize(tm, "heads", Some(8), w)?,
            mlp_ratio: get_f64(tm, "mlp_ratio", 4.0, w)?,
            activation,
            ls_init_value: get_opt_f64(tm, "ls_init_value", w)?,
            pool,
            eos_token_id: get_usize(tm, "eos_id", Some(default_eos), w)? as u32,
            bos_token_id: vocab_size.saturating_sub(2) as u32,
            pad_token_id: get_usize(tm, "pad_id", Some(0), w)? as u32,
            causal: !get_bool(tm, "no_causal_mask", false),
            proj_bias: get_bool(tm, "proj_bias", false),
            layer_norm_eps: t_eps,
        };
        let cfg = ClipConfig {
            embed_dim,
            vision,
            text,
            logit_scale_init,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a Hugging Face `CLIPModel` `config.json`.
    pub fn from_hf_json(v: &Value) -> Result<Self> {
        let m = obj(v, "config.json")?;
        if let Some(mt) = get_str(m, "model_type") {
            if mt != "clip" {
                return Err(CheckpointError::Unsupported(format!(
                    "Hugging Face model_type \"{mt}\" (only \"clip\" is supported)"
                )));
            }
        }
        let empty = Map::new();
        let tm = match m.get("text_config") {
            Some(x) if !x.is_null() => obj(x, "text_config")?,
            _ => &empty,
        };
        let vm = match m.get("vision_config") {
            Some(x) if !x.is_null() => obj(x, "vision_config")?,
            _ => &empty,
        };
        let embed_dim = get_usize(m, "projection_dim", Some(512), "config")?;
        let logit_scale_init = get_f64(m, "logit_scale_init_value", 2.6592, "config")?;

        let w = "vision_config";
        let channels = get_usize(vm, "num_channels", Some(3), w)?;
        if channels != 3 {
            return Err(CheckpointError::Unsupported(format!(
                "`vision_config.num_channels` = {channels}"
            )));
        }
        let v_width = get_usize(vm, "hidden_size", Some(768), w)?;
        let v_inter = get_usize(vm, "intermediate_size", Some(3072), w)?;
        let vision = VisionConfig {
            image_size: get_usize(vm, "image_size", Some(224), w)?,
            patch_size: get_usize(vm, "patch_size", Some(32), w)?,
            width: v_width,
            layers: get_usize(vm, "num_hidden_layers", Some(12), w)?,
            heads: get_usize(vm, "num_attention_heads", Some(12), w)?,
            mlp_ratio: v_inter as f64 / v_width.max(1) as f64,
            activation: act_from_hf(get_str(vm, "hidden_act").unwrap_or("quick_gelu"), w)?,
            ls_init_value: None,
            no_ln_pre: false,
            pool: VisionPool::Tok,
            final_ln_after_pool: false,
            layer_norm_eps: get_f64(vm, "layer_norm_eps", DEFAULT_LAYER_NORM_EPS, w)?,
        };

        let w = "text_config";
        let t_width = get_usize(tm, "hidden_size", Some(512), w)?;
        let t_inter = get_usize(tm, "intermediate_size", Some(2048), w)?;
        let eos = get_usize(tm, "eos_token_id", Some(49407), w)? as u32;
        let text = TextConfig {
            context_length: get_usize(tm, "max_position_embeddings", Some(77), w)?,
            vocab_size: get_usize(tm, "vocab_size", Some(49408), w)?,
            width: t_width,
            layers: get_usize(tm, "num_hidden_layers", Some(12), w)?,
            heads: get_usize(tm, "num_attention_heads", Some(8), w)?,
            mlp_ratio: t_inter as f64 / t_width.max(1) as f64,
            activation: act_from_hf(get_str(tm, "hidden_act").unwrap_or("quick_gelu"), w)?,
            ls_init_value: None,
            // transformers keeps argmax pooling for legacy configs whose eos id is 2.
            pool: if eos == 2 {
                TextPool::Argmax
            } else {
                TextPool::Eos
            },
            eos_token_id: eos,
            bos_token_id: get_usize(tm, "bos_token_id", Some(49406), w)? as u32,
            pad_token_id: get_usize(tm, "pad_token_id", Some(1), w)? as u32,
            causal: true,
            proj_bias: false,
            layer_norm_eps: get_f64(tm, "layer_norm_eps", DEFAULT_LAYER_NORM_EPS, w)?,
        };
        let cfg = ClipConfig {
            embed_dim,
            vision,
            text,
            logit_scale_init,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks internal consistency (divisibility, non-zero sizes).
    pub fn validate(&self) -> Result<()> {
        let v = &self.vision;
        let t = &self.text;
        let bad = |msg: String| Err(CheckpointError::InvalidConfig(msg));
        if self.embed_dim == 0 {
            return bad("embed_dim must be > 0".into());
        }
        if v.patch_size == 0 || v.image_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return bad(format!(
                "vision image_size {} must be a positive multiple of patch_size {}",
                v.image_size, v.patch_size
            ));
        }
        for (name, width, heads) in [("vision", v.width, v.heads), ("text", t.width, t.heads)] {
            if width == 0 || heads == 0 || width % heads != 0 {
                return bad(format!(
                    "{name} width {width} is not divisible by heads {heads}"
                ));
            }
        }
        if v.mlp_width() == 0 || t.mlp_width() == 0 {
            return bad("mlp width must be > 0".into());
        }
        if t.context_length == 0 || t.vocab_size == 0 {
            return bad("text context_length and vocab_size must be > 0".into());
        }
        Ok(())
    }

    /// The open_clip `model_cfg` object (what `open_clip.create_model` takes).
    pub fn to_open_clip_json(&self) -> Result<Value> {
        let v = &self.vision;
        let t = &self.text;
        if v.activation != t.activation {
            return Err(CheckpointError::Unsupported(
                "open_clip configs have one activation for both towers; these differ".into(),
            ));
        }
        let mut vision = json!({
            "image_size": v.image_size,
            "layers": v.layers,
            "width": v.width,
            "head_width": v.head_dim(),
            "mlp_ratio": v.mlp_ratio,
            "patch_size": v.patch_size,
        });
        let vo = vision.as_object_mut().expect("literal object");
        if let Some(ls) = v.ls_init_value {
            vo.insert("ls_init_value".into(), json!(ls));
        }
        if v.no_ln_pre {
            vo.insert("no_ln_pre".into(), json!(true));
        }
        if v.pool == VisionPool::Avg {
            vo.insert("pool_type".into(), json!("avg"));
        }
        if v.final_ln_after_pool {
            vo.insert("final_ln_after_pool".into(), json!(true));
        }
        if v.layer_norm_eps != DEFAULT_LAYER_NORM_EPS {
            vo.insert("norm_kwargs".into(), json!({"eps": v.layer_norm_eps}));
        }
        let mut text = json!({
            "context_length": t.context_length,
            "vocab_size": t.vocab_size,
            "width": t.width,
            "heads": t.heads,
            "layers": t.layers,
            "mlp_ratio": t.mlp_ratio,
        });
        let to = text.as_object_mut().expect("literal object");
        if let Some(ls) = t.ls_init_value {
            to.insert("ls_init_value".into(), json!(ls));
        }
        let pool = match t.pool {
            TextPool::Argmax => "argmax",
            TextPool::First => "first",
            TextPool::Last => "last",
            // First-EOS equals argmax when EOS is the largest possible id.
            TextPool::Eos if t.eos_token_id as usize + 1 == t.vocab_size => "argmax",
            TextPool::Eos => "eos",
        };
        if pool != "argmax" {
            to.insert("pool_type".into(), json!(pool));
        }
        if pool == "eos" {
            to.insert("eos_id".into(), json!(t.eos_token_id));
        }
        if !t.causal {
            to.insert("no_causal_mask".into(), json!(true));
        }
        if t.proj_bias {
            to.insert("proj_bias".into(), json!(true));
        }
        if t.layer_norm_eps != DEFAULT_LAYER_NORM_EPS {
            to.insert("norm_kwargs".into(), json!({"eps": t.layer_norm_eps}));
        }
        let mut out = json!({
            "embed_dim": self.embed_dim,
            "quick_gelu": v.activation == Activation::QuickGelu,
            "vision_cfg": vision,
            "text_cfg": text,
        });
        if (self.logit_scale_init - DEFAULT_LOGIT_SCALE_INIT).abs() > 1e-4 {
            out["init_logit_scale"] = json!(self.logit_scale_init);
        }
        Ok(out)
    }

    /// A Hugging Face `CLIPModel` `config.json`. Fails for features HF CLIP lacks
    /// (layer scale, no ln_pre, avg pooling, projection bias, non-causal text).
    pub fn to_hf_json(&self) -> Result<Value> {
        let v = &self.vision;
        let t = &self.text;
        let unsupported = |what: &str| {
            Err(CheckpointError::Unsupported(format!(
                "{what} cannot be expressed in a Hugging Face CLIP config"
            )))
        };
        if v.ls_init_value.is_some() || t.ls_init_value.is_some() {
            return unsupported("layer scale (ls_init_value)");
        }
        if v.no_ln_pre {
            return unsupported("no_ln_pre");
        }
        if v.pool != VisionPool::Tok {
            return unsupported("vision pool_type avg");
        }
        if t.proj_bias {
            return unsupported("text proj_bias");
        }
        if !t.causal {
            return unsupported("non-causal text tower");
        }
        // HF pools at the first EOS (or argmax when eos id is 2); other rules do not map.
        let eos = match t.pool {
            TextPool::Eos => t.eos_token_id,
            TextPool::Argmax if t.eos_token_id as usize + 1 == t.vocab_size => t.eos_token_id,
            TextPool::Argmax => 2,
            TextPool::First | TextPool::Last => return unsupported("text pool_type first/last"),
        };
        Ok(json!({
            "architectures": ["CLIPModel"],
            "model_type": "clip",
            "projection_dim": self.embed_dim,
            "logit_scale_init_value": self.logit_scale_init,
            "initializer_factor": 1.0,
            "text_config": {
                "model_type": "clip_text_model",
                "vocab_size": t.vocab_size,
                "hidden_size": t.width,
                "intermediate_size": t.mlp_width(),
                "projection_dim": self.embed_dim,
                "num_hidden_layers": t.layers,
                "num_attention_heads": t.heads,
                "max_position_embeddings": t.context_length,
                "hidden_act": act_name_hf(t.activation),
                "layer_norm_eps": t.layer_norm_eps,
                "bos_token_id": t.bos_token_id,
                "eos_token_id": eos,
                "pad_token_id": t.pad_token_id,
            },
            "vision_config": {
                "model_type": "clip_vision_model",
                "hidden_size": v.width,
                "intermediate_size": v.mlp_width(),
                "projection_dim": self.embed_dim,
                "num_hidden_layers": v.layers,
                "num_attention_heads": v.heads,
                "num_channels": 3,
                "image_size": v.image_size,
                "patch_size": v.patch_size,
                "hidden_act": act_name_hf(v.activation),
                "layer_norm_eps": v.layer_norm_eps,
            },
        }))
    }
}

/// The position a text row is pooled at (mirrors open_clip / transformers).
pub fn pool_position(row: &[u32], pool: TextPool, eos: u32) -> usize {
    match pool {
        TextPool::First => 0,
        TextPool::Last => row.len().saturating_sub(1),
        // First maximal id, as torch.argmax returns.
        TextPool::Argmax => {
            row.iter()
                .enumerate()
                .fold((0usize, 0u32), |(bi, bv), (i, &v)| {
                    if v > bv || i == 0 {
                        (i, v)
                    } else {
                        (bi, bv)
                    }
                })
                .0
        }
        TextPool::Eos => row.iter().position(|&x| x == eos).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_clip_json_round_trip_keeps_knobs() {
        let v = json!({
            "embed_dim": 20, "quick_gelu": true,
            "vision_cfg": {"image_size": 48, "patch_size": 12, "width": 36, "head_width": 12,
                "layers": 2, "mlp_ratio": 3.0, "ls_init_value": 0.5, "no_ln_pre": true,
                "pool_type": "avg", "final_ln_after_pool": true, "norm_kwargs": {"eps": 1e-6}},
            "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 24, "heads": 3,
                "layers": 3, "proj_bias": true, "pool_type": "last"}
        });
        let c = ClipConfig::from_open_clip_json(&v).unwrap();
        assert_eq!(c.vision.heads, 3);
        assert_eq!(c.vision.layer_norm_eps, 1e-6);
        assert_eq!(c.text.pool, TextPool::Last);
        let back = ClipConfig::from_open_clip_json(&c.to_open_clip_json().unwrap()).unwrap();
        assert_eq!(back, c);
        // The wrapper form of open_clip_config.json is accepted too.
        let wrapped = json!({"model_cfg": v, "preprocess_cfg": {}});
        assert_eq!(ClipConfig::from_open_clip_json(&wrapped).unwrap(), c);
    }

    #[test]
    fn hf_json_round_trip_and_legacy_eos() {
        let c = ClipConfig::from_hf_json(&json!({"model_type": "clip"})).unwrap();
        assert_eq!(
            (c.embed_dim, c.vision.patch_size, c.vision.heads),
            (512, 32, 12)
        );
        assert_eq!(c.text.pool, TextPool::Eos);
        assert_eq!(c.text.eos_token_id, 49407);
        assert_eq!(
            ClipConfig::from_hf_json(&c.to_hf_json().unwrap()).unwrap(),
            c
        );
        let legacy =
            ClipConfig::from_hf_json(&json!({"text_config": {"eos_token_id": 2}})).unwrap();
        assert_eq!(legacy.text.pool, TextPool::Argmax);
        let e = ClipConfig::from_hf_json(&json!({"model_type": "siglip"})).unwrap_err();
        assert!(e.to_string().contains("siglip"));
    }

    #[test]
    fn open_clip_to_hf_pooling_is_equivalent() {
        let c = crate::arch::by_name("ViT-B-32-quickgelu").unwrap();
        let hf = c.to_hf_json().unwrap();
        assert_eq!(hf["text_config"]["eos_token_id"], 49407);
        assert_eq!(hf["vision_config"]["hidden_act"], "quick_gelu");
        assert_eq!(hf["vision_config"]["intermediate_size"], 3072);
    }
}
