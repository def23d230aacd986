//! Adapts [`Clip`] to the evaluation crate's model boundary.

use std::path::PathBuf;

use gclip_eval::FieldEncoder;

use crate::clip::Clip;

/// [`FieldEncoder`] over a [`Clip`]: unnormalised embeddings, images failing loudly.
pub struct ClipFieldEncoder(pub Clip);

impl FieldEncoder for ClipFieldEncoder {
    fn encode_texts(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, gclip_eval::BoxError> {
        Ok(self
            .0
            .embed_texts(texts, false)?
            .rows()
            .map(<[f32]>::to_vec)
            .collect())
    }

    fn encode_images(&mut self, paths: &[PathBuf]) -> Result<Vec<Vec<f32>>, gclip_eval::BoxError> {
        Ok(self
            .0
            .embed_image_files(paths, false)?
            .rows()
            .map(<[f32]>::to_vec)
            .collect())
    }

    fn model_id(&self) -> String {
        self.0.model_id().to_owned()
    }
}
