//! The CLIP towers' forward (keeping what the backward needs) and their hand-written
//! backward, over [`Params`]' flat buffers.

use std::ops::Range;

use gclip_checkpoint::keys::{self, Tower};
use gclip_checkpoint::{pool_position, ClipConfig, TensorMap, VisionPool};
use gclip_engine::cpu::Isa;
use gclip_engine::ops::Activation;

use crate::kernels::{self as k, Attn, Ctx, Rhs};
use crate::loss::{contrastive_loss, fuse_backward, fuse_forward, GclTerms};
use crate::params::{two_mut, Params};
use crate::{FastTrainError, Result};

struct LinearR {
    w: Range<usize>,
    b: Range<usize>,
}

struct NormR {
    g: Range<usize>,
    b: Range<usize>,
}

struct BlockR {
    ln1: NormR,
    qkv: LinearR,
    out: LinearR,
    ln2: NormR,
    fc: LinearR,
    proj: LinearR,
}

struct StackR {
    width: usize,
    heads: usize,
    mlp: usize,
    eps: f32,
    act: Activation,
    blocks: Vec<BlockR>,
}

/// What one block keeps from its forward.
#[derive(Default)]
struct BlockTape {
    x_in: Vec<f32>,
    ln1: Vec<f32>,
    h1: Vec<f32>,
    qkv: Vec<f32>,
    probs: Vec<f32>,
    att: Vec<f32>,
    x_mid: Vec<f32>,
    ln2: Vec<f32>,
    h2: Vec<f32>,
    fc_pre: Vec<f32>,
    fc_act: Vec<f32>,
}

/// A tower's activations for one (batch, sequence) shape; buffers are kept between steps
/// and only grow, so a run with a fixed batch shape allocates them once.
#[derive(Default)]
struct TowerTape {
    batch: usize,
    seq: usize,
    blocks: Vec<BlockTape>,
    /// Vision: im2col patches; unused by text.
    patches: Vec<f32>,
    /// Input of the pre-stack layer norm (vision with ln_pre).
    x0: Vec<f32>,
    ln0: Vec<f32>,
    /// Pooled rows before / after the final layer norm, and its stats.
    pooled: Vec<f32>,
    pooled_ln: Vec<f32>,
    ln_f: Vec<f32>,
    /// Text: token ids per position (`[batch, seq]`) and pooled positions.
    ids: Vec<u32>,
    pool_pos: Vec<usize>,
    /// Backward scratch.
    d_big: Vec<f32>,
    d_h: Vec<f32>,
    d_att: Vec<f32>,
    d_qkv: Vec<f32>,
    d_x: Vec<f32>,
}

fn fit(v: &mut Vec<f32>, n: usize) {
    v.resize(n, 0.0);
}

/// One tower's inputs for a field of the batch.
#[derive(Clone, Copy)]
pub enum TowerInput<'a> {
    /// Preprocessed pixels `[n, 3, S, S]`.
    Image(&'a [f32]),
    /// Token ids, one row of `context_length` (padded) per item.
    Text(&'a [Vec<u32>]),
}

/// Everything one training micro-batch needs.
pub struct StepInputs<'a> {
    /// Rows (pairs) in the batch.
    pub n: usize,
    /// Left (query) fields.
    pub left: Vec<TowerInput<'a>>,
    /// Left field weights `[K_left][n]` (0 for a missing field).
    pub left_alpha: &'a [f32],
    /// Right (document) fields.
    pub right: Vec<TowerInput<'a>>,
    /// Right field weights `[K_right][n]`.
    pub right_alpha: &'a [f32],
    /// `Some`: the GCL loss with these weights and ids; `None`: the CLIP loss.
    pub gcl: Option<GclTerms<'a>>,
    /// No gradient through the image tower (its parameters keep zero gradients).
    pub lock_image: bool,
    /// No gradient through the text tower.
    pub lock_text: bool,
}

/// A CLIP model on flat buffers with a hand-written backward.
pub struct FastClip {
    cfg: ClipConfig,
    /// The parameters.
    pub params: Params,
    /// Gradients, same layout; [`FastClip::step`] adds into them.
    pub grads: Vec<f32>,
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
    isa: Isa,
    vision: StackR,
    text: StackR,
    vis_tape: TowerTape,
    txt_tape: TowerTape,
    logit_scale: usize,
}

