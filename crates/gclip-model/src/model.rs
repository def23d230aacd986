//! The CLIP towers on candle. Written only from differentiable primitives (no fused layer-norm
//! or softmax kernels, which carry no gradient in candle 0.11) so the trainer can backprop.

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};

use crate::config::{Activation, ClipConfig, TextPool, VisionPool};
use crate::error::{ModelError, Result};
use crate::load::{load_weights, Layout, LoadOptions};
use crate::weights::{expected_shapes, Weights};

/// Layer norm over the last dimension: (x - mean) / sqrt(var + eps) * w + b.
#[derive(Debug, Clone)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn new(width: usize, eps: f64, vb: &VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(width, "weight")?,
            bias: vb.get(width, "bias")?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let inv_std = (var + self.eps)?.sqrt()?.recip()?;
        Ok(xc
            .broadcast_mul(&inv_std)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)?)
    }
}

/// Softmax over the last dimension. The max is detached: softmax is shift-invariant, so the
/// gradient is unchanged and the backward pass skips the max reduction.
fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&sum)?)
}

fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(match act {
        Activation::QuickGelu => (x * candle_nn::ops::sigmoid(&(x * 1.702)?)?)?,
        // candle's erf GELU has a backward in 0.11.
        Activation::Gelu => x.gelu_erf()?,
    })
}

fn linear(in_dim: usize, out_dim: usize, vb: &VarBuilder) -> Result<Linear> {
    Ok(Linear::new(
        vb.get((out_dim, in_dim), "weight")?,
        Some(vb.get(out_dim, "bias")?),
    ))
}

#[derive(Debug, Clone)]
struct Attention {
    in_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl Attention {
    fn new(width: usize, heads: usize, vb: &VarBuilder) -> Result<Self> {
        let in_proj = Linear::new(
            vb.get((3 * width, width), "in_proj_weight")?,
            Some(vb.get(3 * width, "in_proj_bias")?),
        );
        Ok(Self {
            in_proj,
            out_proj: linear(width, width, &vb.pp("out_proj"))?,
            heads,
        })
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, l, w) = x.dims3()?;
        let hd = w / self.heads;
        let qkv = self.in_proj.forward(x)?;
        let split = |i: usize| -> Result<Tensor> {
            Ok(qkv
                .narrow(2, i * w, w)?
                .reshape((b, l, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
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
        Ok(self.out_proj.forward(&o)?)
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
    #[allow(clippy::too_many_arguments)]
    fn new(
        width: usize,
        heads: usize,
        mlp: usize,
        layer_scale: bool,
        act: Activation,
        eps: f64,
        vb: &VarBuilder,
    ) -> Result<Self> {
        let ls = if layer_scale {
            Some((vb.get(width, "ls_1.gamma")?, vb.get(width, "ls_2.gamma")?))
        } else {
            None
        };
        Ok(Self {
            ln_1: LayerNorm::new(width, eps, &vb.pp("ln_1"))?,
            attn: Attention::new(width, heads, &vb.pp("attn"))?,
            ln_2: LayerNorm::new(width, eps, &vb.pp("ln_2"))?,
            c_fc: linear(width, mlp, &vb.pp("mlp.c_fc"))?,
            c_proj: linear(mlp, width, &vb.pp("mlp.c_proj"))?,
            ls,
            act,
        })
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
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
        Ok((x + m)?)
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
        let v = &cfg.vision;
        let t = &cfg.text;
        let vv = vb.pp("visual");
        let conv = vv.get((v.width, 3, v.patch_size, v.patch_size), "conv1.weight")?;
        let vision = VisionTower {
            patch_weight: conv.reshape((v.width, 3 * v.patch_size * v.patch_size))?,
            class_embedding: vv.get(v.width, "class_embedding")?,
            positional_embedding: vv.get((v.num_positions(), v.width), "positional_embedding")?,
            ln_pre: if v.no_ln_pre {
                None
            } else {
                Some(LayerNorm::new(v.width, v.layer_norm_eps, &vv.pp("ln_pre"))?)
            },
            blocks: (0..v.layers)
                .map(|i| {
                    Block::new(
                        v.width,
                        v.heads,
                        v.mlp_width(),
                        v.ls_init_value.is_some(),
                        v.activation,
                        v.layer_norm_eps,
                        &vv.pp(format!("transformer.resblocks.{i}")),
                    )
                })
                .collect::<Result<_>>()?,
            ln_post: LayerNorm::new(v.width, v.layer_norm_eps, &vv.pp("ln_post"))?,
            proj: vv.get((v.width, cfg.embed_dim), "proj")?,
        };
        let proj = if t.proj_bias {
            TextProj::Linear(linear(t.width, cfg.embed_dim, &vb.pp("text_projection"))?)
        } else {
            TextProj::Matrix(vb.get((t.width, cfg.embed_dim), "text_projection")?)
        };
        let text = TextTower {
            token_embedding: vb.get((t.vocab_size, t.width), "token_embedding.weight")?,
            positional_embedding: vb.get((t.context_length, t.width), "positional_embedding")?,
            blocks: (0..t.layers)
                .map(|i| {
                    Block::new(
                        t.width,
                        t.heads,
                        t.mlp_width(),
                        t.ls_init_value.is_some(),
                        t.activation,
                        t.layer_norm_eps,
                        &vb.pp(format!("transformer.resblocks.{i}")),
                    )
                })
                .collect::<Result<_>>()?,
            ln_final: LayerNorm::new(t.width, t.layer_norm_eps, &vb.pp("ln_final"))?,
            proj,
        };
        let logit_scale = vb.get((), "logit_scale")?;
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
        Ok(self
            .logit_scale
            .to_dtype(DType::F32)?
            .exp()?
            .to_scalar::<f32>()?)
    }

    /// Saves the parameters in `layout` (see [`crate::save`]).
    pub fn save(
        &self,
        dir: &Path,
        layout: Layout,
        preprocess: Option<&serde_json::Value>,
    ) -> Result<()> {
        crate::save::save(&self.weights, &self.cfg, dir, layout, preprocess)
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
        let n = dims[0];
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
        Ok(pooled.matmul(&self.vision.proj)?)
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
            .to_device(&Device::Cpu)?
            .to_dtype(DType::U32)?
            .to_vec2()?;
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
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(1e-12)?;
    Ok(x.broadcast_div(&norm)?)
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

/// Additive causal mask `[len, len]`: 0 on and below the diagonal, -inf above.
fn causal_mask(len: usize, device: &Device, dtype: DType) -> Result<Tensor> {
    let data: Vec<f32> = (0..len)
        .flat_map(|i| (0..len).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(data, (len, len), device)?.to_dtype(dtype)?)
}
