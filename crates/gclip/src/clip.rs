//! [`Clip`]: a loaded model with its tokenizer and preprocessing; the one type the CLI wraps.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use candle_core::{Device, Tensor};
use gclip_engine::{EngineModel, EngineOptions, Precision};
use gclip_image::{DecodeOptions, Preprocessor, RgbImage};
use gclip_model::{ClipConfig, ClipModel, LoadOptions};
use gclip_tokenizer::Tokenizer;
use rayon::prelude::*;

use gclip_vectors::{normalize, BoxError, Embeddings, FieldEncoder};

use crate::error::{Error, Result};
use crate::resolve::{self, CheckpointFacts, Ecosystem, ImagePipeline};
use crate::source::{materialize_default, ModelSource};

/// Default number of items per forward pass.
const DEFAULT_BATCH: usize = 16;

/// Which implementation runs the towers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// gclip's own CPU kernels (packed GEMM, fused ops, optional int8): the fast path.
    #[default]
    Engine,
    /// The candle model: the reference path, also the one training uses.
    Candle,
}

/// How a loaded model runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    pub backend: Backend,
    /// Engine precision (int8 is dynamic quantisation of the linear layers).
    pub precision: Precision,
    /// Engine worker threads; `None` = all cores.
    pub threads: Option<usize>,
    /// Whose image pipeline preprocesses images; `None` = the checkpoint's ecosystem's
    /// (see [`crate::resolve`]).
    pub image_pipeline: Option<ImagePipeline>,
}

impl RuntimeOptions {
    /// Sizes rayon's global pool like the engine, once per process (a later call, or one
    /// after the pool started, leaves it as it is). The engine path decodes images on the
    /// engine's own pool ([`Clip::on_pool`]); the global one serves the candle path.
    pub fn configure_global_threads(&self) -> Result<()> {
        if self.threads == Some(0) {
            return Err(Error::Invalid("the thread count must be at least 1".into()));
        }
        if let Some(n) = self.threads {
            // Fails only when the pool already exists: keep that one.
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global();
        }
        Ok(())
    }
}

enum Towers {
    Engine(Box<EngineModel>),
    Candle(Box<ClipModel>),
}

/// A CLIP model ready to embed: weights, tokenizer, image preprocessing.
pub struct Clip {
    towers: Towers,
    config: ClipConfig,
    logit_scale: f32,
    tokenizer: Tokenizer,
    preprocessor: Preprocessor,
    ecosystem: Ecosystem,
    image_pipeline: ImagePipeline,
    decode: DecodeOptions,
    context_length: usize,
    batch_size: usize,
    id: String,
    source: String,
    weight_files: Vec<PathBuf>,
}

/// What became of one image in [`Clip::embed_image_files_with`].
pub enum ImageOutcome {
    /// Its embedding.
    Embedded(Vec<f32>),
    /// Why it could not be embedded (the path is in the error).
    Failed(Error),
}

impl Clip {
    /// Loads a model from `source` (see [`ModelSource::resolve`]) on the fast CPU engine.
    pub fn load(source: &ModelSource) -> Result<Self> {
        Self::load_with(source, &RuntimeOptions::default())
    }

    /// Loads a model from `source` with explicit runtime options.
    pub fn load_with(source: &ModelSource, runtime: &RuntimeOptions) -> Result<Self> {
        match source {
            ModelSource::Path { path, arch } => Self::from_path(path, arch.as_deref(), runtime),
            ModelSource::Default => {
                let dir = materialize_default()?;
                let mut clip = Self::from_path(&dir, None, runtime)?;
                clip.source = source.describe();
                Ok(clip)
            }
        }
    }