fn stack_ranges(
    p: &Params,
    tower: Tower,
    layers: usize,
    (width, heads, mlp): (usize, usize, usize),
    eps: f64,
    act: gclip_checkpoint::Activation,
) -> Result<StackR> {
    let mut blocks = Vec::with_capacity(layers);
    for i in 0..layers {
        let kk = keys::block(tower, i);
        blocks.push(BlockR {
            ln1: NormR {
                g: p.range(&kk.ln_1_weight)?,
                b: p.range(&kk.ln_1_bias)?,
            },
            qkv: LinearR {
                w: p.range(&kk.in_proj_weight)?,
                b: p.range(&kk.in_proj_bias)?,
            },
            out: LinearR {
                w: p.range(&kk.out_proj_weight)?,
                b: p.range(&kk.out_proj_bias)?,
            },
            ln2: NormR {
                g: p.range(&kk.ln_2_weight)?,
                b: p.range(&kk.ln_2_bias)?,
            },
            fc: LinearR {
                w: p.range(&kk.c_fc_weight)?,
                b: p.range(&kk.c_fc_bias)?,
            },
            proj: LinearR {
                w: p.range(&kk.c_proj_weight)?,
                b: p.range(&kk.c_proj_bias)?,
            },
        });
    }
    if heads == 0 || !width.is_multiple_of(heads) {
        return Err(FastTrainError::Shape(format!(
            "width {width} not divisible by {heads} heads"
        )));
    }
    Ok(StackR {
        width,
        heads,
        mlp,
        eps: eps as f32,
        act: match act {
            gclip_checkpoint::Activation::Gelu => Activation::Gelu,
            gclip_checkpoint::Activation::QuickGelu => Activation::QuickGelu,
        },
        blocks,
    })
}

