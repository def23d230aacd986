//! The CLIP towers on the engine's kernels.

use gclip_checkpoint::keys::{self, Tower};
use gclip_checkpoint::{pool_position, ClipConfig, TensorMap, TensorSource, TextPool, VisionPool};
use gclip_vectors::Embeddings;
use rayon::prelude::*;

use crate::cpu::{self, Isa};
use crate::gemm::{gemm, Epilogue, PackedMatrix};
use crate::ops::{self, Activation, AttnShape};
use crate::quant::{gemm_i8, PackedI8};
use crate::EngineError;

/// Numeric precision of the transformer linear layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// Full f32 (matches the candle reference within ~1e-5).
    #[default]
    Fp32,
    /// Dynamic int8: per-channel int8 weights, per-token int8 activations,
    /// exact i32 accumulation with AVX512-VNNI, or AVX2 on CPUs without VNNI
    /// (weights then in [-63, 63]; see [`crate::quant`]). Patch embedding,
    /// projections, norms and attention stay f32. Building an int8 model on
    /// a CPU (or `GCLIP_ISA`) without AVX2 is an [`EngineError::Unsupported`]
    /// error: the portable integer loops would be slower than fp32.
    Int8,
}

impl std::str::FromStr for Precision {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "f32" => Ok(Precision::Fp32),
            "int8" | "i8" => Ok(Precision::Int8),
            other => Err(EngineError::Input(format!(
                "unknown precision `{other}` (expected fp32 or int8)"
            ))),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        })
    }
}

/// How to build an [`EngineModel`].
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// Precision of the transformer linear layers.
    pub precision: Precision,
    /// Worker threads; `None` = all cores.
    pub threads: Option<usize>,
    /// Largest number of items run through a tower at once (memory bound);
    /// `None` = 32.
    pub max_batch: Option<usize>,
}

enum LinearW {
    F32(PackedMatrix),
    I8(PackedI8),
}

struct Linear {
    w: LinearW,
    bias: Vec<f32>,
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Block {
    ln1: Norm,
    qkv: Linear,
    out: Linear,
    ln2: Norm,
    fc: Linear,
    proj: Linear,
    /// LayerScale gammas (ls_1, ls_2), when the model has them.
    ls: Option<(Vec<f32>, Vec<f32>)>,
}

struct Stack {
    width: usize,
    heads: usize,
    mlp: usize,
    eps: f32,
    act: Activation,
    blocks: Vec<Block>,
}

struct Vision {
    image_size: usize,
    patch: usize,
    grid: usize,
    patch_embed: PackedMatrix,
    class: Vec<f32>,
    pos: Vec<f32>,
    ln_pre: Option<Norm>,
    stack: Stack,
    ln_post: Norm,
    proj: PackedMatrix,
    pool: VisionPool,
    final_ln_after_pool: bool,
}

struct Text {
    context: usize,
    vocab: usize,
    tok: Vec<f32>,
    pos: Vec<f32>,
    stack: Stack,
    ln_final: Norm,
    proj: PackedMatrix,
    proj_bias: Option<Vec<f32>>,
    pool: TextPool,
    eos: u32,
    pad: u32,
    causal: bool,
}

/// A CLIP model prepared for fast CPU inference: weights packed (and
/// optionally quantised) once, a private thread pool, the best kernels for
/// this CPU.
pub struct EngineModel {
    embed_dim: usize,
    vision: Vision,
    text: Text,
    pool: rayon::ThreadPool,
    threads: usize,
    isa: Isa,
    precision: Precision,
    max_batch: usize,
    /// Scratch kept between calls so repeated calls do not page in fresh
    /// buffers; concurrent callers that find it busy use their own.
    scratch: std::sync::Mutex<Scratch>,
}

impl std::fmt::Debug for EngineModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineModel")
            .field("embed_dim", &self.embed_dim)
            .field("threads", &self.threads)
            .field("isa", &self.isa)
            .field("precision", &self.precision)
            .finish()
    }
}