    /// Loads any checkpoint the model core understands; `arch` for bare weight files.
    pub fn from_path(path: &Path, arch: Option<&str>, runtime: &RuntimeOptions) -> Result<Self> {
        let opts = LoadOptions {
            arch: arch.map(str::to_owned),
            ..Default::default()
        };
        /// The checkpoint while the towers are built.
        enum Loaded {
            /// Memory-mapped, read tensor by tensor (engine backend).
            Lazy(gclip_model::TensorSource),
            /// Every tensor materialised (candle backend).
            Eager(gclip_model::LoadedWeights),
        }
        // The engine streams tensors from the memory-mapped checkpoint and packs each as it
        // comes, so the full f32 weights are never resident next to the packed copy; the
        // candle backend needs them all as tensors.
        let loaded = match runtime.backend {
            Backend::Engine => Loaded::Lazy(gclip_model::open_tensors(path, &opts)?),
            Backend::Candle => Loaded::Eager(gclip_model::load_weights(path, &opts)?),
        };
        let (config, layout, dir, preprocess) = match &loaded {
            Loaded::Lazy(s) => (
                s.config.clone(),
                s.layout,
                s.dir.clone(),
                s.preprocess.clone(),
            ),
            Loaded::Eager(w) => (
                w.config.clone(),
                w.layout,
                w.dir.clone(),
                w.preprocess.clone(),
            ),
        };
        let codecs = resolve::codecs(
            &CheckpointFacts {
                layout,
                dir: dir.as_deref(),
                preprocess: preprocess.as_ref(),
                image_size: config.vision.image_size,
            },
            runtime.image_pipeline,
        )?;
        let id = model_id(path, &config);
        let logit_scale = match &loaded {
            Loaded::Lazy(s) => match s.shape("logit_scale") {
                Some(_) => s.get_f32("logit_scale")?.1.first().copied(),
                None => None,
            },
            Loaded::Eager(w) => w
                .weights
                .get("logit_scale")
                .map(|t| {
                    t.to_dtype(candle_core::DType::F32)?
                        .flatten_all()?
                        .to_vec1::<f32>()
                })
                .transpose()?
                .and_then(|v| v.first().copied()),
        }
        .map_or((config.logit_scale_init as f32).exp(), f32::exp);
        let towers = match &loaded {
            Loaded::Lazy(src) => {
                let opts = EngineOptions {
                    precision: runtime.precision,
                    threads: runtime.threads,
                    max_batch: None,
                };
                Towers::Engine(Box::new(EngineModel::from_source(&config, src, &opts)?))
            }
            Loaded::Eager(w) => Towers::Candle(Box::new(ClipModel::from_weights(
                config.clone(),
                &w.weights,
                &Device::Cpu,
            )?)),
        };
        // Unmap the checkpoint / free the loaded tensors before the first batch.
        drop(loaded);
        Ok(Self {
            towers,
            config: config.clone(),
            logit_scale,
            tokenizer: codecs.tokenizer,
            preprocessor: Preprocessor::new(codecs.preprocess),
            ecosystem: codecs.ecosystem,
            image_pipeline: codecs.image_pipeline,
            decode: DecodeOptions::default(),
            context_length: config.text.context_length,
            batch_size: DEFAULT_BATCH,
            id,
            source: path.display().to_string(),
            weight_files: weight_files(path),
        })
    }

    /// The model configuration.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Which implementation runs the towers, and at which precision (the candle reference
    /// path is always fp32).
    pub fn runtime(&self) -> (Backend, Precision) {
        match &self.towers {
            Towers::Engine(e) => (Backend::Engine, e.precision()),
            Towers::Candle(_) => (Backend::Candle, Precision::Fp32),
        }
    }

    /// `exp(logit_scale)`: the factor applied to cosine similarities before a softmax.
    pub fn logit_scale(&self) -> Result<f32> {
        Ok(self.logit_scale)
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    /// The ecosystem the checkpoint belongs to (it chose the tokenizer and preprocessing).
    pub fn ecosystem(&self) -> Ecosystem {
        self.ecosystem
    }

    /// Whose image pipeline preprocesses images.
    pub fn image_pipeline(&self) -> ImagePipeline {
        self.image_pipeline
    }

    /// The files holding the weights and configs (what embedding caches fingerprint).
    pub fn weight_files(&self) -> &[PathBuf] {
        &self.weight_files
    }

    /// Where the model was loaded from, for messages.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// A string identifying the weights and preprocessing (for embedding caches).
    pub fn model_id(&self) -> &str {
        &self.id
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.config.embed_dim
    }

    /// Items per forward pass (at least 1).
    pub fn set_batch_size(&mut self, batch: usize) {
        self.batch_size = batch.max(1);
    }

    /// Image decoding options (pixel limits, EXIF orientation).
    pub fn set_decode_options(&mut self, decode: DecodeOptions) {
        self.decode = decode;
    }

    /// Token ids (SOT, BPE, EOT, zero padding) for `text` at the model's context length.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        self.tokenizer.tokenize(text, self.context_length)
    }

    /// Embeds texts; texts of similar length are batched together (the text tower only runs up
    /// to the longest end-of-text position of a batch), results come back in input order.
    pub fn embed_texts<S: AsRef<str>>(&self, texts: &[S], normalized: bool) -> Result<Embeddings> {
        let ids = self.tokenizer.tokenize_batch(texts, self.context_length);
        self.embed_token_ids(&ids, normalized)
    }

