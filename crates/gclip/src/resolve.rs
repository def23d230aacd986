//! One rule per checkpoint ecosystem: which tokenizer and which image preprocessing a
//! checkpoint needs. [`crate::Clip`], [`crate::trainer`] (fine-tuning) and `gclip preprocess`
//! all ask this module, so a model is never embedded one way and trained another.
//!
//! * **open_clip** (an open_clip directory, a bare weight file with an architecture name, an
//!   open_clip training checkpoint): the OpenAI BPE vocabulary open_clip bundles, and
//!   `preprocess_cfg` of `open_clip_config.json` at the tower's image size
//!   ([`PreprocessConfig::from_open_clip`]); OpenAI defaults when there is none.
//! * **transformers** (a Hugging Face `CLIPModel` directory): the tokenizer files beside the
//!   weights (`tokenizer.json`, or `vocab.json` + `merges.txt`) and `preprocessor_config.json`
//!   ([`PreprocessConfig::from_hf`]).

use std::path::Path;

use gclip_image::PreprocessConfig;
use gclip_model::Layout;
use gclip_tokenizer::Tokenizer;
use serde_json::Value;

use crate::error::{Error, Result};

/// The software a checkpoint was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ecosystem {
    /// open_clip (and OpenAI's original CLIP release).
    OpenClip,
    /// Hugging Face transformers.
    Transformers,
}

impl Ecosystem {
    /// The ecosystem of a detected checkpoint layout: HF directories are transformers',
    /// everything else (open_clip directories, bare files, training checkpoints) open_clip's.
    pub fn of_layout(layout: Layout) -> Self {
        match layout {
            Layout::Hf => Ecosystem::Transformers,
            Layout::OpenClip | Layout::Bare => Ecosystem::OpenClip,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Ecosystem::OpenClip => "open_clip",
            Ecosystem::Transformers => "transformers",
        }
    }
}

/// Whose image pipeline (decoding and colour conversion, resize, crop, normalisation) runs:
/// by default the checkpoint's own ecosystem's; set to reproduce the other one's pixels.
pub use gclip_image::ImagePipeline;

impl Ecosystem {
    /// The image pipeline this ecosystem's reference software runs.
    pub fn image_pipeline(self) -> ImagePipeline {
        match self {
            Ecosystem::OpenClip => ImagePipeline::OpenClip,
            Ecosystem::Transformers => ImagePipeline::Transformers,
        }
    }
}

impl std::fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the resolver needs to know of a checkpoint (all of it known once its layout is
/// detected, before any tensor is read).
#[derive(Debug, Clone, Copy)]
pub struct CheckpointFacts<'a> {
    pub layout: Layout,
    /// The model directory, if there is one (tokenizer files live there).
    pub dir: Option<&'a Path>,
    /// Raw preprocessing config: open_clip `preprocess_cfg` or HF `preprocessor_config.json`.
    pub preprocess: Option<&'a Value>,
    /// The vision tower's input side; the preprocessing always produces it.
    pub image_size: usize,
}

/// A checkpoint's tokenizer and image preprocessing.
#[derive(Debug, Clone)]
pub struct Codecs {
    pub ecosystem: Ecosystem,
    /// Whose image pipeline the preprocessing follows (the ecosystem's unless overridden).
    pub image_pipeline: ImagePipeline,
    pub tokenizer: Tokenizer,
    pub preprocess: PreprocessConfig,
}

/// The tokenizer and preprocessing of a checkpoint; `pipeline` overrides the ecosystem's
/// image pipeline.
pub fn codecs(facts: &CheckpointFacts<'_>, pipeline: Option<ImagePipeline>) -> Result<Codecs> {
    let ecosystem = Ecosystem::of_layout(facts.layout);
    Ok(Codecs {
        ecosystem,
        image_pipeline: pipeline.unwrap_or(ecosystem.image_pipeline()),
        tokenizer: tokenizer(ecosystem, facts.dir)?,
        preprocess: preprocess(ecosystem, facts.preprocess, facts.image_size, pipeline)?,
    })
}

/// The tokenizer of a checkpoint of `ecosystem` stored in `dir`.
pub fn tokenizer(ecosystem: Ecosystem, dir: Option<&Path>) -> Result<Tokenizer> {
    match (ecosystem, dir) {
        (Ecosystem::Transformers, Some(dir)) if has_tokenizer_files(dir) => {
            Ok(Tokenizer::from_dir(dir)?)
        }
        (Ecosystem::Transformers, _) => {
            tracing::warn!(
                dir = ?dir,
                "no tokenizer.json or vocab.json + merges.txt beside the HF checkpoint; \
                 using the OpenAI CLIP vocabulary"
            );
            Ok(Tokenizer::openai())
        }
        (Ecosystem::OpenClip, _) => Ok(Tokenizer::openai()),
    }
}

