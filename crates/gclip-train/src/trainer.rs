//! The training loop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use gclip_model::{ClipConfig, ClipModel, Weights};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::codecs::{Codecs, StartingPoint};
use crate::config::{Backend, LossKind, TrainConfig};
use crate::data::{load_dataset, Dataset, Example, Field, ImageLoader, TextEncoder};
use crate::error::{Result, TrainError};
use crate::fast::{FastState, RawBatch, RawField};
use crate::losses::{clip_loss, fuse_fields, gcl_loss};
use crate::metrics::{EvalRecord, MetricsLog, StepRecord};
use crate::optim::{clip_grad_norm, is_no_decay, AdamW, AdamWParams, GradAccumulator};
use crate::schedule::cosine_with_warmup;

/// How the run reports progress on the terminal: a bar with loss, learning rate and
/// throughput, or nothing (the JSONL log is written either way).
pub use gclip_progress::Progress;

/// What a finished run reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    /// Optimizer steps done in total (including resumed ones).
    pub steps: usize,
    /// Epochs completed.
    pub epochs: usize,
    /// Loss of the first logged step.
    pub first_loss: f32,
    /// Mean loss of the last epoch's steps.
    pub final_loss: f32,
    /// Held-out evaluations (before training, then after every epoch), if eval data was given.
    pub evals: Vec<EvalRecord>,
    /// Rows skipped for a missing or unreadable image.
    pub skipped_rows: usize,
    /// Rows rejected when reading the data (bad weight, empty side).
    pub rejected_rows: usize,
    /// Optimizer steps per second of this run (wall clock, excluding evals).
    pub steps_per_s: f64,
    /// Directory holding the final model (`open_clip/` and `hf/` inside it).
    pub model_dir: PathBuf,
}

/// Where a resumable checkpoint stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    step: usize,
    epoch: usize,
    /// Micro-batches of `epoch` already consumed.
    batch_in_epoch: usize,
    skipped_rows: usize,
    model_config: serde_json::Value,
}

/// One encoded side of a batch: per field, either token ids or pixels.
enum FieldBatch {
    Text(Tensor),
    Image(Tensor),
}

/// Decoded pixels of each field of one side (`None` for text / missing fields).
type Pixels = Vec<Option<Vec<f32>>>;

/// A micro-batch ready for the model.
struct Batch {
    left: Vec<FieldBatch>,
    right: Vec<FieldBatch>,
    left_alpha: Tensor,
    right_alpha: Tensor,
    weights: Tensor,
    left_ids: Vec<u64>,
    right_ids: Vec<u64>,
}

/// CLIP / GCL trainer over a gclip-model [`ClipModel`] held in a `VarMap`.
pub struct Trainer {
    cfg: TrainConfig,
    device: Device,
    model_cfg: ClipConfig,
    varmap: VarMap,
    model: ClipModel,
    logit_scale: Var,
    opt: AdamW,
    train: Dataset,
    eval: Option<Dataset>,
    text: Box<dyn TextEncoder>,
    images: Arc<dyn ImageLoader>,
    /// The next batch's images, decoding while this one trains.
    prefetch: Option<Prefetch>,
    preprocess: Option<serde_json::Value>,
    context_length: usize,
    step: usize,
    epoch: usize,
    batch_in_epoch: usize,
    skipped_rows: usize,
    /// Every model variable by canonical name (the fast path copies its weights into them).
    vars: Vec<(String, Var)>,
    /// The fast CPU step, when the backend is `fast` (or `auto` on a covered architecture).
    fast: Option<FastState>,
}

/// The tower a canonical (open_clip) tensor name belongs to.
fn is_image_param(name: &str) -> bool {
    name.starts_with("visual.")
}
fn is_shared_param(name: &str) -> bool {
    name == "logit_scale" || name == "logit_bias"
}

/// A batch's decoded images by path; a failure keeps its message (the row is skipped).
type Decoded = HashMap<PathBuf, std::result::Result<Vec<f32>, String>>;

/// Images of batch `key` = (epoch, batch in epoch) decoding on another thread.
struct Prefetch {
    key: (usize, usize),
    handle: std::thread::JoinHandle<Decoded>,
}