    /// Embeds rows of token ids (each padded or not, at most the context length).
    pub fn embed_token_ids(&self, ids: &[Vec<u32>], normalized: bool) -> Result<Embeddings> {
        let dim = self.dim();
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].iter().rposition(|&t| t != 0).unwrap_or(0));
        let mut out = vec![0f32; ids.len() * dim];
        for chunk in order.chunks(self.batch_size) {
            let width = chunk
                .iter()
                .map(|&i| ids[i].len())
                .max()
                .unwrap_or(1)
                .max(1);
            if width > self.context_length {
                return Err(Error::Invalid(format!(
                    "{width} tokens exceed the model's context length {}",
                    self.context_length
                )));
            }
            let e: Vec<f32> = match &self.towers {
                Towers::Engine(m) => {
                    let rows: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
                    m.encode_texts(&rows)?.into_vec()
                }
                Towers::Candle(m) => {
                    let mut flat = Vec::with_capacity(chunk.len() * width);
                    for &i in chunk {
                        flat.extend_from_slice(&ids[i]);
                        flat.resize(flat.len() + width - ids[i].len(), 0);
                    }
                    let t = Tensor::from_vec(flat, (chunk.len(), width), &Device::Cpu)?;
                    m.encode_texts(&t)?.flatten_all()?.to_vec1()?
                }
            };
            for (&i, row) in chunk.iter().zip(e.chunks_exact(dim)) {
                out[i * dim..(i + 1) * dim].copy_from_slice(row);
            }
        }
        let mut emb = Embeddings::new(dim, out)?;
        if normalized {
            emb.normalize();
        }
        Ok(emb)
    }

    /// Embeds preprocessed pixels `[n, 3, S, S]` (flat, CHW per image).
    pub fn embed_pixels(&self, pixels: &[f32], normalized: bool) -> Result<Embeddings> {
        let s = self.config().vision.image_size;
        let per = 3 * s * s;
        if !pixels.len().is_multiple_of(per) {
            return Err(Error::Invalid(format!(
                "pixel buffer of {} values is not a whole number of 3x{s}x{s} images",
                pixels.len()
            )));
        }
        let n = pixels.len() / per;
        let dim = self.dim();
        let mut emb = Embeddings::empty(dim)?;
        for chunk in pixels.chunks(per * self.batch_size) {
            let e = match &self.towers {
                Towers::Engine(m) => m.encode_images(chunk, chunk.len() / per)?.into_vec(),
                Towers::Candle(m) => {
                    let t = Tensor::from_slice(chunk, (chunk.len() / per, 3, s, s), &Device::Cpu)?;
                    m.encode_images(&t)?.flatten_all()?.to_vec1::<f32>()?
                }
            };
            emb.extend(&Embeddings::new(dim, e)?)?;
        }
        debug_assert_eq!(emb.len(), n);
        if normalized {
            emb.normalize();
        }
        Ok(emb)
    }

    /// Runs `work` (rayon parallel iterators inside it included) on the engine's pool, so
    /// image decoding and the towers share one set of `--threads` threads; the candle path
    /// has no pool of its own and uses rayon's global one.
    pub fn on_pool<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        match &self.towers {
            Towers::Engine(m) => m.thread_pool().install(work),
            Towers::Candle(_) => work(),
        }
    }

    /// Embeds decoded images.
    pub fn embed_images(&self, images: &[RgbImage], normalized: bool) -> Result<Embeddings> {
        let pixels: Vec<f32> = self.on_pool(|| {
            images
                .par_iter()
                .flat_map_iter(|img| self.preprocessor.preprocess(img))
                .collect()
        });
        self.embed_pixels(&pixels, normalized)
    }

    /// Embeds image files; the first unreadable image fails the call (its path in the error).
    pub fn embed_image_files(&self, paths: &[PathBuf], normalized: bool) -> Result<Embeddings> {
        let mut emb = Embeddings::empty(self.dim())?;
        let mut failure = None;
        self.embed_image_files_with(paths, normalized, |_, outcome| match outcome {
            ImageOutcome::Embedded(v) if failure.is_none() => {
                if let Err(e) = emb.push(&v) {
                    failure = Some(e.into());
                }
            }
            ImageOutcome::Embedded(_) => {}
            ImageOutcome::Failed(e) => {
                failure.get_or_insert(e);
            }
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(emb),
        }
    }

    /// Embeds image files, reporting each one's outcome in input order. Decoding and
    /// preprocessing of the next batch run on other threads while the model computes this one.
    pub fn embed_image_files_with(
        &self,
        paths: &[PathBuf],
        normalized: bool,
        mut on_item: impl FnMut(usize, ImageOutcome),
    ) -> Result<()> {
        let s = self.config().vision.image_size;
        let per = 3 * s * s;
        std::thread::scope(|scope| -> Result<()> {
            // Two batches in flight: one being computed, one being decoded.
            let (tx, rx) = mpsc::sync_channel::<(usize, Vec<Result<Vec<f32>>>)>(1);
            let batch = self.batch_size;
            scope.spawn(move || {
                for (b, chunk) in paths.chunks(batch).enumerate() {
                    let pre: Vec<Result<Vec<f32>>> = self.on_pool(|| {
                        chunk
                            .par_iter()
                            .map(|p| {
                                // Keep the colour mode: the pipeline decides when to convert.
                                let img =
                                    gclip_image::load_image(p, &self.decode).map_err(|source| {
                                        Error::Image {
                                            path: p.clone(),
                                            source,
                                        }
                                    })?;
                                Ok(self.preprocessor.preprocess_image(&img))
                            })
                            .collect()
                    });
                    if tx.send((b * batch, pre)).is_err() {
                        return; // the consumer stopped on an error
                    }
                }
            });
            for (start, items) in rx {
                let mut pixels = Vec::with_capacity(items.len() * per);
                let mut ok_index = Vec::with_capacity(items.len());
                let mut outcomes: Vec<Option<ImageOutcome>> = Vec::with_capacity(items.len());
                for (k, item) in items.into_iter().enumerate() {
                    match item {
                        Ok(px) => {
                            pixels.extend_from_slice(&px);
                            ok_index.push(k);
                            outcomes.push(None);
                        }
                        Err(e) => outcomes.push(Some(ImageOutcome::Failed(e))),
                    }
                }
                if !ok_index.is_empty() {
                    let emb = self.embed_pixels(&pixels, false)?;
                    for (row, &k) in emb.rows().zip(&ok_index) {
                        let mut v = row.to_vec();
                        if normalized {
                            normalize(&mut v);
                        }
                        outcomes[k] = Some(ImageOutcome::Embedded(v));
                    }
                }
                for (k, o) in outcomes.into_iter().enumerate() {
                    if let Some(o) = o {
                        on_item(start + k, o);
                    }
                }
            }
            Ok(())
        })
    }
}