/// The preprocessing of a checkpoint of `ecosystem` whose raw config is `raw`, producing
/// `image_size` squares; `pipeline` overrides whose pipeline runs.
pub fn preprocess(
    ecosystem: Ecosystem,
    raw: Option<&Value>,
    image_size: usize,
    pipeline: Option<ImagePipeline>,
) -> Result<PreprocessConfig> {
    let size = (image_size, image_size);
    let mut cfg = match (ecosystem, raw) {
        (Ecosystem::OpenClip, Some(v)) => PreprocessConfig::from_open_clip(v, Some(size))?,
        (Ecosystem::Transformers, Some(v)) => PreprocessConfig::from_hf(v)?,
        // No config: the ecosystem's defaults at the tower's size (nothing to disagree with).
        (_, None) => PreprocessConfig {
            image_size: size,
            ..PreprocessConfig::default()
        },
    };
    if cfg.image_size != size {
        // The towers only accept their own input size; a preprocessor file that disagrees
        // (seen in hand-edited directories) must not produce tensors the model rejects.
        tracing::warn!(
            preprocess = ?cfg.image_size,
            model = image_size,
            "preprocessing size differs from the model's image size; using the model's"
        );
        cfg.image_size = size;
    }
    // Also covers a checkpoint without a preprocessing file: an HF model still gets
    // transformers' colour handling.
    cfg.pipeline = pipeline.unwrap_or(ecosystem.image_pipeline());
    Ok(cfg)
}

/// The preprocessing of the model stored in directory `dir`, read from its config files
/// without loading weights (for `gclip preprocess`): `open_clip_config.json` makes it an
/// open_clip model, `preprocessor_config.json` or `config.json` a transformers one. `None`
/// when the directory holds neither.
pub fn preprocess_for_dir(
    dir: &Path,
    pipeline: Option<ImagePipeline>,
) -> Result<Option<PreprocessConfig>> {
    let read = |name: &str| -> Result<Option<Value>> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|source| Error::Json { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path, source }),
        }
    };
    let size_of = |v: &Value, pointer: &str| v.pointer(pointer).and_then(Value::as_u64);
    if let Some(v) = read("open_clip_config.json")? {
        let Some(size) = size_of(&v, "/model_cfg/vision_cfg/image_size") else {
            return Err(Error::Invalid(format!(
                "{}: open_clip_config.json has no model_cfg.vision_cfg.image_size",
                dir.display()
            )));
        };
        let empty = Value::Object(Default::default());
        let raw = v.get("preprocess_cfg").unwrap_or(&empty);
        return preprocess(Ecosystem::OpenClip, Some(raw), size as usize, pipeline).map(Some);
    }
    let hf_pre = read("preprocessor_config.json")?;
    let hf_cfg = read("config.json")?;
    if hf_pre.is_none() && hf_cfg.is_none() {
        return Ok(None);
    }
    let size = hf_cfg
        .as_ref()
        .and_then(|v| size_of(v, "/vision_config/image_size"));
    let size = match (size, &hf_pre) {
        (Some(s), _) => s as usize,
        (None, Some(p)) => PreprocessConfig::from_hf(p)?.image_size.0,
        (None, None) => PreprocessConfig::default().image_size.0,
    };
    preprocess(Ecosystem::Transformers, hf_pre.as_ref(), size, pipeline).map(Some)
}

fn has_tokenizer_files(dir: &Path) -> bool {
    dir.join("tokenizer.json").is_file()
        || (dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_map_to_their_ecosystem_and_names_parse() {
        assert_eq!(Ecosystem::of_layout(Layout::Hf), Ecosystem::Transformers);
        assert_eq!(Ecosystem::of_layout(Layout::OpenClip), Ecosystem::OpenClip);
        assert_eq!(Ecosystem::of_layout(Layout::Bare), Ecosystem::OpenClip);
        assert_eq!(
            "transformers".parse::<ImagePipeline>().unwrap(),
            Ecosystem::Transformers.image_pipeline()
        );
        assert_eq!(
            "open_clip".parse::<ImagePipeline>().unwrap(),
            Ecosystem::OpenClip.image_pipeline()
        );
        let e = "pillow".parse::<ImagePipeline>().unwrap_err();
        assert!(e.to_string().contains("open_clip or transformers"), "{e}");
    }

    #[test]
    fn hf_directories_use_their_tokenizer_files_and_open_clip_the_openai_vocab() {
        let vocab = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/reference/tokenizer/small_vocab_tokenizer_json");
        assert!(vocab.join("tokenizer.json").is_file(), "fixture missing");
        let hf = tokenizer(Ecosystem::Transformers, Some(&vocab)).unwrap();
        let oc = tokenizer(Ecosystem::OpenClip, Some(&vocab)).unwrap();
        assert_ne!(hf.vocab_size(), oc.vocab_size());
        assert!(oc.shares_tables_with(&Tokenizer::openai()));
    }

    #[test]
    fn preprocessing_follows_the_ecosystem_at_the_model_size() {
        let oc: Value = serde_json::json!({"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]});
        let p = preprocess(Ecosystem::OpenClip, Some(&oc), 64, None).unwrap();
        assert_eq!((p.image_size, p.mean), ((64, 64), [0.5; 3]));
        let hf: Value = serde_json::json!({
            "crop_size": {"height": 32, "width": 32},
            "size": {"shortest_edge": 32},
            "image_mean": [0.1, 0.2, 0.3],
            "image_std": [0.3, 0.2, 0.1]
        });
        // The HF file says 32; the tower's 48 wins.
        let p = preprocess(Ecosystem::Transformers, Some(&hf), 48, None).unwrap();
        assert_eq!((p.image_size, p.mean), ((48, 48), [0.1, 0.2, 0.3]));
        let d = preprocess(Ecosystem::OpenClip, None, 96, None).unwrap();
        assert_eq!(d.image_size, (96, 96));
        assert_eq!(d.mean, PreprocessConfig::default().mean);
    }
}