/// Shape and row-major f32 values of one tensor.
pub type TensorData = (Vec<usize>, Vec<f32>);

/// Where [`EngineModel::from_source`] gets its canonical (open_clip-named) tensors. The engine
/// asks for each tensor once, packs it and drops the returned buffer before asking for the next,
/// so a lazy source keeps peak memory near the packed model plus one tensor.
pub trait WeightSource {
    /// Shape and row-major f32 values of the tensor under a canonical key, or `None` when the
    /// source has no such key.
    fn fetch(&self, key: &str) -> Result<Option<TensorData>, EngineError>;
}

/// Raw tensors in memory (e.g. from `gclip_checkpoint::load_tensors` or `random_tensors`).
impl WeightSource for TensorMap {
    fn fetch(&self, key: &str) -> Result<Option<TensorData>, EngineError> {
        Ok(self.get(key).map(|t| (t.shape().to_vec(), t.to_f32())))
    }
}

/// A checkpoint opened lazily with `gclip_checkpoint::open_tensors`: each tensor is read from
/// the memory-mapped file when the engine asks for it.
impl WeightSource for TensorSource {
    fn fetch(&self, key: &str) -> Result<Option<TensorData>, EngineError> {
        if self.shape(key).is_none() {
            return Ok(None);
        }
        self.get_f32(key)
            .map(Some)
            .map_err(|source| EngineError::Weight {
                key: key.to_string(),
                source: Box::new(source),
            })
    }
}

fn tensor<S: WeightSource + ?Sized>(
    w: &S,
    key: &str,
    shape: &[usize],
) -> Result<Vec<f32>, EngineError> {
    let (dims, data) = w
        .fetch(key)?
        .ok_or_else(|| EngineError::MissingWeight(key.to_string()))?;
    let scalar_ok = shape.is_empty() && dims == [1];
    if dims != shape && !scalar_ok {
        return Err(EngineError::Shape(format!(
            "`{key}`: expected {shape:?}, found {dims:?}"
        )));
    }
    Ok(data)
}

fn norm<S: WeightSource + ?Sized>(
    w: &S,
    weight: &str,
    bias: &str,
    width: usize,
) -> Result<Norm, EngineError> {
    Ok(Norm {
        gamma: tensor(w, weight, &[width])?,
        beta: tensor(w, bias, &[width])?,
    })
}

fn linear<S: WeightSource + ?Sized>(
    w: &S,
    wkey: &str,
    bkey: &str,
    n: usize,
    k: usize,
    p: Precision,
) -> Result<Linear, EngineError> {
    let wt = tensor(w, wkey, &[n, k])?;
    let bias = tensor(w, bkey, &[n])?;
    let w = match p {
        Precision::Fp32 => LinearW::F32(PackedMatrix::from_nk(&wt, n, k)?),
        Precision::Int8 => LinearW::I8(PackedI8::from_nk(&wt, n, k)?),
    };
    Ok(Linear { w, bias })
}

fn act_of(a: gclip_checkpoint::Activation) -> Activation {
    match a {
        gclip_checkpoint::Activation::QuickGelu => Activation::QuickGelu,
        gclip_checkpoint::Activation::Gelu => Activation::Gelu,
    }
}