/// The distinct image files of `rows`.
fn image_paths<'a>(rows: impl IntoIterator<Item = &'a Example>) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for ex in rows {
        for f in ex.left.iter().chain(&ex.right) {
            if let Field::Image(p) = f {
                if seen.insert(p.clone()) {
                    out.push(p.clone());
                }
            }
        }
    }
    out
}

/// Decodes and preprocesses `paths` in parallel, on `pool` when given (the training step's,
/// so decoding shares its threads) and on rayon's global pool otherwise.
fn decode_images(
    loader: &dyn ImageLoader,
    pool: Option<&rayon::ThreadPool>,
    paths: Vec<PathBuf>,
) -> Decoded {
    let run = || {
        paths
            .into_par_iter()
            .map(|p| {
                let px = loader.load(&p).map_err(|e| e.to_string());
                (p, px)
            })
            .collect()
    };
    match pool {
        Some(pool) => pool.install(run),
        None => run(),
    }
}

/// Whether the optimizer updates `name`: all but a locked tower's parameters (the logit
/// scale and bias belong to neither tower).
pub(crate) fn is_trainable(name: &str, lock_image: bool, lock_text: bool) -> bool {
    let img = is_image_param(name);
    is_shared_param(name) || (img && !lock_image) || (!img && !lock_text)
}

