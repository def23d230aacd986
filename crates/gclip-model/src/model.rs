//! The CLIP towers on candle. Written only from differentiable primitives (no fused layer-norm
//! or softmax kernels, which carry no gradient in candle 0.11) so the trainer can backprop.

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};

use gclip_checkpoint::keys::{self, BlockKeys, Tower};
use gclip_checkpoint::{
    expected_shapes, pool_position, Activation, ClipConfig, Layout, LoadOptions, VisionPool,
};

use crate::error::{CandleExt, ModelError, Result};
use crate::weights::{load_weights, Weights};

/// Tower internals work in candle's result; public methods convert at the boundary.
type CResult<T> = candle_core::Result<T>;

/// Layer norm over the last dimension: (x - mean) / sqrt(var + eps) * w + b.
#[derive(Debug, Clone)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn new(vb: &VarBuilder, weight: &str, bias: &str, width: usize, eps: f64) -> CResult<Self> {
        Ok(Self {
            weight: vb.get(width, weight)?,
            bias: vb.get(width, bias)?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let inv_std = (var + self.eps)?.sqrt()?.recip()?;
        xc.broadcast_mul(&inv_std)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Softmax over the last dimension. The max is detached: softmax is shift-invariant, so the
/// gradient is unchanged and the backward pass skips the max reduction.
fn softmax_last_dim(x: &Tensor) -> CResult<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&sum)
}

fn activate(x: &Tensor, act: Activation) -> CResult<Tensor> {
    Ok(match act {
        Activation::QuickGelu => (x * candle_nn::ops::sigmoid(&(x * 1.702)?)?)?,
        // candle's erf GELU has a backward in 0.11.
        Activation::Gelu => x.gelu_erf()?,
    })
}

fn linear(
    vb: &VarBuilder,
    weight: &str,
    bias: &str,
    in_dim: usize,
    out_dim: usize,
) -> CResult<Linear> {
    Ok(Linear::new(
        vb.get((out_dim, in_dim), weight)?,
        Some(vb.get(out_dim, bias)?),
    ))
}