#[allow(clippy::too_many_arguments)]
fn stack<S: WeightSource + ?Sized>(
    w: &S,
    tower: Tower,
    width: usize,
    heads: usize,
    mlp: usize,
    layers: usize,
    eps: f64,
    act: Activation,
    layer_scale: bool,
    p: Precision,
) -> Result<Stack, EngineError> {
    if heads == 0 || !width.is_multiple_of(heads) {
        return Err(EngineError::Shape(format!(
            "{}: width {width} not divisible by {heads} heads",
            tower.blocks_prefix()
        )));
    }
    let mut blocks = Vec::with_capacity(layers);
    for i in 0..layers {
        let k = keys::block(tower, i);
        blocks.push(Block {
            ln1: norm(w, &k.ln_1_weight, &k.ln_1_bias, width)?,
            qkv: linear(w, &k.in_proj_weight, &k.in_proj_bias, 3 * width, width, p)?,
            out: linear(w, &k.out_proj_weight, &k.out_proj_bias, width, width, p)?,
            ln2: norm(w, &k.ln_2_weight, &k.ln_2_bias, width)?,
            fc: linear(w, &k.c_fc_weight, &k.c_fc_bias, mlp, width, p)?,
            proj: linear(w, &k.c_proj_weight, &k.c_proj_bias, width, mlp, p)?,
            ls: if layer_scale {
                Some((tensor(w, &k.ls_1, &[width])?, tensor(w, &k.ls_2, &[width])?))
            } else {
                None
            },
        });
    }
    Ok(Stack {
        width,
        heads,
        mlp,
        eps: eps as f32,
        act,
        blocks,
    })
}

/// Returns free heap pages to the OS (glibc keeps freed memory of its arenas otherwise).
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases unused memory of the allocator; it has no
    // preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `x[r] += gamma * y[r]` for every row.
fn add_scaled_rows(x: &mut [f32], y: &[f32], gamma: &[f32]) {
    let w = gamma.len();
    for (xr, yr) in x.chunks_exact_mut(w).zip(y.chunks_exact(w)) {
        for ((xv, &yv), &g) in xr.iter_mut().zip(yr).zip(gamma) {
            *xv += g * yv;
        }
    }
}

/// Scratch buffers for one forward pass, reused across layers.
#[derive(Default)]
struct Scratch {
    h: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    mlp: Vec<f32>,
    /// Vision im2col rows, patch embeddings and the residual stream, kept between calls:
    /// fresh multi-megabyte buffers per batch cost page faults and zeroing.
    patches: Vec<f32>,
    emb: Vec<f32>,
    x: Vec<f32>,
}

/// `v` resized to exactly `n` values, reusing its allocation (contents unspecified: every
/// caller overwrites all `n`).
fn reuse(mut v: Vec<f32>, n: usize) -> Vec<f32> {
    v.resize(n, 0.0);
    v.truncate(n);
    v
}

impl Scratch {
    fn ensure(&mut self, m: usize, st: &Stack) {
        let grow = |v: &mut Vec<f32>, n: usize| {
            if v.len() < n {
                v.resize(n, 0.0);
            }
        };
        grow(&mut self.h, m * st.width);
        grow(&mut self.qkv, m * 3 * st.width);
        grow(&mut self.att, m * st.width);
        grow(&mut self.mlp, m * st.mlp);
    }
}

impl EngineModel {
    /// Builds the engine from canonical (open_clip-named) raw tensors.
    pub fn from_weights(
        cfg: &ClipConfig,
        weights: &TensorMap,
        opts: &EngineOptions,
    ) -> Result<Self, EngineError> {
        Self::from_source(cfg, weights, opts)
    }

    /// Builds the engine from any [`WeightSource`], one tensor at a time: with a lazy
    /// [`TensorSource`] (from [`gclip_checkpoint::open_tensors`]) the weights are streamed from the
    /// memory-mapped checkpoint and never held in full next to their packed copy.
    pub fn from_source<S: WeightSource + ?Sized>(
        cfg: &ClipConfig,
        weights: &S,
        opts: &EngineOptions,
    ) -> Result<Self, EngineError> {
        let model = Self::build(cfg, weights, opts)?;
        // Packing freed one temporary per tensor; hand that heap back to the OS so the
        // resident set after loading is the packed model, not its high-water mark.
        trim_heap();
        Ok(model)
    }