impl Trainer {
    /// Builds a trainer whose tokenizer and image preprocessing are chosen by `resolve`
    /// once the starting point is known (the checkpoint's layout, directory and
    /// preprocessing config, or none when training from scratch). `gclip::trainer` passes
    /// the facade's per-ecosystem resolver, the one model loading uses too.
    pub fn with_codec_resolver(
        cfg: TrainConfig,
        resolve: impl FnOnce(&StartingPoint<'_>) -> Result<Codecs>,
    ) -> Result<Self> {
        cfg.validate()?;
        let init = crate::codecs::initial_weights(&cfg)?;
        let Codecs { text, images } = resolve(&init.starting_point())?;
        Self::build(
            cfg,
            init.config,
            init.weights,
            init.preprocess,
            text,
            images,
        )
    }

    /// Builds a trainer with caller-supplied codecs (custom vocabularies, tests).
    pub fn with_codecs(
        cfg: TrainConfig,
        text: Box<dyn TextEncoder>,
        images: Box<dyn ImageLoader>,
    ) -> Result<Self> {
        Self::with_codec_resolver(cfg, |_| Ok(Codecs { text, images }))
    }

    fn build(
        cfg: TrainConfig,
        model_cfg: ClipConfig,
        weights: Weights,
        preprocess: Option<serde_json::Value>,
        text: Box<dyn TextEncoder>,
        images: Box<dyn ImageLoader>,
    ) -> Result<Self> {
        let device = Device::Cpu;
        let varmap = weights
            .to_var_map(&device)
            .map_err(|e| TrainError::Model(e.to_string()))?;
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let model =
            ClipModel::new(model_cfg.clone(), vb).map_err(|e| TrainError::Model(e.to_string()))?;
        let vars = named_vars(&varmap)?;
        let logit_scale = vars
            .iter()
            .find(|(n, _)| n == "logit_scale")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| TrainError::Model("the model has no logit_scale".into()))?;
        let trainable: Vec<(String, Var)> = vars
            .iter()
            .filter(|(n, _)| is_trainable(n, cfg.lock_image, cfg.lock_text))
            .cloned()
            .collect();
        let trainable_names: Vec<String> = trainable.iter().map(|(n, _)| n.clone()).collect();
        let opt = AdamW::new(
            trainable,
            AdamWParams {
                beta1: cfg.beta1,
                beta2: cfg.beta2,
                eps: cfg.eps,
                weight_decay: cfg.weight_decay,
            },
            is_no_decay,
        )?;
        let adam = gclip_fasttrain::optim::AdamWConfig {
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
        };
        let fast = match cfg.backend {
            Backend::Candle => None,
            Backend::Fast => Some(FastState::new(
                &model_cfg,
                &weights,
                &trainable_names,
                adam,
                is_no_decay,
            )?),
            Backend::Auto => {
                match FastState::new(&model_cfg, &weights, &trainable_names, adam, is_no_decay) {
                    Ok(f) => Some(f),
                    Err(TrainError::Config(why)) => {
                        tracing::info!("training on candle: {why}");
                        None
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let mut train = Dataset::default();
        for path in std::iter::once(&cfg.data).chain(&cfg.extra_data) {
            let part = load_dataset(path, &cfg)?;
            for (row, why) in &part.rejected {
                tracing::warn!("{} row {row} rejected: {why}", path.display());
            }
            train.extend(part);
        }
        if !cfg.dedup_negatives {
            train.make_ids_distinct();
        }
        let eval = match &cfg.eval_data {
            Some(p) => Some(load_dataset(p, &cfg)?),
            None => None,
        };
        let context_length = cfg.context_length.unwrap_or(model_cfg.text.context_length);
        if context_length > model_cfg.text.context_length || context_length < 2 {
            return Err(TrainError::Config(format!(
                "context length {context_length} outside 2..={}",
                model_cfg.text.context_length
            )));
        }
        let mut t = Trainer {
            cfg,
            device,
            model_cfg,
            varmap,
            model,
            logit_scale,
            opt,
            train,
            eval,
            text,
            images: Arc::from(images),
            prefetch: None,
            preprocess,
            context_length,
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            skipped_rows: 0,
            vars,
            fast,
        };
        if let Some(dir) = t.cfg.resume.clone() {
            t.load_checkpoint(&dir)?;
        }
        Ok(t)
    }

    /// The model configuration being trained.
    pub fn model_config(&self) -> &ClipConfig {
        &self.model_cfg
    }

    /// The live model (weights are the `VarMap`'s variables).
    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    /// Which implementation runs the training step.
    pub fn backend(&self) -> Backend {
        if self.fast.is_some() {
            Backend::Fast
        } else {
            Backend::Candle
        }
    }

    /// Copies the fast model's weights into the candle variables, which checkpoints,
    /// evaluation and the saved model read.
    fn sync(&self) -> Result<()> {
        match &self.fast {
            Some(f) => f.sync_to(&self.vars),
            None => Ok(()),
        }
    }

    /// Current values of every tensor, canonical open_clip names.
    pub fn weights(&self) -> Result<Weights> {
        self.sync()?;
        Weights::from_var_map(&self.varmap).map_err(|e| TrainError::Model(e.to_string()))
    }

    /// The optimizer (for inspecting groups).
    pub fn optimizer(&self) -> &AdamW {
        &self.opt
    }

    /// Number of micro-batches per epoch (the last incomplete batch is dropped
    /// unless it is the only one).
    pub fn batches_per_epoch(&self) -> usize {
        let n = self.train.examples.len();
        (n / self.cfg.batch_size).max(usize::from(n >= 2))
    }

    /// Optimizer steps of the whole run.
    pub fn total_steps(&self) -> usize {
        let per_epoch = self.batches_per_epoch().div_ceil(self.cfg.accum_steps);
        let all = per_epoch * self.cfg.epochs;
        self.cfg.max_steps.map_or(all, |m| m.min(all))
    }

    fn epoch_order(&self, epoch: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.train.examples.len()).collect();
        // A fresh stream per epoch makes a resumed run see the same order.
        let mut rng = ChaCha8Rng::seed_from_u64(
            self.cfg
                .seed
                .wrapping_mul(0x9E37_79B9)
                .wrapping_add(epoch as u64),
        );
        idx.shuffle(&mut rng);
        idx
    }

    /// Encodes the examples into model inputs; rows whose image cannot be read
    /// are dropped (and reported). Returns `None` when fewer than 2 rows remain.
    fn make_batch(&mut self, rows: &[&Example], decoded: &Decoded) -> Result<Option<Batch>> {
        let size = self.model_cfg.vision.image_size;
        let mut kept: Vec<(&Example, Pixels, Pixels)> = Vec::new();
        'rows: for ex in rows {
            let mut sides = [Vec::new(), Vec::new()];
            for (s, fields) in [&ex.left, &ex.right].into_iter().enumerate() {
                for f in fields {
                    sides[s].push(match f {
                        Field::Image(p) => match decoded
                            .get(p)
                            .cloned()
                            .unwrap_or_else(|| Err("not decoded".into()))
                        {
                            Ok(px) if px.len() == 3 * size * size => Some(px),
                            Ok(px) => {
                                tracing::warn!(
                                    "row {}: {} gave {} values, expected {}",
                                    ex.row,
                                    p.display(),
                                    px.len(),
                                    3 * size * size
                                );
                                self.skipped_rows += 1;
                                continue 'rows;
                            }
                            Err(e) => {
                                tracing::warn!(
                                    "row {} skipped: image {}: {e}",
                                    ex.row,
                                    p.display()
                                );
                                self.skipped_rows += 1;
                                continue 'rows;
                            }
                        },
                        _ => None,
                    });
                }
            }
            let [l, r] = sides;
            kept.push((ex, l, r));
        }
        if kept.len() < 2 {
            return Ok(None);
        }
        let n = kept.len();
        let encode_side = |right: bool| -> Result<(Vec<FieldBatch>, Tensor)> {
            let (keys, wts) = if right {
                (&self.cfg.right_keys, &self.cfg.right_weights)
            } else {
                (&self.cfg.left_keys, &self.cfg.left_weights)
            };
            let mut fields = Vec::new();
            let mut alpha = Vec::with_capacity(keys.len() * n);
            for (k, w) in wts.iter().enumerate().take(keys.len()) {
                let is_image = self.cfg.image_keys.contains(&keys[k]);
                let mut texts: Vec<&str> = Vec::new();
                let mut pixels: Vec<f32> = Vec::new();
                for (ex, l, r) in &kept {
                    let (f, px) = if right {
                        (&ex.right[k], &r[k])
                    } else {
                        (&ex.left[k], &l[k])
                    };
                    let present = !matches!(f, Field::Missing);
                    alpha.push(if present { *w } else { 0.0 });
                    if is_image {
                        match px {
                            Some(p) => pixels.extend_from_slice(p),
                            None => pixels.extend(std::iter::repeat_n(0.0, 3 * size * size)),
                        }
                    } else {
                        texts.push(match f {
                            Field::Text(t) => t.as_str(),
                            _ => "",
                        });
                    }
                }
                fields.push(if is_image {
                    FieldBatch::Image(Tensor::from_vec(pixels, (n, 3, size, size), &self.device)?)
                } else {
                    let ids = self.text.encode(&texts, self.context_length)?;
                    let flat: Vec<u32> = ids.iter().flat_map(|r| r.iter().copied()).collect();
                    if flat.len() != n * self.context_length {
                        return Err(TrainError::Data(
                            "tokenizer returned rows of the wrong length".into(),
                        ));
                    }
                    FieldBatch::Text(Tensor::from_vec(
                        flat,
                        (n, self.context_length),
                        &self.device,
                    )?)
                });
            }
            let alpha = Tensor::from_vec(alpha, (keys.len(), n), &self.device)?;
            Ok((fields, alpha))
        };
        let (left, left_alpha) = encode_side(false)?;
        let (right, right_alpha) = encode_side(true)?;
        let w: Vec<f32> = kept.iter().map(|(e, _, _)| e.weight).collect();
        if w.iter().sum::<f32>() <= 0.0 {
            return Ok(None);
        }
        Ok(Some(Batch {
            left,
            right,
            left_alpha,
            right_alpha,
            weights: Tensor::from_vec(w, n, &self.device)?,
            left_ids: kept.iter().map(|(e, _, _)| e.left_id).collect(),
            right_ids: kept.iter().map(|(e, _, _)| e.right_id).collect(),
        }))
    }

    /// The pool image decoding runs on: the fast step's, else rayon's global one.
    fn decode_pool(&self) -> Option<Arc<rayon::ThreadPool>> {
        self.fast.as_ref().and_then(FastState::thread_pool)
    }

    /// Starts decoding batch `key`'s images on another thread.
    fn start_prefetch(&mut self, key: (usize, usize), paths: Vec<PathBuf>) {
        self.finish_prefetch();
        let (loader, pool) = (Arc::clone(&self.images), self.decode_pool());
        let handle = std::thread::spawn(move || decode_images(&*loader, pool.as_deref(), paths));
        self.prefetch = Some(Prefetch { key, handle });
    }

    /// Waits for a prefetch nobody will use (the run stopped, or resumed elsewhere).
    fn finish_prefetch(&mut self) {
        if let Some(p) = self.prefetch.take() {
            let _ = p.handle.join();
        }
    }

    /// Batch `b` of `epoch`'s images: the prefetched ones when they are that batch's,
    /// else decoded now.
    fn batch_images(&mut self, epoch: usize, b: usize, rows: &[&Example]) -> Result<Decoded> {
        match self.prefetch.take() {
            Some(p) if p.key == (epoch, b) => p
                .handle
                .join()
                .map_err(|_| TrainError::Data("the image decoding thread panicked".into())),
            stale => {
                if let Some(p) = stale {
                    let _ = p.handle.join();
                }
                Ok(decode_images(
                    &*self.images,
                    self.decode_pool().as_deref(),
                    image_paths(rows.iter().copied()),
                ))
            }
        }
    }

    fn encode_fields(&self, fields: &[FieldBatch]) -> Result<Vec<Tensor>> {
        fields
            .iter()
            .map(|f| {
                let (emb, locked) = match f {
                    FieldBatch::Image(x) => (self.model.encode_images(x), self.cfg.lock_image),
                    FieldBatch::Text(ids) => (self.model.encode_texts(ids), self.cfg.lock_text),
                };
                let emb = emb.map_err(|e| TrainError::Model(e.to_string()))?;
                // A locked tower's output is cut from the graph: no backward through it.
                Ok(if locked { emb.detach() } else { emb })
            })
            .collect()
    }

    fn batch_loss(&self, b: &Batch) -> Result<Tensor> {
        let left = fuse_fields(&self.encode_fields(&b.left)?, &b.left_alpha)?;
        let right = fuse_fields(&self.encode_fields(&b.right)?, &b.right_alpha)?;
        let scale = self.logit_scale.as_tensor();
        match self.cfg.loss {
            LossKind::Clip => clip_loss(&left, &right, scale),
            LossKind::Gcl => gcl_loss(&left, &right, scale, &b.weights, &b.left_ids, &b.right_ids),
        }
    }

    /// Runs the remaining epochs, logging to `output/metrics.jsonl`, plotting
    /// `output/curves.png`, checkpointing every `saveEvery` steps and saving
    /// the final model under `output/final/{open_clip,hf}`.
    pub fn run(&mut self, progress: Progress) -> Result<TrainSummary> {
        let out = self.cfg.output.clone();
        std::fs::create_dir_all(&out).map_err(|e| TrainError::io(&out, e))?;
        let mut log = MetricsLog::open(&out)?;
        log.truncate_after(self.step);
        let total = self.total_steps();
        let bar = (progress == Progress::Bar).then(|| {
            let pb = progress.bar_with(
                total as u64,
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
                "",
            );
            pb.set_position(self.step as u64);
            pb
        });
        if self.step == 0 && self.eval.is_some() {
            let r = self.evaluate()?;
            log.eval(r)?;
        }
        let started = Instant::now();
        let mut eval_time = 0.0;
        let start_step = self.step;
        let bs = self.cfg.batch_size;
        let mut epoch_losses: Vec<f32> = Vec::new();
        'epochs: while self.epoch < self.cfg.epochs {
            let order = self.epoch_order(self.epoch);
            let nb = self.batches_per_epoch();
            let mut acc = GradAccumulator::new();
            let mut step_loss = 0f32;
            let mut step_rows = 0usize;
            let mut t_step = Instant::now();
            epoch_losses.clear();
            while self.batch_in_epoch < nb {
                if self.step >= total {
                    break 'epochs;
                }
                let b = self.batch_in_epoch;
                let idx = &order[b * bs..((b + 1) * bs).min(order.len())];
                let rows: Vec<Example> = idx
                    .iter()
                    .map(|&i| self.train.examples[i].clone())
                    .collect();
                let refs: Vec<&Example> = rows.iter().collect();
                let decoded = self.batch_images(self.epoch, b, &refs)?;
                if b + 1 < nb {
                    let next = &order[(b + 1) * bs..((b + 2) * bs).min(order.len())];
                    let paths = image_paths(next.iter().map(|&i| &self.train.examples[i]));
                    self.start_prefetch((self.epoch, b + 1), paths);
                }
                self.batch_in_epoch += 1;
                if let Some(batch) = self.make_batch(&refs, &decoded)? {
                    let lv = match self.fast.is_some() {
                        true => {
                            let raw = raw_batch(&batch)?;
                            let gcl = self.cfg.loss == LossKind::Gcl;
                            let (li, lt) = (self.cfg.lock_image, self.cfg.lock_text);
                            let f = self.fast.as_mut().expect("checked above");
                            f.micro_step(&raw, gcl, li, lt)?
                        }
                        false => {
                            let loss = self.batch_loss(&batch)?;
                            let lv = loss.to_scalar::<f32>()?;
                            if lv.is_finite() {
                                let grads = loss.backward()?;
                                acc.add(&grads, self.opt.vars())?;
                            }
                            lv
                        }
                    };
                    if !lv.is_finite() {
                        return Err(TrainError::NonFiniteLoss {
                            step: self.step,
                            value: lv,
                        });
                    }
                    step_loss += lv;
                    step_rows += batch.left_ids.len();
                }
                let boundary = self.batch_in_epoch.is_multiple_of(self.cfg.accum_steps)
                    || self.batch_in_epoch == nb;
                let pending = match &self.fast {
                    Some(f) => f.micro_count(),
                    None => acc.count(),
                };
                if boundary && pending > 0 {
                    let micro = pending;
                    let lr = cosine_with_warmup(self.step, self.cfg.lr, self.cfg.warmup, total);
                    let (norm, scale) = match &mut self.fast {
                        Some(f) => f.update(lr, self.cfg.max_grad_norm)?,
                        None => {
                            let mut grads = acc.take()?;
                            let norm = match self.cfg.max_grad_norm {
                                Some(m) => clip_grad_norm(&mut grads, m)?,
                                None => crate::optim::grad_norm(&grads)?,
                            };
                            self.opt.step(&grads, lr)?;
                            // open_clip clamps the scale after every update.
                            let ls = self.logit_scale.as_tensor().clamp(0f32, 100f32.ln())?;
                            self.logit_scale.set(&ls)?;
                            (norm, ls.exp()?.to_vec0::<f32>()?)
                        }
                    };
                    self.step += 1;
                    let secs = t_step.elapsed().as_secs_f64().max(1e-9);
                    t_step = Instant::now();
                    let rec = StepRecord {
                        step: self.step,
                        epoch: self.epoch,
                        loss: step_loss / micro as f32,
                        lr,
                        grad_norm: norm,
                        logit_scale: scale,
                        samples_per_s: step_rows as f64 / secs,
                        skipped_rows: self.skipped_rows,
                    };
                    if let Some(pb) = &bar {
                        pb.set_position(self.step as u64);
                        pb.set_message(format!(
                            "loss {:.4} lr {:.2e} {:.1} pairs/s",
                            rec.loss, rec.lr, rec.samples_per_s
                        ));
                    }
                    epoch_losses.push(rec.loss);
                    log.step(rec)?;
                    step_loss = 0.0;
                    step_rows = 0;
                    if self.cfg.save_every > 0 && self.step.is_multiple_of(self.cfg.save_every) {
                        self.save_checkpoint(
                            &out.join("checkpoints")
                                .join(format!("step-{:06}", self.step)),
                        )?;
                        log.plot(&out)?;
                    }
                }
            }
            self.epoch += 1;
            self.batch_in_epoch = 0;
            if self.eval.is_some() {
                let t = Instant::now();
                let r = self.evaluate()?;
                eval_time += t.elapsed().as_secs_f64();
                log.eval(r)?;
            }
        }
        self.finish_prefetch();
        if let Some(pb) = &bar {
            pb.finish();
        }
        let secs = (started.elapsed().as_secs_f64() - eval_time).max(1e-9);
        self.save_checkpoint(&out.join("checkpoints").join("last"))?;
        let model_dir = out.join("final");
        self.save_model(&model_dir)?;
        log.plot(&out)?;
        let final_loss = if epoch_losses.is_empty() {
            log.steps.last().map_or(f32::NAN, |s| s.loss)
        } else {
            epoch_losses.iter().sum::<f32>() / epoch_losses.len() as f32
        };
        Ok(TrainSummary {
            steps: self.step,
            epochs: self.epoch,
            first_loss: log.steps.first().map_or(f32::NAN, |s| s.loss),
            final_loss,
            evals: log.evals.clone(),
            skipped_rows: self.skipped_rows,
            rejected_rows: self.train.rejected.len(),
            steps_per_s: (self.step - start_step) as f64 / secs,
            model_dir,
        })
    }

    /// Recall@1/@5 (left to right) and loss on the eval rows, batched like
    /// training; a retrieved right item is a hit when it has the query row's
    /// right id. Without eval data, an error.
    pub fn evaluate(&mut self) -> Result<EvalRecord> {
        self.sync()?;
        let Some(ds) = self.eval.take() else {
            return Err(TrainError::Config("no evalData configured".into()));
        };
        let r = self.evaluate_on(&ds);
        self.eval = Some(ds);
        r
    }

    fn evaluate_on(&mut self, ds: &Dataset) -> Result<EvalRecord> {
        let mut lefts = Vec::new();
        let mut rights = Vec::new();
        let mut lids = Vec::new();
        let mut rids = Vec::new();
        let mut losses = Vec::new();
        for chunk in ds.examples.chunks(self.cfg.batch_size) {
            let refs: Vec<&Example> = chunk.iter().collect();
            let decoded = decode_images(
                &*self.images,
                self.decode_pool().as_deref(),
                image_paths(refs.iter().copied()),
            );
            let Some(b) = self.make_batch(&refs, &decoded)? else {
                continue;
            };
            let l = fuse_fields(&self.encode_fields(&b.left)?, &b.left_alpha)?.detach();
            let r = fuse_fields(&self.encode_fields(&b.right)?, &b.right_alpha)?.detach();
            let scale = self.logit_scale.as_tensor().detach();
            let loss = match self.cfg.loss {
                LossKind::Clip => clip_loss(&l, &r, &scale)?,
                LossKind::Gcl => gcl_loss(&l, &r, &scale, &b.weights, &b.left_ids, &b.right_ids)?,
            };
            losses.push(loss.to_scalar::<f32>()?);
            lefts.push(l);
            rights.push(r);
            lids.extend(b.left_ids);
            rids.extend(b.right_ids);
        }
        if lefts.is_empty() {
            return Err(TrainError::Data("no usable eval rows".into()));
        }
        let l = Tensor::cat(&lefts, 0)?;
        let r = Tensor::cat(&rights, 0)?;
        let (r1, r5) = recall_at(&l, &r, &lids, &rids)?;
        Ok(EvalRecord {
            step: self.step,
            recall_at_1: r1,
            recall_at_5: r5,
            loss: losses.iter().sum::<f32>() / losses.len() as f32,
        })
    }

    /// Writes a resumable checkpoint (model, optimizer state, position) to `dir`.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        self.sync()?;
        self.varmap.save(dir.join("model.safetensors"))?;
        match &self.fast {
            Some(f) => f.save_optimizer(&dir.join("optimizer.safetensors"))?,
            None => self.opt.save(&dir.join("optimizer.safetensors"))?,
        }
        let st = CheckpointState {
            step: self.step,
            epoch: self.epoch,
            batch_in_epoch: self.batch_in_epoch,
            skipped_rows: self.skipped_rows,
            model_config: self
                .model_cfg
                .to_open_clip_json()
                .map_err(|e| TrainError::Model(e.to_string()))?,
        };
        let p = dir.join("state.json");
        let text =
            serde_json::to_string_pretty(&st).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        std::fs::write(&p, text).map_err(|e| TrainError::io(&p, e))
    }

