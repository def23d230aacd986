//! Glue to the model core, tokenizer and image preprocessing crates: initial
//! weights (checkpoint or from scratch), the default text / image codecs and
//! saving the final model.

use std::path::Path;

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

/// The starting point of a run: the checkpoint `model` (with its preprocessing
/// config), else random weights of `arch` seeded with `seed`.
pub fn initial_weights(cfg: &TrainConfig) -> Result<(ClipConfig, Weights, Option<Value>)> {
    if let Some(path) = &cfg.model {
        let opts = LoadOptions {
            arch: cfg.arch.clone().filter(|a| !a.ends_with(".json")),
            config: None,
        };
        let lw = gclip_model::load_weights(path, &opts).map_err(model_err)?;
        return Ok((lw.config, lw.weights, lw.preprocess));
    }
    let Some(arch) = cfg.arch.as_deref() else {
        return Err(TrainError::Config(
            "set `model` (a checkpoint) or `arch` (train from scratch)".into(),
        ));
    };
    let mc = arch_config(arch)?;
    let w = Weights::random(&mc, cfg.seed).map_err(model_err)?;
    Ok((mc, w, None))
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

/// The CLIP BPE tokenizer (OpenAI vocabulary).
pub struct BpeTextEncoder(pub gclip_tokenizer::Tokenizer);

impl TextEncoder for BpeTextEncoder {
    fn encode(&self, texts: &[&str], context_length: usize) -> Result<Vec<Vec<u32>>> {
        Ok(self.0.tokenize_batch(texts, context_length))
    }
}

/// The default text encoder: [`gclip_tokenizer::Tokenizer::openai`].
pub fn default_text_encoder() -> Result<Box<dyn TextEncoder>> {
    Ok(Box::new(BpeTextEncoder(
        gclip_tokenizer::Tokenizer::openai(),
    )))
}

/// open_clip / CLIP preprocessing by `gclip-image` (Pillow-exact bicubic
/// resize, centre crop, normalisation).
pub struct ClipImageLoader(pub gclip_image::Preprocessor);

impl ImageLoader for ClipImageLoader {
    fn load(&self, path: &Path) -> Result<Vec<f32>> {
        self.0
            .preprocess_path(path)
            .map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))
    }
}

/// The image loader for a model of input side `image_size` and its
/// preprocessing config (open_clip `preprocess_cfg` or HF
/// `preprocessor_config.json`; `None`: OpenAI mean/std, bicubic, shortest side).
pub fn image_loader(image_size: usize, pre: Option<&Value>) -> Result<ClipImageLoader> {
    let size = Some((image_size, image_size));
    let mut cfg = match pre {
        Some(v) if v.get("image_mean").is_some() || v.get("crop_size").is_some() => {
            gclip_image::PreprocessConfig::from_hf(v)
                .map_err(|e| TrainError::Config(e.to_string()))?
        }
        Some(v) => gclip_image::PreprocessConfig::from_open_clip(v, size)
            .map_err(|e| TrainError::Config(e.to_string()))?,
        None => gclip_image::PreprocessConfig::default(),
    };
    // The model's input size is authoritative.
    cfg.image_size = (image_size, image_size);
    Ok(ClipImageLoader(gclip_image::Preprocessor::new(cfg)))
}

/// The default image loader for a model and its preprocessing config.
pub fn default_image_loader(mc: &ClipConfig, pre: Option<&Value>) -> Result<Box<dyn ImageLoader>> {
    Ok(Box::new(image_loader(mc.vision.image_size, pre)?))
}