    fn build<S: WeightSource + ?Sized>(
        cfg: &ClipConfig,
        weights: &S,
        opts: &EngineOptions,
    ) -> Result<Self, EngineError> {
        let v = &cfg.vision;
        let t = &cfg.text;
        if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return Err(EngineError::Shape(format!(
                "image size {} not a multiple of patch {}",
                v.image_size, v.patch_size
            )));
        }
        let p = opts.precision;
        let int8 = crate::quant::int8_kernel(cpu::features().isa);
        if p == Precision::Int8 && !int8.is_native() {
            return Err(EngineError::Unsupported(format!(
                "int8 needs AVX2 or AVX512-VNNI, but the engine runs isa={} here \
                 (CPU or GCLIP_ISA); use fp32",
                cpu::features().isa.name()
            )));
        }
        let e = cfg.embed_dim;
        let grid = v.grid();
        let npos = v.num_positions();
        let pdim = 3 * v.patch_size * v.patch_size;
        let conv = tensor(
            weights,
            keys::VISUAL_CONV1,
            &[v.width, 3, v.patch_size, v.patch_size],
        )?;
        let vision = Vision {
            image_size: v.image_size,
            patch: v.patch_size,
            grid,
            patch_embed: PackedMatrix::from_nk(&conv, v.width, pdim)?,
            class: tensor(weights, keys::VISUAL_CLASS_EMBEDDING, &[v.width])?,
            pos: tensor(weights, keys::VISUAL_POSITIONAL_EMBEDDING, &[npos, v.width])?,
            ln_pre: if v.no_ln_pre {
                None
            } else {
                Some(norm(
                    weights,
                    keys::VISUAL_LN_PRE_WEIGHT,
                    keys::VISUAL_LN_PRE_BIAS,
                    v.width,
                )?)
            },
            stack: stack(
                weights,
                Tower::Vision,
                v.width,
                v.heads,
                v.mlp_width(),
                v.layers,
                v.layer_norm_eps,
                act_of(v.activation),
                v.ls_init_value.is_some(),
                p,
            )?,
            ln_post: norm(
                weights,
                keys::VISUAL_LN_POST_WEIGHT,
                keys::VISUAL_LN_POST_BIAS,
                v.width,
            )?,
            proj: PackedMatrix::from_kn(
                &tensor(weights, keys::VISUAL_PROJ, &[v.width, e])?,
                v.width,
                e,
            )?,
            pool: v.pool,
            final_ln_after_pool: v.final_ln_after_pool,
        };
        let (proj, proj_bias) = if t.proj_bias {
            (
                PackedMatrix::from_nk(
                    &tensor(weights, keys::TEXT_PROJECTION_WEIGHT, &[e, t.width])?,
                    e,
                    t.width,
                )?,
                Some(tensor(weights, keys::TEXT_PROJECTION_BIAS, &[e])?),
            )
        } else {
            (
                PackedMatrix::from_kn(
                    &tensor(weights, keys::TEXT_PROJECTION, &[t.width, e])?,
                    t.width,
                    e,
                )?,
                None,
            )
        };
        let text = Text {
            context: t.context_length,
            vocab: t.vocab_size,
            tok: tensor(weights, keys::TOKEN_EMBEDDING, &[t.vocab_size, t.width])?,
            pos: tensor(
                weights,
                keys::POSITIONAL_EMBEDDING,
                &[t.context_length, t.width],
            )?,
            stack: stack(
                weights,
                Tower::Text,
                t.width,
                t.heads,
                t.mlp_width(),
                t.layers,
                t.layer_norm_eps,
                act_of(t.activation),
                t.ls_init_value.is_some(),
                p,
            )?,
            ln_final: norm(weights, keys::LN_FINAL_WEIGHT, keys::LN_FINAL_BIAS, t.width)?,
            proj,
            proj_bias,
            pool: t.pool,
            eos: t.eos_token_id,
            pad: t.pad_token_id,
            causal: t.causal,
        };
        let threads = opts
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("gclip-engine-{i}"))
            .build()
            .map_err(|e| EngineError::ThreadPool(e.to_string()))?;
        Ok(Self {
            embed_dim: e,
            vision,
            text,
            pool,
            threads,
            isa: cpu::features().isa,
            precision: p,
            max_batch: opts.max_batch.unwrap_or(32).max(1),
            scratch: std::sync::Mutex::new(Scratch::default()),
        })
    }

    /// Embedding width.
    pub fn embed_dim(&self) -> usize {
        self.embed_dim
    }

    /// Worker threads in use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The engine's worker pool. Callers run their own parallel work on it (image decoding
    /// and preprocessing, say) so that work and the engine share `threads` threads instead
    /// of oversubscribing the cores with a second pool.
    pub fn thread_pool(&self) -> &rayon::ThreadPool {
        &self.pool
    }

    /// Float kernels in use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Precision of the linear layers (as requested: int8 never falls back
    /// silently, see [`Precision::Int8`]).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Input image side length.
    pub fn image_size(&self) -> usize {
        self.vision.image_size
    }

    /// Embeds `n` preprocessed images, `pixels` = `[n, 3, S, S]` row-major.
    /// Returns `[n, embed_dim]` (not normalised).
    pub fn encode_images(&self, pixels: &[f32], n: usize) -> Result<Embeddings, EngineError> {
        let s = self.vision.image_size;
        let per = 3 * s * s;
        if pixels.len() != n * per {
            return Err(EngineError::Input(format!(
                "pixels: expected {n} x 3 x {s} x {s} = {} values, got {}",
                n * per,
                pixels.len()
            )));
        }
        let mut out = vec![0.0f32; n * self.embed_dim];
        let mut guard = self.scratch.try_lock().ok();
        let mut own = Scratch::default();
        let scratch = guard.as_deref_mut().unwrap_or(&mut own);
        // On the pool even with one thread, so that work the caller queued there (image
        // decoding) takes turns with the towers instead of running beside them.
        self.pool.install(|| {
            for (i0, chunk) in pixels.chunks(per * self.max_batch).enumerate() {
                let nb = chunk.len() / per;
                let o = &mut out[i0 * self.max_batch * self.embed_dim..][..nb * self.embed_dim];
                self.vision_forward(chunk, nb, o, scratch)?;
            }
            Ok::<_, EngineError>(())
        })?;
        Ok(Embeddings::new(self.embed_dim, out)?)
    }

    /// [`Self::encode_images`] with each row L2-normalised.
    pub fn encode_images_normalized(
        &self,
        pixels: &[f32],
        n: usize,
    ) -> Result<Embeddings, EngineError> {
        let mut v = self.encode_images(pixels, n)?;
        v.normalize();
        Ok(v)
    }

    /// Embeds token-id sequences (each at most `context_length` long,
    /// padded or not). Returns `[ids.len(), embed_dim]` (not normalised).
    ///
    /// Texts are grouped by pooled position so each group runs only up to
    /// its longest text (exact for the causal tower).
    pub fn encode_texts(&self, ids: &[Vec<u32>]) -> Result<Embeddings, EngineError> {
        let t = &self.text;
        let mut lens = Vec::with_capacity(ids.len());
        for (i, row) in ids.iter().enumerate() {
            if row.is_empty() || row.len() > t.context {
                return Err(EngineError::Input(format!(
                    "text {i}: {} tokens, expected 1..={}",
                    row.len(),
                    t.context
                )));
            }
            if let Some(&bad) = row.iter().find(|&&x| x as usize >= t.vocab) {
                return Err(EngineError::Input(format!(
                    "text {i}: token id {bad} >= vocab size {}",
                    t.vocab
                )));
            }
            let pos = pool_position(row, t.pool, t.eos);
            // A causal tower needs only positions 0..=pos; otherwise all.
            let need = if t.causal { pos + 1 } else { row.len() };
            lens.push((need, pos));
        }
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| lens[i].0);
        let e = self.embed_dim;
        let mut out = vec![0.0f32; ids.len() * e];
        let mut guard = self.scratch.try_lock().ok();
        let mut own = Scratch::default();
        let scratch = guard.as_deref_mut().unwrap_or(&mut own);
        self.pool.install(|| {
            for group in order.chunks(self.max_batch) {
                let len = group.iter().map(|&i| lens[i].0).max().unwrap_or(1);
                let rows: Vec<(&[u32], usize)> = group
                    .iter()
                    .map(|&i| (ids[i].as_slice(), lens[i].1))
                    .collect();
                let emb = self.text_forward(&rows, len, scratch)?;
                for (g, &i) in group.iter().enumerate() {
                    out[i * e..(i + 1) * e].copy_from_slice(&emb[g * e..(g + 1) * e]);
                }
            }
            Ok::<_, EngineError>(())
        })?;
        Ok(Embeddings::new(e, out)?)
    }

    /// [`Self::encode_texts`] with each row L2-normalised.
    pub fn encode_texts_normalized(&self, ids: &[Vec<u32>]) -> Result<Embeddings, EngineError> {
        let mut v = self.encode_texts(ids)?;
        v.normalize();
        Ok(v)
    }

    fn pool_opt(&self) -> Option<&rayon::ThreadPool> {
        (self.threads > 1).then_some(&self.pool)
    }

    /// Layer norm of `m` rows, split over the pool when large.
    fn ln(
        &self,
        x: &[f32],
        out: &mut [f32],
        m: usize,
        width: usize,
        n: &Norm,
        eps: f32,
    ) -> Result<(), EngineError> {
        let (x, out) = (&x[..m * width], &mut out[..m * width]);
        if self.threads > 1 && m >= 64 {
            let rows = m.div_ceil(self.threads * 2);
            self.pool.install(|| {
                x.par_chunks(rows * width)
                    .zip(out.par_chunks_mut(rows * width))
                    .try_for_each(|(xc, oc)| {
                        ops::layer_norm(self.isa, xc, oc, width, &n.gamma, &n.beta, eps)
                    })
            })
        } else {
            ops::layer_norm(self.isa, x, out, width, &n.gamma, &n.beta, eps)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn linear(
        &self,
        l: &Linear,
        m: usize,
        a: &[f32],
        lda: usize,
        c: &mut [f32],
        ldc: usize,
        act: Activation,
        acc: bool,
    ) -> Result<(), EngineError> {
        let epi = Epilogue {
            bias: Some(&l.bias),
            act,
            accumulate: acc,
        };
        match &l.w {
            LinearW::F32(p) => gemm(self.isa, self.pool_opt(), m, a, lda, p, c, ldc, epi),
            LinearW::I8(p) => gemm_i8(self.isa, self.pool_opt(), m, a, lda, p, c, ldc, epi),
        }
    }

    /// Runs the transformer blocks over `x` = `[batch * seq, width]`.
    ///
    /// With `pooled = Some(pos)` only token `pos[b]` of each sequence is
    /// needed afterwards: the last block then computes keys and values for
    /// all tokens but attention, out-projection and MLP for those rows only
    /// (exact, ~6% less work), and the `[batch, width]` rows are returned.
    #[allow(clippy::too_many_arguments)]
    fn run_stack(
        &self,
        st: &Stack,
        x: &mut [f32],
        batch: usize,
        seq: usize,
        causal: bool,
        s: &mut Scratch,
        pooled: Option<&[usize]>,
    ) -> Result<Option<Vec<f32>>, EngineError> {
        let m = batch * seq;
        let w = st.width;
        s.ensure(m, st);
        let shape = AttnShape {
            batch,
            seq,
            heads: st.heads,
            head_dim: w / st.heads,
            causal,
        };
        let nblocks = st.blocks.len();
        for (li, b) in st.blocks.iter().enumerate() {
            self.ln(x, &mut s.h, m, w, &b.ln1, st.eps)?;
            self.linear(
                &b.qkv,
                m,
                &s.h,
                w,
                &mut s.qkv,
                3 * w,
                Activation::None,
                false,
            )?;
            if let (Some(pos), true) = (pooled, li + 1 == nblocks) {
                let mut rows = vec![0.0f32; batch * w];
                for (bi, &p) in pos.iter().enumerate() {
                    rows[bi * w..(bi + 1) * w].copy_from_slice(&x[(bi * seq + p) * w..][..w]);
                }
                ops::attention_at(
                    self.isa,
                    self.pool_opt(),
                    &s.qkv[..m * 3 * w],
                    &mut s.att[..batch * w],
                    shape,
                    pos,
                )?;
                self.block_tail(st, b, &mut rows, batch, s)?;
                return Ok(Some(rows));
            }
            ops::attention(
                self.isa,
                self.pool_opt(),
                &s.qkv[..m * 3 * w],
                &mut s.att[..m * w],
                shape,
            )?;
            self.block_tail(st, b, x, m, s)?;
        }
        Ok(pooled.map(|pos| {
            let mut rows = vec![0.0f32; batch * w];
            for (bi, &p) in pos.iter().enumerate() {
                rows[bi * w..(bi + 1) * w].copy_from_slice(&x[(bi * seq + p) * w..][..w]);
            }
            rows
        }))
    }

    /// The rest of a block once attention is in `s.att`: out-projection with
    /// residual, then the MLP with residual, over `m` rows of `x`.
    fn block_tail(
        &self,
        st: &Stack,
        b: &Block,
        x: &mut [f32],
        m: usize,
        s: &mut Scratch,
    ) -> Result<(), EngineError> {
        let w = st.width;
        match &b.ls {
            // Residual fused into the GEMM epilogue.
            None => self.linear(&b.out, m, &s.att, w, x, w, Activation::None, true)?,
            // LayerScale: x += gamma * out_proj(att), through a temporary.
            Some((g1, _)) => {
                self.linear(&b.out, m, &s.att, w, &mut s.h, w, Activation::None, false)?;
                add_scaled_rows(x, &s.h[..m * w], g1);
            }
        }
        self.ln(x, &mut s.h, m, w, &b.ln2, st.eps)?;
        self.linear(&b.fc, m, &s.h, w, &mut s.mlp, st.mlp, st.act, false)?;
        match &b.ls {
            None => self.linear(&b.proj, m, &s.mlp, st.mlp, x, w, Activation::None, true)?,
            Some((_, g2)) => {
                self.linear(
                    &b.proj,
                    m,
                    &s.mlp,
                    st.mlp,
                    &mut s.h,
                    w,
                    Activation::None,
                    false,
                )?;
                add_scaled_rows(x, &s.h[..m * w], g2);
            }
        }
        Ok(())
    }

    fn vision_forward(
        &self,
        pixels: &[f32],
        n: usize,
        out: &mut [f32],
        s: &mut Scratch,
    ) -> Result<(), EngineError> {
        let v = &self.vision;
        let (sz, p, g) = (v.image_size, v.patch, v.grid);
        let w = v.stack.width;
        let pdim = 3 * p * p;
        let np = g * g;
        let seq = np + 1;
        // im2col: one row per patch, ordered (channel, ky, kx) like the conv weight.
        let mut patches = reuse(std::mem::take(&mut s.patches), n * np * pdim);
        for b in 0..n {
            let img = &pixels[b * 3 * sz * sz..(b + 1) * 3 * sz * sz];
            for gy in 0..g {
                for gx in 0..g {
                    let row = &mut patches[(b * np + gy * g + gx) * pdim..][..pdim];
                    for c in 0..3 {
                        for ky in 0..p {
                            let src = &img[c * sz * sz + (gy * p + ky) * sz + gx * p..][..p];
                            row[(c * p + ky) * p..][..p].copy_from_slice(src);
                        }
                    }
                }
            }
        }
        let mut emb = reuse(std::mem::take(&mut s.emb), n * np * w);
        gemm(
            self.isa,
            self.pool_opt(),
            n * np,
            &patches,
            pdim,
            &v.patch_embed,
            &mut emb,
            w,
            Epilogue::default(),
        )?;
        s.patches = patches;
        let m = n * seq;
        let mut x = reuse(std::mem::take(&mut s.x), m * w);
        for b in 0..n {
            let xb = &mut x[b * seq * w..(b + 1) * seq * w];
            for (o, (c, q)) in xb[..w].iter_mut().zip(v.class.iter().zip(&v.pos[..w])) {
                *o = c + q;
            }
            for (i, (o, q)) in xb[w..].iter_mut().zip(&v.pos[w..]).enumerate() {
                *o = emb[b * np * w + i] + q;
            }
        }
        s.emb = emb;
        s.ensure(m, &v.stack);
        if let Some(ln) = &v.ln_pre {
            self.ln(&x, &mut s.h, m, w, ln, v.stack.eps)?;
            x.copy_from_slice(&s.h[..m * w]);
        }
        // Pool, with ln_post before or after as the config says.
        let mut pooled = vec![0.0f32; n * w];
        let eps = v.stack.eps;
        match v.pool {
            VisionPool::Tok => {
                let cls = vec![0usize; n];
                let rows = self
                    .run_stack(&v.stack, &mut x, n, seq, false, s, Some(&cls))?
                    .unwrap_or_default();
                self.ln(&rows, &mut pooled, n, w, &v.ln_post, eps)?;
            }
            VisionPool::Avg => {
                self.run_stack(&v.stack, &mut x, n, seq, false, s, None)?;
                if !v.final_ln_after_pool {
                    self.ln(&x, &mut s.h, m, w, &v.ln_post, eps)?;
                    x.copy_from_slice(&s.h[..m * w]);
                }
                for b in 0..n {
                    let acc = &mut pooled[b * w..(b + 1) * w];
                    for t in 1..seq {
                        for (a, &xv) in acc.iter_mut().zip(&x[(b * seq + t) * w..][..w]) {
                            *a += xv;
                        }
                    }
                    acc.iter_mut().for_each(|a| *a /= np as f32);
                }
                if v.final_ln_after_pool {
                    let tmp = pooled.clone();
                    self.ln(&tmp, &mut pooled, n, w, &v.ln_post, eps)?;
                }
            }
        }
        s.x = x;
        gemm(
            self.isa,
            None,
            n,
            &pooled,
            w,
            &v.proj,
            out,
            self.embed_dim,
            Epilogue::default(),
        )
    }

    /// One group of texts, run to `len` positions; `rows` = (ids, pooled position).
    fn text_forward(
        &self,
        rows: &[(&[u32], usize)],
        len: usize,
        s: &mut Scratch,
    ) -> Result<Vec<f32>, EngineError> {
        let t = &self.text;
        let w = t.stack.width;
        let n = rows.len();
        let m = n * len;
        let mut x = vec![0.0f32; m * w];
        for (b, (ids, _)) in rows.iter().enumerate() {
            for pos in 0..len {
                let id = ids.get(pos).copied().unwrap_or(t.pad) as usize;
                let xo = &mut x[(b * len + pos) * w..][..w];
                for (o, (e, q)) in xo.iter_mut().zip(
                    t.tok[id * w..(id + 1) * w]
                        .iter()
                        .zip(&t.pos[pos * w..(pos + 1) * w]),
                ) {
                    *o = e + q;
                }
            }
        }
        let pos: Vec<usize> = rows.iter().map(|r| r.1).collect();
        let last = self
            .run_stack(&t.stack, &mut x, n, len, t.causal, s, Some(&pos))?
            .unwrap_or_default();
        let mut pooled = vec![0.0f32; n * w];
        self.ln(&last, &mut pooled, n, w, &t.ln_final, t.stack.eps)?;
        let mut out = vec![0.0f32; n * self.embed_dim];
        let epi = Epilogue {
            bias: t.proj_bias.as_deref(),
            ..Epilogue::default()
        };
        gemm(
            self.isa,
            None,
            n,
            &pooled,
            w,
            &t.proj,
            &mut out,
            self.embed_dim,
            epi,
        )?;
        Ok(out)
    }
}