    fn load_checkpoint(&mut self, dir: &Path) -> Result<()> {
        let p = dir.join("state.json");
        let text = std::fs::read_to_string(&p).map_err(|e| TrainError::io(&p, e))?;
        let st: CheckpointState = serde_json::from_str(&text)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", p.display())))?;
        let ckpt_cfg = ClipConfig::from_open_clip_json(&st.model_config)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", p.display())))?;
        if ckpt_cfg != self.model_cfg {
            return Err(TrainError::Checkpoint(format!(
                "{} was written for another architecture than the configured model",
                dir.display()
            )));
        }
        let mp = dir.join("model.safetensors");
        self.varmap
            .load(&mp)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", mp.display())))?;
        self.opt.load(&dir.join("optimizer.safetensors"))?;
        if let Some(f) = &mut self.fast {
            f.load(&self.vars, &dir.join("optimizer.safetensors"))?;
        }
        self.step = st.step;
        self.epoch = st.epoch;
        self.batch_in_epoch = st.batch_in_epoch;
        self.skipped_rows = st.skipped_rows;
        Ok(())
    }

    /// Saves the current model in the open_clip (`dir/open_clip`) and Hugging
    /// Face (`dir/hf`) layouts.
    pub fn save_model(&self, dir: &Path) -> Result<()> {
        let w = self.weights()?;
        crate::codecs::save_model(&self.model_cfg, &w, self.preprocess.as_ref(), dir)
    }
}