/// The checkpoint's weight and config files: the file itself, or a directory's weight,
/// config and tokenizer files (sharded checkpoints included).
fn weight_files(path: &Path) -> Vec<PathBuf> {
    const KINDS: [&str; 6] = ["safetensors", "bin", "pt", "pth", "json", "txt"];
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| KINDS.contains(&e))
        })
        .collect();
    files.sort();
    files
}

/// The model boundary of evaluation and caches: unnormalised embeddings, the first
/// unreadable image failing the batch.
impl FieldEncoder for &Clip {
    fn encode_texts(&mut self, texts: &[String]) -> Result<Embeddings, BoxError> {
        Ok(self.embed_texts(texts, false)?)
    }

    fn encode_images(&mut self, paths: &[PathBuf]) -> Result<Embeddings, BoxError> {
        Ok(self.embed_image_files(paths, false)?)
    }

    fn model_id(&self) -> String {
        Clip::model_id(self).to_owned()
    }

    fn weight_files(&self) -> Vec<PathBuf> {
        self.weight_files.clone()
    }
}

impl FieldEncoder for Clip {
    fn encode_texts(&mut self, texts: &[String]) -> Result<Embeddings, BoxError> {
        (&*self).encode_texts(texts)
    }

    fn encode_images(&mut self, paths: &[PathBuf]) -> Result<Embeddings, BoxError> {
        (&*self).encode_images(paths)
    }

    fn model_id(&self) -> String {
        Clip::model_id(self).to_owned()
    }

    fn weight_files(&self) -> Vec<PathBuf> {
        self.weight_files.clone()
    }
}

/// Identifies the weights for caches: path, size and modification time of the checkpoint, plus
/// the config (cheap: the weights are not hashed).
fn model_id(path: &Path, cfg: &ClipConfig) -> String {
    let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let stamp = std::fs::metadata(&canon)
        .ok()
        .and_then(|m| {
            Some((
                m.len(),
                m.modified()
                    .ok()?
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()?
                    .as_secs(),
            ))
        })
        .map(|(len, t)| format!("{len}-{t}"))
        .unwrap_or_default();
    let cfg = serde_json::to_string(cfg).unwrap_or_default();
    format!("{}|{stamp}|{cfg}", canon.display())
}
