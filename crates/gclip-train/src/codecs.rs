//! Glue to the model core, tokenizer and image preprocessing crates: initial
//! weights (checkpoint or from scratch), the text / image codecs and saving the
//! final model.
//!
//! Which tokenizer and preprocessing a checkpoint needs is decided by its
//! ecosystem (open_clip or transformers); that rule lives in the `gclip`
//! facade, which hands its choice to [`crate::Trainer::with_codec_resolver`].

use std::path::{Path, PathBuf};

use gclip_model::{ClipConfig, Layout, LoadOptions, Weights};
use serde_json::Value;

use crate::config::TrainConfig;
use crate::data::{ImageLoader, TextEncoder};
use crate::error::{Result, TrainError};

fn model_err(e: impl std::fmt::Display) -> TrainError {
    TrainError::Model(e.to_string())
}

/// Resolves `arch`: a built-in open_clip name, or a JSON file holding an
/// open_clip model config (bare or wrapped as `{model_cfg: ...}`).
pub fn arch_config(arch: &str) -> Result<ClipConfig> {
    let p = Path::new(arch);
    if arch.ends_with(".json") || p.is_file() {
        let text = std::fs::read_to_string(p).map_err(|e| TrainError::io(p, e))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| TrainError::Config(format!("{arch}: {e}")))?;
        let m = v.get("model_cfg").unwrap_or(&v);
        return ClipConfig::from_open_clip_json(m)
            .map_err(|e| TrainError::Config(format!("{arch}: {e}")));
    }
    gclip_model::arch::by_name(arch).map_err(|e| TrainError::Config(e.to_string()))
}

/// The checkpoint a run starts from, as the codec resolver sees it.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointInfo<'a> {
    /// The path given as `model`.
    pub path: &'a Path,
    /// The layout detected.
    pub layout: Layout,
    /// The model directory (tokenizer / preprocessor files), if there is one.
    pub dir: Option<&'a Path>,
    /// Raw preprocessing config: open_clip `preprocess_cfg` or HF `preprocessor_config.json`.
    pub preprocess: Option<&'a Value>,
}

/// What a codec resolver is told about the run.
#[derive(Debug, Clone, Copy)]
pub struct StartingPoint<'a> {
    /// The architecture being trained.
    pub config: &'a ClipConfig,
    /// The checkpoint fine-tuned; `None` when training from scratch.
    pub checkpoint: Option<CheckpointInfo<'a>>,
}

/// The tokenizer and image loader of a run.
pub struct Codecs {
    pub text: Box<dyn TextEncoder>,
    pub images: Box<dyn ImageLoader>,
}

/// Initial weights and where they came from.
pub struct Initial {
    pub config: ClipConfig,
    pub weights: Weights,
    pub preprocess: Option<Value>,
    /// Layout, directory and path of the checkpoint; `None` for random weights.
    pub checkpoint: Option<(Layout, Option<PathBuf>, PathBuf)>,
}

impl Initial {
    /// The view a codec resolver gets.
    pub fn starting_point(&self) -> StartingPoint<'_> {
        StartingPoint {
            config: &self.config,
            checkpoint: self
                .checkpoint
                .as_ref()
                .map(|(layout, dir, path)| CheckpointInfo {
                    path,
                    layout: *layout,
                    dir: dir.as_deref(),
                    preprocess: self.preprocess.as_ref(),
                }),
        }
    }
}

/// The starting point of a run: the checkpoint `model` (with its preprocessing
/// config), else random weights of `arch` seeded with `seed`.
pub fn initial_weights(cfg: &TrainConfig) -> Result<Initial> {
    if let Some(path) = &cfg.model {
        let opts = LoadOptions {
            arch: cfg.arch.clone().filter(|a| !a.ends_with(".json")),
            config: None,
        };
        let lw = gclip_model::load_weights(path, &opts).map_err(model_err)?;
        return Ok(Initial {
            config: lw.config,
            weights: lw.weights,
            preprocess: lw.preprocess,
            checkpoint: Some((lw.layout, lw.dir, path.clone())),
        });
    }
    let Some(arch) = cfg.arch.as_deref() else {
        return Err(TrainError::Config(
            "set `model` (a checkpoint) or `arch` (train from scratch)".into(),
        ));
    };
    let mc = arch_config(arch)?;
    let w = Weights::random(&mc, cfg.seed).map_err(model_err)?;
    Ok(Initial {
        config: mc,
        weights: w,
        preprocess: None,
        checkpoint: None,
    })
}

/// Writes `dir/open_clip` and `dir/hf` (both loadable by open_clip /
/// transformers and by `gclip_model::load_weights`).
pub fn save_model(
    mc: &ClipConfig,
    w: &Weights,
    preprocess: Option<&Value>,
    dir: &Path,
) -> Result<()> {
    gclip_model::save(w, mc, &dir.join("open_clip"), Layout::OpenClip, preprocess)
        .map_err(model_err)?;
    gclip_model::save(w, mc, &dir.join("hf"), Layout::Hf, preprocess).map_err(model_err)
}

/// A CLIP BPE tokenizer (the OpenAI vocabulary or one loaded from a checkpoint).
pub struct BpeTextEncoder(pub gclip_tokenizer::Tokenizer);

impl TextEncoder for BpeTextEncoder {
    fn encode(&self, texts: &[&str], context_length: usize) -> Result<Vec<Vec<u32>>> {
        Ok(self.0.tokenize_batch(texts, context_length))
    }
}

/// CLIP preprocessing by `gclip-image` (Pillow-exact resize, centre crop,
/// normalisation) with the configuration the caller chose.
pub struct ClipImageLoader(pub gclip_image::Preprocessor);

impl ImageLoader for ClipImageLoader {
    fn load(&self, path: &Path) -> Result<Vec<f32>> {
        self.0
            .preprocess_path(path)
            .map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))
    }
}