impl FastClip {
    /// Builds the model from canonical tensors; `threads` workers (`None`: all cores).
    /// Architectures the fast path does not cover (layer scale, average pooling, a text
    /// projection bias) are [`FastTrainError::Unsupported`].
    pub fn new(cfg: &ClipConfig, tensors: &TensorMap, threads: Option<usize>) -> Result<Self> {
        let (v, t) = (&cfg.vision, &cfg.text);
        if v.ls_init_value.is_some() || t.ls_init_value.is_some() {
            return Err(FastTrainError::Unsupported("layer scale".into()));
        }
        if v.pool != VisionPool::Tok {
            return Err(FastTrainError::Unsupported(
                "average-pooled vision towers".into(),
            ));
        }
        if t.proj_bias {
            return Err(FastTrainError::Unsupported(
                "a text projection with bias".into(),
            ));
        }
        if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return Err(FastTrainError::Shape(format!(
                "image size {} not a multiple of patch {}",
                v.image_size, v.patch_size
            )));
        }
        let params = Params::from_tensors(cfg, tensors)?;
        let vision = stack_ranges(
            &params,
            Tower::Vision,
            v.layers,
            (v.width, v.heads, v.mlp_width()),
            v.layer_norm_eps,
            v.activation,
        )?;
        let text = stack_ranges(
            &params,
            Tower::Text,
            t.layers,
            (t.width, t.heads, t.mlp_width()),
            t.layer_norm_eps,
            t.activation,
        )?;
        let threads = threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let pool = if threads > 1 {
            Some(std::sync::Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("gclip-train-{i}"))
                    .build()
                    .map_err(|e| FastTrainError::Input(format!("thread pool: {e}")))?,
            ))
        } else {
            None
        };
        let logit_scale = params.range(keys::LOGIT_SCALE)?.start;
        let grads = vec![0.0; params.len()];
        Ok(FastClip {
            cfg: cfg.clone(),
            params,
            grads,
            pool,
            isa: gclip_engine::cpu::features().isa,
            vision,
            text,
            vis_tape: TowerTape::default(),
            txt_tape: TowerTape::default(),
            logit_scale,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &ClipConfig {
        &self.cfg
    }

    /// The step's worker pool (`None` with one thread), for the caller's own parallel work
    /// (decoding the next batch's images) so it shares the step's threads.
    pub fn thread_pool(&self) -> Option<std::sync::Arc<rayon::ThreadPool>> {
        self.pool.clone()
    }

    /// The log-space logit scale.
    pub fn logit_scale(&self) -> f32 {
        self.params.data[self.logit_scale]
    }

    /// Mutable access to the log-space logit scale (for the clamp after an update).
    pub fn logit_scale_mut(&mut self) -> &mut f32 {
        &mut self.params.data[self.logit_scale]
    }

    /// Sets every gradient to zero.
    pub fn zero_grads(&mut self) {
        self.grads.fill(0.0);
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            isa: self.isa,
            pool: self.pool.as_deref(),
        }
    }

    /// One micro-batch: forward through both towers (all image fields in one call, all
    /// text fields in one call), fusion, the loss, and the backward; gradients are added to
    /// [`FastClip::grads`]. Returns the loss.
    pub fn step(&mut self, inp: &StepInputs<'_>) -> Result<f32> {
        let n = inp.n;
        if n == 0 {
            return Err(FastTrainError::Input("empty batch".into()));
        }
        let e = self.cfg.embed_dim;
        // Gather the fields by tower: (side, field index, offset in the tower batch).
        let mut pixels: Vec<f32> = Vec::new();
        let mut texts: Vec<Vec<u32>> = Vec::new();
        let mut slots: Vec<(bool, usize)> = Vec::new(); // (is_image, first row)
        let per_image = 3 * self.cfg.vision.image_size * self.cfg.vision.image_size;
        for f in inp.left.iter().chain(&inp.right) {
            match f {
                TowerInput::Image(px) => {
                    if px.len() != n * per_image {
                        return Err(FastTrainError::Shape(format!(
                            "image field: {} values, expected {n} x {per_image}",
                            px.len()
                        )));
                    }
                    slots.push((true, pixels.len() / per_image));
                    pixels.extend_from_slice(px);
                }
                TowerInput::Text(ids) => {
                    if ids.len() != n {
                        return Err(FastTrainError::Shape(format!(
                            "text field: {} rows, expected {n}",
                            ids.len()
                        )));
                    }
                    slots.push((false, texts.len()));
                    texts.extend(ids.iter().cloned());
                }
            }
        }
        let ni = pixels.len() / per_image;
        let nt = texts.len();
        let img_emb = if ni > 0 {
            self.vision_forward(&pixels, ni)?
        } else {
            Vec::new()
        };
        let txt_emb = if nt > 0 {
            self.text_forward(&texts)?
        } else {
            Vec::new()
        };
        let views: Vec<&[f32]> = slots
            .iter()
            .map(|&(img, r0)| {
                let src = if img { &img_emb } else { &txt_emb };
                &src[r0 * e..(r0 + n) * e]
            })
            .collect();
        let kl = inp.left.len();
        let lf = fuse_forward(&views[..kl], inp.left_alpha, n, e)?;
        let rf = fuse_forward(&views[kl..], inp.right_alpha, n, e)?;
        let lg = contrastive_loss(&lf.out, &rf.out, n, e, self.logit_scale(), inp.gcl)?;
        self.grads[self.logit_scale] += lg.d_logit_scale;
        let dl = fuse_backward(&lf, &lg.d_left);
        let dr = fuse_backward(&rf, &lg.d_right);
        let mut d_img = vec![0.0f32; ni * e];
        let mut d_txt = vec![0.0f32; nt * e];
        for (s, d) in dl.iter().chain(&dr).enumerate() {
            let (img, r0) = slots[s];
            let dst = if img { &mut d_img } else { &mut d_txt };
            for (o, &g) in dst[r0 * e..(r0 + n) * e].iter_mut().zip(d) {
                *o += g;
            }
        }
        if ni > 0 && !inp.lock_image {
            self.vision_backward(&d_img)?;
        }
        if nt > 0 && !inp.lock_text {
            self.text_backward(&d_txt)?;
        }
        Ok(lg.loss)
    }

    /// Image embeddings `[n, embed_dim]` (not normalised) of `[n, 3, S, S]` pixels, keeping
    /// the activations for [`Self::vision_backward`].
    pub fn vision_forward(&mut self, pixels: &[f32], n: usize) -> Result<Vec<f32>> {
        let v = &self.cfg.vision;
        let (sz, p, g) = (v.image_size, v.patch_size, v.grid());
        let (w, e) = (v.width, self.cfg.embed_dim);
        let pdim = 3 * p * p;
        let np = g * g;
        let seq = np + 1;
        if pixels.len() != n * 3 * sz * sz {
            return Err(FastTrainError::Shape(format!(
                "pixels: {} values for {n} images of 3 x {sz} x {sz}",
                pixels.len()
            )));
        }
        let mut tape = std::mem::take(&mut self.vis_tape);
        tape.batch = n;
        tape.seq = seq;
        fit(&mut tape.patches, n * np * pdim);
        for b in 0..n {
            let img = &pixels[b * 3 * sz * sz..(b + 1) * 3 * sz * sz];
            for gy in 0..g {
                for gx in 0..g {
                    let row = &mut tape.patches[(b * np + gy * g + gx) * pdim..][..pdim];
                    for c in 0..3 {
                        for ky in 0..p {
                            let src = &img[c * sz * sz + (gy * p + ky) * sz + gx * p..][..p];
                            row[(c * p + ky) * p..][..p].copy_from_slice(src);
                        }
                    }
                }
            }
        }
        let ctx = self.ctx();
        let prm = &self.params;
        let mut emb = vec![0.0f32; n * np * w];
        k::matmul(
            ctx,
            n * np,
            w,
            pdim,
            &tape.patches,
            Rhs::Nk(prm.get(keys::VISUAL_CONV1)?),
            &mut emb,
            None,
            false,
        )?;
        let class = prm.get(keys::VISUAL_CLASS_EMBEDDING)?;
        let pos = prm.get(keys::VISUAL_POSITIONAL_EMBEDDING)?;
        let m = n * seq;
        let mut x = vec![0.0f32; m * w];
        for b in 0..n {
            let xb = &mut x[b * seq * w..(b + 1) * seq * w];
            for (o, (c, q)) in xb[..w].iter_mut().zip(class.iter().zip(&pos[..w])) {
                *o = c + q;
            }
            for (i, (o, q)) in xb[w..].iter_mut().zip(&pos[w..]).enumerate() {
                *o = emb[b * np * w + i] + q;
            }
        }
        if !v.no_ln_pre {
            fit(&mut tape.x0, m * w);
            fit(&mut tape.ln0, 2 * m);
            tape.x0.copy_from_slice(&x);
            k::layer_norm_forward(
                ctx,
                &tape.x0,
                &mut x,
                &mut tape.ln0,
                w,
                prm.get(keys::VISUAL_LN_PRE_WEIGHT)?,
                prm.get(keys::VISUAL_LN_PRE_BIAS)?,
                self.vision.eps,
            )?;
        }
        stack_forward(ctx, prm, &self.vision, &mut tape, &mut x, n, seq, false)?;
        // Class-token pooling, then ln_post and the projection.
        fit(&mut tape.pooled, n * w);
        for b in 0..n {
            tape.pooled[b * w..(b + 1) * w].copy_from_slice(&x[b * seq * w..][..w]);
        }
        fit(&mut tape.pooled_ln, n * w);
        fit(&mut tape.ln_f, 2 * n);
        k::layer_norm_forward(
            ctx,
            &tape.pooled,
            &mut tape.pooled_ln,
            &mut tape.ln_f,
            w,
            prm.get(keys::VISUAL_LN_POST_WEIGHT)?,
            prm.get(keys::VISUAL_LN_POST_BIAS)?,
            self.vision.eps,
        )?;
        let mut out = vec![0.0f32; n * e];
        k::matmul(
            ctx,
            n,
            e,
            w,
            &tape.pooled_ln,
            Rhs::Kn(prm.get(keys::VISUAL_PROJ)?),
            &mut out,
            None,
            false,
        )?;
        self.vis_tape = tape;
        Ok(out)
    }

    /// Adds the image tower's parameter gradients for `d_out` (`[n, embed_dim]`, the
    /// gradient of the last [`Self::vision_forward`]'s output).
    pub fn vision_backward(&mut self, d_out: &[f32]) -> Result<()> {
        let v = &self.cfg.vision;
        let mut tape = std::mem::take(&mut self.vis_tape);
        let (n, seq) = (tape.batch, tape.seq);
        let (w, e, p) = (v.width, self.cfg.embed_dim, v.patch_size);
        let pdim = 3 * p * p;
        let np = seq - 1;
        let m = n * seq;
        if d_out.len() != n * e {
            return Err(FastTrainError::Shape(format!(
                "vision gradient: {} values, forward had {n} x {e}",
                d_out.len()
            )));
        }
        let ctx = Ctx {
            isa: self.isa,
            pool: self.pool.as_deref(),
        };
        let prm = &self.params;
        let g = &mut self.grads;
        // Projection.
        k::matmul_tn(
            ctx,
            w,
            e,
            n,
            &tape.pooled_ln,
            d_out,
            &mut g[prm.range(keys::VISUAL_PROJ)?],
            None,
        )?;
        let mut d_pooled_ln = vec![0.0f32; n * w];
        k::matmul(
            ctx,
            n,
            w,
            e,
            d_out,
            Rhs::Nk(prm.get(keys::VISUAL_PROJ)?),
            &mut d_pooled_ln,
            None,
            false,
        )?;
        let mut d_pooled = vec![0.0f32; n * w];
        {
            let (dg, db) = two_mut(
                g,
                prm.range(keys::VISUAL_LN_POST_WEIGHT)?,
                prm.range(keys::VISUAL_LN_POST_BIAS)?,
            );
            k::layer_norm_backward(
                ctx,
                &tape.pooled,
                &tape.ln_f,
                &d_pooled_ln,
                &mut d_pooled,
                false,
                w,
                prm.get(keys::VISUAL_LN_POST_WEIGHT)?,
                dg,
                db,
            )?;
        }
        let mut dx = std::mem::take(&mut tape.d_x);
        dx.clear();
        dx.resize(m * w, 0.0);
        for b in 0..n {
            dx[b * seq * w..][..w].copy_from_slice(&d_pooled[b * w..(b + 1) * w]);
        }
        stack_backward(ctx, prm, g, &self.vision, &mut tape, &mut dx, n, seq, false)?;
        if !v.no_ln_pre {
            let mut d0 = vec![0.0f32; m * w];
            let (dg, db) = two_mut(
                g,
                prm.range(keys::VISUAL_LN_PRE_WEIGHT)?,
                prm.range(keys::VISUAL_LN_PRE_BIAS)?,
            );
            k::layer_norm_backward(
                ctx,
                &tape.x0,
                &tape.ln0,
                &dx,
                &mut d0,
                false,
                w,
                prm.get(keys::VISUAL_LN_PRE_WEIGHT)?,
                dg,
                db,
            )?;
            dx.copy_from_slice(&d0);
        }
        // Class and positional embeddings, then the patch projection.
        {
            let cr = prm.range(keys::VISUAL_CLASS_EMBEDDING)?;
            let pr = prm.range(keys::VISUAL_POSITIONAL_EMBEDDING)?;
            for b in 0..n {
                let xb = &dx[b * seq * w..(b + 1) * seq * w];
                for (o, &d) in g[cr.clone()].iter_mut().zip(&xb[..w]) {
                    *o += d;
                }
                for (o, &d) in g[pr.clone()].iter_mut().zip(xb) {
                    *o += d;
                }
            }
        }
        let mut d_emb = vec![0.0f32; n * np * w];
        for b in 0..n {
            d_emb[b * np * w..(b + 1) * np * w]
                .copy_from_slice(&dx[(b * seq + 1) * w..(b + 1) * seq * w]);
        }
        k::matmul_tn(
            ctx,
            w,
            pdim,
            n * np,
            &d_emb,
            &tape.patches,
            &mut g[prm.range(keys::VISUAL_CONV1)?],
            None,
        )?;
        tape.d_x = dx;
        self.vis_tape = tape;
        Ok(())
    }

    /// Text embeddings `[n, embed_dim]` (not normalised) of `context_length` token rows,
    /// keeping the activations for [`Self::text_backward`]. A causal tower runs only up to
    /// the last pooled position of the batch (later tokens cannot reach it).
    pub fn text_forward(&mut self, ids: &[Vec<u32>]) -> Result<Vec<f32>> {
        let t = &self.cfg.text;
        let (w, e) = (t.width, self.cfg.embed_dim);
        let n = ids.len();
        let mut tape = std::mem::take(&mut self.txt_tape);
        tape.pool_pos.clear();
        for (i, row) in ids.iter().enumerate() {
            if row.is_empty() || row.len() > t.context_length {
                return Err(FastTrainError::Input(format!(
                    "text {i}: {} tokens, expected 1..={}",
                    row.len(),
                    t.context_length
                )));
            }
            if let Some(&bad) = row.iter().find(|&&x| x as usize >= t.vocab_size) {
                return Err(FastTrainError::Input(format!(
                    "text {i}: token id {bad} >= vocab size {}",
                    t.vocab_size
                )));
            }
            tape.pool_pos
                .push(pool_position(row, t.pool, t.eos_token_id));
        }
        let seq = if t.causal {
            tape.pool_pos.iter().max().map_or(1, |p| p + 1)
        } else {
            t.context_length
        };
        tape.batch = n;
        tape.seq = seq;
        let ctx = Ctx {
            isa: self.isa,
            pool: self.pool.as_deref(),
        };
        let prm = &self.params;
        let tok = prm.get(keys::TOKEN_EMBEDDING)?;
        let pos = prm.get(keys::POSITIONAL_EMBEDDING)?;
        let m = n * seq;
        tape.ids.clear();
        let mut x = vec![0.0f32; m * w];
        for (b, row) in ids.iter().enumerate() {
            for p in 0..seq {
                let id = row.get(p).copied().unwrap_or(t.pad_token_id) as usize;
                tape.ids.push(id as u32);
                let xo = &mut x[(b * seq + p) * w..][..w];
                for (o, (a, q)) in xo.iter_mut().zip(
                    tok[id * w..(id + 1) * w]
                        .iter()
                        .zip(&pos[p * w..(p + 1) * w]),
                ) {
                    *o = a + q;
                }
            }
        }
        stack_forward(ctx, prm, &self.text, &mut tape, &mut x, n, seq, t.causal)?;
        fit(&mut tape.pooled, n * w);
        for b in 0..n {
            let p = tape.pool_pos[b].min(seq - 1);
            tape.pooled[b * w..(b + 1) * w].copy_from_slice(&x[(b * seq + p) * w..][..w]);
        }
        fit(&mut tape.pooled_ln, n * w);
        fit(&mut tape.ln_f, 2 * n);
        k::layer_norm_forward(
            ctx,
            &tape.pooled,
            &mut tape.pooled_ln,
            &mut tape.ln_f,
            w,
            prm.get(keys::LN_FINAL_WEIGHT)?,
            prm.get(keys::LN_FINAL_BIAS)?,
            self.text.eps,
        )?;
        let mut out = vec![0.0f32; n * e];
        k::matmul(
            ctx,
            n,
            e,
            w,
            &tape.pooled_ln,
            Rhs::Kn(prm.get(keys::TEXT_PROJECTION)?),
            &mut out,
            None,
            false,
        )?;
        self.txt_tape = tape;
        Ok(out)
    }

    /// Adds the text tower's parameter gradients for `d_out` (gradient of the last
    /// [`Self::text_forward`]'s output); the token-embedding gradient is a scatter-add over
    /// the ids used.
    pub fn text_backward(&mut self, d_out: &[f32]) -> Result<()> {
        let t = &self.cfg.text;
        let mut tape = std::mem::take(&mut self.txt_tape);
        let (n, seq) = (tape.batch, tape.seq);
        let (w, e) = (t.width, self.cfg.embed_dim);
        let m = n * seq;
        if d_out.len() != n * e {
            return Err(FastTrainError::Shape(format!(
                "text gradient: {} values, forward had {n} x {e}",
                d_out.len()
            )));
        }
        let ctx = Ctx {
            isa: self.isa,
            pool: self.pool.as_deref(),
        };
        let prm = &self.params;
        let g = &mut self.grads;
        k::matmul_tn(
            ctx,
            w,
            e,
            n,
            &tape.pooled_ln,
            d_out,
            &mut g[prm.range(keys::TEXT_PROJECTION)?],
            None,
        )?;
        let mut d_pooled_ln = vec![0.0f32; n * w];
        k::matmul(
            ctx,
            n,
            w,
            e,
            d_out,
            Rhs::Nk(prm.get(keys::TEXT_PROJECTION)?),
            &mut d_pooled_ln,
            None,
            false,
        )?;
        let mut d_pooled = vec![0.0f32; n * w];
        {
            let (dg, db) = two_mut(
                g,
                prm.range(keys::LN_FINAL_WEIGHT)?,
                prm.range(keys::LN_FINAL_BIAS)?,
            );
            k::layer_norm_backward(
                ctx,
                &tape.pooled,
                &tape.ln_f,
                &d_pooled_ln,
                &mut d_pooled,
                false,
                w,
                prm.get(keys::LN_FINAL_WEIGHT)?,
                dg,
                db,
            )?;
        }
        let mut dx = std::mem::take(&mut tape.d_x);
        dx.clear();
        dx.resize(m * w, 0.0);
        for b in 0..n {
            let p = tape.pool_pos[b].min(seq - 1);
            dx[(b * seq + p) * w..][..w].copy_from_slice(&d_pooled[b * w..(b + 1) * w]);
        }
        stack_backward(
            ctx, prm, g, &self.text, &mut tape, &mut dx, n, seq, t.causal,
        )?;
        let tr = prm.range(keys::TOKEN_EMBEDDING)?;
        let pr = prm.range(keys::POSITIONAL_EMBEDDING)?;
        for b in 0..n {
            for p in 0..seq {
                let d = &dx[(b * seq + p) * w..][..w];
                let id = tape.ids[b * seq + p] as usize;
                for (o, &v) in g[tr.start + id * w..][..w].iter_mut().zip(d) {
                    *o += v;
                }
                for (o, &v) in g[pr.start + p * w..][..w].iter_mut().zip(d) {
                    *o += v;
                }
            }
        }
        tape.d_x = dx;
        self.txt_tape = tape;
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn stack_forward(
    ctx: Ctx<'_>,
    prm: &Params,
    st: &StackR,
    tape: &mut TowerTape,
    x: &mut [f32],
    batch: usize,
    seq: usize,
    causal: bool,
) -> Result<()> {
    let (w, mlp) = (st.width, st.mlp);
    let m = batch * seq;
    let shape = Attn {
        batch,
        seq,
        heads: st.heads,
        head_dim: w / st.heads,
        causal,
    };
    tape.blocks.resize_with(st.blocks.len(), BlockTape::default);
    let d = &prm.data;
    for (b, bt) in st.blocks.iter().zip(tape.blocks.iter_mut()) {
        fit(&mut bt.x_in, m * w);
        bt.x_in.copy_from_slice(x);
        fit(&mut bt.ln1, 2 * m);
        fit(&mut bt.h1, m * w);
        k::layer_norm_forward(
            ctx,
            x,
            &mut bt.h1,
            &mut bt.ln1,
            w,
            &d[b.ln1.g.clone()],
            &d[b.ln1.b.clone()],
            st.eps,
        )?;
        fit(&mut bt.qkv, m * 3 * w);
        k::matmul(
            ctx,
            m,
            3 * w,
            w,
            &bt.h1,
            Rhs::Nk(&d[b.qkv.w.clone()]),
            &mut bt.qkv,
            Some(&d[b.qkv.b.clone()]),
            false,
        )?;
        fit(&mut bt.probs, shape.probs_len());
        fit(&mut bt.att, m * w);
        k::attention_forward(ctx, &bt.qkv, &mut bt.att, &mut bt.probs, shape)?;
        // Residual fused into the GEMM: x += att W^T + b.
        k::matmul(
            ctx,
            m,
            w,
            w,
            &bt.att,
            Rhs::Nk(&d[b.out.w.clone()]),
            x,
            Some(&d[b.out.b.clone()]),
            true,
        )?;
        fit(&mut bt.x_mid, m * w);
        bt.x_mid.copy_from_slice(x);
        fit(&mut bt.ln2, 2 * m);
        fit(&mut bt.h2, m * w);
        k::layer_norm_forward(
            ctx,
            x,
            &mut bt.h2,
            &mut bt.ln2,
            w,
            &d[b.ln2.g.clone()],
            &d[b.ln2.b.clone()],
            st.eps,
        )?;
        fit(&mut bt.fc_pre, m * mlp);
        k::matmul(
            ctx,
            m,
            mlp,
            w,
            &bt.h2,
            Rhs::Nk(&d[b.fc.w.clone()]),
            &mut bt.fc_pre,
            Some(&d[b.fc.b.clone()]),
            false,
        )?;
        fit(&mut bt.fc_act, m * mlp);
        k::activate_into(ctx, st.act, &bt.fc_pre, &mut bt.fc_act);
        k::matmul(
            ctx,
            m,
            w,
            mlp,
            &bt.fc_act,
            Rhs::Nk(&d[b.proj.w.clone()]),
            x,
            Some(&d[b.proj.b.clone()]),
            true,
        )?;
    }
    Ok(())
}

/// Backward through the blocks: `dx` holds the gradient of the stack's output and leaves
/// holding the gradient of its input.
#[allow(clippy::too_many_arguments)]
fn stack_backward(
    ctx: Ctx<'_>,
    prm: &Params,
    g: &mut [f32],
    st: &StackR,
    tape: &mut TowerTape,
    dx: &mut [f32],
    batch: usize,
    seq: usize,
    causal: bool,
) -> Result<()> {
    let (w, mlp) = (st.width, st.mlp);
    let m = batch * seq;
    let shape = Attn {
        batch,
        seq,
        heads: st.heads,
        head_dim: w / st.heads,
        causal,
    };
    let d = &prm.data;
    fit(&mut tape.d_big, m * mlp);
    fit(&mut tape.d_h, m * w);
    fit(&mut tape.d_att, m * w);
    fit(&mut tape.d_qkv, m * 3 * w);
    for (b, bt) in st.blocks.iter().zip(tape.blocks.iter()).rev() {
        // MLP: x_out = x_mid + proj(act(fc(ln2(x_mid)))).
        {
            let (dw, db) = two_mut(g, b.proj.w.clone(), b.proj.b.clone());
            k::linear_backward(
                ctx,
                m,
                w,
                mlp,
                &bt.fc_act,
                &d[b.proj.w.clone()],
                dx,
                Some(&mut tape.d_big),
                false,
                dw,
                Some(db),
            )?;
        }
        k::activation_backward(ctx, st.act, &bt.fc_pre, &mut tape.d_big);
        {
            let (dw, db) = two_mut(g, b.fc.w.clone(), b.fc.b.clone());
            k::linear_backward(
                ctx,
                m,
                mlp,
                w,
                &bt.h2,
                &d[b.fc.w.clone()],
                &tape.d_big,
                Some(&mut tape.d_h),
                false,
                dw,
                Some(db),
            )?;
        }
        {
            let (dg, db) = two_mut(g, b.ln2.g.clone(), b.ln2.b.clone());
            k::layer_norm_backward(
                ctx,
                &bt.x_mid,
                &bt.ln2,
                &tape.d_h,
                dx,
                true,
                w,
                &d[b.ln2.g.clone()],
                dg,
                db,
            )?;
        }
        // Attention: x_mid = x_in + out(attn(qkv(ln1(x_in)))).
        {
            let (dw, db) = two_mut(g, b.out.w.clone(), b.out.b.clone());
            k::linear_backward(
                ctx,
                m,
                w,
                w,
                &bt.att,
                &d[b.out.w.clone()],
                dx,
                Some(&mut tape.d_att),
                false,
                dw,
                Some(db),
            )?;
        }
        k::attention_backward(ctx, &bt.qkv, &bt.probs, &tape.d_att, &mut tape.d_qkv, shape)?;
        {
            let (dw, db) = two_mut(g, b.qkv.w.clone(), b.qkv.b.clone());
            k::linear_backward(
                ctx,
                m,
                3 * w,
                w,
                &bt.h1,
                &d[b.qkv.w.clone()],
                &tape.d_qkv,
                Some(&mut tape.d_h),
                false,
                dw,
                Some(db),
            )?;
        }
        {
            let (dg, db) = two_mut(g, b.ln1.g.clone(), b.ln1.b.clone());
            k::layer_norm_backward(
                ctx,
                &bt.x_in,
                &bt.ln1,
                &tape.d_h,
                dx,
                true,
                w,
                &d[b.ln1.g.clone()],
                dg,
                db,
            )?;
        }
    }
    Ok(())
}