#[derive(Debug, Clone)]
struct Attention {
    in_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl Attention {
    fn new(vb: &VarBuilder, k: &BlockKeys, width: usize, heads: usize) -> CResult<Self> {
        let in_proj = Linear::new(
            vb.get((3 * width, width), &k.in_proj_weight)?,
            Some(vb.get(3 * width, &k.in_proj_bias)?),
        );
        Ok(Self {
            in_proj,
            out_proj: linear(vb, &k.out_proj_weight, &k.out_proj_bias, width, width)?,
            heads,
        })
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> CResult<Tensor> {
        let (b, l, w) = x.dims3()?;
        let hd = w / self.heads;
        let qkv = self.in_proj.forward(x)?;
        let split = |i: usize| -> CResult<Tensor> {
            qkv.narrow(2, i * w, w)?
                .reshape((b, l, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = (split(0)? * (hd as f64).powf(-0.5))?;
        let k = split(1)?;
        let v = split(2)?;
        let mut att = q.matmul(&k.t()?)?;
        if let Some(m) = mask {
            att = att.broadcast_add(m)?;
        }
        let att = softmax_last_dim(&att)?;
        let o = att.matmul(&v)?.transpose(1, 2)?.reshape((b, l, w))?;
        self.out_proj.forward(&o)
    }
}

#[derive(Debug, Clone)]
struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    c_fc: Linear,
    c_proj: Linear,
    ls: Option<(Tensor, Tensor)>,
    act: Activation,
}

impl Block {
    /// Block `index` of `tower`, with the sizes of that tower in `cfg`.
    fn new(vb: &VarBuilder, cfg: &ClipConfig, tower: Tower, index: usize) -> CResult<Self> {
        let (width, heads, mlp, layer_scale, act, eps) = match tower {
            Tower::Vision => {
                let v = &cfg.vision;
                let ls = v.ls_init_value.is_some();
                (
                    v.width,
                    v.heads,
                    v.mlp_width(),
                    ls,
                    v.activation,
                    v.layer_norm_eps,
                )
            }
            Tower::Text => {
                let t = &cfg.text;
                let ls = t.ls_init_value.is_some();
                (
                    t.width,
                    t.heads,
                    t.mlp_width(),
                    ls,
                    t.activation,
                    t.layer_norm_eps,
                )
            }
        };
        let k = keys::block(tower, index);
        let ls = if layer_scale {
            Some((vb.get(width, &k.ls_1)?, vb.get(width, &k.ls_2)?))
        } else {
            None
        };
        Ok(Self {
            ln_1: LayerNorm::new(vb, &k.ln_1_weight, &k.ln_1_bias, width, eps)?,
            attn: Attention::new(vb, &k, width, heads)?,
            ln_2: LayerNorm::new(vb, &k.ln_2_weight, &k.ln_2_bias, width, eps)?,
            c_fc: linear(vb, &k.c_fc_weight, &k.c_fc_bias, width, mlp)?,
            c_proj: linear(vb, &k.c_proj_weight, &k.c_proj_bias, mlp, width)?,
            ls,
            act,
        })
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> CResult<Tensor> {
        let mut a = self.attn.forward(&self.ln_1.forward(x)?, mask)?;
        if let Some((g1, _)) = &self.ls {
            a = a.broadcast_mul(g1)?;
        }
        let x = (x + a)?;
        let h = activate(&self.c_fc.forward(&self.ln_2.forward(&x)?)?, self.act)?;
        let mut m = self.c_proj.forward(&h)?;
        if let Some((_, g2)) = &self.ls {
            m = m.broadcast_mul(g2)?;
        }
        x + m
    }
}

#[derive(Debug, Clone)]
struct VisionTower {
    patch_weight: Tensor, // conv1 weight flattened to [width, 3 * p * p]
    class_embedding: Tensor,
    positional_embedding: Tensor,
    ln_pre: Option<LayerNorm>,
    blocks: Vec<Block>,
    ln_post: LayerNorm,
    proj: Tensor,
}

#[derive(Debug, Clone)]
struct TextTower {
    token_embedding: Tensor,
    positional_embedding: Tensor,
    blocks: Vec<Block>,
    ln_final: LayerNorm,
    proj: TextProj,
}

#[derive(Debug, Clone)]
enum TextProj {
    Matrix(Tensor),
    Linear(Linear),
}

/// A CLIP model: ViT image tower, causal text tower, projections and `logit_scale`.
#[derive(Debug, Clone)]
pub struct ClipModel {
    cfg: ClipConfig,
    vision: VisionTower,
    text: TextTower,
    logit_scale: Tensor,
    device: Device,
    dtype: DType,
    weights: Weights,
}

impl ClipModel {
    /// Builds the model from a `VarBuilder` holding canonical (open_clip) names, e.g. over
    /// [`Weights::var_builder`] or a `VarMap` for training (fill it first, e.g. with
    /// [`Weights::to_var_map`]: variables missing from a `VarMap` would be created with
    /// candle's default init). Shapes come from `cfg`; dtype and device from `vb`.
    pub fn new(cfg: ClipConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        Self::build(cfg, vb).c()
    }

    fn build(cfg: ClipConfig, vb: VarBuilder) -> CResult<Self> {
        let v = &cfg.vision;
        let t = &cfg.text;
        let conv = vb.get((v.width, 3, v.patch_size, v.patch_size), keys::VISUAL_CONV1)?;
        let vision = VisionTower {
            patch_weight: conv.reshape((v.width, 3 * v.patch_size * v.patch_size))?,
            class_embedding: vb.get(v.width, keys::VISUAL_CLASS_EMBEDDING)?,
            positional_embedding: vb.get(
                (v.num_positions(), v.width),
                keys::VISUAL_POSITIONAL_EMBEDDING,
            )?,
            ln_pre: if v.no_ln_pre {
                None
            } else {
                Some(LayerNorm::new(
                    &vb,
                    keys::VISUAL_LN_PRE_WEIGHT,
                    keys::VISUAL_LN_PRE_BIAS,
                    v.width,
                    v.layer_norm_eps,
                )?)
            },
            blocks: (0..v.layers)
                .map(|i| Block::new(&vb, &cfg, Tower::Vision, i))
                .collect::<CResult<_>>()?,
            ln_post: LayerNorm::new(
                &vb,
                keys::VISUAL_LN_POST_WEIGHT,
                keys::VISUAL_LN_POST_BIAS,
                v.width,
                v.layer_norm_eps,
            )?,
            proj: vb.get((v.width, cfg.embed_dim), keys::VISUAL_PROJ)?,
        };
        let proj = if t.proj_bias {
            TextProj::Linear(linear(
                &vb,
                keys::TEXT_PROJECTION_WEIGHT,
                keys::TEXT_PROJECTION_BIAS,
                t.width,
                cfg.embed_dim,
            )?)
        } else {
            TextProj::Matrix(vb.get((t.width, cfg.embed_dim), keys::TEXT_PROJECTION)?)
        };
        let text = TextTower {
            token_embedding: vb.get((t.vocab_size, t.width), keys::TOKEN_EMBEDDING)?,
            positional_embedding: vb
                .get((t.context_length, t.width), keys::POSITIONAL_EMBEDDING)?,
            blocks: (0..t.layers)
                .map(|i| Block::new(&vb, &cfg, Tower::Text, i))
                .collect::<CResult<_>>()?,
            ln_final: LayerNorm::new(
                &vb,
                keys::LN_FINAL_WEIGHT,
                keys::LN_FINAL_BIAS,
                t.width,
                t.layer_norm_eps,
            )?,
            proj,
        };
        let logit_scale = vb.get((), keys::LOGIT_SCALE)?;
        // Keep handles to the very tensors used (shared storage), so saving reflects training.
        let mut weights = Weights::new();
        for (key, shape) in expected_shapes(&cfg) {
            weights.insert(key.clone(), vb.get(shape, &key)?);
        }
        Ok(Self {
            device: vb.device().clone(),
            dtype: vb.dtype(),
            cfg,
            vision,
            text,
            logit_scale,
            weights,
        })
    }

    /// Loads a checkpoint (see [`load_weights`] for the layouts) onto the CPU in f32.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self> {
        let lw = load_weights(path, opts)?;
        Self::from_weights(lw.config, &lw.weights, &Device::Cpu)
    }

    /// Builds the model from canonical weights on `device` (f32). Checks keys and shapes first.
    pub fn from_weights(cfg: ClipConfig, weights: &Weights, device: &Device) -> Result<Self> {
        weights.check(&cfg)?;
        Self::new(cfg, weights.var_builder(DType::F32, device))
    }

    /// The model config.
    pub fn config(&self) -> &ClipConfig {
        &self.cfg
    }

    /// Device the parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The parameters, in canonical naming (shared with the model, not copies).
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The learned log logit scale (0-d tensor; part of the graph for training).
    pub fn logit_scale(&self) -> &Tensor {
        &self.logit_scale
    }

    /// `exp(logit_scale)`: the factor applied to cosine similarities.
    pub fn logit_scale_exp(&self) -> Result<f32> {
        self.logit_scale
            .to_dtype(DType::F32)
            .and_then(|t| t.exp())
            .and_then(|t| t.to_scalar::<f32>())
            .c()
    }

    /// Saves the parameters in `layout` as f32 (see [`crate::save`]).
    pub fn save(
        &self,
        dir: &Path,
        layout: Layout,
        preprocess: Option<&serde_json::Value>,
    ) -> Result<()> {
        crate::weights::save(&self.weights, &self.cfg, dir, layout, preprocess)
    }

    /// Image embeddings (not normalised) of `pixels` `[N, 3, S, S]` (S = `image_size`),
    /// already preprocessed (resized, normalised). Returns `[N, embed_dim]`.
    pub fn encode_images(&self, pixels: &Tensor) -> Result<Tensor> {
        let v = &self.cfg.vision;
        let dims = pixels.dims();
        if dims.len() != 4 || dims[1] != 3 || dims[2] != v.image_size || dims[3] != v.image_size {
            return Err(ModelError::InvalidInput(format!(
                "pixels must be [N, 3, {s}, {s}], got {dims:?}",
                s = v.image_size
            )));
        }
        self.vision_forward(pixels).c()
    }

    fn vision_forward(&self, pixels: &Tensor) -> CResult<Tensor> {
        let v = &self.cfg.vision;
        let n = pixels.dims()[0];
        let (p, g, w) = (v.patch_size, v.grid(), v.width);
        let x = pixels.to_device(&self.device)?.to_dtype(self.dtype)?;
        // Patch embedding as a matmul over flattened patches (same as the stride-p conv).
        let patches = x
            .reshape((n, 3, g, p, g, p))?
            .permute(vec![0, 2, 4, 1, 3, 5])?
            .reshape((n, g * g, 3 * p * p))?;
        let x = patches.broadcast_matmul(&self.vision.patch_weight.t()?)?;
        let cls = self
            .vision
            .class_embedding
            .reshape((1, 1, w))?
            .broadcast_as((n, 1, w))?;
        let mut x =
            Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&self.vision.positional_embedding)?;
        if let Some(ln) = &self.vision.ln_pre {
            x = ln.forward(&x)?;
        }
        for b in &self.vision.blocks {
            x = b.forward(&x, None)?;
        }
        let pooled = match v.pool {
            // Layer norm is per token, so normalising only the class token is identical.
            VisionPool::Tok => self.vision.ln_post.forward(&x.i((.., 0))?)?,
            VisionPool::Avg if v.final_ln_after_pool => self
                .vision
                .ln_post
                .forward(&x.narrow(1, 1, g * g)?.mean(1)?)?,
            VisionPool::Avg => self
                .vision
                .ln_post
                .forward(&x.narrow(1, 1, g * g)?)?
                .mean(1)?,
        };
        pooled.matmul(&self.vision.proj)
    }

    /// Text embeddings (not normalised) of token ids `[N, L]` (u32, or any integer dtype),
    /// `L <= context_length`. Returns `[N, embed_dim]`.
    pub fn encode_texts(&self, ids: &Tensor) -> Result<Tensor> {
        let t = &self.cfg.text;
        let (n, l) = ids.dims2().map_err(|_| {
            ModelError::InvalidInput(format!("token ids must be [N, L], got {:?}", ids.dims()))
        })?;
        if l == 0 || l > t.context_length {
            return Err(ModelError::InvalidInput(format!(
                "token sequence length {l} must be in 1..={}",
                t.context_length
            )));
        }
        let host: Vec<Vec<u32>> = ids
            .to_device(&Device::Cpu)
            .and_then(|t| t.to_dtype(DType::U32))
            .and_then(|t| t.to_vec2())
            .c()?;
        if let Some(bad) = host.iter().flatten().find(|&&x| x as usize >= t.vocab_size) {
            return Err(ModelError::InvalidInput(format!(
                "token id {bad} out of range for vocab_size {}",
                t.vocab_size
            )));
        }
        let pos: Vec<usize> = host
            .iter()
            .map(|row| pool_position(row, t.pool, t.eos_token_id))
            .collect();
        self.text_forward(&host, &pos, n, l).c()
    }

    fn text_forward(
        &self,
        host: &[Vec<u32>],
        pos: &[usize],
        n: usize,
        l: usize,
    ) -> CResult<Tensor> {
        let t = &self.cfg.text;
        // With a causal mask, the pooled state never depends on later tokens, so the
        // sequence can stop after the furthest pooled position.
        let len = if t.causal {
            pos.iter().max().map_or(l, |m| m + 1)
        } else {
            l
        };
        let flat: Vec<u32> = host.iter().flat_map(|r| r[..len].iter().copied()).collect();
        let flat = Tensor::from_vec(flat, n * len, &self.device)?;
        let w = t.width;
        let x = self
            .text
            .token_embedding
            .index_select(&flat, 0)?
            .reshape((n, len, w))?;
        let mut x = x.broadcast_add(&self.text.positional_embedding.narrow(0, 0, len)?)?;
        let mask = if t.causal {
            Some(causal_mask(len, &self.device, self.dtype)?)
        } else {
            None
        };
        for b in &self.text.blocks {
            x = b.forward(&x, mask.as_ref())?;
        }
        let rows: Vec<u32> = pos
            .iter()
            .enumerate()
            .map(|(i, &p)| (i * len + p) as u32)
            .collect();
        let rows = Tensor::from_vec(rows, n, &self.device)?;
        let pooled = x.reshape((n * len, w))?.index_select(&rows, 0)?;
        let pooled = self.text.ln_final.forward(&pooled)?;
        Ok(match &self.text.proj {
            TextProj::Matrix(m) => pooled.matmul(m)?,
            TextProj::Linear(lin) => lin.forward(&pooled)?,
        })
    }

    /// L2-normalised image embeddings.
    pub fn encode_images_normalized(&self, pixels: &Tensor) -> Result<Tensor> {
        l2_normalize(&self.encode_images(pixels)?)
    }

    /// L2-normalised text embeddings.
    pub fn encode_texts_normalized(&self, ids: &Tensor) -> Result<Tensor> {
        l2_normalize(&self.encode_texts(ids)?)
    }
}

/// Row-wise L2 normalisation `x / max(||x||, 1e-12)` of a `[N, D]` tensor (differentiable).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()
        .and_then(|s| s.sum_keepdim(D::Minus1))
        .and_then(|s| s.sqrt())
        .and_then(|s| s.maximum(1e-12))
        .c()?;
    x.broadcast_div(&norm).c()
}

/// Additive causal mask `[len, len]`: 0 on and below the diagonal, -inf above.
fn causal_mask(len: usize, device: &Device, dtype: DType) -> CResult<Tensor> {
    let data: Vec<f32> = (0..len)
        .flat_map(|i| (0..len).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(data, (len, len), device)?.to_dtype(dtype)
}
