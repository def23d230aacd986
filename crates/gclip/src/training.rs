//! Training through the facade: the trainer gets its tokenizer and image preprocessing from
//! the same per-ecosystem resolver model loading uses ([`crate::resolve`]).

use gclip_image::Preprocessor;
use gclip_train::{BpeTextEncoder, ClipImageLoader, Codecs, TrainConfig, TrainError, Trainer};

use crate::error::Result;
use crate::resolve::{self, CheckpointFacts, ImagePipeline};

/// A trainer for `cfg`: fine-tuning a checkpoint uses that checkpoint's tokenizer and
/// preprocessing (an HF directory's own vocabulary and `preprocessor_config.json`, an
/// open_clip one's `preprocess_cfg`); training from scratch uses open_clip's defaults at the
/// architecture's image size. `pipeline` overrides whose image pipeline runs.
pub fn trainer(cfg: TrainConfig, pipeline: Option<ImagePipeline>) -> Result<Trainer> {
    let t = Trainer::with_codec_resolver(cfg, |start| {
        let image_size = start.config.vision.image_size;
        let codecs = match start.checkpoint {
            Some(c) => resolve::codecs(
                &CheckpointFacts {
                    layout: c.layout,
                    dir: c.dir,
                    preprocess: c.preprocess,
                    image_size,
                },
                pipeline,
            ),
            None => resolve::codecs(
                &CheckpointFacts {
                    layout: gclip_model::Layout::Bare,
                    dir: None,
                    preprocess: None,
                    image_size,
                },
                pipeline,
            ),
        }
        .map_err(|e| TrainError::Codecs(Box::new(e)))?;
        Ok(Codecs {
            text: Box::new(BpeTextEncoder(codecs.tokenizer)),
            images: Box::new(ClipImageLoader(Preprocessor::new(codecs.preprocess))),
        })
    })?;
    Ok(t)
}