/// The fast step's inputs from a candle batch (the same rows, weights and ids).
fn raw_batch(b: &Batch) -> Result<RawBatch> {
    let side = |fields: &[FieldBatch]| -> Result<Vec<RawField>> {
        fields
            .iter()
            .map(|f| {
                Ok(match f {
                    FieldBatch::Text(ids) => RawField::Text(ids.to_vec2::<u32>()?),
                    FieldBatch::Image(px) => RawField::Image(px.flatten_all()?.to_vec1::<f32>()?),
                })
            })
            .collect()
    };
    Ok(RawBatch {
        n: b.left_ids.len(),
        left: side(&b.left)?,
        left_alpha: b.left_alpha.flatten_all()?.to_vec1::<f32>()?,
        right: side(&b.right)?,
        right_alpha: b.right_alpha.flatten_all()?.to_vec1::<f32>()?,
        weights: b.weights.to_vec1::<f32>()?,
        left_ids: b.left_ids.clone(),
        right_ids: b.right_ids.clone(),
    })
}

fn named_vars(vm: &VarMap) -> Result<Vec<(String, Var)>> {
    let data = vm
        .data()
        .lock()
        .map_err(|_| TrainError::Model("VarMap mutex poisoned".into()))?;
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

/// Left-to-right recall@1 and @5 of `left` rows against all `right` rows
/// (both normalised); right row `j` is relevant to left row `i` when it is
/// row `i`'s document (`right_ids[j] == right_ids[i]`) or was paired with the
/// same query (`left_ids[j] == left_ids[i]`).
pub fn recall_at(
    left: &Tensor,
    right: &Tensor,
    left_ids: &[u64],
    right_ids: &[u64],
) -> Result<(f32, f32)> {
    let sims: Vec<Vec<f32>> = left.matmul(&right.t()?)?.to_vec2()?;
    let mut hits = [0usize; 2];
    for (i, row) in sims.iter().enumerate() {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        for (h, k) in hits.iter_mut().zip([1usize, 5]) {
            if order
                .iter()
                .take(k)
                .any(|&j| right_ids[j] == right_ids[i] || left_ids[j] == left_ids[i])
            {
                *h += 1;
            }
        }
    }
    let n = sims.len().max(1) as f32;
    Ok((hits[0] as f32 / n, hits[1] as f32 / n))
}
